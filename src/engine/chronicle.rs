//! Incident chronicles: the timestamped timeline of everything that happened to an incident.
//!
//! A chronicle is bounded (`MAX_ENTRIES`): a member flapping for days inside one incident must
//! not grow memory or the `resolved` payload without limit. Past the bound, entries are counted
//! instead of kept, and the count is delivered as a final `truncated` line. The `opened` entry
//! and the `resolved` entry are always kept.

use serde::{Deserialize, Serialize};

use super::events::{Breach, ChronicleEntry};
use crate::model::{Metric, Severity, Timestamp};

/// Most entries kept per incident (the rest are counted).
pub const MAX_ENTRIES: usize = 200;

/// An incident's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chronicle {
    pub entries: Vec<ChronicleEntry>,
    /// Entries not kept because the chronicle was full.
    #[serde(default)]
    pub omitted: u64,
}

impl Chronicle {
    /// Appends an entry, or counts it when full (room is kept for `resolved`).
    pub fn push(&mut self, entry: ChronicleEntry) {
        if entry.what == "resolved" || self.entries.len() < MAX_ENTRIES - 1 {
            self.entries.push(entry);
        } else {
            self.omitted += 1;
        }
    }

    /// The timeline as delivered: entries, plus a `truncated` line when some were dropped.
    pub fn delivered(&self) -> Vec<ChronicleEntry> {
        let mut out = self.entries.clone();
        if self.omitted > 0 {
            let at = out.last().map(|e| e.at).unwrap_or_default();
            out.push(plain(at, "truncated", format!("{} further entries were not kept", self.omitted)));
        }
        out
    }

    /// The last entry of `delivered`, without copying the others.
    pub fn last_delivered(&self) -> Option<ChronicleEntry> {
        if self.omitted > 0 {
            let at = self.entries.last().map(|e| e.at).unwrap_or_default();
            return Some(plain(at, "truncated", format!("{} further entries were not kept", self.omitted)));
        }
        self.entries.last().cloned()
    }
}

/// An entry with only a time, a kind and a detail line.
pub fn plain(at: Timestamp, what: &str, detail: impl Into<String>) -> ChronicleEntry {
    ChronicleEntry {
        at,
        what: what.to_owned(),
        detail: detail.into(),
        device: None,
        metric: None,
        value: None,
        severity: None,
    }
}

/// An entry about one breach (joined, cleared, returned).
pub fn about_breach(at: Timestamp, what: &str, detail: String, b: &Breach) -> ChronicleEntry {
    ChronicleEntry {
        at,
        what: what.to_owned(),
        detail,
        device: Some(b.device.clone()),
        metric: Some(b.metric.clone()),
        value: b.value,
        severity: Some(b.severity),
    }
}

/// A severity change of the whole incident.
pub fn severity_changed(at: Timestamp, from: Severity, to: Severity, metric: Option<Metric>) -> ChronicleEntry {
    ChronicleEntry {
        at,
        what: "severity_changed".into(),
        detail: format!("severity {from} -> {to}"),
        device: None,
        metric,
        value: None,
        severity: Some(to),
    }
}

/// A number as a human writes it: `27`, `28.4`, `0.75`.
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// `inlet_temp_c 28.4 °C > 27 on sensor-b07 (B07)`; comms breaches read `sensor-b07 (B07) unreachable`.
pub fn describe(b: &Breach) -> String {
    let mut s = String::new();
    let place = match (&b.label, &b.rack) {
        (Some(l), Some(r)) => format!("{} {l} ({r})", b.device),
        (Some(l), None) => format!("{} {l}", b.device),
        (None, Some(r)) => format!("{} ({r})", b.device),
        (None, None) => b.device.to_string(),
    };
    if b.rule == "comms" {
        s.push_str(&format!("{place} unreachable"));
        return s;
    }
    let unit = if b.unit.is_empty() { String::new() } else { format!(" {}", b.unit) };
    let value = b.value.map(num).unwrap_or_else(|| "?".into());
    let op = match b.rule.as_str() {
        "low" => "<",
        _ => ">",
    };
    let bound = b.threshold.map(num).unwrap_or_else(|| "?".into());
    let what = match b.rule.as_str() {
        "rise" => format!("{} rose from {bound} to {value}{unit}, faster than its rise rule allows", b.metric),
        "redundancy" => format!("A+B feeds together draw {value}{unit} > {bound}{unit} one feed can carry"),
        "breaker" => format!("{} {value}{unit} > {bound}{unit} of the breaker rating", b.metric),
        _ => format!("{} {value}{unit} {op} {bound}", b.metric),
    };
    s.push_str(&format!("{what} on {place}"));
    s
}

