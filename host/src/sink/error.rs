//! Sink errors: what went wrong ([`ErrorKind`], retryable or final) and
//! where ([`SinkError`]); `classify.rs` turns the client's errors into them.

use std::fmt;

use uuid::Uuid;

/// What went wrong with a request to ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No connection: refused, reset, closed mid-request, DNS failure. Retryable.
    Unavailable,
    /// Connect or request timeout. Retryable.
    Timeout,
    /// The server failed to process a valid request (a 5xx-class exception:
    /// overload, too many parts, memory limit, keeper, shutting down...). Retryable.
    Server,
    /// Missing database/table/column or a type mismatch. Final.
    Schema,
    /// Bad credentials or missing privileges. Final.
    Auth,
    /// The server (or the client serializer) rejected a row as invalid. Final.
    InvalidData,
    /// The server rejected the request itself (syntax, unknown setting or
    /// format, e.g. validation against a server too old for it). Final.
    BadRequest,
    /// The client could not encode or decode the data (protocol mismatch). Final.
    Client,
    /// The TLS handshake failed: the server's certificate does not verify
    /// against the configured CA, the server does not speak TLS, or it
    /// refused the client certificate. Final: retrying cannot fix it, and
    /// nothing falls back to clear text.
    Tls,
}

impl ErrorKind {
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Server)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::Schema => "schema",
            ErrorKind::Auth => "auth",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Client => "client",
            ErrorKind::Tls => "tls",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The setting of a [`super::SinkConfig`] a configuration error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkField {
    Url,
    User,
    Database,
    Table,
    /// Attempts, backoffs, timeouts, rows per INSERT.
    Retries,
    /// The TLS files (CA, client certificate and key).
    Tls,
}

/// What is wrong with a [`super::SinkConfig`], and which setting it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigProblem {
    pub field: SinkField,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(field: SinkField, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { field, message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration cannot work (bad identifier, URL, limits). Final.
    #[error("invalid ClickHouse sink configuration: {0}")]
    Config(ConfigProblem),
    /// An event cannot be represented in the table (nothing was written). Final.
    #[error("event {uuid} cannot be written: {reason}")]
    InvalidEvent { uuid: Uuid, reason: String },
    /// A request failed; `attempt` is the attempt that produced this error
    /// (the last one when retries were exhausted), `message` the server's
    /// message or the transport error chain.
    #[error("ClickHouse {op} failed on attempt {attempt} of {attempts} ({kind}): {message}")]
    ClickHouse {
        op: &'static str,
        kind: ErrorKind,
        /// ClickHouse exception code (`Code: 60` = unknown table), when the server sent one.
        code: Option<u32>,
        attempt: u32,
        attempts: u32,
        message: String,
    },
}

impl SinkError {
    /// True when the same request may succeed later (server down, overloaded,
    /// timed out); false for configuration, schema, credential and data errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::ClickHouse { kind, .. } => kind.is_retryable(),
            SinkError::Config(_) | SinkError::InvalidEvent { .. } => false,
        }
    }

    /// For a configuration error, the setting it is about.
    pub fn field(&self) -> Option<SinkField> {
        match self {
            SinkError::Config(p) => Some(p.field),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            SinkError::ClickHouse { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<u32> {
        match self {
            SinkError::ClickHouse { code, .. } => *code,
            _ => None,
        }
    }

    pub fn attempt(&self) -> Option<u32> {
        match self {
            SinkError::ClickHouse { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    /// The server's message or transport error chain.
    pub fn message(&self) -> Option<&str> {
        match self {
            SinkError::ClickHouse { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A classified failure of one attempt, before attempt numbers are attached.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub kind: ErrorKind,
    pub code: Option<u32>,
    pub message: String,
}

impl Failure {
    pub fn timeout(after: std::time::Duration) -> Failure {
        Failure {
            kind: ErrorKind::Timeout,
            code: None,
            message: format!("no response within {} ms", after.as_millis()),
        }
    }

    pub fn into_error(self, op: &'static str, attempt: u32, attempts: u32) -> SinkError {
        SinkError::ClickHouse { op, kind: self.kind, code: self.code, attempt, attempts, message: self.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_accessors_and_display() {
        let e = Failure { kind: ErrorKind::Unavailable, code: None, message: "connection refused".into() }
            .into_error("insert", 3, 5);
        assert!(e.is_retryable());
        assert_eq!(e.attempt(), Some(3));
        assert_eq!(e.kind(), Some(ErrorKind::Unavailable));
        assert_eq!(e.to_string(), "ClickHouse insert failed on attempt 3 of 5 (unavailable): connection refused");
        let e =
            Failure { kind: ErrorKind::Schema, code: Some(60), message: "Code: 60".into() }.into_error("insert", 1, 5);
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some(60));
        assert!(!SinkError::Config(ConfigProblem::new(SinkField::Url, "x")).is_retryable());
        assert!(!SinkError::InvalidEvent { uuid: Uuid::nil(), reason: "x".into() }.is_retryable());
    }
}
