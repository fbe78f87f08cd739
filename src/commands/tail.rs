//! `hallmonitor tail --broker URL [--site ID] [--zone Z] [--json]`: what the NOC receives,
//! one readable line per message.
//!
//! Subscribes (QoS 1) to the topics of docs/contracts.md#topics and prints each message as one line:
//! time, site, zone, what happened, category, severity, racks, values, hint. `render_line` is a
//! pure function of topic and payload bytes so it is tested on known payloads; the command
//! around it only drives a `publish::subscriber::Subscriber` (which owns the MQTT connection
//! and reconnects with the shared backoff) and the terminal (colours only on a TTY without `NO_COLOR`). A payload it cannot understand is
//! reported, never a reason to stop.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::UsageError;
use crate::config::Secret;
use crate::engine::{IncidentEvent, IncidentEventKind, PatternEvent, PatternState, RollupEvent};
use crate::model::{Severity, Timestamp, humane_duration};
use crate::publish::BrokerUrl;
use crate::publish::subscriber::{Received, Subscriber, subscriber_settings};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Broker URL: mqtt://host[:port] or mqtts://host[:port] (with --ca-file).
    #[arg(long)]
    pub broker: String,
    /// Only this site (default: every site on the broker).
    #[arg(long)]
    pub site: Option<String>,
    /// Only this zone's incidents, patterns and rollups (site status is still shown).
    #[arg(long)]
    pub zone: Option<String>,
    /// Topic prefix `P` of docs/contracts.md#topics.
    #[arg(long, default_value = "hallmonitor/v1")]
    pub topic_prefix: String,
    /// Print raw payloads, one per line, instead of readable lines.
    #[arg(long)]
    pub json: bool,
    /// CA certificate(s) (PEM) that signed the broker's certificate (mqtts:// only).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Broker user name.
    #[arg(long)]
    pub username: Option<String>,
    /// File whose first line is the broker password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// MQTT client id (default: hallmonitor-tail-<pid>).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Exit after this many messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// The topic filters to subscribe to.
pub fn topic_filters(prefix: &str, site: Option<&str>, zone: Option<&str>) -> Vec<String> {
    let base = format!("{}/{}", prefix.trim_end_matches('/'), site.unwrap_or("+"));
    match zone {
        None => vec![format!("{base}/#")],
        Some(z) => vec![
            format!("{base}/status"),
            format!("{base}/incidents/{z}"),
            format!("{base}/patterns/{z}"),
            format!("{base}/rollups/{z}"),
        ],
    }
}

/// Runs `hallmonitor tail` until Ctrl-C, `--count` messages, or a closed stdout.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = BrokerUrl::parse(&args.broker).map_err(|e| UsageError(format!("--broker {e}")))?;
    if args.ca_file.is_some() && !url.tls {
        return Err(UsageError("--ca-file needs an mqtts:// broker URL".into()).into());
    }
    if url.tls && args.ca_file.is_none() {
        return Err(UsageError("mqtts:// needs --ca-file (the CA that signed the broker's certificate)".into()).into());
    }
    for (what, v) in [("--site", &args.site), ("--zone", &args.zone)] {
        if let Some(v) = v
            && (v.is_empty() || v.contains(['+', '#', '/']))
        {
            return Err(UsageError(format!("{what} {v:?} must be a plain id (no '/', '+' or '#')")).into());
        }
    }
    let client_id = args.client_id.clone().unwrap_or_else(|| format!("hallmonitor-tail-{}", std::process::id()));
    let mut settings = subscriber_settings(&url, client_id);
    if let Some(user) = &args.username {
        let password = match &args.password_file {
            Some(p) => {
                let read = crate::config::read_secret_file(p)
                    .map_err(|e| UsageError(format!("--password-file {}: {e}", p.display())))?;
                if let Some(w) = read.warning {
                    eprintln!("warning: {w}");
                }
                read.secret.expose().to_owned()
            }
            None => String::new(),
        };
        settings.username = Some(user.clone());
        settings.password = Some(Secret::new(password));
    } else if args.password_file.is_some() {
        return Err(UsageError("--password-file needs --username".into()).into());
    }
    settings.ca_file = args.ca_file.clone();
    let filters = topic_filters(&args.topic_prefix, args.site.as_deref(), args.zone.as_deref());
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let rt = super::runtime()?;
    rt.block_on(async {
        // An unreadable or empty --ca-file is a usage error, like a bad URL.
        let subscriber = Subscriber::new(&settings, filters.clone()).map_err(|e| UsageError(e.to_string()))?;
        tail(subscriber, &args, &filters, color).await
    })
}

