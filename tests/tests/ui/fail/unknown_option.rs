use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(uniq)]
    uid: String,
}

fn main() {}
