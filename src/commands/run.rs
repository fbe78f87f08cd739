//! `hallmonitor run`: the daemon (being built; see the store-and-forward issue).

use std::path::PathBuf;
use std::process::ExitCode;

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
    anyhow::bail!("`hallmonitor run` is not available in this build yet")
}
