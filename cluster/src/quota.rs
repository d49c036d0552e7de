//! Quotas per tenant, and the pure checks that admit or refuse a deploy.
//!
//! Everything here is IO-free: the coordinator gathers what a tenant uses
//! ([`Usage`]) and what a deploy asks for ([`Ask`]), and [`admit`] says yes,
//! or names the quota and the numbers. The deploy rate is a token bucket
//! driven by the caller's clock ([`TokenBucket`]), so its tests need no
//! sleeping; so is the crash-loop backoff ([`CrashBackoff`]), which slows
//! the deploys of a tenant whose jobs keep failing at once.

use serde::{Deserialize, Serialize};

/// What one tenant may use. Set when the tenant is created and changed
/// with `flinkw tenant set`; every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quota {
    /// Task slots taken by the tenant's live jobs together.
    pub max_slots: u32,
    /// Live (not finished, failed or cancelled) jobs.
    pub max_jobs: u32,
    /// Linear memory of one plugin instance, MiB.
    pub max_instance_memory_mib: u64,
    /// Memory of all the tenant's live plugin instances (per-instance
    /// limit × instances), MiB.
    pub max_total_memory_mib: u64,
    /// The CPU deadline of one guest call, ms.
    pub max_call_ms: u64,
    /// Bytes in the tenant's checkpoint and savepoint folders; a deploy
    /// is refused once they hold more.
    pub max_checkpoint_mib: u64,
    /// Deploys refilled per minute (the token bucket's rate).
    pub deploys_per_minute: u32,
    /// Deploys that may come at once (the token bucket's size).
    pub deploy_burst: u32,
    /// Size of one plugin, MiB (also bounds what the compiler is given).
    pub max_plugin_mib: u64,
    /// CPU of all the tenant's threads on one worker, in percent of one
    /// core (a cgroup's `cpu.cfs_quota_us`, see `cpu_groups`); 0: no cap,
    /// only an equal share when the CPU is contended.
    pub max_cpu_percent: u32,
    /// The longest wait, in seconds, the crash-loop backoff puts between a
    /// tenant's deploys while its jobs keep failing soon after they were
    /// deployed (see [`CrashBackoff`]); 0: no backoff.
    pub crash_backoff_max_s: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_slots: 4,
            max_jobs: 10,
            max_instance_memory_mib: 256,
            max_total_memory_mib: 2048,
            max_call_ms: 5_000,
            max_checkpoint_mib: 1024,
            deploys_per_minute: 30,
            deploy_burst: 10,
            max_plugin_mib: 64,
            max_cpu_percent: 0,
            crash_backoff_max_s: 60,
        }
    }
}

/// What a tenant's live jobs use now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live jobs.
    pub jobs: u32,
    /// Slots they need.
    pub slots: u32,
    /// Memory their instances may take, MiB.
    pub memory_mib: u64,
    /// Bytes in the tenant's checkpoint folders.
    pub checkpoint_bytes: u64,
}

/// What one deploy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Slots the job needs (its widest task, with slot sharing).
    pub slots: u32,
    /// Plugin instances it may run (subtasks over every task).
    pub instances: u32,
    /// Memory limit per instance, MiB.
    pub instance_memory_mib: u64,
    /// CPU deadline per guest call, ms.
    pub call_ms: u64,
}

/// A deploy or an upload refused by a quota: which one, and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota {quota} of tenant {tenant} exceeded: {detail}")]
pub struct Refusal {
    /// The tenant.
    pub tenant: String,
    /// The quota's name, as `flinkw tenant set` spells it (`max-jobs`, …).
    pub quota: &'static str,
    /// The numbers.
    pub detail: String,
    /// The HTTP status to answer: 429 for the rate, 403 for the others.
    pub status: u16,
}

impl Refusal {
    fn new(tenant: &str, quota: &'static str, detail: String) -> Refusal {
        Refusal { tenant: tenant.to_owned(), quota, detail, status: 403 }
    }
}

