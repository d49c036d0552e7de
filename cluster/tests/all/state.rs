//! Keyed state on RocksDB gives the same results as in memory, also when
//! it is far larger than RocksDB's memory budget; a bad state directory is
//! a clear error.

use flinkw_tests::{artifacts, example};

use crate::{assert_fails_with, flinkw};

#[test]
fn wordcount_on_rocksdb_equals_memory_with_state_larger_than_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // 60,000 distinct words: several MB of state against a 1 MiB cache.
    let mut text = String::new();
    for i in 0..60_000u32 {
        text.push_str(&format!("word{i} word{} shared\n", i % 1000));
    }
    let input = dir.path().join("in.txt");
    std::fs::write(&input, &text).unwrap();
    let set_input = format!("input={}", input.display());
    let state_dir = dir.path().join("state");
    let state_dir_s = state_dir.display().to_string();
    let memory = flinkw(
        &["run", artifacts::WORDCOUNT, "--set", &set_input, "--set", "parallelism=2"],
        dir.path(),
    );
    let rocks = flinkw(
        &[
            "run",
            artifacts::WORDCOUNT,
            "--set",
            &set_input,
            "--set",
            "parallelism=2",
            "--state-backend",
            "rocksdb",
            "--state-dir",
            &state_dir_s,
            "--rocksdb-block-cache",
            "1",
        ],
        dir.path(),
    );
    assert!(memory.ok() && rocks.ok(), "{}\n{}", memory.stderr, rocks.stderr);
    assert_eq!(rocks.stdout.lines().count(), 180_000);
    assert_eq!(rocks.sorted_lines(), memory.sorted_lines());
    assert!(rocks.stdout.lines().any(|l| l == "shared 60000"));
    // The run's state directory is removed when the job ends.
    assert_eq!(std::fs::read_dir(&state_dir).unwrap().count(), 0);
}

#[test]
fn windows_on_rocksdb_equal_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("ts,key,value\n");
    for i in 0..4000i64 {
        csv.push_str(&format!(
            "{},k{},{}\n",
            1_000_000 + i * 13 - (i * 7919) % 500,
            i % 11,
            (i * 31) % 97
        ));
    }
    let input = dir.path().join("events.csv");
    std::fs::write(&input, csv).unwrap();
    let set_input = format!("input={}", input.display());
    let args = [
        "run",
        artifacts::WINDOWED_COUNT,
        "--set",
        &set_input,
        "--set",
        "window=session",
        "--set",
        "gap-ms=50",
    ];
    let memory = flinkw(&args, dir.path());
    let state_dir = dir.path().join("state").display().to_string();
    let mut rocks_args = args.to_vec();
    rocks_args.extend(["--state-backend", "rocksdb", "--state-dir", &state_dir]);
    let rocks = flinkw(&rocks_args, dir.path());
    assert!(memory.ok() && rocks.ok(), "{}\n{}", memory.stderr, rocks.stderr);
    assert!(memory.stdout.lines().count() > 10);
    assert_eq!(rocks.sorted_lines(), memory.sorted_lines());
    // With no room for window accumulators in memory, each batch's go to
    // RocksDB and are read back from it (sessions merge there too).
    rocks_args.extend(["--set", "window.cache-mb=0"]);
    let through = flinkw(&rocks_args, dir.path());
    assert!(through.ok(), "{}", through.stderr);
    assert_eq!(through.sorted_lines(), memory.sorted_lines());
}

#[test]
fn a_state_directory_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let run = flinkw(
        &[
            "run",
            artifacts::FILTER_MAP,
            "--set",
            &format!("input={}", example("data/orders.jsonl").display()),
            "--state-backend",
            "rocksdb",
            "--state-dir",
            &file.display().to_string(),
        ],
        dir.path(),
    );
    assert_fails_with(&run, &["cannot open RocksDB state at", "not-a-dir"]);
}

#[test]
fn a_state_of_another_type_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(&["run", artifacts::BAD_GUEST, "--set", "mode=state-type"], dir.path());
    assert_fails_with(&run, &["value state `n` holds bytes of another type"]);
}

/// The reference model of the `state-kinds` plugin.
fn state_kinds_model(text: &str) -> Vec<String> {
    use std::collections::{BTreeMap, HashMap};
    let mut lists: HashMap<char, Vec<String>> = HashMap::new();
    let mut maps: HashMap<char, BTreeMap<String, u64>> = HashMap::new();
    let mut longest: HashMap<char, String> = HashMap::new();
    let mut total: HashMap<char, usize> = HashMap::new();
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let letter = word.chars().next().unwrap();
        if word == "reset" {
            lists.remove(&letter);
            maps.remove(&letter);
            out.push(format!("{letter} reset"));
            continue;
        }
        let list = lists.entry(letter).or_default();
        list.push(word.to_owned());
        let map = maps.entry(letter).or_default();
        let n = {
            let n = map.entry(word.to_owned()).or_default();
            *n += 1;
            *n
        };
        let long = longest.entry(letter).or_default();
        if word.len() > long.len() {
            *long = word.to_owned();
        }
        let sum = total.entry(letter).or_default();
        *sum += word.len();
        out.push(format!("{letter} {} {} {word}={n} {long} {sum}", list.len(), map.len()));
    }
    out.sort();
    out
}

#[test]
fn list_and_map_state_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..2000u32 {
        let w = ["apple", "avocado", "banana", "blueberry", "cherry", "apricot", "reset"]
            [(i * 7 + i / 3) as usize % 7];
        text.push_str(&format!("{w} {}x{}\n", w, i % 5));
    }
    let input = dir.path().join("in.txt");
    std::fs::write(&input, &text).unwrap();
    let set_input = format!("input={}", input.display());
    let expected = state_kinds_model(&text);
    let state_dir = dir.path().join("state").display().to_string();
    // Parallelism 1: with parallel sources a key's words would arrive in
    // another order than the file's, and running outputs would differ.
    for extra in [vec![], vec!["--state-backend", "rocksdb", "--state-dir", &state_dir]] {
        let mut args = vec!["run", artifacts::STATE_KINDS, "--set", &set_input];
        args.extend(extra.iter().copied());
        let run = flinkw(&args, dir.path());
        assert!(run.ok(), "{extra:?}: {}", run.stderr);
        let got = run.sorted_lines();
        assert_eq!(got.len(), expected.len(), "{extra:?}");
        let diff = got.iter().zip(&expected).find(|(g, e)| g != e);
        assert!(diff.is_none(), "{extra:?}: first difference {diff:?}");
    }
}

/// Records 500 ms apart: without a TTL each sees the one before; with a TTL
/// of 40 ms the state has expired by the next record. (Timing-based by
/// nature: the check allows one record to come early after a stall.)
#[test]
fn state_expires_after_its_time_to_live() {
    let dir = tempfile::tempdir().unwrap();
    let run = |ttl: &str| {
        let set_ttl = format!("ttl-ms={ttl}");
        let r = flinkw(
            &[
                "run",
                artifacts::BAD_GUEST,
                "--set",
                "mode=ttl",
                "--set",
                "count=6",
                "--set",
                "rate=2",
                "--set",
                &set_ttl,
            ],
            dir.path(),
        );
        assert!(r.ok(), "{}", r.stderr);
        r.stdout.lines().skip(1).map(|l| l.ends_with(" None")).collect::<Vec<bool>>()
    };
    let forever = run("0");
    assert_eq!(forever, vec![false; 5], "without a TTL every record sees the previous one");
    let expired = run("40").into_iter().filter(|e| *e).count();
    assert!(expired >= 4, "only {expired} of 5 records found the state expired");
}
