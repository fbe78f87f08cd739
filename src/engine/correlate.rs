//! Correlation: breaches of one category in one zone become one open incident.
//!
//! Invariants: at most one open incident per (zone, category); every active breach is an
//! uncleared member of exactly one of them; severity is the worst uncleared member (kept as
//! is once all have cleared); `opened` goes out at once, `updated` at once on a severity
//! change and otherwise at most once per `update_min_interval` (changes in between coalesce);
//! an incident resolves when every member has been clear for `clear_hold`, and a member that
//! returns inside the hold stays in the same incident. A cleared member whose value is outside
//! its bound again (a crossing not yet held for `for`) restarts the hold: a sensor flapping
//! around its line keeps one incident open instead of opening one per flap.

use arcstr::ArcStr;

use super::Engine;
use super::chronicle::{self, about_breach, describe};
use super::events::{Breach, Event, IncidentContext, IncidentEvent, IncidentEventKind, PeakValue};
use super::state::{Incident, Member, MemberKey, Sent};
use super::thresholds::Hit;
use crate::model::{Category, DeviceId, PointId, Severity, Timestamp, ZoneId, humane_duration};

impl Engine {
    /// A breach was raised (or returned): join the zone's open incident or open one.
    pub(super) fn join(&mut self, now: Timestamp, key: MemberKey, zone: ZoneId, category: Category, breach: Breach) {
        let Some(ii) = self.st.incidents.iter().position(|i| i.zone == zone && i.category == category) else {
            self.open(now, key, zone, category, breach);
            return;
        };
        let inc = &mut self.st.incidents[ii];
        let text = describe(&breach);
        let b = breach.clone();
        if let Some(m) = inc.members.iter_mut().find(|m| m.key == key) {
            m.breach = breach;
            inc.chronicle.push(about_breach(now, "breach_returned", text, &b));
        } else {
            inc.chronicle.push(about_breach(now, "breach_joined", text, &b));
            inc.members.push(Member { key, breach });
        }
        update_peak(inc, &b, now);
        let mut rack_added = false;
        if let Some(r) = &b.rack
            && !inc.racks.contains(r)
        {
            inc.racks.push(r.clone());
            inc.chronicle.push(chronicle::plain(now, "rack_added", format!("rack {r} added")));
            rack_added = true;
            let id = inc.id.clone();
            let rack = r.clone();
            if let Some(o) = self.st.history.iter_mut().find(|o| o.incident_id == id)
                && !o.racks.contains(&rack)
            {
                o.racks.push(rack);
            }
        }
        if rack_added && self.st.incidents[ii].category == Category::Thermal {
            self.refresh_context(now, ii, true);
        }
        self.after_change(now, ii);
    }

    fn open(&mut self, now: Timestamp, key: MemberKey, zone: ZoneId, category: Category, breach: Breach) {
        self.st.next_incident += 1;
        let compact: String = now.to_rfc3339().chars().filter(|c| c.is_ascii_alphanumeric()).take(15).collect();
        let id = format!("{}-{}-{}-{}-{}", self.settings.site, zone, category, compact, self.st.next_incident);
        let mut inc = Incident {
            id,
            zone: zone.clone(),
            category,
            severity: breach.severity,
            opened_at: now,
            racks: breach.rack.iter().cloned().collect(),
            members: Vec::new(),
            peak: Default::default(),
            context: IncidentContext::default(),
            chronicle: Default::default(),
            last_emit: now,
            dirty: false,
            major: false,
            sent: Default::default(),
        };
        let text = format!("{category} incident opened in {zone}: {}", describe(&breach));
        inc.chronicle.push(about_breach(now, "opened", text, &breach));
        update_peak(&mut inc, &breach, now);
        inc.members.push(Member { key, breach });
        self.st.incidents.push(inc);
        self.st.counters.incidents_opened += 1;
        let ii = self.st.incidents.len() - 1;
        if category == Category::Thermal {
            self.attach_probable_cause(now, ii);
            self.refresh_context(now, ii, true);
        }
        self.st.incidents[ii].dirty = false;
        self.emit_incident(now, ii, IncidentEventKind::Opened);
        self.note_occurrence(now, ii);
        if self.st.incidents[ii].severity == Severity::Critical {
            self.raise_major(now, ii, "turned critical");
        }
    }

