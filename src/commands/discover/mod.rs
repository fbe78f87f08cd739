//! `hallmonitor discover`: find devices and print a draft config (temporary wiring until the
//! shared skeleton is merged).

pub mod modbus;

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Discover {
    /// Scan the unit ids of a Modbus TCP gateway or RTU bus.
    Modbus(modbus::Args),
}

pub fn run(d: Discover) -> anyhow::Result<ExitCode> {
    match d {
        Discover::Modbus(a) => modbus::run(a),
    }
}
