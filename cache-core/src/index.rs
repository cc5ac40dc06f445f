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
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>;

    /// The object holding `value` in a unique index (the first by key, for an index that is not
    /// unique).
    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>;

    /// Every value present in `index`, sorted.
    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V>;
}

impl<T: Object, R: IndexQuery<T> + ?Sized> IndexQuery<T> for &R {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        R::by(self, index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        R::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        R::values(self, index)
    }
}

impl<T: Object, R: IndexQuery<T> + ?Sized> IndexQuery<T> for Arc<R> {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        R::by(self, index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        R::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        R::values(self, index)
    }
}

/// A value to look an index of `V`s up with: a reference to a `V` or to anything a `V`
/// borrows as (`&str` for a `String` index), or a tuple of such references for a tuple index
/// (`("app", "web")` for an index of `(String, String)`).
///
/// ```
/// use cache_core::{Cache, Index, Indexer, Indexers, Object};
///
/// #[derive(Debug)]
/// struct Svc { name: String, ns: String, port: u16 }
/// impl Object for Svc {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
/// const NS_PORT: Index<Svc, (String, u16)> = Index::new("ns-port");
///
/// fn ns_port(s: &Svc) -> [(&String, &u16); 1] {
///     [(&s.ns, &s.port)]
/// }
///
/// let cache = Cache::with_indexers(Indexers::new().with(Indexer::for_index(NS_PORT, ns_port)));
/// cache.add(Svc { name: "web".into(), ns: "prod".into(), port: 80 }.into()).unwrap();
/// assert_eq!(cache.by(NS_PORT, ("prod", &80)).len(), 1);
/// assert_eq!(cache.by(NS_PORT, &("prod".to_owned(), 80)).len(), 1);
/// assert!(cache.by(NS_PORT, ("dev", &80)).is_empty());
/// ```
pub trait Lookup<V> {
    /// What `V` borrows as for the lookup: it hashes and compares as the `V` it stands for.
    type Borrowed: ?Sized + Hash + Eq;

    /// The value, as what `V` borrows as.
    fn borrowed(&self) -> &Self::Borrowed;
}

impl<V, Q> Lookup<V> for &Q
where
    V: Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    type Borrowed = Q;

    fn borrowed(&self) -> &Q {
        self
    }
}

