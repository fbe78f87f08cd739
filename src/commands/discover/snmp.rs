//! `hallmonitor discover snmp RANGE`: asks every address of a range for its system group,
//! recognises the profile (`profiles::recognize`), confirms it with one poll and prints a
//! draft config on stdout; progress and the table of findings go to stderr.
//!
//! Pacing: every request of the scan (system group, probes, each retry, and the SNMPv3
//! engine discovery) takes a slot of the one `Pacer`, so the whole scan keeps `--rate`;
//! each address is asked by one task, one request after the other, so at most one request
//! is in flight per address. A request unanswered within `--timeout` is sent once more;
//! then the address counts as silent. The confirming polls run after the scan, one device
//! at a time, each after one slot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::draft::{self, Draft, DraftDevice, DraftSnmp, DraftTransport};
use super::pace::Pacer;
use crate::config::{
    AuthProtocol, DeviceSpec, PrivProtocol, Secret, SnmpSettings, SnmpV3, SnmpVersion, Transport, V3Protocol,
    read_secret_file,
};
use crate::model::{DeviceId, Quality, ZoneId};
use crate::profiles::recognize::Recognizer;
use crate::profiles::{BUILTIN, Profile, ProfileConfig};
use crate::sources::snmp::discover::{self as ask, SystemGroup};
use crate::sources::snmp::{DevicePoller, SharedSockets, SnmpError, SnmpSession};

/// Addresses asked at the same time at most (the pacer bounds the rate anyway).
const MAX_CONCURRENT: usize = 256;

/// Addresses one scan covers at most (a /22): larger ranges are split by the engineer.
pub const MAX_ADDRESSES: u32 = 1024;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Addresses to scan: a CIDR (`10.0.4.0/24`) or a last-octet range (`10.0.4.10-40`).
    pub range: String,
    /// UDP port of the agents.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// File holding the SNMPv2c community (first line).
    #[arg(long, required_unless_present = "v3_user", conflicts_with = "v3_user")]
    pub community_file: Option<PathBuf>,
    /// SNMPv3 user (instead of a community).
    #[arg(long)]
    pub v3_user: Option<String>,
    /// SNMPv3 authentication: md5, sha1, sha224, sha256, sha384, sha512.
    #[arg(long, requires = "v3_user")]
    pub auth_protocol: Option<String>,
    /// File holding the SNMPv3 authentication password.
    #[arg(long, requires = "auth_protocol")]
    pub auth_key_file: Option<PathBuf>,
    /// SNMPv3 privacy: des, aes128, aes192, aes256.
    #[arg(long, requires = "auth_protocol")]
    pub priv_protocol: Option<String>,
    /// File holding the SNMPv3 privacy password.
    #[arg(long, requires = "priv_protocol")]
    pub priv_key_file: Option<PathBuf>,
    /// Requests per second at most over the whole scan, `N/s`.
    #[arg(long, default_value = "50/s", value_parser = super::pace::parse_rate)]
    pub rate: u32,
    /// Time to wait for an answer (one retry after it).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Zone the devices go in; without it they go in the zone "unassigned".
    #[arg(long)]
    pub zone: Option<String>,
    /// A directory of your own profiles (`*.toml`, one per file, as the config's
    /// `profiles_dir`): recognised before the built-ins; the draft names the directory.
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
}

/// Parses RANGE: `a.b.c.d/n` or `a.b.c.d-e` (last octet), at most `MAX_ADDRESSES`.
pub fn parse_range(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = |why: &str| format!("range {s:?}: {why}; expected a CIDR (10.0.4.0/24) or a.b.c.d-e (10.0.4.10-40)");
    let t = s.trim();
    let (first, count) = if let Some((addr, bits)) = t.split_once('/') {
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(|| bad("prefix length must be 0-32"))?;
        let size = if bits == 0 { u64::from(u32::MAX) + 1 } else { 1u64 << (32 - bits) };
        if size > u64::from(MAX_ADDRESSES) {
            return Err(format!("range {s:?} has {size} addresses; scan at most {MAX_ADDRESSES} (a /22) at a time"));
        }
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        let base = u32::from(addr) & mask;
        // Network and broadcast addresses hold no agent (except in /31 and /32).
        if size > 2 { (base + 1, size as u32 - 2) } else { (base, size as u32) }
    } else if let Some((addr, last)) = t.split_once('-') {
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let last: u8 = last.trim().parse().map_err(|_| bad("the end must be a last octet 0-255"))?;
        let o = addr.octets();
        if last < o[3] {
            return Err(bad("the end is below the start"));
        }
        (u32::from(addr), u32::from(last - o[3]) + 1)
    } else {
        let addr: Ipv4Addr = t.parse().map_err(|_| bad("not an IPv4 address"))?;
        (u32::from(addr), 1)
    };
    Ok((0..count).map(|i| Ipv4Addr::from(first + i)).collect())
}

