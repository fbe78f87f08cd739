//! `hallmonitor run`: the daemon.
//!
//! The daemon runs on one thread by default (tokio's current-thread runtime): its work is a
//! few hundred small polls a second, and a second worker thread costs more in cross-thread
//! wake-ups and memory than it gains. `HALLMONITOR_WORKER_THREADS=N` (N >= 1) runs it on N
//! worker threads instead, for a gateway with more devices than one core can poll.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentOptions, Clock};
use crate::logging::LogFormat;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/hallmonitor/hallmonitor.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args, format: LogFormat) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    crate::logging::init(format, config.log_level.as_deref());
    let status_dir = crate::status::snapshot_dir(&config.site, &config.store.path);
    let opts = AgentOptions {
        clock: Clock::System,
        status_dir,
        systemd: std::env::var_os("NOTIFY_SOCKET").is_some(),
        shutdown: CancellationToken::new(),
    };
    let rt = daemon_runtime(std::env::var(WORKER_THREADS_ENV).ok().as_deref())?;
    rt.block_on(agent::run(config, opts))?;
    Ok(ExitCode::SUCCESS)
}

/// The environment variable that sets the daemon's worker threads (see the module doc).
pub const WORKER_THREADS_ENV: &str = "HALLMONITOR_WORKER_THREADS";

/// The daemon's runtime: current-thread unless `workers` (the variable's value) names a
/// number of worker threads; anything else is a usage error naming the variable.
fn daemon_runtime(workers: Option<&str>) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = match workers.map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => Some(n),
            _ => {
                return Err(crate::error::UsageError(format!(
                    "{WORKER_THREADS_ENV}={text:?}: expected a number of worker threads from 1 to 64"
                ))
                .into());
            }
        },
    };
    let mut builder = match workers {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    Ok(builder.enable_all().build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_come_from_the_environment_or_the_daemon_runs_on_one_thread() {
        let flavor = |v: Option<&str>| daemon_runtime(v).map(|rt| rt.handle().runtime_flavor());
        assert_eq!(flavor(None).unwrap(), tokio::runtime::RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(Some("2")).unwrap(), tokio::runtime::RuntimeFlavor::MultiThread);
        let err = flavor(Some("many")).unwrap_err().to_string();
        assert!(err.contains(WORKER_THREADS_ENV) && err.contains("many"), "{err}");
        assert!(flavor(Some("0")).is_err());
    }
}
