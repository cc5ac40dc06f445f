use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(by = node_len)]
    node: String,
}

fn node_len(pod: &Pod) -> usize {
    pod.node.len()
}

fn main() {}
