//! # flinkw-host
//!
//! Everything that runs inside one flinkw process: the Wasm engine and
//! plugin loading ([`engine`], [`plugin`]), the job graph a plugin plans
//! ([`graph`]), key groups ([`keygroup`]), keyed state ([`state`]),
//! connectors ([`connector`]), object storage by URL ([`objstore`]) and
//! the embedded runtime that runs a job on local threads ([`runtime`]).
//!
//! ```no_run
//! use flinkw_host::{config::JobConfig, engine::Engine, limits::Limits, plugin::Plugin, runtime};
//!
//! let engine = Engine::new(Limits::default(), None)?;
//! let plugin = Plugin::load_file(&engine, "wordcount.wasm".as_ref())?;
//! let config = JobConfig::parse(&["input=words.txt"])?;
//! let report = runtime::run_job(&plugin, &config, runtime::RunOptions::default())?;
//! println!("{} finished in {:?}", report.name, report.duration);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod connector;
pub mod engine;
pub mod graph;
pub mod keygroup;
pub mod limits;
pub mod objstore;
pub mod plugin;
pub mod runtime;
pub mod state;
pub mod time;
pub mod window;

pub use flinkw_batch as batch;

/// Seeded pseudo-random numbers for the randomized tests.
#[cfg(test)]
mod test_rand {
    /// A seeded xorshift generator: `rand(n)` is in `0..n`.
    pub fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }
}
