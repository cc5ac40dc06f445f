use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(each, unique, each)]
    finalizers: Vec<String>,
    #[index(name = "a", name = "b")]
    node: String,
}

fn main() {}
