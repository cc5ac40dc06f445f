use cache_core::Indexed;

// `by_index` and `index_values` are the by-name queries of `Cache`.
#[derive(Indexed)]
struct Shard {
    #[key]
    name: String,
    #[index]
    index: u32,
    #[index(name = "unique")]
    flag: bool,
}

fn main() {}
