//! Pattern signals: a zone that keeps breaking, or one incident that is a problem on its own.
//!
//! An occurrence is an incident opening. A zone's recurrence pattern for a category counts
//! occurrences in the zone and its adjacent zones within the rolling `window`; it goes
//! `active` when the count reaches `recurrence` (and the zone itself had at least one), is
//! `updated` on each further occurrence, and `cleared` once the window holds fewer again. An
//! incident that turns critical, or is still active `major_after` after it opened
//! (`unreachable_major_after` for a comms incident: devices unreachable), raises a
//! `major_incident` pattern, cleared when the incident resolves; once per zone and category
//! within the window (a daily critical of the same kind is the same problem, already handed
//! off: its chronicle says so). Patterns are a hand-off to problem management and must stay
//! rare: an ordinary warning handled within a shift is not one. History is pruned to the window, so memory is bounded
//! by how many incidents a window can hold, never by run length.

use super::events::{Event, PatternEvent, PatternState, PatternTrigger};
use super::state::{ActivePattern, Incident, Occurrence};
use super::{Engine, chronicle};
use crate::model::{Category, RackId, Timestamp, ZoneId, humane_duration};

/// Widest hour band considered a time-of-day cluster.
const MAX_BAND_HOURS: u32 = 6;

impl Engine {
    /// Records an incident opening and re-evaluates the patterns it counts toward.
    pub(super) fn note_occurrence(&mut self, now: Timestamp, ii: usize) {
        let inc = &self.st.incidents[ii];
        self.st.history.push_back(Occurrence {
            incident_id: inc.id.clone(),
            zone: inc.zone.clone(),
            category: inc.category,
            at: inc.opened_at,
            racks: inc.racks.clone(),
            hint: inc.context.hint.clone(),
            major: false,
        });
        let zone = inc.zone.clone();
        let category = inc.category;
        let id = inc.id.clone();
        self.prune_history(now);
        let mut zones = vec![zone.clone()];
        for z in &self.settings.zones {
            if z.adjacent.contains(&zone) && !zones.contains(&z.id) {
                zones.push(z.id.clone());
            }
        }
        for z in zones {
            self.evaluate_recurrence(now, &z, category, Some(&id));
        }
    }

    fn prune_history(&mut self, now: Timestamp) {
        let cutoff = now.saturating_sub(self.settings.window);
        while self.st.history.front().is_some_and(|o| o.at <= cutoff) {
            self.st.history.pop_front();
        }
    }

    /// The zone and the zones adjacent to it.
    fn neighbourhood(&self, zone: &ZoneId) -> Vec<ZoneId> {
        let mut zs = vec![zone.clone()];
        if let Some(z) = self.ix.zones.get(zone) {
            zs.extend(z.adjacent.iter().cloned());
        }
        zs
    }

