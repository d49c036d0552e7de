//! `map`: one value in, one value out.

use super::Stream;
use crate::Data;
use crate::bindings::flinkw::plugin::types::StepKind;

impl<T: Data> Stream<T> {
    /// Transforms each value.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::sequence(100))
    ///     .map(|n: u64| n * 2)
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn map<U: Data>(self, mut f: impl FnMut(T) -> U + 'static) -> Stream<U> {
        self.then(StepKind::Map, "map", move |v, ts, emit| emit(f(v), ts))
    }

    /// Transforms each value with a function that may fail; an error fails
    /// the job with its message.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(File::lines("numbers.txt"))
    ///     .try_map(|line: String| line.trim().parse::<i64>())
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn try_map<U: Data, E: std::fmt::Display>(
        self,
        mut f: impl FnMut(T) -> Result<U, E> + 'static,
    ) -> Stream<U> {
        self.then(StepKind::Map, "map", move |v, ts, emit| {
            emit(f(v).map_err(|e| e.to_string())?, ts)
        })
    }
}
