//! The `clickhouse` crate's errors (and ClickHouse's own exception codes)
//! classified into an [`ErrorKind`]: what is retried, what is final.

use super::error::{ErrorKind, Failure};

/// Longest server message kept in an error (ClickHouse appends stack traces).
const MAX_MESSAGE_LEN: usize = 2000;

/// Classifies an error of the `clickhouse` crate.
pub(crate) fn classify(err: &clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error as E;
    let message = truncate(match err {
        // `Other` does not expose its inner error as a source.
        E::Other(inner) => error_chain(inner.as_ref()),
        _ => error_chain(err),
    });
    let transport: Option<&(dyn std::error::Error + 'static)> = match err {
        E::Network(inner) | E::Other(inner) => Some(inner.as_ref()),
        _ => None,
    };
    if let Some(reason) = transport.and_then(crate::tls::tls_failure) {
        let message = truncate(format!("TLS handshake failed: {reason} (check clickhouse.tls_ca and the client certificate, and that the server speaks TLS on this port)"));
        return Failure { kind: ErrorKind::Tls, code: None, message };
    }
    let (kind, code) = match err {
        E::Network(inner) => (transport_kind(inner.as_ref(), true), None),
        E::Other(inner) => (transport_kind(inner.as_ref(), false), None),
        E::TimedOut => (ErrorKind::Timeout, None),
        E::BadResponse(reason) => classify_response(reason),
        E::SchemaMismatch(_) => (ErrorKind::Schema, None),
        E::Custom(_) | E::VariantDiscriminatorIsOutOfBound(_) | E::SequenceMustHaveLength => {
            (ErrorKind::InvalidData, None)
        }
        _ => (ErrorKind::Client, None),
    };
    Failure { kind, code, message }
}

/// Kind of an error from the HTTP stack: a timeout when an I/O timeout is in
/// its chain, a lost connection when any I/O or HTTP client error is, else a
/// client-side problem.
fn transport_kind(err: &(dyn std::error::Error + 'static), mut network: bool) -> ErrorKind {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ErrorKind::Timeout;
            }
            network = true;
        }
        if e.downcast_ref::<hyper_util::client::legacy::Error>().is_some() {
            network = true;
        }
        cur = e.source();
    }
    if network {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Client
    }
}

/// Classifies an error response: by its ClickHouse exception code when present
/// (`Code: 60, e.displayText() = ...` on old servers, `Code: 60. DB::Exception: ...`
/// on new ones), else by an HTTP status at its start (`503 Service Unavailable`).
pub(crate) fn classify_response(reason: &str) -> (ErrorKind, Option<u32>) {
    if let Some(code) = exception_code(reason) {
        return (kind_of_code(code), Some(code));
    }
    let status = reason.get(..3).filter(|s| s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<u16>().ok());
    let kind = match status {
        Some(401) | Some(403) => ErrorKind::Auth,
        Some(404) => ErrorKind::Schema,
        Some(408) | Some(429) => ErrorKind::Server,
        Some(s) if (400..500).contains(&s) => ErrorKind::BadRequest,
        // 5xx, or a body we cannot read (a proxy's error page): the server side failed.
        _ => ErrorKind::Server,
    };
    (kind, None)
}

