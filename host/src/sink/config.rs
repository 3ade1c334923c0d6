//! Sink configuration: where to write, as whom, and how hard to retry.

use std::fmt;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::error::{ConfigProblem, SinkError, SinkField};
use crate::secret::redact_url;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8123";
pub const DEFAULT_USER: &str = "default";
pub const DEFAULT_DATABASE: &str = "default";
pub const DEFAULT_TABLE: &str = "events";

/// Longest database or table name accepted.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// Configuration of a [`super::ClickHouseSink`].
///
/// `Debug` is implemented by hand: the password is never printed, nor are
/// credentials embedded in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// HTTP endpoint of the server, e.g. `http://127.0.0.1:8123`, or
    /// `https://ch.example:8443` for TLS (rustls; see `tls`). Must not embed
    /// credentials.
    pub url: String,
    pub user: String,
    pub password: Option<String>,
    /// Database holding the events table; created by `migrate` if missing.
    pub database: String,
    pub table: String,
    /// `Some(v)` forces the client's schema validation of reads
    /// (RowBinaryWithNamesAndTypes) on or off; `None` picks it from the server
    /// version (on for 24.1+, off for older servers such as Debian's 18.16,
    /// which do not support it). Inserts are checked by the sink itself
    /// against the table's column types, on every server (see `layout`).
    pub validation: Option<bool>,
    /// Attempts per request (insert chunk, DDL, query), >= 1. Only retryable
    /// failures are retried.
    pub attempts: u32,
    /// Backoff after the first failed attempt; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Rows per INSERT statement, >= 1; a larger batch is split into chunks.
    pub max_buffer_rows: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Upper bound of one attempt once connected (send all rows + server ack,
    /// or run one query).
    pub request_timeout: Duration,
    /// With an `https://` URL: the CA file (system roots when unset) and the
    /// client certificate and key. Any of them with an `http://` URL is an error.
    pub tls: crate::tls::TlsFiles,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: DEFAULT_URL.to_string(),
            user: DEFAULT_USER.to_string(),
            password: None,
            database: DEFAULT_DATABASE.to_string(),
            table: DEFAULT_TABLE.to_string(),
            validation: None,
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_buffer_rows: 10_000,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            tls: crate::tls::TlsFiles::default(),
        }
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("table", &self.table)
            .field("validation", &self.validation)
            .field("attempts", &self.attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_buffer_rows", &self.max_buffer_rows)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl SinkConfig {
    /// Rejects settings that cannot work; called by `ClickHouseSink::connect`.
    pub fn validate(&self) -> Result<(), SinkError> {
        let problem = |field, message: &str| Err(SinkError::Config(ConfigProblem::new(field, message)));
        identifier(SinkField::Database, "database", &self.database)?;
        identifier(SinkField::Table, "table", &self.table)?;
        let rest = match (self.url.strip_prefix("http://"), self.url.strip_prefix("https://")) {
            (Some(_), _) if !self.tls.is_empty() => {
                let message = format!(
                    "url {:?} is plain http://, but a TLS file is set: use https:// (nothing is sent in clear text that was meant not to be)",
                    redact_url(&self.url)
                );
                return problem(SinkField::Url, &message);
            }
            (Some(rest), _) | (_, Some(rest)) => rest,
            (None, None) => {
                let message = format!("url {:?} must start with http:// or https://", redact_url(&self.url));
                return problem(SinkField::Url, &message);
            }
        };
        if let Err(e) = self.tls.check() {
            return problem(SinkField::Tls, &e.to_string());
        }
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.is_empty() {
            return problem(SinkField::Url, "url has no host");
        }
        if authority.contains('@') {
            return problem(SinkField::Url, "url must not contain credentials: set user and password instead");
        }
        if self.user.is_empty() {
            return problem(SinkField::User, "user must not be empty");
        }
        if self.attempts == 0 {
            return problem(SinkField::Retries, "attempts must be at least 1");
        }
        if self.max_buffer_rows == 0 {
            return problem(SinkField::Retries, "max_buffer_rows must be at least 1");
        }
        if self.initial_backoff > self.max_backoff {
            return problem(SinkField::Retries, "initial_backoff must not exceed max_backoff");
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return problem(SinkField::Retries, "timeouts must be positive");
        }
        Ok(())
    }

    /// The waits between `attempts` attempts of one request: doubling from
    /// `initial_backoff` up to `max_backoff`, each jittered down to as little
    /// as half, so that workers retrying together spread out.
    pub fn backoffs(&self, attempts: u32) -> ExponentialBackoff {
        self.schedule(attempts, true)
    }

    /// `backoffs` without the jitter: each wait's upper bound.
    fn schedule(&self, attempts: u32, jitter: bool) -> ExponentialBackoff {
        // backon adds up to the whole delay as jitter: half the bounds and
        // jitter give waits between half and all of the un-jittered ones.
        let (min, max) = if jitter { (self.initial_backoff / 2, self.max_backoff / 2) } else { (self.initial_backoff, self.max_backoff) };
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_max_times(attempts.max(1) as usize - 1);
        if jitter { builder.with_jitter() } else { builder }.build()
    }

    /// Whether requests go over TLS (an `https://` URL).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// Upper bound of one attempt: connecting plus the request itself.
    pub fn attempt_timeout(&self) -> Duration {
        self.connect_timeout.saturating_add(self.request_timeout)
    }

    /// Worst-case wall time of one retried request (one insert chunk, one query):
    /// every attempt timing out, plus the backoffs in between. An insert of
    /// `n` events takes at most `ceil(n / max_buffer_rows)` times this.
    pub fn max_request_duration(&self) -> Duration {
        let attempts = self.attempts.max(1);
        let waits = self.schedule(attempts, false).fold(Duration::ZERO, Duration::saturating_add);
        self.attempt_timeout().saturating_mul(attempts).saturating_add(waits)
    }
}

