//! The job's environment: its config and the entry point for sources.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::Error;
use crate::graph::GraphBuilder;

/// The signature of a job function exported with [`crate::export_job!`].
pub type JobFn = fn(&mut Env) -> Result<(), Error>;

/// The job's config: the `--set key=value` pairs given to `flinkw run`.
///
/// Every key the job reads is reported to the host, which refuses keys that
/// neither the job nor the host reads (a typo should not pass silently).
#[derive(Debug, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl Config {
    pub(crate) fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Config { values: values.into_iter().collect(), read: RefCell::default() }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.read.borrow_mut().insert(key.to_owned());
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<String, Error> {
        self.get(key).map(str::to_owned).ok_or_else(|| {
            Error::msg(format!("missing config `{key}` (set it with --set {key}=...)"))
        })
    }

    /// The value of `key` parsed as `T`, or `default` when unset.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| Error::msg(format!("bad value {v:?} for config `{key}`: {e}"))),
        }
    }

    /// Every key starting with `prefix`, without it, and its value (e.g.
    /// `kafka.` for client properties given with `--set kafka.x=y`).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let found: Vec<(String, String)> = self
            .values
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect();
        let mut read = self.read.borrow_mut();
        for (k, _) in &found {
            read.insert(format!("{prefix}{k}"));
        }
        found
    }

    pub(crate) fn keys_read(&self) -> Vec<String> {
        self.read.borrow().iter().cloned().collect()
    }
}

/// Where a job starts: gives the config and creates sources.
pub struct Env {
    pub(crate) config: Config,
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
}

impl Env {
    /// The job's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the job's name, shown by the host.
    pub fn set_name(&mut self, name: &str) {
        self.graph.borrow_mut().name = name.to_owned();
    }

    /// Sets the default parallelism of every operator of the job.
    pub fn set_parallelism(&mut self, parallelism: u32) {
        self.graph.borrow_mut().parallelism = Some(parallelism);
    }

    /// Registers functions that save and restore state the plugin keeps in
    /// its own memory, called by the host at checkpoints and on recovery.
    pub fn guest_state(
        &mut self,
        snapshot: impl Fn() -> Vec<u8> + 'static,
        restore: impl Fn(&[u8]) -> Result<(), Error> + 'static,
    ) {
        let mut g = self.graph.borrow_mut();
        g.snapshot = Some(Box::new(snapshot));
        g.restore = Some(Box::new(restore));
    }

    /// Names this plugin's version (any text, e.g. `"2"`). The host records
    /// it with every checkpoint of the guest state; a plugin that declares
    /// none is `unversioned`.
    pub fn version(&mut self, version: &str) {
        self.graph.borrow_mut().version = Some(version.to_owned());
    }

    /// Registers a migration of guest state written by another version of
    /// this plugin: when a job restores from a checkpoint or savepoint whose
    /// guest state an older version wrote, the host calls `migrate(old
    /// version, old state)` and gives the result to the `restore` function
    /// of [`Env::guest_state`]. An error refuses the restore with its
    /// message. Without a migration, state of another version is restored
    /// as it was written.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// fn job(env: &mut Env) -> Result<(), Error> {
    ///     env.version("2");
    ///     env.migrate(|from, state| match from {
    ///         "1" => Ok([state, b"|v2".to_vec()].concat()),
    ///         other => Err(Error::msg(format!("cannot read state of version {other}"))),
    ///     });
    ///     Ok(())
    /// }
    /// ```
    pub fn migrate(&mut self, migrate: impl Fn(&str, Vec<u8>) -> Result<Vec<u8>, Error> + 'static) {
        self.graph.borrow_mut().migrate = Some(Box::new(migrate));
    }
}
