//! `hallmonitor discover`: scan a network range or a Modbus bus, recognise devices by their
//! profiles and print a draft configuration.
//!
//! Layout: `snmp` and `modbus` (one scan each), `draft` (the draft config both print),
//! `pace` (the global request-rate bound both scans keep). Output contract of every scan:
//! stdout carries the draft config only; progress and the table of findings go to stderr;
//! nothing is written anywhere else.

pub mod draft;
pub mod modbus;
pub mod pace;
pub mod snmp;

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Discover {
    /// Scan an address range over SNMP and print a draft config of the devices found.
    Snmp(snmp::Args),
    /// Scan the unit ids of a Modbus TCP gateway or RTU bus and print a draft config.
    Modbus(modbus::Args),
}

pub fn run(discover: Discover) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    match discover {
        Discover::Snmp(a) => snmp::run(a, &rt),
        Discover::Modbus(a) => modbus::run(a, &rt),
    }
}
