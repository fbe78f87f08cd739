//! The retained `P/S/status` payloads: birth, last will and the clean-shutdown offline.
//!
//! These are not outbox messages (no `seq`/`msg_id`): they describe the connection itself and
//! are retained, so only the latest matters.
//!
//! In a gateway pair (`[ha]`) each also names the gateway (`node`) and the lease term it
//! connected under (`term`), so the NOC can tell a late last will of an old active (an older
//! term) from the site going offline; and the active republishes its `online` whenever it sees
//! such a stale status on the topic (see `is_stale_for`), so the retained status ends up right.

use serde_json::{Value, json};

use crate::model::{SiteId, Timestamp};
use crate::outbox::SCHEMA;

/// The gateway of a pair whose status this is: its `[ha] node` and the term it held the lease
/// under when its publisher started (a later active's term is always newer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairIdentity {
    pub node: String,
    pub term: u64,
}

/// Adds `node` and `term` to a status payload of a pair's gateway; unchanged without `[ha]`.
pub fn with_pair(mut status: Value, pair: Option<&PairIdentity>) -> Value {
    if let (Some(pair), Value::Object(m)) = (pair, &mut status) {
        m.insert("node".into(), Value::from(pair.node.clone()));
        m.insert("term".into(), Value::from(pair.term));
    }
    status
}

/// Whether a status seen on the topic while `me` is connected as the active must be
/// overwritten with `me`'s `online`: any `offline` (a last will or a shutdown of another
/// gateway, or of an earlier connection of this one, landing late), or the `online` of another
/// node under an older term. Never the `online` of a newer term (that gateway is the active;
/// this one is about to be fenced), so two gateways never republish over each other in turn.
pub fn is_stale_for(seen: &Value, me: &PairIdentity) -> bool {
    let term = seen["term"].as_u64().unwrap_or(0);
    match seen["state"].as_str() {
        Some("offline") => true,
        Some("online") => seen["node"].as_str() != Some(me.node.as_str()) && term < me.term,
        _ => false,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> PairIdentity {
        PairIdentity { node: "gw2".into(), term: 7 }
    }

    #[test]
    fn a_pairs_status_names_the_node_and_term_and_a_single_gateways_does_not() {
        let site = SiteId::new("fra1");
        let paired = with_pair(will(&site, "c"), Some(&me()));
        assert_eq!((paired["node"].as_str(), paired["term"].as_u64()), (Some("gw2"), Some(7)));
        let alone = with_pair(will(&site, "c"), None);
        assert!(alone.get("node").is_none() && alone.get("term").is_none(), "{alone}");
    }

    #[test]
    fn the_active_overwrites_any_offline_and_older_onlines_but_never_its_own_or_a_newer_one() {
        let site = SiteId::new("fra1");
        let now = Timestamp::now();
        let old = PairIdentity { node: "gw1".into(), term: 4 };
        let newer = PairIdentity { node: "gw1".into(), term: 9 };
        assert!(is_stale_for(&with_pair(will(&site, "c"), Some(&old)), &me()), "the old active's late will");
        assert!(is_stale_for(&will(&site, "c"), &me()), "a will without a term");
        assert!(is_stale_for(&with_pair(will(&site, "c"), Some(&me())), &me()), "an earlier connection's own will");
        assert!(is_stale_for(&with_pair(offline_shutdown(&site, "c", now), Some(&old)), &me()));
        assert!(is_stale_for(&with_pair(online(&site, "c", now, now), Some(&old)), &me()), "an older active's online");
        assert!(!is_stale_for(&with_pair(online(&site, "c", now, now), Some(&me())), &me()), "its own");
        assert!(!is_stale_for(&with_pair(online(&site, "c", now, now), Some(&newer)), &me()), "a newer active");
    }
}