/// Admits a deploy of `ask` by `tenant`, or refuses it naming the first
/// quota it would exceed. Checks the per-instance limits first (they do
/// not depend on what runs), then the totals.
pub fn admit(tenant: &str, quota: &Quota, usage: &Usage, ask: &Ask) -> Result<(), Refusal> {
    if ask.instance_memory_mib > quota.max_instance_memory_mib {
        return Err(Refusal::new(
            tenant,
            "max-instance-memory-mib",
            format!(
                "a plugin instance may have at most {} MiB; the job asks for {} MiB \
                 (deploy with --memory-limit {} or less)",
                quota.max_instance_memory_mib,
                ask.instance_memory_mib,
                quota.max_instance_memory_mib
            ),
        ));
    }
    if ask.call_ms > quota.max_call_ms {
        return Err(Refusal::new(
            tenant,
            "max-call-ms",
            format!(
                "a guest call may run at most {} ms; the job asks for {} ms",
                quota.max_call_ms, ask.call_ms
            ),
        ));
    }
    if usage.jobs + 1 > quota.max_jobs {
        return Err(Refusal::new(
            tenant,
            "max-jobs",
            format!("{} live job(s) of at most {}", usage.jobs, quota.max_jobs),
        ));
    }
    if usage.slots + ask.slots > quota.max_slots {
        return Err(Refusal::new(
            tenant,
            "max-slots",
            format!(
                "the job needs {} slot(s), {} are taken, the quota is {}",
                ask.slots, usage.slots, quota.max_slots
            ),
        ));
    }
    let memory = u64::from(ask.instances) * ask.instance_memory_mib;
    if usage.memory_mib + memory > quota.max_total_memory_mib {
        return Err(Refusal::new(
            tenant,
            "max-total-memory-mib",
            format!(
                "the job's {} instance(s) × {} MiB = {memory} MiB, with {} MiB taken, is \
                 over the quota of {} MiB",
                ask.instances,
                ask.instance_memory_mib,
                usage.memory_mib,
                quota.max_total_memory_mib
            ),
        ));
    }
    if usage.checkpoint_bytes > quota.max_checkpoint_mib << 20 {
        return Err(Refusal::new(
            tenant,
            "max-checkpoint-mib",
            format!(
                "the tenant's checkpoint folders hold {:.1} MiB, over the quota of {} MiB \
                 (delete old checkpoints or savepoints)",
                usage.checkpoint_bytes as f64 / f64::from(1u32 << 20),
                quota.max_checkpoint_mib
            ),
        ));
    }
    Ok(())
}

/// Checks a plugin's size against the tenant's quota.
pub fn admit_plugin(tenant: &str, quota: &Quota, bytes: usize) -> Result<(), Refusal> {
    if bytes as u64 > quota.max_plugin_mib << 20 {
        return Err(Refusal {
            status: 413,
            ..Refusal::new(
                tenant,
                "max-plugin-mib",
                format!(
                    "the plugin has {:.1} MiB, over the quota of {} MiB",
                    bytes as f64 / f64::from(1u32 << 20),
                    quota.max_plugin_mib
                ),
            )
        });
    }
    Ok(())
}

/// A token bucket for the deploy rate, driven by the caller's clock (ms).
///
/// Counted in exact integers: one deploy is 60,000 units and every
/// millisecond adds `deploys_per_minute` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    units: u64,
    at_ms: u64,
}

/// Units of one deploy in a [`TokenBucket`].
const UNIT: u64 = 60_000;

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(quota: &Quota, now_ms: u64) -> TokenBucket {
        TokenBucket { units: u64::from(quota.deploy_burst) * UNIT, at_ms: now_ms }
    }

    /// Takes one token at `now_ms`, or refuses with the wait until the
    /// next one (HTTP 429).
    pub fn take(&mut self, tenant: &str, quota: &Quota, now_ms: u64) -> Result<(), Refusal> {
        let rate = u64::from(quota.deploys_per_minute);
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(rate))
            .min(u64::from(quota.deploy_burst) * UNIT);
        self.at_ms = now_ms.max(self.at_ms);
        if self.units >= UNIT {
            self.units -= UNIT;
            return Ok(());
        }
        let wait = match (UNIT - self.units).checked_div(rate) {
            Some(ms) => format!("the next in {:.1} s", ms as f64 / 1000.0),
            None => "no more are allowed".to_owned(),
        };
        Err(Refusal {
            status: 429,
            ..Refusal::new(
                tenant,
                "deploys-per-minute",
                format!(
                    "{} deploys per minute with bursts of {}: {wait}",
                    quota.deploys_per_minute, quota.deploy_burst
                ),
            )
        })
    }
}

