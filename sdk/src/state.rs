//! Keyed state, owned and checkpointed by the host.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::bindings::flinkw::plugin::state as wit_state;
use crate::codec::{decode_postcard, encode_postcard};
use crate::{Data, Error, KeyedContext};

/// Host handles opened before a whole-memory restore belong to the old
/// instance: the host's `restore` with an empty list advances this, and
/// handles of an older epoch are opened again (see [`crate::capture_memory`]).
static HANDLE_EPOCH: AtomicU32 = AtomicU32::new(0);

/// The plugin's memory was restored into a fresh instance: every host
/// handle it holds is gone.
pub(crate) fn host_handles_lost() {
    HANDLE_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// A host state handle, opened on first use (and again after a
/// whole-memory restore).
struct Lazy<H>(RefCell<Option<(u32, Rc<H>)>>);

impl<H> Lazy<H> {
    fn new() -> Self {
        Lazy(RefCell::new(None))
    }

    fn get(&self, open: impl FnOnce() -> H) -> Rc<H> {
        let epoch = HANDLE_EPOCH.load(Ordering::Relaxed);
        let mut cell = self.0.borrow_mut();
        if let Some((e, h)) = &*cell
            && *e == epoch
        {
            return h.clone();
        }
        // A stale handle must not be dropped: dropping tells the host to
        // free it, and this instance's host never gave it out.
        if let Some((_, stale)) = cell.take() {
            std::mem::forget(stale);
        }
        let h = Rc::new(open());
        *cell = Some((epoch, h.clone()));
        h
    }
}

/// A time-to-live for state (Flink's `StateTtlConfig`), in processing
/// time: by default an entry lives `ttl` after its last write and is never
/// returned once expired.
///
/// ```no_run
/// # use flinkw::prelude::*;
/// # use std::time::Duration;
/// let last_seen = ValueState::<i64>::with_ttl("last-seen", StateTtl::new(Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StateTtl(wit_state::TtlConfig);

impl StateTtl {
    /// Entries live `ttl` after their last write.
    pub fn new(ttl: std::time::Duration) -> Self {
        StateTtl(wit_state::TtlConfig {
            millis: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            update_on_read: false,
            return_expired: false,
        })
    }

    /// Reads renew entries too (`OnReadAndWrite`).
    pub fn update_on_read(mut self) -> Self {
        self.0.update_on_read = true;
        self
    }

    /// Expired entries not yet cleaned up may still be returned
    /// (`ReturnExpiredIfNotCleanedUp`).
    pub fn return_expired(mut self) -> Self {
        self.0.return_expired = true;
        self
    }
}

/// One value per key, kept by the host (Flink's `ValueState`).
///
/// Create it in the job function and move it into a keyed function; every
/// read and write is for the key of the record being processed:
///
/// ```no_run
/// # use flinkw::prelude::*;
/// # fn job(env: &mut Env) -> Result<(), Error> {
/// let seen = ValueState::<u64>::new("seen");
/// env.source(File::lines("words.txt"))
///     .key_by(|w: &String| w.clone())
///     .process(move |ctx, word: String, out| {
///         let n = seen.get(ctx)?.unwrap_or(0) + 1;
///         seen.set(ctx, &n)?;
///         out.emit(format!("{word} {n}"));
///         Ok(())
///     })
///     .sink(Stdout);
/// # Ok(()) }
/// ```
pub struct ValueState<T> {
    name: String,
    ttl: Option<wit_state::TtlConfig>,
    handle: Lazy<wit_state::ValueState>,
    _value: PhantomData<T>,
}

impl<T: Data> ValueState<T> {
    /// A handle to the value state called `name`.
    pub fn new(name: &str) -> Self {
        ValueState { name: name.to_owned(), ttl: None, handle: Lazy::new(), _value: PhantomData }
    }

    /// A handle to the value state called `name` whose values expire.
    pub fn with_ttl(name: &str, ttl: StateTtl) -> Self {
        ValueState { ttl: Some(ttl.0), ..Self::new(name) }
    }

    fn handle(&self) -> Rc<wit_state::ValueState> {
        self.handle.get(|| wit_state::ValueState::new(&self.name, self.ttl))
    }

    /// The value for the current key, if any.
    pub fn get(&self, ctx: &KeyedContext) -> Result<Option<T>, Error> {
        match self.handle().get(ctx.record) {
            None => Ok(None),
            Some(bytes) => decode_postcard(&bytes).map(Some).map_err(|e| {
                Error::msg(format!("value state `{}` holds bytes of another type: {e}", self.name))
            }),
        }
    }

    /// Sets the value for the current key.
    pub fn set(&self, ctx: &KeyedContext, value: &T) -> Result<(), Error> {
        let mut bytes = Vec::new();
        encode_postcard(value, &mut bytes).map_err(Error::msg)?;
        self.handle().set(ctx.record, &bytes);
        Ok(())
    }

    /// Removes the value for the current key.
    pub fn clear(&self, ctx: &KeyedContext) {
        self.handle().clear(ctx.record);
    }
}

/// A list of values per key, kept by the host (Flink's `ListState`).
///
/// ```no_run
/// # use flinkw::prelude::*;
/// # fn job(env: &mut Env) -> Result<(), Error> {
/// let seen = ListState::<String>::new("seen");
/// env.source(File::lines("words.txt"))
///     .key_by(|w: &String| w.len())
///     .process(move |ctx, word: String, out| {
///         seen.add(ctx, &word)?;
///         out.emit(seen.get(ctx)?.join(" "));
///         Ok(())
///     })
///     .sink(Stdout);
/// # Ok(()) }
/// ```
pub struct ListState<T> {
    name: String,
    ttl: Option<wit_state::TtlConfig>,
    handle: Lazy<wit_state::ListState>,
    _value: PhantomData<T>,
}

impl<T: Data> ListState<T> {
    /// A handle to the list state called `name`.
    pub fn new(name: &str) -> Self {
        ListState { name: name.to_owned(), ttl: None, handle: Lazy::new(), _value: PhantomData }
    }

    /// A handle to the list state called `name` whose lists expire.
    pub fn with_ttl(name: &str, ttl: StateTtl) -> Self {
        ListState { ttl: Some(ttl.0), ..Self::new(name) }
    }

    fn handle(&self) -> Rc<wit_state::ListState> {
        self.handle.get(|| wit_state::ListState::new(&self.name, self.ttl))
    }

    /// The current key's list (empty if none).
    pub fn get(&self, ctx: &KeyedContext) -> Result<Vec<T>, Error> {
        self.handle().get(ctx.record).iter().map(|b| decode(&self.name, "list", b)).collect()
    }

    /// Appends to the current key's list.
    pub fn add(&self, ctx: &KeyedContext, value: &T) -> Result<(), Error> {
        self.handle().add(ctx.record, &encode(value)?);
        Ok(())
    }

    /// Replaces the current key's list.
    pub fn update(&self, ctx: &KeyedContext, values: &[T]) -> Result<(), Error> {
        let encoded = values.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        self.handle().update(ctx.record, &encoded);
        Ok(())
    }

    /// Removes the current key's list.
    pub fn clear(&self, ctx: &KeyedContext) {
        self.handle().clear(ctx.record);
    }
}

/// A map per key, kept by the host (Flink's `MapState`). Entries come back
/// in the order of the map keys' encoded bytes.
///
/// ```no_run
/// # use flinkw::prelude::*;
/// # fn job(env: &mut Env) -> Result<(), Error> {
/// let per_word = MapState::<String, u64>::new("per-word");
/// env.source(File::lines("words.txt"))
///     .key_by(|w: &String| w.len())
///     .process(move |ctx, word: String, out| {
///         let n = per_word.get(ctx, &word)?.unwrap_or(0) + 1;
///         per_word.put(ctx, &word, &n)?;
///         out.emit(format!("{word} {n}"));
///         Ok(())
///     })
///     .sink(Stdout);
/// # Ok(()) }
/// ```
pub struct MapState<K, V> {
    name: String,
    ttl: Option<wit_state::TtlConfig>,
    handle: Lazy<wit_state::MapState>,
    _types: PhantomData<(K, V)>,
}

impl<K: Data, V: Data> MapState<K, V> {
    /// A handle to the map state called `name`.
    pub fn new(name: &str) -> Self {
        MapState { name: name.to_owned(), ttl: None, handle: Lazy::new(), _types: PhantomData }
    }

    /// A handle to the map state called `name` whose entries expire.
    pub fn with_ttl(name: &str, ttl: StateTtl) -> Self {
        MapState { ttl: Some(ttl.0), ..Self::new(name) }
    }

    fn handle(&self) -> Rc<wit_state::MapState> {
        self.handle.get(|| wit_state::MapState::new(&self.name, self.ttl))
    }

    /// The value under `key` in the current key's map.
    pub fn get(&self, ctx: &KeyedContext, key: &K) -> Result<Option<V>, Error> {
        match self.handle().get(ctx.record, &encode(key)?) {
            None => Ok(None),
            Some(b) => decode(&self.name, "map", &b).map(Some),
        }
    }

    /// Sets `key` to `value` in the current key's map.
    pub fn put(&self, ctx: &KeyedContext, key: &K, value: &V) -> Result<(), Error> {
        self.handle().put(ctx.record, &encode(key)?, &encode(value)?);
        Ok(())
    }

    /// Removes `key` from the current key's map.
    pub fn remove(&self, ctx: &KeyedContext, key: &K) -> Result<(), Error> {
        self.handle().remove(ctx.record, &encode(key)?);
        Ok(())
    }

    /// Every entry of the current key's map.
    pub fn entries(&self, ctx: &KeyedContext) -> Result<Vec<(K, V)>, Error> {
        self.handle()
            .entries(ctx.record)
            .iter()
            .map(|(k, v)| Ok((decode(&self.name, "map", k)?, decode(&self.name, "map", v)?)))
            .collect()
    }

    /// Removes the current key's whole map.
    pub fn clear(&self, ctx: &KeyedContext) {
        self.handle().clear(ctx.record);
    }
}

fn encode<T: Data>(value: &T) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    encode_postcard(value, &mut bytes).map_err(Error::msg)?;
    Ok(bytes)
}

