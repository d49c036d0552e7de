//! `flinkw test`: a plugin author's unit test. Runs a plugin on a small
//! input on the embedded runtime and prints its output, or compares it with
//! an expected file and prints the difference.
//!
//! The job runs in a child `flinkw run` (the stdout sink writes to the
//! process's standard output, which the child lets us capture whole), with
//! `--set input=FILE` so any plugin that reads its input from the `input`
//! config key (every example and every `flinkw plugin new` template does)
//! runs on the test input.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Arguments of `flinkw test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The plugin to test (a `.wasm` component).
    pub plugin: PathBuf,
    /// The test input, passed to the plugin as `--set input=FILE`.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The expected output (stdout lines); without it the output is printed.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// More job config as key=value (repeatable), as for `flinkw run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Compare sorted lines (for outputs whose order is not fixed, e.g. at
    /// parallelism > 1).
    #[arg(long)]
    pub sorted: bool,
    /// Write the actual output to the --expect file instead of comparing.
    #[arg(long, requires = "expect")]
    pub update: bool,
    /// Memory limit of the plugin instance, in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub memory_limit: usize,
    /// Longest one guest call may run before it is stopped, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub call_timeout: f64,
}

/// Runs `flinkw test`; an error when the job fails or its output differs
/// from the expected output (after printing the difference).
pub fn execute(args: TestArgs) -> anyhow::Result<()> {
    if !args.plugin.is_file() {
        anyhow::bail!("no plugin at {}", args.plugin.display());
    }
    if let Some(input) = &args.input
        && !input.is_file()
    {
        anyhow::bail!("no test input at {}", input.display());
    }
    let expected = match (&args.expect, args.update) {
        (Some(path), false) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read expected output {}", path.display()))?,
        ),
        _ => None,
    };
    let output = run_child(&args)?;
    if let Some(path) = args.expect.as_ref().filter(|_| args.update) {
        std::fs::write(path, &output)
            .with_context(|| format!("cannot write expected output {}", path.display()))?;
        eprintln!("wrote {} line(s) to {}", output.lines().count(), path.display());
        return Ok(());
    }
    let Some(expected) = expected else {
        print!("{output}");
        return Ok(());
    };
    let (mut actual_lines, mut expected_lines): (Vec<&str>, Vec<&str>) =
        (output.lines().collect(), expected.lines().collect());
    if args.sorted {
        actual_lines.sort_unstable();
        expected_lines.sort_unstable();
    }
    let expect_name = args.expect.as_deref().map(Path::display);
    if actual_lines == expected_lines {
        println!(
            "ok: {} line(s) of output match {}",
            actual_lines.len(),
            expect_name.map(|d| d.to_string()).unwrap_or_default()
        );
        return Ok(());
    }
    let expect_name = expect_name.map(|d| d.to_string()).unwrap_or_default();
    print!("{}", render_diff(&expect_name, &expected_lines, &actual_lines));
    anyhow::bail!(
        "the output differs from {expect_name} ({} expected line(s), {} actual)",
        expected_lines.len(),
        actual_lines.len()
    )
}

/// Runs the job in a child `flinkw run` and returns its standard output;
/// a failed job is an error carrying the child's message.
fn run_child(args: &TestArgs) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the flinkw executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg(&args.plugin);
    if let Some(input) = &args.input {
        cmd.arg("--set").arg(format!("input={}", input.display()));
    }
    for kv in &args.set {
        cmd.arg("--set").arg(kv);
    }
    cmd.arg("--memory-limit").arg(args.memory_limit.to_string());
    cmd.arg("--call-timeout").arg(args.call_timeout.to_string());
    let out = cmd.output().context("cannot start `flinkw run`")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let msg = stderr.trim_end();
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        anyhow::bail!("{msg}");
    }
    // The job summary and guest log lines go to stderr; pass them on.
    eprint!("{stderr}");
    String::from_utf8(out.stdout).context("the plugin's output is not UTF-8")
}

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
enum Edit<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The line edits that turn `a` into `b` (a longest common subsequence).
/// Inputs too large for the quadratic table fall back to: common prefix,
/// then everything else removed and added.
fn diff<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Edit<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix =
        a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut edits: Vec<Edit<'a>> = a[..prefix].iter().map(|&l| Edit::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > 4_000_000 {
        edits.extend(ma.iter().map(|&l| Edit::Removed(l)));
        edits.extend(mb.iter().map(|&l| Edit::Added(l)));
    } else {
        // lcs[i][j]: length of the LCS of ma[i..] and mb[j..].
        let (n, m) = (ma.len(), mb.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                edits.push(Edit::Same(ma[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
                edits.push(Edit::Removed(ma[i]));
                i += 1;
            } else {
                edits.push(Edit::Added(mb[j]));
                j += 1;
            }
        }
    }
    edits.extend(a[a.len() - suffix..].iter().map(|&l| Edit::Same(l)));
    edits
}

/// A readable diff: `-` expected lines missing from the output, `+` output
/// lines not expected, with line numbers of the expected file and up to two
/// lines of context around each change.
fn render_diff(expect_name: &str, expected: &[&str], actual: &[&str]) -> String {
    let edits = diff(expected, actual);
    let near_change = |k: usize| {
        edits[k.saturating_sub(2)..(k + 3).min(edits.len())]
            .iter()
            .any(|e| !matches!(e, Edit::Same(_)))
    };
    let mut out = format!("--- expected ({expect_name})\n+++ actual\n");
    let (mut line_a, mut line_b) = (1usize, 1usize);
    let mut skipped = false;
    for (k, e) in edits.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            let _ = match e {
                Edit::Same(l) => writeln!(out, "  {line_a:>5}        {l}"),
                Edit::Removed(l) => writeln!(out, "- {line_a:>5}        {l}"),
                Edit::Added(l) => writeln!(out, "+        {line_b:>5} {l}"),
            };
        } else {
            skipped = true;
        }
        match e {
            Edit::Same(_) => {
                line_a += 1;
                line_b += 1;
            }
            Edit::Removed(_) => line_a += 1,
            Edit::Added(_) => line_b += 1,
        }
    }
    if skipped {
        out.push_str("  ...\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_a_changed_line_between_equal_ones() {
        let a = ["a", "b", "c", "d"];
        let b = ["a", "x", "c", "d", "e"];
        let edits = diff(&a, &b);
        assert_eq!(
            edits,
            vec![
                Edit::Same("a"),
                Edit::Removed("b"),
                Edit::Added("x"),
                Edit::Same("c"),
                Edit::Same("d"),
                Edit::Added("e"),
            ]
        );
    }

    #[test]
    fn rendered_diff_numbers_lines_and_elides_far_context() {
        let a: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let mut b = a.clone();
        b[10] = "changed".into();
        let (a, b): (Vec<&str>, Vec<&str>) =
            (a.iter().map(String::as_str).collect(), b.iter().map(String::as_str).collect());
        let text = render_diff("exp.txt", &a, &b);
        assert!(text.contains("-    11        l10"), "{text}");
        assert!(text.contains("+           11 changed"), "{text}");
        assert!(!text.contains(" l1\n"), "far context is elided: {text}");
        assert!(text.starts_with("--- expected (exp.txt)"), "{text}");
    }
}