/// The breaches of an incident as a person scans them: one entry per sensor (device, point,
/// row label) still in breach, the worst first (by severity, then by how far past its bound,
/// relative to the bound, now), each with its own peak; at most `max` entries, then `+N more`.
/// `pdu-b07-a 3 inlet_temp_c 29.7 °C > 27 (peak 30.1)`; a sensor back under its bound but
/// inside the hysteresis reads `... 26.6 °C (clearing: under 27, clears below 26)`.
pub fn breach_list(breaches: &[Breach], max: usize) -> String {
    let mut worst: Vec<(&Breach, f64)> = Vec::new();
    for b in breaches.iter().filter(|b| b.cleared_at.is_none()) {
        let m = margin(b);
        let same = |o: &&Breach| o.device == b.device && o.point == b.point && o.label == b.label;
        match worst.iter_mut().find(|(o, _)| same(o)) {
            Some(e) if (b.severity, m) > (e.0.severity, e.1) => *e = (b, m),
            Some(_) => {}
            None => worst.push((b, m)),
        }
    }
    worst.sort_by(|a, b| b.0.severity.cmp(&a.0.severity).then(b.1.total_cmp(&a.1)));
    let mut parts: Vec<String> = worst.iter().take(max).map(|(b, _)| list_entry(b)).collect();
    if worst.len() > max {
        parts.push(format!("+{} more", worst.len() - max));
    }
    parts.join(", ")
}

/// How far a breach is now past its bound, relative to the bound (negative while clearing).
fn margin(b: &Breach) -> f64 {
    let (Some(v), Some(t)) = (b.value, b.threshold) else { return 0.0 };
    let past = if b.rule == "low" { t - v } else { v - t };
    past / t.abs().max(1.0)
}

fn list_entry(b: &Breach) -> String {
    let sensor = match &b.label {
        Some(l) => format!("{} {l}", b.device),
        None => b.device.to_string(),
    };
    if b.rule == "comms" {
        return format!("{sensor} unreachable");
    }
    let unit = if b.unit.is_empty() { String::new() } else { format!(" {}", b.unit) };
    let v = b.value.map(tenth).unwrap_or_else(|| "?".into());
    let bound = b.threshold.map(tenth).unwrap_or_else(|| "?".into());
    let low = b.rule == "low";
    if let Some(c) = b.clears_at {
        let (side, past) = if low { ("over", "above") } else { ("under", "below") };
        return format!("{sensor} {} {v}{unit} (clearing: {side} {bound}, clears {past} {})", b.metric, tenth(c));
    }
    let mut s = match b.rule.as_str() {
        "rise" => format!("{sensor} {} {v}{unit}, up from {bound} (rising fast)", b.metric),
        _ => format!("{sensor} {} {v}{unit} {} {bound}", b.metric, if low { "<" } else { ">" }),
    };
    if let (Some(p), Some(v)) = (b.peak, b.value)
        && (p - v).abs() >= 0.05
    {
        s.push_str(&format!(" (peak {})", tenth(p)));
    }
    s
}

/// A number to one decimal, as `num` writes it: `27`, `29.7`.
fn tenth(v: f64) -> String {
    num((v * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronicle_is_bounded_but_keeps_resolved() {
        let mut c = Chronicle::default();
        for i in 0..1000 {
            c.push(plain(Timestamp(i), "breach_cleared", "x"));
        }
        c.push(plain(Timestamp(2000), "resolved", "done"));
        let d = c.delivered();
        assert_eq!(d.len(), MAX_ENTRIES + 1);
        assert_eq!(d[MAX_ENTRIES - 1].what, "resolved");
        assert_eq!(d[MAX_ENTRIES].what, "truncated");
        assert!(d[MAX_ENTRIES].detail.starts_with("801 "));
    }

    #[test]
    fn numbers_read_like_a_human_wrote_them() {
        assert_eq!(num(27.0), "27");
        assert_eq!(num(28.4), "28.4");
        assert_eq!(num(0.756), "0.76");
    }
}
