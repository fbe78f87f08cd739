//! The retained `P/S/status` payloads: birth, last will and the clean-shutdown offline.
//!
//! These are not outbox messages (no `seq`/`msg_id`): they describe the connection itself and
//! are retained, so only the latest matters.

use serde_json::{Value, json};

use crate::model::{SiteId, Timestamp};
use crate::outbox::SCHEMA;

/// `{"state":"online",...}`, published retained on every connect.
pub fn online(site: &SiteId, client_id: &str, started_at: Timestamp, now: Timestamp) -> Value {
    json!({
        "schema": SCHEMA,
        "type": "status",
        "site": site.as_str(),
        "state": "online",
        "client_id": client_id,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": started_at.to_rfc3339(),
        "at": now.to_rfc3339(),
    })
}

/// The last will: the broker publishes it when the connection drops without a DISCONNECT.
pub fn will(site: &SiteId, client_id: &str) -> Value {
    json!({
        "schema": SCHEMA,
        "type": "status",
        "site": site.as_str(),
        "state": "offline",
        "client_id": client_id,
        "reason": "connection_lost",
    })
}

/// What the agent publishes itself before a clean disconnect (the broker does not publish
/// the will then).
pub fn offline_shutdown(site: &SiteId, client_id: &str, now: Timestamp) -> Value {
    json!({
        "schema": SCHEMA,
        "type": "status",
        "site": site.as_str(),
        "state": "offline",
        "client_id": client_id,
        "reason": "shutdown",
        "at": now.to_rfc3339(),
    })
}
