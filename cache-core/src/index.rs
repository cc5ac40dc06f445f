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

use std::any::Any;
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::object::Object;
use crate::store::StoreError;
use crate::store::trie::{Entry, Trie, touch_key};

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

type ValuesFn<T, V> = dyn Fn(&T, &mut Vec<V>) + Send + Sync;

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
    make: Arc<dyn Fn() -> Arc<dyn ErasedIndex<T>> + Send + Sync>,
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
    /// put a second object under a value fails with [`StoreError::UniqueViolation`].
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
                Arc::new(TypedIndex::<T, V> {
                    name: index_name.clone(),
                    unique,
                    values_fn: f.clone(),
                    buckets: Trie::with_hasher(Hasher::default()),
                    scratch: (Vec::new(), Vec::new()),
                })
            }),
        }
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An empty index of this definition.
    pub(crate) fn build(&self) -> Arc<dyn ErasedIndex<T>> {
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

pub(crate) type Hasher = foldhash::fast::RandomState;

/// The objects of a snapshot by key: the primary map.
pub(crate) type Objects<T> = Trie<ObjEntry<<T as Object>::Key, T>, Hasher>;

/// An entry of the primary map: a key and its object.
pub(crate) struct ObjEntry<K, T> {
    pub(crate) key: K,
    pub(crate) obj: Arc<T>,
}

impl<K: Clone, T> Clone for ObjEntry<K, T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            obj: self.obj.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, T> Entry for ObjEntry<K, T> {
    type Key = K;
    fn key(&self) -> &K {
        &self.key
    }

    /// Keeps the stored key: its copies in index buckets then still share its allocation, and
    /// compare by pointer.
    fn refresh(&mut self, new: Self) -> Self {
        let old = std::mem::replace(&mut self.obj, new.obj);
        Self {
            key: self.key.clone(),
            obj: old,
        }
    }

    fn touch(&self) -> usize {
        touch_key(&self.key).wrapping_add(Arc::strong_count(&self.obj))
    }
}

/// The objects under one index value, with their keys, in key order. A bucket holds the objects
/// themselves, so a query reads them without a second lookup. Most buckets of a unique index,
/// and many of a fine-grained one, hold one object: that case needs no map at all.
pub(crate) enum Bucket<K: Ord + Clone, T> {
    One(K, Arc<T>),
    Many(imbl::OrdMap<K, Arc<T>>),
}

impl<K: Ord + Clone, T> Clone for Bucket<K, T> {
    fn clone(&self) -> Self {
        match self {
            Bucket::One(k, o) => Bucket::One(k.clone(), o.clone()),
            Bucket::Many(m) => Bucket::Many(m.clone()),
        }
    }
}

impl<K: Ord + Clone, T> Bucket<K, T> {
    /// A bucket of `entries`, which are sorted by key and distinct.
    fn from_sorted(mut entries: Vec<(K, Arc<T>)>) -> Option<Self> {
        match entries.len() {
            0 => None,
            1 => entries.pop().map(|(k, o)| Bucket::One(k, o)),
            _ => Some(Bucket::Many(entries.into_iter().collect())),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Bucket::One(..) => 1,
            Bucket::Many(m) => m.len(),
        }
    }

    pub(crate) fn iter(&self) -> BucketIter<'_, K, T> {
        match self {
            Bucket::One(k, o) => BucketIter::One(Some((k, o))),
            Bucket::Many(m) => BucketIter::Many(m.iter()),
        }
    }

    pub(crate) fn first(&self) -> Option<(&K, &Arc<T>)> {
        match self {
            Bucket::One(k, o) => Some((k, o)),
            Bucket::Many(m) => m.get_min().map(|(k, o)| (k, o)),
        }
    }

    fn contains(&self, key: &K) -> bool {
        match self {
            Bucket::One(k, _) => k == key,
            Bucket::Many(m) => m.contains_key(key),
        }
    }

    /// Inserts or replaces the object under `key`.
    fn insert(&mut self, key: K, obj: Arc<T>) {
        match self {
            Bucket::One(k, o) if *k == key => *o = obj,
            Bucket::One(k, o) => {
                let mut m = imbl::OrdMap::new();
                m.insert(k.clone(), o.clone());
                m.insert(key, obj);
                *self = Bucket::Many(m);
            }
            Bucket::Many(m) => {
                m.insert(key, obj);
            }
        }
    }

    /// Removes `key`; returns whether the bucket is now empty (and must be dropped).
    fn remove(&mut self, key: &K) -> bool {
        match self {
            Bucket::One(k, _) => k == key,
            Bucket::Many(m) => {
                m.remove(key);
                if m.len() == 1 {
                    if let Some((k, o)) = m.get_min().map(|(k, o)| (k.clone(), o.clone())) {
                        *self = Bucket::One(k, o);
                    }
                    return false;
                }
                m.is_empty()
            }
        }
    }
}

