//! `hallmonitor discover modbus`: scan the unit ids of a Modbus TCP gateway or an RTU bus
//! and print a draft config for the units found.
//!
//! All requests go through one link (`sources::modbus::scan`), so one request is in flight
//! per bus, started at most `--rate` per second. Per unit: Read Device Identification, and
//! one check read per candidate profile (the ones the identification names, else every
//! built-in and `--profiles-dir` Modbus profile). Stderr: the scan line, a line per unit
//! that answered and a progress line every `PROGRESS_EVERY` units, then a table. Stdout:
//! the draft config, with a `[[devices]]` block for each unit whose profile is certain and
//! a comment for each other unit that answered. Nothing is written anywhere else.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::draft::{self, Draft, DraftDevice, DraftTransport};
use crate::config::{Parity, SerialSettings};
use crate::error::UsageError;
use crate::profiles::modbus::ModbusRecognition;
use crate::profiles::{Profile, ProfileConfig};
use crate::sources::SourceStats;
use crate::sources::modbus::scan::{ScanProfile, UnitFinding, UnitIdentity, scan_unit};
use crate::sources::modbus::{Endpoint, Link};

/// A progress line after this many units.
const PROGRESS_EVERY: usize = 16;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Modbus TCP gateway or device, host:port (port 502 if omitted).
    #[arg(required_unless_present = "serial", conflicts_with = "serial")]
    pub address: Option<String>,
    /// Serial port of an RS-485 bus (Modbus RTU), e.g. /dev/ttyS1.
    #[arg(long)]
    pub serial: Option<PathBuf>,
    /// RTU: baud rate.
    #[arg(long, default_value_t = 19200)]
    pub baud: u32,
    /// RTU: parity `none`, `even` (the Modbus standard) or `odd`.
    #[arg(long, default_value = "even")]
    pub parity: String,
    /// RTU: data bits, 7 or 8.
    #[arg(long, default_value_t = 8)]
    pub data_bits: u8,
    /// RTU: stop bits, 1 or 2.
    #[arg(long, default_value_t = 1)]
    pub stop_bits: u8,
    /// Unit ids to try: ids and ranges such as `1-247` or `1,5,10-20`, within 1-255.
    #[arg(long, default_value = "1-247")]
    pub units: String,
    /// Requests per second at most, `N/s`.
    #[arg(long, default_value = "50/s", value_parser = super::pace::parse_rate)]
    pub rate: u32,
    /// Longest wait for each answer. An empty unit id costs two of them.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Zone of the drafted devices. Without it they are put in the zone "unassigned",
    /// which `check-config` points out.
    #[arg(long)]
    pub zone: Option<String>,
    /// Directory of profile files (one `NAME.toml` per profile, as `profiles_dir` in the
    /// config) to match besides the built-in Modbus profiles. The draft refers to it.
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
}

/// The unit ids `--units` names, in order, each once.
pub fn parse_units(text: &str) -> Result<Vec<u8>, String> {
    let mut units = BTreeSet::new();
    for part in text.split(',').map(str::trim) {
        // Unit 0 is the broadcast address: every device acts on it and none answers.
        let number = |s: &str| match s.trim().parse::<u8>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("--units {text:?}: {s:?} is not a unit id (1-255)")),
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("--units {text:?}: range {part:?} runs backwards"));
        }
        units.extend(first..=last);
    }
    Ok(units.into_iter().collect())
}

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    if let Some(path) = &args.serial {
        let path = path.to_string_lossy().into_owned();
        let parity = match args.parity.as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => return Err(format!("--parity {other:?}: expected none, even or odd")),
        };
        if !matches!(args.data_bits, 7 | 8) || !matches!(args.stop_bits, 1 | 2) {
            return Err("--data-bits must be 7 or 8 and --stop-bits 1 or 2".into());
        }
        return Ok(Endpoint::Rtu(SerialSettings {
            path,
            baud: args.baud,
            parity,
            data_bits: args.data_bits,
            stop_bits: args.stop_bits,
            // The scan's rate already spaces requests.
            spacing: Duration::ZERO,
        }));
    }
    let Some(address) = &args.address else { return Err("give a gateway address or --serial PATH".into()) };
    Ok(Endpoint::Tcp(if address.contains(':') { address.clone() } else { format!("{address}:502") }))
}