/// A job that fails within this long of its deploy failed "at once" and
/// counts to its tenant's crash streak.
pub const QUICK_FAILURE_MS: u64 = 60_000;
/// Failures at once in a row that cost nothing: from the next one on,
/// deploys wait 1 s, 2 s, 4 s, … up to the quota `crash-backoff-max-s`.
pub const FREE_FAILURES: u32 = 3;

/// The crash-loop backoff of one tenant, driven by the caller's clock (ms).
///
/// A tenant whose jobs fail at once (a trap, a limit hit, within
/// [`QUICK_FAILURE_MS`] of the deploy) over and over makes the cluster
/// plan, compile, instantiate and tear down a plugin for each deploy —
/// work done for it but outside its CPU share. After [`FREE_FAILURES`]
/// such failures in a row, each further one makes the tenant's next
/// deploy wait twice as long as the one before (1 s first), at most the
/// quota `crash-backoff-max-s`. Only a job that ended (in any way) after
/// running at least [`QUICK_FAILURE_MS`] ends the streak: quick jobs that
/// finish or are cancelled neither count nor reset it, so a trivial job
/// between the failing ones does not wipe them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashBackoff {
    streak: u32,
    last_ms: u64,
    last_error: String,
}

impl CrashBackoff {
    /// A job of the tenant ended: `failed` or not, `ran_ms` after its
    /// deploy, at `now_ms`.
    pub fn ended(&mut self, failed: bool, ran_ms: u64, now_ms: u64, error: &str) {
        if ran_ms >= QUICK_FAILURE_MS {
            *self = CrashBackoff::default();
        } else if failed {
            self.streak += 1;
            self.last_ms = now_ms;
            self.last_error = error.chars().take(200).collect();
        }
    }

    /// The wait after the newest failure, ms (0: none).
    pub fn wait_ms(&self, quota: &Quota) -> u64 {
        if quota.crash_backoff_max_s == 0 || self.streak <= FREE_FAILURES {
            return 0;
        }
        let doublings = (self.streak - FREE_FAILURES - 1).min(30);
        (1000u64 << doublings).min(u64::from(quota.crash_backoff_max_s) * 1000)
    }

