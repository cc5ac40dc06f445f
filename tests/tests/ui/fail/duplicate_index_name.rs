use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index]
    node: String,
    #[index(name = "node")]
    node_name: String,
}

fn main() {}
