//! `hallmonitor sim --config PATH`: simulated devices on loopback, driven by a scenario.
//!
//! Loads and checks the simulator TOML (`crate::sim::config`), starts the devices on the ports it
//! names on 127.0.0.1 (`crate::sim::devices`: a port in use is reported at once, by number and
//! device) and the scenario's value driver. Runs until Ctrl-C / SIGTERM or `--seconds`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::UsageError;
use crate::model::{Timestamp, humane_duration};
use crate::sim::config::{Effect, Endpoint, SimDevice, SimSettings, Target};
use crate::sim::devices::{Ports, bind_all, start_servers};
use crate::sim::scenario::{Scenario, SimClock, drive, fitted_clock};
use crate::sim::{SimValues, config};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Simulator configuration (devices, ports, scenario).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Override `[sim] speed` (simulated seconds per wall second).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Override `[sim] start` (RFC 3339), e.g. to begin just before an excursion.
    #[arg(long)]
    pub start: Option<String>,
    /// Run the whole scenario (to the end of its last scheduled excursion) in about this many
    /// wall seconds: slower through excursions, fast through the quiet days between them.
    #[arg(long, value_name = "SECONDS", conflicts_with = "speed")]
    pub fit: Option<u64>,
    /// Stop after this many wall-clock seconds (default: run until Ctrl-C / SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Check the configuration, print the plan and exit.
    #[arg(long)]
    pub check: bool,
}

