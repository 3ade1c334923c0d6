//! Where configuration comes from, lowest precedence first: defaults, a
//! TOML file, environment variables, command-line flags. Layers are merged
//! by figment, so every error names the key and the layer it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;

use super::model::Config;

/// Every environment variable starts with this; a key `section.name` is
/// read from `LLMA_SENTIMENT_SECTION_NAME`.
pub const ENV_PREFIX: &str = "LLMA_SENTIMENT_";

/// Names the file of the TOML layer (`--config` wins).
pub const CONFIG_FILE_ENV: &str = "LLMA_SENTIMENT_CONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

/// One configuration key: its path in the TOML file, its type (so an
/// environment value is read as what the key holds: `CLICKHOUSE_PASSWORD=007`
/// stays the string "007") and the older environment names it also answers to.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub path: &'static str,
    pub kind: Kind,
    pub aliases: &'static [&'static str],
}

const fn key(path: &'static str, kind: Kind, aliases: &'static [&'static str]) -> Key {
    Key { path, kind, aliases }
}

/// Every key of [`Config`] (a test checks the two agree).
pub const KEYS: &[Key] = &[
    key("log.filter", Kind::Str, &["LLMA_SENTIMENT_LOG"]),
    key("log.format", Kind::Str, &[]),
    key("temporal.address", Kind::Str, &["TEMPORAL_ADDRESS"]),
    key("temporal.namespace", Kind::Str, &["TEMPORAL_NAMESPACE"]),
    key("temporal.task_queue", Kind::Str, &["LLMA_SENTIMENT_TASK_QUEUE"]),
    key("workflow.execution_timeout_secs", Kind::Int, &[]),
    key("workflow.start_to_close_secs", Kind::Int, &[]),
    key("workflow.schedule_to_close_secs", Kind::Int, &[]),
    key("workflow.heartbeat_timeout_secs", Kind::Int, &[]),
    key("workflow.max_attempts", Kind::Int, &[]),
    key("workflow.retry_initial_interval_secs", Kind::Int, &[]),
    key("workflow.retry_max_interval_secs", Kind::Int, &[]),
    key("clickhouse.url", Kind::Str, &["CLICKHOUSE_URL"]),
    key("clickhouse.user", Kind::Str, &["CLICKHOUSE_USER"]),
    key("clickhouse.password", Kind::Str, &["CLICKHOUSE_PASSWORD"]),
    key("clickhouse.database", Kind::Str, &["CLICKHOUSE_DATABASE"]),
    key("clickhouse.table", Kind::Str, &["LLMA_SENTIMENT_TABLE"]),
    key("clickhouse.validation", Kind::Str, &[]),
    key("plugin.path", Kind::Str, &["LLMA_SENTIMENT_PLUGIN"]),
    key("plugin.dir", Kind::Str, &[]),
    key("plugin.model_dir", Kind::Str, &["LLMA_SENTIMENT_MODEL_DIR", "POSTHOG_SENTIMENT_MODEL_CACHE"]),
    key("plugin.cache_dir", Kind::Str, &["LLMA_SENTIMENT_CACHE_DIR"]),
    key("plugin.compile_cache", Kind::Bool, &[]),
    key("plugin.poll_ms", Kind::Int, &[]),
    key("plugin.rollback_grace_secs", Kind::Int, &["LLMA_SENTIMENT_ROLLBACK_GRACE_SECS"]),
    key("pipeline.max_messages", Kind::Int, &["LLMA_SENTIMENT_MAX_MESSAGES"]),
    key("pipeline.max_chars", Kind::Int, &["LLMA_SENTIMENT_MAX_CHARS"]),
    key("pipeline.truncation", Kind::Str, &[]),
    key("pipeline.head_chars", Kind::Int, &[]),
    key("pipeline.neutral_margin", Kind::Float, &[]),
    key("pipeline.aggregation", Kind::Str, &[]),
    key("pipeline.event_schema", Kind::Str, &[]),
    key("pipeline.evaluation_id", Kind::Str, &[]),
    key("pipeline.evaluation_name", Kind::Str, &[]),
    key("pipeline.emit_empty", Kind::Bool, &[]),
    key("pipeline.store_text", Kind::Bool, &[]),
    key("pipeline.batch_size", Kind::Int, &["LLMA_SENTIMENT_BATCH_SIZE"]),
    key("pipeline.result_cache_mb", Kind::Int, &["LLMA_SENTIMENT_RESULT_CACHE_MB"]),
    key("limits.call_deadline_base_ms", Kind::Int, &[]),
    key("limits.call_deadline_per_text_ms", Kind::Int, &[]),
    key("limits.load_deadline_ms", Kind::Int, &[]),
    key("limits.fuel_base", Kind::Int, &[]),
    key("limits.fuel_per_token", Kind::Int, &[]),
    key("limits.load_fuel", Kind::Int, &[]),
    key("limits.memory_bytes", Kind::Int, &[]),
    key("worker.max_concurrent_activities", Kind::Int, &["LLMA_SENTIMENT_MAX_CONCURRENT_ACTIVITIES"]),
    key("worker.instances", Kind::Int, &["LLMA_SENTIMENT_INSTANCES"]),
    key("worker.grace_period_secs", Kind::Int, &["LLMA_SENTIMENT_GRACE_PERIOD_SECS"]),
    key("worker.admin_addr", Kind::Str, &["LLMA_SENTIMENT_ADMIN_ADDR"]),
    key("worker.metrics_addr", Kind::Str, &["LLMA_SENTIMENT_METRICS_ADDR"]),
];

impl Key {
    /// `LLMA_SENTIMENT_` + the path in upper case, dots as underscores.
    pub fn env(&self) -> String {
        format!("{ENV_PREFIX}{}", self.path.replace('.', "_").to_ascii_uppercase())
    }
}

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
    let config: Config = figment.extract()?;
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
            let value = match key.kind {
                Kind::Str => Value::String(raw.to_string()),
                // A value that does not parse stays a string, and the key's
                // type check reports it with the variable's name.
                Kind::Int => raw.trim().parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.into())),
                Kind::Float => raw.trim().parse::<f64>().ok().filter(|x| x.is_finite()).map(Value::from).unwrap_or_else(|| Value::String(raw.into())),
                Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Value::Bool(true),
                    "0" | "false" | "no" | "off" => Value::Bool(false),
                    _ => Value::String(raw.into()),
                },
            };
            let (section, field) = key.path.split_once('.').expect("key paths are section.name");
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