async fn tail(mut subscriber: Subscriber, args: &Args, filters: &[String], color: bool) -> anyhow::Result<ExitCode> {
    let mut printed: u64 = 0;
    let mut stdout = std::io::stdout().lock();
    loop {
        let received = tokio::select! {
            r = subscriber.next() => r,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        match received {
            Received::Subscribed => eprintln!("hallmonitor tail: subscribed to {}", filters.join(", ")),
            Received::Message { topic, payload } => {
                let line = if args.json {
                    String::from_utf8_lossy(&payload).replace('\n', " ")
                } else {
                    render_line_styled(&topic, &payload, color)
                };
                if writeln!(stdout, "{line}").and_then(|_| stdout.flush()).is_err() {
                    // The reader went away (a closed pipe): nothing left to do.
                    return Ok(ExitCode::SUCCESS);
                }
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    subscriber.disconnect();
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Received::Retrying { error, delay } => {
                eprintln!("hallmonitor tail: {error}; retrying in {:.1}s", delay.as_secs_f64());
            }
        }
    }
}

/// One readable line for a message, without colours.
pub fn render_line(topic: &str, payload: &[u8]) -> String {
    render_line_styled(topic, payload, false)
}

/// One readable line for a message; `color` adds ANSI colours for a terminal.
pub fn render_line_styled(topic: &str, payload: &[u8], color: bool) -> String {
    let st = Style { color };
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return st.paint(&format!("unparseable payload on {topic} ({} bytes)", payload.len()), DIM);
    };
    let Some(obj) = v.as_object() else {
        return st.paint(&format!("unparseable payload on {topic} ({} bytes)", payload.len()), DIM);
    };
    let place = TopicPlace::parse(topic);
    let site = obj.get("site").and_then(Value::as_str).map(str::to_owned).or(place.site.clone());
    let time = obj
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| Timestamp::parse_rfc3339(s).ok())
        .map(short_time)
        .unwrap_or_else(|| "-".repeat(19));
    let head = format!("{} {}", st.paint(&time, DIM), site.as_deref().unwrap_or("?"));
    let kind = obj.get("type").and_then(Value::as_str).or(place.kind);
    let body = match kind {
        Some("incident") => serde_json::from_value::<IncidentEvent>(v.clone()).ok().map(|e| incident(&e, st)),
        Some("pattern") => serde_json::from_value::<PatternEvent>(v.clone()).ok().map(|e| pattern(&e, st)),
        Some("rollup") | Some("rollups") => serde_json::from_value::<RollupEvent>(v.clone()).ok().map(|e| rollup(&e)),
        Some("health") => Some(health(obj)),
        Some("status") => Some(status(obj, st)),
        _ => None,
    };
    match body {
        Some(b) => format!("{head} {b}"),
        None => {
            let raw = Value::Object(obj.clone()).to_string();
            format!("{head} {} on {topic}: {}", kind.unwrap_or("message"), clip(&raw, 160))
        }
    }
}

/// Site, kind and zone as a topic `P/S/kind[/Z]` names them (the prefix may have slashes).
struct TopicPlace {
    site: Option<String>,
    kind: Option<&'static str>,
}

impl TopicPlace {
    fn parse(topic: &str) -> Self {
        let parts: Vec<&str> = topic.split('/').collect();
        let n = parts.len();
        let kind_of = |s: &str| -> Option<&'static str> {
            Some(match s {
                "incidents" => "incident",
                "patterns" => "pattern",
                "rollups" => "rollup",
                "status" => "status",
                "health" => "health",
                _ => return None,
            })
        };
        if n >= 3
            && let Some(k @ ("incident" | "pattern" | "rollup")) = kind_of(parts[n - 2])
        {
            return Self { site: Some(parts[n - 3].to_owned()), kind: Some(k) };
        }
        if n >= 2
            && let Some(k @ ("status" | "health")) = kind_of(parts[n - 1])
        {
            return Self { site: Some(parts[n - 2].to_owned()), kind: Some(k) };
        }
        Self { site: None, kind: None }
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const MAGENTA: &str = "\x1b[1;35m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";

#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn paint(self, s: &str, code: &str) -> String {
        if self.color { format!("{code}{s}\x1b[0m") } else { s.to_owned() }
    }
    fn severity(self, s: Severity) -> String {
        match s {
            Severity::Critical => self.paint("CRITICAL", RED),
            Severity::Warning => self.paint("warning", YELLOW),
        }
    }
}

