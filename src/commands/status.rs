//! `hallmonitor status` (being built; see its issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hallmonitor status` is not available in this build yet")
}