fn decode<T: Data>(name: &str, kind: &str, bytes: &[u8]) -> Result<T, Error> {
    decode_postcard(bytes)
        .map_err(|e| Error::msg(format!("{kind} state `{name}` holds bytes of another type: {e}")))
}

/// A value per key that folds each added value in with a reduce function
/// (Flink's `ReducingState`).
///
/// ```no_run
/// # use flinkw::prelude::*;
/// let longest = ReducingState::new("longest", |a: String, b: String| if b.len() > a.len() { b } else { a });
/// ```
pub struct ReducingState<T> {
    value: ValueState<T>,
    reduce: Box<dyn Fn(T, T) -> T>,
}

impl<T: Data> ReducingState<T> {
    /// A reducing state called `name` that combines values with `reduce`.
    pub fn new(name: &str, reduce: impl Fn(T, T) -> T + 'static) -> Self {
        ReducingState { value: ValueState::new(name), reduce: Box::new(reduce) }
    }

    /// The current key's reduced value, if any value was added.
    pub fn get(&self, ctx: &KeyedContext) -> Result<Option<T>, Error> {
        self.value.get(ctx)
    }

    /// Folds `value` into the current key's value.
    pub fn add(&self, ctx: &KeyedContext, value: T) -> Result<(), Error> {
        let next = match self.value.get(ctx)? {
            Some(acc) => (self.reduce)(acc, value),
            None => value,
        };
        self.value.set(ctx, &next)
    }

