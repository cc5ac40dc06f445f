use cache_core::Indexed;

#[derive(Indexed)]
struct Pod<'a> {
    #[key]
    name: &'a str,
}

fn main() {}
