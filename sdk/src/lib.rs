//! # flinkw — the Rust SDK for flinkw plugins
//!
//! A flinkw job is one WebAssembly component. This crate lets you write it as
//! a fluent pipeline, like Flink's DataStream API, and exports it with one
//! macro:
//!
//! ```no_run
//! use flinkw::prelude::*;
//!
//! fn job(env: &mut Env) -> Result<(), Error> {
//!     let input = env.config().require("input")?;
//!     env.source(File::lines(&input))
//!         .filter(|line: &String| !line.is_empty())
//!         .map(|line: String| line.to_uppercase())
//!         .sink(Stdout);
//!     Ok(())
//! }
//!
//! flinkw::export_job!(job);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`) and run it with `flinkw run target/wasm32-wasip2/release/NAME.wasm`.
//!
//! How it runs: `plan` turns the pipeline into a job graph for the host.
//! Consecutive stateless steps (`map`, `filter`, `flat_map`, `key_by`) are
//! **fused**: the host calls the guest once per batch for the whole chain, and
//! values pass between the steps as plain Rust values, never re-encoded.
//! Values that cross to the host (between a key-by and a keyed function, for
//! example) are encoded with `postcard`; the [`Data`] trait covers every type
//! with serde's `Serialize` and `Deserialize`.

mod bindings;
mod codec;
mod connector;
mod env;
mod error;
mod graph;
mod kafka;
mod log;
pub mod nexmark;
mod objects;
mod state;
mod stream;

pub use codec::Data;
pub use connector::{
    Bid, Blackhole, Datagen, DatagenSource, File, FileSink, FileSource, PartFileSink, Sink, Source,
    Stdout,
};
pub use env::{Config, Env};
pub use error::Error;
pub use kafka::{Kafka, KafkaRecord, KafkaSink, KafkaSource};
pub use log::{Level, counter_add, gauge_set, log};
pub use objects::{ObjectSink, ObjectSource, Objects};
pub use state::{AggregatingState, ListState, MapState, ReducingState, StateTtl, ValueState};
pub use stream::{
    AggregateFunction, CoProcessFunction, Collector, ConnectedStreams, CountWindowedStream,
    IntervalJoin, KeyedContext, KeyedProcessFunction, KeyedStream, Session, Sliding, Stream,
    TimeDomain, TimeWindow, Tumbling, WatermarkStrategy, WindowAssigner, WindowJoin,
    WindowedStream,
};

/// Everything a job usually needs, in one import.
pub mod prelude {
    pub use crate::{
        AggregateFunction, AggregatingState, Bid, Blackhole, CoProcessFunction, Collector, Data,
        Datagen, Env, Error, File, FileSink, Kafka, KafkaRecord, KeyedContext,
        KeyedProcessFunction, KeyedStream, ListState, MapState, Objects, PartFileSink,
        ReducingState, Session, Sliding, StateTtl, Stdout, Stream, TimeDomain, TimeWindow,
        Tumbling, ValueState, WatermarkStrategy, WindowAssigner, WindowedStream,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::env::JobFn;
}

/// Declares **whole-memory capture**: at every checkpoint the host saves the
/// plugin's whole linear memory and globals, and after a failure it restores
/// them into a fresh instance. State kept in ordinary variables (statics,
/// `thread_local!`s) then survives failures without [`Env::guest_state`].
///
/// Use it once per plugin crate, next to [`export_job!`]. It adds the custom
/// section `flinkw:state-capture` (content `memory`) to the component; the
/// WIT exports do not change. Costs and limits (no rescaling, the image fits
/// only the same build, no `migrate`): `docs/checkpoints.md`. State handles
/// ([`ValueState`] ...) may be kept across calls: they are opened again
/// after a restore.
///
/// ```no_run
/// # use flinkw::prelude::*;
/// static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// fn job(env: &mut Env) -> Result<(), Error> {
///     env.source(Datagen::sequence(10))
///         .map(|n: u64| n + SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
///         .sink(Stdout);
///     Ok(())
/// }
/// flinkw::export_job!(job);
/// flinkw::capture_memory!();
/// ```
#[macro_export]
macro_rules! capture_memory {
    () => {
        #[used]
        #[unsafe(link_section = "flinkw:state-capture")]
        static __FLINKW_STATE_CAPTURE: [u8; 6] = *b"memory";
    };
}

/// Exports `job` (a `fn(&mut Env) -> Result<(), Error>`) as this plugin's job.
///
/// Use it once per plugin crate:
///
/// ```no_run
/// # use flinkw::prelude::*;
/// fn job(env: &mut Env) -> Result<(), Error> {
///     env.source(Datagen::sequence(10)).sink(Stdout);
///     Ok(())
/// }
/// flinkw::export_job!(job);
/// ```
#[macro_export]
macro_rules! export_job {
    ($job:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __flinkw_job(env: &mut $crate::Env) -> ::core::result::Result<(), $crate::Error> {
            let job: $crate::__private::JobFn = $job;
            job(env)
        }
    };
}
