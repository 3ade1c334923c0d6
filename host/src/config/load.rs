//! Where configuration comes from, lowest precedence first: defaults, a
//! TOML file, environment variables, command-line flags. Layers are merged
//! by figment, so every error names the key and the layer it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;

use super::keys::{Key, KEYS};
use super::model::Config;

/// Names the file of the TOML layer (`--config` wins).
pub const CONFIG_FILE_ENV: &str = "LLMA_SENTIMENT_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// A key of the wrong type, an unknown key, a bad enum value: figment's
    /// message names the key and where it came from.
    #[error("config: {0}")]
    Parse(Box<figment::Error>),
    #[error("config: invalid value for key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

/// Where the layers above the defaults come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Values given as flags, as a `{section: {key: value}}` object.
    pub flags: serde_json::Map<String, Value>,
}

impl Sources {
    /// The file from `--config` or else `$LLMA_SENTIMENT_CONFIG`, the process
    /// environment, and `flags`.
    pub fn from_process(config_flag: Option<PathBuf>, flags: serde_json::Map<String, Value>) -> Sources {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = config_flag.or_else(|| {
            env.iter().find(|(k, v)| k == CONFIG_FILE_ENV && !v.is_empty()).map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env, flags }
    }
}

/// Merges the layers into a validated [`Config`].
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Named {
        inner: Serialized::defaults(Config::default()),
        metadata: Metadata::named("defaults"),
    });
    if let Some(path) = &sources.file {
        figment = figment.merge(toml_layer(path)?);
    }
    figment = figment.merge(EnvLayer::new(&sources.env));
    figment = figment.merge(Named {
        inner: Serialized::defaults(Value::Object(sources.flags.clone())),
        metadata: Metadata::named("command-line flag(s)").interpolater(|_, keys: &[&str]| flag_for(&keys.join("."))),
    });
    // Environment and flag values are text: the typed model reads "3" as a
    // number where it wants one and `CLICKHOUSE_PASSWORD=007` as the string it is.
    let config: Config = figment.extract_lossy()?;
    config.validate()?;
    Ok(config)
}

fn toml_layer(path: &Path) -> Result<Named<figment::providers::Data<Toml>>, ConfigError> {
    // figment skips a missing file silently; one named explicitly must exist.
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(Named {
        inner: Toml::string(&text),
        metadata: Metadata::named("TOML file").source(path).interpolater(|_, keys: &[&str]| keys.join(".")),
    })
}

fn flag_for(path: &str) -> String {
    match path {
        "" => "flags".into(),
        p => format!("{p} (flag)"),
    }
}

