//! Log output for technicians: readable lines by default, JSON for log shippers.
//!
//! Under systemd (`JOURNAL_STREAM` set) the timestamp is left out since journald adds its own.
//! `RUST_LOG` wins over the configured level.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn filter(level: Option<&str>) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        // The embedded demo broker logs every connection (and every disconnect as an error);
        // the demo and tests judge it by what it delivers.
        _ => EnvFilter::new(format!("{},rumqttd=off", level.unwrap_or("info"))),
    }
}

/// Logs to stdout (journald captures it under systemd). Safe to call twice (a reload):
/// the second call is ignored.
pub fn init(format: LogFormat, level: Option<&str>) {
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter(level)).with_target(false);
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}

/// Logs warnings to stderr, for commands whose stdout is data (`poll`, `replay`).
pub fn init_stderr(format: LogFormat) {
    init_stderr_at(format, "warn");
}

/// Logs to stderr from `level` up (`RUST_LOG` wins).
pub fn init_stderr_at(format: LogFormat, level: &str) {
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter(Some(level))).with_target(false).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
