//! `flat_map`: one value in, any number out.

use super::Stream;
use crate::Data;
use crate::bindings::flinkw::plugin::types::StepKind;

impl<T: Data> Stream<T> {
    /// Turns each value into zero or more values.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(File::lines("words.txt"))
    ///     .flat_map(|line: String| {
    ///         line.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    ///     })
    ///     .sink(Stdout);
    /// # Ok(()) }
    /// ```
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        self,
        mut f: impl FnMut(T) -> I + 'static,
    ) -> Stream<U> {
        self.then(StepKind::FlatMap, "flat-map", move |v, ts, emit| {
            for out in f(v) {
                emit(out, ts)?;
            }
            Ok(())
        })
    }
}
