//! What the engine emits: incident events, pattern signals and zone rollups.
//!
//! These structs serialize to the payload fields of docs/contracts.md#payloads (the outbox adds the
//! envelope: schema, site, msg_id, seq, created_at). Field names are the NOC's contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Category, DeviceId, Metric, PointId, RackId, Severity, Timestamp, ZoneId};

/// Everything the engine can emit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// An incident opened, updated or resolved (`P/S/incidents/Z`).
    Incident(IncidentEvent),
    /// A pattern signal (`P/S/patterns/Z`, retained).
    Pattern(PatternEvent),
    /// A zone summary (`P/S/rollups/Z`).
    Rollup(RollupEvent),
}

impl Event {
    /// The zone the event is about (the last part of its topic).
    pub fn zone(&self) -> &ZoneId {
        match self {
            Event::Incident(e) => &e.zone,
            Event::Pattern(e) => &e.zone,
            Event::Rollup(e) => &e.zone,
        }
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentEventKind {
    /// The first breach of a new incident.
    Opened,
    /// Severity changed (at once) or members, racks or context changed (rate-limited).
    Updated,
    /// Every member clear for `clear_hold`; carries the chronicle.
    Resolved,
}

/// An incident payload (docs/contracts.md#incident), `type` = "incident".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    /// `opened`, `updated` or `resolved`.
    pub event: IncidentEventKind,
    /// Stable and unique per site, e.g. `fra1-hall1-b-thermal-20261102T140500-3` (site, zone,
    /// category, opening time, a per-site counter).
    pub incident_id: String,
    /// The zone all its members are in.
    pub zone: ZoneId,
    /// `thermal`, `humidity`, `power`, `cooling` or `comms`.
    pub category: Category,
    /// The worst current member (kept once all have cleared).
    pub severity: Severity,
    /// When the first breach was confirmed.
    pub opened_at: Timestamp,
    /// When it resolved (on `resolved` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// Racks of its members, in the order they joined.
    pub racks: Vec<RackId>,
    /// Current (or, on resolved, last known) members.
    pub breaches: Vec<Breach>,
    /// Worst value seen per metric during the incident.
    pub peak: BTreeMap<Metric, PeakValue>,
    /// Rack load against baseline, probable cause, a hint line.
    #[serde(default)]
    pub context: IncidentContext,
    /// On `updated`: what changed since the incident's previous event, one short phrase each
    /// (severity, racks added, sensors joined or cleared, new peaks, context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// The whole timeline; present on `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronicle: Option<Vec<ChronicleEntry>>,
}

/// One member of an incident: a rule breached on one point (or a device unreachable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// The device the point belongs to.
    pub device: DeviceId,
    /// The profile point (`comms` for an unreachable device, `dew_point`, `ab_redundancy` for derived ones).
    pub point: PointId,
    /// The table row, e.g. an outlet or phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What is measured, e.g. `inlet_temp_c`.
    pub metric: Metric,
    /// Latest value (null for a comms breach).
    pub value: Option<f64>,
    /// Unit of `value` and `threshold`.
    pub unit: String,
    /// The bound that was crossed.
    pub threshold: Option<f64>,
    /// `warning` or `critical`.
    pub severity: Severity,
    /// The rack the device sits in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackId>,
    /// When the value first crossed (the start of the `for` hold).
    pub since: Timestamp,
    /// Set when the member has cleared but the incident is still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Timestamp>,
    /// Which rule: `high`, `low`, `rise`, `breaker`, `redundancy`, `comms`, `alarm`.
    pub rule: String,
    /// Worst value of this member during the incident (lowest for a `low` rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<f64>,
    /// Present while the value is back inside `threshold` but not yet past the hysteresis:
    /// the breach is clearing and clears once the value passes this bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clears_at: Option<f64>,
}

/// The worst value of one metric during an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakValue {
    /// The value (highest, or lowest for a low-side breach).
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Where it was measured.
    pub device: DeviceId,
    /// The rack of that device, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackId>,
    /// When.
    pub at: Timestamp,
}

/// What helps the NOC understand the incident beyond its members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentContext {
    /// PDU load of the incident's racks now against their baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rack_load: Vec<RackLoad>,
    /// A cooling unit in alarm in the zone, the likely cause of a thermal incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probable_cause: Option<String>,
    /// One line for humans, e.g. "B07 draws 38 % more than its 7-day median".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One rack's load now against its baseline: watts (`power_w`, `baseline_w`), or, where its
