//! The simulator's TOML: which simulated devices on which loopback ports, and the scenario
//! that drives their values (`hallmonitor sim --config PATH`, `demo`, benchmarks).
//!
//! Parsed like the agent's config: `*Config` types mirror the file (`deny_unknown_fields`,
//! `Spanned` where a mistake needs a position), then everything is checked at once and every
//! problem is reported as `PATH:LINE:COL: message` in one `ConfigError`. The result,
//! `SimSettings`, holds no spans and is what the scenario and the servers are built from.
//!
//! ```toml
//! [sim]
//! speed = 1440                      # simulated seconds per wall second (1440: a day a minute)
//! start = "2026-11-01T00:00:00Z"    # simulated time at start; days count from its midnight
//! seed = 7                          # same seed, same values
//! tick = "1s"                       # how often values are recomputed (wall clock)
//!
//! [[sim.devices]]                   # a group of identical devices
//! profile = "modbus-th-probe"       # built-in profile
//! ids = ["th-b01", "th-b07"]        # or id_prefix = "th-" and count = 200
//! zone = "hall1-b"
//! racks = ["B01", "B07"]            # one per device, or cycled
//! port = 15020                      # one port: Modbus unit ids from first_unit, SNMP
//!                                   # communities = device ids; or base_port: one port each
//!
//! [[sim.excursions]]
//! zone = "hall1-b"                  # or rack = "B07" or device = "th-b07"
//! metrics = ["inlet_temp_c"]
//! add = 6.0                         # or percent = 35.0, or fault = "silent"
//! from = "14:00"                    # daily window (UTC); absent = all day
//! to = "16:30"
//! first_day = 1                     # then every_days, until last_day; or days = [21]
//! every_days = 3
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, Diagnostic, line_col, parse_duration};
use crate::model::{DeviceId, Metric, RackId, Timestamp, ZoneId};
use crate::profiles::{self, Profile};
use crate::sim::SimFault;

/// The whole simulator file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFileConfig {
    pub sim: SimConfig,
}

/// `[sim]`: the clock, the devices and the scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Simulated seconds per wall-clock second (1 = real time, 1440 = one day per minute).
    #[serde(default = "default_speed")]
    pub speed: Spanned<f64>,
    /// Simulated time when the simulator starts (RFC 3339 UTC). Day 0 is this date; days of
    /// excursions count from its midnight UTC.
    #[serde(default = "default_start")]
    pub start: Spanned<String>,
    /// Seed of the noise: the same seed gives the same values at the same simulated time.
    #[serde(default)]
    pub seed: u64,
    /// How often the values are recomputed, in wall-clock time.
    #[serde(default = "default_tick")]
    pub tick: Spanned<String>,
    /// Groups of simulated devices.
    #[serde(default)]
    pub devices: Vec<SimDeviceGroupConfig>,
    /// Scheduled departures from the baseline.
    #[serde(default)]
    pub excursions: Vec<ExcursionConfig>,
}

fn default_speed() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn default_start() -> Spanned<String> {
    Spanned::new(0..0, "2026-11-01T00:00:00Z".to_owned())
}
fn default_tick() -> Spanned<String> {
    Spanned::new(0..0, "1s".to_owned())
}

/// `[[sim.devices]]`: identical devices of one profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDeviceGroupConfig {
    /// Built-in profile name (e.g. `apc-rpdu2`, `modbus-th-probe`).
    pub profile: Spanned<String>,
    /// `modbus` or `snmp`; optional, must match the profile when given.
    pub protocol: Option<Spanned<String>>,
    /// Explicit device ids (the group has as many devices).
    pub ids: Option<Spanned<Vec<String>>>,
    /// Or: ids `<id_prefix><n>`, n = 01..count (zero-padded to the width of count).
    pub id_prefix: Option<Spanned<String>>,
    /// Number of devices with `id_prefix`.
    pub count: Option<Spanned<i64>>,
    /// Zone of every device in the group.
    pub zone: Spanned<String>,
    /// Racks: one per device, or cycled when fewer.
    #[serde(default)]
    pub racks: Vec<String>,
    /// One port for the whole group: Modbus devices get unit ids first_unit, first_unit+1, ...;
    /// SNMP devices answer to their device id as community.
    pub port: Option<Spanned<i64>>,
    /// Or one port per device: base_port, base_port+1, ... (unit `first_unit`, community
    /// `community`).
    pub base_port: Option<Spanned<i64>>,
    /// First Modbus unit id.
    #[serde(default = "default_first_unit")]
    pub first_unit: Spanned<i64>,
    /// SNMP community with `base_port` (with `port` each device's id is its community).
    #[serde(default = "default_community")]
    pub community: String,
    /// SNMP: rows of every table column (outlets, phases, probes).
    #[serde(default = "default_rows")]
    pub rows: Spanned<i64>,
    /// Baseline per metric for this group, overriding the built-in facility defaults.
    #[serde(default)]
    pub baseline: BTreeMap<String, f64>,
}

