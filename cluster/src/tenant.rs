//! Tenants: who may use a coordinator, with which token, within which
//! quotas, and where their checkpoints live.
//!
//! The coordinator's own token (`--token`) is the **admin** token: it
//! creates and deletes tenants and sees everything. Each tenant has a token
//! of its own, made at random when the tenant is created and shown once;
//! the coordinator keeps only its SHA-256 (`data-dir/tenants.json`) and
//! compares in constant time. A deleted tenant's token stops working with
//! the next request.
//!
//! A tenant's checkpoints and savepoints live in its own folder,
//! `STORAGE/NAME` ([`Namespace`]): a path outside it is refused, so no
//! tenant can name another's savepoint.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::quota::{CrashBackoff, Quota, TokenBucket};

/// What a tenant's guests may reach besides flinkw's own imports. Files,
/// sockets and environment variables are never granted; clocks only when
/// the policy says so (without them a guest reads a clock frozen at 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// The WASI wall and monotonic clocks.
    pub clocks: bool,
}

/// One tenant as stored (without its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its name: lowercase letters, digits and `-`.
    pub name: String,
    /// Hex SHA-256 of its token.
    pub token_sha256: String,
    /// What it may use.
    pub quota: Quota,
    /// What its guests may reach.
    #[serde(default)]
    pub policy: Policy,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: u64,
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of the coordinator's token: sees and may do everything.
    Admin,
    /// A tenant, by name.
    Tenant(String),
}

impl Principal {
    /// The tenant's name, none for the admin.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }

    /// Whether this principal may see what belongs to `owner` (none:
    /// the admin's own jobs).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(t) => owner == Some(t.as_str()),
        }
    }
}

/// Checks a tenant name: 1–32 of `a-z 0-9 -`, not starting with `-`, not `admin`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!("a tenant name is 1 to 32 of a-z, 0-9 and '-' (not first), not {name:?}");
    }
    if name == "admin" {
        bail!("`admin` is the coordinator's own role, not a tenant name");
    }
    Ok(())
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token: `fwt_` and 64 hex digits from the OS's random source.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(format!("fwt_{}", hex::encode(bytes)))
}

/// The folder a tenant's checkpoints and savepoints must be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// `STORAGE/NAME`.
    pub root: PathBuf,
    tenant: String,
}

impl Namespace {
    /// The namespace of `tenant` under `storage`.
    pub fn new(storage: &Path, tenant: &str) -> Namespace {
        Namespace { root: storage.join(tenant), tenant: tenant.to_owned() }
    }

    /// Resolves a checkpoint or savepoint path a tenant gave: a relative
    /// path is taken inside the namespace; an absolute one must be inside
    /// it. `..` is refused anywhere. `what` names the field in messages.
    pub fn resolve(&self, path: &Path, what: &str) -> anyhow::Result<PathBuf> {
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            bail!("{what} {} may not contain `..`", path.display());
        }
        let full = if path.is_absolute() { path.to_path_buf() } else { self.root.join(path) };
        if !full.starts_with(&self.root) || full == self.root {
            bail!(
                "{what} {} is outside tenant {}'s storage: use a folder inside {} (or a \
                 relative name, taken inside it)",
                path.display(),
                self.tenant,
                self.root.display()
            );
        }
        Ok(full)
    }
}

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    tenants: Vec<Tenant>,
    /// Plugin hashes each tenant uploaded.
    #[serde(default)]
    plugins: BTreeMap<String, Vec<String>>,
}

/// The tenants of a coordinator, kept in `data-dir/tenants.json`
/// (rewritten atomically at every change).
pub struct TenantStore {
    path: PathBuf,
    storage: PathBuf,
    state: Mutex<Stored>,
    buckets: Mutex<BTreeMap<String, TokenBucket>>,
    crashes: Mutex<BTreeMap<String, CrashBackoff>>,
    plan_cpu_ns: Mutex<BTreeMap<String, u64>>,
    /// Held while a deploy is checked and admitted, so that two deploys
    /// of one tenant cannot both take the last of a quota.
    pub(crate) admission: Mutex<()>,
}

