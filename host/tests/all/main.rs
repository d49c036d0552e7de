//! Host-level integration tests: several jobs in one process, sharing one
//! engine, the way a node hosts many plugins.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use flinkw_host::config::JobConfig;
use flinkw_host::engine::Engine;
use flinkw_host::limits::Limits;
use flinkw_host::plugin::{GuestError, Plugin, TrapCause};
use flinkw_host::runtime::{JobError, RunOptions, run_job};
use flinkw_tests::{artifacts, example};

mod fencing;

fn engine() -> Engine {
    let limits = Limits { call_timeout: Duration::from_secs(2), ..Limits::default() };
    Engine::new(limits, None).unwrap()
}

#[test]
fn a_looping_job_does_not_disturb_another_job_in_the_same_process() {
    let engine = engine();
    let bad = Plugin::load_file(&engine, artifacts::BAD_GUEST.as_ref()).unwrap();
    let good = Plugin::load_file(&engine, artifacts::FILTER_MAP.as_ref()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let out_file = out.path().join("orders.jsonl");

    let looping = std::thread::spawn(move || {
        run_job(&bad, &JobConfig::parse(&["mode=loop"]).unwrap(), RunOptions::default())
    });
    // While the other job spins, this one runs several times to completion.
    for _ in 0..5 {
        let config = JobConfig::parse(&[
            format!("input={}", example("data/orders.jsonl").display()),
            format!("output={}", out_file.display()),
        ])
        .unwrap();
        let report = run_job(&good, &config, RunOptions::default()).unwrap();
        assert_eq!(report.nodes.last().unwrap().records_out, 4);
        let expected = std::fs::read_to_string(example("expected/filter-map.jsonl")).unwrap();
        assert_eq!(std::fs::read_to_string(&out_file).unwrap(), expected);
    }
    let err = looping.join().unwrap().unwrap_err();
    match err {
        JobError::Guest { error: GuestError::Trapped { cause, .. }, .. } => {
            assert_eq!(cause, TrapCause::Deadline(Duration::from_secs(2)));
        }
        other => panic!("expected a deadline trap, got {other}"),
    }
}

#[test]
fn a_trapped_job_leaves_the_engine_usable() {
    let engine = engine();
    let bad = Plugin::load_file(&engine, artifacts::BAD_GUEST.as_ref()).unwrap();
    for mode in ["panic", "membomb", "recurse"] {
        let config = JobConfig::parse(&[format!("mode={mode}")]).unwrap();
        assert!(run_job(&bad, &config, RunOptions::default()).is_err(), "{mode}");
    }
    // The same plugin, same engine: a good run still works.
    let report =
        run_job(&bad, &JobConfig::parse(&["mode=ok", "count=20"]).unwrap(), RunOptions::default())
            .unwrap();
    assert_eq!(report.nodes.last().unwrap().records_out, 20);
}