fn usage(msg: String) -> anyhow::Error {
    crate::error::UsageError(msg).into()
}

/// A secret file named on the command line: read now (a clear error if it cannot be), and
/// named in the draft by its absolute path.
fn secret_file(path: &Path, what: &str) -> anyhow::Result<(Secret, PathBuf)> {
    let read = read_secret_file(path).map_err(|e| usage(format!("{what} {}: {e}", path.display())))?;
    if let Some(w) = read.warning {
        eprintln!("warning: {w}");
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    Ok((read.secret, absolute))
}

/// How every agent is asked, and how the draft says so (address left empty).
fn access(args: &Args) -> anyhow::Result<(SnmpSettings, DraftSnmp)> {
    let mut settings = SnmpSettings {
        address: String::new(),
        version: SnmpVersion::V2c,
        community: Secret::new(""),
        v3: None,
        max_oids_per_request: 32,
        max_repetitions: 25,
    };
    let mut draft = DraftSnmp {
        address: String::new(),
        version: "2c",
        community_file: None,
        user: None,
        auth: None,
        privacy: None,
    };
    match (&args.community_file, &args.v3_user) {
        (Some(f), None) => {
            let (secret, path) = secret_file(f, "--community-file")?;
            settings.community = secret;
            draft.community_file = Some(path);
        }
        (None, Some(user)) => {
            let auth = match (&args.auth_protocol, &args.auth_key_file) {
                (Some(name), Some(f)) => {
                    let proto = AuthProtocol::from_name(name)
                        .ok_or_else(|| usage(format!("--auth-protocol {name:?}: expected {}", AuthProtocol::NAMES)))?;
                    let (secret, path) = secret_file(f, "--auth-key-file")?;
                    draft.auth = Some((name.to_ascii_lowercase(), path));
                    Some((proto, secret))
                }
                (Some(_), None) => return Err(usage("--auth-protocol needs --auth-key-file".into())),
                (None, _) => None,
            };
            let privacy = match (&args.priv_protocol, &args.priv_key_file) {
                (Some(name), Some(f)) => {
                    let proto = PrivProtocol::from_name(name)
                        .ok_or_else(|| usage(format!("--priv-protocol {name:?}: expected {}", PrivProtocol::NAMES)))?;
                    let (secret, path) = secret_file(f, "--priv-key-file")?;
                    draft.privacy = Some((name.to_ascii_lowercase(), path));
                    Some((proto, secret))
                }
                (Some(_), None) => return Err(usage("--priv-protocol needs --priv-key-file".into())),
                (None, _) => None,
            };
            settings.version = SnmpVersion::V3;
            settings.v3 = Some(SnmpV3 { user: user.clone(), auth, privacy });
            draft.version = "3";
            draft.user = Some(user.clone());
        }
        // clap makes the two exclusive and one of them required.
        _ => return Err(usage("give --community-file or --v3-user".into())),
    }
    Ok((settings, draft))
}

/// The profiles as recognition sees them: the user's first (a user profile replaces a
/// built-in of the same name, as in the config), then the built-ins with ENTITY-SENSOR-MIB
/// (which switches and many other devices have too) last of the generic ones.
fn recognizer(user: &[(String, ProfileConfig)]) -> Recognizer {
    let mut builtin: Vec<(&str, ProfileConfig)> = BUILTIN
        .iter()
        .filter(|(n, _)| !user.iter().any(|(u, _)| u == n))
        .filter_map(|(n, t)| Some((*n, toml::from_str::<ProfileConfig>(t).ok()?)))
        .collect();
    builtin.sort_by_key(|(n, _)| *n == "entity-sensor");
    let users = user.iter().map(|(n, c)| (n.as_str(), c));
    Recognizer::from_configs(users.chain(builtin.iter().map(|(n, c)| (*n, c))))
}

/// The user's profiles from `--profiles-dir`, checked as the config checks them.
fn user_profiles(dir: &Path) -> anyhow::Result<Vec<(String, ProfileConfig, Profile)>> {
    let files =
        crate::profiles::profile_files(dir).map_err(|e| usage(format!("--profiles-dir {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for f in files {
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&f).map_err(|e| usage(format!("profile {}: {e}", f.display())))?;
        let cfg: ProfileConfig =
            toml::from_str(&text).map_err(|e| usage(format!("profile {}: {}", f.display(), e.message())))?;
        let built = cfg.build(&name).map_err(|problems| {
            let msgs: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            usage(format!("profile {}: {}", f.display(), msgs.join("; ")))
        })?;
        out.push((name, cfg, built));
    }
    Ok(out)
}

/// What one address turned out to be.
#[derive(Debug)]
enum Outcome {
    /// No answer within the timeout, twice (or the network refused).
    Silent,
    /// The agent answered with an error (wrong community on some agents, v3 rejected...).
    Refused(String),
    Answered {
        sys: SystemGroup,
        profile: Option<String>,
    },
}

/// Sends one request (after its pace slot), once more if it went unanswered.
macro_rules! paced {
    ($pacer:expr, $slots:expr, $request:expr) => {{
        let mut tries = 0;
        loop {
            for _ in 0..$slots {
                $pacer.slot().await;
            }
            match $request.await {
                Ok(v) => break Ok(v),
                Err(e) if e.is_unreachable() && tries == 0 => tries += 1,
                Err(e) => break Err(e),
            }
        }
    }};
}

/// Asks one address: system group, then the probes that decide its profile.
async fn ask_one(
    settings: SnmpSettings,
    timeout: Duration,
    pacer: &Pacer,
    sockets: &SharedSockets,
    recognizer: &Recognizer,
) -> Outcome {
    let failed = |e: SnmpError| if e.is_unreachable() { Outcome::Silent } else { Outcome::Refused(e.to_string()) };
    let mut session = match SnmpSession::connect_shared(&settings, timeout, 0, sockets).await {
        Ok(s) => s.without_engine_recovery(),
        Err(e) => return failed(e),
    };
    // SNMPv3: the first request is preceded by the engine discovery, a request of its own.
    let first_slots = if settings.version == SnmpVersion::V3 { 2 } else { 1 };
    let sys = match paced!(pacer, first_slots, ask::system_group(&mut session)) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let probes = recognizer.probes(sys.object_id.as_deref());
    let answered = if probes.is_empty() {
        Vec::new()
    } else {
        // If the probes fail, it still answered a moment ago: say what it is, without a profile.
        paced!(pacer, 1, ask::probes_answered(&mut session, &probes)).unwrap_or_default()
    };
    let profile = recognizer.pick(sys.object_id.as_deref(), |p| answered.iter().any(|a| a == p)).map(str::to_owned);
    Outcome::Answered { sys, profile }
}

/// The model as a table shows it: APC's `MN:` field when there is one, else sysDescr up to
/// its first parenthesis, at most 40 characters.
fn model_of(descr: &str) -> String {
    if let Some(mn) = descr.split_whitespace().find_map(|w| w.strip_prefix("MN:")) {
        return mn.trim_end_matches(')').to_owned();
    }
    let short = descr.split(" (").next().unwrap_or(descr);
    let short = draft::comment_text(short);
    if short.chars().count() > 40 { format!("{}...", short.chars().take(37).collect::<String>()) } else { short }
}

/// One poll with the profile: the good readings it got, or why the poll failed.
async fn confirm(
    address: &str,
    settings: &SnmpSettings,
    profile: &Profile,
    timeout: Duration,
) -> Result<usize, String> {
    let Profile::Snmp(snmp) = profile else {
        return Err(format!("profile {} is not an SNMP profile", profile.name()));
    };
    let spec = DeviceSpec {
        id: DeviceId::new("discovered"),
        zone: ZoneId::new(draft::UNASSIGNED_ZONE),
        rack: None,
        interval: Duration::from_secs(10),
        timeout,
        retries: 1,
        down_after: 1,
        profile: profile.clone(),
        transport: Transport::Snmp(settings.clone()),
        enabled: true,
    };
    let mut poller = DevicePoller::new(spec, settings.clone(), snmp.clone()).map_err(|e| format!("{address}: {e}"))?;
    let outcome = poller.poll().await;
    outcome.result.map_err(|e| e.to_string())?;
    Ok(outcome.readings.iter().filter(|r| r.quality == Quality::Good).count())
}

pub fn run(args: Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let addresses = parse_range(&args.range).map_err(usage)?;
    if let Some(z) = &args.zone {
        draft::check_zone(z).map_err(usage)?;
    }
    if args.timeout < Duration::from_millis(10) || args.timeout > Duration::from_secs(60) {
        return Err(usage(format!("--timeout {:?}: expected 10ms to 60s", args.timeout)));
    }
    let (template, draft_access) = access(&args)?;
    let user = match &args.profiles_dir {
        Some(dir) => user_profiles(dir)?,
        None => Vec::new(),
    };
    let user_configs: Vec<(String, ProfileConfig)> = user.iter().map(|(n, c, _)| (n.clone(), c.clone())).collect();
    let recognizer = Arc::new(recognizer(&user_configs));
    let mut profiles = crate::profiles::builtins();
    for (name, _, built) in user {
        profiles.insert(name, Ok(built));
    }
    let profiles_dir = args.profiles_dir.as_ref().map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
    let total = addresses.len();
    eprintln!(
        "discover: asking {total} address(es) on port {} at up to {}/s, timeout {} (one retry)",
        args.port,
        args.rate,
        crate::model::humane_duration(args.timeout)
    );
    rt.block_on(async move {
        let pacer = Arc::new(Pacer::new(args.rate));
        let sockets = Arc::new(SharedSockets::new());
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let done = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, ip) in addresses.iter().enumerate() {
            let settings = SnmpSettings { address: format!("{ip}:{}", args.port), ..template.clone() };
            let (pacer, sockets, limit, recognizer) =
                (pacer.clone(), sockets.clone(), limit.clone(), recognizer.clone());
            let (done, answered, timeout) = (done.clone(), answered.clone(), args.timeout);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let outcome = ask_one(settings, timeout, &pacer, &sockets, &recognizer).await;
                if matches!(outcome, Outcome::Answered { .. }) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                (i, outcome)
            });
        }
        // Progress, at most once a second.
        let progress = {
            let (done, answered) = (done.clone(), answered.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    eprintln!("discover: {n}/{total} asked, {} answered", answered.load(Ordering::Relaxed));
                    if n >= total {
                        return;
                    }
                }
            })
        };
        let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, o)) => {
                    outcomes.insert(i, o);
                }
                Err(e) => eprintln!("discover: a scan task failed: {e}"),
            }
        }
        progress.abort();
        eprintln!("discover: {total}/{total} asked, {} answered", answered.load(Ordering::Relaxed));

        let mut draft = Draft {
            header: vec![format!("Draft by `hallmonitor discover snmp {}`", args.range)],
            zone: args.zone.clone(),
            profiles_dir,
            ..Draft::default()
        };
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut silent = 0usize;
        for (i, outcome) in &outcomes {
            let address = format!("{}:{}", addresses[*i], args.port);
            match outcome {
                Outcome::Silent => silent += 1,
                Outcome::Refused(why) => {
                    rows.push([address.clone(), "-".into(), "-".into(), format!("error: {why}")]);
                    draft.notes.push(format!("{address} answered with an error: {why}"));
                }
                Outcome::Answered { sys, profile } => {
                    let name = sys.name.clone().unwrap_or_default();
                    let descr = sys.descr.clone().unwrap_or_default();
                    let object_id = sys.object_id.clone().unwrap_or_else(|| "none".into());
                    let Some(profile) = profile else {
                        let what = format!("no profile: sysObjectID {object_id}, sysDescr {}", model_of(&descr));
                        rows.push([address.clone(), or_dash(&name), model_of(&descr), what.clone()]);
                        draft.notes.push(format!("{address} ({}) {what}", or_dash(&name)));
                        continue;
                    };
                    let settings = SnmpSettings { address: address.clone(), ..template.clone() };
                    pacer.slot().await;
                    let confirmed = match profiles.get(profile) {
                        Some(Ok(p)) => confirm(&address, &settings, p, args.timeout).await,
                        Some(Err(e)) => Err(e.clone()),
                        None => Err(format!("no profile {profile}")),
                    };
                    let shown = match &confirmed {
                        Ok(n) => format!("{profile} ({n} points)"),
                        Err(e) => format!("{profile} (poll failed: {e})"),
                    };
                    rows.push([address.clone(), or_dash(&name), model_of(&descr), shown]);
                    let mut comments =
                        vec![format!("{address}: {}", if descr.is_empty() { "no sysDescr" } else { &descr })];
                    if let Some(loc) = &sys.location {
                        comments.push(format!("sysLocation: {loc}"));
                    }
                    match confirmed {
                        Ok(n) => comments.push(format!("sysObjectID {object_id}; one poll got {n} points")),
                        Err(e) => comments.push(format!("sysObjectID {object_id}; the confirming poll failed: {e}")),
                    }
                    draft.devices.push(DraftDevice {
                        name,
                        profile: profile.clone(),
                        comments,
                        transport: DraftTransport::Snmp(DraftSnmp { address: address.clone(), ..draft_access.clone() }),
                    });
                }
            }
        }
        if silent > 0 {
            draft.notes.push(format!("{silent} address(es) did not answer (no agent, or other credentials)"));
        }
        eprint!("{}", table(&rows));
        eprintln!(
            "discover: {} device(s) with a profile, {} without, {silent} silent address(es) of {total}{}",
            draft.devices.len(),
            rows.len() - draft.devices.len(),
            if silent > 0 { " (silent: no agent there, or it does not accept these credentials)" } else { "" }
        );
        print!("{}", draft.render());
        Ok(ExitCode::SUCCESS)
    })
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { draft::comment_text(s) }
}