fn default_first_unit() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}
fn default_community() -> String {
    "public".to_owned()
}
fn default_rows() -> Spanned<i64> {
    Spanned::new(0..0, 8)
}

/// `[[sim.excursions]]`: a scheduled departure from the baseline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcursionConfig {
    /// A name for logs.
    pub name: Option<String>,
    /// Every device of this zone ...
    pub zone: Option<Spanned<String>>,
    /// ... or of this rack ...
    pub rack: Option<Spanned<String>>,
    /// ... or this one device.
    pub device: Option<Spanned<String>>,
    /// Metric affected (shorthand for a one-element `metrics`).
    pub metric: Option<Spanned<String>>,
    /// Metrics affected by `add` / `percent`.
    #[serde(default)]
    pub metrics: Vec<Spanned<String>>,
    /// Added to the value (units of the metric).
    pub add: Option<Spanned<f64>>,
    /// Percent change of the baseline (e.g. 35 for +35 % rack load).
    pub percent: Option<Spanned<f64>>,
    /// Instead of changing values: `silent` (no answer), `close` (drop the connection) or
    /// `error` (Modbus exception / SNMP genErr).
    pub fault: Option<Spanned<String>>,
    /// Start of the daily window, `HH:MM` UTC; without `from`/`to` the whole day.
    pub from: Option<Spanned<String>>,
    /// End of the daily window, `HH:MM` UTC (before `from`: the window crosses midnight).
    pub to: Option<Spanned<String>>,
    /// First day (0 = the start date) the excursion happens.
    #[serde(default = "default_first_day")]
    pub first_day: Spanned<i64>,
    /// Then every this many days.
    #[serde(default = "default_every_days")]
    pub every_days: Spanned<i64>,
    /// Last day it may happen (inclusive); open-ended when absent.
    pub last_day: Option<Spanned<i64>>,
    /// Or exactly these days (overrides first_day/every_days/last_day).
    #[serde(default)]
    pub days: Vec<Spanned<i64>>,
    /// Linear ramp in and out of a daily window, e.g. "20m".
    pub ramp: Option<Spanned<String>>,
}

fn default_first_day() -> Spanned<i64> {
    Spanned::new(0..0, 0)
}
fn default_every_days() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

/// The checked simulator settings.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub path: PathBuf,
    pub speed: f64,
    pub start: Timestamp,
    pub seed: u64,
    pub tick: Duration,
    pub devices: Vec<SimDevice>,
    pub excursions: Vec<Excursion>,
}

/// One simulated device.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub id: DeviceId,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    pub profile: Profile,
    pub endpoint: Endpoint,
    /// SNMP table rows per column point.
    pub rows: u32,
    /// Baseline overrides per metric.
    pub baseline: HashMap<Metric, f64>,
}

/// Where a simulated device answers (always on 127.0.0.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP `port`, unit id `unit`.
    Modbus { port: u16, unit: u8 },
    /// SNMP v2c on UDP `port`, answering to `community`.
    Snmp { port: u16, community: String },
}

impl Endpoint {
    /// The loopback port the device answers on.
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Modbus { port, .. } | Endpoint::Snmp { port, .. } => *port,
        }
    }
}

