use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(each)]
    node: String,
}

fn main() {}
