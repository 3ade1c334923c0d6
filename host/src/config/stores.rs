//! Where the results go and where they are shared: the ClickHouse sink's
//! and the Redis tier's settings (credentials never shown: `crate::secret`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sink::SinkConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub url: String,
    pub user: String,
    /// Never logged nor printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub database: String,
    pub table: String,
    /// The client's schema validation of reads: `auto` turns it off for servers too old to support it.
    pub validation: Validation,
    /// With an `https://` URL: CA file (system roots when unset), client certificate and key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: crate::sink::DEFAULT_URL.into(),
            user: crate::sink::DEFAULT_USER.into(),
            password: None,
            database: crate::sink::DEFAULT_DATABASE.into(),
            table: crate::sink::DEFAULT_TABLE.into(),
            validation: Validation::Auto,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("table", &self.table)
            .field("validation", &self.validation)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl ClickHouseConfig {
    pub fn sink_config(&self) -> SinkConfig {
        SinkConfig {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            database: self.database.clone(),
            table: self.table.clone(),
            validation: match self.validation {
                Validation::Auto => None,
                Validation::On => Some(true),
                Validation::Off => Some(false),
            },
            // Ride out a ClickHouse outage of ~25 s inside one activity
            // attempt (backoff 0.2 s doubling to 10 s over 8 attempts), while
            // all attempts (8 x (3 s + 8 s) + backoff) still fit in its
            // 2-minute start-to-close timeout.
            attempts: 8,
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(8),
            tls: crate::tls::TlsFiles { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() },
            ..SinkConfig::default()
        }
    }
}

/// The shared (Redis) tier of the result cache; the in-process tier's size
/// is `pipeline.result_cache_mb`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://[user:password@]host:port[/db]`; no shared tier when unset.
    /// Never logged with its credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// How long Redis keeps a result.
    pub redis_ttl_secs: u64,
    /// Per Redis call; a slower answer counts as an error and the lookup goes on without it.
    pub redis_timeout_ms: u64,
    /// With a `rediss://` URL: CA file (system roots when unset), client certificate and key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_key: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // 24 h, as PostHog's on-demand sentiment cache.
        CacheConfig {
            redis_url: None,
            redis_ttl_secs: 24 * 3600,
            redis_timeout_ms: 50,
            redis_tls_ca: None,
            redis_tls_cert: None,
            redis_tls_key: None,
        }
    }
}

impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("redis_url", &self.redis_url.as_deref().map(crate::secret::redact_url))
            .field("redis_ttl_secs", &self.redis_ttl_secs)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("redis_tls_ca", &self.redis_tls_ca)
            .field("redis_tls_cert", &self.redis_tls_cert)
            .field("redis_tls_key", &self.redis_tls_key)
            .finish()
    }
}

impl CacheConfig {
    pub fn redis_settings(&self) -> Option<crate::cache::RedisSettings> {
        let url = self.redis_url.as_ref().filter(|u| !u.trim().is_empty())?;
        Some(crate::cache::RedisSettings {
            url: url.clone(),
            ttl: Duration::from_secs(self.redis_ttl_secs),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            tls: self.redis_tls(),
        })
    }

    pub fn redis_tls(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles { ca: self.redis_tls_ca.clone(), cert: self.redis_tls_cert.clone(), key: self.redis_tls_key.clone() }
    }
}
