//! Bad files, bad config and bad input data: each gets a clear error.

use flinkw_tests::{artifacts, example};

use crate::{assert_fails_with, flinkw};

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn a_file_that_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "notes.wasm", b"hello, I am text");
    assert_fails_with(&flinkw(&["run", &f], dir.path()), &["is not a WebAssembly file"]);
}

#[test]
fn a_missing_plugin_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails_with(
        &flinkw(&["run", "/nonexistent/plugin.wasm"], dir.path()),
        &["cannot read plugin /nonexistent/plugin.wasm"],
    );
}

#[test]
fn a_core_module_instead_of_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let f =
        write(dir.path(), "core.wasm", &wat::parse_str("(module (func (export \"f\")))").unwrap());
    assert_fails_with(
        &flinkw(&["run", &f], dir.path()),
        &["is a core WebAssembly module, not a component"],
    );
}

#[test]
fn a_component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $h (export "handle" (func $f)))
        (export "wasi:http/incoming-handler@0.2.0" (instance $h)))"#;
    let f = write(dir.path(), "other.wasm", &wat::parse_str(wat).unwrap());
    assert_fails_with(
        &flinkw(&["run", &f], dir.path()),
        &["is not a flinkw plugin", "`plan`", "wasi:http/incoming-handler@0.2.0"],
    );
}

#[test]
fn a_plugin_built_for_another_version_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $p (export "plan" (func $f)))
        (export "flinkw:plugin/plan@0.2.0" (instance $p)))"#;
    let f = write(dir.path(), "future.wasm", &wat::parse_str(wat).unwrap());
    assert_fails_with(
        &flinkw(&["run", &f], dir.path()),
        &["built for flinkw:plugin@0.2.0", "runs flinkw:plugin@0.1.0"],
    );
}

#[test]
fn a_truncated_component() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(artifacts::WORDCOUNT).unwrap();
    let f = write(dir.path(), "cut.wasm", &bytes[..bytes.len() / 2]);
    assert_fails_with(&flinkw(&["run", &f], dir.path()), &["is not a valid component"]);
}

#[test]
fn bad_set_options() {
    let dir = tempfile::tempdir().unwrap();
    let p = artifacts::WORDCOUNT;
    assert_fails_with(
        &flinkw(&["run", p, "--set", "input"], dir.path()),
        &["bad --set \"input\": expected key=value"],
    );
    assert_fails_with(
        &flinkw(&["run", p, "--set", "input=x", "--set", "parallelism=zero"], dir.path()),
        &["bad value \"zero\" for --set parallelism"],
    );
    assert_fails_with(
        &flinkw(&["run", p, "--set", "input=x", "--set", "inptu=y"], dir.path()),
        &["unknown config `inptu`", "the plugin reads: input"],
    );
    assert_fails_with(&flinkw(&["run", p], dir.path()), &["missing config `input`"]);
}

#[test]
fn a_missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails_with(
        &flinkw(
            &["run", artifacts::WORDCOUNT, "--set", "input=/nonexistent/words.txt"],
            dir.path(),
        ),
        &["/nonexistent/words.txt", "No such file"],
    );
}

fn orders_with_bad_line(dir: &std::path::Path) -> String {
    let good = std::fs::read_to_string(example("data/orders.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"id\": 99, \"customer\": ");
    write(dir, "orders.jsonl", lines.join("\n").as_bytes())
}

#[test]
fn a_malformed_json_line_fails_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let input = orders_with_bad_line(dir.path());
    let run =
        flinkw(&["run", artifacts::FILTER_MAP, "--set", &format!("input={input}")], dir.path());
    assert_fails_with(&run, &[&format!("{input}:3: not valid JSON"), "--skip-bad-lines"]);
}

#[test]
fn skip_bad_lines_skips_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let input = orders_with_bad_line(dir.path());
    let run = flinkw(
        &["run", artifacts::FILTER_MAP, "--skip-bad-lines", "--set", &format!("input={input}")],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let expected = std::fs::read_to_string(example("expected/filter-map.jsonl")).unwrap();
    assert_eq!(run.stdout, expected);
    assert!(run.stderr.contains("skipped 1 malformed input line(s)"), "{}", run.stderr);
    assert!(run.stderr.contains(":3: not valid JSON"), "{}", run.stderr);
}

#[test]
fn a_malformed_csv_row_fails_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let input =
        write(dir.path(), "o.csv", b"id,customer,amount,currency\n1,ann,12.5,EUR\n2,bob,3.0\n");
    let run =
        flinkw(&["run", artifacts::FILTER_MAP, "--set", &format!("input={input}")], dir.path());
    assert_fails_with(
        &run,
        &[&format!("{input}:3: expected 4 fields (as in the header), found 3")],
    );
}

#[test]
fn a_record_of_the_wrong_shape_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "o.jsonl", b"{\"id\": 1, \"customer\": \"ann\"}\n");
    let run =
        flinkw(&["run", artifacts::FILTER_MAP, "--set", &format!("input={input}")], dir.path());
    assert_fails_with(
        &run,
        &["large-known-currency -> to-usd", "cannot decode record", "missing field `amount`"],
    );
}

#[test]
fn an_oversized_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(
        &[
            "run",
            artifacts::FILTER_MAP,
            "--max-record-bytes",
            "40",
            "--set",
            &format!("input={}", example("data/orders.jsonl").display()),
        ],
        dir.path(),
    );
    assert_fails_with(&run, &["orders.jsonl:1: record of", "over the limit of 40 bytes"]);
}

#[test]
fn bad_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = artifacts::FILTER_MAP;
    assert_fails_with(
        &flinkw(&["run", p, "--call-timeout=-1"], dir.path()),
        &["--call-timeout must be"],
    );
    assert_fails_with(
        &flinkw(&["run", p, "--memory-limit", "0"], dir.path()),
        &["--memory-limit must be"],
    );
}
