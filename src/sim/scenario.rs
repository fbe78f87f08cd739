//! The scenario: what every simulated point reads at a given simulated time.
//!
//! A value is a per-metric facility baseline (overridable per device group), a fixed
//! per-device offset, a gentle daily swing peaking mid-afternoon, smooth noise, and the
//! excursions active at that instant (`add` on top, `percent` scaling the baseline). Noise and
//! offsets come from an RNG seeded by the config's seed and the (device, point, row) slot, so
//! the same config gives the same values at the same simulated time: `value_at` is a pure
//! function, tested directly, and a 30-day scenario can be sampled without waiting for it.
//!
//! `SimClock` maps wall-clock time to simulated time (`speed` simulated seconds per second, or
//! slower through the excursions and faster between them);
//! `drive` recomputes every value into `SimValues` each tick, which is all the Modbus and SNMP
//! servers read.

use std::f64::consts::PI;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{DeviceId, Metric, PointId, Timestamp};
use crate::profiles::Profile;
use crate::profiles::snmp::SnmpTarget;
use crate::sim::config::{Effect, SimSettings};
use crate::sim::{SimFault, SimValues};

/// Simulated minutes between two independent noise samples (values in between interpolate,
/// so readings wander instead of jumping).
const NOISE_STEP_MS: i64 = 5 * 60_000;

/// How a metric behaves around its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricModel {
    pub base: f64,
    /// Fixed per-device/row offset amplitude (devices differ a little).
    pub spread: f64,
    /// Noise amplitude.
    pub noise: f64,
    /// Daily swing amplitude, peaking at 15:00 UTC.
    pub diurnal: f64,
    pub kind: Kind,
    pub min: f64,
    pub max: f64,
}

/// Shape of a metric over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level that wanders around its baseline.
    Level,
    /// A counter that grows (energy): `base` per simulated hour.
    Counter,
    /// A 0/1 flag that is 0 unless an excursion sets it.
    Flag,
    /// Seconds since the simulated device booted.
    Uptime,
}

impl MetricModel {
    const fn level(base: f64, spread: f64, noise: f64, diurnal: f64, min: f64, max: f64) -> Self {
        Self { base, spread, noise, diurnal, kind: Kind::Level, min, max }
    }

    /// The facility defaults: a healthy data hall (inlets ~22.5 °C, well under the ASHRAE
    /// 27 °C recommended bound; rack PDUs around 1.7 kW a feed).
    pub fn for_metric(metric: &str) -> Self {
        const INF: f64 = f64::INFINITY;
        match metric {
            "inlet_temp_c" => Self::level(22.5, 0.8, 0.15, 0.6, -40.0, 90.0),
            "outlet_temp_c" => Self::level(34.0, 1.5, 0.3, 1.0, -40.0, 90.0),
            "supply_air_temp_c" => Self::level(18.0, 0.5, 0.1, 0.3, -40.0, 90.0),
            "return_air_temp_c" => Self::level(29.0, 1.0, 0.2, 0.8, -40.0, 90.0),
            "dew_point_c" => Self::level(9.0, 0.5, 0.1, 0.2, -40.0, 40.0),
            "humidity_pct" => Self::level(45.0, 3.0, 0.5, 2.0, 0.0, 100.0),
            "fan_speed_pct" => Self::level(60.0, 5.0, 1.0, 5.0, 0.0, 100.0),
            "feed_load_pct" => Self::level(40.0, 5.0, 1.0, 3.0, 0.0, 100.0),
            "phase_current_a" => Self::level(7.5, 1.0, 0.15, 0.4, 0.0, INF),
            "outlet_current_a" => Self::level(0.8, 0.3, 0.05, 0.05, 0.0, INF),
            "voltage_v" => Self::level(230.0, 2.0, 0.5, 0.0, 0.0, INF),
            "power_w" => Self::level(1700.0, 200.0, 25.0, 80.0, 0.0, INF),
            "energy_kwh" => {
                Self { base: 1.7, spread: 0.2, noise: 0.0, diurnal: 0.0, kind: Kind::Counter, min: 0.0, max: INF }
            }
            "alarm" => Self { base: 0.0, spread: 0.0, noise: 0.0, diurnal: 0.0, kind: Kind::Flag, min: 0.0, max: 1.0 },
            "uptime_s" => {
                Self { base: 0.0, spread: 0.0, noise: 0.0, diurnal: 0.0, kind: Kind::Uptime, min: 0.0, max: INF }
            }
            m if m.ends_with("_temp_c") => Self::for_metric("inlet_temp_c"),
            m if m.ends_with("_pct") => Self::level(50.0, 5.0, 1.0, 2.0, 0.0, 100.0),
            m if m.ends_with("_current_a") || m.ends_with("_a") => Self::level(5.0, 0.5, 0.1, 0.3, 0.0, INF),
            m if m.ends_with("_v") => Self::for_metric("voltage_v"),
            m if m.ends_with("_w") || m.ends_with("_va") => Self::for_metric("power_w"),
            m if m.ends_with("_kwh") => Self::for_metric("energy_kwh"),
            m if m.ends_with("_hz") => Self::level(50.0, 0.0, 0.02, 0.0, 0.0, INF),
            _ => Self::level(0.0, 0.0, 0.0, 0.0, -INF, INF),
        }
    }
}

