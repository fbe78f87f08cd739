//! `hallmonitor tail` (being built; see its issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hallmonitor tail` is not available in this build yet")
}