    /// Removes the current key's value.
    pub fn clear(&self, ctx: &KeyedContext) {
        self.value.clear(ctx);
    }
}

/// A value per key kept as an aggregate's accumulator (Flink's
/// `AggregatingState`): `add` takes inputs, `get` gives the aggregate's
/// result.
pub struct AggregatingState<T, A: crate::AggregateFunction<T>> {
    acc: ValueState<A::Acc>,
    agg: A,
    _input: PhantomData<T>,
}

impl<T, A: crate::AggregateFunction<T>> AggregatingState<T, A> {
    /// An aggregating state called `name` using `agg`.
    pub fn new(name: &str, agg: A) -> Self {
        AggregatingState { acc: ValueState::new(name), agg, _input: PhantomData }
    }

    /// The aggregate of everything added for the current key, if anything was.
    pub fn get(&self, ctx: &KeyedContext) -> Result<Option<A::Out>, Error> {
        Ok(self.acc.get(ctx)?.map(|acc| self.agg.result(acc)))
    }

    /// Adds `value` to the current key's aggregate.
    pub fn add(&self, ctx: &KeyedContext, value: &T) -> Result<(), Error> {
        let mut acc = self.acc.get(ctx)?.unwrap_or_else(|| self.agg.create_accumulator());
        self.agg.add(&mut acc, value);
        self.acc.set(ctx, &acc)
    }

    /// Removes the current key's aggregate.
    pub fn clear(&self, ctx: &KeyedContext) {
        self.acc.clear(ctx);
    }
}
