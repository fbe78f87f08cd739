//! `hallmonitor status [--config FILE | --state-dir DIR] [--json]`: the running daemon's last
//! status snapshot, readable at a glance on an 80-column terminal.
//!
//! It only reads `status.json` (see `crate::status`), never the sled store, so it works while
//! the daemon holds the store. The snapshot is found from the daemon's configuration the way
//! the daemon places it (`status::snapshot_dir`), or under systemd's `/run/hallmonitor`. The
//! rendering is a pure function of the snapshot and "now", so it is tested against fixtures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::model::{Timestamp, humane_duration};
use crate::status::{self, DeviceStatus, StatusError, StatusSnapshot};

/// The unit's `RuntimeDirectory`: where the daemon writes under systemd.
const SYSTEMD_DIR: &str = "/run/hallmonitor";

/// The configuration `run` reads by default.
const DEFAULT_CONFIG: &str = "/etc/hallmonitor/hallmonitor.toml";

/// A snapshot older than this means the daemon has probably stopped.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Up devices listed by name without `--all`; the rest are counted.
const UP_DEVICES_SHOWN: usize = 8;

const WIDTH: usize = 80;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The daemon's configuration file: the snapshot is found from its site and store.
    /// Default: /etc/hallmonitor/hallmonitor.toml when readable, else /run/hallmonitor.
    #[arg(long, short, value_name = "FILE", conflicts_with = "state_dir")]
    pub config: Option<PathBuf>,
    /// Directory holding status.json, given directly.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the snapshot as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// List every device, not only the down ones and a few up ones.
    #[arg(long)]
    pub all: bool,
    /// Render as of this RFC 3339 time instead of the clock (for tests).
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// Runs `hallmonitor status`: exit 0 with the summary, 1 when there is no readable snapshot,
/// 2 when `--config` does not load.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let snap = match (&args.state_dir, &args.config) {
        (Some(dir), _) => status::read(dir)?,
        (None, Some(file)) => read_for_config(&super::load_config(file)?)?,
        (None, None) => match crate::config::load(Path::new(DEFAULT_CONFIG)) {
            Ok(loaded) => read_for_config(&loaded.config)?,
            // Not installed, or not readable by this user: systemd's directory is all we know.
            Err(_) => status::read(Path::new(SYSTEMD_DIR))?,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = match &args.now {
        Some(s) => Timestamp::parse_rfc3339(s)
            .map_err(|e| super::UsageError(format!("--now {s:?} is not an RFC 3339 time: {e}")))?,
        None => Timestamp::now(),
    };
    print!("{}", render(&snap, now, args.all));
    Ok(ExitCode::SUCCESS)
}

