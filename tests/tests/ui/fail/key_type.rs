use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key(namespace)]
    namespace: u32,
    #[key(name)]
    name: String,
    #[resource_version]
    rv: f64,
}

fn main() {}
