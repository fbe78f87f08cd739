//! `hallmonitor run`: the daemon.

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
    let rt = super::runtime()?;
    rt.block_on(agent::run(config, opts))?;
    Ok(ExitCode::SUCCESS)
}