/// A checked excursion.
#[derive(Debug, Clone, PartialEq)]
pub struct Excursion {
    pub name: String,
    pub target: Target,
    pub effect: Effect,
    pub schedule: Schedule,
}

/// Which devices an excursion touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Zone(ZoneId),
    Rack(RackId),
    Device(DeviceId),
}

impl Target {
    /// Whether `d` is one of the devices this target names.
    pub fn matches(&self, d: &SimDevice) -> bool {
        match self {
            Target::Zone(z) => d.zone == *z,
            Target::Rack(r) => d.rack.as_ref() == Some(r),
            Target::Device(id) => d.id == *id,
        }
    }
}

/// What an excursion does while active (scaled by its ramp).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Adds `delta` to these metrics.
    Add { metrics: Vec<Metric>, delta: f64 },
    /// Scales the baseline of these metrics by `1 + pct / 100`.
    Percent { metrics: Vec<Metric>, pct: f64 },
    /// The device misbehaves.
    Fault(SimFault),
}

/// When an excursion is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Daily window in minutes after midnight UTC, `[from, to)`; `None` is all day.
    pub window: Option<(u32, u32)>,
    pub first_day: u32,
    pub every_days: u32,
    pub last_day: Option<u32>,
    /// When not empty: exactly these days.
    pub days: Vec<u32>,
    pub ramp: Duration,
}

impl Schedule {
    /// Whether the excursion happens on `day` (its window starts that day).
    pub fn on_day(&self, day: i64) -> bool {
        if day < 0 {
            return false;
        }
        if !self.days.is_empty() {
            return self.days.iter().any(|d| i64::from(*d) == day);
        }
        let first = i64::from(self.first_day);
        day >= first
            && (day - first) % i64::from(self.every_days.max(1)) == 0
            && self.last_day.is_none_or(|l| day <= i64::from(l))
    }

    /// How strongly the excursion applies at `ms` milliseconds after midnight of day 0:
    /// 0 outside, 1 inside, in between on a ramp.
    pub fn activity(&self, ms: i64) -> f64 {
        let day = ms.div_euclid(Timestamp::MS_PER_DAY);
        let tod = ms.rem_euclid(Timestamp::MS_PER_DAY);
        let Some((from, to)) = self.window else {
            return if self.on_day(day) { 1.0 } else { 0.0 };
        };
        let (from, to) = (i64::from(from) * 60_000, i64::from(to) * 60_000);
        // Elapsed since the window opened and left until it closes, for the occurrence that
        // covers this instant (a window crossing midnight started the day before).
        let (since, until) = if from <= to {
            if !(self.on_day(day) && tod >= from && tod < to) {
                return 0.0;
            }
            (tod - from, to - tod)
        } else if tod >= from && self.on_day(day) {
            (tod - from, to + Timestamp::MS_PER_DAY - tod)
        } else if tod < to && self.on_day(day - 1) {
            (tod + Timestamp::MS_PER_DAY - from, to - tod)
        } else {
            return 0.0;
        };
        let ramp = self.ramp.as_millis() as i64;
        if ramp == 0 {
            return 1.0;
        }
        (since.min(until) as f64 / ramp as f64).clamp(0.0, 1.0)
    }
}

/// A loaded simulator config plus what a user should still hear about.
#[derive(Debug)]
pub struct LoadedSim {
    pub settings: SimSettings,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, parses and checks the simulator config at `path`.
pub fn load(path: &Path) -> Result<LoadedSim, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        errors: vec![Diagnostic {
            file: path.to_owned(),
            position: None,
            message: format!("cannot read simulator configuration: {e}"),
        }],
    })?;
    load_str(path, &text)
}

