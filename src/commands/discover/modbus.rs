//! `hallmonitor discover modbus ADDR|--serial PATH`: not built yet (issue 12, section 3). The
//! arguments are fixed here so the command line is stable; the scan comes later.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Modbus TCP gateway or device, host:port (port 502 if omitted).
    #[arg(required_unless_present = "serial", conflicts_with = "serial")]
    pub address: Option<String>,
    /// Serial port of an RS-485 bus (Modbus RTU), e.g. /dev/ttyS1.
    #[arg(long)]
    pub serial: Option<PathBuf>,
    /// Unit ids to try: `N` or `A-B`, within 1-247.
    #[arg(long, default_value = "1-247")]
    pub units: String,
    /// Requests per second at most, `N/s`.
    #[arg(long, default_value = "50/s", value_parser = super::pace::parse_rate)]
    pub rate: u32,
}

pub fn run(_args: Args, _rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!("discover modbus is not built yet (issue 12); write the [[devices]] blocks by hand for now"))
}
