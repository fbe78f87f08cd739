//! `hallmonitor replay` (being built; see its issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hallmonitor replay` is not available in this build yet")
}
