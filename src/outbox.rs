//! The outbox's own vocabulary, shared by `store` (which makes messages durable and hands
//! them out in `seq` order) and `publish` (which builds them from engine events and sends
//! them): the message class that decides drop priority, the message before and after it is
//! durable, and the envelope every published payload carries.
//!
//! It sits below both so neither imports the other for these types: `publish` uses the
//! `store` (it drains it), `store` knows nothing of MQTT.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// One durable outbox entry, as the publisher sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub seq: u64,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub class: MessageClass,
    pub created_at: Timestamp,
    /// The JSON payload with its envelope, exactly as published.
    pub payload: Vec<u8>,
    /// Bytes this entry occupies in the outbox accounting (key + record).
    pub stored_bytes: u64,
}
