//! The generated WIT bindings, kept private, and the exports that connect
//! them to the job registered with [`crate::export_job!`].

#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    world: "versioned-job",
    path: "../wit",
    generate_all,
});

use self::exports::flinkw::plugin::{keyed, plan, snapshot, transform, upgrade, window};
use self::flinkw::plugin::types;
use crate::graph;

struct Plugin;

impl plan::Guest for Plugin {
    fn plan(config: types::Settings) -> Result<types::JobGraph, String> {
        crate::log::install_panic_hook();
        graph::plan(config)
    }
}

impl transform::Guest for Plugin {
    fn run(chain: u32, input: types::Batch) -> Result<types::Batch, String> {
        graph::run_chain(chain, &input)
    }
}

impl keyed::Guest for Plugin {
    fn process(function: u32, input: types::Batch) -> Result<types::Batch, String> {
        graph::run_keyed(function, &input)
    }

    fn on_timer(function: u32, timers: types::Batch) -> Result<types::Batch, String> {
        graph::run_timers(function, &timers)
    }
}

impl snapshot::Guest for Plugin {
    fn snapshot() -> Vec<u8> {
        graph::snapshot()
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        graph::restore(&state)
    }
}

impl upgrade::Guest for Plugin {
    fn version() -> String {
        graph::version()
    }

    fn migrate(from_version: String, state: Vec<u8>) -> Result<Vec<u8>, String> {
        graph::migrate(&from_version, state)
    }
}

impl window::Guest for Plugin {
    fn accumulate(
        function: u32,
        accumulators: Vec<Option<Vec<u8>>>,
        input: types::Batch,
        targets: Vec<(u32, u32)>,
    ) -> Result<Vec<Vec<u8>>, String> {
        graph::with_window(function, |w| (w.accumulate)(accumulators, &input, &targets))
    }

    fn merge(function: u32, accumulators: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        graph::with_window(function, |w| (w.merge)(accumulators))
    }

    fn emit(function: u32, fired: Vec<window::FiredWindow>) -> Result<types::Batch, String> {
        graph::with_window(function, |w| (w.emit)(fired))
    }

    fn process(function: u32, fired: Vec<window::WindowElements>) -> Result<types::Batch, String> {
        graph::with_window(function, |w| (w.process)(fired))
    }
}

export!(Plugin);
