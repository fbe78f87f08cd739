//! The sans-IO engine: thresholds, correlation, chronicles, patterns, rollups.
//!
//! It never reads a clock, spawns, sleeps or does IO; `now` is passed in on every call and
//! events are pulled with `poll_event`. Every call first runs the timers due at `now`, so the
//! outcome does not depend on how punctually the shell calls `handle_timeout`.
//!
//! Layout: `thresholds` (rules and debounce), `correlate` (breaches -> incidents), `chronicle`
//! (timelines), `patterns` (recurrence and major-incident signals), `context` (rack load
//! baselines), `rollup` (zone summaries), `state` (what persists). Invariants: every active
//! breach is an uncleared member of exactly one open incident (per zone and category); memory
//! is bounded by the configured points, zones and racks plus the pattern and baseline windows,
//! never by run length.

mod chronicle;
mod context;
mod correlate;
pub mod events;
mod patterns;
mod rollup;
mod state;
mod thresholds;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use chronicle::breach_list;
pub use events::*;
pub use state::{EngineState, EngineStateView};

use crate::config::{DeviceMeta, EngineSettings, Feed, Threshold, Zone};
use crate::model::{Category, DeviceId, Metric, PointId, Quality, RackId, Reading, Timestamp, ZoneId};
use state::{DeviceState, FxMap, MemberKey, PointKind, PointState, Slot};
use thresholds::{Hit, RuleKind, Step, breaker_threshold, classify, dew_point_c};

/// How recent the other input must be to derive a dew point from temperature and humidity.
const DEW_POINT_PAIRING: Duration = Duration::from_secs(600);

/// A rack fed by an A and a B PDU.
#[derive(Debug, Clone)]
struct RackFeeds {
    a: DeviceId,
    b: DeviceId,
    /// The smaller of the two breaker ratings: what one feed can carry alone.
    rating_a: f64,
}

/// Lookups derived from the settings (rebuilt on `reconfigure`).
#[derive(Debug, Default)]
struct Index {
    meta: HashMap<DeviceId, DeviceMeta>,
    zones: HashMap<ZoneId, Zone>,
    feeds: HashMap<RackId, RackFeeds>,
}

impl Index {
    fn build(s: &EngineSettings) -> Self {
        let meta: HashMap<DeviceId, DeviceMeta> = s.devices.iter().map(|d| (d.id.clone(), d.clone())).collect();
        let zones = s.zones.iter().map(|z| (z.id.clone(), z.clone())).collect();
        let mut feeds = HashMap::new();
        let mut by_rack: HashMap<&RackId, (Option<&DeviceMeta>, Option<&DeviceMeta>)> = HashMap::new();
        for d in &s.devices {
            if let (Some(rack), Some(feed)) = (&d.rack, d.feed) {
                let e = by_rack.entry(rack).or_default();
                match feed {
                    Feed::A if e.0.is_none() => e.0 = Some(d),
                    Feed::B if e.1.is_none() => e.1 = Some(d),
                    _ => {}
                }
            }
        }
        for (rack, pair) in by_rack {
            if let (Some(a), Some(b)) = pair {
                let rating = match (a.breaker_a, b.breaker_a) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                if let Some(rating_a) = rating {
                    feeds.insert(rack.clone(), RackFeeds { a: a.id.clone(), b: b.id.clone(), rating_a });
                }
            }
        }
        Self { meta, zones, feeds }
    }
}

/// Per device: its state slot and the slots of its points.
#[derive(Debug, Default)]
struct DevIx {
    state: u32,
    points: Vec<u32>,
    /// Synthetic points that go quiet with this device (redundancy of its rack).
    extra: Vec<u32>,
}

/// Resolved rules of one point (not state: rebuilt after reload or import). 24 bytes and
/// `Copy`: one per point, read with every reading.
#[derive(Debug, Default, Clone, Copy)]
struct PointCache {
    generation: u32,
    /// The device's slot in `EngineState::devices`.
    dev: u32,
    /// Slots in `Engine::thresholds`.
    level: Option<Ix>,
    breaker: Option<Ix>,
    rollup: Option<Ix>,
    rack: Option<Ix>,
}

/// A slot number kept as slot + 1, so that `Option<Ix>` fits in 4 bytes.
#[derive(Debug, Clone, Copy)]
struct Ix(std::num::NonZeroU32);

impl Ix {
    fn new(slot: u32) -> Self {
        Ix(std::num::NonZeroU32::MIN.saturating_add(slot))
    }
    fn get(self) -> u32 {
        self.0.get() - 1
    }
}

