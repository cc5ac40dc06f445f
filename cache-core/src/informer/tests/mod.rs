//! The informer's behaviour, after client-go's shared_informer_test.go and controller_test.go,
//! on our types.

mod handlers;
mod lifecycle;
mod pipeline;
mod resync;
mod several;
mod waiting;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fifo::DeletedObject;
use crate::source::memory::MemorySource;
use crate::test_support::{Item as Pod, item as pod, until};
use crate::{Index, Indexer};

/// A pod as a queue or cache holds it.
fn stored(name: &str, value: u32, rv: u64) -> Arc<Pod> {
    Arc::new(Pod {
        rv: Some(rv.into()),
        ..pod(name, value)
    })
}

fn rv_of(p: &Pod) -> String {
    p.rv.as_ref().map_or("-".into(), |r| r.as_str().to_owned())
}

fn informer(source: &MemorySource<Pod>) -> SharedIndexInformerBuilder<Pod> {
    SharedIndexInformer::builder_with_indexers(source.clone(), Indexers::new()).name("pods")
}

/// Runs the informer on a task; cancel the token to stop it.
fn start(informer: &SharedIndexInformer<Pod>) -> (CancellationToken, JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (informer, cancel) = (informer.clone(), cancel.clone());
        async move { informer.run(cancel).await }
    });
    (cancel, task)
}

/// Cancels and waits for `run` to return.
async fn stop(cancel: CancellationToken, task: JoinHandle<()>) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("run returns after the cancel")
        .unwrap();
}

/// A handler that writes down what it gets, one line per notification:
/// `add <name> <rv> initial|later`, `update <name> <old rv>-><new rv>`, `delete <name> <rv>` or
/// `tombstone <name> <rv>`.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new() -> Self {
        Self::default()
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
    /// The names the notifications concern, sorted, without duplicates.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lines()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn describe(event: &InformerEvent<Pod>) -> String {
    match event {
        InformerEvent::Added {
            object,
            is_in_initial_list,
        } => format!(
            "add {} {} {}",
            object.name,
            rv_of(object),
            if *is_in_initial_list {
                "initial"
            } else {
                "later"
            }
        ),
        InformerEvent::Updated { old, new } => {
            format!("update {} {}->{}", new.name, rv_of(old), rv_of(new))
        }
        InformerEvent::Deleted(DeletedObject::Object(o)) => {
            format!("delete {} {}", o.name, rv_of(o))
        }
        InformerEvent::Deleted(DeletedObject::Tombstone(t)) => {
            let rv = t.object.as_deref().map_or("-".into(), rv_of);
            format!("tombstone {} {rv}", t.key)
        }
    }
}

impl EventHandler<Pod> for Recorder {
    fn on_add(&self, obj: Arc<Pod>, is_in_initial_list: bool) {
        self.push(describe(&InformerEvent::Added {
            object: obj,
            is_in_initial_list,
        }));
    }
    fn on_update(&self, old: Arc<Pod>, new: Arc<Pod>) {
        self.push(describe(&InformerEvent::Updated { old, new }));
    }
    fn on_delete(&self, obj: DeletedObject<Pod>) {
        self.push(describe(&InformerEvent::Deleted(obj)));
    }
}

/// The cache's content as `name@rv`, sorted.
fn content(cache: &CacheReader<Pod>) -> Vec<String> {
    let mut v: Vec<String> = cache
        .list()
        .iter()
        .map(|p| format!("{}@{}", p.name, rv_of(p)))
        .collect();
    v.sort();
    v
}

/// Rebuilds a handler's picture of the collection from its notifications, checking that each
/// one makes sense: an add for a key it does not hold, an update or a delete for one it holds.
#[derive(Default)]
struct Picture {
    objects: BTreeMap<String, Arc<Pod>>,
    errors: Vec<String>,
}

impl Picture {
    fn apply(&mut self, event: InformerEvent<Pod>) {
        match event {
            InformerEvent::Added { object, .. } => {
                if let Some(old) = self.objects.insert(object.name.clone(), object) {
                    self.errors.push(format!("second add of {}", old.name));
                }
            }
            InformerEvent::Updated { old, new } => {
                if self.objects.insert(new.name.clone(), new).is_none() {
                    self.errors.push(format!("update of unknown {}", old.name));
                }
            }
            InformerEvent::Deleted(d) => {
                if self.objects.remove(&d.key()).is_none() {
                    self.errors.push(format!("delete of unknown {}", d.key()));
                }
            }
        }
    }

    /// As [`content`] gives it: `name@rv`, sorted.
    fn content(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .objects
            .values()
            .map(|p| format!("{}@{}", p.name, rv_of(p)))
            .collect();
        v.sort();
        v
    }
}

/// A handler that keeps a [`Picture`].
#[derive(Clone, Default)]
struct Mirror(Arc<Mutex<Picture>>);

impl EventHandler<Pod> for Mirror {
    fn on_add(&self, obj: Arc<Pod>, is_in_initial_list: bool) {
        self.0.lock().unwrap().apply(InformerEvent::Added {
            object: obj,
            is_in_initial_list,
        });
    }
    fn on_update(&self, old: Arc<Pod>, new: Arc<Pod>) {
        self.0
            .lock()
            .unwrap()
            .apply(InformerEvent::Updated { old, new });
    }
    fn on_delete(&self, obj: DeletedObject<Pod>) {
        self.0.lock().unwrap().apply(InformerEvent::Deleted(obj));
    }
}

/// Captures the messages and fields of `tracing` events on the current thread.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<String>>>);

impl LogCapture {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct FieldsToString(String);

impl tracing::field::Visit for FieldsToString {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = FieldsToString(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
