//! `sink`: ends a stream in a host-side sink connector.

use super::Stream;
use crate::codec::encode_text;
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
            Port::main(self.materialize_postcard(None))
        };
        graph.borrow_mut().add_sink(&upstream, &name, sink.connector());
    }

    /// Sends the stream to `sink` with a key per record, made by `key`
    /// (a Kafka sink uses it as the record key, so equal keys share a
    /// partition).
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Datagen::sequence(3))
    ///     .sink_with_key(Kafka::sink("127.0.0.1:9092", "numbers"), |n: &u64| (n % 2).to_string());
    /// # Ok(()) }
    /// ```
    pub fn sink_with_key<S: Sink>(self, sink: S, key: impl Fn(&T) -> String + 'static) {
        let graph = self.graph.clone();
        let name = sink.name();
        let key: super::KeyFn<T> = Box::new(move |v: &T, out: &mut Vec<u8>| {
            out.extend_from_slice(key(v).as_bytes());
            Ok(())
        });
        let node = if sink.is_text() {
            self.materialize(Some(key), encode_text::<T>)
        } else {
            self.materialize_postcard(Some(key))
        };
        graph.borrow_mut().add_sink(&Port::main(node), &name, sink.connector());
    }

    /// Sends the stream to `sink` with each record's key and bytes made
    /// here (for sinks that read a layout of their own, such as Kafka's
    /// `headers=in-value` envelope).
    pub(crate) fn sink_encoded<S: Sink>(
        self,
        sink: S,
        key: super::KeyFn<T>,
        encode: impl Fn(&T, &mut Vec<u8>) -> Result<(), String> + 'static,
    ) {
        let graph = self.graph.clone();
        let name = sink.name();
        let node = self.materialize(Some(key), encode);
        graph.borrow_mut().add_sink(&Port::main(node), &name, sink.connector());
    }
}