/// One device's comms state (`Engine::device_comms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceComms {
    /// Down once `down_after` polls in a row failed (its comms breach is open); up again at
    /// its next good reading.
    pub down: bool,
    /// Failed polls in a row.
    pub failed_polls: u32,
    /// Why the last failed poll failed.
    pub last_error: Option<String>,
}

/// An open incident condensed (`Engine::incident_summaries`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub severity: crate::model::Severity,
    pub opened_at: Timestamp,
    pub racks: Vec<RackId>,
    /// Members currently in breach.
    pub open_breaches: usize,
    /// The newest line of its chronicle as delivered.
    pub last_chronicle: Option<ChronicleEntry>,
}

/// The engine. See the module docs.
pub struct Engine {
    settings: EngineSettings,
    ix: Index,
    /// Bumped on `reconfigure`; point caches of an older generation are re-resolved.
    generation: u32,
    devices: FxMap<DeviceId, DevIx>,
    cache: Vec<PointCache>,
    racks: FxMap<RackId, u32>,
    /// Power points per rack slot.
    rack_points: Vec<Vec<u32>>,
    rollup_ix: FxMap<(ZoneId, Metric), u32>,
    /// Points by the hash of (device, point, label): the first point with that hash; any
    /// other (a collision, checked against the point) in `collided`.
    by_key: FxMap<u64, u32>,
    collided: Vec<(u64, u32)>,
    /// The distinct thresholds of this generation's point caches, shared: a site has a few
    /// dozen, and one allocation per point cost 100 bytes a point.
    thresholds: Vec<Arc<Threshold>>,
    st: EngineState,
}

impl Engine {
    /// An engine with no history.
    pub fn new(settings: EngineSettings) -> Self {
        let ix = Index::build(&settings);
        Self {
            settings,
            ix,
            generation: 1,
            devices: FxMap::default(),
            cache: Vec::new(),
            racks: FxMap::default(),
            rack_points: Vec::new(),
            rollup_ix: FxMap::default(),
            by_key: FxMap::default(),
            collided: Vec::new(),
            thresholds: Vec::new(),
            st: EngineState::default(),
        }
    }

    /// New thresholds/zones/devices; open incidents, patterns and history are kept.
    pub fn reconfigure(&mut self, settings: EngineSettings) {
        self.settings = settings;
        self.ix = Index::build(&self.settings);
        self.generation += 1;
        self.thresholds.clear();
        // A device moved to another zone or rack: its future breaches and load belong there.
        // (Members already in open incidents stay where they were raised.)
        for d in &mut self.st.devices {
            if let Some(m) = self.ix.meta.get(d.id.as_str()) {
                d.zone = m.zone.clone();
                d.rack = m.rack.clone();
            }
        }
        let mut moved = false;
        for p in &mut self.st.points {
            if let Some(m) = self.ix.meta.get(p.device.as_str())
                && (p.zone != m.zone || p.rack != m.rack)
            {
                p.zone = m.zone.clone();
                p.rack = m.rack.clone();
                moved = true;
            }
        }
        if moved {
            self.rebuild_indexes();
        }
        self.clear_members_of_removed_devices();
    }

    /// Devices no longer configured (removed or disabled) send nothing more: their breaches
    /// end here, so their incidents resolve after `clear_hold` instead of staying open forever.
    fn clear_members_of_removed_devices(&mut self) {
        let Some(now) = self.st.advanced_at else { return };
        let gone: Vec<MemberKey> = self
            .st
            .incidents
            .iter()
            .flat_map(|i| i.members.iter())
            .filter(|m| m.breach.cleared_at.is_none() && !self.ix.meta.contains_key(m.key.device.as_str()))
            .map(|m| m.key.clone())
            .collect();
        for key in gone {
            self.member_cleared(now, &key, None, "device removed from the configuration");
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Feeds one reading taken at `now` (the shell's clock, or the reading's `at` in replay).
    pub fn handle_reading(&mut self, now: Timestamp, reading: &Reading) {
        // Timers only move with time: a poll's many readings at one instant run them once.
        // (Anything that becomes due at this same instant is named by `next_timeout`.)
        if self.st.advanced_at != Some(now) {
            self.advance(now);
        }
        let h = key_hash(reading.device.as_str(), reading.point.as_str(), reading.label.as_deref());
        let pi = match self.find(h, reading.device.as_str(), reading.point.as_str(), reading.label.as_deref()) {
            Some(pi) => pi,
            None => {
                let di = self.device_slot(&reading.device, &reading.zone, reading.rack.as_ref());
                self.point_slot(di, reading)
            }
        };
        let di = self.cache[pi as usize].dev;
        match (reading.quality, reading.value) {
            (Quality::Good, Some(v)) if v.is_finite() => self.good_reading(now, di, pi, v),
            (Quality::Good, _) => {} // a good reading without a usable value says nothing
            (Quality::Bad, _) => self.bad_reading(now, di, pi, reading.error.as_deref()),
        }
    }

    /// Advances timers (`clear_hold`, update rate limits, `major_after`, pattern windows, rollups).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// When `handle_timeout` should next be called, if anything is pending.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut at = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for inc in &self.st.incidents {
            if let Some(due) = self.major_due(inc) {
                at(due);
            }
            if let Some(clear) = inc.all_clear_since() {
                at(clear.saturating_add(self.settings.clear_hold));
            }
            if inc.dirty {
                at(inc.last_emit.saturating_add(self.settings.update_min_interval));
            }
        }
        if let Some(t) = self.pattern_expiry() {
            at(t);
        }
        if let Some(t) = self.rollup_due() {
            at(t);
        }
        next
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.st.events.pop_front()
    }