/// As `load`, from text already read.
pub fn load_str(path: &Path, text: &str) -> Result<LoadedSim, ConfigError> {
    let mut c = Checker { path, text, errors: Vec::new(), warnings: Vec::new() };
    let file: SimFileConfig = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let message = e.message().lines().next().unwrap_or("invalid TOML").to_owned();
            c.errors.push(c.diag(e.span(), message));
            return Err(ConfigError { errors: c.errors });
        }
    };
    let settings = c.build(file.sim);
    if c.errors.is_empty() {
        Ok(LoadedSim { settings, warnings: c.warnings })
    } else {
        Err(ConfigError { errors: c.errors })
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn diag(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.to_owned(),
            position: span.and_then(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }
    fn error<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        let s = at.span();
        let d = self.diag((s.end > 0).then_some(s), msg);
        self.errors.push(d);
    }
    fn warn<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        let s = at.span();
        let d = self.diag((s.end > 0).then_some(s), msg);
        self.warnings.push(d);
    }

    fn ident(&mut self, at: &Spanned<String>, s: &str, what: &str) {
        let ok =
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            self.error(at, format!("{what} {s:?} must match [a-z0-9_-]+"));
        }
    }

    fn day(&mut self, v: &Spanned<i64>, what: &str) -> u32 {
        match u32::try_from(*v.get_ref()) {
            Ok(d) if d <= 100_000 => d,
            _ => {
                self.error(v, format!("{what} must be a day number >= 0"));
                0
            }
        }
    }

    fn build(&mut self, sim: SimConfig) -> SimSettings {
        let speed = *sim.speed.get_ref();
        if !(speed.is_finite() && speed > 0.0) {
            self.error(&sim.speed, "sim.speed must be a positive number (1 = real time, 1440 = a day per minute)");
        }
        let start = match Timestamp::parse_rfc3339(sim.start.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                self.error(&sim.start, format!("sim.start {:?} is not an RFC 3339 time: {e}", sim.start.get_ref()));
                Timestamp(0)
            }
        };
        let tick = match parse_duration(sim.tick.get_ref()) {
            Ok(t) if t >= Duration::from_millis(10) => t,
            Ok(_) => {
                self.error(&sim.tick, "sim.tick must be at least 10ms");
                Duration::from_secs(1)
            }
            Err(e) => {
                self.error(&sim.tick, format!("sim.tick: {e}"));
                Duration::from_secs(1)
            }
        };

        let builtins = profiles::builtins();
        let mut devices = Vec::new();
        let mut ids: HashSet<DeviceId> = HashSet::new();
        let mut modbus_slots: HashMap<(u16, u8), DeviceId> = HashMap::new();
        let mut snmp_slots: HashMap<(u16, String), DeviceId> = HashMap::new();
        for g in &sim.devices {
            self.group(g, &builtins, &mut devices, &mut ids, &mut modbus_slots, &mut snmp_slots);
        }
        if sim.devices.is_empty() {
            self.errors.push(self.diag(None, "no [[sim.devices]]: nothing to simulate"));
        }

        let mut excursions = Vec::new();
        for (i, e) in sim.excursions.iter().enumerate() {
            if let Some(x) = self.excursion(i, e, &devices) {
                excursions.push(x);
            }
        }
        SimSettings { path: self.path.to_owned(), speed, start, seed: sim.seed, tick, devices, excursions }
    }

    fn group(
        &mut self,
        g: &SimDeviceGroupConfig,
        builtins: &BTreeMap<String, Result<Profile, String>>,
        devices: &mut Vec<SimDevice>,
        ids: &mut HashSet<DeviceId>,
        modbus_slots: &mut HashMap<(u16, u8), DeviceId>,
        snmp_slots: &mut HashMap<(u16, String), DeviceId>,
    ) {
        let profile = match builtins.get(g.profile.get_ref()) {
            Some(Ok(p)) => Some(p.clone()),
            Some(Err(e)) => {
                self.error(&g.profile, e.clone());
                None
            }
            None => {
                let known: Vec<&str> = builtins.keys().map(String::as_str).collect();
                self.error(
                    &g.profile,
                    format!("unknown built-in profile {:?} (known: {})", g.profile.get_ref(), known.join(", ")),
                );
                None
            }
        };
        if let (Some(p), Some(proto)) = (&profile, &g.protocol)
            && p.protocol() != proto.get_ref()
        {
            self.error(
                proto,
                format!("protocol {:?} but profile {:?} is {}", proto.get_ref(), g.profile.get_ref(), p.protocol()),
            );
        }
        self.ident(&g.zone, g.zone.get_ref(), "zone");

        // Device ids.
        let names: Vec<String> = match (&g.ids, &g.id_prefix, &g.count) {
            (Some(list), None, None) => {
                if list.get_ref().is_empty() {
                    self.error(list, "ids must not be empty");
                }
                list.get_ref().clone()
            }
            (None, Some(prefix), Some(count)) => {
                let n = *count.get_ref();
                if !(1..=10_000).contains(&n) {
                    self.error(count, "count must be 1..=10000");
                    Vec::new()
                } else {
                    let width = n.to_string().len().max(2);
                    (1..=n).map(|i| format!("{}{i:0width$}", prefix.get_ref())).collect()
                }
            }
            (Some(list), _, _) => {
                self.error(list, "give either ids or id_prefix + count, not both");
                Vec::new()
            }
            (None, prefix, count) => {
                let msg = "a device group needs ids = [...] or id_prefix and count";
                match (prefix, count) {
                    (Some(p), None) => self.error(p, msg),
                    (None, Some(c)) => self.error(c, msg),
                    _ => self.error(&g.profile, msg),
                }
                Vec::new()
            }
        };
        let id_span = g.ids.as_ref().map(|s| s.span()).or(g.id_prefix.as_ref().map(|s| s.span())).unwrap_or(0..0);
        let at_ids = Spanned::new(id_span, ());
        for n in &names {
            self.ident(&Spanned::new(at_ids.span(), n.clone()), n, "device id");
            if !ids.insert(DeviceId::new(n)) {
                self.error(&at_ids, format!("duplicate simulated device id {n:?}"));
            }
        }

        let rows = match u32::try_from(*g.rows.get_ref()) {
            Ok(r) if (1..=1024).contains(&r) => r,
            _ => {
                self.error(&g.rows, "rows must be 1..=1024");
                1
            }
        };
        let first_unit = *g.first_unit.get_ref();
        let port_of = |c: &mut Self, v: &Spanned<i64>, offset: usize| -> Option<u16> {
            let p = v.get_ref().checked_add(offset as i64)?;
            match u16::try_from(p) {
                Ok(p) if p >= 1024 => Some(p),
                _ => {
                    c.error(v, format!("port {p} is outside 1024..=65535 (simulators run unprivileged)"));
                    None
                }
            }
        };
        let Some(profile) = profile else { return };
        let snmp = matches!(profile, Profile::Snmp(_));
        for (i, name) in names.iter().enumerate() {
            let id = DeviceId::new(name);
            let endpoint = match (&g.port, &g.base_port) {
                (Some(p), None) => {
                    let Some(port) = port_of(self, p, 0) else { return };
                    if snmp {
                        Endpoint::Snmp { port, community: name.clone() }
                    } else {
                        let unit = first_unit + i as i64;
                        if !(1..=247).contains(&unit) {
                            self.error(&g.first_unit, format!("unit id {unit} of {name:?} is outside 1..=247"));
                            return;
                        }
                        Endpoint::Modbus { port, unit: unit as u8 }
                    }
                }
                (None, Some(b)) => {
                    let Some(port) = port_of(self, b, i) else { return };
                    if snmp {
                        Endpoint::Snmp { port, community: g.community.clone() }
                    } else {
                        if !(1..=255).contains(&first_unit) {
                            self.error(&g.first_unit, "first_unit must be 1..=255");
                            return;
                        }
                        Endpoint::Modbus { port, unit: first_unit as u8 }
                    }
                }
                (Some(p), Some(_)) => {
                    self.error(p, "give port (one shared port) or base_port (one port per device), not both");
                    return;
                }
                (None, None) => {
                    self.error(&g.profile, "a device group needs port or base_port");
                    return;
                }
            };
            let clash = match &endpoint {
                Endpoint::Modbus { port, unit } => modbus_slots.insert((*port, *unit), id.clone()),
                Endpoint::Snmp { port, community } => snmp_slots.insert((*port, community.clone()), id.clone()),
            };
            if let Some(other) = clash {
                let at = g.port.as_ref().or(g.base_port.as_ref()).map(|s| s.span()).unwrap_or(0..0);
                self.error(
                    &Spanned::new(at, ()),
                    format!("{name:?} would answer on the same port and unit/community as {other:?}"),
                );
            }
            let rack = (!g.racks.is_empty()).then(|| RackId::new(&g.racks[i % g.racks.len()]));
            devices.push(SimDevice {
                id,
                zone: ZoneId::new(g.zone.get_ref()),
                rack,
                profile: profile.clone(),
                endpoint,
                rows,
                baseline: g.baseline.iter().map(|(k, v)| (Metric::new(k), *v)).collect(),
            });
        }
    }

    fn excursion(&mut self, i: usize, e: &ExcursionConfig, devices: &[SimDevice]) -> Option<Excursion> {
        let name = e.name.clone().unwrap_or_else(|| format!("excursion {}", i + 1));
        let target = match (&e.zone, &e.rack, &e.device) {
            (Some(z), None, None) => (z, Target::Zone(ZoneId::new(z.get_ref()))),
            (None, Some(r), None) => (r, Target::Rack(RackId::new(r.get_ref()))),
            (None, None, Some(d)) => (d, Target::Device(DeviceId::new(d.get_ref()))),
            _ => {
                self.errors.push(self.diag(None, format!("{name}: give exactly one of zone, rack or device")));
                return None;
            }
        };
        let (target_at, target) = target;
        let hit: Vec<&SimDevice> = devices.iter().filter(|d| target.matches(d)).collect();
        if hit.is_empty() {
            self.error(target_at, format!("{name}: {:?} matches no simulated device", target_at.get_ref()));
        }

        let mut metrics: Vec<Spanned<String>> = e.metrics.clone();
        if let Some(m) = &e.metric {
            metrics.push(m.clone());
        }
        let effect = match (&e.add, &e.percent, &e.fault) {
            (Some(a), None, None) => Effect::Add { metrics: self.metrics(&name, &metrics, &hit)?, delta: *a.get_ref() },
            (None, Some(p), None) => {
                if *p.get_ref() <= -100.0 {
                    self.error(p, format!("{name}: percent must be above -100"));
                }
                Effect::Percent { metrics: self.metrics(&name, &metrics, &hit)?, pct: *p.get_ref() }
            }
            (None, None, Some(f)) => {
                if let Some(m) = metrics.first() {
                    self.error(m, format!("{name}: a fault takes the whole device; drop metrics"));
                }
                Effect::Fault(match f.get_ref().as_str() {
                    "silent" => SimFault::Silent,
                    "close" => SimFault::Close,
                    "error" => SimFault::Error,
                    other => {
                        self.error(f, format!("{name}: fault {other:?}: expected silent, close or error"));
                        return None;
                    }
                })
            }
            _ => {
                self.errors.push(
                    self.diag(Some(target_at.span()), format!("{name}: give exactly one of add, percent or fault")),
                );
                return None;
            }
        };

        let window = match (&e.from, &e.to) {
            (None, None) => None,
            (Some(f), Some(t)) => {
                let from = self.clock(f, &name)?;
                let to = self.clock(t, &name)?;
                if from == to {
                    self.error(t, format!("{name}: from and to are the same time"));
                }
                Some((from, to))
            }
            (Some(x), None) | (None, Some(x)) => {
                self.error(x, format!("{name}: from and to go together"));
                return None;
            }
        };
        let ramp = match &e.ramp {
            None => Duration::ZERO,
            Some(r) => match parse_duration(r.get_ref()) {
                Ok(d) if window.is_none() => {
                    self.error(r, format!("{name}: ramp applies to a daily window (from/to)"));
                    d
                }
                Ok(d) => d,
                Err(err) => {
                    self.error(r, format!("{name}: ramp: {err}"));
                    Duration::ZERO
                }
            },
        };
        let every_days = match u32::try_from(*e.every_days.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                self.error(&e.every_days, format!("{name}: every_days must be at least 1"));
                1
            }
        };
        let first_day = self.day(&e.first_day, "first_day");
        let last_day = e.last_day.as_ref().map(|l| self.day(l, "last_day"));
        if let Some(l) = &e.last_day
            && last_day.is_some_and(|ld| ld < first_day)
        {
            self.error(l, format!("{name}: last_day is before first_day"));
        }
        let days = e.days.iter().map(|d| self.day(d, "days")).collect();
        Some(Excursion {
            name,
            target,
            effect,
            schedule: Schedule { window, first_day, every_days, last_day, days, ramp },
        })
    }

    fn metrics(&mut self, name: &str, metrics: &[Spanned<String>], hit: &[&SimDevice]) -> Option<Vec<Metric>> {
        if metrics.is_empty() {
            self.errors.push(self.diag(None, format!("{name}: add/percent need metric or metrics")));
            return None;
        }
        let mut out = Vec::new();
        for m in metrics {
            let has = hit.iter().any(|d| match &d.profile {
                Profile::Modbus(p) => p.points.iter().any(|pt| pt.metric.as_str() == m.get_ref()),
                Profile::Snmp(p) => p.points.iter().any(|pt| pt.metric.as_str() == m.get_ref()),
            });
            if !has && !hit.is_empty() {
                // Not an error: profiles grow, and a scenario may be written ahead of them.
                self.warn(m, format!("{name}: no targeted device's profile has a point with metric {:?}", m.get_ref()));
            }
            out.push(Metric::new(m.get_ref()));
        }
        Some(out)
    }

    /// `HH:MM` -> minutes after midnight.
    fn clock(&mut self, v: &Spanned<String>, name: &str) -> Option<u32> {
        let parsed = v.get_ref().split_once(':').and_then(|(h, m)| {
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        });
        if parsed.is_none() {
            self.error(v, format!("{name}: {:?} is not a time of day HH:MM", v.get_ref()));
        }
        parsed
    }
}

