//! For the outbox, schema and MQTT tests: one message of every kind, the schemas, a NOC-side
//! subscriber and the checks of what it received.

use std::collections::BTreeMap;
use std::path::Path;

use hallmonitor::engine::{
    Breach, ChronicleEntry, Event, IncidentContext, IncidentEvent, IncidentEventKind, PatternEvent, PatternState,
    PatternTrigger, PeakValue, RackLoad, RollupEvent, RollupMetric,
};
use hallmonitor::model::{Category, DeviceId, Metric, PointId, RackId, Severity, SiteId, Timestamp, ZoneId};
use hallmonitor::outbox::Outbound;
use hallmonitor::publish::message::outbound_for;
use hallmonitor::publish::{DeviceCounts, HaHealth, HealthBody, OutboxHealth, PollCounts, ReplicaHealth};
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
        peak: Some(value),
        clears_at: None,
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
                power_w: Some(6900.0),
                baseline_w: Some(5000.0),
                change_pct: 38.0,
                basis: "power_w".into(),
                current_a: None,
                baseline_a: None,
            }],
            probable_cause: None,
            hint: Some("B07 draws 38 % more than its 7-day median".into()),
        },
        changes: if kind == IncidentEventKind::Updated { vec!["racks added: B08".into()] } else { Vec::new() },
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
        ha: Some(HaHealth {
            node: "gw1".to_owned(),
            role: "active".to_owned(),
            term: 7,
            last_takeover_at: Some(t("2026-11-02T13:05:00Z")),
            last_takeover_reason: Some("peer unreachable (its lease ran out or it never held)".to_owned()),
            replica: Some(ReplicaHealth { state: "lagging".to_owned(), lag_entries: 2, lag_ms: 40 }),
        }),
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

/// One message as the NOC receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Value,
    pub retain: bool,
}

/// A NOC-side subscriber (rumqttc) forwarding every publish to a channel. With
/// `persistent`, it uses a persistent session (clean_session=false, QoS 1), so messages
/// published while it is disconnected are kept for it by the broker.
pub struct Subscriber {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Received>,
    pub client: rumqttc::AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects, subscribes to `filter` with QoS 1 and waits for the SUBACK.
    pub async fn start(port: u16, client_id: &str, filter: &str, persistent: bool) -> Subscriber {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(!persistent);
        o.set_keep_alive(std::time::Duration::from_secs(5));
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_inflight(100);
        let (client, mut ev) = rumqttc::AsyncClient::new(o, 1000);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let c2 = client.clone();
        let filter2 = filter.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(ack))) => {
                        // A resumed persistent session keeps its subscription: subscribe only
                        // on a fresh session, like a real NOC client (re-subscribing would
                        // also replay retained messages).
                        if !ack.session_present {
                            let _ = c2.subscribe(filter2.clone(), rumqttc::QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        let payload: Value = serde_json::from_slice(&p.payload)
                            .unwrap_or_else(|e| panic!("non-JSON payload on {}: {e}", p.topic));
                        let _ = tx.send(Received { topic: p.topic.clone(), payload, retain: p.retain });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(20), ready_rx)
            .await
            .expect("subscriber got no SUBACK within 20 s")
            .unwrap();
        Subscriber { rx, client, task }
    }

    /// Receives until `done` (called with each new message) says so, or panics after
    /// `limit` naming how many arrived.
    pub async fn collect_until(
        &mut self,
        limit: std::time::Duration,
        done: impl FnMut(&Received) -> bool,
    ) -> Vec<Received> {
        match self.try_collect_until(limit, done).await {
            Ok(got) => got,
            Err(got) => panic!("gave up after {limit:?} with {} messages received", got.len()),
        }
    }

    /// Like `collect_until`, but hands back what arrived when `limit` passes.
    pub async fn try_collect_until(
        &mut self,
        limit: std::time::Duration,
        mut done: impl FnMut(&Received) -> bool,
    ) -> Result<Vec<Received>, Vec<Received>> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    let finished = done(&r);
                    got.push(r);
                    if finished {
                        return Ok(got);
                    }
                }
                Ok(None) => panic!("subscriber channel closed"),
                Err(_) => return Err(got),
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// The outbox's messages among those received (status is not an outbox message).
pub fn outbox_only(got: &[Received]) -> Vec<Received> {
    got.iter().filter(|r| !r.topic.ends_with("/status")).cloned().collect()
}

/// Checks the NOC-side guarantees over what a subscriber received on the outbox topics:
/// every seq in `1..=last`, first occurrences in order, duplicates only with an identical
/// msg_id and payload, and every payload valid against its schema. Returns the number of
/// duplicates.
pub fn check_stream(schemas: &Schemas, got: &[Received], last: u64) -> usize {
    let mut first: BTreeMap<u64, Value> = BTreeMap::new();
    let mut order = Vec::new();
    let mut dups = 0;
    for r in got {
        schemas.check(&r.payload);
        let Some(seq) = r.payload["seq"].as_u64() else { continue };
        match first.get(&seq) {
            Some(prev) => {
                assert_eq!(prev["msg_id"], r.payload["msg_id"], "seq {seq} received twice with different msg_id");
                assert_eq!(prev, &r.payload, "duplicate of seq {seq} differs");
                dups += 1;
            }
            None => {
                first.insert(seq, r.payload.clone());
                order.push(seq);
            }
        }
    }
    let missing: Vec<u64> = (1..=last).filter(|s| !first.contains_key(s)).collect();
    assert!(missing.is_empty(), "{} seqs never arrived, first: {:?}", missing.len(), &missing[..missing.len().min(20)]);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "first occurrences out of order: {:?}", first_disorder(&order));
    dups
}

fn first_disorder(order: &[u64]) -> Option<(u64, u64)> {
    order.windows(2).find(|w| w[0] >= w[1]).map(|w| (w[0], w[1]))
}

/// Tracks which of the wanted outbox seqs have arrived (status messages are ignored).
pub struct SeqSet {
    want: std::collections::BTreeSet<u64>,
    seen: std::collections::BTreeSet<u64>,
}

impl SeqSet {
    /// Waits for every seq in `1..=last`.
    pub fn new(last: u64) -> SeqSet {
        Self::of(1..=last)
    }
    /// Waits for exactly these seqs.
    pub fn of(seqs: impl IntoIterator<Item = u64>) -> SeqSet {
        SeqSet { want: seqs.into_iter().collect(), seen: Default::default() }
    }
    /// Records `r`; true once every wanted seq has arrived.
    pub fn add(&mut self, r: &Received) -> bool {
        if let Some(seq) = r.payload["seq"].as_u64()
            && self.want.contains(&seq)
            && !r.topic.ends_with("/status")
        {
            self.seen.insert(seq);
        }
        self.complete()
    }
    pub fn complete(&self) -> bool {
        self.seen.len() == self.want.len()
    }
    /// The wanted seqs not seen yet.
    pub fn missing(&self) -> Vec<u64> {
        self.want.difference(&self.seen).copied().collect()
    }
}
