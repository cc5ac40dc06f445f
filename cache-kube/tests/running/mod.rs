//! A reflector run in the background for a test, stopped when dropped, with the errors it
//! reported. Shared by the tests against the scripted server and the real kube-apiserver.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use cache_core::reflector::{BackoffOptions, Reflector, ReflectorError};
use cache_core::source::ListerWatcher;
use cache_core::{Cache, Object};
use tokio_util::sync::CancellationToken;

/// A running reflector, stopped when dropped, with the errors it reported.
pub struct Running<T: Object> {
    pub reflector: Reflector<T>,
    pub errors: Arc<Mutex<Vec<ReflectorError>>>,
    pub stop: CancellationToken,
}

impl<T: Object> Drop for Running<T> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<T: Object> Running<T> {
    /// The errors reported so far.
    pub fn errors(&self) -> Vec<ReflectorError> {
        self.errors.lock().unwrap().clone()
    }
}

/// Runs a reflector from `source` into `cache`, with this backoff, recording its errors.
pub fn run<T: Object>(
    source: impl ListerWatcher<T>,
    cache: &Arc<Cache<T>>,
    backoff: BackoffOptions,
) -> Running<T> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let reflector = Reflector::builder(source, cache.clone())
        .backoff(backoff)
        .watch_error_handler({
            let errors = errors.clone();
            move |e| errors.lock().unwrap().push(e.clone())
        })
        .build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    Running {
        reflector,
        errors,
        stop,
    }
}
