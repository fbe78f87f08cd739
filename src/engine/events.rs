//! What the engine emits: incident events, pattern signals and zone rollups.
//!
//! These structs serialize to the payload fields of DESIGN section 5 (the outbox adds the
//! envelope: schema, site, msg_id, seq, created_at). Field names are the NOC's contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Category, DeviceId, Metric, PointId, RackId, Severity, Timestamp, ZoneId};

/// Everything the engine can emit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Incident(IncidentEvent),
    Pattern(PatternEvent),
    Rollup(RollupEvent),
}

impl Event {
    pub fn zone(&self) -> &ZoneId {
        match self {
            Event::Incident(e) => &e.zone,
            Event::Pattern(e) => &e.zone,
            Event::Rollup(e) => &e.zone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentEventKind {
    Opened,
    Updated,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub event: IncidentEventKind,
    /// Stable and unique per site, e.g. `fra1-hall1-b-thermal-20261102T1405`.
    pub incident_id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub severity: Severity,
    pub opened_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    pub racks: Vec<RackId>,
    /// Current (or, on resolved, last known) members.
    pub breaches: Vec<Breach>,
    /// Worst value seen per metric during the incident.
    pub peak: BTreeMap<Metric, PeakValue>,
    #[serde(default)]
    pub context: IncidentContext,
    /// The whole timeline; present on `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronicle: Option<Vec<ChronicleEntry>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub device: DeviceId,
    pub point: PointId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub metric: Metric,
    /// Latest value (null for a comms breach).
    pub value: Option<f64>,
    pub unit: String,
    /// The bound that was crossed.
    pub threshold: Option<f64>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackId>,
    pub since: Timestamp,
    /// Set when the member has cleared but the incident is still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Timestamp>,
    /// Which rule: `high`, `low`, `rise`, `breaker`, `redundancy`, `comms`, `alarm`.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakValue {
    pub value: f64,
    pub unit: String,
    pub device: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackId>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RackLoad {
    pub rack: RackId,
    /// Rack power now (sum of its PDUs), watts.
    pub power_w: f64,
    /// Median over the baseline window, watts.
    pub baseline_w: f64,
    /// (now - baseline) / baseline, in percent.
    pub change_pct: f64,
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChronicleEntry {
    pub at: Timestamp,
    /// `opened`, `breach_joined`, `breach_cleared`, `breach_returned`, `severity_changed`,
    /// `rack_added`, `context`, `pattern`, `resolved`.
    pub what: String,
    /// Human-readable detail, e.g. "inlet_temp_c 28.4 °C > 27 on sensor-b07 (B07)".
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternState {
    Active,
    Updated,
    Cleared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternTrigger {
    Recurrence,
    MajorIncident,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternEvent {
    pub state: PatternState,
    pub pattern_id: String,
    pub zone: ZoneId,
    /// The zone and the adjacent zones whose incidents are involved.
    pub zones: Vec<ZoneId>,
    pub category: Category,
    pub trigger: PatternTrigger,
    pub occurrences: u32,
    /// The rolling window, humane (e.g. "30d").
    pub window: String,
    pub incident_ids: Vec<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub racks: Vec<RackId>,
    /// Where occurrences cluster, e.g. "14:00-17:00 UTC, 4 of 4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_of_day: Option<String>,
    pub summary: String,
}

/// Per-zone min/avg/max per metric over one rollup interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupEvent {
    pub zone: ZoneId,
    pub from: Timestamp,
    pub to: Timestamp,
    pub metrics: Vec<RollupMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupMetric {
    pub metric: Metric,
    pub unit: String,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub count: u64,
}

/// Counters for `health`: how much noise the engine absorbed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseCounters {
    /// Readings that crossed a bound (before `for` debounce and hysteresis).
    pub raw_crossings: u64,
    /// Crossings that held long enough to become breaches.
    pub breaches: u64,
    pub incidents_opened: u64,
    pub incident_events: u64,
    pub pattern_signals: u64,
}
