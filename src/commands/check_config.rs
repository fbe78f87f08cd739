//! `hallmonitor check-config PATH`: validate and summarize. Exit 0 if valid; 2 with one
//! `PATH:LINE:COL: message` line per error otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, Transport};
use crate::model::humane_duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file to check.
    pub path: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match config::load(&args.path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            print!("{}", summary(&loaded.config));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            for d in &e.errors {
                eprintln!("{d}");
            }
            eprintln!("{} error(s) in {}", e.errors.len(), args.path.display());
            Ok(ExitCode::from(2))
        }
    }
}

/// The human summary printed for a valid configuration.
pub fn summary(c: &Config) -> String {
    use std::fmt::Write;
    let mut by_protocol: BTreeMap<&str, usize> = BTreeMap::new();
    let mut profiles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut points = 0;
    for d in &c.devices {
        let kind = match &d.transport {
            Transport::ModbusTcp { .. } => "modbus tcp",
            Transport::ModbusRtu { .. } => "modbus rtu",
            Transport::Snmp(_) => "snmp",
        };
        *by_protocol.entry(kind).or_default() += 1;
        *profiles.entry(d.profile.name()).or_default() += 1;
        points += d.profile.point_count();
    }
    let racks: usize = c.zones.iter().map(|z| z.racks.len()).sum();
    let mut s = String::new();
    let _ = writeln!(s, "{}: valid", c.path.display());
    let _ = writeln!(s, "site      {}", c.site);
    let protocols: Vec<String> = by_protocol.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let disabled = c.devices.iter().filter(|d| !d.enabled).count();
    let _ = writeln!(
        s,
        "devices   {} ({}){}",
        c.devices.len(),
        if protocols.is_empty() { "none".to_owned() } else { protocols.join(", ") },
        if disabled > 0 { format!(", {disabled} disabled") } else { String::new() }
    );
    let _ = writeln!(s, "points    {points} (table columns count once; rows are found when polling)");
    let zones: Vec<&str> = c.zones.iter().map(|z| z.id.as_str()).collect();
    let _ = writeln!(s, "zones     {} ({})", c.zones.len(), zones.join(", "));
    let _ = writeln!(s, "racks     {racks}");
    let used: Vec<String> = profiles.iter().map(|(p, n)| format!("{p} x{n}")).collect();
    let _ = writeln!(s, "profiles  {}", if used.is_empty() { "none".to_owned() } else { used.join(", ") });
    let unverified: BTreeMap<&str, &str> =
        c.devices.iter().filter_map(|d| Some((d.profile.name(), d.profile.unverified()?))).collect();
    for (name, why) in unverified {
        let _ = writeln!(s, "          {name}: map NOT verified against its source: {why}");
    }
    match &c.mqtt {
        Some(m) => {
            let _ =
                writeln!(s, "mqtt      {} as {}, topics {}/{}/...", m.broker(), m.client_id, m.topic_prefix, c.site);
        }
        None => {
            let _ = writeln!(s, "mqtt      not configured (`run` needs [mqtt])");
        }
    }
    let _ = writeln!(s, "store     {} (outbox up to {} bytes)", c.store.path.display(), c.store.max_bytes);
    match &c.ha {
        Some(h) => {
            let _ = writeln!(
                s,
                "ha        node {} listening on {}, peer {}, witness {}; lease {}, drift {}, guard {}",
                h.node,
                h.listen,
                h.peer,
                h.witness,
                humane_duration(h.lease),
                format_ppm(h.drift_ppm),
                humane_duration(h.guard)
            );
        }
        None => {
            let _ = writeln!(s, "ha        not configured (a single gateway)");
        }
    }
    let e = &c.engine;
    let _ = writeln!(
        s,
        "patterns  {} incidents in {} (major after {}, unreachable after {})",
        e.recurrence,
        humane_duration(e.window),
        humane_duration(e.major_after),
        humane_duration(e.unreachable_major_after)
    );
    s
}

/// Parts per million as the percentage `[ha] drift` is written in.
fn format_ppm(ppm: u32) -> String {
    format!("{}%", f64::from(ppm) / 10_000.0)
}