/// Runs `hallmonitor sim` until Ctrl-C / SIGTERM or `--seconds`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = config::load(&args.config)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let mut settings = loaded.settings;
    if let Some(s) = args.speed {
        if !(s.is_finite() && s > 0.0) {
            return Err(UsageError(format!("--speed {s} must be a positive number")).into());
        }
        settings.speed = s;
    }
    if let Some(s) = &args.start {
        settings.start = Timestamp::parse_rfc3339(s)
            .map_err(|e| UsageError(format!("--start {s:?} is not an RFC 3339 time: {e}")))?;
    }
    let settings = Arc::new(settings);
    let scenario = Arc::new(Scenario::new(settings.clone()));
    print!("{}", plan(&settings, scenario.value_count()));
    let fitted = match args.fit {
        Some(0) => return Err(UsageError("--fit must be at least 1 second".into()).into()),
        Some(secs) => {
            let (clock, line) = fitted_clock(&scenario, Duration::from_secs(secs));
            println!("{line}");
            Some(clock)
        }
        None => None,
    };
    if args.check {
        return Ok(ExitCode::SUCCESS);
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let values = Arc::new(SimValues::new());
        let clock = fitted.unwrap_or_else(|| SimClock::new(settings.start, settings.speed));
        // Values exist before any server answers.
        scenario.apply(clock.now(), &values);
        let sockets = bind_all(&settings, Ports::AsConfigured).await?;
        let not_linked = start_servers(sockets, &values, &cancel).await;
        for what in &not_linked {
            println!("sim: {what}");
        }
        let driver =
            tokio::spawn(drive(scenario.clone(), clock.clone(), values.clone(), settings.tick, cancel.clone()));
        tracing::info!(devices = settings.devices.len(), values = scenario.value_count(), "sim running");
        wait_for_end(args.seconds).await;
        cancel.cancel();
        let _ = driver.await;
        println!("sim: stopped at simulated {}", clock.now());
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_end(seconds: Option<u64>) {
    let limit = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = limit => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// What the simulator will run, one line per run of similar devices.
pub fn plan(s: &SimSettings, values: usize) -> String {
    let mut o = String::new();
    let modbus = s.devices.iter().filter(|d| matches!(d.endpoint, Endpoint::Modbus { .. })).count();
    let _ = writeln!(
        o,
        "sim: {} devices ({modbus} modbus, {} snmp), {values} values per tick, from {}",
        s.devices.len(),
        s.devices.len() - modbus,
        s.path.display()
    );
    let per_wall_s = Duration::from_millis((s.speed * 1000.0).min(1e15) as u64);
    let _ = writeln!(
        o,
        "  clock   starts {}, speed x{} (1 s = {} simulated), values every {}",
        s.start,
        s.speed,
        humane_duration(per_wall_s),
        humane_duration(s.tick)
    );
    // Runs of consecutive devices of one profile on one port, or on consecutive ports.
    let mut runs: Vec<(&SimDevice, &SimDevice, usize)> = Vec::new();
    for d in &s.devices {
        if let Some((_, last, n)) = runs.last_mut()
            && last.profile.name() == d.profile.name()
            && last.zone == d.zone
            && same_run(&last.endpoint, &d.endpoint)
        {
            *last = d;
            *n += 1;
            continue;
        }
        runs.push((d, d, 1));
    }
    for (first, last, n) in runs {
        let ids = if n == 1 { first.id.to_string() } else { format!("{}..{}", first.id, last.id) };
        let where_ = match (&first.endpoint, &last.endpoint) {
            (Endpoint::Modbus { port: p, unit: u1 }, Endpoint::Modbus { port: q, unit: u2 }) if p == q => {
                format!("modbus 127.0.0.1:{p} unit {}", range(u64::from(*u1), u64::from(*u2)))
            }
            (Endpoint::Modbus { port: p, unit }, Endpoint::Modbus { port: q, .. }) => {
                format!("modbus 127.0.0.1:{} unit {unit}", range(u64::from(*p), u64::from(*q)))
            }
            (Endpoint::Snmp { port: p, .. }, Endpoint::Snmp { port: q, .. }) if p == q => {
                format!("snmp   127.0.0.1:{p} community = device id")
            }
            (Endpoint::Snmp { port: p, community }, Endpoint::Snmp { port: q, .. }) => {
                format!("snmp   127.0.0.1:{} community {community}", range(u64::from(*p), u64::from(*q)))
            }
            _ => String::new(),
        };
        let _ = writeln!(o, "  {where_}  {} x{n} {ids} ({})", first.profile.name(), first.zone);
    }
    for x in &s.excursions {
        let target = match &x.target {
            Target::Zone(z) => format!("zone {z}"),
            Target::Rack(r) => format!("rack {r}"),
            Target::Device(d) => format!("device {d}"),
        };
        let effect = match &x.effect {
            Effect::Add { metrics, delta } => format!("{} {delta:+}", join(metrics)),
            Effect::Percent { metrics, pct } => format!("{} {pct:+} %", join(metrics)),
            Effect::Fault(f) => format!("fault {f:?}").to_lowercase(),
        };
        let sch = &x.schedule;
        let window = match sch.window {
            Some((f, t)) => format!("{:02}:{:02}-{:02}:{:02}", f / 60, f % 60, t / 60, t % 60),
            None => "all day".to_owned(),
        };
        let days = if !sch.days.is_empty() {
            format!("day {}", sch.days.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
        } else {
            let every =
                if sch.every_days == 1 { "every day".to_owned() } else { format!("every {} days", sch.every_days) };
            match sch.last_day {
                Some(l) => format!("{every} from day {} to {l}", sch.first_day),
                None => format!("{every} from day {}", sch.first_day),
            }
        };
        let _ = writeln!(o, "  {}: {target} {effect}, {window}, {days}", x.name);
    }
    o
}

fn same_run(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Modbus { port: p, unit: u }, Endpoint::Modbus { port: q, unit: v }) => {
            (p == q && *v == u.wrapping_add(1)) || (*q == p.wrapping_add(1) && u == v)
        }
        (Endpoint::Snmp { port: p, community: c }, Endpoint::Snmp { port: q, community: d }) => {
            (p == q && c != d) || (*q == p.wrapping_add(1) && c == d)
        }
        _ => false,
    }
}

fn range(a: u64, b: u64) -> String {
    if a == b { a.to_string() } else { format!("{a}-{b}") }
}

fn join(ms: &[crate::model::Metric]) -> String {
    ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}