macro_rules! tuple_lookup {
    ($(#[$doc:meta])* $parts:ident: $($v:ident $q:ident $i:tt),+) => {
        $(#[$doc])*
        pub trait $parts<$($q: ?Sized),+> {
            /// The parts, borrowed.
            fn parts(&self) -> ($(&$q,)+);
        }

        impl<$($v: Borrow<$q>, $q: ?Sized),+> $parts<$($q),+> for ($($v,)+) {
            fn parts(&self) -> ($(&$q,)+) {
                ($(self.$i.borrow(),)+)
            }
        }

        /// Hashes as the tuple it stands for: each part in order.
        impl<$($q: ?Sized + Hash),+> Hash for dyn $parts<$($q),+> + '_ {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                let parts = self.parts();
                $(parts.$i.hash(state);)+
            }
        }

        impl<$($q: ?Sized + PartialEq),+> PartialEq for dyn $parts<$($q),+> + '_ {
            fn eq(&self, other: &Self) -> bool {
                let (a, b) = (self.parts(), other.parts());
                $(a.$i == b.$i)&&+
            }
        }

        impl<$($q: ?Sized + Eq),+> Eq for dyn $parts<$($q),+> + '_ {}

        impl<'a, $($v: Borrow<$q> + 'a, $q: ?Sized + 'a),+> Borrow<dyn $parts<$($q),+> + 'a>
            for ($($v,)+)
        {
            fn borrow(&self) -> &(dyn $parts<$($q),+> + 'a) {
                self
            }
        }

        impl<'a, $($v: Borrow<$q> + 'a, $q: ?Sized + Hash + Eq + 'a),+> Lookup<($($v,)+)>
            for ($(&'a $q,)+)
        {
            type Borrowed = dyn $parts<$($q),+> + 'a;

            fn borrowed(&self) -> &Self::Borrowed {
                self
            }
        }
    };
}

tuple_lookup!(
    /// A pair seen as its borrowed parts: how an index of pairs is looked up with a pair of
    /// references ([`Lookup`]).
    Parts2: A QA 0, B QB 1
);
tuple_lookup!(
    /// A triple seen as its borrowed parts: how an index of triples is looked up with a triple
    /// of references ([`Lookup`]).
    Parts3: A QA 0, B QB 1, C QC 2
);

/// A function from an object to its values in an index of `V`s, for [`Indexer::for_index`]:
/// implemented by every `Fn(&T) -> I` whose `I` iterates over [`IntoIndexValue<V>`] items, `I`
/// borrowing from the object or not.
pub trait IndexFn<'a, T: 'a, V>: Fn(&'a T) -> <Self as IndexFn<'a, T, V>>::Values {
    /// What the function returns.
    type Values: IntoIterator<Item = Self::Value>;
    /// Each value, before it becomes a `V`.
    type Value: IntoIndexValue<V>;
}

impl<'a, T: 'a, V, F, I> IndexFn<'a, T, V> for F
where
    F: Fn(&'a T) -> I,
    I: IntoIterator,
    I::Item: IntoIndexValue<V>,
{
    type Values = I;
    type Value = I::Item;
}

/// What an index closure given to [`Indexer::for_index`] may return for an index of `V`s: a `V`,
/// a `&V`, a `&str` or `Cow<str>` for a `String` index, or a tuple of references for a tuple
/// index. Each is turned into a `V` once, as it is stored.
pub trait IntoIndexValue<V> {
    /// The value.
    fn into_index_value(self) -> V;
}

impl<V: IndexValue> IntoIndexValue<V> for V {
    fn into_index_value(self) -> V {
        self
    }
}

impl<V: IndexValue> IntoIndexValue<V> for &V {
    fn into_index_value(self) -> V {
        self.clone()
    }
}

impl IntoIndexValue<String> for &str {
    fn into_index_value(self) -> String {
        self.to_owned()
    }
}

impl IntoIndexValue<String> for Cow<'_, str> {
    fn into_index_value(self) -> String {
        self.into_owned()
    }
}

impl<A: IndexValue, B: IndexValue> IntoIndexValue<(A, B)> for (&A, &B) {
    fn into_index_value(self) -> (A, B) {
        (self.0.clone(), self.1.clone())
    }
}

impl<A: IndexValue, B: IndexValue, C: IndexValue> IntoIndexValue<(A, B, C)> for (&A, &B, &C) {
    fn into_index_value(self) -> (A, B, C) {
        (self.0.clone(), self.1.clone(), self.2.clone())
    }
}

impl IntoIndexValue<(String, String)> for (&str, &str) {
    fn into_index_value(self) -> (String, String) {
        (self.0.to_owned(), self.1.to_owned())
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
        Self::raw(name, false, move |obj, out| out.extend(f(obj)))
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
        Self::raw(name, true, move |obj, out| out.extend(f(obj)))
    }

    /// An index for a typed handle, so that queries through the handle are type-checked.
    ///
    /// `f` returns the object's values as any iterable: owned values, or values borrowed from
    /// the object (`&V`, `&str` for a `String` index, tuples of references for a tuple index;
    /// see [`IntoIndexValue`]). Nothing is collected on the way: each value is converted once,
    /// straight into the index's own buffer. A closure's parameter needs its type (`|p: &Pod|`).
    ///
    /// A closure cannot return a value that borrows from its argument (Rust infers one return
    /// type for every lifetime of the argument); a function can, so an index whose values are
    /// borrowed is given as a `fn`:
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cache_core::{Cache, Index, Indexer, Indexers, Object};
    ///
    /// #[derive(Debug)]
    /// struct Pod { name: String, labels: BTreeMap<String, String> }
    /// impl Object for Pod {
    ///     type Key = String;
    ///     fn key(&self) -> String { self.name.clone() }
    /// }
    /// const LABEL: Index<Pod, (String, String)> = Index::new("label");
    ///
    /// // Borrows the pairs from the pod: no `Vec`, no `format!`.
    /// fn labels(p: &Pod) -> impl Iterator<Item = (&String, &String)> {
    ///     p.labels.iter()
    /// }
    ///
    /// let cache = Cache::with_indexers(Indexers::new().with(Indexer::for_index(LABEL, labels)));
    /// let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    /// cache.add(Pod { name: "web-1".into(), labels }.into()).unwrap();
    /// assert_eq!(cache.by(LABEL, ("app", "web")).len(), 1); // queried with borrowed parts
    /// ```
    pub fn for_index<V, F>(index: Index<T, V>, f: F) -> Self
    where
        V: IndexValue,
        F: for<'a> IndexFn<'a, T, V> + Send + Sync + 'static,
    {
        Self::raw(index.name, false, move |obj, out| {
            out.extend(f(obj).into_iter().map(IntoIndexValue::into_index_value));
        })
    }

    /// Like [`for_index`](Self::for_index), for a unique index (see [`unique`](Self::unique)).
    pub fn unique_for_index<V, F>(index: Index<T, V>, f: F) -> Self
    where
        V: IndexValue,
        F: for<'a> IndexFn<'a, T, V> + Send + Sync + 'static,
    {
        Self::raw(index.name, true, move |obj, out| {
            out.extend(f(obj).into_iter().map(IntoIndexValue::into_index_value));
        })
    }

    /// The lowest-level constructor, used by `#[derive(Indexed)]`: `f` pushes the object's values
    /// into `out`, a buffer the index reuses from one object to the next.
    pub fn from_fn<V, F>(index: Index<T, V>, unique: bool, f: F) -> Self
    where
        V: IndexValue,
        F: Fn(&T, &mut Vec<V>) + Send + Sync + 'static,
    {
        Self::raw(index.name, unique, f)
    }

    fn raw<V, F>(name: impl Into<Cow<'static, str>>, unique: bool, f: F) -> Self
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
