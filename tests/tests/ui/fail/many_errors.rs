use cache_core::Indexed;

// Every bad attribute is reported, not just the first.
#[derive(Indexed)]
#[indexed(objects = manual)]
struct Pod {
    #[key]
    name: String,
    #[index(each, by = labels)]
    labels: Vec<String>,
    #[index(name = "")]
    node: String,
    #[index = "zone"]
    zone: String,
    #[resource_version]
    #[resource_version]
    rv: u64,
}

fn labels(pod: &Pod) -> Vec<String> {
    pod.labels.clone()
}

fn main() {}
