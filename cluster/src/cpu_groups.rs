//! Per-tenant CPU shares on a worker, through Linux cgroups (v1 `cpu`).
//!
//! Without them, the kernel shares a worker's CPUs fairly between
//! *threads*: a tenant with eight busy subtasks gets eight times the CPU
//! of a tenant with one. With them, every tenant's threads on a worker sit
//! in a cgroup of that tenant, and the kernel shares the CPU between the
//! groups by their `cpu.shares` (equal by default), then between the
//! threads inside each group. A tenant whose quota has `max-cpu-percent`
//! is also capped by the group's `cpu.cfs_quota_us` (100 = one core).
//!
//! The layout, under the cgroup the worker was started in (`HOME`, usually
//! the root `/sys/fs/cgroup/cpu`):
//!
//! ```text
//! HOME/flinkw-WORKER-PID/          cpu.shares = 1024 × CPUs (against the
//!                                  threads outside, the tenants together
//!                                  weigh as much as one busy thread per CPU)
//! HOME/flinkw-WORKER-PID/t-TENANT/ cpu.shares = 1024, cpu.cfs_quota_us
//! HOME/flinkw-WORKER-PID/untenanted/  jobs of the admin
//! ```
//!
//! A job's thread moves itself into its tenant's group before it starts
//! the subtask threads, which inherit the group (so do the threads they
//! start); the deploy step (compiling and planning the tenant's plugin)
//! runs in the group too. When the last job of a tenant on the worker ends,
//! threads still in the group (say, a library's pool started from a
//! subtask) go back to `HOME` and the group is removed. The worker's own
//! group is removed when the worker exits normally or on SIGTERM/SIGINT;
//! one killed with SIGKILL leaves empty groups, which the next worker
//! started on the machine removes (their process is gone).
//!
//! When the cgroups cannot be used (not root, a read-only or missing cpu
//! hierarchy, cgroup v2 only, not Linux) the worker logs one warning and
//! runs as before. cgroup v2 would need the whole worker moved into a
//! threaded subtree of its own (`cgroup.type = threaded`, `cpu.weight`),
//! which a process cannot do from an arbitrary starting group; it is not
//! done.
//!
//! The path, name and number rules are pure functions (unit-tested); the
//! rest is a thin layer of file writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `cpu.shares` of every tenant's group: equal weights.
pub const TENANT_SHARES: u64 = 1024;
/// The CFS period the groups use, µs (the kernel's default).
pub const CFS_PERIOD_US: u64 = 100_000;

/// The cgroup v1 path of the `cpu` controller in `/proc/self/cgroup`
/// (lines `ID:CONTROLLERS:PATH`); `None` when no v1 hierarchy has it.
pub fn own_cpu_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })
}

/// Where the v1 `cpu` hierarchy is mounted, and which cgroup is its root,
/// from `/proc/self/mountinfo` (`ID PARENT MAJ:MIN ROOT MOUNT OPTS ... -
/// cgroup SOURCE SUPER-OPTS`).
pub fn cpu_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        if fstype != "cgroup" || !options.split(',').any(|o| o == "cpu") {
            return None;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        let (root, mount) = (fields.get(3)?, fields.get(4)?);
        Some((PathBuf::from(unescape(mount)), unescape(root)))
    })
}

/// mountinfo writes a space as `\040` (and tab, newline, backslash alike).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|c| u8::from_str_radix(c, 8).ok());
        match code {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The folder of the worker's own cgroup: the mount point joined with the
/// worker's path relative to the mount's root.
pub fn home_dir(mount: &Path, mount_root: &str, own: &str) -> PathBuf {
    let relative = own.strip_prefix(mount_root).unwrap_or(own).trim_start_matches('/');
    if relative.is_empty() { mount.to_owned() } else { mount.join(relative) }
}

/// Keeps `[a-z0-9-]` (upper case lowered), writes any other byte as
/// `_XX`: a name that is one path component and never `.` or `..`.
fn component(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => out.push(b as char),
            b'A'..=b'Z' => out.push(b.to_ascii_lowercase() as char),
            _ => out.push_str(&format!("_{b:02x}")),
        }
    }
    out
}