fn incident(e: &IncidentEvent, st: Style) -> String {
    let mut s = String::new();
    let what = match e.event {
        IncidentEventKind::Opened => st.paint("incident OPENED  ", RED),
        IncidentEventKind::Updated => st.paint("incident updated ", YELLOW),
        IncidentEventKind::Resolved => st.paint("incident RESOLVED", GREEN),
    };
    let _ = write!(s, "{} {what} {} {}", e.zone, e.category, st.severity(e.severity));
    if !e.racks.is_empty() {
        let _ = write!(s, " racks {}", join(&e.racks, ","));
    }
    match e.event {
        IncidentEventKind::Resolved => {
            if let Some(r) = e.resolved_at {
                let _ = write!(s, " after {}", humane_duration(r.since(e.opened_at)));
            }
            let peaks: Vec<String> = e
                .peak
                .iter()
                .map(|(m, p)| {
                    format!(
                        "{m} {}{}{}",
                        num(p.value),
                        p.unit,
                        p.rack.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
                    )
                })
                .collect();
            if !peaks.is_empty() {
                let _ = write!(s, " | peak {}", peaks.join(", "));
            }
            if let Some(c) = &e.chronicle {
                let _ = write!(s, " | chronicle {} entr{}", c.len(), if c.len() == 1 { "y" } else { "ies" });
            }
        }
        // An update says what changed since the previous event; the full list is in the payload.
        IncidentEventKind::Updated if !e.changes.is_empty() => {
            let _ = write!(s, " | {}", e.changes.join("; "));
        }
        IncidentEventKind::Opened | IncidentEventKind::Updated => {
            let list = crate::engine::breach_list(&e.breaches, 3);
            if !list.is_empty() {
                let _ = write!(s, " | {list}");
            }
        }
    }
    let hint = e.context.hint.clone().or_else(|| e.context.probable_cause.clone()).or_else(|| {
        let loads: Vec<String> =
            e.context.rack_load.iter().map(|l| format!("{} load {:+.0} %", l.rack, l.change_pct)).collect();
        (!loads.is_empty()).then(|| loads.join(", "))
    });
    // Said already when it is one of the changes.
    if let Some(h) = hint.filter(|h| !e.changes.iter().any(|c| c.ends_with(h.as_str()))) {
        let _ = write!(s, " | {}", st.paint(&h, CYAN));
    }
    let _ = write!(s, " [{}]", e.incident_id);
    s
}

fn pattern(e: &PatternEvent, st: Style) -> String {
    let what = match e.state {
        PatternState::Active => st.paint("PATTERN ACTIVE ", MAGENTA),
        PatternState::Updated => st.paint("pattern updated", MAGENTA),
        PatternState::Cleared => st.paint("pattern cleared", GREEN),
    };
    let mut s = format!("{} {what} {}", e.zone, e.category);
    let others: Vec<String> = e.zones.iter().filter(|z| **z != e.zone).map(|z| z.to_string()).collect();
    if !others.is_empty() {
        let _ = write!(s, " (+{})", others.join(","));
    }
    let _ = write!(s, " {} in {}", e.occurrences, e.window);
    if let Some(t) = &e.time_of_day {
        let _ = write!(s, ", {t}");
    }
    if !e.racks.is_empty() {
        let _ = write!(s, " racks {}", join(&e.racks, ","));
    }
    let _ = write!(s, " | {}", st.paint(&e.summary, CYAN));
    s
}

fn rollup(e: &RollupEvent) -> String {
    let from = short_time(e.from);
    let to = short_time(e.to);
    // Same day: show only the clock of the end.
    let to = if from.get(..10) == to.get(..10) { to.get(11..16).unwrap_or(&to).to_owned() } else { to };
    let metrics: Vec<String> = e
        .metrics
        .iter()
        .map(|m| format!("{} {}/{}/{}{}", m.metric, num(m.min), num(m.avg), num(m.max), m.unit))
        .collect();
    format!("{} rollup {}-{to} min/avg/max {}", e.zone, from.get(11..16).unwrap_or(&from), metrics.join(", "))
}