/// The snapshot of the daemon running `config`: where it writes outside systemd, or
/// systemd's directory; the newer one of that site when both exist.
pub(crate) fn read_for_config(config: &crate::config::Config) -> Result<StatusSnapshot, StatusError> {
    let mut dirs = vec![status::snapshot_dir(&config.site, &config.store.path)];
    if !dirs.contains(&PathBuf::from(SYSTEMD_DIR)) {
        dirs.push(PathBuf::from(SYSTEMD_DIR));
    }
    let mut best: Option<StatusSnapshot> = None;
    let mut first_err = None;
    for dir in &dirs {
        match status::read(dir) {
            Ok(s) if s.site == config.site => {
                if best.as_ref().is_none_or(|b| s.written_at > b.written_at) {
                    best = Some(s);
                }
            }
            Ok(_) | Err(StatusError::Missing { .. }) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| {
        first_err.unwrap_or_else(|| {
            let tried: Vec<String> = dirs.iter().map(|d| d.join(status::FILE_NAME).display().to_string()).collect();
            StatusError::Missing { path: PathBuf::from(tried.join(" or ")) }
        })
    })
}

/// The whole human summary as of `now`; `all` lists every up device by name.
pub fn render(s: &StatusSnapshot, now: Timestamp, all: bool) -> String {
    let mut o = String::new();
    let age = now.since(s.written_at);
    let _ = writeln!(
        o,
        "hallmonitor {} at site {}: up {}, snapshot {} old",
        s.agent_version,
        s.site,
        humane_duration(s.written_at.since(s.started_at)),
        humane_duration(age)
    );
    if age > STALE_AFTER {
        let _ = writeln!(o, "WARNING: stale snapshot (written {}): is the daemon running?", s.written_at);
    }
    let _ = writeln!(o, "config {}", s.config_path.display());
    if let Some(ha) = &s.ha {
        let link = |up: bool| if up { "up" } else { "DOWN" };
        let line = format!(
            "PAIR     {} {}, term {}, for {}; peer link {}, witness link {}",
            ha.node,
            ha.role.to_uppercase(),
            ha.term,
            humane_duration(s.written_at.since(ha.since)),
            link(ha.peer_link_up),
            link(ha.witness_link_up)
        );
        let _ = writeln!(o, "{}", clip(&line, WIDTH));
        let _ = writeln!(o, "{}", clip(&format!("         why: {}", ha.reason), WIDTH));
        let r = &ha.replica;
        let replica = match r.state.as_str() {
            "lagging" | "waiting" => format!(
                "         replica: {} ({} entries, {} bytes, oldest {} ms), at {}",
                r.state, r.lag_entries, r.lag_bytes, r.lag_ms, r.position
            ),
            "degraded" => {
                format!("         replica: DEGRADED for {} ms at {}: no takeover possible", r.lag_ms, r.position)
            }
            "" => String::new(),
            _ => format!("         replica: {}, at {}", r.state, r.position),
        };
        if !replica.is_empty() {
            let _ = writeln!(o, "{}", clip(&replica, WIDTH));
        }
        if let (Some(at), Some(why), "standby") = (ha.last_takeover_at, &ha.last_takeover_reason, ha.role.as_str()) {
            let _ = writeln!(o, "{}", clip(&format!("         last active {at}: {why}"), WIDTH));
        }
    }

    // Devices: down first (longest failing first), then up.
    let mut down: Vec<&DeviceStatus> = s.devices.iter().filter(|d| !d.up).collect();
    down.sort_by(|a, b| b.consecutive_failures.cmp(&a.consecutive_failures).then(a.id.cmp(&b.id)));
    let mut up: Vec<&DeviceStatus> = s.devices.iter().filter(|d| d.up).collect();
    up.sort_by(|a, b| a.id.cmp(&b.id));
    let _ = writeln!(o, "\nDEVICES  {} up, {} down", up.len(), down.len());
    for d in &down {
        device_line(&mut o, d, "DOWN", s.written_at);
    }
    let shown = if all { up.len() } else { UP_DEVICES_SHOWN.min(up.len()) };
    for d in &up[..shown] {
        device_line(&mut o, d, "up", s.written_at);
    }
    if shown < up.len() {
        let _ = writeln!(o, "  ... and {} more up (--all lists them)", up.len() - shown);
    }

    let _ = writeln!(o, "\nOPEN INCIDENTS  {}", s.incidents.len());
    let mut incidents: Vec<_> = s.incidents.iter().collect();
    incidents.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.opened_at.cmp(&b.opened_at)));
    for i in incidents {
        let sev = match i.severity {
            crate::model::Severity::Critical => "CRIT",
            crate::model::Severity::Warning => "warn",
        };
        let racks = if i.racks.is_empty() { "-".to_owned() } else { join(&i.racks, ",") };
        let line = format!(
            "  {sev} {:<8} {:<10} {:<14} open {:<8} {} breach{}",
            i.category.as_str(),
            i.zone.as_str(),
            clip(&racks, 14),
            humane_duration(s.written_at.since(i.opened_at)),
            i.breaches,
            if i.breaches == 1 { "" } else { "es" }
        );
        let _ = writeln!(o, "{}", clip(line.trim_end(), WIDTH));
        let _ = writeln!(o, "{}", clip(&format!("       {}", i.incident_id), WIDTH));
        if let Some(c) = &i.last_chronicle {
            let _ = writeln!(o, "{}", clip(&format!("       {} {}: {}", hhmm(c.at), c.what, c.detail), WIDTH));
        }
    }

    let _ = writeln!(o, "\nACTIVE PATTERNS  {}", s.patterns.len());
    for p in &s.patterns {
        let line = format!(
            "  {:<8} {:<10} {} in {}{}",
            p.category.as_str(),
            p.zone.as_str(),
            p.occurrences,
            p.window,
            p.time_of_day.as_deref().map(|t| format!(", {t}")).unwrap_or_default()
        );
        let _ = writeln!(o, "{}", clip(&line, WIDTH));
        let _ = writeln!(o, "{}", clip(&format!("       {}", p.summary), WIDTH));
    }

    let ob = &s.outbox;
    let oldest = match ob.oldest_unacked_age_s {
        Some(a) => format!("oldest un-acked {}", humane_duration(Duration::from_secs(a))),
        None => "nothing un-acked".to_owned(),
    };
    let _ = writeln!(o, "\nOUTBOX   {} queued ({}), {oldest}, {} dropped", ob.depth, fmt_bytes(ob.bytes), ob.dropped);
    let b = &s.broker;
    let ack = match b.last_ack_at {
        Some(t) => format!("last ack {} ago", humane_duration(s.written_at.since(t))),
        None => "no ack yet".to_owned(),
    };
    let state = if b.connected { "connected" } else { "DISCONNECTED" };
    let _ = writeln!(o, "{}", clip(&format!("BROKER   {} {state}, {ack}", b.url), WIDTH));
    if let Some(e) = &b.last_error {
        let _ = writeln!(o, "{}", clip(&format!("         last error: {e}"), WIDTH));
    }
    let p = &s.polls;
    let _ = writeln!(
        o,
        "POLLS    modbus {} ok/{} failed/{} late, snmp {} ok/{} failed/{} late",
        p.modbus.polls_ok,
        p.modbus.polls_failed,
        p.modbus.polls_late,
        p.snmp.polls_ok,
        p.snmp.polls_failed,
        p.snmp.polls_late
    );
    let n = &s.noise;
    let _ = writeln!(
        o,
        "NOISE    {} crossings -> {} breaches -> {} incidents ({} msgs), {} pattern{}",
        n.raw_crossings,
        n.breaches,
        n.incidents_opened,
        n.incident_events,
        n.pattern_signals,
        if n.pattern_signals == 1 { "" } else { "s" }
    );
    // Huge counters or long paths must not wrap a technician's terminal.
    let mut clipped = String::with_capacity(o.len());
    for line in o.lines() {
        clipped.push_str(&clip(line, WIDTH));
        clipped.push('\n');
    }
    clipped
}

