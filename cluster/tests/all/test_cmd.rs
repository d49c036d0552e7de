//! `flinkw test`: runs a plugin on a small input and prints its output, or
//! compares it with an expected file and prints the difference.

use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "b a\na\n").unwrap();
    let input = input.display().to_string();
    (dir, input)
}

#[test]
fn without_expect_it_prints_the_output() {
    let (dir, input) = setup();
    let run = flinkw(&["test", artifacts::WORDCOUNT, "--input", &input], dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stdout, "b 1\na 1\na 2\n");
    assert!(run.stderr.contains("job wordcount finished"), "{}", run.stderr);
}

#[test]
fn matching_output_passes_and_a_difference_fails_with_a_diff() {
    let (dir, input) = setup();
    let expect = dir.path().join("expected.txt");
    let expect_s = expect.display().to_string();
    std::fs::write(&expect, "b 1\na 1\na 2\n").unwrap();
    let args = ["test", artifacts::WORDCOUNT, "--input", &input, "--expect", &expect_s];
    let run = flinkw(&args, dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.starts_with("ok: 3 line(s) of output match"), "{}", run.stdout);

    std::fs::write(&expect, "b 1\na 7\na 2\nc 1\n").unwrap();
    let run = flinkw(&args, dir.path());
    assert_fails_with(&run, &["the output differs from", "(4 expected line(s), 3 actual)"]);
    assert!(run.stdout.contains("-     2        a 7\n"), "{}", run.stdout);
    assert!(run.stdout.contains("+            2 a 1\n"), "{}", run.stdout);
    assert!(run.stdout.contains("-     4        c 1\n"), "{}", run.stdout);
    assert!(run.stdout.contains("      1        b 1\n"), "unchanged context: {}", run.stdout);
}

#[test]
fn sorted_ignores_order_and_update_rewrites_the_expected_file() {
    let (dir, input) = setup();
    let expect = dir.path().join("expected.txt");
    let expect_s = expect.display().to_string();
    std::fs::write(&expect, "a 2\na 1\nb 1\n").unwrap();
    let args = ["test", artifacts::WORDCOUNT, "--input", &input, "--expect", &expect_s];
    assert_eq!(flinkw(&args, dir.path()).code, Some(1));
    let mut sorted = args.to_vec();
    sorted.push("--sorted");
    let run = flinkw(&sorted, dir.path());
    assert!(run.ok(), "{}\n{}", run.stdout, run.stderr);

    let mut update = args.to_vec();
    update.push("--update");
    let run = flinkw(&update, dir.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&expect).unwrap(), "b 1\na 1\na 2\n");
    assert!(flinkw(&args, dir.path()).ok());
}

#[test]
fn bad_paths_and_failing_jobs_are_reported() {
    let (dir, input) = setup();
    let d = dir.path();
    let run = flinkw(&["test", "nope.wasm", "--input", &input], d);
    assert_fails_with(&run, &["no plugin at nope.wasm"]);
    let run = flinkw(&["test", artifacts::WORDCOUNT, "--input", "missing.txt"], d);
    assert_fails_with(&run, &["no test input at missing.txt"]);
    let run = flinkw(&["test", artifacts::WORDCOUNT, "--input", &input, "--expect", "none.txt"], d);
    assert_fails_with(&run, &["cannot read expected output none.txt"]);
    // The job's own error comes through: here the plugin needs `input`.
    let run = flinkw(&["test", artifacts::WORDCOUNT], d);
    assert_fails_with(&run, &["missing config `input`"]);
}