/// One value a simulated device serves, precomputed so a tick only does arithmetic.
#[derive(Debug, Clone)]
struct Slot {
    device: DeviceId,
    point: PointId,
    metric: Metric,
    row: u32,
    model: MetricModel,
    /// Seeds this slot's noise samples.
    key: u64,
    /// Fixed offset from the baseline, already scaled by `spread`.
    offset: f64,
    /// Indexes of the value excursions that touch this slot.
    excursions: Vec<usize>,
}

/// Values of every simulated (device, point, row) as a function of simulated time.
#[derive(Debug, Clone)]
pub struct Scenario {
    settings: Arc<SimSettings>,
    slots: Vec<Slot>,
    /// Per device: indexes of fault excursions that touch it.
    faults: Vec<(DeviceId, Vec<usize>)>,
    /// Midnight UTC of the start date: day 0.
    day0: Timestamp,
}

impl Scenario {
    /// Precomputes every (device, point, row) slot of the settings and the excursions that
    /// touch it.
    pub fn new(settings: Arc<SimSettings>) -> Self {
        let day0 = Timestamp(settings.start.as_millis().div_euclid(Timestamp::MS_PER_DAY) * Timestamp::MS_PER_DAY);
        let mut slots = Vec::new();
        let mut faults = Vec::new();
        for d in &settings.devices {
            let points: Vec<(PointId, Metric, Vec<u32>)> = match &d.profile {
                Profile::Modbus(p) => p.points.iter().map(|pt| (pt.id.clone(), pt.metric.clone(), vec![0])).collect(),
                Profile::Snmp(p) => p
                    .points
                    .iter()
                    .map(|pt| {
                        let rows = match &pt.target {
                            SnmpTarget::Scalar(_) => vec![0],
                            SnmpTarget::Column { rows, .. } if !rows.is_empty() => {
                                rows.iter().filter_map(|r| r.parse::<u32>().ok()).collect()
                            }
                            SnmpTarget::Column { .. } => (1..=d.rows).collect(),
                        };
                        (pt.id.clone(), pt.metric.clone(), rows)
                    })
                    .collect(),
            };
            for (point, metric, rows) in points {
                let mut model = MetricModel::for_metric(metric.as_str());
                if let Some(b) = d.baseline.get(&metric) {
                    model.base = *b;
                }
                let excursions = settings
                    .excursions
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| {
                        x.target.matches(d)
                            && match &x.effect {
                                Effect::Add { metrics, .. } | Effect::Percent { metrics, .. } => {
                                    metrics.contains(&metric)
                                }
                                Effect::Fault(_) => false,
                            }
                    })
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>();
                for row in rows {
                    let key = slot_key(settings.seed, d.id.as_str(), point.as_str(), row);
                    let offset = unit_noise(key, u64::MAX) * model.spread;
                    slots.push(Slot {
                        device: d.id.clone(),
                        point: point.clone(),
                        metric: metric.clone(),
                        row,
                        model,
                        key,
                        offset,
                        excursions: excursions.clone(),
                    });
                }
            }
            let device_faults: Vec<usize> = settings
                .excursions
                .iter()
                .enumerate()
                .filter(|(_, x)| matches!(x.effect, Effect::Fault(_)) && x.target.matches(d))
                .map(|(i, _)| i)
                .collect();
            faults.push((d.id.clone(), device_faults));
        }
        Self { settings, slots, faults, day0 }
    }

    /// The settings this scenario was built from.
    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    /// Number of (device, point, row) values computed per tick.
    pub fn value_count(&self) -> usize {
        self.slots.len()
    }

    /// Simulated day number of `at` (0 = the start date).
    pub fn day_of(&self, at: Timestamp) -> i64 {
        (at.as_millis() - self.day0.as_millis()).div_euclid(Timestamp::MS_PER_DAY)
    }

    /// The instant `hh:mm` UTC of simulated day `day`.
    pub fn time_at(&self, day: i64, hh: u32, mm: u32) -> Timestamp {
        Timestamp(self.day0.as_millis() + day * Timestamp::MS_PER_DAY + i64::from(hh * 60 + mm) * 60_000)
    }

    /// The value `device` serves for `point` (`row` 0 for scalars, 1.. for table rows) at
    /// simulated time `at`; `None` if the device has no such point or row.
    pub fn value_at(&self, device: &str, point: &str, row: u32, at: Timestamp) -> Option<f64> {
        self.slots
            .iter()
            .find(|s| s.device.as_str() == device && s.point.as_str() == point && s.row == row)
            .map(|s| self.compute(s, at))
    }

    /// The misbehaviour `device` shows at `at` (the first active fault excursion wins).
    pub fn fault_at(&self, device: &str, at: Timestamp) -> SimFault {
        self.faults.iter().find(|(id, _)| id.as_str() == device).map_or(SimFault::None, |(_, xs)| self.fault_of(xs, at))
    }

    fn fault_of(&self, excursions: &[usize], at: Timestamp) -> SimFault {
        let ms = at.as_millis() - self.day0.as_millis();
        for &i in excursions {
            let x = &self.settings.excursions[i];
            if let Effect::Fault(f) = x.effect
                && x.schedule.activity(ms) > 0.0
            {
                return f;
            }
        }
        SimFault::None
    }

    fn compute(&self, s: &Slot, at: Timestamp) -> f64 {
        let m = &s.model;
        let since_start_h = at.as_millis().saturating_sub(self.settings.start.as_millis()) as f64 / 3_600_000.0;
        match m.kind {
            // Devices booted ten days before the simulation started.
            Kind::Uptime => return (since_start_h * 3600.0 + 864_000.0).max(0.0).floor(),
            // A meter that has run for a while; grows with the (per-device) load.
            Kind::Counter => return ((m.base + s.offset) * (since_start_h + 24.0 * 365.0)).max(0.0),
            Kind::Level | Kind::Flag => {}
        }
        let ms = at.as_millis() - self.day0.as_millis();
        let hour = ms.rem_euclid(Timestamp::MS_PER_DAY) as f64 / 3_600_000.0;
        let mut level = m.base + s.offset + m.diurnal * (2.0 * PI * (hour - 15.0) / 24.0).cos();
        let mut added = 0.0;
        for &i in &s.excursions {
            let x = &self.settings.excursions[i];
            let a = x.schedule.activity(ms);
            if a <= 0.0 {
                continue;
            }
            match &x.effect {
                Effect::Add { delta, .. } => added += delta * a,
                Effect::Percent { pct, .. } => level *= 1.0 + pct / 100.0 * a,
                Effect::Fault(_) => {}
            }
        }
        let noise = if m.noise > 0.0 {
            let step = ms.div_euclid(NOISE_STEP_MS);
            let frac = ms.rem_euclid(NOISE_STEP_MS) as f64 / NOISE_STEP_MS as f64;
            let (a, b) = (unit_noise(s.key, step as u64), unit_noise(s.key, (step + 1) as u64));
            (a + (b - a) * frac) * m.noise
        } else {
            0.0
        };
        let v = (level + added + noise).clamp(m.min, m.max);
        if m.kind == Kind::Flag { v.round() } else { v }
    }

    /// Writes every value and fault for simulated time `at` into `values`.
    pub fn apply(&self, at: Timestamp, values: &SimValues) {
        for s in &self.slots {
            values.set(&s.device, &s.point, s.row, self.compute(s, at));
        }
        for (id, xs) in &self.faults {
            if !xs.is_empty() {
                values.set_fault(id, self.fault_of(xs, at));
            }
        }
    }

    /// The stretches where windowed excursions are active between `from` and `to`, each widened
    /// by `margin` on both sides and merged where they overlap: what a focused `SimClock`
    /// should slow down for.
    pub fn occurrences(&self, from: Timestamp, to: Timestamp, margin: Duration) -> Vec<(Timestamp, Timestamp)> {
        let margin = margin.as_millis() as i64;
        let (d0, d1) = (self.day_of(from) - 1, self.day_of(to) + 1);
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for x in &self.settings.excursions {
            let Some((f, t)) = x.schedule.window else { continue };
            let len = (i64::from(t) - i64::from(f)).rem_euclid(1440) * 60_000;
            for day in d0..=d1 {
                if x.schedule.on_day(day) {
                    let a = self.day0.as_millis() + day * Timestamp::MS_PER_DAY + i64::from(f) * 60_000;
                    spans.push((a - margin, a + len + margin));
                }
            }
        }
        spans.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
            .into_iter()
            .filter(|(a, b)| *b > from.as_millis() && *a < to.as_millis())
            .map(|(a, b)| (Timestamp(a), Timestamp(b)))
            .collect()
    }

    /// Metric of a slot, for tests and tools that list what is served.
    pub fn points(&self) -> impl Iterator<Item = (&DeviceId, &PointId, &Metric, u32)> {
        self.slots.iter().map(|s| (&s.device, &s.point, &s.metric, s.row))
    }
}