/// The entries of a [`Bucket`], in key order.
pub(crate) enum BucketIter<'a, K, T> {
    One(Option<(&'a K, &'a Arc<T>)>),
    Many(imbl::ordmap::Iter<'a, K, Arc<T>, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a, K: Ord, T> Iterator for BucketIter<'a, K, T> {
    type Item = (&'a K, &'a Arc<T>);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            BucketIter::One(e) => e.take(),
            BucketIter::Many(it) => it.next(),
        }
    }
}

/// One value of an index and its bucket: the entry type of an index's trie. Shared behind an
/// `Arc`, so that copying a trie node never clones a value; the value is shared too, so that
/// copying the entry to change its bucket does not clone it either.
pub(crate) struct ValueEntry<V, K: Ord + Clone, T> {
    value: Arc<V>,
    pub(crate) bucket: Bucket<K, T>,
}

impl<V, K: Ord + Clone, T> Clone for ValueEntry<V, K, T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            bucket: self.bucket.clone(),
        }
    }
}

impl<V: IndexValue, K: Ord + Clone, T> Entry for Arc<ValueEntry<V, K, T>> {
    type Key = V;
    fn key(&self) -> &V {
        &self.value
    }
    fn touch(&self) -> usize {
        Arc::strong_count(self)
    }
}

/// The storage of one index inside a snapshot, with its value type erased so that indexes of
/// different value types sit side by side. Typed access goes back through [`Index<T, V>`].
pub(crate) trait ErasedIndex<T: Object>: Send + Sync {
    fn name(&self) -> &str;
    fn as_any(&self) -> &dyn Any;
    fn value_type(&self) -> &'static str;
    fn is_unique(&self) -> bool;
    /// Fails when writing `new` under `key` would break a unique index.
    fn check(&self, key: &T::Key, new: &T) -> Result<(), StoreError>;
    /// A copy sharing all of this index's storage.
    fn clone_arc(&self) -> Arc<dyn ErasedIndex<T>>;
    /// Brings this index up to date with the object under `key` going from `old` to `new`.
    /// Copies only the storage that another version shares.
    fn update(&mut self, key: &T::Key, old: Option<&Arc<T>>, new: Option<&Arc<T>>);
    /// A new index of the same definition holding `objects`, built in one pass.
    fn rebuilt(&self, objects: &Objects<T>) -> Arc<dyn ErasedIndex<T>>;
    /// The objects sharing any value with `obj` (client-go's `Index`), by key.
    fn matching(&self, obj: &T) -> Vec<Arc<T>>;
    fn bucket_str(&self, value: &str) -> Option<Option<&Bucket<T::Key, T>>>;
    fn values_str(&self) -> Option<Vec<String>>;
    fn bucket_count(&self) -> usize;
    /// Every (value, key, object) triple, the value rendered with Debug, for consistency checks.
    fn debug_entries(&self) -> Vec<(String, T::Key, Arc<T>)>;
    /// The values of `obj`, rendered with Debug.
    fn debug_values(&self, obj: &T) -> Vec<String>;
    /// See [`Trie::prepare_drop`].
    fn prepare_drop(&self);
}

