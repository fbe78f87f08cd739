//! The gateway pair's continuity (issue 15, process tests 1, 2, 4 and 5): two `hallmonitor run`
//! daemons with `[ha]` and a `hallmonitor witness` on loopback, mosquitto as the NOC broker and
//! a NOC subscriber with a persistent session, which checks what a NOC would:
//!
//! 1. a breach opens an incident on the active; the active is SIGKILLed; the standby takes over
//!    (polls, and publishes from its outbox) within the issue's 30 s; the incident goes on
//!    (updated, resolved) under the same id: one `opened`, and one `seq` stream (one epoch,
//!    every seq once, in order, a duplicate only as a resend with the same `msg_id` and
//!    content); the same takeover bound under test 5's load (ignored while it fails: the new
//!    active, alone, does not enter degraded mode under a steady commit rate);
//! 2. the broker is down while the active dies: the standby takes over anyway, and when the
//!    broker returns the NOC gets the whole stream, without a gap;
//! 4. the old active, restarted after 1's takeover, joins as standby (following the new
//!    active's stream) and publishes nothing;
//! 5. `hallmonitor ha handover` under load (20 devices polled every 200 ms, rollups and health
//!    every second) loses nothing, and never two gateways poll at once.
//!
//! The device is a fake Modbus TCP server (the `modbus-th-probe` map: input register 1 the
//! temperature, 2 the humidity, in tenths) whose temperature the test sets, counting its
//! connections: the active keeps one open, so two at once would be two masters. The lease is
//! 3 s, as in tests/ha_pair.rs, so a takeover takes seconds. Each kill or handover happens once
//! the active's status says its standby is in step (`ha.replica.state` `in_sync`).
#![cfg(feature = "interop")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::mosquitto::{Mosquitto, plain_listener};
use support::net::free_port;
use support::outbox::{Received, Schemas, Subscriber, check_stream, outbox_only};
use support::pair::{Device, Gateway, ha_section, start_witness, wait_until};
use support::process::KillOnDrop;

const LEASE: &str = "3s";
/// The issue's takeover bound (kill to the new active polling and publishing).
const TAKEOVER: Duration = Duration::from_secs(30);
const SITE_TOPICS: &str = "hallmonitor/v1/pair/#";

/// Inlet temperatures in the probe's tenths of a degree: normal, over `warn_high` (27) and
/// over `crit_high` (30) of the test config. The humidity stays at 30 %RH, so the derived dew
/// point stays inside its bounds (−9..15 °C) at every one of them.
const NORMAL: u16 = 220;
const WARM: u16 = 280;
const HOT: u16 = 310;
const HUMIDITY: u16 = 300;
/// The probe's registers (`modbus-th-probe`): temperature and humidity.
const TEMPERATURE_REGISTER: u16 = 1;
const HUMIDITY_REGISTER: u16 = 2;

/// The site both gateways watch: `devices` probes (units 1.. at the one fake device) spread
/// over `zones` zones, one rack each.
#[derive(Clone, Copy)]
struct Site {
    devices: usize,
    zones: usize,
    /// Per-zone rollups every second (more messages flowing).
    rollups: bool,
}

impl Site {
    const ONE_PROBE: Site = Site { devices: 1, zones: 1, rollups: false };

    fn toml(&self, device_port: u16) -> String {
        let mut text = String::new();
        if self.rollups {
            text.push_str("[rollups]\ninterval = \"1s\"\n\n");
        }
        for z in 0..self.zones {
            let racks: Vec<String> =
                (0..self.devices).filter(|d| d % self.zones == z).map(|d| format!("\"r{d:02}\"")).collect();
            text.push_str(&format!("[[zones]]\nid = \"hall{z}\"\nracks = [{}]\n\n", racks.join(", ")));
        }
        for d in 0..self.devices {
            text.push_str(&format!(
                "[[devices]]\nid = \"th-{d:02}\"\nprofile = \"modbus-th-probe\"\nzone = \"hall{}\"\nrack = \"r{d:02}\"\n\
                 [devices.modbus]\naddress = \"127.0.0.1:{device_port}\"\nunit = {}\n\n",
                d % self.zones,
                d + 1
            ));
        }
        text
    }
}

