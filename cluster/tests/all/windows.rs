//! Event-time windows: the output equals a simple reference model, at any
//! parallelism; late records are dropped or, within the allowed lateness,
//! update their window; bad window definitions are refused.

use std::collections::BTreeMap;

use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

struct Event {
    ts: i64,
    key: String,
    value: i64,
}

/// Events with up to `disorder` ms of disorder, over several keys.
fn events(n: usize, disorder: i64) -> Vec<Event> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    (0..n)
        .map(|i| Event {
            ts: 1_700_000_000_000 + (i as i64) * 37 - rand(disorder as u64) as i64,
            key: format!("k{}", rand(7)),
            value: rand(1000) as i64,
        })
        .collect()
}

fn write_csv(dir: &std::path::Path, events: &[Event]) -> String {
    let mut csv = String::from("ts,key,value\n");
    for e in events {
        csv.push_str(&format!("{},{},{}\n", e.ts, e.key, e.value));
    }
    let path = dir.join("events.csv");
    std::fs::write(&path, csv).unwrap();
    path.display().to_string()
}

/// `key,start,end,count,max` lines from (key, start, end) → values.
fn lines(groups: BTreeMap<(String, i64, i64), Vec<i64>>) -> Vec<String> {
    let mut v: Vec<String> = groups
        .into_iter()
        .map(|((k, s, e), vals)| {
            format!("{k},{s},{e},{},{}", vals.len(), vals.iter().max().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn tumbling_model(events: &[Event], size: i64) -> Vec<String> {
    let mut g: BTreeMap<(String, i64, i64), Vec<i64>> = BTreeMap::new();
    for e in events {
        let start = e.ts - e.ts.rem_euclid(size);
        g.entry((e.key.clone(), start, start + size)).or_default().push(e.value);
    }
    lines(g)
}

fn sliding_model(events: &[Event], size: i64, slide: i64) -> Vec<String> {
    let mut g: BTreeMap<(String, i64, i64), Vec<i64>> = BTreeMap::new();
    for e in events {
        let mut start = e.ts - e.ts.rem_euclid(slide);
        while start > e.ts - size {
            g.entry((e.key.clone(), start, start + size)).or_default().push(e.value);
            start -= slide;
        }
    }
    lines(g)
}

fn session_model(events: &[Event], gap: i64) -> Vec<String> {
    let mut by_key: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.key.clone()).or_default().push((e.ts, e.value));
    }
    let mut g: BTreeMap<(String, i64, i64), Vec<i64>> = BTreeMap::new();
    for (key, mut evs) in by_key {
        evs.sort();
        let mut session: Vec<(i64, i64)> = Vec::new();
        let mut flush = |s: &mut Vec<(i64, i64)>| {
            if let (Some(first), Some(last)) = (s.first(), s.last()) {
                let vals = s.iter().map(|(_, v)| *v).collect();
                g.insert((key.clone(), first.0, last.0 + gap), vals);
            }
            s.clear();
        };
        for ev in evs {
            if session.last().is_some_and(|l| ev.0 > l.0 + gap) {
                flush(&mut session);
            }
            session.push(ev);
        }
        flush(&mut session);
    }
    lines(g)
}

fn run_windows(input: &str, extra: &[&str], dir: &std::path::Path) -> flinkw_tests::Run {
    let set_input = format!("input={input}");
    let mut args = vec!["run", artifacts::WINDOWED_COUNT, "--set", &set_input];
    args.extend_from_slice(extra);
    flinkw(&args, dir)
}

#[test]
fn tumbling_windows_match_the_model_at_parallelism_1_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(5000, 800);
    let input = write_csv(dir.path(), &evs);
    let expected = tumbling_model(&evs, 10_000);
    let one = run_windows(&input, &[], dir.path());
    assert!(one.ok(), "{}", one.stderr);
    assert_eq!(one.sorted_lines(), expected);
    let four =
        run_windows(&input, &["--set", "parallelism=4", "--set", "batch.size=100"], dir.path());
    assert!(four.ok(), "{}", four.stderr);
    assert_eq!(four.sorted_lines(), expected);
    assert!(!one.stderr.contains("dropped"), "{}", one.stderr);
}

/// Thousands of keys per window: a watermark makes more windows due than
/// a task fires at once, so they fire in slices between input batches
/// (and watermarks) — the output is still exactly the model's.
#[test]
fn windows_firing_in_slices_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = events(36_000, 300);
    for (i, e) in evs.iter_mut().enumerate() {
        // One event per ms over 3,000 keys: ~3,000 windows per 10 s.
        e.ts = 1_700_000_000_000 + i as i64 - (e.ts % 300);
        e.key = format!("k{}", (i * 7919) % 3000);
    }
    let input = write_csv(dir.path(), &evs);
    let expected = tumbling_model(&evs, 10_000);
    assert!(expected.len() > 3 * 2000, "{} windows", expected.len());
    for p in ["1", "2"] {
        let set_p = format!("parallelism={p}");
        let run = run_windows(&input, &["--set", &set_p, "--set", "batch.size=64"], dir.path());
        assert!(run.ok(), "{}", run.stderr);
        assert!(run.sorted_lines() == expected, "parallelism {p}: output differs from the model");
        assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
    }
}

#[test]
fn sliding_windows_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(3000, 500);
    let input = write_csv(dir.path(), &evs);
    let run = run_windows(
        &input,
        &[
            "--set",
            "window=sliding",
            "--set",
            "size-ms=10000",
            "--set",
            "slide-ms=2000",
            "--set",
            "parallelism=2",
        ],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.sorted_lines(), sliding_model(&evs, 10_000, 2_000));
}

