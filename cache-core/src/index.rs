//! Indexes: what makes a [`Cache`](crate::Cache) answer "which objects have value V?" without a
//! scan.
//!
//! An index is a named function from an object to zero or more values of a type `V`
//! ([`IndexValue`]). Indexes come from two places:
//!
//! - `#[derive(Indexed)]` on your struct writes them from field attributes, with a typed handle
//!   per index ([`Index<T, V>`]) and typed query methods, so a misspelt index or a value of the
//!   wrong type does not compile;
//! - [`Indexer`]s built from closures at run time, for types you cannot annotate (client-go's
//!   `Indexers`).
//!
//! # Which types can be index values
//!
//! Any type that is `Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static` is an
//! [`IndexValue`]: `String`, integers, `bool`, `char`, tuples of those, and your own enums and
//! newtypes once they derive those traits. Nothing else needs implementing.
//!
//! ```
//! #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
//! #[allow(dead_code)]
//! enum Phase { Pending, Running, Succeeded }
//!
//! fn assert_index_value<V: cache_core::IndexValue>() {}
//! assert_index_value::<Phase>();
//! assert_index_value::<(String, u32)>();
//! ```

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::engine::{ErasedTable, Table, ValuesFn};
use crate::object::Object;

/// A type that can be an index value. See the [module docs](self) for the rule; it is implemented
/// for every type that meets it.
pub trait IndexValue: Clone + Eq + Ord + Hash + fmt::Debug + Send + Sync + 'static {}

impl<V: Clone + Eq + Ord + Hash + fmt::Debug + Send + Sync + 'static> IndexValue for V {}

/// A type that knows its own indexes. `#[derive(Indexed)]` implements it; a type with no
/// indexes of its own can implement it with an empty body.
///
/// [`Cache::new`](crate::Cache::new) installs these indexes.
///
/// ```
/// use cache_core::{Cache, Indexed, Object};
///
/// struct Lease { holder: String }
/// impl Object for Lease {
///     type Key = String;
///     fn key(&self) -> String { self.holder.clone() }
/// }
/// impl Indexed for Lease {}
///
/// let cache = Cache::<Lease>::new();
/// assert!(cache.indexers().is_empty());
/// ```
pub trait Indexed: Object + Sized {
    /// The indexes every [`Cache`](crate::Cache) of this type starts with.
    fn indexers() -> Indexers<Self> {
        Indexers::new()
    }
}

/// Typed index reads: what [`Cache`](crate::Cache), [`Snapshot`](crate::Snapshot) (and a
/// lister) have in common.
///
/// The query methods that `#[derive(Indexed)]` generates (`cache.by_node("n1")`) live in an
/// extension trait implemented for every `IndexQuery<T>`, so they work the same on a cache, on a
/// snapshot, behind an `Arc` or a reference, and on any reader that implements this trait. Each
/// method answers from one consistent snapshot.
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, Index, IndexQuery, Indexer, Indexers, Object};
///
/// #[derive(Debug)]
/// struct Svc { name: String, port: u16 }
/// impl Object for Svc {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
/// const PORT: Index<Svc, u16> = Index::new("port");
///
/// // Generic over where the objects are read from.
/// fn on_port(reader: &impl IndexQuery<Svc>, port: u16) -> Vec<String> {
///     reader.by(PORT, &port).iter().map(|s| s.name.clone()).collect()
/// }
///
/// let cache = Arc::new(Cache::with_indexers(
///     Indexers::new().with(Indexer::for_index(PORT, |s: &Svc| [s.port])),
/// ));
/// cache.add(Arc::new(Svc { name: "web".into(), port: 80 })).unwrap();
/// assert_eq!(on_port(&cache, 80), ["web"]);
/// assert_eq!(on_port(&cache.snapshot(), 80), ["web"]);
/// assert!(on_port(&*cache, 443).is_empty());
/// ```
pub trait IndexQuery<T: Object> {
    /// The objects whose index `index` holds `value`, ordered by key. A `String` index accepts
    /// `&str`. An index that is not installed reads as empty.
    fn by<V, Q>(&self, index: Index<T, V>, value: &Q) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// The object holding `value` in a unique index (the first by key, for an index that is not
    /// unique).
    fn by_unique<V, Q>(&self, index: Index<T, V>, value: &Q) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Every value present in `index`, sorted.
    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V>;
}

impl<T: Object, R: IndexQuery<T> + ?Sized> IndexQuery<T> for &R {
    fn by<V, Q>(&self, index: Index<T, V>, value: &Q) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        R::by(self, index, value)
    }

    fn by_unique<V, Q>(&self, index: Index<T, V>, value: &Q) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        R::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        R::values(self, index)
    }
}

impl<T: Object, R: IndexQuery<T> + ?Sized> IndexQuery<T> for Arc<R> {
    fn by<V, Q>(&self, index: Index<T, V>, value: &Q) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        R::by(self, index, value)
    }

    fn by_unique<V, Q>(&self, index: Index<T, V>, value: &Q) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        R::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        R::values(self, index)
    }
}