/// One gateway of the pair: its config, runtime directory and process.
/// Gateway `name` of the pair watching `site`, publishing to the broker on `broker`.
fn gateway(dir: &Path, name: &'static str, site: &str, listen: u16, peer: u16, witness: u16, broker: u16) -> Gateway {
    // `for` 0 s and `clear_hold` 1 s: an incident opens at the first reading over a bound and
    // resolves a second after the last member cleared.
    Gateway::new(dir, name, |store| {
        format!(
            r#"
[site]
id = "pair"

[mqtt]
url = "mqtt://127.0.0.1:{broker}"
client_id = "pair-{name}"
keep_alive = "5s"
reconnect_max = "1s"

[store]
path = "{store}"

[polling]
interval = "200ms"
timeout = "400ms"

[health]
interval = "1s"

[thresholds.inlet_temp_c]
warn_high = 27.0
crit_high = 30.0
hysteresis = 0.5
for = "0s"

[correlation]
clear_hold = "1s"
update_min_interval = "1s"

{site}
"#,
            store = store.display(),
        ) + &ha_section(name, listen, peer, witness, LEASE)
    })
}

/// The NOC: a persistent-session subscriber to the site's topics, keeping all it received.
struct Noc {
    sub: Subscriber,
    all: Vec<Received>,
    /// Incidents expected in the whole run (each opened once).
    incidents: usize,
}

impl Noc {
    /// Receives until `done` says so; returns the message it said so for. On a timeout it
    /// first checks the stream so far, whose breakage is the likelier reason, then panics.
    async fn wait(&mut self, what: &str, limit: Duration, done: impl FnMut(&Received) -> bool) -> Received {
        match self.sub.try_collect_until(limit, done).await {
            Ok(got) => {
                self.all.extend(got);
                self.all.last().cloned().expect("the message waited for")
            }
            Err(got) => {
                self.all.extend(got);
                check_continuity(&self.all, None);
                panic!("timed out after {limit:?} waiting for {what}; received {} messages", self.all.len());
            }
        }
    }

    /// Everything that arrives within `d`.
    async fn gather(&mut self, d: Duration) -> Vec<Received> {
        let got = self.sub.try_collect_until(d, |_| false).await.unwrap_err();
        self.all.extend(got.iter().cloned());
        got
    }

    /// The checks over the whole run.
    fn check(&self) -> u64 {
        check_continuity(&self.all, Some(self.incidents))
    }
}

/// The gateway that sent `r`, where the message says: `ha.node` of a health message, `node` of
/// a status message.
fn sender(r: &Received) -> Option<&str> {
    r.payload["ha"]["node"].as_str().or_else(|| r.payload["node"].as_str())
}

/// A health message (an outbox message, unlike the status) from gateway `node`.
fn is_health_from(r: &Received, node: &str) -> bool {
    r.payload["type"] == "health" && r.payload["ha"]["node"] == node
}

fn is_incident(r: &Received, event: &str) -> bool {
    r.payload["type"] == "incident" && r.payload["event"] == event
}