/// The Modbus profiles to match: built-ins, then `dir` (overriding by name).
fn scan_profiles(dir: Option<&PathBuf>) -> anyhow::Result<Vec<ScanProfile>> {
    let mut configs: Vec<(String, ProfileConfig, String)> = Vec::new();
    for (name, text) in crate::profiles::BUILTIN {
        let cfg: ProfileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("built-in profile {name}: {e}"))?;
        configs.push(((*name).to_owned(), cfg, format!("built-in profile {name}")));
    }
    if let Some(dir) = dir {
        let files = crate::profiles::profile_files(dir)
            .map_err(|e| UsageError(format!("--profiles-dir {}: {e}", dir.display())))?;
        for f in files {
            let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(&f).map_err(|e| UsageError(format!("{}: {e}", f.display())))?;
            let cfg: ProfileConfig = toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", f.display())))?;
            configs.retain(|(n, _, _)| *n != name);
            configs.push((name, cfg, f.display().to_string()));
        }
    }
    let mut out = Vec::new();
    for (name, cfg, origin) in configs {
        if cfg.protocol.get_ref() != "modbus" {
            continue;
        }
        match cfg.build(&name) {
            Ok(Profile::Modbus(profile)) => {
                out.push(ScanProfile { name, profile, recognition: ModbusRecognition::of(&cfg) })
            }
            Ok(Profile::Snmp(_)) => {}
            Err(problems) => {
                let msgs: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                return Err(UsageError(format!("{origin}: {}", msgs.join("; "))).into());
            }
        }
    }
    Ok(out)
}

/// One line for a unit that answered: `unit 3: Acme X1 (rev 2) -> acme-x`.
fn describe(f: &UnitFinding) -> String {
    let who = identity_text(&f.identity);
    let what = match f.chosen() {
        Some(p) => format!("profile {p}"),
        None if f.matches.is_empty() => "no profile's registers answered".to_owned(),
        None => format!("candidates: {}", f.matches.iter().map(|m| m.profile.as_str()).collect::<Vec<_>>().join(", ")),
    };
    let mut line = format!("unit {}: {who}; {what}", f.unit);
    if f.chosen().is_none() {
        for (profile, error) in &f.misses {
            let _ = write!(line, "\n  {profile}: {error}");
        }
    }
    line
}

fn identity_text(identity: &UnitIdentity) -> String {
    match identity {
        UnitIdentity::Identified(id) => id.summary(),
        UnitIdentity::Unsupported { .. } | UnitIdentity::Failed(_) => "no identification".to_owned(),
    }
}

