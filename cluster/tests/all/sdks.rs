//! Plugins in Python, JavaScript and C: the wordcount and windowed-count
//! examples, built from source with each language's toolchain, give exactly
//! the Rust examples' output; `flinkw plugin new` makes projects that build
//! and pass their own test; guest errors show the guest's stack and record.

use std::path::{Path, PathBuf};

use flinkw_tests::sdk_plugins::{FNV_START, build, compile_cache, hash_tree};
use flinkw_tests::{Run, artifacts, example, repo_root};

const FLINKW: &str = env!("CARGO_BIN_EXE_flinkw");

/// Runs `flinkw` with the compile cache shared by SDK plugin tests (`dir` is
/// the test's scratch folder, unused here).
fn flinkw(args: &[&str], _dir: &Path) -> Run {
    flinkw_tests::run(FLINKW, args, &compile_cache())
}

fn plugin(project: &str) -> String {
    build(FLINKW, project).display().to_string()
}

/// Runs `plugin` with `--set` pairs; panics with stderr if it fails.
fn run_ok(plugin: &str, sets: &[String], dir: &Path) -> Run {
    let mut args = vec!["run", plugin];
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    let run = flinkw(&args, dir);
    assert!(run.ok(), "{plugin} {sets:?} failed:\n{}", run.stderr);
    run
}

/// Asserts two outputs are equal; on a difference shows the first differing
/// line rather than both outputs whole.
#[track_caller]
fn assert_same_output(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    let i = a.iter().zip(&e).take_while(|(x, y)| x == y).count();
    panic!(
        "{what}: {} lines vs {} expected; first difference at line {}: {:?} vs expected {:?}",
        a.len(),
        e.len(),
        i + 1,
        a.get(i),
        e.get(i)
    );
}

/// A text with repeated words over many lines and batches.
fn many_words(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..2500 {
        text.push_str(&format!("Word{} w{} the-end, it's {}\n", i % 31, i % 7, i % 3));
    }
    let path = dir.join("many.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn wordcount_matches_rust(project: &str) {
    let plugin = plugin(project);
    let dir = tempfile::tempdir().unwrap();
    for input in [example("data/words.txt"), many_words(dir.path())] {
        let sets = [format!("input={}", input.display()), "batch.size=100".to_owned()];
        let rust = run_ok(artifacts::WORDCOUNT, &sets, dir.path());
        let other = run_ok(&plugin, &sets, dir.path());
        assert!(rust.stdout.lines().count() > 30, "{}", rust.stdout);
        assert_same_output(&other.stdout, &rust.stdout, &format!("{project} vs Rust wordcount"));
        assert!(other.stderr.contains("job wordcount finished"), "{}", other.stderr);
    }
}

#[test]
fn python_wordcount_matches_rust() {
    wordcount_matches_rust("plugins/python-wordcount");
}

#[test]
fn js_wordcount_matches_rust() {
    wordcount_matches_rust("plugins/js-wordcount");
}

#[test]
fn c_wordcount_matches_rust() {
    wordcount_matches_rust("plugins/c-wordcount");
}

/// `ts,key,value` events with up to `disorder` ms of disorder.
fn events_csv(path: &Path, n: usize, disorder: u64) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut csv = String::from("ts,key,value\n");
    for i in 0..n {
        let ts = 1_700_000_000_000 + (i as i64) * 37 - rand(disorder) as i64;
        let key = rand(7);
        csv.push_str(&format!("{ts},k{key},{}\n", rand(1000)));
    }
    std::fs::write(path, csv).unwrap();
    path.display().to_string()
}

