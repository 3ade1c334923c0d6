//! The checks serde cannot make (ranges, addresses, identifiers, keys that
//! bound one another), and the config as it may be shown (secrets redacted).

use serde_json::Value;

use super::keys::{Key, KEYS};
use super::load::ConfigError;
use super::model::Config;

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
        if let Err((key, reason)) = self.temporal.check_tls() {
            return Err(ConfigError::Invalid { key, reason });
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
        let sc = &self.schedule;
        if !(0.0..=100.0).contains(&sc.rollout_percent) {
            return invalid("schedule.rollout_percent", "must be between 0 and 100");
        }
        if let Err(e) = sc.team_allowlist() {
            return Err(ConfigError::Invalid { key: "schedule.teams", reason: e.to_string() });
        }
        for (key, value) in [("schedule.brokers", &sc.brokers), ("schedule.topic", &sc.topic), ("schedule.group", &sc.group)] {
            if value.trim().is_empty() {
                return invalid(key, "must not be empty");
            }
        }
        if let Err((key, reason)) = self.kafka.check() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if let Some(url) = self.cache.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
            if let Err(e) = crate::cache::redis::check_url(url) {
                return Err(ConfigError::Invalid { key: "cache.redis_url", reason: e.to_string() });
            }
            if !self.cache.redis_tls().is_empty() && !url.trim_start().starts_with("rediss://") {
                return invalid("cache.redis_url", "a cache.redis_tls_* file is set, but the URL is not rediss://: TLS needs rediss://");
            }
        }
        if let Err(e) = self.cache.redis_tls().check() {
            return Err(ConfigError::Invalid { key: "cache.redis_tls_key", reason: e.to_string() });
        }
        let admin_tls = crate::tls::TlsFiles { cert: self.worker.admin_tls_cert.clone(), key: self.worker.admin_tls_key.clone(), ca: None };
        if let Err(e) = admin_tls.check() {
            return Err(ConfigError::Invalid { key: "worker.admin_tls_key", reason: e.to_string() });
        }
        let serve_tls = crate::tls::TlsFiles { cert: self.serve.tls_cert.clone(), key: self.serve.tls_key.clone(), ca: None };
        if let Err(e) = serve_tls.check() {
            return Err(ConfigError::Invalid { key: "serve.tls_key", reason: e.to_string() });
        }
        if self.admin.tls_ca.is_some() && !self.admin.url.starts_with("https://") {
            return invalid("admin.url", "admin.tls_ca is set, but the URL is not https://");
        }
        if let Err(e) = self.clickhouse.sink_config().validate() {
            use crate::sink::SinkField;
            let key = match e.field() {
                Some(SinkField::User) => "clickhouse.user",
                Some(SinkField::Database) => "clickhouse.database",
                Some(SinkField::Table) => "clickhouse.table",
                Some(SinkField::Tls) => "clickhouse.tls_key",
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
        shown.clickhouse.url = crate::secret::redact_url(&shown.clickhouse.url);
        shown.cache.redis_url = shown.cache.redis_url.as_deref().map(crate::secret::redact_url);
        if shown.temporal.api_key.is_some() {
            shown.temporal.api_key = Some(crate::secret::Secret::new("<redacted>"));
        }
        if shown.kafka.sasl_password.is_some() {
            shown.kafka.sasl_password = Some(crate::secret::Secret::new("<redacted>"));
        }
        if shown.worker.admin_token.is_some() {
            shown.worker.admin_token = Some(crate::secret::Secret::new("<redacted>"));
        }
        if shown.serve.token.is_some() {
            shown.serve.token = Some(crate::secret::Secret::new("<redacted>"));
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render the config as TOML: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Sources};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
        c.worker.admin_token = Some(crate::secret::Secret::new("admin-hunter3"));
        c.serve.token = Some(crate::secret::Secret::new("serve-hunter4"));
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2") && !shown.contains("admin-hunter3") && !shown.contains("serve-hunter4"), "{shown}");
        assert!(!format!("{c:?}").contains("admin-hunter3"));
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.pipeline, c.pipeline);
    }
}