/// The name of a tenant's group: `t-NAME`, or `untenanted` for the
/// admin's jobs (tenant names never start with `_`, and `t-` keeps them
/// apart from `untenanted`).
pub fn group_name(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("t-{}", component(t)),
        None => "untenanted".to_owned(),
    }
}

/// The name of a worker's group: `flinkw-NAME-PID` (two workers of one
/// name on a machine, say two test clusters, do not collide).
pub fn worker_group_name(worker: &str, pid: u32) -> String {
    format!("flinkw-{}-{pid}", component(worker))
}

/// The process id in a worker group's name, if it is one.
pub fn worker_group_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("flinkw-")?;
    rest.rsplit_once('-')?.1.parse().ok()
}

/// The worker group's `cpu.shares`: 1024 per CPU, within the kernel's
/// range. Against the threads outside the group (the worker's own network
/// and heartbeat threads, a coordinator on the same machine, anything
/// else) the tenants' threads together weigh as much as one busy thread
/// per CPU: they can fill the machine, but not crowd out the heartbeats
/// (1024 per *slot* did: a worker with 16 slots and three busy subtasks
/// weighed as much as 16 threads, and its heartbeats were late enough
/// under load for the coordinator to declare it lost).
pub fn worker_shares(cpus: usize) -> u64 {
    (TENANT_SHARES * cpus as u64).clamp(2, 262_144)
}

/// `cpu.cfs_quota_us` for at most `percent` of one core (`None`: no cap,
/// written as -1); at least the kernel's minimum of 1 ms.
pub fn cfs_quota_us(percent: Option<u32>) -> i64 {
    match percent {
        Some(p) if p > 0 => (u64::from(p) * CFS_PERIOD_US / 100).max(1000) as i64,
        _ => -1,
    }
}

/// The users of each tenant group: whoever enters first makes the group,
/// whoever leaves last removes it.
#[derive(Debug, Default)]
pub struct Users(HashMap<String, usize>);

impl Users {
    /// One more user of `group`; true if it is the first (make the group).
    pub fn enter(&mut self, group: &str) -> bool {
        let n = self.0.entry(group.to_owned()).or_default();
        *n += 1;
        *n == 1
    }

    /// One user fewer; true if it was the last (remove the group).
    pub fn leave(&mut self, group: &str) -> bool {
        match self.0.get_mut(group) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(group);
                true
            }
            None => false,
        }
    }

    /// Groups in use.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

/// A worker's tenant groups, or nothing when cgroups cannot be used.
#[derive(Debug, Clone)]
pub struct CpuGroups(Option<Arc<Tree>>);

#[derive(Debug)]
struct Tree {
    /// The cgroup the worker started in: threads go back here.
    home: PathBuf,
    /// The worker's group.
    dir: PathBuf,
    users: Mutex<Users>,
}

/// A thread's stay in its tenant's group: the thread goes back to the
/// worker's starting group when this is dropped (on any thread), and the
/// group is removed when it was the tenant's last user.
#[derive(Debug)]
pub struct Membership {
    tree: Option<Arc<Tree>>,
    group: String,
    tid: i64,
}

impl CpuGroups {
    /// No groups: threads share the CPU as plain threads.
    pub fn off() -> CpuGroups {
        CpuGroups(None)
    }

    /// Makes the worker's group under the cgroup it runs in, and removes
    /// the groups of workers that died without cleaning up. Logs one
    /// warning and returns [`CpuGroups::off`] when that is not possible.
    pub fn open(worker: &str) -> CpuGroups {
        match Self::try_open(worker) {
            Ok(tree) => {
                tracing::info!(dir = %tree.dir.display(), "tenants' threads get CPU shares by cgroup");
                CpuGroups(Some(Arc::new(tree)))
            }
            Err(reason) => {
                tracing::warn!("{reason}");
                eprintln!("warning: {reason}");
                CpuGroups(None)
            }
        }
    }