    /// A held breach changed severity or rule.
    pub(super) fn member_changed(&mut self, now: Timestamp, key: &MemberKey, hit: Hit, v: f64, clears_at: Option<f64>) {
        let Some((ii, mi)) = self.find_member(key) else { return };
        let inc = &mut self.st.incidents[ii];
        let b = &mut inc.members[mi].breach;
        b.severity = hit.severity;
        b.threshold = Some(hit.bound);
        b.rule = hit.rule.as_str().to_owned();
        set_value(b, v, clears_at);
        let b = b.clone();
        update_peak(inc, &b, now);
        self.after_change(now, ii);
    }

    /// A held breach has a new value (no event; the next one carries it).
    pub(super) fn member_value(&mut self, now: Timestamp, key: &MemberKey, v: f64, bound: f64, clears_at: Option<f64>) {
        let Some((ii, mi)) = self.find_member(key) else { return };
        let inc = &mut self.st.incidents[ii];
        inc.members[mi].breach.threshold = Some(bound);
        set_value(&mut inc.members[mi].breach, v, clears_at);
        let b = inc.members[mi].breach.clone();
        update_peak(inc, &b, now);
    }

    /// A breach ended (value back inside, device back online, or suppressed).
    pub(super) fn member_cleared(&mut self, now: Timestamp, key: &MemberKey, v: Option<f64>, why: &str) {
        let Some((ii, mi)) = self.find_member(key) else { return };
        let inc = &mut self.st.incidents[ii];
        let b = &mut inc.members[mi].breach;
        b.cleared_at = Some(now);
        b.clears_at = None;
        if v.is_some() {
            b.value = v;
        }
        let b = b.clone();
        let detail = match (b.rule.as_str(), b.value) {
            ("comms", _) => format!("{} {why}", b.device),
            (_, Some(val)) if v.is_some() => {
                format!("{} back to {} {} on {} ({why})", b.metric, chronicle::num(val), b.unit, b.device)
            }
            _ => format!("{} on {} cleared ({why})", b.metric, b.device),
        };
        inc.chronicle.push(about_breach(now, "breach_cleared", detail, &b));
        self.after_change(now, ii);
    }

    /// A cleared member is outside its bound again (not yet held): its clear time moves to now.
    pub(super) fn member_flapping(&mut self, now: Timestamp, key: &MemberKey) {
        for inc in &mut self.st.incidents {
            if let Some(m) = inc.members.iter_mut().find(|m| &m.key == key && m.breach.cleared_at.is_some()) {
                m.breach.cleared_at = Some(now);
                return;
            }
        }
    }

    fn find_member(&self, key: &MemberKey) -> Option<(usize, usize)> {
        self.st.incidents.iter().enumerate().find_map(|(ii, inc)| {
            inc.members.iter().position(|m| &m.key == key && m.breach.cleared_at.is_none()).map(|mi| (ii, mi))
        })
    }

    /// Recomputes severity; emits at once on a change, else marks the incident for a
    /// rate-limited update.
    fn after_change(&mut self, now: Timestamp, ii: usize) {
        let inc = &mut self.st.incidents[ii];
        let worst = inc.members.iter().filter(|m| m.breach.cleared_at.is_none()).map(|m| m.breach.severity).max();
        inc.dirty = true;
        if let Some(worst) = worst
            && worst != inc.severity
        {
            let cause = inc.members.iter().find(|m| m.breach.cleared_at.is_none() && m.breach.severity == worst);
            let metric = cause.map(|m| m.breach.metric.clone());
            let mut entry = chronicle::severity_changed(now, inc.severity, worst, metric);
            if let Some(m) = cause {
                entry.detail.push_str(&format!(": {}", describe(&m.breach)));
                entry.device = Some(m.breach.device.clone());
                entry.value = m.breach.value;
            }
            inc.chronicle.push(entry);
            inc.severity = worst;
            self.emit_incident(now, ii, IncidentEventKind::Updated);
            if worst == Severity::Critical && !self.st.incidents[ii].major {
                self.raise_major(now, ii, "turned critical");
            }
            return;
        }
        if now >= inc.last_emit.saturating_add(self.settings.update_min_interval) {
            self.emit_incident(now, ii, IncidentEventKind::Updated);
        }
    }

