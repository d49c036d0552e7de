//! Compiling untrusted plugins with limits, so that a compile bomb cannot
//! stall the coordinator or a worker.
//!
//! Cranelift's time grows with the code it is given, and most with the
//! size of single functions. Before a tenant's plugin reaches the
//! compiler, [`check`] walks it with `wasmparser` (no validation, no
//! compilation: a linear scan) and refuses it when it has more functions,
//! a larger function, more locals in one function, or more code in all
//! than [`CompileLimits`] allow. What passes is compiled on a thread of its
//! own with a deadline ([`load`]): past it the deploy fails with the limit
//! named, and the plugin's hash is refused from then on (the compile that
//! overran cannot be interrupted; it finishes in the background, bounded
//! by the structural limits).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use flinkw_host::engine::Engine;
use flinkw_host::plugin::Plugin;

/// Structural limits on a tenant's plugin, checked before compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Bytes of the whole plugin.
    pub max_bytes: usize,
    /// Functions with a body, over every core module inside.
    pub max_functions: u64,
    /// Bytes of code in one function.
    pub max_function_bytes: usize,
    /// Bytes of code in all functions.
    pub max_code_bytes: usize,
    /// Locals declared by one function.
    pub max_locals: u64,
    /// How long compiling may take.
    pub timeout: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_bytes: 64 << 20,
            max_functions: 200_000,
            max_function_bytes: 2 << 20,
            max_code_bytes: 48 << 20,
            max_locals: 50_000,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why a plugin is not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} exceeds the compile limit {limit}: {detail}")]
pub struct CompileRefusal {
    /// The plugin's name.
    pub name: String,
    /// The limit, as named in the docs (`max-function-bytes`, …).
    pub limit: &'static str,
    /// The numbers.
    pub detail: String,
}

/// Walks the plugin's code (every core module of the component) and checks
/// it against `limits`.
pub fn check(name: &str, bytes: &[u8], limits: &CompileLimits) -> Result<(), CompileRefusal> {
    let refuse = |limit, detail| CompileRefusal { name: name.to_owned(), limit, detail };
    if bytes.len() > limits.max_bytes {
        return Err(refuse(
            "max-bytes",
            format!("{} bytes, the limit is {}", bytes.len(), limits.max_bytes),
        ));
    }
    let (mut functions, mut code) = (0u64, 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = match payload {
            Ok(p) => p,
            // Malformed bytes: the compiler refuses them with its own reason.
            Err(_) => return Ok(()),
        };
        if let wasmparser::Payload::CodeSectionEntry(body) = payload {
            functions += 1;
            if functions > limits.max_functions {
                return Err(refuse(
                    "max-functions",
                    format!("more than {} functions", limits.max_functions),
                ));
            }
            let size = body.range().len();
            code += size;
            if size > limits.max_function_bytes {
                return Err(refuse(
                    "max-function-bytes",
                    format!(
                        "function {} has {size} bytes of code, the limit is {}",
                        functions - 1,
                        limits.max_function_bytes
                    ),
                ));
            }
            if code > limits.max_code_bytes {
                return Err(refuse(
                    "max-code-bytes",
                    format!("more than {} bytes of code", limits.max_code_bytes),
                ));
            }
            let mut locals = 0u64;
            if let Ok(reader) = body.get_locals_reader() {
                for l in reader.into_iter().flatten() {
                    locals += u64::from(l.0);
                }
            }
            if locals > limits.max_locals {
                return Err(refuse(
                    "max-locals",
                    format!(
                        "function {} declares {locals} locals, the limit is {}",
                        functions - 1,
                        limits.max_locals
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Hashes whose compile overran its deadline: refused from then on.
static OVERRAN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Loads an untrusted plugin: checks it, then compiles it on a thread of
/// its own, waiting at most `limits.timeout`.
pub fn load(
    engine: &Engine,
    hash: &str,
    bytes: Vec<u8>,
    limits: &CompileLimits,
) -> anyhow::Result<Plugin> {
    check(hash, &bytes, limits)?;
    if OVERRAN.lock().unwrap_or_else(|p| p.into_inner()).contains(hash) {
        return Err(CompileRefusal {
            name: hash.to_owned(),
            limit: "compile-timeout",
            detail: "compiling it took too long before".into(),
        }
        .into());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (engine, name) = (engine.clone(), hash.to_owned());
    std::thread::Builder::new().name("flinkw-compile".into()).spawn(move || {
        let _ = tx.send(Plugin::load(&engine, &name, &bytes));
    })?;
    match rx.recv_timeout(limits.timeout) {
        Ok(loaded) => Ok(loaded?),
        Err(_) => {
            OVERRAN.lock().unwrap_or_else(|p| p.into_inner()).insert(hash.to_owned());
            Err(CompileRefusal {
                name: hash.to_owned(),
                limit: "compile-timeout",
                detail: format!("compiling took longer than {:?}", limits.timeout),
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with(functions: usize, body_ops: usize, locals: u32) -> Vec<u8> {
        let body = "(drop (i32.const 1))".repeat(body_ops);
        let funcs: String = (0..functions)
            .map(|_| format!("(func (local {}) {body})", "i32 ".repeat(locals as usize)))
            .collect();
        wat::parse_str(format!("(component (core module {funcs}))")).unwrap()
    }

    #[test]
    fn limits_name_what_was_exceeded() {
        let small = CompileLimits {
            max_functions: 3,
            max_function_bytes: 1000,
            max_code_bytes: 2500,
            max_locals: 10,
            ..CompileLimits::default()
        };
        assert_eq!(check("p", &module_with(3, 10, 2), &small), Ok(()));
        assert_eq!(check("p", &module_with(4, 1, 0), &small).unwrap_err().limit, "max-functions");
        let e = check("p", &module_with(1, 400, 0), &small).unwrap_err();
        assert_eq!(e.limit, "max-function-bytes");
        assert!(e.to_string().contains("function 0 has"), "{e}");
        assert_eq!(
            check("p", &module_with(3, 300, 0), &small).unwrap_err().limit,
            "max-code-bytes"
        );
        assert_eq!(check("p", &module_with(1, 1, 11), &small).unwrap_err().limit, "max-locals");
        let tiny = CompileLimits { max_bytes: 10, ..small };
        assert_eq!(check("p", &module_with(1, 1, 0), &tiny).unwrap_err().limit, "max-bytes");
    }
}