impl TenantStore {
    /// Opens (or starts) the store in `data_dir`; tenants' checkpoints go
    /// under `storage`.
    pub fn open(data_dir: &Path, storage: PathBuf) -> anyhow::Result<TenantStore> {
        let path = data_dir.join("tenants.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a tenants file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(TenantStore {
            path,
            storage,
            state: Mutex::new(state),
            buckets: Mutex::new(BTreeMap::new()),
            crashes: Mutex::new(BTreeMap::new()),
            plan_cpu_ns: Mutex::new(BTreeMap::new()),
            admission: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &Stored) -> anyhow::Result<()> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("part");
            std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Who holds `token`: the admin (the coordinator's token) or a tenant.
    pub fn authenticate(&self, token: &str, admin_token: &str) -> Option<Principal> {
        if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
            return Some(Principal::Admin);
        }
        let hash = token_hash(token);
        let state = self.lock();
        // Compare with every tenant, in constant time each.
        let mut found = None;
        for t in &state.tenants {
            if constant_time_eq(hash.as_bytes(), t.token_sha256.as_bytes()) {
                found = Some(Principal::Tenant(t.name.clone()));
            }
        }
        found
    }

    /// Creates a tenant; returns its token (kept only as a hash).
    pub fn create(&self, name: &str, quota: Quota, policy: Policy) -> anyhow::Result<String> {
        check_name(name)?;
        let token = new_token()?;
        let mut state = self.lock();
        if state.tenants.iter().any(|t| t.name == name) {
            bail!("tenant {name} exists already");
        }
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        state.tenants.push(Tenant {
            name: name.to_owned(),
            token_sha256: token_hash(&token),
            quota,
            policy,
            created_ms,
        });
        self.save(&state)?;
        Ok(token)
    }

    /// Deletes a tenant: its token stops working at once. False if there
    /// is no such tenant.
    pub fn delete(&self, name: &str) -> anyhow::Result<bool> {
        let mut state = self.lock();
        let before = state.tenants.len();
        state.tenants.retain(|t| t.name != name);
        if state.tenants.len() == before {
            return Ok(false);
        }
        state.plugins.remove(name);
        self.save(&state)?;
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.crashes.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(true)
    }

    /// Changes a tenant's quota and policy with `change`; returns the tenant.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Quota, &mut Policy),
    ) -> anyhow::Result<Tenant> {
        let mut state = self.lock();
        let t = state
            .tenants
            .iter_mut()
            .find(|t| t.name == name)
            .with_context(|| format!("no tenant {name}"))?;
        change(&mut t.quota, &mut t.policy);
        let t = t.clone();
        self.save(&state)?;
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(t)
    }

    /// Every tenant, by name.
    pub fn list(&self) -> Vec<Tenant> {
        let mut all = self.lock().tenants.clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// One tenant.
    pub fn get(&self, name: &str) -> Option<Tenant> {
        self.lock().tenants.iter().find(|t| t.name == name).cloned()
    }

    /// Records that `tenant` uploaded the plugin `hash`.
    pub fn own_plugin(&self, tenant: &str, hash: &str) -> anyhow::Result<()> {
        let mut state = self.lock();
        let list = state.plugins.entry(tenant.to_owned()).or_default();
        if !list.iter().any(|h| h == hash) {
            list.push(hash.to_owned());
            self.save(&state)?;
        }
        Ok(())
    }

    /// Whether `tenant` uploaded the plugin `hash`.
    pub fn owns_plugin(&self, tenant: &str, hash: &str) -> bool {
        self.lock().plugins.get(tenant).is_some_and(|l| l.iter().any(|h| h == hash))
    }

    /// The checkpoint namespace of `tenant`.
    pub fn namespace(&self, tenant: &str) -> Namespace {
        Namespace::new(&self.storage, tenant)
    }

    /// Takes a deploy token from the tenant's bucket at `now_ms`.
    pub fn take_deploy(
        &self,
        tenant: &str,
        quota: &Quota,
        now_ms: u64,
    ) -> Result<(), crate::quota::Refusal> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(tenant.to_owned())
            .or_insert_with(|| TokenBucket::full(quota, now_ms))
            .take(tenant, quota, now_ms)
    }