    /// Resolutions, coalesced updates and the `major_after` check.
    pub(super) fn incident_timers(&mut self, now: Timestamp) {
        let mut ii = 0;
        while ii < self.st.incidents.len() {
            let inc = &self.st.incidents[ii];
            if let Some(due) = self.major_due(inc)
                && now >= due
            {
                let reason = match inc.category {
                    Category::Comms => {
                        format!(
                            "has had a device unreachable for more than {}",
                            humane_duration(self.settings.unreachable_major_after)
                        )
                    }
                    _ => format!("has lasted more than {}", humane_duration(self.settings.major_after)),
                };
                self.raise_major(now, ii, &reason);
            }
            let inc = &self.st.incidents[ii];
            if let Some(clear) = inc.all_clear_since()
                && now >= clear.saturating_add(self.settings.clear_hold)
            {
                self.resolve(now, ii);
                continue;
            }
            if inc.dirty && now >= inc.last_emit.saturating_add(self.settings.update_min_interval) {
                self.emit_incident(now, ii, IncidentEventKind::Updated);
            }
            ii += 1;
        }
    }

    /// When a long incident becomes a `major_incident` pattern: `major_after` after it opened
    /// (`unreachable_major_after` for unreachable devices), if it is still active then. One
    /// whose members have all cleared is on its way out, not a problem on its own.
    pub(super) fn major_due(&self, inc: &Incident) -> Option<Timestamp> {
        if inc.major || inc.all_clear_since().is_some() {
            return None;
        }
        let after = match inc.category {
            Category::Comms => self.settings.unreachable_major_after,
            _ => self.settings.major_after,
        };
        Some(inc.opened_at.saturating_add(after))
    }

    fn resolve(&mut self, now: Timestamp, ii: usize) {
        if self.st.incidents[ii].category == Category::Thermal {
            self.refresh_context(now, ii, false);
        }
        let inc = &mut self.st.incidents[ii];
        let lasted = now.since(inc.opened_at);
        let detail = format!(
            "all members clear for {}; open {}",
            humane_duration(self.settings.clear_hold),
            humane_duration(lasted)
        );
        inc.chronicle.push(chronicle::plain(now, "resolved", detail));
        let mut ev = self.incident_event(ii, IncidentEventKind::Resolved, true);
        ev.resolved_at = Some(now);
        self.push_incident_event(ev);
        let inc = self.st.incidents.remove(ii);
        self.incident_resolved(now, &inc);
    }

    pub(super) fn emit_incident(&mut self, now: Timestamp, ii: usize, kind: IncidentEventKind) {
        if self.st.incidents[ii].category == Category::Thermal && kind == IncidentEventKind::Updated {
            self.refresh_context(now, ii, false);
        }
        let inc = &mut self.st.incidents[ii];
        inc.last_emit = now;
        inc.dirty = false;
        let mut ev = self.incident_event(ii, kind, false);
        let now_sent = sent_of(&self.st.incidents[ii]);
        if kind == IncidentEventKind::Updated {
            ev.changes = changes(&self.st.incidents[ii].sent, &now_sent, &ev);
        }
        self.st.incidents[ii].sent = now_sent;
        self.push_incident_event(ev);
    }

    fn push_incident_event(&mut self, ev: IncidentEvent) {
        self.st.counters.incident_events += 1;
        self.st.events.push_back(Event::Incident(ev));
    }

    /// The payload of an incident as it stands.
    pub(super) fn incident_event(&self, ii: usize, kind: IncidentEventKind, with_chronicle: bool) -> IncidentEvent {
        let inc = &self.st.incidents[ii];
        IncidentEvent {
            event: kind,
            incident_id: inc.id.clone(),
            zone: inc.zone.clone(),
            category: inc.category,
            severity: inc.severity,
            opened_at: inc.opened_at,
            resolved_at: None,
            racks: inc.racks.clone(),
            breaches: inc.members.iter().map(|m| m.breach.clone()).collect(),
            peak: inc.peak.clone(),
            context: inc.context.clone(),
            changes: Vec::new(),
            chronicle: with_chronicle.then(|| inc.chronicle.delivered()),
        }
    }
}