/// A typed handle to one index of `T` whose values are `V`.
///
/// `#[derive(Indexed)]` generates one per index as an associated constant (`Pod::NODE`); for a
/// closure indexer, make one with [`Index::new`] and build the indexer with
/// [`Indexer::for_index`]. Queries through a handle are checked by the compiler: the value must
/// be a `V` (or borrow as one, so a `String` index accepts `&str`).
pub struct Index<T, V> {
    name: &'static str,
    _types: PhantomData<fn(&T) -> V>,
}

impl<T, V> Index<T, V> {
    /// A handle to the index called `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// The index's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T, V> Clone for Index<T, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, V> Copy for Index<T, V> {}
impl<T, V> fmt::Debug for Index<T, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Index({:?})", self.name)
    }
}

/// One named index definition: a function from an object to its values (client-go's
/// `IndexFunc` with its name).
///
/// ```
/// use cache_core::{Cache, Indexer, Indexers, Object};
///
/// #[derive(Debug)]
/// struct Svc { name: String, ports: Vec<u16> }
/// impl Object for Svc {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
///
/// let cache = Cache::with_indexers(
///     Indexers::new().with(Indexer::new("port", |s: &Svc| s.ports.clone())),
/// );
/// cache.add(Svc { name: "web".into(), ports: vec![80, 443] }.into()).unwrap();
/// assert_eq!(cache.by_index_value("port", &443u16).unwrap().len(), 1);
/// ```
pub struct Indexer<T: Object> {
    name: Cow<'static, str>,
    make: Arc<dyn Fn() -> Arc<dyn ErasedTable<T::Key, T>> + Send + Sync>,
}

impl<T: Object> Clone for Indexer<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            make: self.make.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for Indexer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Indexer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Object> Indexer<T> {
    /// An index called `name` whose values for an object are what `f` returns (zero or more).
    pub fn new<V, I, F>(name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        V: IndexValue,
        I: IntoIterator<Item = V>,
        F: Fn(&T) -> I + Send + Sync + 'static,
    {
        Self::from_fn(name, false, move |obj, out| out.extend(f(obj)))
    }

    /// Like [`new`](Self::new), but at most one object may hold each value; a write that would
    /// put a second object under a value fails with
    /// [`StoreError::UniqueViolation`](crate::StoreError::UniqueViolation).
    pub fn unique<V, I, F>(name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        V: IndexValue,
        I: IntoIterator<Item = V>,
        F: Fn(&T) -> I + Send + Sync + 'static,
    {
        Self::from_fn(name, true, move |obj, out| out.extend(f(obj)))
    }

    /// An index for a typed handle, so that queries through the handle are type-checked.
    pub fn for_index<V, I, F>(index: Index<T, V>, f: F) -> Self
    where
        V: IndexValue,
        I: IntoIterator<Item = V>,
        F: Fn(&T) -> I + Send + Sync + 'static,
    {
        Self::new(index.name, f)
    }

    /// The lowest-level constructor, used by `#[derive(Indexed)]`: `f` pushes the object's values
    /// into `out`, so a field value is cloned once and no intermediate collection is built.
    pub fn from_fn<V, F>(name: impl Into<Cow<'static, str>>, unique: bool, f: F) -> Self
    where
        V: IndexValue,
        F: Fn(&T, &mut Vec<V>) + Send + Sync + 'static,
    {
        let name = name.into();
        let f: Arc<ValuesFn<T, V>> = Arc::new(f);
        let index_name: Arc<str> = Arc::from(&*name);
        Self {
            name,
            make: Arc::new(move || {
                Arc::new(Table::new(
                    index_name.clone(),
                    unique,
                    f.clone(),
                    Hasher::default(),
                ))
            }),
        }
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage of an empty index of this definition.
    pub(crate) fn build(&self) -> Arc<dyn ErasedTable<T::Key, T>> {
        (self.make)()
    }
}

/// A set of index definitions (client-go's `Indexers`), with unique names.
pub struct Indexers<T: Object> {
    list: Vec<Indexer<T>>,
}

impl<T: Object> Clone for Indexers<T> {
    fn clone(&self) -> Self {
        Self {
            list: self.list.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for Indexers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl<T: Object> Default for Indexers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> Indexers<T> {
    /// No indexes.
    pub fn new() -> Self {
        Self { list: Vec::new() }
    }

    /// Adds one index. Name conflicts are reported when the set is installed in a cache
    /// ([`Cache::add_indexers`](crate::Cache::add_indexers)).
    #[must_use]
    pub fn with(mut self, indexer: Indexer<T>) -> Self {
        self.list.push(indexer);
        self
    }

    /// Adds one index in place.
    pub fn push(&mut self, indexer: Indexer<T>) {
        self.list.push(indexer);
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(Indexer::name)
    }

    /// The number of indexes.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The definitions.
    pub fn iter(&self) -> impl Iterator<Item = &Indexer<T>> {
        self.list.iter()
    }
}

impl<T: Object> Extend<Indexer<T>> for Indexers<T> {
    fn extend<I: IntoIterator<Item = Indexer<T>>>(&mut self, iter: I) {
        self.list.extend(iter);
    }
}

impl<T: Object> FromIterator<Indexer<T>> for Indexers<T> {
    fn from_iter<I: IntoIterator<Item = Indexer<T>>>(iter: I) -> Self {
        Self {
            list: iter.into_iter().collect(),
        }
    }
}

pub(crate) use crate::engine::Hasher;
