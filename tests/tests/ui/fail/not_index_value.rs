use cache_core::{Cache, Indexed};

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index]
    cpu: f64,
    #[index]
    memory: Option<f32>,
    #[index]
    node: String,
}

fn main() {
    // One error per field, and no follow-on errors: the type is still `Indexed`, and its
    // generated items still exist.
    let cache = Cache::<Pod>::new();
    let _: Vec<f64> = cache.cpu_values();
    let _ = Pod::MEMORY;
    let _ = cache.by_node("n1");
}