/// What an event about the incident carries now, for the next one's `changes`.
fn sent_of(inc: &Incident) -> Sent {
    let mut sensors = Vec::new();
    for m in inc.members.iter().filter(|m| m.breach.cleared_at.is_none()) {
        let s = (m.key.device.clone(), m.key.point.clone(), m.key.label.clone());
        if !sensors.contains(&s) {
            sensors.push(s);
        }
    }
    Sent {
        severity: Some(inc.severity),
        racks: inc.racks.clone(),
        sensors,
        peaks: inc.peak.iter().map(|(m, p)| (m.clone(), p.value)).collect(),
        hint: inc.context.hint.clone(),
        probable_cause: inc.context.probable_cause.clone(),
    }
}

/// What changed between two events of an incident, one phrase each; sensors are named up to
/// `NAMED`, counted beyond.
fn changes(before: &Sent, now: &Sent, ev: &IncidentEvent) -> Vec<String> {
    const NAMED: usize = 3;
    let name = |s: &(DeviceId, PointId, Option<ArcStr>)| match &s.2 {
        Some(l) => format!("{} {l}", s.0),
        None => format!("{} {}", s.0, s.1),
    };
    let listed = |items: Vec<String>, what: &str| -> Option<String> {
        match items.len() {
            0 => None,
            n if n <= NAMED => Some(format!("{what} {}", items.join(", "))),
            n => Some(format!("{what} {} and {} more", items[..NAMED].join(", "), n - NAMED)),
        }
    };
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (before.severity, now.severity)
        && a != b
    {
        out.push(format!("severity {a} -> {b}"));
    }
    let racks: Vec<String> = now.racks.iter().filter(|r| !before.racks.contains(r)).map(|r| r.to_string()).collect();
    out.extend(listed(racks, "racks added:"));
    let joined: Vec<String> = now.sensors.iter().filter(|s| !before.sensors.contains(s)).map(name).collect();
    out.extend(listed(joined, "in breach:"));
    let cleared: Vec<String> = before.sensors.iter().filter(|s| !now.sensors.contains(s)).map(name).collect();
    out.extend(listed(cleared, "back to normal:"));
    for (metric, v) in &now.peaks {
        let old = before.peaks.iter().find(|(m, _)| m == metric).map(|(_, v)| *v);
        if old.is_none_or(|o| (o - v).abs() >= 0.05)
            && let Some(p) = ev.peak.get(metric)
        {
            let place = p.rack.as_ref().map_or_else(|| p.device.to_string(), |r| format!("{} ({r})", p.device));
            let unit = if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) };
            out.push(format!("new peak {metric} {}{unit} on {place}", chronicle::num(*v)));
        }
    }
    if now.probable_cause != before.probable_cause
        && let Some(c) = &now.probable_cause
    {
        out.push(format!("probable cause: {c}"));
    }
    // A load hint that appears is news; its percentage drifting from update to update is not.
    if before.hint.is_none()
        && let Some(h) = &now.hint
    {
        out.push(h.clone());
    }
    if out.is_empty() {
        out.push("timeline updated (values, returns of sensors already listed)".to_owned());
    }
    out
}

/// A held breach's latest value, its own peak, and whether it is clearing.
fn set_value(b: &mut Breach, v: f64, clears_at: Option<f64>) {
    b.value = Some(v);
    b.clears_at = clears_at;
    let low = b.rule == "low";
    b.peak = Some(match b.peak {
        Some(p) if low => p.min(v),
        Some(p) => p.max(v),
        None => v,
    });
}

/// Keeps the worst value per metric (lowest for low-side breaches, highest otherwise).
fn update_peak(inc: &mut Incident, b: &Breach, now: Timestamp) {
    let Some(v) = b.value else { return };
    let low = b.rule == "low";
    let worse = match inc.peak.get(&b.metric) {
        None => true,
        Some(p) => (low && v < p.value) || (!low && v > p.value),
    };
    if worse {
        inc.peak.insert(
            b.metric.clone(),
            PeakValue { value: v, unit: b.unit.clone(), device: b.device.clone(), rack: b.rack.clone(), at: now },
        );
    }
}
