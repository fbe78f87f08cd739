//! From engine events to MQTT messages: topics, QoS/retain, the envelope (DESIGN 4 and 5).
//!
//! Shared by the outbox (which assigns `seq` and `msg_id` when a message becomes durable)
//! and by `replay` (which prints what would be published).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::Event;
use crate::model::{SiteId, Timestamp};

/// The `schema` field of every payload.
pub const SCHEMA: &str = "hallmonitor/v1";

/// What kind of message, which decides its drop priority when the outbox is full:
/// lower `drop_rank` goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageClass {
    Health,
    Rollup,
    /// An incident `updated` event: superseded by the next update or the resolution.
    IncidentUpdate,
    /// An incident `opened` or `resolved` event: never dropped while anything else can go.
    IncidentLifecycle,
    Pattern,
    Status,
}

impl MessageClass {
    /// Lower goes first when the outbox must shed.
    pub fn drop_rank(self) -> u8 {
        match self {
            MessageClass::Health => 0,
            MessageClass::Rollup => 1,
            MessageClass::IncidentUpdate => 2,
            MessageClass::IncidentLifecycle | MessageClass::Pattern | MessageClass::Status => 3,
        }
    }
}

/// A message ready to be made durable: everything but the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub class: MessageClass,
    /// The payload fields, `type` included, envelope excluded.
    pub payload: Value,
}

/// The envelope fields every payload carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub site: SiteId,
    /// Stable across retries and restarts; the NOC drops duplicates by it.
    pub msg_id: String,
    /// Per-site, strictly increasing in outbox order.
    pub seq: u64,
    pub created_at: Timestamp,
}

/// Topic prefix joined with the site: `P/S`.
pub fn site_topic(prefix: &str, site: &SiteId) -> String {
    format!("{}/{}", prefix.trim_end_matches('/'), site)
}

/// Topic, QoS, retain and class of an engine event, with its payload fields.
pub fn outbound_for(prefix: &str, site: &SiteId, event: &Event) -> Outbound {
    let base = site_topic(prefix, site);
    let (topic, retain, class) = match event {
        Event::Incident(e) => {
            let class = match e.event {
                crate::engine::IncidentEventKind::Updated => MessageClass::IncidentUpdate,
                _ => MessageClass::IncidentLifecycle,
            };
            (format!("{base}/incidents/{}", e.zone), false, class)
        }
        Event::Pattern(e) => (format!("{base}/patterns/{}", e.zone), true, MessageClass::Pattern),
        Event::Rollup(e) => (format!("{base}/rollups/{}", e.zone), false, MessageClass::Rollup),
    };
    // Serializing our own plain data types cannot fail (no maps with non-string keys).
    let payload = serde_json::to_value(event).unwrap_or(Value::Null);
    Outbound { topic, qos: 1, retain, class, payload }
}

/// The health message (QoS 1, retained) from any serializable body. QoS 1 like everything
/// else that carries a `seq`: it leaves the outbox only on its PUBACK (or by the `max_bytes`
/// bound, which reports the shed range), so a gap in `seq` always means loss.
pub fn outbound_health(prefix: &str, site: &SiteId, body: &impl Serialize) -> Outbound {
    let mut payload = serde_json::to_value(body).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut payload {
        m.insert("type".into(), Value::from("health"));
    }
    Outbound {
        topic: format!("{}/health", site_topic(prefix, site)),
        qos: 1,
        retain: true,
        class: MessageClass::Health,
        payload,
    }
}

/// The payload as published: envelope fields first, then the message's own fields.
pub fn with_envelope(payload: &Value, env: &Envelope) -> Value {
    let mut m = Map::new();
    m.insert("schema".into(), Value::from(SCHEMA));
    m.insert("site".into(), Value::from(env.site.as_str()));
    m.insert("msg_id".into(), Value::from(env.msg_id.clone()));
    m.insert("seq".into(), Value::from(env.seq));
    m.insert("created_at".into(), Value::from(env.created_at.to_rfc3339()));
    if let Value::Object(fields) = payload {
        for (k, v) in fields {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{PatternEvent, PatternState, PatternTrigger};
    use crate::model::{Category, ZoneId};

    #[test]
    fn pattern_goes_to_retained_zone_topic_with_envelope_first() {
        let ev = Event::Pattern(PatternEvent {
            state: PatternState::Active,
            pattern_id: "fra1-hall1-b-thermal".into(),
            zone: ZoneId::new("hall1-b"),
            zones: vec![ZoneId::new("hall1-b")],
            category: Category::Thermal,
            trigger: PatternTrigger::Recurrence,
            occurrences: 3,
            window: "30d".into(),
            incident_ids: vec![],
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            racks: vec![],
            time_of_day: None,
            summary: "s".into(),
        });
        let site = SiteId::new("fra1");
        let out = outbound_for("hallmonitor/v1", &site, &ev);
        assert_eq!(out.topic, "hallmonitor/v1/fra1/patterns/hall1-b");
        assert!(out.retain);
        let env = Envelope { site, msg_id: "x-1".into(), seq: 1, created_at: Timestamp(0) };
        let full = with_envelope(&out.payload, &env);
        let keys: Vec<_> = full.as_object().unwrap().keys().cloned().collect();
        assert_eq!(&keys[..6], ["schema", "site", "msg_id", "seq", "created_at", "type"]);
        assert_eq!(full["type"], "pattern");
        assert_eq!(full["trigger"], "recurrence");
    }
}
