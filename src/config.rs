//! Node configuration: the embedded defaults (`config/node.toml`), then a file, then
//! `AXON_*` environment variables, then command-line flags. A bad value stops the node at
//! start with the key named and the reason.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults, compiled in so the node runs with nothing else on disk.
pub const DEFAULTS: &str = include_str!("../config/node.toml");

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub supervision: SupervisionConfig,
    pub journal: JournalSettings,
    pub drivers: DriversConfig,
    pub act: ActSettings,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    pub key_name: String,
    pub segment_max_bytes: u64,
    pub preallocate_bytes: u64,
    pub max_entry_bytes: u64,
    pub max_links: u64,
    pub batch_max_records: u64,
    pub batch_max_wait_us: u64,
    pub head_every_commits: u64,
    pub checkpoint_min_interval_ms: u64,
    pub index_cache_bytes: u64,
    pub index_reopen_entries: u64,
    pub page_max_entries: u64,
    pub page_max_bytes: u64,
    pub page_scan_max_entries: u64,
    pub mailbox_capacity: u64,
    pub reader_mailbox_capacity: u64,
    pub lock_wait_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    /// The largest body of `POST /v1/probecraft/synthesize`, which carries an OpenAPI
    /// document.
    pub max_openapi_bytes: usize,
    pub max_connections: usize,
    pub call_timeout_ms: u64,
    pub retry_after_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    pub keep_alive_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    pub otlp_endpoint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    pub command_capacity: usize,
    pub seed: u64,
    /// How long a kill may take before the child is abandoned (fenced off and counted).
    pub kill_wait_ms: u64,
    /// How long one start of a child may take before it counts as a start failure.
    pub start_timeout_ms: u64,
    pub root: SupervisorConfig,
    pub core: SupervisorConfig,
    pub drivers: SupervisorConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    pub max_restarts: u32,
    pub period_seconds: u64,
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub random_factor: f64,
    pub reset_after_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriversConfig {
    /// Folders of driver manifests (`*.toml`), loaded beside the built-in `echo`.
    pub manifest_dirs: Vec<PathBuf>,
    /// How long a driver's graceful stop may take before it is killed.
    pub shutdown_timeout_ms: u64,
    /// Each driver's own restart intensity: more than `max_restarts` within
    /// `period_seconds` takes it out of live service, and it restarts after `cool_down_ms`.
    pub max_restarts: u32,
    pub period_seconds: u64,
    pub cool_down_ms: u64,
    /// Each driver's scorecard window, and the slices it is cut into.
    pub scorecard_window_seconds: u64,
    pub scorecard_slices: u32,
    /// Mirrored calls one shadow driver may be predicting at once.
    pub shadow_concurrency: u64,
    /// Half-open trials of a driver its checks took out of live service: the wait before
    /// the first (doubled after each failed one, at most `trial_max_wait_ms`), the share
    /// of its capability's traffic it serves on trial, and the failed trials in a row
    /// after which it is retired.
    pub trial_after_ms: u64,
    pub trial_max_wait_ms: u64,
    pub trial_share: f64,
    pub max_failed_trials: u32,
    /// The gates of an operator's promotion to live, where a live driver exists: the
    /// shadow period (mirrored predictions compared with live outcomes, and the share of
    /// them that agreed), then the confidence at which a trial's realized uplift is found
    /// worse than the live driver's.
    pub promotion_min_shadow_calls: u64,
    pub promotion_min_agreement: f64,
    pub promotion_confidence: f64,
    /// The pushes each side (the trial's and the live driver's) needs before a trial of
    /// a capability with a live driver may end.
    pub promotion_min_trial_calls: u64,
    /// Driver workers that may be added while the node runs (a driver grown by
    /// `POST /v1/probecraft/synthesize` has one per unit of its concurrency): each keeps
    /// room in the drivers supervisor's stop bound. A restart loads the data directory's
    /// manifests like any others, outside this count.
    pub max_added_workers: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActSettings {
    pub max_in_flight: u64,
    pub remembered_actions: u64,
    pub late_outcome_ms: u64,
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Key { key: String, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

fn key_err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Overrides taken from command-line flags.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// The embedded defaults alone.
    pub fn defaults() -> Self {
        Self::load(None, std::iter::empty(), &Overrides::default())
            .expect("the embedded defaults are valid")
    }

    /// Defaults, then `file`, then the `AXON_*` variables among `env`, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Table =
            DEFAULTS
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: "config/node.toml (embedded)".into(),
                    message: e.to_string(),
                })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let over: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            merge(&mut value, over, "")?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("AXON_"))
            .collect();
        vars.sort();
        for (var, raw) in vars {
            apply_env(&mut value, &var, &raw)?;
        }
        let mut cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| key_err(&e.path().to_string(), e.inner().to_string()))?;
        if let Some(d) = &flags.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(l) = &flags.listen {
            cfg.http.listen = l.clone();
        }
        if let Some(f) = flags.log_format {
            cfg.log.format = f;
        }
        if let Some(o) = &flags.otlp_endpoint {
            cfg.log.otlp_endpoint = o.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every bound. The first bad key is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(key_err("data_dir", "must not be empty"));
        }
        let h = &self.http;
        range("http.workers", h.workers as u64, 1, 256)?;
        range("http.max_body_bytes", h.max_body_bytes as u64, 64, 64 << 20)?;
        range(
            "http.max_openapi_bytes",
            h.max_openapi_bytes as u64,
            64,
            axon_drivers::probecraft::MAX_DOCUMENT_BYTES as u64,
        )?;
        range("http.max_connections", h.max_connections as u64, 1, 1 << 20)?;
        range("http.call_timeout_ms", h.call_timeout_ms, 1, 600_000)?;
        range("http.retry_after_seconds", h.retry_after_seconds, 1, 3600)?;
        range(
            "http.shutdown_timeout_seconds",
            h.shutdown_timeout_seconds,
            0,
            3600,
        )?;
        range("http.keep_alive_seconds", h.keep_alive_seconds, 0, 3600)?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(key_err("log.level", format!("not a valid filter: {e}")));
        }
        let otlp = &self.log.otlp_endpoint;
        if !otlp.is_empty() && !otlp.starts_with("http://") && !otlp.starts_with("https://") {
            return Err(key_err(
                "log.otlp_endpoint",
                format!("must be an http:// or https:// URL or empty (got {otlp:?})"),
            ));
        }
        let s = &self.supervision;
        range(
            "supervision.command_capacity",
            s.command_capacity as u64,
            1,
            65_536,
        )?;
        range("supervision.kill_wait_ms", s.kill_wait_ms, 1, 600_000)?;
        range(
            "supervision.start_timeout_ms",
            s.start_timeout_ms,
            1,
            3_600_000,
        )?;
        for (name, sup) in [
            ("root", &s.root),
            ("core", &s.core),
            ("drivers", &s.drivers),
        ] {
            let k = |f: &str| format!("supervision.{name}.{f}");
            range(&k("max_restarts"), u64::from(sup.max_restarts), 0, 10_000)?;
            range(&k("period_seconds"), sup.period_seconds, 1, 86_400)?;
            range(&k("max_backoff_ms"), sup.max_backoff_ms, 0, 3_600_000)?;
            if sup.min_backoff_ms > sup.max_backoff_ms {
                return Err(key_err(
                    &k("min_backoff_ms"),
                    format!(
                        "must not exceed max_backoff_ms ({} > {})",
                        sup.min_backoff_ms, sup.max_backoff_ms
                    ),
                ));
            }
            if !(0.0..=10.0).contains(&sup.random_factor) {
                return Err(key_err(
                    &k("random_factor"),
                    format!("must be between 0 and 10 (got {})", sup.random_factor),
                ));
            }
            range(&k("reset_after_ms"), sup.reset_after_ms, 0, 86_400_000)?;
        }
        let j = &self.journal;
        if j.key_name.is_empty()
            || j.key_name
                .chars()
                .any(|c| c.is_whitespace() || c == '+' || c == '/')
        {
            return Err(key_err(
                "journal.key_name",
                format!(
                    "must be non-empty, without white space, '+' or '/' (got {:?})",
                    j.key_name
                ),
            ));
        }
        range(
            "journal.segment_max_bytes",
            j.segment_max_bytes,
            1 << 16,
            1 << 40,
        )?;
        range(
            "journal.preallocate_bytes",
            j.preallocate_bytes,
            0,
            j.segment_max_bytes,
        )?;
        range("journal.max_entry_bytes", j.max_entry_bytes, 256, 64 << 20)?;
        if j.max_entry_bytes * 2 > j.segment_max_bytes {
            return Err(key_err(
                "journal.max_entry_bytes",
                format!(
                    "must be at most half of journal.segment_max_bytes ({} > {} / 2)",
                    j.max_entry_bytes, j.segment_max_bytes
                ),
            ));
        }
        range("journal.max_links", j.max_links, 0, 4096)?;
        range("journal.batch_max_records", j.batch_max_records, 1, 65_536)?;
        range(
            "journal.batch_max_wait_us",
            j.batch_max_wait_us,
            0,
            1_000_000,
        )?;
        range(
            "journal.head_every_commits",
            j.head_every_commits,
            1,
            1 << 32,
        )?;
        range(
            "journal.checkpoint_min_interval_ms",
            j.checkpoint_min_interval_ms,
            1,
            3_600_000,
        )?;
        range(
            "journal.index_cache_bytes",
            j.index_cache_bytes,
            1 << 20,
            1 << 40,
        )?;
        range(
            "journal.index_reopen_entries",
            j.index_reopen_entries,
            1024,
            1 << 32,
        )?;
        range("journal.page_max_entries", j.page_max_entries, 1, 100_000)?;
        range("journal.page_max_bytes", j.page_max_bytes, 1024, 256 << 20)?;
        range(
            "journal.page_scan_max_entries",
            j.page_scan_max_entries,
            1,
            100_000_000,
        )?;
        range("journal.mailbox_capacity", j.mailbox_capacity, 1, 1 << 20)?;
        range("journal.lock_wait_ms", j.lock_wait_ms, 0, 600_000)?;
        range(
            "journal.reader_mailbox_capacity",
            j.reader_mailbox_capacity,
            1,
            1 << 20,
        )?;
        range(
            "journal.shutdown_timeout_ms",
            j.shutdown_timeout_ms,
            1,
            600_000,
        )?;
        range(
            "drivers.shutdown_timeout_ms",
            self.drivers.shutdown_timeout_ms,
            1,
            600_000,
        )?;
        range(
            "drivers.max_added_workers",
            self.drivers.max_added_workers,
            0,
            1024,
        )?;
        range(
            "drivers.max_restarts",
            u64::from(self.drivers.max_restarts),
            0,
            10_000,
        )?;
        range(
            "drivers.period_seconds",
            self.drivers.period_seconds,
            1,
            86_400,
        )?;
        range(
            "drivers.cool_down_ms",
            self.drivers.cool_down_ms,
            0,
            86_400_000,
        )?;
        range(
            "drivers.scorecard_window_seconds",
            self.drivers.scorecard_window_seconds,
            1,
            86_400,
        )?;
        range(
            "drivers.scorecard_slices",
            u64::from(self.drivers.scorecard_slices),
            1,
            // Each slice holds a latency histogram of about 12 KiB per driver.
            300,
        )?;
        range(
            "drivers.shadow_concurrency",
            self.drivers.shadow_concurrency,
            1,
            1024,
        )?;
        range(
            "drivers.trial_after_ms",
            self.drivers.trial_after_ms,
            0,
            86_400_000,
        )?;
        range(
            "drivers.trial_max_wait_ms",
            self.drivers.trial_max_wait_ms,
            self.drivers.trial_after_ms,
            7 * 86_400_000,
        )?;
        range(
            "drivers.max_failed_trials",
            u64::from(self.drivers.max_failed_trials),
            1,
            100,
        )?;
        // Above 0 (a trial that serves nothing never ends) and at most 1.
        if !(self.drivers.trial_share > 0.0 && self.drivers.trial_share <= 1.0) {
            return Err(key_err(
                "drivers.trial_share",
                format!(
                    "must be above 0 and at most 1 (got {})",
                    self.drivers.trial_share
                ),
            ));
        }
        range(
            "drivers.promotion_min_shadow_calls",
            self.drivers.promotion_min_shadow_calls,
            0,
            1_000_000_000,
        )?;
        range(
            "drivers.promotion_min_trial_calls",
            self.drivers.promotion_min_trial_calls,
            1,
            axon_actors::lanes::MAX_UTILITIES as u64,
        )?;
        if !(0.0..=1.0).contains(&self.drivers.promotion_min_agreement) {
            return Err(key_err(
                "drivers.promotion_min_agreement",
                format!(
                    "must be between 0 and 1 (got {})",
                    self.drivers.promotion_min_agreement
                ),
            ));
        }
        if !(self.drivers.promotion_confidence >= 0.5 && self.drivers.promotion_confidence < 1.0) {
            return Err(key_err(
                "drivers.promotion_confidence",
                format!(
                    "must be at least 0.5 and below 1 (got {})",
                    self.drivers.promotion_confidence
                ),
            ));
        }
        if self.drivers.manifest_dirs.len() > 64 {
            return Err(key_err("drivers.manifest_dirs", "at most 64 folders"));
        }
        let a = &self.act;
        range("act.max_in_flight", a.max_in_flight, 1, 1 << 20)?;
        range("act.remembered_actions", a.remembered_actions, 0, 1 << 26)?;
        range("act.late_outcome_ms", a.late_outcome_ms, 0, 3_600_000)?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.http.listen.parse().map_err(|e| {
            key_err(
                "http.listen",
                format!("not an IP:port address ({e}): {:?}", self.http.listen),
            )
        })
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.http.call_timeout_ms)
    }
}