/// Maps wall-clock time since start to simulated time.
///
/// Either one constant speed (`new`), or piecewise (`focused`): slower through the stretches
/// that matter (excursions, where the agent must see each reading) and much faster through the
/// quiet days between them, so that weeks of scenario fit a two-minute demo. Simulated time is
/// continuous and strictly increasing either way.
#[derive(Debug, Clone)]
pub struct SimClock {
    /// (wall seconds since origin, simulated ms at that instant, speed), by wall time.
    segments: Arc<Vec<Segment>>,
    origin: tokio::time::Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    wall_s: f64,
    sim_ms: f64,
    speed: f64,
}

impl SimClock {
    /// A clock reading `start` now and running `speed` times faster than the wall clock.
    pub fn new(start: Timestamp, speed: f64) -> Self {
        Self::from_segments(vec![Segment { wall_s: 0.0, sim_ms: start.as_millis() as f64, speed: speed.max(1e-9) }])
    }

    /// A clock that runs from `start` to `end` in about `wall`, spending `focus_share` (0..1) of
    /// that wall time inside the `focus` stretches and the rest in between. After `end` it keeps
    /// the quiet speed.
    pub fn focused(
        start: Timestamp,
        end: Timestamp,
        focus: &[(Timestamp, Timestamp)],
        wall: Duration,
        focus_share: f64,
    ) -> Self {
        let total = (end.as_millis() - start.as_millis()).max(1) as f64;
        let wall_s = wall.as_secs_f64().max(1e-3);
        // Clip and order the focus stretches to [start, end].
        let mut spans: Vec<(f64, f64)> = focus
            .iter()
            .map(|(a, b)| (a.as_millis().max(start.as_millis()) as f64, b.as_millis().min(end.as_millis()) as f64))
            .filter(|(a, b)| b > a)
            .collect();
        spans.sort_by(|x, y| x.0.total_cmp(&y.0));
        let focus_ms: f64 = spans.iter().map(|(a, b)| b - a).sum();
        let quiet_ms = total - focus_ms;
        let share = focus_share.clamp(0.05, 0.95);
        if focus_ms <= 0.0 || quiet_ms <= 0.0 {
            return Self::new(start, total / 1000.0 / wall_s);
        }
        let focus_speed = focus_ms / 1000.0 / (share * wall_s);
        let quiet_speed = quiet_ms / 1000.0 / ((1.0 - share) * wall_s);
        let mut segments = Vec::new();
        let (mut sim, mut wall_at) = (start.as_millis() as f64, 0.0);
        let mut push = |from: f64, to: f64, speed: f64, sim: &mut f64, wall_at: &mut f64| {
            if to > from {
                segments.push(Segment { wall_s: *wall_at, sim_ms: from, speed });
                *wall_at += (to - from) / 1000.0 / speed;
                *sim = to;
            }
        };
        for (a, b) in spans {
            let a = a.max(sim);
            push(sim, a, quiet_speed, &mut sim, &mut wall_at);
            push(a, b, focus_speed, &mut sim, &mut wall_at);
        }
        push(sim, end.as_millis() as f64, quiet_speed, &mut sim, &mut wall_at);
        segments.push(Segment { wall_s: wall_at, sim_ms: end.as_millis() as f64, speed: quiet_speed });
        Self::from_segments(segments)
    }

