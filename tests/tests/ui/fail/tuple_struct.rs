use cache_core::Indexed;

#[derive(Indexed)]
struct Pod(#[key] String, #[index] String);

fn main() {}
