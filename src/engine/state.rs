//! The engine's persistent state (`EngineState`) and the plain records it is made of.
//!
//! Everything a restart needs to continue exactly lives here and round-trips through serde:
//! per-point debounce and breach timers, device up/down counters, open incidents with their
//! chronicles, pattern history (bounded by the pattern window), rack load baselines (bounded by
//! the baseline window), rollup accumulators, id counters and events not yet polled. Lookup
//! indexes and resolved thresholds are *not* state: the engine rebuilds them from this and the
//! settings. Collections are vectors (not maps keyed by tuples) so the JSON form is plain.

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};

use arcstr::ArcStr;
use serde::{Deserialize, Serialize};

use super::chronicle::Chronicle;
use super::events::{Breach, Event, IncidentContext, NoiseCounters, PatternEvent, PeakValue};
use super::thresholds::RuleCell;
use crate::model::{Category, DeviceId, Metric, PointId, RackId, Severity, Timestamp, ZoneId};

/// Everything the engine must keep across restarts, as one serde value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {
    #[serde(default)]
    pub(crate) points: Vec<PointState>,
    #[serde(default)]
    pub(crate) devices: Vec<DeviceState>,
    #[serde(default)]
    pub(crate) racks: Vec<RackState>,
    #[serde(default)]
    pub(crate) incidents: Vec<Incident>,
    /// Incident openings within the pattern window, oldest first.
    #[serde(default)]
    pub(crate) history: VecDeque<Occurrence>,
    #[serde(default)]
    pub(crate) patterns: Vec<ActivePattern>,
    #[serde(default)]
    pub(crate) rollups: Vec<RollupAcc>,
    /// Start of the rollup interval being accumulated.
    #[serde(default)]
    pub(crate) rollup_from: Option<Timestamp>,
    #[serde(default)]
    pub(crate) counters: NoiseCounters,
    /// Incidents opened so far at this site; the last part of every incident id.
    #[serde(default)]
    pub(crate) next_incident: u64,
    /// When timers last ran.
    #[serde(default)]
    pub(crate) advanced_at: Option<Timestamp>,
    /// Events produced but not yet taken with `poll_event`.
    #[serde(default)]
    pub(crate) events: VecDeque<Event>,
}

/// The engine state as saved, borrowed from the running engine: it serializes exactly as
/// [`EngineState`] does, without copying the state first (at a few thousand points a state
/// save cloned megabytes, which stayed resident as the daemon's peak memory).
#[derive(Serialize)]
pub struct EngineStateView<'a> {
    pub(crate) points: PointsToSave<'a>,
    pub(crate) devices: &'a Vec<DeviceState>,
    pub(crate) racks: &'a Vec<RackState>,
    pub(crate) incidents: &'a Vec<Incident>,
    pub(crate) history: &'a VecDeque<Occurrence>,
    pub(crate) patterns: &'a Vec<ActivePattern>,
    pub(crate) rollups: &'a Vec<RollupAcc>,
    pub(crate) rollup_from: Option<Timestamp>,
    pub(crate) counters: NoiseCounters,
    pub(crate) next_incident: u64,
    pub(crate) advanced_at: Option<Timestamp>,
    pub(crate) events: &'a VecDeque<Event>,
}

/// The points a save keeps: all but the quiet ones (nothing a restart would miss).
pub struct PointsToSave<'a>(pub(crate) &'a [PointState]);

impl Serialize for PointsToSave<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().filter(|p| !p.is_quiet()))
    }
}

/// What a point measures, as far as the cross-point rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Plain,
    /// `inlet_temp_c`: input of the derived dew point.
    InletTemp,
    /// `humidity_pct`: input of the derived dew point.
    Humidity,
    /// `power_w`: rack load context.
    Power,
    /// `phase_current_a`: A+B redundancy input; rack load where no power is reported.
    PhaseCurrent,
    /// `voltage_v`: with the current, rack load where no power is reported.
    Voltage,
    /// `alarm` (0/1).
    Alarm,
    /// Synthetic: dew point derived from a device's temperature and humidity.
    DewPoint,
    /// Synthetic: sum of a rack's A and B feed currents (one per phase label).
    Redundancy,
}