/// What the NOC checks over everything it received: each incident opened once (and, given
/// `incidents`, that many), every other event of an incident under an id it saw opened; one
/// epoch (`msg_id` is `<epoch>-<seq>`); and the outbox stream complete from seq 1 to the last,
/// first occurrences in order, duplicates only with the same `msg_id` and content, every
/// payload valid against its schema. Returns the last seq.
fn check_continuity(all: &[Received], incidents: Option<usize>) -> u64 {
    let outbox = outbox_only(all);
    let mut opened: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in outbox.iter().filter(|r| is_incident(r, "opened")) {
        let id = r.payload["incident_id"].as_str().unwrap_or("?").to_owned();
        opened.entry(id).or_default().insert(r.payload["msg_id"].as_str().unwrap_or("?").to_owned());
    }
    for (id, msg_ids) in &opened {
        assert_eq!(msg_ids.len(), 1, "incident {id} opened more than once, as {msg_ids:?}");
    }
    if let Some(n) = incidents {
        assert_eq!(opened.len(), n, "incidents opened: {:?}", opened.keys().collect::<Vec<_>>());
    }
    for r in outbox.iter().filter(|r| r.payload["type"] == "incident") {
        let id = r.payload["incident_id"].as_str().unwrap_or("?");
        assert!(
            opened.contains_key(id),
            "{} of incident {id}, which the NOC never saw opened (opened: {:?})",
            r.payload["event"],
            opened.keys().collect::<Vec<_>>()
        );
    }
    let epochs: BTreeSet<&str> = outbox
        .iter()
        .filter_map(|r| r.payload["msg_id"].as_str())
        .map(|m| m.rsplit_once('-').map_or(m, |(epoch, _)| epoch))
        .collect();
    assert!(epochs.len() <= 1, "the outbox messages come from {} epochs: {epochs:?}", epochs.len());
    let last = outbox.iter().filter_map(|r| r.payload["seq"].as_u64()).max().unwrap_or(0);
    check_stream(&Schemas::load(), &outbox, last);
    last
}

struct Pair {
    dir: tempfile::TempDir,
    device: Device,
    gws: [Gateway; 2],
    _witness: KillOnDrop,
    broker: Mosquitto,
    noc: Noc,
}