    fn evaluate_recurrence(&mut self, now: Timestamp, zone: &ZoneId, category: Category, new: Option<&str>) {
        let hood = self.neighbourhood(zone);
        let occs: Vec<&Occurrence> =
            self.st.history.iter().filter(|o| o.category == category && hood.contains(&o.zone)).collect();
        let own = occs.iter().any(|o| &o.zone == zone);
        let existing = self
            .st
            .patterns
            .iter()
            .position(|p| p.incident.is_none() && &p.event.zone == zone && p.event.category == category);
        let enough = own && occs.len() >= self.settings.recurrence.max(1) as usize;
        if !enough {
            if let Some(pi) = existing {
                let mut p = self.st.patterns.remove(pi);
                p.event.state = PatternState::Cleared;
                p.event.occurrences = occs.len() as u32;
                p.event.summary = format!(
                    "{zone}: {category} incidents back below {} in {}; pattern cleared",
                    self.settings.recurrence,
                    humane_duration(self.settings.window)
                );
                self.push_pattern(p.event);
            }
            return;
        }
        if existing.is_some() && new.is_none() {
            return;
        }
        let mut zones: Vec<ZoneId> = Vec::new();
        let mut racks: Vec<RackId> = Vec::new();
        for o in &occs {
            if !zones.contains(&o.zone) {
                zones.push(o.zone.clone());
            }
            for r in &o.racks {
                if !racks.contains(r) {
                    racks.push(r.clone());
                }
            }
        }
        // The triggering incident may have gained racks since it opened.
        if let Some(id) = new
            && let Some(inc) = self.st.incidents.iter().find(|i| i.id == id)
        {
            for r in &inc.racks {
                if !racks.contains(r) {
                    racks.push(r.clone());
                }
            }
        }
        let hours: Vec<u32> = occs.iter().map(|o| o.at.hour_utc()).collect();
        let time_of_day = time_of_day(&hours);
        let hint = new
            .and_then(|id| self.st.incidents.iter().find(|i| i.id == id))
            .and_then(|i| i.context.hint.clone())
            .or_else(|| occs.iter().rev().find_map(|o| o.hint.clone()));
        let n = occs.len();
        let window = humane_duration(self.settings.window);
        let mut summary = format!("{zone}: {n} {category} incidents in {window}");
        if zones.len() > 1 {
            summary
                .push_str(&format!(" (with {})", zones[1..].iter().map(|z| z.as_str()).collect::<Vec<_>>().join(", ")));
        }
        if let Some(t) = &time_of_day {
            summary.push_str(&format!(", clustered {}", t.split(',').next().unwrap_or(t)));
        }
        if !racks.is_empty() {
            summary.push_str(&format!("; racks {}", racks.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")));
        }
        if let Some(h) = &hint {
            summary.push_str(&format!("; {h}"));
        }
        summary.push_str(&format!("; {}", advice(category)));
        let state = if existing.is_some() { PatternState::Updated } else { PatternState::Active };
        let event = PatternEvent {
            state,
            pattern_id: format!("{}-{zone}-{category}-recurrence", self.settings.site),
            zone: zone.clone(),
            zones,
            category,
            trigger: PatternTrigger::Recurrence,
            occurrences: n as u32,
            window,
            incident_ids: occs.iter().map(|o| o.incident_id.clone()).collect(),
            first_seen: occs.first().map_or(now, |o| o.at),
            last_seen: occs.last().map_or(now, |o| o.at),
            racks,
            time_of_day,
            summary: summary.clone(),
        };
        match existing {
            Some(pi) => self.st.patterns[pi].event = event.clone(),
            None => self.st.patterns.push(ActivePattern { event: event.clone(), incident: None }),
        }
        if let Some(id) = new
            && let Some(ii) = self.st.incidents.iter().position(|i| i.id == id)
        {
            let inc = &mut self.st.incidents[ii];
            inc.chronicle.push(chronicle::plain(now, "pattern", format!("pattern {}: {summary}", event.pattern_id)));
            inc.dirty = true;
        }
        self.push_pattern(event);
    }

    /// An incident turned critical or lasted `major_after`: a problem on its own.
    pub(super) fn raise_major(&mut self, now: Timestamp, ii: usize, reason: &str) {
        let inc = &self.st.incidents[ii];
        if inc.major {
            return;
        }
        // The same problem (zone, category) already went to problem management within the
        // window: say so in the chronicle instead of handing it off again every time.
        if let Some(earlier) = self
            .st
            .history
            .iter()
            .find(|o| o.major && o.zone == inc.zone && o.category == inc.category && o.incident_id != inc.id)
        {
            let detail = format!(
                "{reason}; no new major-incident pattern: {} in {} was one within {}",
                earlier.incident_id,
                earlier.zone,
                humane_duration(self.settings.window)
            );
            let inc = &mut self.st.incidents[ii];
            inc.major = true;
            inc.chronicle.push(chronicle::plain(now, "pattern", detail));
            return;
        }
        let hood = self.neighbourhood(&inc.zone);
        let occs: Vec<&Occurrence> =
            self.st.history.iter().filter(|o| o.category == inc.category && hood.contains(&o.zone)).collect();
        let hours: Vec<u32> = occs.iter().map(|o| o.at.hour_utc()).collect();
        let time_of_day = time_of_day(&hours);
        let worst = inc.peak.iter().next().map(|(m, p)| {
            let place = p.rack.as_ref().map_or_else(|| p.device.to_string(), |r| format!("{} ({r})", p.device));
            let unit = if p.unit.is_empty() { String::new() } else { format!(" {}", p.unit) };
            format!("peak {m} {}{unit} on {place}", chronicle::num(p.value))
        });
        let mut summary = format!("{}: {} incident {} {reason}", inc.zone, inc.category, inc.id);
        if let Some(w) = worst {
            summary.push_str(&format!("; {w}"));
        }
        if occs.len() > 1 {
            summary.push_str(&format!("; {} such incidents in {}", occs.len(), humane_duration(self.settings.window)));
        }
        if let Some(t) = &time_of_day {
            summary.push_str(&format!(", clustered {}", t.split(',').next().unwrap_or(t)));
        }
        if let Some(h) = &inc.context.hint {
            summary.push_str(&format!("; {h}"));
        }
        if let Some(c) = &inc.context.probable_cause {
            summary.push_str(&format!("; probable cause: {c}"));
        }
        summary.push_str(&format!("; {}", advice(inc.category)));
        let event = PatternEvent {
            state: PatternState::Active,
            pattern_id: format!("{}-major", inc.id),
            zone: inc.zone.clone(),
            zones: vec![inc.zone.clone()],
            category: inc.category,
            trigger: PatternTrigger::MajorIncident,
            occurrences: occs.len().max(1) as u32,
            window: humane_duration(self.settings.window),
            incident_ids: vec![inc.id.clone()],
            first_seen: inc.opened_at,
            last_seen: now,
            racks: inc.racks.clone(),
            time_of_day,
            summary: summary.clone(),
        };
        let id = inc.id.clone();
        if let Some(o) = self.st.history.iter_mut().find(|o| o.incident_id == id) {
            o.major = true;
        }
        let inc = &mut self.st.incidents[ii];
        inc.major = true;
        inc.chronicle.push(chronicle::plain(now, "pattern", format!("pattern {}: {summary}", event.pattern_id)));
        inc.dirty = true;
        self.st.patterns.push(ActivePattern { event: event.clone(), incident: Some(id) });
        self.push_pattern(event);
    }

    /// Clears the incident's `major_incident` pattern, if any.
    pub(super) fn incident_resolved(&mut self, now: Timestamp, inc: &Incident) {
        if let Some(pi) = self.st.patterns.iter().position(|p| p.incident.as_deref() == Some(inc.id.as_str())) {
            let mut p = self.st.patterns.remove(pi);
            p.event.state = PatternState::Cleared;
            p.event.last_seen = now;
            p.event.summary = format!("{}: incident {} resolved", inc.zone, inc.id);
            self.push_pattern(p.event);
        }
    }

    /// When the oldest occurrence counting toward an active recurrence pattern leaves the window.
    pub(super) fn pattern_expiry(&self) -> Option<Timestamp> {
        if !self.st.patterns.iter().any(|p| p.incident.is_none()) {
            return None;
        }
        self.st.history.front().map(|o| o.at.saturating_add(self.settings.window))
    }

    pub(super) fn pattern_timers(&mut self, now: Timestamp) {
        let before = self.st.history.len();
        self.prune_history(now);
        if self.st.history.len() == before {
            return;
        }
        let active: Vec<(ZoneId, Category)> = self
            .st
            .patterns
            .iter()
            .filter(|p| p.incident.is_none())
            .map(|p| (p.event.zone.clone(), p.event.category))
            .collect();
        for (zone, category) in active {
            self.evaluate_recurrence(now, &zone, category, None);
        }
    }

    fn push_pattern(&mut self, event: PatternEvent) {
        self.st.counters.pattern_signals += 1;
        self.st.events.push_back(Event::Pattern(event));
    }
}

/// What a human should look at for a recurring problem of this category.
fn advice(category: Category) -> &'static str {
    match category {
        Category::Thermal => "check airflow, containment and rack density in this zone",
        Category::Humidity => "check humidifiers and the zone's air handling",
        Category::Power => "check rack loads against breaker ratings and A/B balance",
        Category::Cooling => "have the cooling units in this zone serviced",
        Category::Comms => "check the devices' network or RS-485 wiring",
    }
}

/// The smallest hour band (at most `MAX_BAND_HOURS` wide) holding as many occurrences as any
/// band up to that width, as `"14:00-17:00 UTC, 4 of 4"`. `None` without a cluster of at least
/// two holding more than half of the occurrences.
pub fn time_of_day(hours: &[u32]) -> Option<String> {
    let n = hours.len();
    let count = |start: u32, width: u32| hours.iter().filter(|&&h| (h + 24 - start) % 24 < width).count();
    let mut best: Option<(usize, u32, u32)> = None; // (count, width, start)
    for width in 1..=MAX_BAND_HOURS {
        for start in 0..24 {
            let c = count(start, width);
            if best.is_none_or(|(bc, _, _)| c > bc) {
                best = Some((c, width, start));
            }
        }
    }
    let (c, width, start) = best?;
    if c < 2 || c * 2 <= n {
        return None;
    }
    Some(format!("{:02}:00-{:02}:00 UTC, {c} of {n}", start, (start + width) % 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_the_smallest_band_holding_most() {
        assert_eq!(time_of_day(&[14, 15, 16, 16]).as_deref(), Some("14:00-17:00 UTC, 4 of 4"));
        assert_eq!(time_of_day(&[14, 15, 3]).as_deref(), Some("14:00-16:00 UTC, 2 of 3"));
        assert_eq!(time_of_day(&[23, 0, 1]).as_deref(), Some("23:00-02:00 UTC, 3 of 3"));
        assert_eq!(time_of_day(&[1, 9, 17]), None);
        assert_eq!(time_of_day(&[10]), None);
    }
}
