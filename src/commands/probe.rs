//! `hallmonitor probe`: field tools for writing profiles.

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Probe {
    /// Read raw registers and show every type and byte/word-order interpretation.
    Modbus(crate::sources::modbus::probe::Args),
    /// Walk an SNMP subtree and print each varbind with its type.
    Snmp(crate::sources::snmp::probe::Args),
}

pub fn run(probe: Probe) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    match probe {
        Probe::Modbus(a) => crate::sources::modbus::probe::run(a, &rt),
        Probe::Snmp(a) => crate::sources::snmp::probe::run(a, &rt),
    }
}
