//! Command-line entry: parses arguments, runs one command, maps the outcome to an exit code
//! (0 ok, 1 runtime failure, 2 usage or configuration error).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hallmonitor::commands::{self, exit_code_for};
use hallmonitor::logging::{self, LogFormat};

#[derive(Parser)]
#[command(name = "hallmonitor", version, about = "Edge agent for data-center facility telemetry")]
#[cfg_attr(
    not(feature = "sim"),
    command(after_help = "demo and sim: not in this gateway build; build with default features \
                          (cargo build --release) to get them.")
)]
#[cfg_attr(
    all(feature = "sim", not(feature = "embedded-broker")),
    command(after_help = "demo: not in this build; build with default features (cargo build --release) to get it.")
)]
struct Cli {
    /// Log output: `text` (readable lines) or `json` (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll, correlate, buffer and forward to the NOC.
    Run(commands::run::Args),
    /// Validate a configuration file and print a summary.
    CheckConfig(commands::check_config::Args),
    /// The whole pipeline on this machine with simulated devices and an embedded broker.
    #[cfg(feature = "embedded-broker")]
    Demo(commands::demo::Args),
    /// Subscribe to a broker and print what the NOC receives.
    Tail(commands::tail::Args),
    /// Print the running daemon's last status snapshot.
    Status(commands::status::Args),
    /// Poll configured devices and print every reading as one JSON line (no store, no MQTT).
    Poll(commands::poll::Args),
    /// Field tools for writing profiles: raw Modbus registers, SNMP walks.
    #[command(subcommand)]
    Probe(commands::probe::Probe),
    /// Scan a range (SNMP) or a bus (Modbus), recognise the devices and print a draft config.
    #[command(subcommand)]
    Discover(commands::discover::Discover),
    /// Run the engine over recorded readings and print what it would publish.
    Replay(commands::replay::Args),
    /// Run simulated devices only (benchmarks, tests).
    #[cfg(feature = "sim")]
    Sim(commands::sim::Args),
    /// Run the gateway pair's witness: the third voter of the election ([ha]).
    Witness(commands::witness::Args),
    /// Gateway pair operations ([ha]): `ha handover` moves the active role to the peer.
    #[command(subcommand)]
    Ha(commands::ha::Ha),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => commands::run::run(a, cli.log_format),
        Command::Witness(a) => commands::witness::run(a, cli.log_format),
        Command::Ha(h) => commands::ha::run(h),
        Command::CheckConfig(a) => commands::check_config::run(a),
        #[cfg(feature = "embedded-broker")]
        Command::Demo(a) => {
            // stdout is the NOC's view; the agent's own log would repeat it, so only errors.
            logging::init_stderr_at(cli.log_format, "error");
            commands::demo::run(a)
        }
        Command::Tail(a) => commands::tail::run(a),
        Command::Status(a) => commands::status::run(a),
        Command::Poll(a) => {
            logging::init_stderr(cli.log_format);
            commands::poll::run(a)
        }
        Command::Probe(p) => commands::probe::run(p),
        Command::Discover(d) => commands::discover::run(d),
        Command::Replay(a) => {
            logging::init_stderr(cli.log_format);
            commands::replay::run(a)
        }
        #[cfg(feature = "sim")]
        Command::Sim(a) => {
            logging::init(cli.log_format, None);
            commands::sim::run(a)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            logging::stderr_line(format_args!("hallmonitor: {e:#}"));
            exit_code_for(&e)
        }
    }
}
