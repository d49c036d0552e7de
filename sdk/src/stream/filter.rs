//! `filter`: keeps the values a predicate accepts.

use super::Stream;
use crate::Data;
use crate::bindings::flinkw::plugin::types::StepKind;

impl<T: Data> Stream<T> {
    /// Keeps the values for which `f` returns true.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::sequence(100))
    ///     .filter(|n: &u64| n % 2 == 0)
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn filter(self, mut f: impl FnMut(&T) -> bool + 'static) -> Stream<T> {
        self.then(
            StepKind::Filter,
            "filter",
            move |v, ts, emit| {
                if f(&v) { emit(v, ts) } else { Ok(()) }
            },
        )
    }
}
