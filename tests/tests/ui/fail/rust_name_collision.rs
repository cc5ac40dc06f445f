use cache_core::Indexed;

// Distinct index names, but both would generate `by_node_name`, `NODE_NAME` and `NodeName`.
#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index]
    node_name: String,
    #[index(name = "node__name")]
    node: String,
}

fn main() {}