impl PointKind {
    /// Inputs of the rack load context.
    pub fn is_rack_load(self) -> bool {
        matches!(self, PointKind::Power | PointKind::PhaseCurrent | PointKind::Voltage)
    }

    pub fn of(metric: &str) -> Self {
        match metric {
            "inlet_temp_c" => PointKind::InletTemp,
            "humidity_pct" => PointKind::Humidity,
            "power_w" => PointKind::Power,
            "phase_current_a" => PointKind::PhaseCurrent,
            "voltage_v" => PointKind::Voltage,
            "alarm" => PointKind::Alarm,
            _ => PointKind::Plain,
        }
    }
}

/// One point of one device (or a synthetic point), with the state of each rule on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointState {
    pub device: DeviceId,
    pub point: PointId,
    pub label: Option<ArcStr>,
    pub metric: Metric,
    pub unit: ArcStr,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    pub kind: PointKind,
    /// For a redundancy point, the B feed device (the A feed is `device`).
    #[serde(default)]
    pub feed_b: Option<DeviceId>,
    /// Latest good value.
    pub last: Option<(Timestamp, f64)>,
    #[serde(default)]
    pub level: RuleCell,
    #[serde(default)]
    pub breaker: RuleCell,
    #[serde(default)]
    pub rise: RuleCell,
    /// Rise rule: (time, value) with increasing values, front is the window's minimum. Not
    /// saved: every inlet point keeps some, and saving them made the state (rewritten with
    /// every event batch) 3.6x larger; after a restart the window refills, so a rise already
    /// under way is seen at most `rise_within` later. Boxed: only points with a rise rule keep
    /// a window, and an empty `VecDeque` in every point cost 24 bytes more than a `None`.
    #[serde(skip)]
    #[allow(clippy::box_collection)] // the box is the point: 8 bytes in every point, not 32
    pub rise_samples: Option<Box<VecDeque<(Timestamp, f64)>>>,
    /// Consecutive bad readings of this point since the device's last good one.
    #[serde(default)]
    pub bad_run: u32,
    #[serde(default)]
    pub bad_epoch: u32,
}

impl PointState {
    /// A point of device `d` not seen before: no value yet, every rule idle, no B feed.
    pub fn new(
        d: &DeviceState,
        point: PointId,
        label: Option<ArcStr>,
        metric: Metric,
        unit: ArcStr,
        kind: PointKind,
    ) -> Self {
        PointState {
            device: d.id.clone(),
            point,
            label,
            metric,
            unit,
            zone: d.zone.clone(),
            rack: d.rack.clone(),
            kind,
            feed_b: None,
            last: None,
            level: Default::default(),
            breaker: Default::default(),
            rise: Default::default(),
            rise_samples: Default::default(),
            bad_run: 0,
            bad_epoch: 0,
        }
    }

    /// Nothing here that the point's next reading would not rebuild (the rise window, which
    /// is not saved, refills).
    pub fn is_quiet(&self) -> bool {
        self.level.is_idle() && self.breaker.is_idle() && self.rise.is_idle() && self.bad_run == 0
    }
}

/// One device: reachability and the latest inputs of cross-point rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub id: DeviceId,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    /// Consecutive failed polls (the longest run of bad readings of any of its points).
    pub bad_polls: u32,
    /// Bumped on every good reading after bad ones, which resets points' `bad_run` lazily.
    pub epoch: u32,
    pub down: bool,
    /// When it was reported down.
    #[serde(default)]
    pub down_since: Option<Timestamp>,
    /// Last error a bad reading gave.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub temp: Option<(Timestamp, f64)>,
    #[serde(default)]
    pub rh: Option<(Timestamp, f64)>,
    /// A cooling unit currently reporting an alarm.
    #[serde(default)]
    pub in_alarm: Option<Timestamp>,
}