#[test]
fn session_windows_merge_like_the_model() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse events so that sessions both form and merge.
    let evs: Vec<Event> = events(2000, 300)
        .into_iter()
        .enumerate()
        .map(|(i, e)| Event { ts: e.ts + (i as i64 / 50) * 4_000, ..e })
        .collect();
    let input = write_csv(dir.path(), &evs);
    let run = run_windows(
        &input,
        &["--set", "window=session", "--set", "gap-ms=1500", "--set", "parallelism=3"],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let expected = session_model(&evs, 1_500);
    assert!(expected.len() > 20, "the data makes many sessions");
    assert_eq!(run.sorted_lines(), expected);
}

#[test]
fn full_window_functions_see_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(3000, 500);
    let input = write_csv(dir.path(), &evs);
    let tumbling =
        run_windows(&input, &["--set", "function=process", "--set", "parallelism=2"], dir.path());
    assert!(tumbling.ok(), "{}", tumbling.stderr);
    assert_eq!(tumbling.sorted_lines(), tumbling_model(&evs, 10_000));
    let sessions = run_windows(
        &input,
        &["--set", "function=process", "--set", "window=session", "--set", "gap-ms=60"],
        dir.path(),
    );
    assert!(sessions.ok(), "{}", sessions.stderr);
    assert_eq!(sessions.sorted_lines(), session_model(&evs, 60));
}

fn late_events(dir: &std::path::Path) -> String {
    let evs = [(1_000, 5), (20_000, 7), (1_500, 9)].map(|(ts, value)| Event {
        ts,
        key: "k".into(),
        value,
    });
    write_csv(dir, &evs)
}

#[test]
fn a_late_record_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = late_events(dir.path());
    // A watermark after every record (Flink's auto-watermark interval of 0):
    // the three records travel in one batch, yet the third is judged late
    // against the watermark the second one raised.
    let run = run_windows(&input, &["--set", "watermark.interval-ms=0"], dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.sorted_lines(), vec!["k,0,10000,1,5", "k,20000,30000,1,7"]);
    assert!(run.stderr.contains("dropped 1 record(s)"), "{}", run.stderr);
}

#[test]
fn late_records_can_go_to_a_side_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = late_events(dir.path());
    let late_file = dir.path().join("late.csv");
    let set_late = format!("late-output={}", late_file.display());
    let run =
        run_windows(&input, &["--set", "watermark.interval-ms=0", "--set", &set_late], dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.sorted_lines(), vec!["k,0,10000,1,5", "k,20000,30000,1,7"]);
    assert_eq!(std::fs::read_to_string(&late_file).unwrap(), "1500,k,9\n");
    assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
}

#[test]
fn a_union_of_two_sources_windows_all_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(3000, 400);
    let (a, b): (Vec<&Event>, Vec<&Event>) = evs.iter().partition(|e| e.value % 2 == 0);
    let to_csv = |events: Vec<&Event>, name: &str| {
        let mut csv = String::from("ts,key,value\n");
        for e in events {
            csv.push_str(&format!("{},{},{}\n", e.ts, e.key, e.value));
        }
        let path = dir.path().join(name);
        std::fs::write(&path, csv).unwrap();
        path.display().to_string()
    };
    let first = to_csv(a, "a.csv");
    let second = format!("input2={}", to_csv(b, "b.csv"));
    let run = run_windows(&first, &["--set", &second, "--set", "parallelism=2"], dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.sorted_lines(), tumbling_model(&evs, 10_000));
}

#[test]
fn allowed_lateness_updates_and_refires_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let input = late_events(dir.path());
    let run = run_windows(
        &input,
        &["--set", "watermark.interval-ms=0", "--set", "lateness-ms=15000"],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        vec!["k,0,10000,1,5", "k,0,10000,2,9", "k,20000,30000,1,7"]
    );
    assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
}

#[test]
fn bad_windows_and_records_without_time_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |mode: &str| {
        flinkw(&["run", artifacts::BAD_GUEST, "--set", &format!("mode={mode}")], dir.path())
    };
    assert_fails_with(&bad("zero-window"), &["window size must be positive, got 0 ms"]);
    assert_fails_with(
        &bad("bad-slide"),
        &["window slide 20000 ms is larger than its size 10000 ms"],
    );
    assert_fails_with(&bad("no-event-time"), &["has no event time", "assign_timestamps"]);
}

/// The benchmark workloads count every bid: once in W2's tumbling windows,
/// five times in W3's 10 s / 2 s sliding windows; none is late.
#[test]
fn benchmark_windows_count_every_bid() {
    let dir = tempfile::tempdir().unwrap();
    for (workload, copies) in [("w2", 1), ("w3", 5)] {
        let run = flinkw(
            &[
                "run",
                artifacts::NEXMARK_WINDOWS,
                "--set",
                &format!("workload={workload}"),
                "--set",
                "count=300000",
                "--set",
                "output=stdout",
                "--set",
                "parallelism=2",
            ],
            dir.path(),
        );
        assert!(run.ok(), "{}", run.stderr);
        let total: u64 =
            run.stdout.lines().map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap()).sum();
        assert_eq!(total, 300_000 * copies, "{workload}");
        assert!(!run.stderr.contains("dropped"), "{}", run.stderr);
    }
}

/// Records arriving over about 1.5 s land in several 300 ms windows of
/// the wall clock, and every record is counted once.
#[test]
fn processing_time_windows_follow_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(
        &[
            "run",
            artifacts::BAD_GUEST,
            "--set",
            "mode=processing-windows",
            "--set",
            "count=30",
            "--set",
            "rate=20",
        ],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let counts: Vec<u64> = run.stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30);
    assert!(counts.len() >= 2, "one window for a second of records: {counts:?}");
}