fn windowed_count_matches_rust(project: &str) {
    let plugin = plugin(project);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = events_csv(&d.join("events.csv"), 3000, 1500);
    let first = events_csv(&d.join("first.csv"), 1500, 800);
    let cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["window=sliding".into()],
        vec!["window=session".into(), "gap-ms=200".into()],
        vec!["function=process".into()],
        vec!["window=sliding".into(), "function=process".into(), "lateness-ms=500".into()],
        vec![format!("input2={first}")],
    ];
    for case in cases {
        // A watermark after every record: results depend only on the input
        // order, not on batching or timing (docs/time-and-windows.md).
        let mut sets = vec![
            format!("input={all}"),
            "batch.size=128".to_owned(),
            "watermark.interval-ms=0".to_owned(),
        ];
        sets.extend(case);
        let rust = run_ok(artifacts::WINDOWED_COUNT, &sets, d);
        let other = run_ok(&plugin, &sets, d);
        assert!(rust.stdout.lines().count() >= 80, "{sets:?}: {}", rust.stdout);
        assert_same_output(&other.stdout, &rust.stdout, &format!("{project} {sets:?} vs Rust"));
    }
    // Late records: dropped from the windows, written to a side output.
    let late = |name: &str| {
        vec![
            format!("input={all}"),
            "out-of-orderness-ms=10".to_owned(),
            "watermark.interval-ms=0".to_owned(),
            format!("late-output={}", d.join(name).display()),
        ]
    };
    let rust = run_ok(artifacts::WINDOWED_COUNT, &late("rust-late.csv"), d);
    let other = run_ok(&plugin, &late("other-late.csv"), d);
    assert_same_output(&other.stdout, &rust.stdout, &format!("{project} late records vs Rust"));
    let rust_late = std::fs::read_to_string(d.join("rust-late.csv")).unwrap();
    assert!(rust_late.lines().count() > 100, "{rust_late}");
    let other_late = std::fs::read_to_string(d.join("other-late.csv")).unwrap();
    assert_same_output(&other_late, &rust_late, &format!("{project} late-output vs Rust"));
    // A bad config value is refused with the plugin's message.
    let run =
        flinkw(&["run", &plugin, "--set", &format!("input={all}"), "--set", "window=hourly"], d);
    crate::assert_fails_with(&run, &["unknown window", "hourly"]);
}

#[test]
fn python_windowed_count_matches_rust() {
    windowed_count_matches_rust("plugins/python-windowed-count");
}

#[test]
fn js_windowed_count_matches_rust() {
    windowed_count_matches_rust("plugins/js-windowed-count");
}

#[test]
fn c_windowed_count_matches_rust() {
    windowed_count_matches_rust("plugins/c-windowed-count");
}

/// `flinkw plugin new`, `flinkw plugin build`, then the project's own test.
fn new_project_builds_and_passes_its_test(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = format!("my-{lang}-plugin");
    let run =
        flinkw(&["plugin", "new", "--lang", lang, &name, "--dir", &d.display().to_string()], d);
    assert!(run.ok(), "{}", run.stderr);
    let project = d.join(&name);
    for file in ["flinkw-plugin.toml", "README.md", "test/input.txt", "test/expected.txt"] {
        assert!(project.join(file).is_file(), "{lang} project lacks {file}");
    }
    let run = flinkw(&["plugin", "build", &project.display().to_string()], d);
    assert!(run.ok(), "{lang}: {}", run.stderr);
    let wasm = project.join("build").join(format!("{name}.wasm"));
    assert_eq!(run.stdout.trim(), wasm.display().to_string());
    let input = project.join("test/input.txt").display().to_string();
    let expected = project.join("test/expected.txt").display().to_string();
    let wasm = wasm.display().to_string();
    let test = flinkw(&["test", &wasm, "--input", &input, "--expect", &expected], d);
    assert!(test.ok(), "{lang}: {}\n{}", test.stdout, test.stderr);
    assert!(test.stdout.contains("ok: 11 line(s) of output match"), "{}", test.stdout);
    // The same test fails, with a diff, once the expected output is wrong.
    std::fs::write(&expected, "the 1\nquick 2\n").unwrap();
    let test = flinkw(&["test", &wasm, "--input", &input, "--expect", &expected], d);
    assert_eq!(test.code, Some(1), "{}", test.stderr);
    assert!(test.stdout.contains("-     2        quick 2"), "{}", test.stdout);
    assert!(test.stdout.contains("+            2 quick 1"), "{}", test.stdout);
}

#[test]
fn plugin_new_python_builds_and_passes_its_test() {
    new_project_builds_and_passes_its_test("python");
}

#[test]
fn plugin_new_js_builds_and_passes_its_test() {
    new_project_builds_and_passes_its_test("js");
}

