use cache_core::Indexed;

#[derive(Indexed)]
struct Pod {
    #[key]
    name: String,
    #[index(by = Pod::labels)]
    node: String,
}

impl Pod {
    fn labels(&self) -> Vec<u32> {
        vec![self.node.len() as u32]
    }
}

fn main() {}