    fn from_segments(segments: Vec<Segment>) -> Self {
        Self { segments: Arc::new(segments), origin: tokio::time::Instant::now() }
    }

    /// Simulated time after `wall` of wall-clock time.
    pub fn at_elapsed(&self, wall: Duration) -> Timestamp {
        let w = wall.as_secs_f64();
        // `segments` is never empty: every constructor pushes at least one.
        let seg = self.segments.iter().rev().find(|s| s.wall_s <= w).unwrap_or(&self.segments[0]);
        let ms = seg.sim_ms + (w - seg.wall_s) * seg.speed * 1000.0;
        Timestamp(ms.clamp(i64::MIN as f64 / 2.0, i64::MAX as f64 / 2.0) as i64)
    }

    /// Wall-clock time after which the clock reads `at` (zero for times before its start).
    pub fn wall_until(&self, at: Timestamp) -> Duration {
        let t = at.as_millis() as f64;
        let seg = self.segments.iter().rev().find(|s| s.sim_ms <= t).unwrap_or(&self.segments[0]);
        let w = seg.wall_s + (t - seg.sim_ms) / 1000.0 / seg.speed;
        Duration::from_secs_f64(w.max(0.0))
    }

    /// Simulated time now.
    pub fn now(&self) -> Timestamp {
        self.at_elapsed(self.origin.elapsed())
    }

