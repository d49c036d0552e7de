//! Golden tests: the windowed-count example over out-of-order input with
//! late records gives exactly what Apache Flink gives.
//!
//! `tests/golden/<case>.flink` were produced by real Flink (2.3.0, the
//! DataStream API, `tests/golden/flink/Golden.java` run by
//! `tests/golden/flink/run.sh`) from `tests/golden/events.csv` with the
//! settings in `tests/golden/cases.csv`; each line is a window result
//! `key,start,end,count,max` or a record of the late side output
//! `late,ts,key,value`. Watermarks follow every record on both sides
//! (flinkw's `watermark.interval-ms=0`), so the results depend only on the
//! input order.

use std::path::{Path, PathBuf};

use flinkw_tests::artifacts;

use crate::flinkw;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

/// One row of `cases.csv`.
struct Case {
    name: String,
    window: String,
    size_ms: String,
    slide_ms: String,
    gap_ms: String,
    out_of_orderness_ms: String,
    lateness_ms: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(golden_dir().join("cases.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<String> = l.split(',').map(str::to_owned).collect();
            assert_eq!(f.len(), 7, "cases.csv row {l:?}");
            Case {
                name: f[0].clone(),
                window: f[1].clone(),
                size_ms: f[2].clone(),
                slide_ms: f[3].clone(),
                gap_ms: f[4].clone(),
                out_of_orderness_ms: f[5].clone(),
                lateness_ms: f[6].clone(),
            }
        })
        .collect()
}

/// Runs `case` on flinkw with `extra` settings; the sorted window results
/// and late records in the golden files' form.
fn run_case(case: &Case, extra: &[&str], dir: &Path) -> Vec<String> {
    let out = dir.join(format!("{}.out", case.name));
    let late = dir.join(format!("{}.late", case.name));
    let mut sets = vec![
        format!("input={}", golden_dir().join("events.csv").display()),
        format!("window={}", case.window),
        format!("output={}", out.display()),
    ];
    if case.window != "count" {
        // Count windows have no event time, hence no lateness.
        sets.extend([
            format!("out-of-orderness-ms={}", case.out_of_orderness_ms),
            format!("lateness-ms={}", case.lateness_ms),
            "watermark.interval-ms=0".to_owned(),
            format!("late-output={}", late.display()),
        ]);
    }
    match case.window.as_str() {
        "tumbling" => sets.push(format!("size-ms={}", case.size_ms)),
        "sliding" => {
            sets.push(format!("size-ms={}", case.size_ms));
            sets.push(format!("slide-ms={}", case.slide_ms));
        }
        "count" => {
            sets.push(format!("size={}", case.size_ms));
            sets.push(format!("slide={}", case.slide_ms));
        }
        _ => sets.push(format!("gap-ms={}", case.gap_ms)),
    }
    sets.extend(extra.iter().map(|s| s.to_string()));
    let mut args = vec!["run", artifacts::WINDOWED_COUNT];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let run = flinkw(&args, dir);
    assert!(run.ok(), "{}: {}", case.name, run.stderr);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut lines: Vec<String> = read(&out).lines().map(str::to_owned).collect();
    lines.extend(read(&late).lines().map(|l| format!("late,{l}")));
    lines.sort();
    lines
}

fn flink_output(case: &Case) -> Vec<String> {
    let path = golden_dir().join(format!("{}.flink", case.name));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The differing lines of two sorted outputs, for the failure message.
fn difference(got: &[String], want: &[String]) -> String {
    let extra: Vec<&String> = got.iter().filter(|l| want.binary_search(l).is_err()).collect();
    let missing: Vec<&String> = want.iter().filter(|l| got.binary_search(l).is_err()).collect();
    format!(
        "{} lines only in flinkw's output (first: {:?}), {} only in Flink's (first: {:?})",
        extra.len(),
        extra.iter().take(5).collect::<Vec<_>>(),
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    )
}

#[track_caller]
fn assert_like_flink(case: &Case, extra: &[&str], dir: &Path) {
    let got = run_case(case, extra, dir);
    let want = flink_output(case);
    assert!(want.len() > 100, "{}: a golden file of {} lines", case.name, want.len());
    assert!(got == want, "{} {extra:?}: {}", case.name, difference(&got, &want));
}

/// Every case (tumbling, sliding and session windows, with and without
/// allowed lateness, late records to a side output; tumbling and sliding
/// count windows) gives Flink's output line for line, with the incremental
/// aggregate and with the full window function; sliding windows with the
/// aggregate kept per pane (it is declared mergeable) and per window.
#[test]
fn windows_give_exactly_flinks_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 9, "{} cases", cases.len());
    for case in &cases {
        assert_like_flink(case, &["parallelism=1"], dir.path());
        assert_like_flink(case, &["parallelism=1", "function=process"], dir.path());
        if case.window == "sliding" {
            assert_like_flink(case, &["parallelism=1", "panes=false"], dir.path());
        }
    }
}

/// Where no record is late, the result does not depend on how the input is
/// split: parallelism 4 gives Flink's output too.
#[test]
fn without_late_records_any_parallelism_gives_flinks_output() {
    let dir = tempfile::tempdir().unwrap();
    let case = cases().into_iter().find(|c| c.name == "tumbling-wide-disorder").unwrap();
    assert!(!flink_output(&case).iter().any(|l| l.starts_with("late,")));
    assert_like_flink(&case, &["parallelism=4", "batch.size=37"], dir.path());
}
