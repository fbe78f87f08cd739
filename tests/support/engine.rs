//! For the engine tests: settings from a TOML config as a user writes it, a virtual-clock
//! driver that fires timeouts in time order, and reading builders.

use std::path::Path;

use arcstr::ArcStr;
use hallmonitor::config::{EngineSettings, load_str};
use hallmonitor::engine::{Engine, Event, IncidentEvent, IncidentEventKind, PatternEvent};
use hallmonitor::model::{DeviceId, Metric, PointId, Quality, RackId, Reading, Timestamp, ZoneId};

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;
/// 2026-11-02T00:00:00Z, a Monday.
pub const T0: i64 = 1_793_577_600_000;

/// Profiles the tests' devices use (inline, as a site would define its own).
pub const PROFILES: &str = r#"
[profiles.test-probe]
protocol = "modbus"
[[profiles.test-probe.points]]
name = "temp"
metric = "inlet_temp_c"
table = "input"
address = 0
type = "i16"
scale = 0.1
[[profiles.test-probe.points]]
name = "rh"
metric = "humidity_pct"
table = "input"
address = 1
type = "u16"
scale = 0.1

[profiles.test-pdu]
protocol = "modbus"
[[profiles.test-pdu.points]]
name = "power"
metric = "power_w"
table = "input"
address = 0
type = "u32"
[[profiles.test-pdu.points]]
name = "current"
metric = "phase_current_a"
table = "input"
address = 2
type = "u16"
scale = 0.01

[profiles.test-crah]
protocol = "modbus"
[[profiles.test-crah.points]]
name = "supply"
metric = "supply_air_temp_c"
table = "input"
address = 0
type = "i16"
scale = 0.1
[[profiles.test-crah.points]]
name = "alarm"
metric = "alarm"
table = "discrete"
address = 0
type = "bool"
"#;

/// Engine settings from a config text (profiles above are appended).
pub fn settings(toml: &str) -> EngineSettings {
    let text = format!("{toml}\n{PROFILES}");
    match load_str(Path::new("test.toml"), &text) {
        Ok(l) => l.config.engine,
        Err(e) => panic!("test config does not load:\n{e}\n---\n{text}"),
    }
}

/// A modbus device table for a config.
pub fn device(id: &str, profile: &str, zone: &str, rack: Option<&str>, extra: &str) -> String {
    let rack = rack.map(|r| format!("rack = \"{r}\"\n")).unwrap_or_default();
    format!(
        "[[devices]]\nid = \"{id}\"\nprofile = \"{profile}\"\nzone = \"{zone}\"\n{rack}{extra}\n[devices.modbus]\naddress = \"127.0.0.1:1502\"\n\n"
    )
}

#[allow(clippy::too_many_arguments)]
pub fn good(
    at: i64,
    device: &str,
    point: &str,
    metric: &str,
    unit: &str,
    value: f64,
    zone: &str,
    rack: Option<&str>,
) -> Reading {
    Reading {
        at: Timestamp(at),
        device: DeviceId::new(device),
        point: PointId::new(point),
        metric: Metric::new(metric),
        value: Some(value),
        unit: ArcStr::from(unit),
        zone: ZoneId::new(zone),
        rack: rack.map(RackId::new),
        label: None,
        quality: Quality::Good,
        error: None,
    }
}

pub fn temp(at: i64, device: &str, zone: &str, rack: Option<&str>, value: f64) -> Reading {
    good(at, device, "temp", "inlet_temp_c", "°C", value, zone, rack)
}

pub fn bad(at: i64, device: &str, point: &str, metric: &str, zone: &str) -> Reading {
    Reading {
        at: Timestamp(at),
        device: DeviceId::new(device),
        point: PointId::new(point),
        metric: Metric::new(metric),
        value: None,
        unit: ArcStr::from(""),
        zone: ZoneId::new(zone),
        rack: None,
        label: None,
        quality: Quality::Bad,
        error: Some(ArcStr::from("timeout")),
    }
}

/// An engine on a virtual clock, recording every event with the time it came out.
pub struct Driver {
    pub engine: Engine,
    pub events: Vec<(Timestamp, Event)>,
    pub now: Timestamp,
}

impl Driver {
    pub fn new(settings: EngineSettings) -> Self {
        Self { engine: Engine::new(settings), events: Vec::new(), now: Timestamp(0) }
    }

    /// Fires every timeout due up to `t`, in time order, as the shell would.
    pub fn advance_to(&mut self, t: i64) {
        while let Some(due) = self.engine.next_timeout() {
            if due.0 > t {
                break;
            }
            self.engine.handle_timeout(due);
            self.now = due;
            self.drain();
        }
        self.now = Timestamp(t.max(self.now.0));
    }

    /// Feeds readings all taken at `t`.
    pub fn feed(&mut self, t: i64, readings: &[Reading]) {
        self.advance_to(t);
        for r in readings {
            self.engine.handle_reading(Timestamp(t), r);
            self.drain();
        }
    }

    pub fn drain(&mut self) {
        while let Some(e) = self.engine.poll_event() {
            self.events.push((self.now, e));
        }
    }

    pub fn incidents(&self) -> Vec<&IncidentEvent> {
        self.events.iter().filter_map(|(_, e)| if let Event::Incident(i) = e { Some(i) } else { None }).collect()
    }

    pub fn opened(&self) -> Vec<&IncidentEvent> {
        self.incidents().into_iter().filter(|i| i.event == IncidentEventKind::Opened).collect()
    }

    pub fn resolved(&self) -> Vec<&IncidentEvent> {
        self.incidents().into_iter().filter(|i| i.event == IncidentEventKind::Resolved).collect()
    }

    pub fn patterns(&self) -> Vec<(Timestamp, &PatternEvent)> {
        self.events.iter().filter_map(|(t, e)| if let Event::Pattern(p) = e { Some((*t, p)) } else { None }).collect()
    }
}
