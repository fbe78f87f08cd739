//! Log output for technicians: readable lines by default, JSON for log shippers.
//!
//! Under systemd (`JOURNAL_STREAM` set) the timestamp is left out since journald adds its own.
//! Colour only when the log goes to a terminal, never to journald, a file or a pipe, and
//! never when `NO_COLOR` is set. `RUST_LOG` wins over the configured level.

use std::io::IsTerminal;

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
        _ => EnvFilter::new(default_directives(level.unwrap_or("info"))),
    }
}

/// The filter without `RUST_LOG`. async-snmp opens an INFO span around every request
/// (`#[instrument]`), which the fmt layer builds and formats per request although no line
/// ever shows it: below debug its spans are off and only its warnings and errors pass.
fn default_directives(level: &str) -> String {
    let verbose = matches!(level.to_ascii_lowercase().as_str(), "debug" | "trace");
    if verbose { format!("{level},rumqttd=off") } else { format!("{level},rumqttd=off,async_snmp=warn") }
}

fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Whether to colour lines written to a stream that is (`to_terminal`) or is not a terminal.
fn colour(to_terminal: bool) -> bool {
    colour_for(to_terminal, std::env::var_os("NO_COLOR").as_deref(), under_journald())
}

fn colour_for(to_terminal: bool, no_color: Option<&std::ffi::OsStr>, journald: bool) -> bool {
    // https://no-color.org: set and not empty disables colour.
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    to_terminal && !no_color && !journald
}

/// Logs to stdout (journald captures it under systemd). Safe to call twice (a reload):
/// the second call is ignored.
pub fn init(format: LogFormat, level: Option<&str>) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_target(false)
        .with_ansi(colour(std::io::stdout().is_terminal()));
    let _ = match (format, under_journald()) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}

/// Logs warnings to stderr, for commands whose stdout is data (`poll`, `replay`).
pub fn init_stderr(format: LogFormat) {
    init_stderr_at(format, "warn");
}

/// Logs to stderr from `level` up (`RUST_LOG` wins).
pub fn init_stderr_at(format: LogFormat, level: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(Some(level)))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal()));
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    /// The spans async-snmp opens per request reach no layer at the default level, and do
    /// at debug.
    #[test]
    fn async_snmp_request_spans_are_off_unless_debugging() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        struct CountSpans(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> Layer<S> for CountSpans {
            fn on_new_span(&self, _: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        // (level, spans that reach the layer: async-snmp's and ours)
        for (level, spans) in [("info", 1), ("warn", 0), ("debug", 2)] {
            let count = Arc::new(AtomicUsize::new(0));
            let filter = super::EnvFilter::new(super::default_directives(level));
            let subscriber = tracing_subscriber::registry().with(CountSpans(count.clone()).with_filter(filter));
            tracing::subscriber::with_default(subscriber, || {
                let _span = tracing::info_span!(target: "async_snmp::client", "get_bulk").entered();
                let _ours = tracing::info_span!(target: "hallmonitor::agent", "ours").entered();
            });
            assert_eq!(count.load(Ordering::Relaxed), spans, "at {level}");
        }
    }

    use super::colour_for;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_outside_journald() {
        assert!(colour_for(true, None, false));
        assert!(colour_for(true, Some("".as_ref()), false), "an empty NO_COLOR does not count");
        assert!(!colour_for(false, None, false), "a file or a pipe");
        assert!(!colour_for(true, Some("1".as_ref()), false), "NO_COLOR");
        assert!(!colour_for(true, None, true), "journald");
    }
}