/// The number after the first `Code: ` / `Code:`.
pub(crate) fn exception_code(reason: &str) -> Option<u32> {
    let at = reason.find("Code:")?;
    let digits: String = reason[at + 5..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Final error codes; every other code is a server-side failure worth retrying.
/// Numbers are from ClickHouse's `src/Common/ErrorCodes.cpp`.
pub(crate) fn kind_of_code(code: u32) -> ErrorKind {
    match code {
        // READONLY, UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED,
        // DATABASE_ACCESS_DENIED, ACCESS_DENIED, AUTHENTICATION_FAILED
        164 | 192 | 193 | 194 | 195 | 291 | 497 | 516 => ErrorKind::Auth,
        // THERE_IS_NO_COLUMN, NOT_FOUND_COLUMN_IN_BLOCK, NO_SUCH_COLUMN_IN_TABLE,
        // NUMBER_OF_COLUMNS_DOESNT_MATCH, ILLEGAL_COLUMN, UNKNOWN_IDENTIFIER, UNKNOWN_TYPE,
        // TYPE_MISMATCH, TABLE_ALREADY_EXISTS, UNKNOWN_TABLE, UNKNOWN_DATABASE,
        // DATABASE_ALREADY_EXISTS, INCOMPATIBLE_COLUMNS
        8 | 10 | 16 | 20 | 44 | 47 | 50 | 53 | 57 | 60 | 81 | 82 | 122 => ErrorKind::Schema,
        // CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
        // ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA, CANNOT_PARSE_DATE,
        // CANNOT_PARSE_DATETIME, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE,
        // CANNOT_PARSE_NUMBER, INCORRECT_DATA, TOO_LARGE_STRING_SIZE,
        // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, CANNOT_PARSE_UUID
        6 | 26 | 27 | 32 | 33 | 38 | 41 | 69 | 70 | 72 | 117 | 131 | 349 | 376 => ErrorKind::InvalidData,
        // UNSUPPORTED_METHOD, UNSUPPORTED_PARAMETER, BAD_ARGUMENTS,
        // NUMBER_OF_ARGUMENTS_DOESNT_MATCH, ILLEGAL_TYPE_OF_ARGUMENT, UNKNOWN_FUNCTION,
        // NOT_IMPLEMENTED, SYNTAX_ERROR, UNKNOWN_FORMAT, INCORRECT_QUERY, UNKNOWN_SETTING
        1 | 2 | 36 | 42 | 43 | 46 | 48 | 62 | 73 | 80 | 115 => ErrorKind::BadRequest,
        _ => ErrorKind::Server,
    }
}

/// `err: source: source ...`, skipping sources already contained in the text.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

fn truncate(mut s: String) -> String {
    let s_trim = s.trim_end();
    if s_trim.len() != s.len() {
        s.truncate(s_trim.len());
    }
    if s.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" [truncated]");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    #[test]
    fn codes_old_and_new_format() {
        let old =
            "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist., e.what() = DB::Exception";
        let new = "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) (version 24.8.4.13 (official build))";
        for r in [old, new] {
            assert_eq!(classify_response(r), (ErrorKind::Schema, Some(60)));
        }
        assert_eq!(
            classify_response("Code: 193, e.displayText() = DB::Exception: Wrong password for user default"),
            (ErrorKind::Auth, Some(193))
        );
        assert_eq!(
            classify_response("Code: 516. DB::Exception: default: Authentication failed"),
            (ErrorKind::Auth, Some(516))
        );
        assert_eq!(
            classify_response("Code: 33, e.displayText() = DB::Exception: Cannot read all data.\n"),
            (ErrorKind::InvalidData, Some(33))
        );
        assert_eq!(
            classify_response(
                "Code: 115, e.displayText() = DB::Exception: Unknown setting describe_include_subcolumns"
            ),
            (ErrorKind::BadRequest, Some(115))
        );
        // Overload and friends are worth retrying.
        for code in [159, 202, 209, 210, 241, 242, 252, 319, 394, 999] {
            let (kind, c) = classify_response(&format!("Code: {code}. DB::Exception: x"));
            assert_eq!((kind, c), (ErrorKind::Server, Some(code)));
            assert!(kind.is_retryable());
        }
        // Header-only reason from the crate.
        assert_eq!(classify_response("Code: 60"), (ErrorKind::Schema, Some(60)));
    }

    #[test]
    fn statuses_without_code() {
        assert_eq!(classify_response("503 Service Unavailable").0, ErrorKind::Server);
        assert_eq!(classify_response("502 Bad Gateway").0, ErrorKind::Server);
        assert_eq!(classify_response("<html>bad gateway</html>").0, ErrorKind::Server);
        assert_eq!(classify_response("401 Unauthorized").0, ErrorKind::Auth);
        assert_eq!(classify_response("404 Not Found").0, ErrorKind::Schema);
        assert_eq!(classify_response("429 Too Many Requests").0, ErrorKind::Server);
        assert_eq!(classify_response("400 Bad Request").0, ErrorKind::BadRequest);
    }

    #[test]
    fn crate_errors() {
        assert_eq!(classify(&E::TimedOut).kind, ErrorKind::Timeout);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&E::Network(Box::new(refused))).kind, ErrorKind::Unavailable);
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        assert_eq!(classify(&E::Network(Box::new(timed_out))).kind, ErrorKind::Timeout);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let f = classify(&E::Other(Box::new(reset)));
        assert_eq!(f.kind, ErrorKind::Unavailable);
        assert!(f.message.contains("reset"), "{}", f.message);
        assert_eq!(classify(&E::Other("weird".into())).kind, ErrorKind::Client);
        assert_eq!(classify(&E::NotEnoughData).kind, ErrorKind::Client);
        assert_eq!(classify(&E::SchemaMismatch("x".into())).kind, ErrorKind::Schema);
        assert_eq!(classify(&E::Custom("DateTime out of range".into())).kind, ErrorKind::InvalidData);
        let f = classify(&E::BadResponse("Code: 81, e.displayText() = DB::Exception: Database x doesn't exist".into()));
        assert_eq!((f.kind, f.code), (ErrorKind::Schema, Some(81)));
    }

    #[test]
    fn long_messages_are_truncated() {
        let f = classify(&E::BadResponse(format!("Code: 1000, {}", "é".repeat(5000))));
        assert!(f.message.len() <= MAX_MESSAGE_LEN + 20);
        assert!(f.message.ends_with("[truncated]"));
    }
}