pub(crate) struct TypedIndex<T: Object, V: IndexValue> {
    name: Arc<str>,
    unique: bool,
    values_fn: Arc<ValuesFn<T, V>>,
    buckets: Trie<Arc<ValueEntry<V, T::Key, T>>, Hasher>,
    /// Reused by `update` for the old and the new object's values, so that a write allocates
    /// no vectors.
    scratch: (Vec<V>, Vec<V>),
}

impl<T: Object, V: IndexValue> Clone for TypedIndex<T, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            unique: self.unique,
            values_fn: self.values_fn.clone(),
            buckets: self.buckets.clone(),
            scratch: (Vec::new(), Vec::new()),
        }
    }
}

impl<T: Object, V: IndexValue> TypedIndex<T, V> {
    /// The object's values, sorted and without repeats.
    fn values(&self, obj: &T) -> Vec<V> {
        let mut out = Vec::new();
        (self.values_fn)(obj, &mut out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    pub(crate) fn bucket<Q>(&self, value: &Q) -> Option<&Bucket<T::Key, T>>
    where
        V: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.buckets.get(value).map(|e| &e.bucket)
    }

    pub(crate) fn values_iter(&self) -> impl Iterator<Item = &V> {
        self.buckets.iter().map(|e| &*e.value)
    }

    /// The object's values into `out` (empty on entry), sorted and without repeats.
    fn values_into(&self, obj: &T, out: &mut Vec<V>) {
        (self.values_fn)(obj, out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Puts `obj` under `value`, which already holds `key`, without cloning the value.
    fn replace_in(&mut self, value: &V, key: &T::Key, obj: &Arc<T>) {
        match self.buckets.get_mut(value) {
            Some(e) => Arc::make_mut(e).bucket.insert(key.clone(), obj.clone()),
            None => self.put(value.clone(), key, obj),
        }
    }

    /// Puts `obj` under `value`, replacing what `key` held there.
    fn put(&mut self, value: V, key: &T::Key, obj: &Arc<T>) {
        match self.buckets.get_mut(&value) {
            Some(e) => Arc::make_mut(e).bucket.insert(key.clone(), obj.clone()),
            None => {
                let bucket = Bucket::One(key.clone(), obj.clone());
                self.buckets.insert(Arc::new(ValueEntry {
                    value: Arc::new(value),
                    bucket,
                }));
            }
        }
    }

    fn remove_key(&mut self, value: V, key: &T::Key) {
        let Some(e) = self.buckets.get_mut(&value) else {
            return;
        };
        if Arc::make_mut(e).bucket.remove(key) {
            self.buckets.remove(&value);
        }
    }
}

impl<T: Object, V: IndexValue> ErasedIndex<T> for TypedIndex<T, V> {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn value_type(&self) -> &'static str {
        std::any::type_name::<V>()
    }

    fn is_unique(&self) -> bool {
        self.unique
    }

    fn check(&self, key: &T::Key, new: &T) -> Result<(), StoreError> {
        if !self.unique {
            return Ok(());
        }
        for value in self.values(new) {
            if let Some(bucket) = self.bucket(&value)
                && !bucket.contains(key)
            {
                let holder = bucket
                    .first()
                    .map(|(k, _)| format!("{k:?}"))
                    .unwrap_or_default();
                return Err(StoreError::UniqueViolation {
                    index: self.name.to_string(),
                    value: format!("{value:?}"),
                    key: format!("{key:?}"),
                    holder,
                });
            }
        }
        Ok(())
    }

    fn clone_arc(&self) -> Arc<dyn ErasedIndex<T>> {
        Arc::new(self.clone())
    }

    fn update(&mut self, key: &T::Key, old: Option<&Arc<T>>, new: Option<&Arc<T>>) {
        if let (Some(o), Some(n)) = (old, new)
            && Arc::ptr_eq(o, n)
        {
            return;
        }
        let (mut old_values, mut new_values) = std::mem::take(&mut self.scratch);
        if let Some(o) = old {
            self.values_into(o, &mut old_values);
        }
        if let Some(n) = new {
            self.values_into(n, &mut new_values);
        }
        if let (Some(new), [o], [n]) = (new, &old_values[..], &new_values[..])
            && o == n
        {
            // The common update: one value, unchanged. The bucket stays; it must still hold
            // the new object.
            self.replace_in(n, key, new);
        } else {
            for value in old_values.drain(..) {
                if new_values.binary_search(&value).is_err() {
                    self.remove_key(value, key);
                }
            }
            if let Some(new) = new {
                // The object changed, so even an unchanged value's bucket must hold the new one.
                for value in new_values.drain(..) {
                    self.put(value, key, new);
                }
            }
        }
        old_values.clear();
        new_values.clear();
        self.scratch = (old_values, new_values);
    }

    fn rebuilt(&self, objects: &Objects<T>) -> Arc<dyn ErasedIndex<T>> {
        type Group<K, T> = Vec<(K, Arc<T>)>;
        let mut groups: std::collections::HashMap<V, Group<T::Key, T>, Hasher> =
            std::collections::HashMap::with_hasher(Hasher::default());
        let mut scratch = Vec::new();
        for ObjEntry { key, obj } in objects.iter() {
            scratch.clear();
            (self.values_fn)(obj, &mut scratch);
            if scratch.len() > 1 {
                scratch.sort_unstable();
                scratch.dedup();
            }
            for value in scratch.drain(..) {
                groups
                    .entry(value)
                    .or_default()
                    .push((key.clone(), obj.clone()));
            }
        }
        let entries = groups.into_iter().filter_map(|(value, mut group)| {
            group.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let bucket = Bucket::from_sorted(group)?;
            Some(Arc::new(ValueEntry {
                value: Arc::new(value),
                bucket,
            }))
        });
        Arc::new(Self {
            name: self.name.clone(),
            unique: self.unique,
            values_fn: self.values_fn.clone(),
            buckets: Trie::from_entries(self.buckets.hasher().clone(), entries),
            scratch: (Vec::new(), Vec::new()),
        })
    }

    fn matching(&self, obj: &T) -> Vec<Arc<T>> {
        let values = self.values(obj);
        let mut found: Vec<(&T::Key, &Arc<T>)> = Vec::new();
        for value in &values {
            if let Some(bucket) = self.bucket(value) {
                found.extend(bucket.iter());
            }
        }
        if values.len() > 1 {
            found.sort_unstable_by(|a, b| a.0.cmp(b.0));
            found.dedup_by(|a, b| a.0 == b.0);
        }
        found.into_iter().map(|(_, o)| o.clone()).collect()
    }

    fn bucket_str(&self, value: &str) -> Option<Option<&Bucket<T::Key, T>>> {
        let me = (self as &dyn Any).downcast_ref::<TypedIndex<T, String>>()?;
        Some(me.bucket(value))
    }

    fn values_str(&self) -> Option<Vec<String>> {
        let me = (self as &dyn Any).downcast_ref::<TypedIndex<T, String>>()?;
        Some(me.values_iter().cloned().collect())
    }

    fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn debug_entries(&self) -> Vec<(String, T::Key, Arc<T>)> {
        let mut out = Vec::new();
        for e in self.buckets.iter() {
            let v = format!("{:?}", e.value);
            out.extend(
                e.bucket
                    .iter()
                    .map(|(k, o)| (v.clone(), k.clone(), o.clone())),
            );
        }
        out
    }

    fn debug_values(&self, obj: &T) -> Vec<String> {
        self.values(obj).iter().map(|v| format!("{v:?}")).collect()
    }

    fn prepare_drop(&self) {
        self.buckets.prepare_drop();
    }
}
