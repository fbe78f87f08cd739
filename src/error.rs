//! Errors every layer may raise and the command layer maps to exit codes.

/// A mistake in how the program was called or configured on the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
