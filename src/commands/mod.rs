//! One module per CLI command; each is a thin layer over the pipeline stages. `sim` and `demo`
//! exist only with the `sim` and `embedded-broker` features (not in gateway builds).

pub mod check_config;
#[cfg(feature = "embedded-broker")]
pub mod demo;
pub mod discover;
pub mod ha;
pub mod poll;
pub mod probe;
pub mod replay;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod tail;
pub mod witness;

use std::process::ExitCode;

use crate::config::ConfigError;
pub use crate::error::UsageError;

/// Maps an error to the exit code contract: 2 for usage and configuration errors, else 1.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Builds the multi-threaded runtime commands run on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Loads a config, printing warnings to stderr; errors come back as `ConfigError` (exit 2).
pub fn load_config(path: &std::path::Path) -> anyhow::Result<crate::config::Config> {
    let loaded = crate::config::load(path)?;
    for w in &loaded.warnings {
        crate::logging::stderr_line(format_args!("warning: {w}"));
    }
    Ok(loaded.config)
}
