use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(by = upper)]
    node: String,
}

fn upper(node: &String) -> Option<String> {
    Some(node.to_uppercase())
}

fn main() {}