    /// A job of `tenant` ended (see [`CrashBackoff::ended`]).
    pub fn job_ended(&self, tenant: &str, failed: bool, ran_ms: u64, now_ms: u64, error: &str) {
        let mut crashes = self.crashes.lock().unwrap_or_else(|p| p.into_inner());
        crashes.entry(tenant.to_owned()).or_default().ended(failed, ran_ms, now_ms, error);
    }

    /// Adds CPU time the coordinator spent planning a deploy of `tenant`.
    pub fn charge_plan(&self, tenant: &str, ns: u64) {
        let mut cpu = self.plan_cpu_ns.lock().unwrap_or_else(|p| p.into_inner());
        *cpu.entry(tenant.to_owned()).or_default() += ns;
    }

    /// CPU time the coordinator spent planning `tenant`'s deploys (since
    /// it started), ns.
    pub fn plan_cpu_ns(&self, tenant: &str) -> u64 {
        let cpu = self.plan_cpu_ns.lock().unwrap_or_else(|p| p.into_inner());
        cpu.get(tenant).copied().unwrap_or(0)
    }

    /// Whether the crash-loop backoff lets `tenant` deploy at `now_ms`.
    pub fn check_crashes(
        &self,
        tenant: &str,
        quota: &Quota,
        now_ms: u64,
    ) -> Result<(), crate::quota::Refusal> {
        let crashes = self.crashes.lock().unwrap_or_else(|p| p.into_inner());
        crashes.get(tenant).map_or(Ok(()), |c| c.check(tenant, quota, now_ms))
    }
}

/// Bytes in the files under `dir` (0 if it does not exist); symbolic links
/// are not followed.
pub fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_as_hashes_and_die_with_their_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = TenantStore::open(dir.path(), dir.path().join("storage")).unwrap();
        let a = store.create("team-a", Quota::default(), Policy::default()).unwrap();
        let b = store.create("team-b", Quota::default(), Policy::default()).unwrap();
        assert_ne!(a, b);
        assert!(store.create("team-a", Quota::default(), Policy::default()).is_err());
        let file = std::fs::read_to_string(dir.path().join("tenants.json")).unwrap();
        assert!(!file.contains(&a) && file.contains(&token_hash(&a)), "{file}");
        assert_eq!(store.authenticate(&a, "root"), Some(Principal::Tenant("team-a".into())));
        assert_eq!(store.authenticate("root", "root"), Some(Principal::Admin));
        assert_eq!(store.authenticate("guess", "root"), None);
        // A reopened store knows the same tenants.
        let again = TenantStore::open(dir.path(), dir.path().join("storage")).unwrap();
        assert_eq!(again.authenticate(&b, "root"), Some(Principal::Tenant("team-b".into())));
        assert!(again.delete("team-b").unwrap());
        assert_eq!(again.authenticate(&b, "root"), None);
        assert!(!again.delete("team-b").unwrap());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "Admin", "admin", "a/b", "-x", "a b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("team-7").is_ok());
    }

    #[test]
    fn a_namespace_holds_its_tenants_paths_only() {
        let ns = Namespace::new(Path::new("/s"), "a");
        assert_eq!(ns.resolve(Path::new("ck"), "x").unwrap(), Path::new("/s/a/ck"));
        assert_eq!(ns.resolve(Path::new("/s/a/ck/sp-1"), "x").unwrap(), Path::new("/s/a/ck/sp-1"));
        let e = ns.resolve(Path::new("/s/b/ck"), "--from-savepoint").unwrap_err().to_string();
        assert!(e.contains("outside tenant a's storage"), "{e}");
        assert!(ns.resolve(Path::new("/s/a/../b/ck"), "x").is_err());
        assert!(ns.resolve(Path::new("../b"), "x").is_err());
        assert!(ns.resolve(Path::new("/s/a"), "x").is_err());
        assert!(ns.resolve(Path::new("/s/ab/ck"), "x").is_err());
    }
}
