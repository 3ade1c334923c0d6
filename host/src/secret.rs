//! Credentials and the places they hide (URLs), kept out of logs, errors and
//! `config --show`. A leaf module: the config that holds secrets and the
//! clients that connect with them (the ClickHouse sink, the Redis tier) all
//! use it without importing each other.

use serde::{Deserialize, Serialize};

/// A credential: serialised as itself (the config file holds it), shown as
/// `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `url` with any `user:password@` part replaced, for logs and errors. A URL
/// without credentials is returned as written; one that does not parse but
/// holds an `@` is withheld whole, since where its credentials end is unknown.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // Both setters fail only on URLs that cannot have credentials,
            // and this one has them.
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            let plain = parsed.to_string();
            match plain.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://<redacted>@{rest}"),
                None => "<redacted>".to_string(),
            }
        }
        // `user:pass@host` without a scheme parses as scheme `user`, path
        // `pass@host`: no host to keep, the rest may be a password.
        Ok(parsed) if parsed.cannot_be_a_base() && url.contains('@') => "<redacted URL>".to_string(),
        Ok(_) => url.to_string(),
        Err(_) if url.contains('@') => "<redacted URL>".to_string(),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_variants() {
        assert_eq!(redact_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
        assert_eq!(redact_url("http://u:p@h:1/x"), "http://<redacted>@h:1/x");
        assert_eq!(redact_url("redis://:hunter2@127.0.0.1:6379/0"), "redis://<redacted>@127.0.0.1:6379/0");
        assert_eq!(redact_url("rediss://user@h"), "rediss://<redacted>@h");
        assert_eq!(redact_url("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact_url("u:p@h"), "<redacted URL>");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }
}
