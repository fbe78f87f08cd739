//! `hallmonitor probe snmp` (being built; see the snmp source issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device address, host:port.
    pub address: String,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hallmonitor probe snmp` is not available in this build yet")
}