impl Config {
    /// Checks values serde cannot: ranges, addresses, identifiers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
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
        for (key, value) in [
            ("workflow.execution_timeout_secs", w.execution_timeout_secs),
            ("workflow.start_to_close_secs", w.start_to_close_secs),
            ("workflow.schedule_to_close_secs", w.schedule_to_close_secs),
            ("workflow.heartbeat_timeout_secs", w.heartbeat_timeout_secs),
            ("workflow.max_attempts", w.max_attempts as u64),
            ("workflow.retry_initial_interval_secs", w.retry_initial_interval_secs),
            ("pipeline.max_messages", self.pipeline.max_messages as u64),
            ("pipeline.max_chars", self.pipeline.max_chars as u64),
            ("pipeline.batch_size", self.pipeline.batch_size as u64),
            ("limits.call_deadline_base_ms", self.limits.call_deadline_base_ms),
            ("limits.load_deadline_ms", self.limits.load_deadline_ms),
            ("limits.fuel_base", self.limits.fuel_base),
            ("limits.load_fuel", self.limits.load_fuel),
            ("limits.memory_bytes", self.limits.memory_bytes),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
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
        if self.worker.max_concurrent_activities == Some(0) {
            return invalid("worker.max_concurrent_activities", "must be at least 1");
        }
        if self.worker.instances == Some(0) {
            return invalid("worker.instances", "must be at least 1");
        }
        if let Err(e) = self.clickhouse.sink_config().validate() {
            let key = match e.to_string() {
                m if m.contains("user must") => "clickhouse.user",
                m if m.contains("table") && !m.contains("url") => "clickhouse.table",
                m if m.contains("database") && !m.contains("url") => "clickhouse.database",
                _ => "clickhouse.url",
            };
            return Err(ConfigError::Invalid { key, reason: e.to_string() });
        }
        Ok(())
    }

    /// The config as TOML, with the ClickHouse password (and any credentials
    /// in its URL) replaced by `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.clickhouse.password.is_some() {
            shown.clickhouse.password = Some("<redacted>".into());
        }
        shown.clickhouse.url = crate::sink::redact_url(&shown.clickhouse.url);
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
        all.worker.max_concurrent_activities = Some(1);
        all.worker.instances = Some(1);
        all.worker.admin_addr = Some("127.0.0.1:1".parse().unwrap());
        all.worker.metrics_addr = Some("127.0.0.1:2".parse().unwrap());
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

    #[test]
    fn readme_documents_every_key_and_env_name() {
        let readme = include_str!("../../../README.md");
        for key in KEYS {
            assert!(readme.contains(&format!("`{}`", key.path)), "README lacks key {}", key.path);
            assert!(readme.contains(&format!("`{}`", key.env())), "README lacks {}", key.env());
            for alias in key.aliases {
                assert!(readme.contains(&format!("`{alias}`")), "README lacks alias {alias}");
            }
        }
    }

    #[test]
    fn redacted_toml_hides_the_password_and_reads_back() {
        let mut c = Config::default();
        c.clickhouse.password = Some("hunter2".into());
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.pipeline, c.pipeline);
    }
}