    /// The speed in force after `wall` of wall-clock time.
    pub fn speed_at(&self, wall: Duration) -> f64 {
        let w = wall.as_secs_f64();
        self.segments.iter().rev().find(|s| s.wall_s <= w).unwrap_or(&self.segments[0]).speed
    }
}

/// The agent runs the demo on this clock (`Clock::simulated`).
impl crate::agent::SimulatedTime for SimClock {
    fn now(&self) -> Timestamp {
        self.at_elapsed(self.origin.elapsed())
    }

    fn wait_until(&self, at: Timestamp) -> Duration {
        // `wall_until` counts from the clock's origin; the agent waits from now.
        self.wall_until(at).saturating_sub(self.origin.elapsed())
    }
}

/// Recomputes every value into `values` each `tick` until `cancel`; logs the simulated time
/// about every 10 wall seconds.
pub async fn drive(
    scenario: Arc<Scenario>,
    clock: SimClock,
    values: Arc<SimValues>,
    tick: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_log = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = clock.now();
        scenario.apply(now, &values);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = tokio::time::Instant::now();
            tracing::info!(sim_time = %now, day = scenario.day_of(now), "sim clock");
        }
    }
}

/// A 64-bit key for one (seed, device, point, row) slot (FNV-1a, then mixed).
fn slot_key(seed: u64, device: &str, point: &str, row: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in device.bytes().chain([0xff]).chain(point.bytes()).chain([0xfe]).chain(row.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A deterministic number in [-1, 1) for (key, step), from an RNG seeded by both.
fn unit_noise(key: u64, step: u64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(key ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.f64() * 2.0 - 1.0
}

/// A clock that runs the scenario from its start to an hour after its last scheduled
/// excursion in about `wall`, spending 60 % of it inside excursions (widened by 30 minutes).
pub fn fitted_clock(scenario: &Scenario, wall: Duration) -> (SimClock, String) {
    let start = scenario.settings().start;
    let horizon = start.saturating_add(Duration::from_secs(366 * 86_400));
    let margin = Duration::from_secs(30 * 60);
    let occ = scenario.occurrences(start, horizon, margin);
    let end = occ.last().map_or(start.saturating_add(Duration::from_secs(86_400)), |(_, b)| {
        b.saturating_add(Duration::from_secs(3600))
    });
    let clock = SimClock::focused(start, end, &occ, wall, 0.6);
    let focus_speed = occ
        .first()
        .map(|(a, b)| clock.speed_at(clock.wall_until(Timestamp((a.as_millis() + b.as_millis()) / 2))))
        .unwrap_or(0.0);
    let line = format!(
        "  fitted  {} to {} (day {}) in {} s: x{:.0} through {} excursion stretches, x{:.0} between",
        start,
        end,
        scenario.day_of(end),
        wall.as_secs(),
        focus_speed,
        occ.len(),
        clock.speed_at(Duration::ZERO),
    );
    (clock, line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::load_str;
    use std::path::Path;

    const SCENARIO: &str = r#"
[sim]
start = "2026-11-01T00:00:00Z"
seed = 11

[[sim.devices]]
profile = "modbus-th-probe"
ids = ["th-b07", "th-a01"]
zone = "hall1-b"
racks = ["B07", "B01"]
port = 15020

[[sim.devices]]
profile = "modbus-th-probe"
ids = ["th-c02"]
zone = "hall1-c"
port = 15021

[[sim.excursions]]
name = "afternoon heat"
zone = "hall1-b"
metric = "inlet_temp_c"
add = 6.0
from = "14:00"
to = "16:30"
first_day = 0
every_days = 3

[[sim.excursions]]
name = "B07 load"
rack = "B07"
metric = "inlet_temp_c"
percent = 35.0
first_day = 10

[[sim.excursions]]
name = "probe dies"
device = "th-c02"
fault = "silent"
from = "09:00"
to = "09:20"
days = [15]
"#;

    fn scenario() -> Scenario {
        let s = load_str(Path::new("s.toml"), SCENARIO).unwrap().settings;
        Scenario::new(Arc::new(s))
    }

    #[test]
    fn heat_excursion_is_active_at_15_00_of_day_3_and_not_at_13_00() {
        let sc = scenario();
        let v = |day, h, m| sc.value_at("th-b07", "temperature", 0, sc.time_at(day, h, m)).unwrap();
        let base_13 = v(3, 13, 0);
        let hot_15 = v(3, 15, 0);
        let quiet_15 = v(4, 15, 0);
        assert!((21.0..24.5).contains(&base_13), "baseline {base_13}");
        assert!(hot_15 > 27.0, "inlet at 15:00 of day 3 is {hot_15}, expected above the 27 °C warning");
        assert!((hot_15 - quiet_15 - 6.0).abs() < 0.8, "excursion adds about 6: {hot_15} vs {quiet_15}");
        assert!(v(3, 16, 30) < 25.0, "ends at 16:30");
        // Other zones are untouched.
        let c = sc.value_at("th-c02", "temperature", 0, sc.time_at(3, 15, 0)).unwrap();
        assert!(c < 25.0, "hall1-c stays cool: {c}");
    }

    #[test]
    fn load_step_applies_from_day_10_on_the_rack_only() {
        let sc = scenario();
        let v = |dev, day| sc.value_at(dev, "temperature", 0, sc.time_at(day, 10, 0)).unwrap();
        let before = v("th-b07", 9);
        let after = v("th-b07", 10);
        assert!((after / before - 1.35).abs() < 0.03, "B07 went from {before} to {after}");
        assert!((v("th-a01", 10) / v("th-a01", 9) - 1.0).abs() < 0.05, "B01 is not stepped");
    }

    #[test]
    fn silent_fault_between_t1_and_t2() {
        let sc = scenario();
        assert_eq!(sc.fault_at("th-c02", sc.time_at(15, 9, 10)), SimFault::Silent);
        assert_eq!(sc.fault_at("th-c02", sc.time_at(15, 9, 20)), SimFault::None);
        assert_eq!(sc.fault_at("th-c02", sc.time_at(14, 9, 10)), SimFault::None);
        assert_eq!(sc.fault_at("th-b07", sc.time_at(15, 9, 10)), SimFault::None);
    }

    #[test]
    fn same_seed_same_values_and_noise_is_smooth() {
        let a = scenario();
        let b = scenario();
        let t = a.time_at(2, 11, 7);
        assert_eq!(a.value_at("th-b07", "temperature", 0, t), b.value_at("th-b07", "temperature", 0, t));
        // Two devices differ (offsets), and consecutive seconds differ only a little.
        assert_ne!(a.value_at("th-b07", "temperature", 0, t), a.value_at("th-a01", "temperature", 0, t));
        let next = Timestamp(t.as_millis() + 1000);
        let d = (a.value_at("th-b07", "temperature", 0, t).unwrap()
            - a.value_at("th-b07", "temperature", 0, next).unwrap())
        .abs();
        assert!(d < 0.05, "one simulated second moved the value by {d}");
        assert_eq!(a.value_at("th-b07", "nope", 0, t), None);
    }

    #[test]
    fn apply_writes_every_slot_and_faults_into_sim_values() {
        let sc = scenario();
        let values = SimValues::new();
        let t = sc.time_at(15, 9, 5);
        sc.apply(t, &values);
        assert_eq!(sc.value_count(), 6, "3 probes x (temperature, humidity)");
        let dev = DeviceId::new("th-b07");
        let pt = PointId::new("temperature");
        assert_eq!(values.get(&dev, &pt, 0), sc.value_at("th-b07", "temperature", 0, t));
        assert_eq!(values.fault(&DeviceId::new("th-c02")), SimFault::Silent);
        sc.apply(sc.time_at(15, 10, 0), &values);
        assert_eq!(values.fault(&DeviceId::new("th-c02")), SimFault::None);
    }

    #[test]
    fn models_stay_in_physical_ranges() {
        for m in ["humidity_pct", "fan_speed_pct", "phase_current_a", "alarm", "energy_kwh", "uptime_s"] {
            let model = MetricModel::for_metric(m);
            assert!(model.min <= model.base && model.base <= model.max, "{m}");
        }
        assert_eq!(MetricModel::for_metric("alarm").kind, Kind::Flag);
        assert_eq!(MetricModel::for_metric("rack_inlet_temp_c"), MetricModel::for_metric("inlet_temp_c"));
    }

    #[test]
    fn clock_runs_at_speed() {
        let c = SimClock::new(Timestamp(0), 1440.0);
        assert_eq!(c.at_elapsed(Duration::from_secs(60)), Timestamp(Timestamp::MS_PER_DAY));
        assert_eq!(c.wall_until(Timestamp(Timestamp::MS_PER_DAY)), Duration::from_secs(60));
    }

    #[test]
    fn occurrences_list_every_window_merged_with_margins() {
        let sc = scenario();
        let occ = sc.occurrences(sc.time_at(0, 0, 0), sc.time_at(7, 0, 0), Duration::from_secs(30 * 60));
        // Heat on days 0, 3, 6 (13:30-17:00 with margins); the fault is on day 15, outside.
        assert_eq!(
            occ,
            vec![
                (sc.time_at(0, 13, 30), sc.time_at(0, 17, 0)),
                (sc.time_at(3, 13, 30), sc.time_at(3, 17, 0)),
                (sc.time_at(6, 13, 30), sc.time_at(6, 17, 0)),
            ]
        );
    }

    #[test]
    fn focused_clock_fits_the_budget_and_slows_down_in_focus() {
        let sc = scenario();
        let (start, end) = (sc.time_at(0, 0, 0), sc.time_at(7, 0, 0));
        let focus = sc.occurrences(start, end, Duration::from_secs(30 * 60));
        let c = SimClock::focused(start, end, &focus, Duration::from_secs(100), 0.6);
        let end_wall = c.wall_until(end).as_secs_f64();
        assert!((end_wall - 100.0).abs() < 1e-6, "whole run takes {end_wall} s");
        // 3 x 3.5 h of focus in 60 s, the remaining 157.5 h in 40 s.
        let focus_speed = c.speed_at(c.wall_until(sc.time_at(3, 15, 0)));
        let quiet_speed = c.speed_at(c.wall_until(sc.time_at(2, 3, 0)));
        assert!((focus_speed - 3.0 * 3.5 * 3600.0 / 60.0).abs() < 1e-6, "{focus_speed}");
        assert!((quiet_speed - 157.5 * 3600.0 / 40.0).abs() < 1e-6, "{quiet_speed}");
        // Continuous and increasing across segment boundaries, and inverse of wall_until.
        let mut last = Timestamp(i64::MIN);
        for i in 0..=1000 {
            let t = c.at_elapsed(Duration::from_millis(i * 100));
            assert!(t > last, "time went backwards at {i}");
            last = t;
        }
        for t in [sc.time_at(3, 13, 30), sc.time_at(3, 17, 0), sc.time_at(5, 1, 2)] {
            let back = c.at_elapsed(c.wall_until(t));
            assert!((back.as_millis() - t.as_millis()).abs() <= 1, "{t} -> {back}");
        }
    }
}