fn device_line(o: &mut String, d: &DeviceStatus, state: &str, at: Timestamp) {
    let place = match &d.rack {
        Some(r) => format!("{}/{}", d.zone, r),
        None => d.zone.to_string(),
    };
    let seen = match d.last_ok {
        Some(t) => format!("ok {} ago", humane_duration(at.since(t))),
        None => "never ok".to_owned(),
    };
    let health = if d.up { seen } else { format!("{} fails, {seen}", d.consecutive_failures) };
    let line =
        format!("  {state:<4} {:<16} {:<12} {:<6} {health}", clip(d.id.as_str(), 16), clip(&place, 12), d.protocol);
    let _ = writeln!(o, "{}", clip(&line, WIDTH));
    if !d.up {
        let err = d.last_error.as_deref().unwrap_or("no error recorded");
        let _ = writeln!(o, "{}", clip(&format!("       {}: {err}", d.address), WIDTH));
    }
}

fn fmt_bytes(b: u64) -> String {
    if b < 1024 {
        format!("{b} B")
    } else if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// `HH:MM` UTC of a timestamp.
fn hhmm(t: Timestamp) -> String {
    let ms = t.as_millis().rem_euclid(Timestamp::MS_PER_DAY);
    format!("{:02}:{:02}", ms / Timestamp::MS_PER_HOUR, ms / 60_000 % 60)
}

fn join<T: std::fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(sep)
}

/// Cuts a line to `max` characters, marking the cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(hhmm(Timestamp::parse_rfc3339("2026-11-02T14:05:00Z").unwrap()), "14:05");
    }
}