impl Pair {
    /// mosquitto, the NOC subscriber (before any gateway runs, so it sees every seq), the
    /// witness and both gateways.
    async fn start(site: Site, incidents: usize) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (device, device_port) = Device::start().await;
        device.set(TEMPERATURE_REGISTER, NORMAL);
        device.set(HUMIDITY_REGISTER, HUMIDITY);
        let broker_dir = dir.path().join("mosquitto");
        std::fs::create_dir_all(&broker_dir).unwrap();
        let port = free_port();
        let broker = Mosquitto::start(&broker_dir, &plain_listener(port), vec![port]);
        let sub = Subscriber::start(port, "noc", SITE_TOPICS, true).await;
        let (listen1, listen2, witness) = (free_port(), free_port(), free_port());
        let w = start_witness(dir.path(), witness, LEASE);
        let site_toml = site.toml(device_port);
        let mut gw1 = gateway(dir.path(), "gw1", &site_toml, listen1, listen2, witness, port);
        let mut gw2 = gateway(dir.path(), "gw2", &site_toml, listen2, listen1, witness, port);
        gw1.start();
        gw2.start();
        Pair { dir, device, gws: [gw1, gw2], _witness: w, broker, noc: Noc { sub, all: Vec::new(), incidents } }
    }

    /// Which gateway is active, once exactly one is and the other reports standby.
    async fn one_active(&self) -> usize {
        let deadline = Instant::now() + TAKEOVER;
        loop {
            assert!(self.device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled the device at once");
            let roles = [self.gws[0].role(), self.gws[1].role()];
            match (roles[0].as_deref(), roles[1].as_deref()) {
                (Some("active"), Some("standby")) => return 0,
                (Some("standby"), Some("active")) => return 1,
                _ => {}
            }
            assert!(Instant::now() < deadline, "no single active gateway within {TAKEOVER:?}: roles {roles:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until gateway `i` reports its replication stream in `state` (the active
    /// `in_sync`: its standby holds everything; a standby `following` the active).
    async fn wait_replica(&self, i: usize, state: &str) {
        let gw = &self.gws[i];
        wait_until(&format!("{} to report its replica {state}", gw.name), &self.device, TAKEOVER, || {
            gw.status().is_some_and(|s| s["ha"]["replica"]["state"] == state)
        })
        .await;
    }

    /// SIGKILLs gateway `active`; waits until the other reports active and has opened its own
    /// device connection, within the takeover bound from the kill. Returns the kill's instant.
    async fn kill_and_wait_for_takeover(&mut self, active: usize) -> Instant {
        let accepted = self.device.accepted.load(Ordering::SeqCst);
        self.gws[active].kill();
        let killed = Instant::now();
        let (device, standby) = (self.device.clone(), &self.gws[1 - active]);
        wait_until("the standby to take over", &device, TAKEOVER, || standby.role().as_deref() == Some("active")).await;
        let left = TAKEOVER.saturating_sub(killed.elapsed());
        wait_until("the new active to poll", &device, left, || device.accepted.load(Ordering::SeqCst) > accepted).await;
        killed
    }
}

/// Tests 1 and 4: SIGKILL of the active in the middle of an incident; the standby takes over
/// within 30 s and carries the incident on (critical, then resolved) under the same id and the
/// same seq stream; the old active, restarted, stays standby and publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_open_when_the_active_is_killed_goes_on_under_the_same_id_and_seq_stream_on_the_standby() {
    let mut pair = Pair::start(Site::ONE_PROBE, 1).await;
    let active = pair.one_active().await;
    let standby = 1 - active;
    let (old, new) = (pair.gws[active].name, pair.gws[standby].name);
    pair.noc.wait("a health message from the active", TAKEOVER, |r| sender(r) == Some(old)).await;

    pair.device.set(TEMPERATURE_REGISTER, WARM);
    let opened = pair.noc.wait("the incident to open", TAKEOVER, |r| is_incident(r, "opened")).await;
    let id = opened.payload["incident_id"].as_str().expect("an incident id").to_owned();
    // A few more commits (health) on the active before it dies, its standby in step.
    pair.noc.gather(Duration::from_secs(2)).await;
    pair.wait_replica(active, "in_sync").await;

    let killed = pair.kill_and_wait_for_takeover(active).await;
    // Publishing means the outbox: its health (its `online` status is not an outbox message).
    let left = TAKEOVER.saturating_sub(killed.elapsed());
    pair.noc.wait("an outbox message from the new active", left, |r| is_health_from(r, new)).await;
    assert!(killed.elapsed() < TAKEOVER, "the new active polled and published {:?} after the kill", killed.elapsed());

    // The incident goes on: critical now, an update of the same incident.
    pair.device.set(TEMPERATURE_REGISTER, HOT);
    let updated = pair.noc.wait("the incident's update", TAKEOVER, |r| is_incident(r, "updated")).await;

    // Test 4: the old active comes back; it joins as standby and publishes nothing.
    let before = pair.gws[active].status().map(|s| s["started_at"].clone());
    pair.gws[active].start();
    let (device, returning) = (pair.device.clone(), &pair.gws[active]);
    wait_until("the restarted gateway's first snapshot", &device, TAKEOVER, || {
        returning.status().map(|s| s["started_at"].clone()).is_some_and(|s| Some(&s) != before.as_ref())
    })
    .await;
    let until = Instant::now() + Duration::from_secs(6); // two leases
    let mut late = Vec::new();
    while Instant::now() < until {
        assert_ne!(returning.role().as_deref(), Some("active"), "the returning gateway took over");
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once");
        late.extend(pair.noc.gather(Duration::from_millis(200)).await);
    }
    assert_eq!(pair.gws[active].role().as_deref(), Some("standby"));
    pair.wait_replica(active, "following").await;
    let from_old: Vec<&Value> = late.iter().filter(|r| sender(r) == Some(old)).map(|r| &r.payload).collect();
    assert!(from_old.is_empty(), "the returning standby published: {from_old:#?}");
    assert!(late.iter().any(|r| sender(r) == Some(new)), "the new active went on publishing");

    pair.device.set(TEMPERATURE_REGISTER, NORMAL);
    let resolved = pair.noc.wait("the incident to resolve", TAKEOVER, |r| is_incident(r, "resolved")).await;
    pair.noc.gather(Duration::from_secs(2)).await; // resends, if any
    let last = pair.noc.check();
    assert!(last > 0);
    assert_eq!(updated.payload["incident_id"], id.as_str(), "{}", updated.payload);
    assert_eq!(updated.payload["severity"], "critical", "{}", updated.payload);
    assert_eq!(resolved.payload["incident_id"], id.as_str(), "{}", resolved.payload);
    drop(pair.dir);
}

/// Test 2: the broker is down when the active dies. The standby takes over without it; when
/// the broker returns (same port, same persistence), the NOC's persistent session gets
/// everything: what the old active committed and the new one produced, without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_the_standby_takes_over_and_the_noc_gets_the_whole_stream_when_it_returns() {
    let mut pair = Pair::start(Site::ONE_PROBE, 1).await;
    let active = pair.one_active().await;
    let standby = 1 - active;
    let (old, new) = (pair.gws[active].name, pair.gws[standby].name);
    pair.noc.wait("a health message from the active", TAKEOVER, |r| sender(r) == Some(old)).await;
    pair.device.set(TEMPERATURE_REGISTER, WARM);
    let opened = pair.noc.wait("the incident to open", TAKEOVER, |r| is_incident(r, "opened")).await;
    let id = opened.payload["incident_id"].as_str().expect("an incident id").to_owned();
    pair.wait_replica(active, "in_sync").await;

    pair.broker.stop();
    // The active goes on committing (health every second) with nowhere to publish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pair.gws[standby].log.as_mut().expect("log").skip_seen();
    pair.kill_and_wait_for_takeover(active).await;
    let line = pair.gws[standby].log.as_mut().expect("log").wait_for_next("role changed", Duration::from_secs(5));
    assert!(line.contains("to=active"), "{line}");
    // The new active carries the incident on while the broker is still away.
    pair.device.set(TEMPERATURE_REGISTER, HOT);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let at_return = pair.noc.all.len();
    pair.broker.spawn();
    let updated = pair.noc.wait("the incident's update", TAKEOVER, |r| is_incident(r, "updated")).await;
    pair.noc.wait("a health message from the new active", TAKEOVER, |r| sender(r) == Some(new)).await;
    pair.device.set(TEMPERATURE_REGISTER, NORMAL);
    pair.noc.wait("the incident to resolve", TAKEOVER, |r| is_incident(r, "resolved")).await;
    pair.noc.gather(Duration::from_secs(2)).await;
    let last = pair.noc.check();
    assert!(last > 0);
    assert_eq!(updated.payload["incident_id"], id.as_str(), "{}", updated.payload);
    // What the old active committed while the broker was away (its health, every second)
    // arrived, resent by the new active.
    let from_old = pair.noc.all[at_return..].iter().filter(|r| sender(r) == Some(old)).count();
    assert!(from_old > 0, "nothing the old active committed during the outage reached the NOC");
}

/// Test 5: a planned handover while messages flow (20 probes in 5 zones polled every 200 ms,
/// a rollup per zone and health every second, an incident open in every zone) loses nothing:
/// one seq stream without a gap, each incident opened once and resolved by the new active,
/// and never two device connections at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_under_load_loses_nothing_and_never_two_poll() {
    let zones = 5;
    let mut pair = Pair::start(Site { devices: 20, zones, rollups: true }, zones).await;
    let active = pair.one_active().await;
    let standby = 1 - active;
    let (old, new) = (pair.gws[active].name, pair.gws[standby].name);
    pair.noc.wait("a health message from the active", TAKEOVER, |r| sender(r) == Some(old)).await;
    pair.device.set(TEMPERATURE_REGISTER, WARM);
    let mut opened = BTreeSet::new();
    pair.noc
        .wait("an incident in every zone", TAKEOVER, |r| {
            if is_incident(r, "opened") {
                opened.insert(r.payload["incident_id"].to_string());
            }
            opened.len() == zones
        })
        .await;
    pair.noc.gather(Duration::from_secs(2)).await;
    pair.wait_replica(active, "in_sync").await;

    let (config, runtime) = (pair.gws[active].config.clone(), pair.gws[active].runtime.clone());
    let command = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["ha", "handover", "--timeout", "30s", "--config"])
            .arg(&config)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("RUNTIME_DIRECTORY")
            .output()
            .expect("run hallmonitor ha handover")
    });
    while !command.is_finished() {
        assert!(pair.device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once during the handover");
        pair.noc.gather(Duration::from_millis(50)).await;
    }
    let out = command.join().expect("the command thread");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(pair.one_active().await, standby, "the roles swapped");
    pair.noc.wait("a message from the new active", TAKEOVER, |r| sender(r) == Some(new)).await;
    // The new active runs a while under the same load.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert!(pair.device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once");
        pair.noc.gather(Duration::from_millis(200)).await;
    }
    pair.device.set(TEMPERATURE_REGISTER, NORMAL);
    let mut resolved = BTreeSet::new();
    pair.noc
        .wait("every incident to resolve", TAKEOVER, |r| {
            if is_incident(r, "resolved") {
                resolved.insert(r.payload["incident_id"].to_string());
            }
            resolved.len() == zones
        })
        .await;
    pair.noc.gather(Duration::from_secs(2)).await;
    assert!(pair.device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once");
    let last = pair.noc.check();
    assert!(last > 0);
}