/// A provider with the metadata we want in messages (plain key paths, not
/// figment's `default.`-prefixed profile paths).
struct Named<P> {
    inner: P,
    metadata: Metadata,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The environment layer: only names in [`KEYS`] (canonical or alias) are
/// read; an empty value counts as unset; a canonical name wins over its
/// aliases, and an earlier alias over a later one.
struct EnvLayer {
    values: serde_json::Map<String, Value>,
    /// Key path -> the variable it was read from, for error messages.
    origin: BTreeMap<String, String>,
}

impl EnvLayer {
    fn new(env: &[(String, String)]) -> EnvLayer {
        let lookup = |name: &str| env.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str());
        let mut values = serde_json::Map::new();
        let mut origin = BTreeMap::new();
        for key in KEYS {
            let canonical = key.env();
            let found = std::iter::once(canonical.as_str())
                .chain(key.aliases.iter().copied())
                .find_map(|name| lookup(name).map(|v| (name.to_string(), v)));
            let Some((name, raw)) = found else { continue };
            let value = if key.paths {
                Value::Array(std::env::split_paths(raw).map(|p| Value::String(p.to_string_lossy().into_owned())).collect())
            } else {
                Value::String(raw.trim().to_string())
            };
            let (section, field) = key.split();
            let entry = values.entry(section.to_string()).or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(map) = entry {
                map.insert(field.to_string(), value);
            }
            origin.insert(key.path.to_string(), name);
        }
        EnvLayer { values, origin }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        let origin = self.origin.clone();
        Metadata::named("environment variable(s)").interpolater(move |_, keys: &[&str]| {
            let path = keys.join(".");
            match origin.get(&path) {
                Some(var) => format!("{path} (${var})"),
                None => path,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(Value::Object(self.values.clone())).data()
    }
}

/// A leaf of the config as JSON (`None` for an unset optional key).
fn leaf<'a>(config: &'a Value, key: &Key) -> Option<&'a Value> {
    let (section, field) = key.split();
    config.get(section)?.get(field).filter(|v| !v.is_null())
}

impl Config {
    /// Checks values serde cannot: the ranges of [`KEYS`], addresses,
    /// identifiers, and the keys that bound one another.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
        let values = serde_json::to_value(self).map_err(|e| ConfigError::Invalid { key: "config", reason: e.to_string() })?;
        for key in KEYS {
            let (Some((min, max)), Some(value)) = (key.range, leaf(&values, key)) else { continue };
            let n = value.as_u64().unwrap_or(u64::MAX);
            if n < min || n > max {
                let reason =
                    if max == u64::MAX { format!("must be at least {min}") } else { format!("must be between {min} and {max}") };
                return Err(ConfigError::Invalid { key: key.path, reason });
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return invalid("log.filter", "not a tracing filter (e.g. `info` or `llma_sentiment=debug,warn`)");
        }
        if let Err(e) = self.temporal.url() {
            return Err(ConfigError::Invalid { key: "temporal.address", reason: format!("not host:port or a URL: {e}") });
        }
        for (key, value) in [("temporal.namespace", &self.temporal.namespace), ("temporal.task_queue", &self.temporal.task_queue)] {
            if value.trim().is_empty() {
                return invalid(key, "must not be empty");
            }
        }
        let w = &self.workflow;
        if w.retry_max_interval_secs < w.retry_initial_interval_secs {
            return invalid("workflow.retry_max_interval_secs", "must not be below workflow.retry_initial_interval_secs");
        }
        if w.schedule_to_close_secs < w.start_to_close_secs {
            return invalid("workflow.schedule_to_close_secs", "must not be below workflow.start_to_close_secs");
        }
        // Margin and head+tail limits are the plugin's to check (at activation).
        if !self.pipeline.neutral_margin.is_finite() {
            return invalid("pipeline.neutral_margin", "must be a number");
        }
        if self.pipeline.evaluation_id.trim().is_empty() {
            return invalid("pipeline.evaluation_id", "must not be empty");
        }
        if let Some(url) = self.cache.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
            if let Err(e) = crate::cache::redis::check_url(url) {
                return Err(ConfigError::Invalid { key: "cache.redis_url", reason: e.to_string() });
            }
        }
        if let Err(e) = self.clickhouse.sink_config().validate() {
            use crate::sink::SinkField;
            let key = match e.field() {
                Some(SinkField::User) => "clickhouse.user",
                Some(SinkField::Database) => "clickhouse.database",
                Some(SinkField::Table) => "clickhouse.table",
                // The retry and timeout settings are the model's own constants.
                Some(SinkField::Url) | Some(SinkField::Retries) | None => "clickhouse.url",
            };
            return Err(ConfigError::Invalid { key, reason: e.to_string() });
        }
        Ok(())
    }