    fn try_open(worker: &str) -> Result<Tree, String> {
        let off = "per-tenant CPU shares are off (tenants' threads share the CPU as plain threads)";
        if !cfg!(target_os = "linux") {
            return Err(format!("{off}: cgroups are Linux only"));
        }
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{off}: {p}: {e}"));
        let cgroup = read("/proc/self/cgroup")?;
        let Some(own) = own_cpu_path(&cgroup) else {
            let why = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "this machine has cgroup v2 only, which flinkw does not use yet"
            } else {
                "no cgroup v1 `cpu` controller in /proc/self/cgroup"
            };
            return Err(format!("{off}: {why}"));
        };
        let (mount, root) = cpu_mount(&read("/proc/self/mountinfo")?)
            .ok_or_else(|| format!("{off}: the cgroup v1 `cpu` hierarchy is not mounted"))?;
        let home = home_dir(&mount, &root, own);
        let dir = home.join(worker_group_name(worker, std::process::id()));
        sweep(&home);
        std::fs::create_dir(&dir)
            .map_err(|e| format!("{off}: cannot make the cgroup {}: {e}", dir.display()))?;
        let tree = Tree { home, dir, users: Mutex::new(Users::default()) };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Err(e) = write(&tree.dir.join("cpu.shares"), &worker_shares(cpus).to_string()) {
            tree.remove();
            return Err(format!("{off}: {e}"));
        }
        Ok(tree)
    }

    /// Whether tenants get CPU shares.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The worker's group folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.0.as_ref().map(|t| t.dir.as_path())
    }

    /// Moves the calling thread into `tenant`'s group (made if needed,
    /// with its CPU cap `cpu_percent` of one core, if any); threads it
    /// starts from now on are in the group too. A failure is logged and the
    /// thread stays where it is.
    pub fn enter(&self, tenant: Option<&str>, cpu_percent: Option<u32>) -> Membership {
        let group = group_name(tenant);
        let tid = current_tid();
        let Some(tree) = &self.0 else {
            return Membership { tree: None, group, tid };
        };
        let mut users = tree.users.lock().unwrap_or_else(|p| p.into_inner());
        let first = users.enter(&group);
        let dir = tree.dir.join(&group);
        let entered = (|| {
            if first {
                match std::fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
                }
                write(&dir.join("cpu.shares"), &TENANT_SHARES.to_string())?;
            }
            // The cap follows the tenant's quota as of this job.
            write(&dir.join("cpu.cfs_quota_us"), &cfs_quota_us(cpu_percent).to_string())?;
            write(&dir.join("tasks"), &tid.to_string())
        })();
        if let Err(e) = entered {
            tracing::warn!(group = %group, error = %e, "a job's threads stay out of their tenant's cgroup");
        }
        Membership { tree: Some(tree.clone()), group, tid }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let Some(tree) = &self.tree else { return };
        let _ = write(&tree.home.join("tasks"), &self.tid.to_string());
        let mut users = tree.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.leave(&self.group) {
            tree.remove_group(&self.group);
        }
    }
}

impl Tree {
    /// Moves any thread left in `group` home and removes the group.
    fn remove_group(&self, group: &str) {
        let dir = self.dir.join(group);
        evacuate(&dir, &self.home);
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a tenant's cgroup")
            }
            _ => {}
        }
    }

    /// Removes every group of the worker, and the worker's.
    fn remove(&self) {
        let groups: Vec<String> = {
            let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            users.groups().cloned().collect()
        };
        for g in groups {
            self.remove_group(&g);
        }
        evacuate(&self.dir, &self.home);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes the worker's groups now (on SIGTERM, before the process exits
/// with its threads still in them).
pub fn remove_now(groups: &CpuGroups) {
    if let Some(tree) = &groups.0 {
        tree.remove();
    }
}

/// Moves every thread in the cgroup `dir` (and its children) to `home`.
fn evacuate(dir: &Path, home: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                evacuate(&e.path(), home);
            }
        }
    }
    let tasks = std::fs::read_to_string(dir.join("tasks")).unwrap_or_default();
    for tid in tasks.lines().filter(|l| !l.is_empty()) {
        let _ = write(&home.join("tasks"), tid);
    }
}

