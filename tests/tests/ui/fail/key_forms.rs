use cache_core::Indexed;

#[derive(Indexed)]
struct Mixed {
    #[key]
    uid: String,
    #[key(name)]
    name: String,
}

#[derive(Indexed)]
struct NamespaceOnly {
    #[key(namespace)]
    namespace: String,
    name: String,
}

#[derive(Indexed)]
struct TwoNames {
    #[key(name)]
    name: String,
    #[key(name)]
    alias: String,
}

#[derive(Indexed)]
struct BadRole {
    #[key(uid)]
    uid: String,
}

#[derive(Indexed)]
#[indexed(object = manual)]
struct Manual {
    #[key]
    name: String,
    #[resource_version]
    rv: u64,
}

fn main() {}
