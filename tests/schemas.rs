//! Every message type the agent publishes validates against its JSON Schema in `schemas/`,
//! built the way the agent builds them: engine events -> `outbound_for` -> store commit
//! (which adds the envelope).

mod support;

use hallmonitor::config::StoreSettings;
use hallmonitor::model::Timestamp;
use hallmonitor::outbox::{Envelope, MessageClass, with_envelope};
use hallmonitor::publish::status;
use hallmonitor::store::{DropReason, DropReport, Store};
use serde_json::Value;
use support::outbox::*;

fn envelope(seq: u64) -> Envelope {
    Envelope { site: site(), msg_id: format!("0123abcd-{seq}"), seq, created_at: Timestamp(1_762_092_300_000) }
}

#[test]
fn every_message_kind_matches_its_schema() {
    let schemas = Schemas::load();
    for (i, out) in every_kind().iter().enumerate() {
        let payload = with_envelope(&out.payload, &envelope(i as u64 + 1));
        schemas.check(&payload);
    }
}

#[test]
fn messages_read_back_from_the_outbox_match_their_schemas() {
    let schemas = Schemas::load();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreSettings { path: dir.path().into(), max_bytes: 1 << 20 }, &site()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(store.commit(&every_kind(), None, Timestamp(1_762_092_300_123))).unwrap();
    let stored = store.peek_from(None, 100).unwrap();
    assert_eq!(stored.len(), 6);
    for m in stored {
        let payload: Value = serde_json::from_slice(&m.payload).unwrap();
        schemas.check(&payload);
        assert_eq!(payload["msg_id"], format!("{}-{}", store.epoch(), m.seq));
    }
}

#[test]
fn health_with_a_drop_report_matches_its_schema() {
    let schemas = Schemas::load();
    let mut report = DropReport::default();
    report.record(MessageClass::Rollup, DropReason::Full, 10);
    report.record(MessageClass::Rollup, DropReason::Full, 12);
    report.record(MessageClass::Health, DropReason::Oversize, 13);
    let out = health(report).outbound(PREFIX, &site());
    let payload = with_envelope(&out.payload, &envelope(20));
    schemas.check(&payload);
    assert_eq!(payload["dropped"]["by_class"]["rollup"], 2);
}

#[test]
fn status_birth_will_and_shutdown_match_the_status_schema() {
    let schemas = Schemas::load();
    let now = Timestamp(1_762_092_300_000);
    schemas.check(&status::online(&site(), "fra1-gw1", now, now));
    schemas.check(&status::will(&site(), "fra1-gw1"));
    schemas.check(&status::offline_shutdown(&site(), "fra1-gw1", now));
    let pair = status::PairIdentity { node: "gw1".into(), term: 3 };
    schemas.check(&status::with_pair(status::online(&site(), "fra1-gw1", now, now), Some(&pair)));
    schemas.check(&status::with_pair(status::will(&site(), "fra1-gw1"), Some(&pair)));
    schemas.check(&status::with_pair(status::offline_shutdown(&site(), "fra1-gw1", now), Some(&pair)));
}

#[test]
fn schemas_reject_what_the_noc_must_not_accept() {
    let schemas = Schemas::load();
    let resolved = every_kind().remove(2);
    let mut payload = with_envelope(&resolved.payload, &envelope(3));
    assert!(schemas.is_valid(&payload));
    payload.as_object_mut().unwrap().remove("chronicle");
    assert!(!schemas.is_valid(&payload), "a resolved incident needs its chronicle");

    let opened = every_kind().remove(0);
    let mut payload = with_envelope(&opened.payload, &envelope(1));
    payload["category"] = "weather".into();
    assert!(!schemas.is_valid(&payload), "unknown category");
    let mut payload = with_envelope(&opened.payload, &envelope(1));
    payload.as_object_mut().unwrap().remove("msg_id");
    assert!(!schemas.is_valid(&payload), "envelope is required");
    let mut payload = with_envelope(&opened.payload, &envelope(1));
    payload["opened_at"] = "yesterday".into();
    assert!(!schemas.is_valid(&payload), "times are RFC 3339");
}

#[test]
fn rack_load_in_amps_matches_the_schema_and_needs_watts_or_amps() {
    let schemas = Schemas::load();
    let opened = every_kind().remove(0);
    let mut payload = with_envelope(&opened.payload, &envelope(1));
    let amps = serde_json::json!({"rack": "B07", "change_pct": 37.0, "basis": "current_a",
        "current_a": 24.0, "baseline_a": 17.5});
    payload["context"]["rack_load"] = serde_json::json!([amps]);
    assert!(schemas.is_valid(&payload), "amps only");
    payload["context"]["rack_load"] = serde_json::json!([{"rack": "B07", "change_pct": 37.0}]);
    assert!(!schemas.is_valid(&payload), "a rack load without watts or amps");
}
