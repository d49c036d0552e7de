//! `sink`: ends a stream in a host-side sink connector.

use super::Stream;
use crate::codec::{encode_postcard, encode_text};
use crate::graph::Port;
use crate::{Data, Sink};

impl<T: Data> Stream<T> {
    /// Sends the stream to `sink`. Text sinks (stdout, file) get strings as
    /// they are and other values as JSON, one per line.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::sequence(3)).sink(FileSink::new("out.txt"));
    /// # Ok(()) }
    /// ```
    pub fn sink<S: Sink>(self, sink: S) {
        let graph = self.graph.clone();
        let name = sink.name();
        let text = sink.is_text();
        let upstream = if self.steps.is_empty() && self.upstream_text == text {
            // Nothing to run and the bytes are already in the sink's format.
            self.upstream.clone()
        } else if text {
            Port::main(self.materialize(None, encode_text::<T>))
        } else {
            Port::main(self.materialize(None, encode_postcard::<T>))
        };
        graph.borrow_mut().add_sink(&upstream, &name, sink.connector());
    }
}
