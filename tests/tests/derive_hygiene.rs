//! The derive's output compiles without a warning in a crate that denies `unused_qualifications`
//! and clippy's pedantic lints (CI runs clippy on this file), and that has its own types named
//! like the prelude's (`Result`, `Ok`, `Option`, `Some`, ...) in scope.
#![deny(warnings, unused_qualifications, missing_docs, clippy::pedantic)]

/// The prelude's names, taken by the user's own types.
pub mod shadowed {
    #![allow(dead_code)]
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use cache_core::{Indexed, ResourceVersion};

    /// Not std's.
    pub struct Result;
    /// Not std's.
    pub struct Ok;
    /// Not std's.
    pub struct Option;
    /// Not std's.
    pub struct Some;
    /// Not std's.
    pub struct None;
    /// Not std's.
    pub struct Vec;
    /// Not std's.
    pub struct Box;
    /// Not std's.
    pub struct String;
    /// Not std's.
    pub trait Clone {}
    /// Not std's.
    pub trait Hash {}
    /// Not std's.
    pub trait Object {}
    /// Not std's.
    pub trait Borrow {}
    /// Not std's.
    pub type Index = u8;

    /// A pod, with every attribute form.
    #[derive(Debug, Indexed)]
    pub struct Pod {
        /// The namespace.
        #[key(namespace)]
        #[index]
        pub namespace: std::string::String,
        /// The name.
        #[key(name)]
        pub name: Arc<str>,
        /// The version.
        #[resource_version]
        pub rv: std::option::Option<ResourceVersion>,
        /// The node, when scheduled.
        #[index]
        pub node: std::option::Option<std::string::String>,
        /// Finalizers.
        #[index(each)]
        pub finalizers: std::vec::Vec<std::string::String>,
        /// Label keys and values.
        #[index(by = Pod::label_pairs, name = "label", value = std::string::String)]
        pub labels: BTreeMap<std::string::String, std::string::String>,
        /// Annotation keys.
        #[index(each, name = "annotation")]
        pub annotations: std::option::Option<BTreeMap<std::string::String, std::string::String>>,
        /// Ports.
        #[index(each)]
        pub ports: HashSet<u16>,
        /// The unique id.
        #[index(unique)]
        pub uid: u64,
    }

    impl Pod {
        fn label_pairs(&self) -> impl Iterator<Item = std::string::String> + '_ {
            self.labels.iter().map(|(k, v)| format!("{k}={v}"))
        }
    }

    /// A generic type with a tuple key.
    #[derive(Debug, Indexed)]
    pub struct Pair<A, B: Send + Sync + 'static>
    where
        A: Send + Sync + 'static,
    {
        /// First part of the key.
        #[key]
        pub a: A,
        /// Second part of the key.
        #[key]
        pub b: u32,
        /// Values.
        #[index(each)]
        pub values: std::vec::Vec<B>,
    }
}

use std::sync::Arc;

use cache_core::{Cache, Object};
use shadowed::{Pair, PairIndexes, Pod, PodIndex, PodIndexes};

#[test]
fn derived_code_compiles_and_works_among_shadowed_names() {
    let cache = Cache::<Pod>::new();
    cache
        .add(Arc::new(Pod {
            namespace: "default".into(),
            name: "web".into(),
            rv: Some("5".into()),
            node: Some("n1".into()),
            finalizers: vec!["f".into()],
            labels: [("app".into(), "web".into())].into(),
            annotations: Some([("note".into(), String::new())].into()),
            ports: [80, 443].into(),
            uid: 7,
        }))
        .unwrap();
    assert_eq!(cache.by_node("n1").len(), 1);
    assert_eq!(cache.by_label("app=web").len(), 1);
    assert_eq!(cache.by_annotation("note").len(), 1);
    assert_eq!(cache.ports_values(), [80, 443]);
    assert_eq!(
        cache.by_uid(&7).map(|p| p.key().to_string()).as_deref(),
        Some("default/web")
    );
    assert_eq!(PodIndex::Annotation.as_str(), "annotation");
    assert_eq!(
        cache.resource_version().map(|rv| rv.to_string()).as_deref(),
        Some("5")
    );

    let pairs = Cache::<Pair<&'static str, char>>::new();
    pairs
        .add(Arc::new(Pair {
            a: "x",
            b: 1,
            values: vec!['p', 'q'],
        }))
        .unwrap();
    assert_eq!(pairs.by_values(&'q')[0].key(), ("x", 1));
}
