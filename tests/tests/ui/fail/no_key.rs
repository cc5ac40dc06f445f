use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    name: String,
    #[index]
    node: String,
}

fn main() {}
