use cache_core::Indexed;

#[derive(Indexed)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