impl SimSettings {
    /// Modbus devices by port, then unit id.
    pub fn modbus_ports(&self) -> BTreeMap<u16, BTreeMap<u8, &SimDevice>> {
        let mut out: BTreeMap<u16, BTreeMap<u8, &SimDevice>> = BTreeMap::new();
        for d in &self.devices {
            if let Endpoint::Modbus { port, unit } = d.endpoint {
                out.entry(port).or_default().insert(unit, d);
            }
        }
        out
    }

    /// SNMP devices by port, then community.
    pub fn snmp_ports(&self) -> BTreeMap<u16, BTreeMap<String, &SimDevice>> {
        let mut out: BTreeMap<u16, BTreeMap<String, &SimDevice>> = BTreeMap::new();
        for d in &self.devices {
            if let Endpoint::Snmp { port, community } = &d.endpoint {
                out.entry(*port).or_default().insert(community.clone(), d);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<LoadedSim, ConfigError> {
        load_str(Path::new("sim.toml"), text)
    }

    const GOOD: &str = r#"
[sim]
speed = 1440
start = "2026-11-01T00:00:00Z"
seed = 3

[[sim.devices]]
profile = "modbus-th-probe"
id_prefix = "th-"
count = 3
zone = "hall1-b"
racks = ["B01", "B07"]
port = 15020

[[sim.devices]]
profile = "apc-rpdu2"
ids = ["pdu-b07-a", "pdu-b07-b"]
zone = "hall1-b"
racks = ["B07"]
base_port = 16100

[[sim.excursions]]
zone = "hall1-b"
metric = "inlet_temp_c"
add = 6.0
from = "14:00"
to = "16:30"
first_day = 1
every_days = 3
"#;

    #[test]
    fn groups_expand_into_devices_with_ports_units_and_racks() {
        let s = load_text(GOOD).unwrap().settings;
        let ids: Vec<&str> = s.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["th-01", "th-02", "th-03", "pdu-b07-a", "pdu-b07-b"]);
        assert_eq!(s.devices[2].endpoint, Endpoint::Modbus { port: 15020, unit: 3 });
        assert_eq!(s.devices[2].rack, Some(RackId::new("B01")), "racks are cycled");
        assert_eq!(s.devices[4].endpoint, Endpoint::Snmp { port: 16101, community: "public".into() });
        assert_eq!(s.modbus_ports()[&15020].len(), 3);
        assert_eq!(s.snmp_ports().len(), 2);
        assert_eq!(s.speed, 1440.0);
        let x = &s.excursions[0];
        assert_eq!(x.schedule.window, Some((14 * 60, 16 * 60 + 30)));
        assert_eq!(x.target, Target::Zone(ZoneId::new("hall1-b")));
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let text = r#"
[sim]
speed = 0

[[sim.devices]]
profile = "no-such-profile"
ids = ["a"]
zone = "Hall B"
port = 80

[[sim.devices]]
profile = "modbus-th-probe"
ids = ["th-1", "th-1"]
zone = "z"
port = 15020

[[sim.excursions]]
zone = "nowhere"
metric = "inlet_temp_c"
add = 1.0
from = "25:00"
to = "16:00"
"#;
        let e = load_text(text).unwrap_err();
        let msgs: Vec<String> = e.errors.iter().map(|d| d.to_string()).collect();
        let want = [
            "sim.toml:3:9: sim.speed must be a positive number",
            "sim.toml:6:11: unknown built-in profile \"no-such-profile\"",
            "sim.toml:8:8: zone \"Hall B\" must match [a-z0-9_-]+",
            "sim.toml:13:7: duplicate simulated device id \"th-1\"",
            "sim.toml:18:8: excursion 1: \"nowhere\" matches no simulated device",
            "sim.toml:21:8: excursion 1: \"25:00\" is not a time of day HH:MM",
        ];
        for w in want {
            assert!(msgs.iter().any(|m| m.starts_with(w)), "missing {w:?} in:\n{}", msgs.join("\n"));
        }
    }

    #[test]
    fn two_devices_on_one_port_and_community_clash() {
        let text = r#"
[sim]
[[sim.devices]]
profile = "apc-rpdu2"
ids = ["p1", "p2"]
zone = "z"
base_port = 16100
[[sim.devices]]
profile = "apc-rpdu2"
ids = ["p3"]
zone = "z"
base_port = 16101
"#;
        let e = load_text(text).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        assert_eq!(
            e.errors[0].to_string(),
            "sim.toml:12:13: \"p3\" would answer on the same port and unit/community as \"p2\""
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_position() {
        let e = load_text("[sim]\nspeeed = 2\n").unwrap_err();
        assert!(e.errors[0].to_string().starts_with("sim.toml:2:1: unknown field `speeed`"), "{}", e.errors[0]);
    }

    #[test]
    fn schedule_days_and_windows() {
        let s = Schedule {
            window: Some((14 * 60, 16 * 60 + 30)),
            first_day: 1,
            every_days: 3,
            last_day: None,
            days: vec![],
            ramp: Duration::ZERO,
        };
        let at = |day: i64, h: i64, m: i64| day * Timestamp::MS_PER_DAY + h * 3_600_000 + m * 60_000;
        assert!(s.on_day(1) && s.on_day(4) && s.on_day(7) && !s.on_day(3) && !s.on_day(0));
        assert_eq!(s.activity(at(4, 15, 0)), 1.0);
        assert_eq!(s.activity(at(4, 13, 59)), 0.0);
        assert_eq!(s.activity(at(4, 16, 30)), 0.0, "the window is half-open");
        assert_eq!(s.activity(at(5, 15, 0)), 0.0);
        // Across midnight: 22:00-02:00 on day 2 is still active at 01:00 of day 3.
        let night = Schedule { window: Some((22 * 60, 2 * 60)), days: vec![2], ..s.clone() };
        assert_eq!(night.activity(at(3, 1, 0)), 1.0);
        assert_eq!(night.activity(at(2, 1, 0)), 0.0);
        assert_eq!(night.activity(at(2, 23, 0)), 1.0);
        // A ramp: 20 minutes in, halfway after 10.
        let ramped = Schedule { ramp: Duration::from_secs(20 * 60), ..s };
        assert!((ramped.activity(at(4, 14, 10)) - 0.5).abs() < 1e-9);
        assert_eq!(ramped.activity(at(4, 15, 0)), 1.0);
    }
}
