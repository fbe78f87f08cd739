//! From engine events to MQTT messages: topics, QoS/retain and payload fields
//! (docs/contracts.md#topics, docs/contracts.md#payloads).
//!
//! The result is an `outbox::Outbound`; the outbox adds the envelope (`seq`, `msg_id`) when
//! the message becomes durable. `replay` uses the same mapping to print what would be published.

use serde::Serialize;
use serde_json::Value;

use crate::engine::Event;
use crate::model::SiteId;
use crate::outbox::{MessageClass, Outbound};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{PatternEvent, PatternState, PatternTrigger};
    use crate::model::Timestamp;
    use crate::model::{Category, ZoneId};
    use crate::outbox::{Envelope, with_envelope};

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