fn health(obj: &serde_json::Map<String, Value>) -> String {
    let u = |v: Option<&Value>, k: &str| v.and_then(|o| o.get(k)).and_then(Value::as_u64);
    let mut parts = Vec::new();
    if let Some(polls) = obj.get("polls").and_then(Value::as_object) {
        let (mut ok, mut failed) = (0, 0);
        for c in polls.values() {
            ok += u(Some(c), "polls_ok").unwrap_or(0);
            failed += u(Some(c), "polls_failed").unwrap_or(0);
        }
        parts.push(format!("polls {ok} ok/{failed} failed"));
    }
    if let Some(depth) = u(obj.get("outbox"), "depth") {
        parts.push(format!("outbox {depth}"));
    }
    if let Some(d) = u(obj.get("outbox"), "dropped") {
        parts.push(format!("dropped {d}"));
    }
    if let (Some(raw), Some(ev)) = (u(obj.get("noise"), "raw_crossings"), u(obj.get("noise"), "incident_events")) {
        parts.push(format!("noise {raw} crossings -> {ev} incident msgs"));
    }
    if parts.is_empty() {
        // An unknown body: its plain top-level fields, envelope left out.
        for (k, v) in obj {
            if matches!(k.as_str(), "schema" | "site" | "msg_id" | "seq" | "created_at" | "type") {
                continue;
            }
            if v.is_number() || v.is_string() || v.is_boolean() {
                parts.push(format!("{k}={}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())));
            }
        }
    }
    format!("health {}", parts.join(", "))
}

fn status(obj: &serde_json::Map<String, Value>, st: Style) -> String {
    let state = obj.get("state").and_then(Value::as_str).unwrap_or("?");
    let painted = match state {
        "online" => st.paint("online", GREEN),
        "offline" => st.paint("OFFLINE", RED),
        other => other.to_owned(),
    };
    let mut s = format!("status {painted}");
    for k in ["version", "agent_version", "started_at"] {
        if let Some(v) = obj.get(k).and_then(Value::as_str) {
            let _ = write!(s, " {}={v}", k);
        }
    }
    s
}

/// `2026-11-02 14:05:00` (UTC).
fn short_time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(..10), s.get(11..19)) {
        (Some(d), Some(c)) => format!("{d} {c}"),
        _ => s,
    }
}

/// A value as a person writes it: at most one decimal, none when whole or large.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 100.0 || (v - v.round()).abs() < 0.05 { format!("{:.0}", v) } else { format!("{:.1}", v) }
}

fn join<T: std::fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(sep)
}

