//! The `seq` contract for health messages: like every message with a `seq`, a health message
//! leaves the outbox only on the broker's PUBACK, so one written to a connection that dies
//! before acknowledging it is sent again on the next connection (at QoS 0 it was deleted as
//! soon as it was written, and the NOC saw a gap).
//!
//! The broker here is a few lines of MQTT 3.1.1 over a std `TcpListener`: it answers CONNECT
//! and PINGREQ, records every PUBLISH, and acknowledges only what the test tells it to.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use hallmonitor::config::{MqttSettings, StoreSettings};
use hallmonitor::model::Timestamp;
use hallmonitor::publish::Publisher;
use hallmonitor::store::{DropReport, Store};
use support::outbox::*;

/// One PUBLISH as the fake broker read it.
#[derive(Debug)]
struct Published {
    connection: u32,
    topic: String,
    qos: u8,
    payload: serde_json::Value,
}

fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 1];
    s.read_exact(&mut head)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// Serves connections one after the other. On connection 1 it closes the link as soon as the
/// health message arrives, without a PUBACK; later connections acknowledge everything.
fn fake_broker(listener: TcpListener, tx: mpsc::Sender<Published>) {
    for connection in 1u32.. {
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        while let Ok((head, body)) = read_packet(&mut s) {
            match head >> 4 {
                1 => {
                    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                }
                3 => {
                    let qos = (head >> 1) & 0x03;
                    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                    let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).into_owned();
                    let mut at = 2 + topic_len;
                    let pkid = (qos > 0).then(|| [body[at], body[at + 1]]);
                    if qos > 0 {
                        at += 2;
                    }
                    let payload = serde_json::from_slice(&body[at..]).unwrap_or(serde_json::Value::Null);
                    let is_health = topic.ends_with("/health");
                    if tx.send(Published { connection, topic, qos, payload }).is_err() {
                        return;
                    }
                    if connection == 1 && is_health {
                        // The link dies with the health message written and not acknowledged.
                        break;
                    }
                    if let Some([hi, lo]) = pkid {
                        let _ = s.write_all(&[0x40, 0x02, hi, lo]);
                    }
                }
                12 => {
                    let _ = s.write_all(&[0xd0, 0x00]);
                }
                14 => break,
                _ => {}
            }
        }
    }
}

fn mqtt(port: u16) -> MqttSettings {
    MqttSettings {
        max_inflight: 10,
        reconnect_max: Duration::from_secs(1),
        ..support::mqtt::settings(port, "fra1-gw-health")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_message_lost_on_a_dying_connection_is_resent_and_deleted_only_on_puback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || fake_broker(listener, tx));

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreSettings { path: dir.path().into(), max_bytes: 1 << 20 }, &site()).unwrap();
    let seqs =
        store.commit(&[health(DropReport::default()).outbound(PREFIX, &site())], None, Timestamp::now()).await.unwrap();
    let publisher = Publisher::start(&mqtt(port), &site(), store.clone()).unwrap();

    // Wait (off the runtime) for the health message on connection 1, then for it on connection 2.
    let health = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while got.len() < 2 {
            let p = rx.recv_timeout(Duration::from_secs(20)).expect("the health message is (re)sent");
            if p.topic.ends_with("/health") {
                got.push(p);
            }
        }
        got
    })
    .await
    .unwrap();
    assert_eq!(health[0].connection, 1);
    assert_eq!(health[1].connection, 2, "resent on the next connection");
    assert_eq!(health[0].qos, 1);
    assert_eq!(health[1].payload["seq"], seqs[0]);
    assert_eq!(health[0].payload["msg_id"], health[1].payload["msg_id"], "a duplicate keeps its msg_id");
    assert_eq!(health[0].payload, health[1].payload);

    // Acknowledged on connection 2: now, and only now, it leaves the outbox.
    let mut status = publisher.status();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.acked_total >= 1))
        .await
        .expect("the PUBACK is seen")
        .unwrap();
    assert_eq!(store.stats().unwrap().depth, 0);
    publisher.shutdown(Duration::from_secs(1)).await;
}
