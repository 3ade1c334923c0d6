//! Log output: JSON lines in production (one object per line, with the
//! fields of every enclosing span, so an activity's lines carry its
//! workflow id, event uuid and team id), pretty text on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The format `auto` resolves to: pretty when stderr is a terminal.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Installs the global subscriber; logs go to stderr.
pub fn init(config: &LogConfig) {
    // `Config::validate` checked the filter; a bad one cannot get here.
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match resolve(config.format) {
        LogFormat::Json => builder
            .json()
            // Span fields at the top of each line's `span`/`spans`, not only
            // the innermost span's: the event span nests in the activity's.
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .with_span_events(FmtSpan::NONE)
            .init(),
        _ => builder.compact().init(),
    }
}
