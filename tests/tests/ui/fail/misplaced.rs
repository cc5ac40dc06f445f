use cache_core::Indexed;

#[derive(Indexed)]
#[index]
struct Pod {
    #[key]
    #[indexed(object = manual)]
    name: String,
}

fn main() {}
