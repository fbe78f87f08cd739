//! Configuration: parse TOML -> validate everything at once -> build runtime types.
//!
//! `load` never stops at the first mistake it can get past: a facility engineer fixing a
//! config on a gateway should see every problem in one run, each as `PATH:LINE:COL: message`.
//! Syntax and type errors end parsing (the TOML crate stops there), so they come alone.

pub mod broker;
pub mod fields;
pub mod file;
pub mod runtime;
pub mod secret;
mod validate;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use broker::BrokerUrl;
pub use file::FileConfig;
pub use runtime::*;
pub use secret::{SecretFile, read_secret_file, secret_file_warning};

/// The zone `discover` puts devices in when not told their zone; `check-config` warns about
/// every device in it.
pub const UNASSIGNED_ZONE: &str = "unassigned";

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a position.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every error found while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A loaded configuration plus the warnings a technician should still see.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, parses, validates and builds the configuration at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        errors: vec![Diagnostic {
            file: path.to_owned(),
            position: None,
            message: format!("cannot read configuration: {e}"),
        }],
    })?;
    load_str(path, &text)
}

/// As `load`, from text already read (`path` is used for messages and relative paths).
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let source = Source { path, text };
    let parsed: FileConfig = toml::from_str(text).map_err(|e| {
        let mut diag = source.toml_error(&e);
        if let Some(key) = misplaced_top_level_key(&diag.message) {
            diag.message.push_str(&format!(
                " (`{key}` is a top-level key: top-level keys go before the first [table] of the file)"
            ));
        }
        ConfigError { errors: vec![diag] }
    })?;
    validate::build(&source, parsed)
}

/// The text being loaded, to turn byte spans into line:col.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn position(&self, span: &Range<usize>) -> Option<(usize, usize)> {
        line_col(self.text, span.start)
    }

    pub fn diag(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.to_owned(),
            position: span.and_then(|s| self.position(&s)),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        // The TOML message is multi-line with a source excerpt; keep its first line only
        // since we print the position ourselves.
        let message = e.message().lines().next().unwrap_or("invalid TOML").to_owned();
        self.diag(e.span(), message)
    }
}

/// The key of an "unknown field `KEY`" error when KEY is valid at the top level: in TOML a
/// key written after a `[table]` header belongs to that table, a common slip.
fn misplaced_top_level_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let key = &rest[..rest.find('`')?];
    fields::top_level_keys().contains(&key).then(|| key.to_owned())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> Option<(usize, usize)> {
    if offset > text.len() {
        return None;
    }
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    Some((line, col))
}

/// Parses a humane duration: `500ms`, `10s`, `5m`, `2h`, `30d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration {s:?} ({e}); use e.g. \"500ms\", \"10s\", \"5m\", \"30d\""))
}

/// Parses a humane size: `512MiB`, `1GiB`, `64KiB`, `1000000` (bytes), `10MB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("bad size {s:?}: unknown unit; use e.g. \"64KiB\", \"512MiB\", \"1GiB\"")),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}: expected a number and a unit, e.g. \"512MiB\""))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn line_col_counts_characters() {
        let t = "a = 1\nb = \"é\"x\n";
        assert_eq!(line_col(t, 0), Some((1, 1)));
        assert_eq!(line_col(t, 6), Some((2, 1)));
        assert_eq!(line_col(t, t.find('x').unwrap()), Some((2, 8)));
    }
}