    /// The whole state, for the store.
    ///
    /// Points in their quiet state (no pending or active rule, no rise history, no run of bad
    /// readings) are left out: their next reading rebuilds them exactly, and at thousands of
    /// points they would be nearly all of the state's size.
    pub fn export_state(&self) -> EngineState {
        let st = &self.st;
        EngineState {
            points: st.points.iter().filter(|p| !p.is_quiet()).cloned().collect(),
            devices: st.devices.clone(),
            racks: st.racks.clone(),
            incidents: st.incidents.clone(),
            history: st.history.clone(),
            patterns: st.patterns.clone(),
            rollups: st.rollups.clone(),
            rollup_from: st.rollup_from,
            counters: st.counters,
            next_incident: st.next_incident,
            advanced_at: st.advanced_at,
            events: st.events.clone(),
        }
    }

    /// The state to save, borrowed: serializes as `export_state()` does, without the copy.
    pub fn state_view(&self) -> EngineStateView<'_> {
        let st = &self.st;
        EngineStateView {
            points: state::PointsToSave(&st.points),
            devices: &st.devices,
            racks: &st.racks,
            incidents: &st.incidents,
            history: &st.history,
            patterns: &st.patterns,
            rollups: &st.rollups,
            rollup_from: st.rollup_from,
            counters: st.counters,
            next_incident: st.next_incident,
            advanced_at: st.advanced_at,
            events: &st.events,
        }
    }

    /// Replaces the state with one exported earlier (after a restart).
    pub fn import_state(&mut self, state: EngineState) {
        self.st = state;
        self.rebuild_indexes();
        self.clear_members_of_removed_devices();
    }

    /// Noise accounting for `health`.
    pub fn counters(&self) -> NoiseCounters {
        self.st.counters
    }

    /// Open incidents as they stand now, each with its chronicle so far.
    pub fn open_incidents(&self) -> Vec<IncidentEvent> {
        (0..self.st.incidents.len()).map(|i| self.incident_event(i, IncidentEventKind::Updated, true)).collect()
    }

    /// Open incidents condensed, as the status snapshot shows them (every few seconds: no
    /// breach list or chronicle is copied for it).
    pub fn incident_summaries(&self) -> Vec<IncidentSummary> {
        self.st
            .incidents
            .iter()
            .map(|inc| IncidentSummary {
                incident_id: inc.id.clone(),
                zone: inc.zone.clone(),
                category: inc.category,
                severity: inc.severity,
                opened_at: inc.opened_at,
                racks: inc.racks.clone(),
                open_breaches: inc.members.iter().filter(|m| m.breach.cleared_at.is_none()).count(),
                last_chronicle: inc.chronicle.last_delivered(),
            })
            .collect()
    }

    /// Pattern signals currently active, as last emitted.
    pub fn active_patterns(&self) -> Vec<PatternEvent> {
        self.st.patterns.iter().map(|p| p.event.clone()).collect()
    }

    /// Every breach currently held (after debounce), open incident or not. For `status` and
    /// for checking the invariant that each belongs to exactly one open incident.
    pub fn active_breaches(&self) -> Vec<Breach> {
        let mut out = Vec::new();
        for p in &self.st.points {
            for (slot, rs) in [(Slot::Level, &p.level), (Slot::Breaker, &p.breaker), (Slot::Rise, &p.rise)] {
                if let Some(a) = rs.get().active {
                    out.push(self.breach_of(p, slot, a.hit, a.since, p.last.map(|l| l.1)));
                }
            }
        }
        for d in &self.st.devices {
            if d.down {
                out.push(comms_breach(d, d.down_since.unwrap_or_default()));
            }
        }
        out
    }

    /// A device as the comms rule sees it (`None` before its first reading). The one
    /// definition of "down": the shell's log line, health and status take it from here.
    pub fn device_comms(&self, id: &DeviceId) -> Option<DeviceComms> {
        let d = self.st.devices.get(self.devices.get(id.as_str())?.state as usize)?;
        Some(DeviceComms { down: d.down, failed_polls: d.bad_polls, last_error: d.last_error.clone() })
    }

    // ----- readings -----

    fn device_slot(&mut self, id: &DeviceId, zone: &ZoneId, rack: Option<&RackId>) -> u32 {
        if let Some(d) = self.devices.get(id.as_str()) {
            return d.state;
        }
        let (zone, rack) = match self.ix.meta.get(id.as_str()) {
            Some(m) => (m.zone.clone(), m.rack.clone()),
            None => (zone.clone(), rack.cloned()),
        };
        let slot = self.st.devices.len() as u32;
        self.st.devices.push(DeviceState {
            id: id.clone(),
            zone,
            rack,
            bad_polls: 0,
            epoch: 0,
            down: false,
            down_since: None,
            last_error: None,
            temp: None,
            rh: None,
            in_alarm: None,
        });
        self.devices.insert(id.clone(), DevIx { state: slot, ..Default::default() });
        slot
    }

    /// The slot of a known point, by its key hash (`key_hash` of the same three).
    #[inline]
    fn find(&self, h: u64, device: &str, point: &str, label: Option<&str>) -> Option<u32> {
        let is = |pi: u32| {
            let p = &self.st.points[pi as usize];
            p.device.as_str() == device && p.point.as_str() == point && p.label.as_deref() == label
        };
        let first = *self.by_key.get(&h)?;
        if is(first) {
            return Some(first);
        }
        self.collided.iter().find(|&&(ch, pi)| ch == h && is(pi)).map(|&(_, pi)| pi)
    }

    fn point_slot(&mut self, di: u32, r: &Reading) -> u32 {
        self.point_or_new(di, r.point.as_str(), r.label.as_deref(), |d| {
            let kind = PointKind::of(r.metric.as_str());
            PointState::new(d, r.point.clone(), r.label.clone(), r.metric.clone(), r.unit.clone(), kind)
        })
    }

    /// The slot of device `di`'s point `point`/`label`; the first time, `new` makes it from its
    /// device. Real and synthetic points alike: a point is found the same way whatever made it.
    fn point_or_new(
        &mut self,
        di: u32,
        point: &str,
        label: Option<&str>,
        new: impl FnOnce(&DeviceState) -> PointState,
    ) -> u32 {
        let d = &self.st.devices[di as usize];
        if let Some(pi) = self.find(key_hash(d.id.as_str(), point, label), d.id.as_str(), point, label) {
            return pi;
        }
        let p = new(d);
        self.add_point(p)
    }

    fn add_point(&mut self, p: PointState) -> u32 {
        let pi = self.st.points.len() as u32;
        let dev = self.index_point(pi, &p);
        self.st.points.push(p);
        self.cache.push(PointCache { dev, ..Default::default() });
        pi
    }

    /// Adds a point to the lookups; returns its device's slot.
    fn index_point(&mut self, pi: u32, p: &PointState) -> u32 {
        let di = self.device_slot(&p.device, &p.zone, p.rack.as_ref());
        let h = key_hash(p.device.as_str(), p.point.as_str(), p.label.as_deref());
        match self.by_key.entry(h) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(pi);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push((h, pi)),
        }
        if let Some(dix) = self.devices.get_mut(p.device.as_str()) {
            dix.points.push(pi);
        }
        if let Some(b) = &p.feed_b {
            let _ = self.device_slot(b, &p.zone, p.rack.as_ref());
            if let Some(dix) = self.devices.get_mut(b.as_str()) {
                dix.extra.push(pi);
            }
        }
        if p.kind.is_rack_load()
            && let Some(rack) = &p.rack
        {
            let rs = self.rack_slot(rack);
            self.rack_points[rs as usize].push(pi);
        }
        di
    }

    fn rebuild_indexes(&mut self) {
        self.devices.clear();
        self.racks.clear();
        self.rack_points.clear();
        self.rollup_ix.clear();
        self.cache.clear();
        self.by_key.clear();
        self.collided.clear();
        for (i, d) in self.st.devices.iter().enumerate() {
            self.devices.insert(d.id.clone(), DevIx { state: i as u32, ..Default::default() });
        }
        for (i, r) in self.st.racks.iter().enumerate() {
            self.racks.insert(r.id.clone(), i as u32);
            self.rack_points.push(Vec::new());
        }
        for (i, a) in self.st.rollups.iter().enumerate() {
            self.rollup_ix.insert((a.zone.clone(), a.metric.clone()), i as u32);
        }
        let points = std::mem::take(&mut self.st.points);
        for (i, p) in points.iter().enumerate() {
            let dev = self.index_point(i as u32, p);
            self.cache.push(PointCache { dev, ..Default::default() });
        }
        self.st.points = points;
    }

    /// A threshold of a point's cache; shared, so the caller can hold it while it steps the
    /// engine.
    fn threshold(&self, slot: Option<Ix>) -> Option<Arc<Threshold>> {
        slot.map(|i| self.thresholds[i.get() as usize].clone())
    }

    /// Resolves (once per generation) the rules of a point.
    fn rules(&mut self, pi: u32) -> PointCache {
        let c = &self.cache[pi as usize];
        if c.generation == self.generation {
            return *c;
        }
        let p = &self.st.points[pi as usize];
        let mut c = PointCache { generation: self.generation, dev: c.dev, ..Default::default() };
        let rules = &self.settings.thresholds;
        match p.kind {
            PointKind::Redundancy => {
                let base = rules.resolve(&Metric::new("phase_current_a"), &p.zone, p.rack.as_ref(), &p.device);
                let feeds = p.rack.as_ref().and_then(|r| self.ix.feeds.get(r));
                c.level = feeds.map(|f| shared(&mut self.thresholds, breaker_threshold(base.as_ref(), f.rating_a)));
            }
            _ => {
                let t = rules.resolve(&p.metric, &p.zone, p.rack.as_ref(), &p.device);
                if p.metric.as_str().ends_with("_current_a")
                    && let Some(rating) = self.ix.meta.get(p.device.as_str()).and_then(|m| m.breaker_a)
                {
                    c.breaker = Some(shared(&mut self.thresholds, breaker_threshold(t.as_ref(), rating)));
                }
                c.level = t.map(|t| shared(&mut self.thresholds, t));
            }
        }
        if self.settings.rollup_interval.is_some() && !matches!(p.kind, PointKind::Redundancy) {
            let key = (p.zone.clone(), p.metric.clone());
            let unit = p.unit.clone();
            c.rollup = Some(Ix::new(self.rollup_slot(key, unit)));
        }
        let p = &self.st.points[pi as usize];
        if p.kind.is_rack_load()
            && let Some(rack) = p.rack.clone()
        {
            c.rack = Some(Ix::new(self.rack_slot(&rack)));
        }
        self.cache[pi as usize] = c;
        c
    }

    fn good_reading(&mut self, now: Timestamp, di: u32, pi: u32, v: f64) {
        let d = &mut self.st.devices[di as usize];
        if d.bad_polls > 0 || d.down {
            d.bad_polls = 0;
            d.epoch = d.epoch.wrapping_add(1);
            if d.down {
                d.down = false;
                d.down_since = None;
                let key = comms_key(&d.id);
                self.member_cleared(now, &key, None, "back online");
            }
        }
        let rules = self.rules(pi);
        self.st.points[pi as usize].last = Some((now, v));
        if let Some(slot) = rules.rollup {
            self.rollup_add(now, slot.get(), v);
        }
        self.evaluate(now, pi, v, &rules);
        match self.st.points[pi as usize].kind {
            PointKind::Plain | PointKind::DewPoint | PointKind::Redundancy | PointKind::Voltage => {}
            PointKind::InletTemp | PointKind::Humidity => self.dew_point_input(now, di, pi, v),
            PointKind::Power => {
                if let Some(rs) = rules.rack {
                    self.rack_power_sample(now, rs.get());
                }
            }
            PointKind::PhaseCurrent => {
                self.redundancy_input(now, pi);
                if let Some(rs) = rules.rack {
                    self.rack_power_sample(now, rs.get());
                }
            }
            PointKind::Alarm => self.cooling_alarm_input(now, di, v),
        }
    }

    fn bad_reading(&mut self, now: Timestamp, di: u32, pi: u32, error: Option<&str>) {
        let d = &mut self.st.devices[di as usize];
        let p = &mut self.st.points[pi as usize];
        if p.bad_epoch != d.epoch {
            p.bad_epoch = d.epoch;
            p.bad_run = 0;
        }
        p.bad_run = p.bad_run.saturating_add(1);
        d.bad_polls = d.bad_polls.max(p.bad_run);
        if let Some(e) = error {
            d.last_error = Some(e.to_owned());
        }
        if d.down || d.bad_polls < self.settings.down_after.max(1) {
            return;
        }
        d.down = true;
        d.down_since = Some(now);
        let id = d.id.clone();
        // Inhibition: a device that cannot be read raises nothing but its comms breach.
        let mut quiet: Vec<u32> = Vec::new();
        if let Some(dix) = self.devices.get(id.as_str()) {
            quiet.extend(dix.points.iter().copied());
            quiet.extend(dix.extra.iter().copied());
        }
        quiet.sort_unstable();
        for qi in quiet {
            self.suppress_point(now, qi);
        }
        self.st.counters.breaches += 1;
        let d = &self.st.devices[di as usize];
        let breach = comms_breach(d, now);
        let zone = d.zone.clone();
        self.join(now, comms_key(&id), zone, Category::Comms, breach);
    }

    /// Drops every rule state of a point, clearing its breaches from their incidents.
    fn suppress_point(&mut self, now: Timestamp, pi: u32) {
        let p = &mut self.st.points[pi as usize];
        p.rise_samples = None;
        let dropped =
            [(Slot::Level, p.level.reset()), (Slot::Breaker, p.breaker.reset()), (Slot::Rise, p.rise.reset())];
        for (slot, hit) in dropped {
            if hit.is_some() {
                let key = self.member_key(pi, slot);
                self.member_cleared(now, &key, None, "suppressed: device unreachable");
            }
        }
    }

    fn evaluate(&mut self, now: Timestamp, pi: u32, v: f64, rules: &PointCache) {
        let p = &self.st.points[pi as usize];
        let high_rule = match p.kind {
            PointKind::Alarm => RuleKind::Alarm,
            PointKind::Redundancy => RuleKind::Redundancy,
            _ => RuleKind::High,
        };
        if let Some(t) = self.threshold(rules.level) {
            let p = &mut self.st.points[pi as usize];
            let active = p.level.get().active.map(|a| a.hit);
            let hit = classify(&t, v, active.as_ref(), high_rule);
            let raw = classify(&t, v, None, high_rule).is_some();
            let (step, crossing) = p.level.step(now, hit, raw, t.hold_for);
            self.apply(now, pi, Slot::Level, step, crossing, v);
            if let Some((rise, within)) = t.rise {
                let p = &mut self.st.points[pi as usize];
                let cutoff = now.saturating_sub(within);
                let window = p.rise_samples.get_or_insert_default();
                while window.front().is_some_and(|s| s.0 < cutoff) {
                    window.pop_front();
                }
                while window.back().is_some_and(|s| s.1 >= v) {
                    window.pop_back();
                }
                let min = window.front().map_or(v, |s| s.1);
                window.push_back((now, v));
                let hit = (v - min > rise).then_some(Hit {
                    severity: crate::model::Severity::Warning,
                    rule: RuleKind::Rise,
                    bound: min,
                });
                let (step, crossing) = p.rise.step(now, hit, hit.is_some(), Duration::ZERO);
                self.apply(now, pi, Slot::Rise, step, crossing, v);
            }
        } else if self.st.points[pi as usize].level.get().active.is_some() {
            // The rule was removed by a reload: its breach is over.
            let (step, _) = self.st.points[pi as usize].level.step(now, None, false, Duration::ZERO);
            self.apply(now, pi, Slot::Level, step, false, v);
        }
        if let Some(t) = self.threshold(rules.breaker) {
            let p = &mut self.st.points[pi as usize];
            let active = p.breaker.get().active.map(|a| a.hit);
            let hit = classify(&t, v, active.as_ref(), RuleKind::Breaker);
            let raw = classify(&t, v, None, RuleKind::Breaker).is_some();
            let (step, crossing) = p.breaker.step(now, hit, raw, t.hold_for);
            self.apply(now, pi, Slot::Breaker, step, crossing, v);
        }
    }

    fn apply(&mut self, now: Timestamp, pi: u32, slot: Slot, step: Step, crossing: bool, v: f64) {
        if crossing {
            self.st.counters.raw_crossings += 1;
        }
        match step {
            Step::Quiet => {
                // Outside a bound but not yet held: a flapping member of an open incident is
                // not clear yet, so its clear hold restarts (one incident, not one per flap).
                let rs = match slot {
                    Slot::Level => &self.st.points[pi as usize].level,
                    Slot::Breaker => &self.st.points[pi as usize].breaker,
                    Slot::Rise => &self.st.points[pi as usize].rise,
                    Slot::Comms => return,
                };
                if rs.get().pending.is_some() {
                    let key = self.member_key(pi, slot);
                    self.member_flapping(now, &key);
                }
            }
            Step::Raised(a) => {
                self.st.counters.breaches += 1;
                let p = &self.st.points[pi as usize];
                let breach = self.breach_of(p, slot, a.hit, a.since, Some(v));
                let zone = p.zone.clone();
                let category = category_of(p, a.hit.rule);
                let key = self.member_key(pi, slot);
                self.join(now, key, zone, category, breach);
            }
            Step::Held { from, to } => {
                let key = self.member_key(pi, slot);
                let clears_at = self.clears_at(pi, slot, to, v);
                if from.severity != to.severity || from.rule != to.rule {
                    self.member_changed(now, &key, to, v, clears_at);
                } else {
                    // Same breach; a moving bound (the rise rule's window minimum) is no news.
                    self.member_value(now, &key, v, to.bound, clears_at);
                }
            }
            Step::Cleared(_) => {
                let key = self.member_key(pi, slot);
                self.member_cleared(now, &key, Some(v), "back inside its bounds");
            }
        }
    }

    /// For a held breach whose value is back inside its bound but not past the hysteresis:
    /// the value it clears at (`bound - hysteresis` for a high-side rule).
    fn clears_at(&mut self, pi: u32, slot: Slot, hit: Hit, v: f64) -> Option<f64> {
        let rules = self.rules(pi);
        let t = match slot {
            Slot::Level => self.threshold(rules.level)?,
            Slot::Breaker => self.threshold(rules.breaker)?,
            Slot::Rise | Slot::Comms => return None,
        };
        let h = t.hysteresis.max(0.0);
        match hit.rule {
            RuleKind::Low => (v >= hit.bound).then_some(hit.bound + h),
            RuleKind::High | RuleKind::Breaker | RuleKind::Redundancy => (v <= hit.bound).then_some(hit.bound - h),
            RuleKind::Rise | RuleKind::Comms | RuleKind::Alarm => None,
        }
    }

    fn member_key(&self, pi: u32, slot: Slot) -> MemberKey {
        let p = &self.st.points[pi as usize];
        MemberKey { device: p.device.clone(), point: p.point.clone(), label: p.label.clone(), slot }
    }

    fn breach_of(&self, p: &PointState, _slot: Slot, hit: Hit, since: Timestamp, v: Option<f64>) -> Breach {
        Breach {
            device: p.device.clone(),
            point: p.point.clone(),
            label: p.label.as_deref().map(str::to_owned),
            metric: p.metric.clone(),
            value: v,
            unit: p.unit.to_string(),
            threshold: Some(hit.bound),
            severity: hit.severity,
            rack: p.rack.clone(),
            since,
            cleared_at: None,
            rule: hit.rule.as_str().to_owned(),
            peak: v,
            clears_at: None,
        }
    }

    // ----- cross-point rules -----

    fn dew_point_input(&mut self, now: Timestamp, di: u32, pi: u32, v: f64) {
        let d = &mut self.st.devices[di as usize];
        let kind = self.st.points[pi as usize].kind;
        match kind {
            PointKind::InletTemp => d.temp = Some((now, v)),
            _ => d.rh = Some((now, v)),
        }
        let (Some((tt, t)), Some((th, rh))) = (d.temp, d.rh) else { return };
        if now.since(tt) > DEW_POINT_PAIRING || now.since(th) > DEW_POINT_PAIRING {
            return;
        }
        let Some(dp) = dew_point_c(t, rh) else { return };
        let dpi = self.point_or_new(di, "dew_point", None, |d| {
            let (point, metric) = (PointId::new("dew_point"), Metric::new("dew_point_c"));
            PointState::new(d, point, None, metric, arcstr::literal!("°C"), PointKind::DewPoint)
        });
        let rules = self.rules(dpi);
        self.st.points[dpi as usize].last = Some((now, dp));
        if let Some(slot) = rules.rollup {
            self.rollup_add(now, slot.get(), dp);
        }
        self.evaluate(now, dpi, dp, &rules);
    }

    /// A+B redundancy: per phase label, the two feeds together must stay under what one
    /// breaker carries alone, so a failover cannot trip the survivor.
    fn redundancy_input(&mut self, now: Timestamp, pi: u32) {
        let p = &self.st.points[pi as usize];
        let Some(rack) = p.rack.clone() else { return };
        let Some(feeds) = self.ix.feeds.get(&rack).cloned() else { return };
        let label = p.label.clone();
        let point = p.point.clone();
        let latest = |dev: &DeviceId, this: &Self| -> Option<f64> {
            let dix = this.devices.get(dev.as_str())?;
            let di = dix.state as usize;
            if this.st.devices[di].down {
                return None;
            }
            let qi = this.find(
                key_hash(dev.as_str(), point.as_str(), label.as_deref()),
                dev.as_str(),
                point.as_str(),
                label.as_deref(),
            )?;
            this.st.points[qi as usize].last.map(|l| l.1)
        };
        let (Some(a), Some(b)) = (latest(&feeds.a, self), latest(&feeds.b, self)) else { return };
        let Some(dix) = self.devices.get(feeds.a.as_str()) else { return };
        let di = dix.state;
        let rpi = self.point_or_new(di, "ab_redundancy", label.as_deref(), |d| {
            let (point, metric) = (PointId::new("ab_redundancy"), Metric::new("phase_current_a"));
            let p = PointState::new(d, point, label.clone(), metric, arcstr::literal!("A"), PointKind::Redundancy);
            PointState { feed_b: Some(feeds.b.clone()), ..p }
        });
        let rules = self.rules(rpi);
        let sum = a + b;
        self.st.points[rpi as usize].last = Some((now, sum));
        self.evaluate(now, rpi, sum, &rules);
    }

    fn cooling_alarm_input(&mut self, now: Timestamp, di: u32, v: f64) {
        let d = &mut self.st.devices[di as usize];
        let is_cooling = self.ix.meta.get(d.id.as_str()).is_some_and(|m| m.is_cooling_unit);
        if !is_cooling {
            return;
        }
        let alarm = v > 0.0;
        match (alarm, d.in_alarm) {
            (true, None) => {
                d.in_alarm = Some(now);
                let zone = d.zone.clone();
                if let Some(ii) =
                    self.st.incidents.iter().position(|i| i.zone == zone && i.category == Category::Thermal)
                {
                    self.attach_probable_cause(now, ii);
                }
            }
            (false, Some(_)) => d.in_alarm = None,
            _ => {}
        }
    }

    /// Runs every timer due at `now`.
    fn advance(&mut self, now: Timestamp) {
        self.st.advanced_at = Some(now);
        self.incident_timers(now);
        self.pattern_timers(now);
        self.rollup_timers(now);
    }
}

