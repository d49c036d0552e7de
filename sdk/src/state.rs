//! Keyed state, owned and checkpointed by the host.

use std::cell::OnceCell;
use std::marker::PhantomData;

use crate::bindings::flinkw::plugin::state as wit_state;
use crate::codec::{decode_postcard, encode_postcard};
use crate::{Data, Error, KeyedContext};

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
    handle: OnceCell<wit_state::ValueState>,
    _value: PhantomData<T>,
}

impl<T: Data> ValueState<T> {
    /// A handle to the value state called `name`.
    pub fn new(name: &str) -> Self {
        ValueState { name: name.to_owned(), handle: OnceCell::new(), _value: PhantomData }
    }

    fn handle(&self) -> &wit_state::ValueState {
        self.handle.get_or_init(|| wit_state::ValueState::new(&self.name))
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