    /// The config as TOML, with the ClickHouse password (and any credentials
    /// in its URL or the Redis URL) replaced by `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.clickhouse.password.is_some() {
            shown.clickhouse.password = Some("<redacted>".into());
        }
        shown.clickhouse.url = crate::sink::redact_url(&shown.clickhouse.url);
        shown.cache.redis_url = shown.cache.redis_url.as_deref().map(crate::sink::redact_url);
        if shown.worker.admin_token.is_some() {
            shown.worker.admin_token = Some(super::Secret::new("<redacted>"));
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render the config as TOML: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(v, &p, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn keys_table_lists_every_field_of_the_config() {
        let mut all = Config::default();
        all.clickhouse.password = Some("x".into());
        all.plugin.path = Some("p".into());
        all.plugin.dir = Some("d".into());
        all.plugin.model_dir = Some("m".into());
        all.plugin.cache_dir = Some("c".into());
        all.cache.redis_url = Some("redis://127.0.0.1:1".into());
        all.worker.max_concurrent_activities = Some(1);
        all.worker.instances = Some(1);
        all.worker.admin_addr = Some("127.0.0.1:1".parse().unwrap());
        all.worker.admin_token = Some(super::super::Secret::new("t"));
        all.worker.admin_token_file = Some("t".into());
        all.worker.metrics_addr = Some("127.0.0.1:2".parse().unwrap());
        all.worker.identity = Some("w1".into());
        let mut fields = Vec::new();
        leaves(&serde_json::to_value(&all).unwrap(), "", &mut fields);
        let mut keys: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[temporal]\naddress = \"file:1\"\nnamespace = \"file-ns\"\n[pipeline]\nmax_messages = 7\nmax_chars = 9\n")
            .unwrap();
        let mut flags = serde_json::Map::new();
        flags.insert("pipeline".into(), serde_json::json!({"max_messages": 3}));
        let sources = Sources {
            file: Some(file),
            env: env(&[("TEMPORAL_ADDRESS", "env:2"), ("LLMA_SENTIMENT_PIPELINE_MAX_MESSAGES", "5")]),
            flags,
        };
        let c = load(&sources).unwrap();
        assert_eq!(c.temporal.address, "env:2");
        assert_eq!(c.temporal.namespace, "file-ns");
        assert_eq!(c.pipeline.max_messages, 3);
        assert_eq!(c.pipeline.max_chars, 9);
        assert_eq!(c.pipeline.batch_size, 8);
    }

    #[test]
    fn canonical_env_name_wins_over_aliases_and_strings_stay_strings() {
        let sources = Sources {
            env: env(&[
                ("POSTHOG_SENTIMENT_MODEL_CACHE", "/seed"),
                ("LLMA_SENTIMENT_PLUGIN_MODEL_DIR", "/canonical"),
                ("CLICKHOUSE_PASSWORD", "007"),
                ("LLMA_SENTIMENT_TABLE", ""),
            ]),
            ..Default::default()
        };
        let c = load(&sources).unwrap();
        assert_eq!(c.plugin.model_dir.as_deref(), Some(Path::new("/canonical")));
        assert_eq!(c.clickhouse.password.as_deref(), Some("007"));
        assert_eq!(c.clickhouse.table, "events");
        let seed = load(&Sources { env: env(&[("POSTHOG_SENTIMENT_MODEL_CACHE", "/seed")]), ..Default::default() }).unwrap();
        assert_eq!(seed.plugin.model_dir.as_deref(), Some(Path::new("/seed")));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load(&Sources { env: env(&[("LLMA_SENTIMENT_LIMITS_FUEL_BASE", "lots")]), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.fuel_base") && e.contains("LLMA_SENTIMENT_LIMITS_FUEL_BASE"), "{e}");
        let e = load(&Sources { env: env(&[("LLMA_SENTIMENT_WORKFLOW_MAX_ATTEMPTS", "0")]), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("workflow.max_attempts"), "{e}");
        let e = load(&Sources { env: env(&[("LLMA_SENTIMENT_LOG_FORMAT", "xml")]), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.format"), "{e}");
    }

    /// The README's config table: one row per key (test-only keys aside),
    /// its second cell the key's environment names and flag as [`KEYS`] has them.
    #[test]
    fn readme_config_table_is_the_keys_table() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### Configuration").unwrap()..readme.find("### Metrics").unwrap()];
        let mut rows = std::collections::BTreeMap::new();
        for line in section.lines() {
            let cells: Vec<&str> = line.split(" | ").collect();
            if let Some(path) = cells[0].strip_prefix("| `").and_then(|c| c.strip_suffix('`')) {
                if path.contains('.') && cells.len() >= 3 {
                    assert!(rows.insert(path.to_string(), cells[1].to_string()).is_none(), "README lists {path} twice");
                }
            }
        }
        for key in KEYS.iter().filter(|k| !k.test_only) {
            let mut cell = format!("`{}`", key.env());
            if !key.aliases.is_empty() {
                let aliases: Vec<String> = key.aliases.iter().map(|a| format!("`{a}`")).collect();
                cell += &format!(" ({})", aliases.join(", "));
            }
            if let Some(flag) = key.flag {
                cell += &format!(", `--{}`", flag.long);
            }
            assert_eq!(rows.remove(key.path).as_deref(), Some(cell.as_str()), "README row of {}", key.path);
        }
        assert!(rows.is_empty(), "README rows for keys that do not exist: {rows:?}");
    }

    /// The sandbox's checks are chosen, never switched off, by configuration.
    #[test]
    fn metering_takes_epoch_fuel_or_both_and_never_none() {
        assert_eq!(load(&Sources::default()).unwrap().limits.limits().metering, crate::engine::Metering::Epoch);
        for (value, want) in [("fuel", crate::engine::Metering::Fuel), ("fuel-and-epoch", crate::engine::Metering::FuelAndEpoch)] {
            let c = load(&Sources { env: env(&[("LLMA_SENTIMENT_LIMITS_METERING", value)]), ..Default::default() }).unwrap();
            assert_eq!(c.limits.limits().metering, want, "{value}");
        }
        for value in ["none", "unchecked", "off"] {
            let e = load(&Sources { env: env(&[("LLMA_SENTIMENT_LIMITS_METERING", value)]), ..Default::default() }).unwrap_err();
            assert!(e.to_string().contains("limits.metering"), "{value}: {e}");
        }
    }

    #[test]
    fn durations_and_counts_out_of_range_name_their_key() {
        for (var, value, key) in [
            ("LLMA_SENTIMENT_PLUGIN_POLL_MS", "18446744073709551615", "plugin.poll_ms"),
            ("LLMA_SENTIMENT_WORKFLOW_START_TO_CLOSE_SECS", "99999999999", "workflow.start_to_close_secs"),
            ("LLMA_SENTIMENT_LIMITS_CALL_DEADLINE_PER_TEXT_MS", "18446744073709551615", "limits.call_deadline_per_text_ms"),
            ("LLMA_SENTIMENT_WORKER_GRACE_PERIOD_SECS", "18446744073709551615", "worker.grace_period_secs"),
            ("LLMA_SENTIMENT_PIPELINE_BATCH_SIZE", "0", "pipeline.batch_size"),
            ("LLMA_SENTIMENT_INSTANCES", "0", "worker.instances"),
            ("LLMA_SENTIMENT_PROGRESS_SECS", "18446744073709551615", "progress.secs"),
            ("LLMA_SENTIMENT_PLUGIN_ACTIVATION_NICE", "20", "plugin.activation_nice"),
        ] {
            match load(&Sources { env: env(&[(var, value)]), ..Default::default() }) {
                Err(ConfigError::Invalid { key: k, reason }) => {
                    assert_eq!(k, key, "{var}={value}: {reason}");
                    assert!(reason.starts_with("must be"), "{reason}");
                }
                other => panic!("{var}={value}: {other:?}"),
            }
        }
        // The largest allowed values load, and their deadlines add up without overflow.
        let year_ms = (365 * 24 * 3600 * 1000u64).to_string();
        let c = load(&Sources {
            env: env(&[
                ("LLMA_SENTIMENT_LIMITS_CALL_DEADLINE_BASE_MS", year_ms.as_str()),
                ("LLMA_SENTIMENT_LIMITS_CALL_DEADLINE_PER_TEXT_MS", year_ms.as_str()),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert!(c.limits.limits().classify_deadline(u32::MAX as usize) > std::time::Duration::from_secs(1));
    }

    #[test]
    fn sink_errors_name_their_key_by_field() {
        for (set, key) in [
            (("clickhouse", "table", "a.b"), "clickhouse.table"),
            (("clickhouse", "database", "bad-db"), "clickhouse.database"),
            (("clickhouse", "user", ""), "clickhouse.user"),
            // Words in the value do not decide the key.
            (("clickhouse", "url", "ftp://table.database.example"), "clickhouse.url"),
        ] {
            let mut flags = serde_json::Map::new();
            flags.insert(set.0.into(), serde_json::json!({ set.1: set.2 }));
            match load(&Sources { flags, ..Default::default() }) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{set:?}"),
                other => panic!("{set:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn allowed_dirs_read_from_the_environment_like_path() {
        let c = load(&Sources { env: env(&[("LLMA_SENTIMENT_WORKER_ADMIN_ALLOWED_DIRS", "/a/b:/c")]), ..Default::default() }).unwrap();
        assert_eq!(c.worker.admin_allowed_dirs, vec![PathBuf::from("/a/b"), PathBuf::from("/c")]);
    }

    #[test]
    fn redis_url_comes_from_redis_url_is_checked_and_never_shown() {
        let c = load(&Sources { env: env(&[("REDIS_URL", "redis://:hunter2@127.0.0.1:6390/2")]), ..Default::default() }).unwrap();
        assert_eq!(c.cache.redis_url.as_deref(), Some("redis://:hunter2@127.0.0.1:6390/2"));
        assert_eq!((c.cache.redis_ttl_secs, c.cache.redis_timeout_ms), (86400, 50));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_redacted_toml().contains("hunter2"), "{}", c.to_redacted_toml());
        let e = load(&Sources { env: env(&[("REDIS_URL", "http://127.0.0.1:1")]), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("cache.redis_url"), "{e}");
        let off = load(&Sources { env: env(&[("REDIS_URL", "")]), ..Default::default() }).unwrap();
        assert!(off.cache.redis_settings().is_none());
    }

    #[test]
    fn redacted_toml_hides_the_password_and_reads_back() {
        let mut c = Config::default();
        c.clickhouse.password = Some("hunter2".into());
        c.worker.admin_token = Some(super::super::Secret::new("admin-hunter3"));
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2") && !shown.contains("admin-hunter3"), "{shown}");
        assert!(!format!("{c:?}").contains("admin-hunter3"));
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.pipeline, c.pipeline);
    }
}