/// Removes the groups of workers whose process is gone (killed with
/// SIGKILL: nothing cleaned up). Their groups hold no threads any more.
fn sweep(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = worker_group_pid(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(e.path()) {
            for c in children.flatten() {
                if c.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
}

/// The calling thread's id (what a v1 `tasks` file takes).
fn current_tid() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_cpu_controller_and_its_mount() {
        let cgroup =
            "9:name=systemd:/\n4:memory:/process_api/d38b\n2:cpuacct:/\n1:cpu:/jobs/a\n0::/\n";
        assert_eq!(own_cpu_path(cgroup), Some("/jobs/a"));
        // Mounted together with cpuacct, as on most distributions.
        assert_eq!(own_cpu_path("3:cpu,cpuacct:/x\n"), Some("/x"));
        assert_eq!(own_cpu_path("0::/user.slice\n"), None);
        let mountinfo = "\
35 24 0:30 / /sys/fs/cgroup/cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpuacct
34 24 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
40 24 0:35 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
";
        assert_eq!(cpu_mount(mountinfo), Some((PathBuf::from("/sys/fs/cgroup/cpu"), "/".into())));
        let joint = "34 24 0:29 /ns /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert_eq!(cpu_mount(joint), Some((PathBuf::from("/sys/fs/cgroup/cpu x"), "/ns".into())));
        assert_eq!(cpu_mount("40 24 0:35 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), None);
    }

    #[test]
    fn the_home_group_is_the_own_path_under_the_mount() {
        let mount = Path::new("/sys/fs/cgroup/cpu");
        assert_eq!(home_dir(mount, "/", "/"), mount);
        assert_eq!(home_dir(mount, "/", "/jobs/a"), mount.join("jobs/a"));
        // In a cgroup namespace, /proc/self/cgroup is relative to the mount's root.
        assert_eq!(home_dir(mount, "/ns", "/ns/a"), mount.join("a"));
    }

    #[test]
    fn names_are_one_safe_path_component() {
        assert_eq!(group_name(Some("team-a")), "t-team-a");
        assert_eq!(group_name(None), "untenanted");
        assert_eq!(group_name(Some("../x")), "t-_2e_2e_2fx");
        assert_eq!(worker_group_name("W1.local", 42), "flinkw-w1_2elocal-42");
        assert_eq!(worker_group_pid("flinkw-w1_2elocal-42"), Some(42));
        assert_eq!(worker_group_pid("flinkw-worker-7-1234"), Some(1234));
        assert_eq!(worker_group_pid("flinkw-w1"), None);
        assert_eq!(worker_group_pid("docker"), None);
    }

    #[test]
    fn shares_and_quotas_are_in_the_kernels_range() {
        assert_eq!(worker_shares(1), 1024);
        assert_eq!(worker_shares(2), 2048);
        assert_eq!(worker_shares(100_000), 262_144);
        assert_eq!(cfs_quota_us(None), -1);
        assert_eq!(cfs_quota_us(Some(0)), -1);
        assert_eq!(cfs_quota_us(Some(50)), 50_000);
        assert_eq!(cfs_quota_us(Some(250)), 250_000);
        assert_eq!(cfs_quota_us(Some(1)), 1000, "the kernel's minimum of 1 ms");
    }

    #[test]
    fn the_first_user_makes_a_group_and_the_last_removes_it() {
        let mut users = Users::default();
        assert!(users.enter("t-a"));
        assert!(!users.enter("t-a"));
        assert!(users.enter("t-b"));
        assert!(!users.leave("t-a"));
        assert!(users.leave("t-a"));
        assert!(!users.leave("t-a"), "a group left twice is not removed twice");
        assert_eq!(users.groups().collect::<Vec<_>>(), ["t-b"]);
    }
}
