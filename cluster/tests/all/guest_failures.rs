//! A guest that panics, fails, loops, eats memory or recurses forever fails
//! its job with a message that says so, and the host exits cleanly.

use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

fn bad_guest(mode: &str, extra: &[&str]) -> flinkw_tests::Run {
    let dir = tempfile::tempdir().unwrap();
    let set_mode = format!("mode={mode}");
    let mut args = vec!["run", artifacts::BAD_GUEST, "--set", &set_mode];
    args.extend_from_slice(extra);
    flinkw(&args, dir.path())
}

#[test]
fn a_well_behaved_run_passes_every_record() {
    let run = bad_guest("ok", &[]);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        (0..10).map(|n| n.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn a_panic_shows_the_message_and_the_guest_stack() {
    let run = bad_guest("panic", &[]);
    assert_fails_with(
        &run,
        &["misbehave", "the guest panicked", "boom at record 3", "guest stack", "explode"],
    );
}

#[test]
fn an_error_from_the_guest_is_shown() {
    let run = bad_guest("error", &[]);
    assert_fails_with(&run, &["misbehave", "cannot handle record 3"]);
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    let run = bad_guest("loop", &["--call-timeout", "0.5"]);
    assert_fails_with(&run, &["ran past its deadline of 500ms", "spin_forever"]);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_limit() {
    let run = bad_guest("membomb", &["--memory-limit", "64"]);
    assert_fails_with(&run, &["ran out of memory", "over its limit of 64 MiB"]);
}

#[test]
fn unbounded_recursion_is_stopped_by_the_stack_limit() {
    let run = bad_guest("recurse", &[]);
    assert_fails_with(&run, &["overflowed its stack", "recurse_forever"]);
}

#[test]
fn a_plan_error_is_shown() {
    let run = bad_guest("plan-error", &[]);
    assert_fails_with(&run, &["plan failed: this plugin refuses to plan"]);
}

#[test]
fn a_failed_job_restarts_when_allowed() {
    let run = bad_guest("panic-first", &[]);
    assert_fails_with(&run, &["boom at record 3"]);
    let run = bad_guest("panic-first", &["--restarts", "2", "--restart-delay", "10"]);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains("boom at record 3"), "{}", run.stderr);
    assert!(run.stderr.contains("restarting in 10 ms (attempt 1 of 2)"), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 10);
}

/// `--restart-window`: Flink's failure-rate strategy. Two restarts per
/// 0.3 s: a job failing every 400 ms restarts as often as it needs (here
/// 4 times, more than 2 in all); one failing every 10 ms stops at the
/// third failure within the window, saying why.
#[test]
fn a_failure_rate_restarts_sparse_failures_and_stops_a_burst() {
    let rate = ["--set", "until=4", "--restarts", "2", "--restart-window", "0.3"];
    let run = bad_guest("panic-until", &[&rate[..], &["--restart-delay", "400"]].concat());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stderr.matches("boom at record 3").count(), 4, "{}", run.stderr);
    let message = "restarting in 400 ms (attempt 4; at most 2 restarts per 0.3 s)";
    assert!(run.stderr.contains(message), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 10);

    let run = bad_guest("panic-until", &[&rate[..], &["--restart-delay", "10"]].concat());
    assert_fails_with(&run, &["boom at record 3"]);
    assert!(run.stderr.contains("no restart: 3 failures within 0.3 s"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("restarting in").count(), 2, "{}", run.stderr);
}