/// Hash of a point's identity for the hot-path lookup.
#[inline]
fn key_hash(device: &str, point: &str, label: Option<&str>) -> u64 {
    use std::hash::Hasher;
    let mut h = state::FxHasher::default();
    h.write(device.as_bytes());
    h.write_u8(0xff);
    h.write(point.as_bytes());
    h.write_u8(0xff);
    if let Some(l) = label {
        h.write(l.as_bytes());
    }
    h.finish()
}

fn comms_key(device: &DeviceId) -> MemberKey {
    MemberKey { device: device.clone(), point: PointId::new("comms"), label: None, slot: Slot::Comms }
}

fn comms_breach(d: &DeviceState, now: Timestamp) -> Breach {
    Breach {
        device: d.id.clone(),
        point: PointId::new("comms"),
        label: None,
        metric: Metric::new("comms"),
        value: None,
        unit: String::new(),
        threshold: None,
        severity: crate::model::Severity::Warning,
        rack: d.rack.clone(),
        since: now,
        cleared_at: None,
        rule: RuleKind::Comms.as_str().to_owned(),
        peak: None,
        clears_at: None,
    }
}

/// Incident category of a breach. Metrics with no category of their own (a custom metric
/// given thresholds) are filed under `power`, the category of the electrical quantities
/// such custom points usually are.
fn category_of(p: &PointState, rule: RuleKind) -> Category {
    match rule {
        RuleKind::Breaker | RuleKind::Redundancy => Category::Power,
        RuleKind::Comms => Category::Comms,
        RuleKind::Alarm => Category::Cooling,
        _ => Category::of_metric(p.metric.as_str()).unwrap_or(Category::Power),
    }
}

/// The slot of `t` in `known`, added if new (a linear scan: a site has a few dozen distinct
/// thresholds, and a point's are resolved once per configuration).
fn shared(known: &mut Vec<Arc<Threshold>>, t: Threshold) -> Ix {
    if let Some(k) = known.iter().position(|k| **k == t) {
        return Ix::new(k as u32);
    }
    known.push(Arc::new(t));
    Ix::new(known.len() as u32 - 1)
}
