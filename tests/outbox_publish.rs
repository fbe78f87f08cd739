//! The publish path end to end against the embedded broker (rumqttd, feature
//! `embedded-broker`): ordering, acknowledgements emptying the outbox, schema validity,
//! status birth and clean-shutdown offline, oversize messages not poisoning the session.
#![cfg(feature = "embedded-broker")]

mod support;

use std::time::Duration;

use hallmonitor::config::{MqttSettings, StoreSettings};
use hallmonitor::model::Timestamp;
use hallmonitor::outbox::Outbound;
use hallmonitor::publish::{Publisher, PublisherOptions};
use hallmonitor::store::{DropReason, Store, StoreOptions};
use support::net::{free_port, listens_within};
use support::outbox::*;

fn start_broker() -> u16 {
    let port = free_port();
    let cfg: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 2097152
max_inflight_count = 200
dynamic_filters = true
"#
    ))
    .unwrap();
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(cfg);
        let _ = broker.start();
    });
    assert!(listens_within(port, Duration::from_secs(5)), "embedded broker did not listen on 127.0.0.1:{port}");
    port
}

fn mqtt(port: u16) -> MqttSettings {
    MqttSettings { max_inflight: 50, ..support::mqtt::settings(port, &format!("fra1-gw-{port}")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_in_order_valid_and_the_outbox_empties() {
    let port = start_broker();
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(port, "noc", "hallmonitor/v1/fra1/#", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreSettings { path: dir.path().into(), max_bytes: 64 << 20 }, &site()).unwrap();
    let publisher = Publisher::start(&mqtt(port), &site(), store.clone()).unwrap();
    let waker = publisher.waker();

    let total = 600u64;
    for b in 0..(total / 50) {
        let batch: Vec<Outbound> = (0..50).map(|i| stream_message(b * 50 + i)).collect();
        let seqs = store.commit(&batch, Some(b"state"), Timestamp::now()).await.unwrap();
        assert_eq!(seqs.len(), 50);
        waker.poke();
    }
    let mut seen = SeqSet::new(total);
    let got = sub.collect_until(Duration::from_secs(60), |r| seen.add(r)).await;
    let stream = outbox_only(&got);
    check_stream(&schemas, &stream, total);
    let online: Vec<_> = got.iter().filter(|r| r.topic == "hallmonitor/v1/fra1/status").collect();
    assert!(!online.is_empty(), "birth status published");
    schemas.check(&online[0].payload);
    assert_eq!(online[0].payload["state"], "online");

    // Acks empty the outbox (PUBACKs may trail the deliveries a little).
    let mut status = publisher.status();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.acked_total >= total))
        .await
        .expect("all messages acknowledged")
        .unwrap();
    assert_eq!(store.stats().unwrap().depth, 0);
    assert!(status.borrow().connected);
    assert!(status.borrow().last_puback.is_some());

    let end = publisher.shutdown(Duration::from_secs(5)).await;
    assert!(end.stopped);
    let bye = sub.collect_until(Duration::from_secs(20), |r| r.payload["state"] == "offline").await;
    let offline = bye.iter().find(|r| r.payload["state"] == "offline").unwrap();
    schemas.check(&offline.payload);
    assert_eq!(offline.payload["reason"], "shutdown");
    sub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_entry_is_discarded_and_reported_without_stalling_the_rest() {
    let port = start_broker();
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(port, "noc2", "hallmonitor/v1/fra1/incidents/#", false).await;
    let dir = tempfile::tempdir().unwrap();
    // The store accepts it (its own limit is larger); the broker link must refuse it.
    let store = Store::open_with(
        &StoreSettings { path: dir.path().into(), max_bytes: 64 << 20 },
        &site(),
        &StoreOptions { max_payload_bytes: 1 << 20, ..StoreOptions::default() },
    )
    .unwrap();
    let mut big = stream_message(0);
    big.payload["context"]["hint"] = "x".repeat(20_000).into();
    let batch = vec![stream_message(0), big, stream_message(0)];
    store.commit(&batch, None, Timestamp::now()).await.unwrap();
    let mut opts = PublisherOptions::new(&mqtt(port), &site());
    opts.max_packet_bytes = 16 * 1024;
    let publisher = Publisher::start_with(opts, store.clone()).unwrap();
    let got = sub.collect_until(Duration::from_secs(30), |r| r.payload["seq"] == 3).await;
    let seqs: Vec<_> = got.iter().filter_map(|r| r.payload["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![1, 3]);
    for r in &got {
        schemas.check(&r.payload);
    }
    let report = store.take_drop_report().unwrap();
    assert_eq!(report.total, 1);
    assert_eq!(report.ranges[0].first_seq, 2);
    assert_eq!(report.ranges[0].reason, DropReason::Oversize);
    publisher.shutdown(Duration::from_secs(2)).await;
    sub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_and_shutdown_still_returns() {
    // Nothing listens on this port.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreSettings { path: dir.path().into(), max_bytes: 1 << 20 }, &site()).unwrap();
    store.commit(&every_kind(), None, Timestamp::now()).await.unwrap();
    let publisher = Publisher::start(&mqtt(port), &site(), store.clone()).unwrap();
    let mut status = publisher.status();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.last_error.is_some()))
        .await
        .expect("the failure is reported")
        .unwrap();
    let err = status.borrow().last_error.clone().unwrap();
    assert!(err.contains(&format!("mqtt://127.0.0.1:{port}")) && err.contains("unreachable"), "{err}");
    // Backoff, not rumqttc's bare retry loop (about 10,000 attempts a second on a closed
    // port): 500 ms doubling with jitter makes about 4 attempts in 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = status.borrow().connect_attempts;
    assert!((2..=8).contains(&attempts), "connection attempts in ~3 s: {attempts}");
    let end = tokio::time::timeout(Duration::from_secs(20), publisher.shutdown(Duration::from_secs(5)))
        .await
        .expect("shutdown returns while the broker is away");
    assert!(end.stopped && !end.connected);
    assert_eq!(store.stats().unwrap().depth, 6, "nothing left the outbox without PUBACK");
}
