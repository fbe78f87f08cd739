//! Helpers shared by the outbox, schema and MQTT interop tests (included with `#[path]`;
//! compiled on its own it is an empty test crate).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;

use hallmonitor::engine::{
    Breach, ChronicleEntry, Event, IncidentContext, IncidentEvent, IncidentEventKind, PatternEvent, PatternState,
    PatternTrigger, PeakValue, RackLoad, RollupEvent, RollupMetric,
};
use hallmonitor::model::{Category, DeviceId, Metric, PointId, RackId, Severity, SiteId, Timestamp, ZoneId};
use hallmonitor::publish::message::{Outbound, outbound_for};
use hallmonitor::publish::{DeviceCounts, HealthBody, OutboxHealth, PollCounts};
use hallmonitor::store::DropReport;
use serde_json::Value;

pub const PREFIX: &str = "hallmonitor/v1";

pub fn site() -> SiteId {
    SiteId::new("fra1")
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn breach(device: &str, rack: &str, value: f64) -> Breach {
    Breach {
        device: DeviceId::new(device),
        point: PointId::new("sensor_temp"),
        label: None,
        metric: Metric::new("inlet_temp_c"),
        value: Some(value),
        unit: "°C".into(),
        threshold: Some(27.0),
        severity: Severity::Warning,
        rack: Some(RackId::new(rack)),
        since: t("2026-11-02T14:05:00Z"),
        cleared_at: None,
        rule: "high".into(),
    }
}

/// An incident event of kind `kind`, with a chronicle on `resolved`.
pub fn incident(kind: IncidentEventKind, n: u32) -> Event {
    let mut peak = BTreeMap::new();
    peak.insert(
        Metric::new("inlet_temp_c"),
        PeakValue {
            value: 29.1,
            unit: "°C".into(),
            device: DeviceId::new("sensor-b07"),
            rack: Some(RackId::new("B07")),
            at: t("2026-11-02T14:20:00Z"),
        },
    );
    let resolved = kind == IncidentEventKind::Resolved;
    Event::Incident(IncidentEvent {
        event: kind,
        incident_id: format!("fra1-hall1-b-thermal-{n}"),
        zone: ZoneId::new("hall1-b"),
        category: Category::Thermal,
        severity: Severity::Warning,
        opened_at: t("2026-11-02T14:05:00Z"),
        resolved_at: resolved.then(|| t("2026-11-02T15:05:00Z")),
        racks: vec![RackId::new("B07"), RackId::new("B08")],
        breaches: vec![breach("sensor-b07", "B07", 28.4), breach("sensor-b08", "B08", 27.6)],
        peak,
        context: IncidentContext {
            rack_load: vec![RackLoad {
                rack: RackId::new("B07"),
                power_w: 6900.0,
                baseline_w: 5000.0,
                change_pct: 38.0,
            }],
            probable_cause: None,
            hint: Some("B07 draws 38 % more than its 7-day median".into()),
        },
        chronicle: resolved.then(|| {
            vec![
                ChronicleEntry {
                    at: t("2026-11-02T14:05:00Z"),
                    what: "opened".into(),
                    detail: "inlet_temp_c 28.4 °C > 27 on sensor-b07 (B07)".into(),
                    device: Some(DeviceId::new("sensor-b07")),
                    metric: Some(Metric::new("inlet_temp_c")),
                    value: Some(28.4),
                    severity: Some(Severity::Warning),
                },
                ChronicleEntry {
                    at: t("2026-11-02T15:05:00Z"),
                    what: "resolved".into(),
                    detail: "all members clear for 5m".into(),
                    device: None,
                    metric: None,
                    value: None,
                    severity: None,
                },
            ]
        }),
    })
}

pub fn pattern() -> Event {
    Event::Pattern(PatternEvent {
        state: PatternState::Active,
        pattern_id: "fra1-hall1-b-thermal".into(),
        zone: ZoneId::new("hall1-b"),
        zones: vec![ZoneId::new("hall1-b"), ZoneId::new("hall1-c")],
        category: Category::Thermal,
        trigger: PatternTrigger::Recurrence,
        occurrences: 3,
        window: "30d".into(),
        incident_ids: vec!["fra1-hall1-b-thermal-1".into(), "fra1-hall1-b-thermal-2".into()],
        first_seen: t("2026-11-02T14:05:00Z"),
        last_seen: t("2026-11-09T15:00:00Z"),
        racks: vec![RackId::new("B07")],
        time_of_day: Some("14:00-17:00 UTC, 3 of 3".into()),
        summary: "hall1-b overheated 3 times in 30d, always 14:00-17:00 UTC".into(),
    })
}

pub fn rollup() -> Event {
    Event::Rollup(RollupEvent {
        zone: ZoneId::new("hall1-b"),
        from: t("2026-11-02T14:00:00Z"),
        to: t("2026-11-02T14:05:00Z"),
        metrics: vec![RollupMetric {
            metric: Metric::new("inlet_temp_c"),
            unit: "°C".into(),
            min: 22.0,
            avg: 24.5,
            max: 28.4,
            count: 30,
        }],
    })
}

pub fn health(dropped: DropReport) -> HealthBody {
    let mut polls = BTreeMap::new();
    polls.insert("modbus".to_owned(), PollCounts { ok: 120, failed: 2 });
    polls.insert("snmp".to_owned(), PollCounts { ok: 60, failed: 0 });
    HealthBody {
        uptime_s: 3600,
        polls,
        devices: DeviceCounts { total: 5, up: 4, down: vec![DeviceId::new("crah-b1")] },
        outbox: OutboxHealth {
            depth: 3,
            bytes: 4000,
            max_bytes: 512 << 20,
            oldest_unacked_age_s: Some(12),
            connected: true,
            last_puback: Some(t("2026-11-02T14:05:00Z")),
        },
        dropped,
        noise: Default::default(),
    }
}

/// One outbound message of every kind the outbox carries.
pub fn every_kind() -> Vec<Outbound> {
    let s = site();
    vec![
        outbound_for(PREFIX, &s, &incident(IncidentEventKind::Opened, 1)),
        outbound_for(PREFIX, &s, &incident(IncidentEventKind::Updated, 1)),
        outbound_for(PREFIX, &s, &incident(IncidentEventKind::Resolved, 1)),
        outbound_for(PREFIX, &s, &pattern()),
        outbound_for(PREFIX, &s, &rollup()),
        health(DropReport::default()).outbound(PREFIX, &s),
    ]
}

/// The i-th message of a long stream: mostly incident lifecycle events, with the other kinds
/// mixed in.
pub fn stream_message(i: u64) -> Outbound {
    let s = site();
    match i % 10 {
        3 => outbound_for(PREFIX, &s, &incident(IncidentEventKind::Updated, i as u32)),
        5 => outbound_for(PREFIX, &s, &pattern()),
        7 => outbound_for(PREFIX, &s, &rollup()),
        9 => outbound_for(PREFIX, &s, &incident(IncidentEventKind::Resolved, i as u32)),
        _ => outbound_for(PREFIX, &s, &incident(IncidentEventKind::Opened, i as u32)),
    }
}

/// The JSON Schemas of `schemas/`, by message `type`.
pub struct Schemas(BTreeMap<String, jsonschema::Validator>);

impl Schemas {
    pub fn load() -> Schemas {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let mut m = BTreeMap::new();
        for name in ["incident", "pattern", "rollup", "health", "status"] {
            let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
            let schema: Value = serde_json::from_str(&text).unwrap();
            let v = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schemas/{name}.json: {e}"));
            m.insert(name.to_owned(), v);
        }
        Schemas(m)
    }

    /// Panics with every violation when `payload` does not match the schema of its `type`.
    pub fn check(&self, payload: &Value) {
        let ty = payload["type"].as_str().unwrap_or_else(|| panic!("payload without type: {payload}"));
        let v = self.0.get(ty).unwrap_or_else(|| panic!("no schema for type {ty}"));
        let errors: Vec<String> = v.iter_errors(payload).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{ty} payload violates schemas/{ty}.json: {errors:#?}\n{payload:#}");
    }

    /// Whether `payload` is valid (for negative tests).
    pub fn is_valid(&self, payload: &Value) -> bool {
        let ty = payload["type"].as_str().unwrap_or("");
        self.0.get(ty).is_some_and(|v| v.is_valid(payload))
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