/// PDUs report current without power or voltage, amps (`current_a`, `baseline_a`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RackLoad {
    /// The rack.
    pub rack: RackId,
    /// Rack power now (sum of its PDUs), watts; absent when `basis` is `current_a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// Median over the baseline window, watts; absent when `basis` is `current_a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_w: Option<f64>,
    /// (now - baseline) / baseline, in percent.
    pub change_pct: f64,
    /// What the load is measured from: `power_w` (reported power), `current_x_voltage`
    /// (current times voltage where a PDU reports no power) or `current_a` (amps only).
    #[serde(default = "power_basis")]
    pub basis: String,
    /// Rack current now (sum of its PDUs' currents), amps; with `basis` `current_a` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_a: Option<f64>,
    /// Median current over the baseline window, amps; with `basis` `current_a` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_a: Option<f64>,
}

fn power_basis() -> String {
    "power_w".to_owned()
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChronicleEntry {
    /// When it happened.
    pub at: Timestamp,
    /// `opened`, `breach_joined`, `breach_cleared`, `breach_returned`, `severity_changed`,
    /// `rack_added`, `context`, `pattern`, `resolved`; and `truncated` (last, when a very long
    /// incident had more entries than are kept: it says how many were dropped).
    pub what: String,
    /// Human-readable detail, e.g. "inlet_temp_c 28.4 °C > 27 on sensor-b07 (B07)".
    pub detail: String,
    /// The device concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// The metric concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// The value at that moment, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The severity at that moment, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// Lifecycle of a pattern signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternState {
    /// Raised.
    Active,
    /// A further occurrence.
    Updated,
    /// The window holds fewer than `recurrence` again (or the major incident resolved).
    Cleared,
}

/// Why a pattern signal was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternTrigger {
    /// `recurrence` incidents of one category in one zone (and adjacent zones) within `window`.
    Recurrence,
    /// One incident that turned critical, or is still active after `major_after`
    /// (`unreachable_major_after` for unreachable devices).
    MajorIncident,
}

/// A pattern signal payload (docs/contracts.md#pattern), `type` = "pattern".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternEvent {
    /// `active`, `updated` or `cleared`.
    pub state: PatternState,
    /// Stable per zone and category (recurrence) or per incident (major).
    pub pattern_id: String,
    /// The zone the signal is about.
    pub zone: ZoneId,
    /// The zone and the adjacent zones whose incidents are involved.
    pub zones: Vec<ZoneId>,
    /// The incident category that recurs.
    pub category: Category,
    /// `recurrence` or `major_incident`.
    pub trigger: PatternTrigger,
    /// Incidents counted in the window.
    pub occurrences: u32,
    /// The rolling window, humane (e.g. "30d").
    pub window: String,
    /// The incidents counted, oldest first.
    pub incident_ids: Vec<String>,
    /// Opening of the oldest counted incident.
    pub first_seen: Timestamp,
    /// Opening of the newest counted incident (for a major incident: when it was raised).
    pub last_seen: Timestamp,
    /// Racks involved across the counted incidents.
    pub racks: Vec<RackId>,
    /// Where occurrences cluster, e.g. "14:00-17:00 UTC, 4 of 4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_of_day: Option<String>,
    /// One line a human can act on.
    pub summary: String,
}

/// Per-zone min/avg/max per metric over one rollup interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupEvent {
    /// The zone summarised.
    pub zone: ZoneId,
    /// Start of the interval.
    pub from: Timestamp,
    /// End of the interval (exclusive).
    pub to: Timestamp,
    /// One entry per metric with readings in the interval.
    pub metrics: Vec<RollupMetric>,
}

/// Min/avg/max of one metric over a rollup interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupMetric {
    /// The metric.
    pub metric: Metric,
    /// Its unit.
    pub unit: String,
    /// Lowest reading.
    pub min: f64,
    /// Mean of the readings.
    pub avg: f64,
    /// Highest reading.
    pub max: f64,
    /// Readings in the interval.
    pub count: u64,
}

/// Counters for `health`: how much noise the engine absorbed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseCounters {
    /// Readings that crossed a bound (before `for` debounce and hysteresis).
    pub raw_crossings: u64,
    /// Crossings that held long enough to become breaches.
    pub breaches: u64,
    /// Incidents opened.
    pub incidents_opened: u64,
    /// Incident events emitted (opened, updated, resolved).
    pub incident_events: u64,
    /// Pattern events emitted.
    pub pattern_signals: u64,
}