/// The findings as aligned columns.
fn table(rows: &[[String; 4]]) -> String {
    let header = ["ADDRESS", "SYSNAME", "MODEL", "PROFILE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_short() {
        assert_eq!(model_of("APC Web/SNMP Management Card (MB:v4.1.0 PF:v6.8.2 MN:AP8641 HR:02)"), "AP8641");
        assert_eq!(model_of("PX3-5190R 3.6.10.5-47871"), "PX3-5190R 3.6.10.5-47871");
        assert_eq!(model_of("Linux gw 6.1.0 (Debian) x86_64"), "Linux gw 6.1.0");
        assert!(model_of(&"x".repeat(100)).chars().count() <= 40);
    }

    #[test]
    fn the_builtin_recognizer_tries_entity_sensor_last() {
        let r = recognizer(&[]);
        let probes = r.probes(Some("1.3.6.1.4.1.8072.3.2.10"));
        assert_eq!(probes.last().map(String::as_str), Some("1.3.6.1.2.1.99.1.1.1.1"), "{probes:?}");
        // A UPS with both UPS-MIB and ENTITY-SENSOR-MIB is a UPS.
        let ups_and_sensors = |p: &str| p == "1.3.6.1.2.1.33.1.2.1" || p == "1.3.6.1.2.1.99.1.1.1.1";
        assert_eq!(r.pick(Some("1.3.6.1.4.1.935"), ups_and_sensors), Some("ups-mib"));
        assert_eq!(r.pick(Some("1.3.6.1.4.1.318.1.3.4.6"), |_| true), Some("apc-rpdu2"));
        assert_eq!(r.pick(Some("1.3.6.1.4.1.21239.42.1.53"), |_| true), Some("vertiv-geist"));
        assert_eq!(r.pick(Some("1.3.6.1.4.1.21239.5.1"), |p| p == "1.3.6.1.4.1.21239.5.1.1.7"), Some("geist-watchdog"));
    }

    #[test]
    fn ranges_are_cidrs_or_last_octet_spans() {
        let r = parse_range("10.0.4.0/30").unwrap();
        assert_eq!(r, [Ipv4Addr::new(10, 0, 4, 1), Ipv4Addr::new(10, 0, 4, 2)]);
        assert_eq!(parse_range("10.0.4.9/32").unwrap(), [Ipv4Addr::new(10, 0, 4, 9)]);
        assert_eq!(parse_range("10.0.4.7/24").unwrap().len(), 254);
        let r = parse_range("127.0.0.20-22").unwrap();
        assert_eq!(r, [Ipv4Addr::new(127, 0, 0, 20), Ipv4Addr::new(127, 0, 0, 21), Ipv4Addr::new(127, 0, 0, 22)]);
        assert_eq!(parse_range("127.0.0.5").unwrap(), [Ipv4Addr::new(127, 0, 0, 5)]);
        assert_eq!(parse_range("10.0.0.0/22").unwrap().len(), 1022);
        for (bad, want) in [
            ("10.0.0.0/16", "has 65536 addresses; scan at most 1024"),
            ("10.0.0.0/0", "has 4294967296 addresses"),
            ("10.0.0.0/33", "prefix length must be 0-32"),
            ("10.0.0.300/24", "not an IPv4 address"),
            ("10.0.0.9-3", "the end is below the start"),
            ("10.0.0.9-300", "the end must be a last octet"),
            ("hall-2", "not an IPv4 address"),
        ] {
            let e = parse_range(bad).unwrap_err();
            assert!(e.starts_with(&format!("range {bad:?}")) && e.contains(want), "{bad}: {e}");
        }
    }
}
