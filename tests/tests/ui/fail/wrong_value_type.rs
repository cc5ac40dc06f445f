use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(value = u32)]
    node: String,
    #[index(each, value = u32)]
    labels: Vec<String>,
}

fn main() {}