#[test]
fn plugin_new_c_builds_and_passes_its_test() {
    new_project_builds_and_passes_its_test("c");
}

#[test]
fn plugin_new_rust_builds_and_passes_its_test() {
    new_project_builds_and_passes_its_test("rust");
}

#[test]
fn plugin_build_says_what_to_install_when_a_toolchain_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (lang, needles) in [
        ("python", &["componentize-py is not installed", "pip install componentize-py==0.25.1"]),
        (
            "js",
            &[
                "componentize-js is not installed",
                "npm install -g @bytecodealliance/componentize-js@0.23.0",
            ],
        ),
    ] {
        let name = format!("p-{lang}");
        let run =
            flinkw(&["plugin", "new", "--lang", lang, &name, "--dir", &d.display().to_string()], d);
        assert!(run.ok(), "{}", run.stderr);
        // A PATH with node but without the toolchains, and no tool cache.
        let node_dir = which("node").map(|p| p.parent().unwrap().to_path_buf()).unwrap();
        let out = std::process::Command::new(FLINKW)
            .args(["plugin", "build"])
            .arg(d.join(&name))
            .env("PATH", node_dir)
            .env("FLINKW_SDK_TOOLS", d.join("no-tools"))
            .output()
            .unwrap();
        let run = Run::from(out);
        crate::assert_fails_with(&run, needles);
    }
    let run = flinkw(&["plugin", "build", &d.display().to_string()], d);
    crate::assert_fails_with(&run, &["is not a plugin project", "flinkw-plugin.toml"]);
    let run = flinkw(
        &["plugin", "new", "--lang", "python", "p-python", "--dir", &d.display().to_string()],
        d,
    );
    crate::assert_fails_with(&run, &["already exists"]);
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}

#[test]
fn c_bindings_were_generated_from_the_current_wit() {
    let root = repo_root();
    let recorded = std::fs::read_to_string(root.join("sdk-c/gen/wit.fnv64")).unwrap();
    let now = format!("{:016x}", hash_tree(FNV_START, &root.join("wit")));
    assert_eq!(
        recorded.trim(),
        now,
        "wit/ changed since sdk-c/gen was generated: regenerate it (sdk-c/gen/README.md)"
    );
}

/// Runs a plugin that fails on the word "boom" and returns the failed run.
fn fails_on_boom(project: &str, extra: &[&str]) -> Run {
    let plugin = plugin(project);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\nc boom d\n").unwrap();
    let set_input = format!("input={}", input.display());
    let mut args = vec!["run", plugin.as_str(), "--set", set_input.as_str()];
    args.extend(extra);
    flinkw(&args, dir.path())
}

#[test]
fn a_python_error_shows_the_python_stack_and_the_record() {
    let run = fails_on_boom("tests/plugins/python-bad", &[]);
    crate::assert_fails_with(
        &run,
        &[
            "ValueError: cannot handle boom",
            "at record 3 of the batch, key 'boom', value 'boom'",
            "guest stack (Python, innermost last):",
            "counter at app.py:25",
            "check at app.py:14",
            "explode at app.py:9",
        ],
    );
}

#[test]
fn a_javascript_error_shows_the_js_stack_and_the_record() {
    let run = fails_on_boom("tests/plugins/js-bad", &[]);
    crate::assert_fails_with(
        &run,
        &[
            "Error: cannot handle boom",
            "at record 3 of the batch, key \"boom\", value \"boom\"",
            "guest stack (JavaScript, innermost first):",
            "explode@",
            "app.js:8",
            "check@",
            "counter@",
        ],
    );
}

#[test]
fn a_c_error_names_the_function_and_line_and_a_trap_shows_the_stack() {
    let run = fails_on_boom("tests/plugins/c-bad", &[]);
    crate::assert_fails_with(
        &run,
        &[
            "cannot handle boom",
            "at record 3 of the batch, key \"boom\", value \"boom\"",
            "guest stack (C):",
            "explode at ",
            "c-bad/app.c:12",
        ],
    );
    let run = fails_on_boom("tests/plugins/c-bad", &["--set", "mode=trap"]);
    crate::assert_fails_with(
        &run,
        &["the guest trapped", "guest stack:", "abort", "explode at ", "app.c:11", "check at "],
    );
}