fn clip(s: &str, max: usize) -> String {
    super::status::clip(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENED: &str = r#"{"schema":"hallmonitor/v1","site":"fra1","msg_id":"fra1-41","seq":41,
      "created_at":"2026-11-02T14:06:00Z","type":"incident","event":"opened",
      "incident_id":"fra1-hall1-b-thermal-20261102T1405","zone":"hall1-b","category":"thermal",
      "severity":"warning","opened_at":"2026-11-02T14:05:00Z","racks":["B07","B08"],
      "breaches":[
        {"device":"th-b07","point":"temp","metric":"inlet_temp_c","value":29.14,"unit":"°C",
         "threshold":27.0,"severity":"warning","rack":"B07","since":"2026-11-02T14:04:00Z","rule":"high"},
        {"device":"th-b08","point":"temp","metric":"inlet_temp_c","value":28.0,"unit":"°C",
         "threshold":27.0,"severity":"warning","rack":"B08","since":"2026-11-02T14:05:00Z","rule":"high"}],
      "peak":{},"context":{"rack_load":[{"rack":"B07","power_w":2430.0,"baseline_w":1800.0,"change_pct":35.0}],
      "hint":"B07 draws 35 % more than its 7-day median"}}"#;

    #[test]
    fn opened_incident_reads_as_one_line_with_breaches_and_hint() {
        assert_eq!(
            render_line("hallmonitor/v1/fra1/incidents/hall1-b", OPENED.as_bytes()),
            "2026-11-02 14:06:00 fra1 hall1-b incident OPENED   thermal warning racks B07,B08 \
             | th-b07 inlet_temp_c 29.1 °C > 27, th-b08 inlet_temp_c 28 °C > 27 \
             | B07 draws 35 % more than its 7-day median [fra1-hall1-b-thermal-20261102T1405]"
        );
    }

    #[test]
    fn colours_only_when_asked() {
        let plain = render_line("hallmonitor/v1/fra1/incidents/hall1-b", OPENED.as_bytes());
        assert!(!plain.contains('\x1b'));
        let col = render_line_styled("hallmonitor/v1/fra1/incidents/hall1-b", OPENED.as_bytes(), true);
        assert!(col.contains("\x1b[1;31mincident OPENED  \x1b[0m"), "{col:?}");
        assert!(col.contains("\x1b[33mwarning\x1b[0m"));
    }

    #[test]
    fn resolved_incident_shows_duration_peak_and_chronicle() {
        let p = r#"{"site":"fra1","created_at":"2026-11-02T16:40:00Z","type":"incident","event":"resolved",
          "incident_id":"i1","zone":"hall1-b","category":"thermal","severity":"critical",
          "opened_at":"2026-11-02T14:05:00Z","resolved_at":"2026-11-02T16:35:00Z","racks":["B07"],
          "breaches":[],"peak":{"inlet_temp_c":{"value":33.12,"unit":"°C","device":"th-b07","rack":"B07",
          "at":"2026-11-02T15:30:00Z"}},"context":{},
          "chronicle":[{"at":"2026-11-02T14:05:00Z","what":"opened","detail":"x"},
                       {"at":"2026-11-02T16:35:00Z","what":"resolved","detail":"y"}]}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/incidents/hall1-b", p.as_bytes()),
            "2026-11-02 16:40:00 fra1 hall1-b incident RESOLVED thermal CRITICAL racks B07 after 2h 30m \
             | peak inlet_temp_c 33.1°C B07 | chronicle 2 entries [i1]"
        );
    }

    #[test]
    fn pattern_shows_zones_time_of_day_and_summary() {
        let p = r#"{"site":"fra1","created_at":"2026-11-08T16:31:00Z","type":"pattern","state":"active",
          "pattern_id":"fra1-hall1-b-thermal","zone":"hall1-b","zones":["hall1-b","hall1-a"],
          "category":"thermal","trigger":"recurrence","occurrences":3,"window":"30d",
          "incident_ids":["a","b","c"],"first_seen":"2026-11-02T14:05:00Z","last_seen":"2026-11-08T14:02:00Z",
          "racks":["B07"],"time_of_day":"14:00-17:00 UTC, 3 of 3","summary":"3 thermal incidents in 7 days"}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/patterns/hall1-b", p.as_bytes()),
            "2026-11-08 16:31:00 fra1 hall1-b PATTERN ACTIVE  thermal (+hall1-a) 3 in 30d, 14:00-17:00 UTC, 3 of 3 \
             racks B07 | 3 thermal incidents in 7 days"
        );
    }

    #[test]
    fn an_update_shows_what_changed_not_the_whole_list_again() {
        let p = r#"{"site":"fra1","created_at":"2026-11-02T14:36:00Z","type":"incident","event":"updated",
          "incident_id":"i3","zone":"hall1-b","category":"thermal","severity":"critical",
          "opened_at":"2026-11-02T14:05:00Z","racks":["B07","B08"],"peak":{},"context":{},
          "breaches":[{"device":"th-b07","point":"temp","metric":"inlet_temp_c","value":33.0,"unit":"°C",
            "threshold":32.0,"severity":"critical","rack":"B07","since":"2026-11-02T14:04:00Z","rule":"high"}],
          "changes":["severity warning -> critical","racks added: B08"]}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/incidents/hall1-b", p.as_bytes()),
            "2026-11-02 14:36:00 fra1 hall1-b incident updated  thermal CRITICAL racks B07,B08 \
             | severity warning -> critical; racks added: B08 [i3]"
        );
    }

    #[test]
    fn comms_and_low_breaches() {
        let p = r#"{"site":"fra1","created_at":"2026-11-02T09:00:00Z","type":"incident","event":"updated",
          "incident_id":"i2","zone":"hall1-c","category":"comms","severity":"warning",
          "opened_at":"2026-11-02T08:00:00Z","racks":[],"peak":{},
          "breaches":[{"device":"th-c02","point":"temp","metric":"inlet_temp_c","value":null,"unit":"°C",
            "threshold":null,"severity":"warning","since":"2026-11-02T08:00:00Z","rule":"comms"},
            {"device":"th-c03","point":"rh","metric":"humidity_pct","value":18.0,"unit":"%RH",
            "threshold":20.0,"severity":"warning","rack":"C03","since":"2026-11-02T08:00:00Z","rule":"low"}]}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/incidents/hall1-c", p.as_bytes()),
            "2026-11-02 09:00:00 fra1 hall1-c incident updated  comms warning | th-c03 humidity_pct 18 %RH < 20, \
             th-c02 unreachable [i2]"
        );
    }

    #[test]
    fn status_health_and_rollup_are_compact() {
        assert_eq!(
            render_line("hallmonitor/v1/fra1/status", br#"{"state":"offline"}"#),
            "------------------- fra1 status OFFLINE"
        );
        let h = r#"{"site":"fra1","created_at":"2026-11-02T09:00:00Z","type":"health",
          "polls":{"modbus":{"polls_ok":10,"polls_failed":1},"snmp":{"polls_ok":5,"polls_failed":0}},
          "outbox":{"depth":3,"dropped":0},"noise":{"raw_crossings":40,"incident_events":2}}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/health", h.as_bytes()),
            "2026-11-02 09:00:00 fra1 health polls 15 ok/1 failed, outbox 3, dropped 0, noise 40 crossings -> 2 incident msgs"
        );
        let r = r#"{"site":"fra1","created_at":"2026-11-02T09:05:00Z","type":"rollup","zone":"hall1-a",
          "from":"2026-11-02T09:00:00Z","to":"2026-11-02T09:05:00Z",
          "metrics":[{"metric":"inlet_temp_c","unit":"°C","min":21.04,"avg":22.46,"max":23.9,"count":30}]}"#;
        assert_eq!(
            render_line("hallmonitor/v1/fra1/rollups/hall1-a", r.as_bytes()),
            "2026-11-02 09:05:00 fra1 hall1-a rollup 09:00-09:05 min/avg/max inlet_temp_c 21/22.5/23.9°C"
        );
    }

    #[test]
    fn garbage_never_panics() {
        assert_eq!(render_line("a/b/c", b"\xff\x00garbage"), "unparseable payload on a/b/c (9 bytes)");
        assert_eq!(render_line("a/b/c", b"[1,2]"), "unparseable payload on a/b/c (5 bytes)");
        // Valid JSON of a known type with the wrong shape falls back to the raw object.
        let line = render_line("hallmonitor/v1/fra1/incidents/z", br#"{"type":"incident","event":"exploded"}"#);
        assert_eq!(
            line,
            r#"------------------- fra1 incident on hallmonitor/v1/fra1/incidents/z: {"type":"incident","event":"exploded"}"#
        );
    }

    #[test]
    fn a_bad_broker_url_is_a_usage_error_naming_it() {
        for (url, why) in [
            ("http://noc", "must start with mqtt://"),
            ("mqtt://noc:188300", "bad port \"188300"),
            ("mqtt://::1", "brackets"),
        ] {
            let args = Args {
                broker: url.into(),
                site: None,
                zone: None,
                topic_prefix: "hallmonitor/v1".into(),
                json: false,
                ca_file: None,
                username: None,
                password_file: None,
                client_id: None,
                count: Some(1),
            };
            let e = run(args).unwrap_err();
            let usage = e.downcast_ref::<UsageError>().unwrap_or_else(|| panic!("{url}: not a usage error: {e}"));
            assert!(usage.0.starts_with(&format!("--broker {url:?}")) && usage.0.contains(why), "{usage}");
        }
    }

    #[test]
    fn filters() {
        assert_eq!(topic_filters("hallmonitor/v1", None, None), vec!["hallmonitor/v1/+/#"]);
        assert_eq!(topic_filters("p/", Some("fra1"), Some("hall1-b"))[1], "p/fra1/incidents/hall1-b");
    }
}
