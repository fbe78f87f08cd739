//! Tests of the shell, one input at a time: the loop's priorities under a flood of readings
//! (paused tokio time), readings to a device going down, the tick's snapshot, signals and
//! reload. The broker and the device are loopback ports nobody listens on.

use std::path::Path;

use super::*;
use crate::model::{DeviceId, Metric, PointId, Quality, ZoneId};

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn device(id: &str, unit: u8) -> String {
    format!(
        "\n[[devices]]\nid = \"{id}\"\nprofile = \"modbus-th-probe\"\nzone = \"hall1-b\"\nrack = \"B07\"\n[devices.modbus]\naddress = \"127.0.0.1:{}\"\nunit = {unit}\n",
        closed_port()
    )
}

fn write_config(dir: &Path, devices: &[&str]) -> Config {
    let mut text = format!(
        r#"
[site]
id = "fra1"

[mqtt]
url = "mqtt://127.0.0.1:{}"
client_id = "fra1-gw-test"

[store]
path = "{}"

[polling]
interval = "1h"
down_after = 3

[[zones]]
id = "hall1-b"
racks = ["B07"]
"#,
        closed_port(),
        dir.join("store").display()
    );
    for (i, d) in devices.iter().enumerate() {
        text.push_str(&device(d, i as u8 + 1));
    }
    let path = dir.join("hallmonitor.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&path).unwrap().config
}

fn start(dir: &Path, devices: &[&str]) -> (Agent, mpsc::Receiver<Reading>) {
    let config = write_config(dir, devices);
    Agent::start(config, Clock::System, dir.join("run"), false).unwrap()
}

/// One poll of `th-b07`'s temperature: good with `value`, or failed.
fn reading(value: Option<f64>) -> Reading {
    Reading {
        at: Timestamp::now(),
        device: DeviceId::new("th-b07"),
        point: PointId::new("temperature"),
        metric: Metric::new("inlet_temp_c"),
        value,
        unit: "°C".into(),
        zone: ZoneId::new("hall1-b"),
        rack: Some(crate::model::RackId::new("B07")),
        label: None,
        quality: if value.is_some() { Quality::Good } else { Quality::Bad },
        error: value.is_none().then(|| "timeout after 2s".into()),
    }
}

fn b07_up(agent: &Agent) -> bool {
    agent.devices.snapshot().iter().find(|d| d.id.as_str() == "th-b07").unwrap().up
}

#[tokio::test(start_paused = true)]
async fn the_tick_keeps_its_period_under_a_flood_of_readings() {
    let (tx, rx) = mpsc::channel(64);
    let mut inputs = Inputs::new(rx, TICK, CancellationToken::new()).unwrap();
    let start = Instant::now();
    let (mut ticks, mut batches) = (Vec::new(), 0);
    while Instant::now() < start + Duration::from_secs(60) {
        // The queue is full before every turn: readings are always waiting.
        while tx.try_send(reading(Some(22.0))).is_ok() {}
        match inputs.next(None).await {
            Input::Tick => ticks.push(Instant::now() - start),
            Input::Readings(batch) => {
                assert!(!batch.is_empty());
                batches += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::advance(Duration::from_millis(250)).await;
    }
    let expected: Vec<Duration> = (0..30).map(|i| TICK * i).collect();
    assert_eq!(ticks, expected, "a tick every {TICK:?} although readings never ran dry");
    assert!(batches > 0, "readings are handled between ticks");
}

#[tokio::test]
async fn a_device_is_down_after_down_after_failed_polls_in_status_health_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _rx) = start(dir.path(), &["th-b07"]);
    agent.on_readings(vec![reading(Some(22.0))]);
    for poll in 1..=2 {
        agent.on_readings(vec![reading(None)]);
        assert!(b07_up(&agent), "up after {poll} failed poll(s) of down_after = 3");
        let comms = agent.engine.device_comms(&DeviceId::new("th-b07")).unwrap();
        assert!(!comms.down && comms.failed_polls == poll, "{comms:?}");
    }
    agent.on_readings(vec![reading(None)]);
    assert!(!b07_up(&agent), "down after 3 failed polls");
    assert!(agent.engine.device_comms(&DeviceId::new("th-b07")).unwrap().down);
    let health = agent.health_body(&PublisherStatus::default(), Timestamp::now());
    assert_eq!(health.devices.down, vec![DeviceId::new("th-b07")]);
    let opened = std::iter::from_fn(|| agent.engine.poll_event()).any(|e| {
        matches!(&e, Event::Incident(i) if i.category == crate::model::Category::Comms && i.event == IncidentEventKind::Opened)
    });
    assert!(opened, "the engine opened the comms incident at the same poll");
    agent.on_readings(vec![reading(Some(22.0))]);
    assert!(b07_up(&agent), "up at the next good poll");
    agent.shutdown().await;
}

#[tokio::test]
async fn the_tick_writes_the_status_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _rx) = start(dir.path(), &["th-b07"]);
    agent.on_readings(vec![reading(Some(22.0))]);
    agent.on_tick();
    let snap = status::read(&dir.path().join("run")).unwrap();
    assert_eq!(snap.site.as_str(), "fra1");
    assert!(snap.devices.iter().any(|d| d.id.as_str() == "th-b07" && d.up && d.last_ok.is_some()), "{snap:?}");
    agent.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _rx) = start(dir.path(), &["th-b07"]);
    write_config(dir.path(), &["th-b07", "th-b08"]);
    assert!(agent.on_signal(Signal::Hangup).await.is_continue());
    let ids: Vec<String> = agent.devices.snapshot().iter().map(|d| d.id.to_string()).collect();
    assert_eq!(ids, ["th-b07", "th-b08"]);
    // A configuration that does not load is refused; the running one stays.
    std::fs::write(dir.path().join("hallmonitor.toml"), "[site\n").unwrap();
    assert!(agent.on_signal(Signal::Hangup).await.is_continue());
    assert_eq!(agent.devices.snapshot().len(), 2);
    assert!(agent.on_signal(Signal::Terminate).await.is_break());
    assert!(agent.on_signal(Signal::Interrupt).await.is_break());
    agent.shutdown().await;
}

#[tokio::test]
async fn after_a_turn_the_engines_events_are_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _rx) = start(dir.path(), &["th-b07"]);
    let before = agent.store.stats().unwrap().depth;
    for _ in 0..3 {
        agent.on_readings(vec![reading(None)]);
    }
    assert!(agent.after_turn().await.is_continue());
    assert!(agent.engine.poll_event().is_none(), "every event was taken");
    assert!(agent.store.stats().unwrap().depth > before, "the comms incident is durable in the outbox");
    agent.shutdown().await;
}
