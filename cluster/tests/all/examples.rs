//! The example plugins produce the right output, at any parallelism.

use std::collections::BTreeMap;

use flinkw_tests::{artifacts, example};

use crate::flinkw;

/// The reference model: running counts per word, computed without flinkw.
fn expected_wordcount(text: &str) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
    {
        let n = counts.entry(word.clone()).or_default();
        *n += 1;
        lines.push(format!("{word} {n}"));
    }
    lines.sort();
    lines
}

#[test]
fn wordcount_counts_every_word() {
    let dir = tempfile::tempdir().unwrap();
    let input = example("data/words.txt");
    let run = flinkw(
        &["run", artifacts::WORDCOUNT, "--set", &format!("input={}", input.display())],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let text = std::fs::read_to_string(&input).unwrap();
    assert_eq!(run.sorted_lines(), expected_wordcount(&text));
    assert!(run.stdout.lines().any(|l| l == "to 4"), "{}", run.stdout);
    assert!(run.stderr.contains("job wordcount finished"), "{}", run.stderr);
}

#[test]
fn wordcount_output_is_the_same_at_parallelism_4() {
    let dir = tempfile::tempdir().unwrap();
    // A larger input so every subtask gets keys.
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("w{} w{} common\n", i % 97, i % 13));
    }
    let input = dir.path().join("in.txt");
    std::fs::write(&input, &text).unwrap();
    let set_input = format!("input={}", input.display());
    let one = flinkw(&["run", artifacts::WORDCOUNT, "--set", &set_input], dir.path());
    let four = flinkw(
        &[
            "run",
            artifacts::WORDCOUNT,
            "--set",
            &set_input,
            "--set",
            "parallelism=4",
            "--set",
            "batch.size=64",
        ],
        dir.path(),
    );
    assert!(one.ok() && four.ok(), "{}\n{}", one.stderr, four.stderr);
    assert_eq!(one.sorted_lines(), expected_wordcount(&text));
    assert_eq!(four.sorted_lines(), one.sorted_lines());
    assert!(four.stdout.lines().any(|l| l == "common 3000"));
}

#[test]
fn filter_map_transforms_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = example("data/orders.jsonl");
    let run = flinkw(
        &["run", artifacts::FILTER_MAP, "--set", &format!("input={}", input.display())],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let expected = std::fs::read_to_string(example("expected/filter-map.jsonl")).unwrap();
    assert_eq!(run.stdout, expected);
}

#[test]
fn filter_map_reads_csv_and_writes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = flinkw(
        &[
            "run",
            artifacts::FILTER_MAP,
            "--set",
            &format!("input={}", example("data/orders.csv").display()),
            "--set",
            &format!("output={}", out.display()),
        ],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let expected = std::fs::read_to_string(example("expected/filter-map.jsonl")).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
}

#[test]
fn plan_shows_the_fused_graph() {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(
        &["plan", artifacts::WORDCOUNT, "--set", "input=x.txt", "--set", "parallelism=2"],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.contains("flat-map split-words -> key-by key-by"), "{}", run.stdout);
    assert!(run.stdout.contains("(hash)"), "{}", run.stdout);
    assert!(run.stdout.contains("task 1 (parallelism 2)"), "{}", run.stdout);
}

#[test]
fn a_second_run_reuses_the_compiled_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["plan", artifacts::FILTER_MAP, "--set", "input=x"];
    assert!(flinkw(&args, dir.path()).ok());
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache")).unwrap().collect();
    assert_eq!(cached.len(), 1, "one compiled plugin in the cache");
    assert!(flinkw(&args, dir.path()).ok());
    assert_eq!(std::fs::read_dir(dir.path().join("cache")).unwrap().count(), 1);
}
