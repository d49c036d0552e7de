//! Keyed process functions with event-time timers.

use std::collections::BTreeMap;

use flinkw_tests::artifacts;

use crate::flinkw;

/// The reference model, record by record as Flink runs it with a
/// watermark after every record (bound 1000 ms): a key's event registers a
/// timer at `ts + gap` if it is the key's newest; a timer alerts if the key
/// saw nothing newer by the time the watermark reaches it.
fn expected(events: &[(i64, String)], gap: i64) -> Vec<String> {
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    let mut timers: std::collections::BTreeSet<(i64, &str)> = Default::default();
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    let mut fire = |wm: i64,
                    timers: &mut std::collections::BTreeSet<(i64, &str)>,
                    last: &BTreeMap<&str, i64>| {
        while let Some(&(t, k)) = timers.first().filter(|(t, _)| *t <= wm) {
            timers.remove(&(t, k));
            if last[k] + gap == t {
                out.push(format!("{k},{},{t}", t - gap));
            }
        }
    };
    for (ts, k) in events {
        if last.get(k.as_str()).is_none_or(|l| ts > l) {
            last.insert(k, *ts);
            timers.insert((ts + gap, k));
        }
        max_ts = max_ts.max(*ts);
        fire(max_ts - 1001, &mut timers, &last);
    }
    fire(i64::MAX, &mut timers, &last);
    out.sort();
    out
}

#[test]
fn inactivity_alerts_fire_from_event_time_timers() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let mut seed = 12345u64;
    let mut ts = 1_000_000i64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // Mostly small steps, sometimes long pauses; disorder under 1 s.
        ts += if (seed >> 33).is_multiple_of(50) { 15_000 } else { ((seed >> 40) % 400) as i64 };
        let jitter = ((seed >> 20) % 700) as i64;
        events.push((ts - jitter, format!("k{}", (seed >> 50) % 5)));
    }
    let mut csv = String::from("ts,key,value\n");
    for (t, k) in &events {
        csv.push_str(&format!("{t},{k},1\n"));
    }
    let input = dir.path().join("events.csv");
    std::fs::write(&input, csv).unwrap();
    let want = expected(&events, 10_000);
    assert!(want.len() > 20, "the data has pauses");
    // A watermark after every record, carried inside the batches: timers
    // fire between records exactly as in Flink, whatever the batch size.
    let run = flinkw(
        &[
            "run",
            artifacts::INACTIVITY_ALERT,
            "--set",
            &format!("input={}", input.display()),
            "--set",
            "watermark.interval-ms=0",
        ],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.sorted_lines(), want);
}