fn range(key: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(key_err(
            key,
            format!("must be between {min} and {max} (got {v})"),
        ));
    }
    Ok(())
}

/// Merges `over` into `base`; every key of `over` must exist in `base` (the defaults
/// hold every key), so a typo is an error naming the key.
fn merge(base: &mut toml::Table, over: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in over {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (base.get_mut(&k), v) {
            (None, _) => return Err(key_err(&key, "unknown key")),
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &key)?,
            (Some(toml::Value::Table(_)), _) => {
                return Err(key_err(&key, "must be a table of settings"))
            }
            (Some(slot), v) => *slot = v,
        }
    }
    Ok(())
}

/// Sets the key named by `AXON_A__B__C` to `raw`, read as the type of its default.
fn apply_env(base: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |reason: String| ConfigError::Env {
        var: var.to_owned(),
        reason,
    };
    let path: Vec<String> = var["AXON_".len()..]
        .split("__")
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let mut table = base;
    for (n, part) in path.iter().enumerate() {
        let last = n + 1 == path.len();
        let Some(slot) = table.get_mut(part) else {
            return Err(env_err(format!(
                "does not name a config key (`{}` is unknown)",
                path[..=n].join(".")
            )));
        };
        if last {
            let parsed = match slot {
                toml::Value::String(_) => Ok(toml::Value::String(raw.to_owned())),
                toml::Value::Integer(_) => raw
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| format!("expected an integer, got {raw:?}")),
                toml::Value::Float(_) => raw
                    .parse::<f64>()
                    .map(toml::Value::Float)
                    .map_err(|_| format!("expected a number, got {raw:?}")),
                toml::Value::Boolean(_) => raw
                    .parse::<bool>()
                    .map(toml::Value::Boolean)
                    .map_err(|_| format!("expected true or false, got {raw:?}")),
                _ => Err(format!("`{}` is a table, not a value", path.join("."))),
            };
            *slot = parsed.map_err(env_err)?;
            return Ok(());
        }
        table = match slot {
            toml::Value::Table(t) => t,
            _ => {
                return Err(env_err(format!(
                    "`{}` is a value, not a table",
                    path[..=n].join(".")
                )))
            }
        };
    }
    Err(env_err("does not name a config key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_embedded_defaults_load() {
        let c = Config::defaults();
        assert_eq!(c.http.listen, "127.0.0.1:7700");
        assert_eq!(c.data_dir, PathBuf::from("./axon-data"));
    }

    #[test]
    fn environment_overrides_by_type_of_default() {
        let c = Config::load(
            None,
            env(&[
                ("AXON_HTTP__WORKERS", "3"),
                ("AXON_SUPERVISION__ROOT__RANDOM_FACTOR", "0.5"),
                ("AXON_DATA_DIR", "/tmp/x"),
                ("PATH", "/bin"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.http.workers, 3);
        assert_eq!(c.supervision.root.random_factor, 0.5);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn flags_win_over_environment() {
        let c = Config::load(
            None,
            env(&[("AXON_HTTP__LISTEN", "127.0.0.1:1")]),
            &Overrides {
                listen: Some("127.0.0.1:2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:2");
    }

    fn err_of(file_text: Option<&str>, vars: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        if let Some(t) = file_text {
            std::fs::write(&path, t).unwrap();
        }
        Config::load(
            file_text.map(|_| path.as_path()),
            env(vars),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn bad_values_name_the_key_and_the_reason() {
        let e = err_of(None, &[("AXON_HTTP__WORKERS", "0")]);
        assert_eq!(
            e,
            "config key `http.workers`: must be between 1 and 256 (got 0)"
        );
        let e = err_of(None, &[("AXON_HTTP__WORKERS", "many")]);
        assert!(
            e.contains("AXON_HTTP__WORKERS") && e.contains("expected an integer"),
            "{e}"
        );
        let e = err_of(None, &[("AXON_HTTP__NOPE", "1")]);
        assert!(e.contains("`http.nope` is unknown"), "{e}");
        let e = err_of(None, &[("AXON_HTTP__LISTEN", "localhost")]);
        assert!(e.starts_with("config key `http.listen`"), "{e}");
        let e = err_of(Some("[http]\nworkers = \"two\"\n"), &[]);
        assert!(e.starts_with("config key `http.workers`"), "{e}");
        let e = err_of(Some("[http]\nworkres = 2\n"), &[]);
        assert_eq!(e, "config key `http.workres`: unknown key");
        let e = err_of(Some("[http\n"), &[]);
        assert!(e.contains("is not valid TOML"), "{e}");
        let e = err_of(
            Some("[supervision.root]\nmin_backoff_ms = 10\nmax_backoff_ms = 5\n"),
            &[],
        );
        assert!(
            e.starts_with("config key `supervision.root.min_backoff_ms`"),
            "{e}"
        );
        let e = err_of(Some("[supervision]\nkill_wait_ms = 0\n"), &[]);
        assert!(
            e.starts_with("config key `supervision.kill_wait_ms`"),
            "{e}"
        );
        let e = err_of(None, &[("AXON_SUPERVISION__START_TIMEOUT_MS", "0")]);
        assert!(
            e.starts_with("config key `supervision.start_timeout_ms`"),
            "{e}"
        );
        let e = err_of(Some("[log]\nformat = \"xml\"\n"), &[]);
        assert!(e.starts_with("config key `log.format`"), "{e}");
        for (key, value) in [
            ("AXON_JOURNAL__BATCH_MAX_WAIT_US", "1000001"),
            ("AXON_JOURNAL__PAGE_MAX_ENTRIES", "0"),
            ("AXON_JOURNAL__PAGE_MAX_BYTES", "10"),
            ("AXON_JOURNAL__PAGE_SCAN_MAX_ENTRIES", "0"),
            ("AXON_JOURNAL__INDEX_REOPEN_ENTRIES", "10"),
            ("AXON_JOURNAL__INDEX_CACHE_BYTES", "1"),
        ] {
            let e = err_of(None, &[(key, value)]);
            let name = key
                .trim_start_matches("AXON_")
                .replace("__", ".")
                .to_lowercase();
            assert!(
                e.starts_with(&format!("config key `{name}`: must be between")),
                "{e}"
            );
        }
    }
}
