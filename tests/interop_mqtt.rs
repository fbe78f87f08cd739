//! Store-and-forward against a real mosquitto (Debian package `mosquitto`), started by each
//! test on a free loopback port with its own config file, and stopped by it.
//!
//! (a) broker down for 30 s while messages flow, then restarted, (b) the agent
//!     SIGKILLed mid-stream (a child process) and restarted, (c) TLS with a generated CA and
//!     a wrong CA, (d) wrong password: clear error and backoff, (e) the outbox at max_bytes
//!     during an outage sheds rollups/health first and reports it. Every received message is
//!     validated against its schema.
#![cfg(feature = "interop")]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hallmonitor::config::{MqttSettings, Secret, StoreSettings};
use hallmonitor::model::Timestamp;
use hallmonitor::outbox::{MessageClass, Outbound};
use hallmonitor::publish::{Publisher, PublisherOptions};
use hallmonitor::store::Store;
use support::mosquitto::{Mosquitto, plain_listener};
use support::mqtt;
use support::net::free_port;
use support::outbox::*;
use support::tls::{make_ca, make_server_cert};

fn opts(m: MqttSettings) -> PublisherOptions {
    let mut o = PublisherOptions::new(&m, &site());
    o.backoff_initial = Duration::from_millis(200);
    o
}

fn open_store(dir: &Path, max_bytes: u64) -> Store {
    Store::open(&StoreSettings { path: dir.to_owned(), max_bytes }, &site()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_keeps_order() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(tmp.path(), &plain_listener(port), vec![port]);
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(port, "noc-a", "hallmonitor/v1/fra1/#", true).await;
    let store_dir = tmp.path().join("store");
    let store = open_store(&store_dir, 256 << 20);
    let publisher = Publisher::start_with(opts(mqtt::settings(port, "fra1-gw-a")), store.clone()).unwrap();
    let waker = publisher.waker();

    // Messages flow in batches; the broker goes away for 30 s in the middle (docs/contracts.md#durability, issue 6).
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            for _ in 0..300 {
                let batch: Vec<Outbound> = (0..10).map(|i| stream_message(n + i)).collect();
                n += 10;
                store.commit(&batch, Some(format!("state-{n}").as_bytes()), Timestamp::now()).await.unwrap();
                waker.poke();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(store.stats().unwrap().depth > 0, "messages wait in the outbox during the outage");
    assert!(!publisher.status().borrow().connected);
    broker.restart();
    let total = producer.await.unwrap();

    let mut seen = SeqSet::new(total);
    let got = sub.collect_until(Duration::from_secs(60), |r| seen.add(r)).await;
    let dups = check_stream(&schemas, &outbox_only(&got), total);
    let mut status = publisher.status();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.acked_total >= total))
        .await
        .expect("everything acknowledged after the outage")
        .unwrap();
    assert!(status.borrow().connections >= 2, "reconnected: {:?}", *status.borrow());
    assert_eq!(store.stats().unwrap().depth, 0);
    eprintln!("outage: {total} messages, {dups} duplicates (same msg_id), all in order");
    publisher.shutdown(Duration::from_secs(5)).await;
    sub.stop();
}

