//! Fixtures shared by the unit tests.

use std::sync::Arc;
use std::time::Duration;

use crate::{Cache, Indexers, Object, ResourceVersion};

/// A named object with a value and a uid, keyed by its name; a source stamps its version.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) value: u32,
    pub(crate) uid: String,
    pub(crate) rv: Option<ResourceVersion>,
}

impl Object for Item {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        self.rv = Some(rv);
    }
}

/// An item as a source takes it (the source stamps the version), with uid `uid-<name>`.
pub(crate) fn item(name: &str, value: u32) -> Item {
    Item {
        name: name.into(),
        value,
        uid: format!("uid-{name}"),
        rv: None,
    }
}

/// An empty cache without indexes.
pub(crate) fn cache<T: Object>() -> Arc<Cache<T>> {
    Arc::new(Cache::with_indexers(Indexers::new()))
}

/// Waits (in paused time) until `cond` holds; fails after a simulated hour.
pub(crate) async fn until(what: &str, cond: impl Fn() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
