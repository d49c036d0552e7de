//! `key_by`: partitions a stream by key for keyed functions.

use super::{KeyFn, Stream};
use crate::Data;
use crate::bindings::flinkw::plugin::types::StepKind;
use crate::codec::encode_postcard;

/// A stream partitioned by key: every value of one key goes to the same
/// subtask, where keyed functions see that key's state.
pub struct KeyedStream<T, K> {
    pub(crate) stream: Stream<T>,
    pub(crate) key: KeyFn<T>,
    pub(crate) _key: std::marker::PhantomData<K>,
}

impl<T: Data> Stream<T> {
    /// Partitions the stream by the key `f` computes.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(File::lines("words.txt"))
    ///     .key_by(|word: &String| word.clone())
    ///     .reduce(|a: String, _b: String| a)
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn key_by<K: Data>(self, f: impl Fn(&T) -> K + 'static) -> KeyedStream<T, K> {
        let mut stream = self;
        stream.steps.push(crate::bindings::flinkw::plugin::types::Step {
            kind: StepKind::KeyBy,
            name: "key-by".to_owned(),
        });
        KeyedStream {
            stream,
            key: Box::new(move |v, out| encode_postcard(&f(v), out)),
            _key: std::marker::PhantomData,
        }
    }
}

impl<T: Data, K: Data> KeyedStream<T, K> {
    /// Names the key-by step.
    pub fn name(mut self, name: &str) -> Self {
        self.stream = self.stream.name(name);
        self
    }
}
