use cache_core::Indexed;

#[derive(Indexed)]
enum Phase {
    Pending,
    Running,
}

fn main() {}