/// The final table (stderr).
pub fn table(findings: &[UnitFinding], scanned: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:<5} {:<40} {:<40} points read", "unit", "vendor/product", "profile");
    for f in findings {
        let (profile, points) = match f.chosen() {
            Some(p) => {
                let m = f.matches.iter().find(|m| m.profile == p);
                (p.to_owned(), m.map_or("-".to_owned(), |m| format!("{}/{}", m.points_read, m.points_tried)))
            }
            None if f.matches.is_empty() => ("no match".to_owned(), "-".to_owned()),
            None => (
                format!("candidates: {}", f.matches.iter().map(|m| m.profile.as_str()).collect::<Vec<_>>().join(", ")),
                f.matches
                    .iter()
                    .map(|m| format!("{}/{}", m.points_read, m.points_tried))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let _ = writeln!(o, "{:<5} {:<40} {:<40} {points}", f.unit, identity_text(&f.identity), profile);
    }
    let _ = writeln!(o, "{} of {scanned} unit ids answered", findings.len());
    o
}

/// Scans the units on `endpoint`, printing progress to stderr. Returns the units that
/// answered.
async fn scan(
    endpoint: Endpoint,
    units: &[u8],
    interval: Duration,
    timeout: Duration,
    profiles: &[ScanProfile],
) -> anyhow::Result<Vec<UnitFinding>> {
    let cancel = CancellationToken::new();
    let (link, task) = Link::spawn_paced(endpoint, Arc::new(SourceStats::default()), cancel.clone(), interval);
    let mut findings = Vec::new();
    let mut outcome = Ok(());
    for (i, &unit) in units.iter().enumerate() {
        match scan_unit(&link, unit, timeout, profiles).await {
            Ok(Some(f)) => {
                eprintln!("{}", describe(&f));
                findings.push(f);
            }
            Ok(None) => {}
            Err(e) => {
                outcome = Err(anyhow::anyhow!("scan stopped at unit {unit}: {e}"));
                break;
            }
        }
        if (i + 1) % PROGRESS_EVERY == 0 && i + 1 < units.len() {
            eprintln!("scanned {}/{} unit ids, {} answered", i + 1, units.len(), findings.len());
        }
    }
    cancel.cancel();
    drop(link);
    let _ = task.await;
    outcome.map(|()| findings)
}

/// What a drafted device's id is made from: the product code (or model or vendor) and the
/// unit id, so ids stay apart on one bus: `pm5560-u3`, or `modbus-u3` without identification.
pub fn device_name(f: &UnitFinding) -> String {
    let base = match &f.identity {
        UnitIdentity::Identified(id) => [id.product_code(), id.model_name(), id.vendor()]
            .into_iter()
            .flatten()
            .map(|n| draft::device_id(n, ""))
            .find(|n| !n.is_empty()),
        _ => None,
    };
    format!("{}-u{}", base.unwrap_or_else(|| "modbus".to_owned()), f.unit)
}

fn draft_transport(endpoint: &Endpoint, unit: u8) -> DraftTransport {
    match endpoint {
        Endpoint::Tcp(address) => DraftTransport::ModbusTcp { address: address.clone(), unit },
        Endpoint::Rtu(s) => DraftTransport::ModbusRtu {
            serial: s.path.clone(),
            unit,
            baud: s.baud,
            parity: match s.parity {
                Parity::None => "none",
                Parity::Even => "even",
                Parity::Odd => "odd",
            },
            data_bits: s.data_bits,
            stop_bits: s.stop_bits,
        },
    }
}

/// The draft: a device for each unit one profile fits, a note for every other unit that
/// answered.
pub fn draft(
    findings: &[UnitFinding],
    endpoint: &Endpoint,
    zone: Option<String>,
    profiles_dir: Option<PathBuf>,
) -> Draft {
    let mut d = Draft {
        header: vec![format!("hallmonitor discover modbus {}", endpoint.describe())],
        zone,
        profiles_dir,
        ..Draft::default()
    };
    for f in findings {
        let who = identity_text(&f.identity);
        match f.chosen() {
            Some(profile) => {
                let points = f
                    .matches
                    .iter()
                    .find(|m| m.profile == profile)
                    .map_or(String::new(), |m| format!(", {}/{} points read", m.points_read, m.points_tried));
                d.devices.push(DraftDevice {
                    name: device_name(f),
                    profile: profile.to_owned(),
                    comments: vec![format!("unit {}: {who}{points}", f.unit)],
                    transport: draft_transport(endpoint, f.unit),
                });
            }
            None => {
                let why = if f.matches.is_empty() {
                    "no profile's registers answered; write a profile (`hallmonitor probe modbus`)".to_owned()
                } else {
                    let names: Vec<&str> = f.matches.iter().map(|m| m.profile.as_str()).collect();
                    format!("registers of several profiles answered ({}); pick one", names.join(", "))
                };
                d.notes.push(format!("unit {}: {who}: {why}", f.unit));
            }
        }
    }
    d
}

/// Runs the scan and prints the table (stderr) and the draft (stdout).
pub fn run(args: Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let units = parse_units(&args.units).map_err(UsageError)?;
    let endpoint = endpoint(&args).map_err(UsageError)?;
    if let Some(z) = &args.zone {
        draft::check_zone(z).map_err(UsageError)?;
    }
    if args.timeout.is_zero() {
        return Err(UsageError("--timeout must be more than 0".into()).into());
    }
    let profiles = scan_profiles(args.profiles_dir.as_ref())?;
    // The draft may be saved anywhere: refer to the directory by its full path.
    let profiles_dir = args.profiles_dir.as_ref().map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    eprintln!(
        "discover modbus: {} unit ids on {}, at most {}/s, timeout {}; profiles: {}",
        units.len(),
        endpoint.describe(),
        args.rate,
        crate::model::humane_duration(args.timeout),
        names.join(", ")
    );
    // The pacer's invariant (send slots at least 1/rate apart), kept by the link itself,
    // which every request of the bus passes.
    let spacing = Duration::from_secs(1) / args.rate.max(1);
    let findings = rt.block_on(scan(endpoint.clone(), &units, spacing, args.timeout, &profiles))?;
    eprint!("{}", table(&findings, units.len()));
    print!("{}", draft(&findings, &endpoint, args.zone.clone(), profiles_dir).render());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::identify::DeviceIdentity;
    use crate::sources::modbus::scan::ProfileMatch;

    #[test]
    fn units_are_lists_and_ranges() {
        assert_eq!(parse_units("1-3,7, 2").unwrap(), vec![1, 2, 3, 7]);
        assert_eq!(parse_units("1-247").unwrap().len(), 247);
        assert!(parse_units("5-1").unwrap_err().contains("runs backwards"));
        assert!(parse_units("1-300").unwrap_err().contains("\"300\" is not a unit id"));
        assert!(parse_units("0-3").unwrap_err().contains("\"0\" is not a unit id"), "broadcast");
        assert!(parse_units("").is_err());
    }

    fn identified(vendor: &str, product: &str) -> UnitIdentity {
        let mut id = DeviceIdentity { conformity: 0x81, ..Default::default() };
        id.objects.insert(0, vendor.into());
        id.objects.insert(1, product.into());
        UnitIdentity::Identified(id)
    }

    fn finding(unit: u8, identity: UnitIdentity, matched: &[&str]) -> UnitFinding {
        UnitFinding {
            unit,
            identity,
            recognised: vec![],
            matches: matched
                .iter()
                .map(|p| ProfileMatch { profile: (*p).to_owned(), points_read: 2, points_tried: 3 })
                .collect(),
            misses: vec![],
        }
    }

    #[test]
    fn device_names_carry_the_product_and_the_unit() {
        let f = finding(3, identified("Schneider Electric", "METSEPM5560 / Rev.B"), &[]);
        assert_eq!(device_name(&f), "metsepm5560-rev-b-u3");
        assert_eq!(device_name(&finding(4, UnitIdentity::Unsupported { code: 1 }, &[])), "modbus-u4");
        assert_eq!(device_name(&finding(5, identified("", "--"), &[])), "modbus-u5");
    }

    #[test]
    fn the_draft_has_devices_for_certain_units_and_notes_for_the_others() {
        let findings = vec![
            finding(1, identified("Acme", "X1"), &["acme-x"]),
            finding(2, UnitIdentity::Unsupported { code: 1 }, &["a", "b"]),
            finding(3, UnitIdentity::Failed("timeout".into()), &[]),
        ];
        let tcp = draft(&findings, &Endpoint::Tcp("10.0.0.5:502".into()), Some("hall1".into()), None).render();
        assert!(
            tcp.contains(
                "# unit 1: Acme X1, 2/3 points read\n[[devices]]\nid = \"x1-u1\"\nprofile = \"acme-x\"\nzone = \"hall1\"\n[devices.modbus]\naddress = \"10.0.0.5:502\"\nunit = 1\n"
            ),
            "{tcp}"
        );
        assert!(
            tcp.contains("# unit 2: no identification: registers of several profiles answered (a, b); pick one"),
            "{tcp}"
        );
        assert!(tcp.contains("# unit 3: no identification: no profile's registers answered"), "{tcp}");
        assert_eq!(tcp.matches("[[devices]]").count(), 1, "{tcp}");
        let serial = SerialSettings {
            path: "/dev/ttyS1".into(),
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            spacing: Duration::ZERO,
        };
        let rtu = draft(&findings[..1], &Endpoint::Rtu(serial), None, None).render();
        assert!(
            rtu.contains(
                "serial = \"/dev/ttyS1\"\nbaud = 9600\nparity = \"none\"\ndata_bits = 8\nstop_bits = 1\nunit = 1\n"
            ),
            "{rtu}"
        );
        let t = table(&findings, 10);
        assert!(t.contains("candidates: a, b"), "{t}");
        assert!(t.ends_with("3 of 10 unit ids answered\n"), "{t}");
    }
}
