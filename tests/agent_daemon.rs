//! `hallmonitor run` as systemd runs it, against the in-tree Modbus simulator and the embedded
//! broker: an incident opens, the agent is SIGKILLed mid-incident and restarted (the incident
//! continues: no second `opened`, its resolution arrives with the same id), SIGHUP adds a
//! device, SIGTERM exits 0 after publishing `offline`. Every message arrives with `seq`
//! strictly increasing and no gap, duplicates only with the same `msg_id`.

#![cfg(feature = "embedded-broker")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallmonitor::model::{DeviceId, PointId};
use hallmonitor::sim::SimValues;
use hallmonitor::sim::broker::EmbeddedBroker;
use hallmonitor::sim::modbus::{SimModbusDevice, serve};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use support::files::write_config;
use support::process::status;
use support::profiles::modbus_builtin;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

fn config(port: u16, broker: &str, store: &Path, second_device: bool) -> String {
    let mut c = format!(
        r#"
[site]
id = "fra1"

[mqtt]
url = "mqtt://{broker}"
client_id = "fra1-gw-test"

[store]
path = "{store}"

[polling]
interval = "300ms"
timeout = "1s"

[health]
interval = "1s"

[[zones]]
id = "hall1-b"
racks = ["B07", "B08"]

[thresholds.inlet_temp_c]
for = "500ms"

[correlation]
clear_hold = "1500ms"
update_min_interval = "1s"

[[devices]]
id = "th-b07"
profile = "modbus-th-probe"
zone = "hall1-b"
rack = "B07"
[devices.modbus]
address = "127.0.0.1:{port}"
unit = 1
"#,
        store = store.display()
    );
    if second_device {
        c.push_str(&format!(
            "\n[[devices]]\nid = \"th-b08\"\nprofile = \"modbus-th-probe\"\nzone = \"hall1-b\"\nrack = \"B08\"\n[devices.modbus]\naddress = \"127.0.0.1:{port}\"\nunit = 2\n"
        ));
    }
    c
}

fn start_agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("XDG_RUNTIME_DIR", runtime_dir(config))
        .env_remove("RUNTIME_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hallmonitor run")
}

/// The runtime directory the test's daemon writes its status snapshot under.
fn runtime_dir(config: &Path) -> std::path::PathBuf {
    config.parent().unwrap().join("run")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} failed");
}

async fn wait_for(inbox: &Inbox, what: &str, timeout: Duration, pred: impl Fn(&str, &Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((_, v)) = inbox.lock().unwrap().iter().find(|(t, v)| pred(t, v)) {
            return v.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; got:\n{:#?}", inbox.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_restart_reload_and_sigterm_keep_every_message_in_order() {
    // The devices.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let values = Arc::new(SimValues::new());
    let (b07, b08) = (DeviceId::new("th-b07"), DeviceId::new("th-b08"));
    let (temp, hum) = (PointId::new("temperature"), PointId::new("humidity"));
    for d in [&b07, &b08] {
        values.set(d, &temp, 0, 22.0);
        values.set(d, &hum, 0, 40.0);
    }
    let units = HashMap::from([
        (1, SimModbusDevice { id: b07.clone(), profile: modbus_builtin("modbus-th-probe") }),
        (2, SimModbusDevice { id: b08.clone(), profile: modbus_builtin("modbus-th-probe") }),
    ]);
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, units, values.clone(), cancel.clone()));

    // The NOC.
    let broker = EmbeddedBroker::start().unwrap();
    let inbox: Inbox = Arc::default();
    let mut opts = MqttOptions::new("noc-test", "127.0.0.1", broker.addr().port());
    opts.set_max_packet_size(4 << 20, 64 << 10);
    let (client, mut events) = AsyncClient::new(opts, 100);
    client.subscribe("hallmonitor/v1/fra1/#", QoS::AtLeastOnce).await.unwrap();
    let sink = inbox.clone();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap();
                    sink.lock().unwrap().push((p.topic.clone(), v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = write_config(dir.path(), &config(port, &broker.addr().to_string(), &store, false));

    // 1. An incident opens.
    let mut agent = start_agent(&cfg);
    wait_for(&inbox, "online status", Duration::from_secs(20), |t, v| t.ends_with("/status") && v["state"] == "online")
        .await;
    values.set(&b07, &temp, 0, 30.5);
    let opened = wait_for(&inbox, "incident opened", Duration::from_secs(20), |_, v| v["event"] == "opened").await;
    let id = opened["incident_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["zone"], "hall1-b");
    assert_eq!(opened["racks"], serde_json::json!(["B07"]));

    // 2. SIGKILL mid-incident; the broker publishes the will.
    signal(&agent, "-KILL");
    agent.wait().unwrap();
    wait_for(&inbox, "last will", Duration::from_secs(20), |t, v| t.ends_with("/status") && v["state"] == "offline")
        .await;

    // 3. Restart: the incident continues and resolves under the same id.
    agent = start_agent(&cfg);
    values.set(&b07, &temp, 0, 22.0);
    let resolved =
        wait_for(&inbox, "incident resolved", Duration::from_secs(30), |_, v| v["event"] == "resolved").await;
    assert_eq!(resolved["incident_id"], id.as_str(), "the restarted agent continued the same incident");
    assert!(resolved["chronicle"].as_array().is_some_and(|c| c.len() >= 2), "{resolved}");

    // 4. SIGHUP with a second device: the status snapshot lists it.
    std::fs::write(&cfg, config(port, &broker.addr().to_string(), &store, true)).unwrap();
    signal(&agent, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = status(&cfg, &runtime_dir(&cfg));
        let devices = snap.as_ref().and_then(|s| s["devices"].as_array().cloned()).unwrap_or_default();
        if devices.iter().any(|d| d["id"] == b08.as_str() && !d["last_ok"].is_null()) {
            break;
        }
        assert!(Instant::now() < deadline, "reload did not start th-b08: {snap:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 5. SIGTERM: exit 0, offline published by the agent itself (reason shutdown).
    let before_term = inbox.lock().unwrap().len();
    signal(&agent, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not exit within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
    wait_for(&inbox, "shutdown status", Duration::from_secs(5), |t, v| {
        t.ends_with("/status") && v["state"] == "offline" && v["reason"] == "shutdown"
    })
    .await;
    assert!(inbox.lock().unwrap().len() > before_term);
    cancel.cancel();

    // Every enveloped message: seq 1..=max with no gap, duplicates only with the same msg_id,
    // exactly one `opened` for the incident.
    let inbox = inbox.lock().unwrap();
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for (_, v) in inbox.iter().filter(|(_, v)| v.get("seq").is_some()) {
        let seq = v["seq"].as_u64().unwrap();
        let msg_id = v["msg_id"].as_str().unwrap().to_owned();
        if let Some(prev) = by_seq.insert(seq, msg_id.clone()) {
            assert_eq!(prev, msg_id, "seq {seq} arrived twice with different msg_ids");
        }
    }
    let max = *by_seq.keys().next_back().unwrap();
    let missing: Vec<u64> = (1..=max).filter(|s| !by_seq.contains_key(s)).collect();
    assert!(missing.is_empty(), "gaps in seq: {missing:?}");
    // A redelivery after the SIGKILL (PUBACK not yet in) carries the same msg_id: one opening.
    let openings: std::collections::BTreeSet<&str> = inbox
        .iter()
        .filter(|(_, v)| v["event"] == "opened" && v["incident_id"] == id.as_str())
        .map(|(_, v)| v["msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(openings.len(), 1, "the incident was opened once, across the SIGKILL: {openings:?}");
}
