//! Where configuration comes from, lowest precedence first: defaults, a
//! TOML file, environment variables, command-line flags. Layers are merged
//! by figment, so every error names the key and the layer it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;

use super::keys::KEYS;
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
        all.worker.memory_budget_mb = Some(1);
        all.worker.admin_addr = Some("127.0.0.1:1".parse().unwrap());
        all.worker.admin_token = Some(super::super::Secret::new("t"));
        all.worker.admin_token_file = Some("t".into());
        all.worker.metrics_addr = Some("127.0.0.1:2".parse().unwrap());
        all.worker.identity = Some("w1".into());
        all.schedule.metrics_addr = Some("127.0.0.1:3".parse().unwrap());
        all.kafka = super::super::KafkaConfig {
            security_protocol: Some("sasl_ssl".into()),
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("u".into()),
            sasl_password: Some(super::super::Secret::new("p")),
            tls_ca: Some("/ca.pem".into()),
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
        };
        all.temporal.tls = Some(true);
        all.temporal.tls_ca = Some("ca".into());
        all.temporal.tls_cert = Some("c".into());
        all.temporal.tls_key = Some("k".into());
        all.temporal.tls_server_name = Some("n".into());
        all.temporal.api_key = Some(super::super::Secret::new("a"));
        all.clickhouse.tls_ca = Some("ca".into());
        all.clickhouse.tls_cert = Some("c".into());
        all.clickhouse.tls_key = Some("k".into());
        all.cache.redis_tls_ca = Some("ca".into());
        all.cache.redis_tls_cert = Some("c".into());
        all.cache.redis_tls_key = Some("k".into());
        all.worker.admin_tls_cert = Some("c".into());
        all.worker.admin_tls_key = Some("k".into());
        all.admin.tls_ca = Some("ca".into());
        all.serve.tls_cert = Some("c".into());
        all.serve.tls_key = Some("k".into());
        all.serve.token = Some(super::super::Secret::new("t"));
        all.serve.token_file = Some("t".into());
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

    /// The Temporal CLI's environment names, and its older ones, set the TLS keys.
    #[test]
    fn temporal_tls_comes_from_the_temporal_cli_names() {
        let c = load(&Sources {
            env: env(&[
                ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/c.pem"),
                ("TEMPORAL_TLS_KEY", "/k.pem"),
                ("TEMPORAL_TLS_CA", "/ca.pem"),
                ("TEMPORAL_TLS_SERVER_NAME", "frontend.example"),
                ("TEMPORAL_API_KEY", "tmprl-hunter2"),
            ]),
            ..Default::default()
        })
        .unwrap();
        let t = &c.temporal;
        assert_eq!(t.tls_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(t.tls_key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(t.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(t.tls_server_name.as_deref(), Some("frontend.example"));
        assert_eq!(t.api_key.as_ref().map(|k| k.expose()), Some("tmprl-hunter2"));
        assert!(t.uses_tls());
        assert!(!c.to_redacted_toml().contains("hunter2") && !format!("{c:?}").contains("hunter2"));
        let off = load(&Sources { env: env(&[("TEMPORAL_TLS", "false"), ("TEMPORAL_API_KEY", "k")]), ..Default::default() });
        assert!(matches!(off, Err(ConfigError::Invalid { key: "temporal.tls", .. })), "{off:?}");
    }

    /// A TLS file with a clear-text URL, or a certificate without its key, is refused at load.
    #[test]
    fn tls_files_need_a_tls_url_and_come_in_pairs() {
        for (pairs, key) in [
            (&[("LLMA_SENTIMENT_CLICKHOUSE_TLS_CA", "/ca.pem")][..], "clickhouse.url"),
            (&[("CLICKHOUSE_URL", "https://h:8443"), ("LLMA_SENTIMENT_CLICKHOUSE_TLS_CERT", "/c.pem")][..], "clickhouse.tls_key"),
            (&[("REDIS_URL", "redis://h:6379"), ("LLMA_SENTIMENT_CACHE_REDIS_TLS_CA", "/ca.pem")][..], "cache.redis_url"),
            (&[("LLMA_SENTIMENT_WORKER_ADMIN_TLS_CERT", "/c.pem")][..], "worker.admin_tls_key"),
            (&[("LLMA_SENTIMENT_ADMIN_TLS_CA", "/ca.pem")][..], "admin.url"),
        ] {
            match load(&Sources { env: env(pairs), ..Default::default() }) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{pairs:?}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
        let ok = load(&Sources {
            env: env(&[("CLICKHOUSE_URL", "https://h:8443"), ("LLMA_SENTIMENT_CLICKHOUSE_TLS_CA", "/ca.pem"), ("REDIS_URL", "rediss://h:6380")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.clickhouse.sink_config().tls.ca.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn allowed_dirs_read_from_the_environment_like_path() {
        let c = load(&Sources { env: env(&[("LLMA_SENTIMENT_WORKER_ADMIN_ALLOWED_DIRS", "/a/b:/c")]), ..Default::default() }).unwrap();
        assert_eq!(c.worker.admin_allowed_dirs, vec![PathBuf::from("/a/b"), PathBuf::from("/c")]);
    }
}