/// One hour of a rack's power samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the hour (ms since epoch).
    pub hour: i64,
    pub sum_w: f64,
    pub n: u32,
}

/// What a rack's load is measured from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBasis {
    /// Its PDUs report power (watts).
    #[default]
    PowerW,
    /// Some PDUs report current and voltage only: watts as current × voltage.
    CurrentXVoltage,
    /// Some PDUs report current only: amps, against an amps baseline.
    CurrentA,
}

impl LoadBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBasis::PowerW => "power_w",
            LoadBasis::CurrentXVoltage => "current_x_voltage",
            LoadBasis::CurrentA => "current_a",
        }
    }
}

/// A rack's load: hourly means over the baseline window, in the unit of its `basis`
/// (`power_w` and `Bucket::sum_w` hold amps for `CurrentA`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RackState {
    pub id: RackId,
    pub power_w: Option<f64>,
    pub buckets: VecDeque<Bucket>,
    #[serde(default)]
    pub basis: LoadBasis,
    /// When the rack's load was last sampled: one sample per instant, not one per reading (a
    /// poll of a PDU brings dozens of phase readings stamped alike).
    #[serde(skip)]
    pub sampled_at: Option<Timestamp>,
}

/// Which rule of a point a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Level,
    Breaker,
    Rise,
    Comms,
}

/// Identity of an incident member: one rule on one point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberKey {
    pub device: DeviceId,
    pub point: PointId,
    pub label: Option<ArcStr>,
    pub slot: Slot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub key: MemberKey,
    pub breach: Breach,
}

/// An open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub severity: Severity,
    pub opened_at: Timestamp,
    pub racks: Vec<RackId>,
    pub members: Vec<Member>,
    pub peak: std::collections::BTreeMap<Metric, PeakValue>,
    pub context: IncidentContext,
    pub chronicle: Chronicle,
    /// When the last incident event went out (rate limit of `updated`).
    pub last_emit: Timestamp,
    /// Something changed that no event has carried yet.
    pub dirty: bool,
    /// A `major_incident` pattern has been raised for it.
    pub major: bool,
    /// What its last event said, to tell the next `updated` what changed.
    #[serde(default)]
    pub sent: Sent,
}

/// What an incident's last event carried, as far as `changes` compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub severity: Option<Severity>,
    pub racks: Vec<RackId>,
    /// Sensors in breach (device, point, label).
    pub sensors: Vec<(DeviceId, PointId, Option<ArcStr>)>,
    pub peaks: Vec<(Metric, f64)>,
    pub hint: Option<String>,
    pub probable_cause: Option<String>,
}

impl Incident {
    /// When every member has been clear since, the latest clear time; `None` while any is active.
    pub fn all_clear_since(&self) -> Option<Timestamp> {
        let mut latest = Timestamp(i64::MIN);
        for m in &self.members {
            latest = latest.max(m.breach.cleared_at?);
        }
        Some(latest)
    }
}

/// An incident opening, kept for the pattern window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Occurrence {
    pub incident_id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub at: Timestamp,
    pub racks: Vec<RackId>,
    /// The incident's load hint when it opened (for pattern summaries).
    #[serde(default)]
    pub hint: Option<String>,
    /// A `major_incident` pattern was raised for it.
    #[serde(default)]
    pub major: bool,
}

/// A pattern signal that is active, as last emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePattern {
    pub event: PatternEvent,
    /// For `major_incident` patterns: the incident it is about (cleared when it resolves).
    #[serde(default)]
    pub incident: Option<String>,
}

/// Min/avg/max of one metric in one zone over the current rollup interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupAcc {
    pub zone: ZoneId,
    pub metric: Metric,
    pub unit: ArcStr,
    /// `None` while the interval has no reading (JSON has no infinities to start from).
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    pub count: u64,
}

/// FxHash (the rustc hasher): ids are short trusted strings from our own config, so a fast
/// non-DoS-resistant hash is fine and keeps per-reading lookups cheap.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with `FxHasher`.
pub type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