/// Test 1's takeover bound under load (the site of test 5: 20 probes polled every 200 ms, a
/// rollup per zone and health every second): the new active publishes outbox messages (its
/// health) within 30 s of the SIGKILL, with no standby to replicate to (degraded mode), and
/// the stream goes on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_killed_active_is_replaced_by_one_that_publishes_within_the_takeover_time() {
    let mut pair = Pair::start(Site { devices: 20, zones: 5, rollups: true }, 0).await;
    let active = pair.one_active().await;
    let (old, new) = (pair.gws[active].name, pair.gws[1 - active].name);
    pair.noc.wait("a health message from the active", TAKEOVER, |r| is_health_from(r, old)).await;
    pair.noc.gather(Duration::from_secs(2)).await;
    pair.wait_replica(active, "in_sync").await;

    let killed = pair.kill_and_wait_for_takeover(active).await;
    let left = TAKEOVER.saturating_sub(killed.elapsed());
    pair.noc.wait("an outbox message from the new active", left, |r| is_health_from(r, new)).await;
    assert!(killed.elapsed() < TAKEOVER, "the new active polled and published {:?} after the kill", killed.elapsed());
    pair.noc.gather(Duration::from_secs(2)).await;
    assert!(pair.noc.check() > 0);
}

/// A hung standby (SIGSTOP: its connections stay open, it answers nothing): the active stops
/// waiting for it, publishes degraded without a gap, and once the standby runs again (SIGCONT)
/// it catches up and the pair is back in sync; the stream stays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_standby_does_not_stop_the_active_and_catches_up_when_it_runs_again() {
    let mut pair = Pair::start(Site { devices: 4, zones: 2, rollups: true }, 0).await;
    let active = pair.one_active().await;
    let standby = 1 - active;
    let name = pair.gws[active].name;
    pair.wait_replica(active, "in_sync").await;
    let pid = pair.gws[standby].process.as_ref().expect("running").0.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill(1)").success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    pair.wait_replica(active, "degraded").await;
    // Degraded, it goes on publishing: health made while degraded reaches the NOC.
    pair.noc
        .wait("health from the degraded active", TAKEOVER, |r| {
            is_health_from(r, name) && r.payload["ha"]["replica"]["state"] == "degraded"
        })
        .await;
    signal("-CONT");
    pair.wait_replica(active, "in_sync").await;
    pair.wait_replica(standby, "following").await;
    assert_eq!(pair.gws[active].role().as_deref(), Some("active"));
    pair.noc.gather(Duration::from_secs(2)).await;
    assert!(pair.noc.check() > 0);
}