/// The body of the child process of `a_sigkilled_agent_resumes_without_gaps_or_reuse`:
/// runs only when the parent test starts this binary with `HM_CHILD_STORE` set.
#[test]
fn child_agent_process() {
    let (Ok(dir), Ok(port)) = (std::env::var("HM_CHILD_STORE"), std::env::var("HM_CHILD_PORT")) else {
        return;
    };
    let port: u16 = port.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = open_store(Path::new(&dir), 256 << 20);
        let publisher = Publisher::start_with(opts(mqtt::settings(port, "fra1-gw-b")), store.clone()).unwrap();
        let mut n = store.stats().unwrap().last_seq;
        loop {
            let batch: Vec<Outbound> = (0..5).map(|i| stream_message(n + i)).collect();
            n += 5;
            // The state names the last seq of its batch: after the kill, the reopened store
            // must hold the state of exactly its last durable batch.
            store.commit(&batch, Some(format!("state-{n}").as_bytes()), Timestamp::now()).await.unwrap();
            publisher.poke();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_agent_resumes_without_gaps_or_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::start(tmp.path(), &plain_listener(port), vec![port]);
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(port, "noc-b", "hallmonitor/v1/fra1/#", true).await;
    let store_dir = tmp.path().join("store");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_agent_process", "--exact", "--nocapture", "--test-threads", "1"])
        .env("HM_CHILD_STORE", &store_dir)
        .env("HM_CHILD_PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let it get well into the stream, then SIGKILL it.
    let mut n = 0;
    let before = sub
        .collect_until(Duration::from_secs(60), |r| {
            n += usize::from(!r.topic.ends_with("/status"));
            n >= 800
        })
        .await;
    // At a random point of the pipeline: mid-commit, mid-flush, messages in flight.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let store = open_store(&store_dir, 256 << 20);
    let last = store.stats().unwrap().last_seq;
    let state = String::from_utf8(store.load_engine_state().unwrap().unwrap()).unwrap();
    assert_eq!(state, format!("state-{last}"), "engine state and messages are committed together");
    let seen_max = outbox_only(&before).iter().filter_map(|r| r.payload["seq"].as_u64()).max().unwrap();
    assert!(seen_max <= last, "the NOC saw seq {seq} which the store never made durable (last {last})", seq = seen_max);

    // The restarted agent resends what was not acknowledged and goes on.
    let publisher = Publisher::start_with(opts(mqtt::settings(port, "fra1-gw-b")), store.clone()).unwrap();
    let batch: Vec<Outbound> = (0..200).map(|i| stream_message(last + i)).collect();
    store.commit(&batch, Some(b"after"), Timestamp::now()).await.unwrap();
    publisher.poke();
    let total = last + 200;
    let mut seen = SeqSet::new(total);
    let mut all = before;
    let mut done = false;
    for r in &all {
        done = seen.add(r);
    }
    if !done {
        let rest = sub.collect_until(Duration::from_secs(60), |r| seen.add(r)).await;
        all.extend(rest);
    }
    let dups = check_stream(&schemas, &outbox_only(&all), total);
    eprintln!("SIGKILL after seq {last} (NOC had up to {seen_max}); {total} messages, {dups} duplicates");
    publisher.shutdown(Duration::from_secs(5)).await;
    sub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_right_ca_publishes_and_a_wrong_ca_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    make_server_cert(d, "ca");
    let (plain, tls) = (free_port(), free_port());
    let listeners = format!(
        "{}listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        plain_listener(plain),
        d = d.display()
    );
    let _broker = Mosquitto::start(d, &listeners, vec![plain, tls]);
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(plain, "noc-c", "hallmonitor/v1/fra1/#", false).await;

    // Wrong CA: one clear error naming the broker and the cause, no connection.
    let mut wrong = mqtt::settings(tls, "fra1-gw-c-wrong");
    wrong.tls = true;
    wrong.ca_file = Some(d.join("other-ca.pem"));
    let store_w = open_store(&d.join("store-w"), 1 << 20);
    let pw = Publisher::start_with(opts(wrong), store_w).unwrap();
    let mut st = pw.status();
    tokio::time::timeout(Duration::from_secs(20), st.wait_for(|s| s.last_error.is_some()))
        .await
        .expect("a TLS error is reported")
        .unwrap();
    let err = st.borrow().last_error.clone().unwrap();
    assert!(err.contains(&format!("mqtts://127.0.0.1:{tls}")), "{err}");
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("other-ca.pem"), "names the CA file: {err}");
    assert_eq!(st.borrow().connections, 0);
    drop(pw);

    // Right CA: messages flow.
    let mut right = mqtt::settings(tls, "fra1-gw-c");
    right.tls = true;
    right.ca_file = Some(d.join("ca.pem"));
    let store = open_store(&d.join("store"), 1 << 20);
    let publisher = Publisher::start_with(opts(right), store.clone()).unwrap();
    store.commit(&every_kind(), None, Timestamp::now()).await.unwrap();
    publisher.poke();
    let mut seen = SeqSet::new(6);
    let got = sub.collect_until(Duration::from_secs(30), |r| seen.add(r)).await;
    check_stream(&schemas, &outbox_only(&got), 6);
    publisher.shutdown(Duration::from_secs(5)).await;
    sub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_with_backoff_not_a_tight_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pwfile = d.join("passwd");
    let st = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pwfile)
        .args(["fra1", "right-password"])
        .status()
        .expect("mosquitto_passwd (Debian package `mosquitto`)");
    assert!(st.success());
    let port = free_port();
    let listeners = format!("listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n", pwfile.display());
    let _broker = Mosquitto::start(d, &listeners, vec![port]);

    let mut m = mqtt::settings(port, "fra1-gw-d");
    m.username = Some("fra1".into());
    m.password = Some(Secret::new("wrong-password"));
    m.reconnect_max = Duration::from_secs(60);
    let mut o = PublisherOptions::new(&m, &site());
    o.backoff_initial = Duration::from_millis(500);
    let store = open_store(&d.join("store"), 1 << 20);
    let publisher = Publisher::start_with(o, store).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = publisher.status().borrow().clone();
    let err = s.last_error.clone().unwrap_or_default();
    // mosquitto answers a bad password with "not authorized" (MQTT 3.1.1 return code 5).
    assert!(err.contains("not authorized") || err.contains("bad username or password"), "{err}");
    assert!(err.contains("password"), "points at the credentials: {err}");
    assert!(err.contains(&format!("mqtt://127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("wrong-password"), "the password never appears: {err}");
    // 500 ms doubling with jitter: about 4-5 attempts in 6 s; a tight loop would be thousands.
    assert!((2..=8).contains(&s.connect_attempts), "connection attempts in 6 s: {}", s.connect_attempts);
    assert_eq!(s.connections, 0);
    publisher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_during_an_outage_sheds_rollups_and_health_first_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(tmp.path(), &plain_listener(port), vec![port]);
    let schemas = Schemas::load();
    let mut sub = Subscriber::start(port, "noc-e", "hallmonitor/v1/fra1/#", true).await;
    broker.stop();

    let store = open_store(&tmp.path().join("store"), 256 * 1024);
    let publisher = Publisher::start_with(opts(mqtt::settings(port, "fra1-gw-e")), store.clone()).unwrap();
    // A long outage: lifecycle events, updates, patterns, rollups and health, far more than
    // fits. Rollups and health every other message so there is plenty to shed.
    let mut classes = Vec::new();
    for b in 0..60u64 {
        let mut batch: Vec<Outbound> = Vec::new();
        for i in 0..10u64 {
            let n = b * 10 + i;
            let m = match n % 4 {
                0 => stream_message(n * 10 + 7), // rollup
                1 => health(Default::default()).outbound(PREFIX, &site()),
                2 => stream_message(n * 10),     // incident opened
                _ => stream_message(n * 10 + 3), // incident updated
            };
            classes.push(m.class);
            batch.push(m);
        }
        store.commit(&batch, None, Timestamp::now()).await.unwrap();
    }
    let report = store.take_drop_report().unwrap();
    assert!(report.total > 0, "the bound was reached");
    let lifecycle_dropped = report.by_class.get(&MessageClass::IncidentLifecycle).copied().unwrap_or(0);
    assert_eq!(lifecycle_dropped, 0, "opened events are kept while anything else can go: {report:?}");
    assert!(report.by_class.get(&MessageClass::Rollup).copied().unwrap_or(0) > 0);
    assert!(report.by_class.get(&MessageClass::Health).copied().unwrap_or(0) > 0);
    assert!(store.stats().unwrap().bytes <= 256 * 1024);
    // The next health message carries the report.
    let mut body = health(report.clone());
    body.outbox.depth = store.stats().unwrap().depth;
    let seqs = store.commit(&[body.outbound(PREFIX, &site())], None, Timestamp::now()).await.unwrap();
    let health_seq = seqs[0];
    // Making room for it sheds older health and updates, not the health message that
    // carries the report (checked below: it is still in the outbox).
    let report2 = store.take_drop_report().unwrap();
    assert!(!report2.by_class.contains_key(&MessageClass::IncidentLifecycle), "{report2:?}");
    // What survived the shedding; wait until all of it arrived.
    let kept: Vec<u64> = store.peek_from(None, 100_000).unwrap().iter().map(|m| m.seq).collect();
    assert!(kept.contains(&health_seq));

    broker.restart();
    publisher.poke();
    let mut seen = SeqSet::of(kept.iter().copied());
    let got = match sub.try_collect_until(Duration::from_secs(60), |r| seen.add(r)).await {
        Ok(got) => got,
        Err(got) => {
            let missing = seen.missing();
            let classes: Vec<_> = missing.iter().map(|s| classes.get(*s as usize - 1).copied()).collect();
            panic!(
                "after 60 s, {} of {} kept messages missing: {:?} classes {:?}; publisher {:?}; received {}: {:?}",
                missing.len(),
                kept.len(),
                &missing[..missing.len().min(20)],
                &classes[..classes.len().min(20)],
                *publisher.status().borrow(),
                got.len(),
                got.iter().take(6).map(|r| (r.topic.clone(), r.payload["seq"].clone(), r.retain)).collect::<Vec<_>>()
            );
        }
    };
    let stream = outbox_only(&got);
    for r in &stream {
        schemas.check(&r.payload);
    }
    let received: std::collections::BTreeSet<u64> = stream.iter().filter_map(|r| r.payload["seq"].as_u64()).collect();
    let total = classes.len() as u64;
    // Every lifecycle event arrived; what did not arrive is exactly what the report counts.
    for (i, c) in classes.iter().enumerate() {
        if *c == MessageClass::IncidentLifecycle {
            assert!(received.contains(&(i as u64 + 1)), "opened event seq {} lost", i + 1);
        }
    }
    let missing = (1..=total).filter(|s| !received.contains(s)).count() as u64;
    assert_eq!(missing, report.total + report2.total, "the NOC can account for every gap");
    let h = stream.iter().find(|r| r.payload["seq"].as_u64() == Some(health_seq)).unwrap();
    assert_eq!(h.payload["dropped"]["total"].as_u64(), Some(report.total));
    assert_eq!(h.payload["type"], "health");
    publisher.shutdown(Duration::from_secs(5)).await;
    sub.stop();
}