    /// Whether `tenant` may deploy at `now_ms`; else a 429 naming the
    /// quota, the streak and the wait.
    pub fn check(&self, tenant: &str, quota: &Quota, now_ms: u64) -> Result<(), Refusal> {
        let until = self.last_ms.saturating_add(self.wait_ms(quota));
        if now_ms >= until {
            return Ok(());
        }
        Err(Refusal {
            status: 429,
            ..Refusal::new(
                tenant,
                "crash-backoff-max-s",
                format!(
                    "{} of the tenant's jobs in a row failed within {} s of their deploy \
                     (the last: {}); deploys resume in {:.1} s (the wait doubles with \
                     each such failure after the first {FREE_FAILURES}, up to {} s)",
                    self.streak,
                    QUICK_FAILURE_MS / 1000,
                    self.last_error,
                    (until - now_ms) as f64 / 1000.0,
                    quota.crash_backoff_max_s
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(slots: u32, memory: u64) -> Ask {
        Ask { slots, instances: slots, instance_memory_mib: memory, call_ms: 1000 }
    }

    #[test]
    fn each_quota_is_named_with_its_numbers() {
        let q = Quota { max_slots: 2, max_jobs: 2, max_total_memory_mib: 300, ..Quota::default() };
        let none = Usage::default();
        assert_eq!(admit("a", &q, &none, &ask(2, 100)), Ok(()));
        let e = admit("a", &q, &none, &ask(3, 10)).unwrap_err();
        assert_eq!(e.quota, "max-slots");
        assert!(e.detail.contains("needs 3 slot(s)"), "{e}");
        let e = admit("a", &q, &none, &ask(1, 257)).unwrap_err();
        assert_eq!(e.quota, "max-instance-memory-mib");
        assert!(e.to_string().contains("at most 256 MiB"), "{e}");
        let e = admit("a", &q, &Usage { jobs: 2, ..none }, &ask(1, 10)).unwrap_err();
        assert_eq!((e.quota, e.status), ("max-jobs", 403));
        let e = admit("a", &q, &Usage { memory_mib: 200, ..none }, &ask(1, 101)).unwrap_err();
        assert_eq!(e.quota, "max-total-memory-mib");
        let e = admit("a", &q, &none, &Ask { call_ms: 6000, ..ask(1, 1) }).unwrap_err();
        assert_eq!(e.quota, "max-call-ms");
        let full = Usage { checkpoint_bytes: (1024 << 20) + 1, ..none };
        assert_eq!(admit("a", &q, &full, &ask(1, 1)).unwrap_err().quota, "max-checkpoint-mib");
        assert_eq!(admit_plugin("a", &q, 65 << 20).unwrap_err().status, 413);
    }

    #[test]
    fn the_bucket_allows_bursts_and_refills_with_time() {
        let q = Quota { deploys_per_minute: 6, deploy_burst: 2, ..Quota::default() };
        let mut b = TokenBucket::full(&q, 0);
        assert!(b.take("a", &q, 0).is_ok());
        assert!(b.take("a", &q, 0).is_ok());
        let e = b.take("a", &q, 0).unwrap_err();
        assert_eq!((e.quota, e.status), ("deploys-per-minute", 429));
        assert!(e.detail.contains("the next in 10.0 s"), "{e}");
        assert!(b.take("a", &q, 9_000).is_err());
        assert!(b.take("a", &q, 10_000).is_ok());
        // Never more than the burst, however long it waited.
        let mut b = TokenBucket::full(&q, 0);
        for _ in 0..2 {
            assert!(b.take("a", &q, 1_000_000).is_ok());
        }
        assert!(b.take("a", &q, 1_000_000).is_err());
    }

    #[test]
    fn jobs_that_fail_at_once_slow_the_deploys_down() {
        let q = Quota { crash_backoff_max_s: 5, ..Quota::default() };
        let mut b = CrashBackoff::default();
        for i in 0..FREE_FAILURES {
            b.ended(true, 100, u64::from(i), "trap");
            assert_eq!(b.check("m", &q, u64::from(i)), Ok(()));
        }
        b.ended(true, 100, 1000, "ran past its deadline of 1s");
        let e = b.check("m", &q, 1000).unwrap_err();
        assert_eq!((e.quota, e.status), ("crash-backoff-max-s", 429));
        assert!(e.detail.contains("4 of the tenant's jobs in a row"), "{e}");
        assert!(e.detail.contains("ran past its deadline of 1s"), "{e}");
        assert!(e.detail.contains("deploys resume in 1.0 s"), "{e}");
        assert!(b.check("m", &q, 2000).is_ok());
        // 2 s, 4 s, then the cap of 5 s.
        let waits: Vec<u64> = (0..4)
            .map(|_| {
                b.ended(true, 100, 10_000, "trap");
                b.wait_ms(&q)
            })
            .collect();
        assert_eq!(waits, [2000, 4000, 5000, 5000]);
        // A quick job that finished does not wipe the streak out; a job
        // that ran long, even if it failed, ends it.
        b.ended(false, 1, 10_001, "");
        assert_eq!(b.wait_ms(&q), 5000);
        b.ended(true, QUICK_FAILURE_MS, 20_000, "lost");
        assert_eq!(b.wait_ms(&q), 0);
        assert_eq!(b.check("m", &q, 20_000), Ok(()));
        // 0 turns it off.
        let off = Quota { crash_backoff_max_s: 0, ..q };
        for _ in 0..10 {
            b.ended(true, 1, 40_000, "trap");
        }
        assert_eq!(b.check("m", &off, 40_000), Ok(()));
    }
}