/// Database and table names must be non-empty `[A-Za-z0-9_]`, at most
/// [`MAX_IDENTIFIER_LEN`] characters. They are also backquoted when used.
pub fn validate_identifier(what: &str, name: &str) -> Result<(), SinkError> {
    identifier(SinkField::Table, what, name)
}

fn identifier(field: SinkField, what: &str, name: &str) -> Result<(), SinkError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SinkError::Config(ConfigProblem::new(
            field,
            format!("{what} name {name:?} is not a valid identifier (1-{MAX_IDENTIFIER_LEN} characters of [A-Za-z0-9_])"),
        )))
    }
}

/// `` `name` `` for a name that passed [`validate_identifier`].
pub fn quote_identifier(name: &str) -> Result<String, SinkError> {
    validate_identifier("identifier", name)?;
    Ok(format!("`{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["events", "default", "a", "_x1", "Team_42", "9lives", "a".repeat(MAX_IDENTIFIER_LEN).as_str()] {
            assert!(validate_identifier("table", ok).is_ok(), "{ok}");
            assert_eq!(quote_identifier(ok).unwrap(), format!("`{ok}`"));
        }
        for bad in [
            "",
            "a.b",
            "a b",
            "a`b",
            "ev`; DROP TABLE x; --",
            "a-b",
            "ä",
            "a\0",
            "a\n",
            "x'",
            "a\\b",
            "a".repeat(MAX_IDENTIFIER_LEN + 1).as_str(),
        ] {
            let err = validate_identifier("table", bad).unwrap_err();
            assert!(matches!(err, SinkError::Config(_)), "{bad:?}");
            assert!(!err.is_retryable());
            assert!(quote_identifier(bad).is_err());
        }
    }

    #[test]
    fn config_validation() {
        assert!(SinkConfig::default().validate().is_ok());
        assert!(SinkConfig { url: "https://ch:8443".into(), ..Default::default() }.validate().is_ok());
        let bad = [
            SinkConfig { table: "events;drop".into(), ..Default::default() },
            SinkConfig { database: "".into(), ..Default::default() },
            SinkConfig { url: "ftp://ch:8443".into(), ..Default::default() },
            SinkConfig { tls: crate::tls::TlsFiles { ca: Some("ca.pem".into()), ..Default::default() }, ..Default::default() },
            SinkConfig {
                url: "https://ch:8443".into(),
                tls: crate::tls::TlsFiles { cert: Some("c.pem".into()), ..Default::default() },
                ..Default::default()
            },
            SinkConfig { url: "127.0.0.1:8123".into(), ..Default::default() },
            SinkConfig { url: "http://".into(), ..Default::default() },
            SinkConfig { url: "http://u:p@ch:8123".into(), ..Default::default() },
            SinkConfig { user: "".into(), ..Default::default() },
            SinkConfig { attempts: 0, ..Default::default() },
            SinkConfig { max_buffer_rows: 0, ..Default::default() },
            SinkConfig { initial_backoff: Duration::from_secs(10), ..Default::default() },
            SinkConfig { request_timeout: Duration::ZERO, ..Default::default() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(SinkError::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn debug_redacts_password_and_url_credentials() {
        let c = SinkConfig {
            password: Some("hunter2-secret".into()),
            url: "http://alice:pw-in-url@ch.internal:8123/?x=1".into(),
            ..Default::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2-secret"), "{s}");
        assert!(!s.contains("pw-in-url"), "{s}");
        assert!(!s.contains("alice"), "{s}");
        assert!(s.contains("password: Some(\"<redacted>\")"), "{s}");
        assert!(s.contains("ch.internal:8123"), "{s}");
        assert!(format!("{:#?}", c).contains("<redacted>"));
        let none = format!("{:?}", SinkConfig::default());
        assert!(none.contains("password: None"), "{none}");
        // The error for a URL with credentials does not echo them either.
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("pw-in-url"), "{err}");
        let err =
            SinkConfig { url: "https://bob:pw2@h".into(), ..Default::default() }.validate().unwrap_err().to_string();
        assert!(!err.contains("pw2") && !err.contains("bob"), "{err}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = SinkConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        let got: Vec<u128> = c.schedule(7, false).map(|d| d.as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(c.schedule(1000, false).last(), Some(Duration::from_secs(1)));
        assert_eq!(c.backoffs(1).count(), 0, "one attempt, no wait");
        for (jittered, bound) in c.backoffs(7).zip(c.schedule(7, false)) {
            assert!(jittered >= bound / 2 && jittered <= bound, "{jittered:?} against {bound:?}");
        }
        let c = SinkConfig {
            attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(150),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        assert_eq!(c.max_request_duration(), Duration::from_millis(3 * 3000 + 100 + 150));
    }
}
