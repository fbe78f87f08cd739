//! The gateway pair with real processes on loopback: two `hallmonitor run` daemons with `[ha]`
//! (distinct stores and peer-link ports) and a `hallmonitor witness` elect exactly one active
//! gateway, which alone polls the device; when it is SIGKILLed the other takes over; when the
//! peer link is cut (a severable proxy in each direction) never both poll; the old active,
//! restarted, joins as standby.
//!
//! The device is a fake Modbus TCP server that counts its connections: a gateway polling keeps
//! one open, so two open at once would be two masters. The lease is 3 s to keep this short.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hallmonitor::sim::broker::EmbeddedBroker;
use hallmonitor::sim::proxy::Proxy;
use serde_json::Value;
use support::files::{secret, write_config};
use support::net::free_port;
use support::outbox::Subscriber;
use support::pair::{Device, Gateway, ha_section, start_witness, wait_until};
use support::process::{KillOnDrop, Lines};

const LEASE: &str = "3s";
/// The issue's takeover bound; with a 3 s lease the election needs well under it.
const TAKEOVER: Duration = Duration::from_secs(30);

/// Gateway `name` of the pair: one probe at the fake device, the broker on `broker`.
#[allow(clippy::too_many_arguments)]
fn gateway(
    dir: &Path,
    name: &'static str,
    lease: &str,
    device: u16,
    listen: u16,
    peer: u16,
    witness: u16,
    broker: u16,
) -> Gateway {
    Gateway::new(dir, name, |store| {
        format!(
            r#"
[site]
id = "pair"

[mqtt]
url = "mqtt://127.0.0.1:{broker}"
client_id = "pair-{name}"

[store]
path = "{store}"

[polling]
interval = "200ms"
timeout = "400ms"

[health]
interval = "1s"

[[zones]]
id = "hall1"
racks = ["B07"]

[[devices]]
id = "th-b07"
profile = "modbus-th-probe"
zone = "hall1"
rack = "B07"
[devices.modbus]
address = "127.0.0.1:{device}"
unit = 1

"#,
            store = store.display(),
        ) + &ha_section(name, listen, peer, witness, lease)
    })
}

/// Which of the two is active, once exactly one is and the other reports standby.
async fn one_active(gws: [&Gateway; 2], device: &Device, timeout: Duration) -> usize {
    let mut active = 0;
    wait_until("exactly one active gateway", device, timeout, || {
        let roles: Vec<Option<String>> = gws.iter().map(|g| g.role()).collect();
        match (roles[0].as_deref(), roles[1].as_deref()) {
            (Some("active"), Some("standby")) => {
                active = 0;
                true
            }
            (Some("standby"), Some("active")) => {
                active = 1;
                true
            }
            _ => false,
        }
    })
    .await;
    active
}

struct Pair {
    dir: tempfile::TempDir,
    device: Device,
    gws: [Gateway; 2],
    _witness: KillOnDrop,
    broker: EmbeddedBroker,
    /// gw1 -> gw2 and gw2 -> gw1 peer links.
    proxies: [Proxy; 2],
    /// gw1 -> witness and gw2 -> witness.
    witness_links: [Proxy; 2],
    /// gw1 -> the device and gw2 -> the device (each gateway's field bus).
    device_links: [Proxy; 2],
    /// Both gateways -> the broker (the site's WAN uplink).
    uplink: Proxy,
}

async fn start_pair() -> Pair {
    start_pair_with(LEASE).await
}

async fn start_pair_with(lease: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (device, device_port) = Device::start().await;
    let (listen1, listen2, witness) = (free_port(), free_port(), free_port());
    let loopback = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let to2 = Proxy::start(loopback(0), loopback(listen2)).await.unwrap();
    let to1 = Proxy::start(loopback(0), loopback(listen1)).await.unwrap();
    let w1 = Proxy::start(loopback(0), loopback(witness)).await.unwrap();
    let w2 = Proxy::start(loopback(0), loopback(witness)).await.unwrap();
    let w = start_witness(dir.path(), witness, lease);
    let broker = EmbeddedBroker::start().unwrap();
    let uplink = Proxy::start(loopback(0), broker.addr()).await.unwrap();
    let b = uplink.local_addr().port();
    let d1 = Proxy::start(loopback(0), loopback(device_port)).await.unwrap();
    let d2 = Proxy::start(loopback(0), loopback(device_port)).await.unwrap();
    let port = |p: &Proxy| p.local_addr().port();
    let mut gw1 = gateway(dir.path(), "gw1", lease, port(&d1), listen1, port(&to2), port(&w1), b);
    let mut gw2 = gateway(dir.path(), "gw2", lease, port(&d2), listen2, port(&to1), port(&w2), b);
    gw1.start();
    gw2.start();
    Pair {
        dir,
        device,
        gws: [gw1, gw2],
        _witness: w,
        broker,
        proxies: [to2, to1],
        witness_links: [w1, w2],
        device_links: [d1, d2],
        uplink,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_polls_the_other_takes_over_when_it_is_killed_and_the_old_one_returns_as_standby() {
    let mut pair = start_pair().await;
    let device = pair.device.clone();
    let mut noc = Subscriber::start(pair.broker.addr().port(), "noc", "hallmonitor/v1/pair/health", false).await;
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    // Only the active publishes: every health message for a while is the active's.
    let health = noc.try_collect_until(Duration::from_secs(4), |_| false).await.unwrap_err();
    let from = |got: &[support::outbox::Received]| -> Vec<String> {
        got.iter().map(|r| r.payload["ha"]["node"].as_str().unwrap_or("?").to_owned()).collect()
    };
    let senders = from(&health);
    assert!(!senders.is_empty(), "the active publishes health");
    assert!(senders.iter().all(|n| n == pair.gws[active].name), "the standby published: {senders:?}");
    let requests = device.requests.load(Ordering::SeqCst);
    wait_until("the active gateway to poll", &device, TAKEOVER, || device.requests.load(Ordering::SeqCst) > requests)
        .await;
    assert_eq!(device.open.load(Ordering::SeqCst), 1, "the active polls over one connection, the standby none");

    // SIGKILL the active: the standby takes over and polls, within the takeover time.
    let standby = 1 - active;
    pair.gws[active].kill();
    let killed_at = Instant::now();
    let accepted = device.accepted.load(Ordering::SeqCst);
    wait_until("the standby to take over", &device, TAKEOVER, || pair.gws[standby].role().as_deref() == Some("active"))
        .await;
    wait_until("the new active to poll", &device, TAKEOVER, || device.accepted.load(Ordering::SeqCst) > accepted).await;
    assert!(killed_at.elapsed() < TAKEOVER, "took {:?}", killed_at.elapsed());
    let new_active = pair.gws[standby].name;
    noc.collect_until(TAKEOVER, |r| r.payload["ha"]["node"] == new_active).await;
    let s = pair.gws[standby].status().expect("status");
    assert_eq!(s["ha"]["node"], pair.gws[standby].name);
    assert!(s["ha"]["last_takeover_reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
    // One log line per role change, saying it all.
    let log = pair.gws[standby].log.as_mut().expect("log");
    let line = log.wait_for("role changed", Duration::from_secs(5));
    assert!(line.contains("role changed from=standby to=active term="), "{line}");
    assert!(line.contains("reason="), "{line}");
    let changes = log.drain().iter().filter(|l| l.contains("role changed")).count();
    assert_eq!(changes, 1, "{:#?}", log.seen);

    // The old active comes back: it joins as standby, and never polls meanwhile.
    let old_start = pair.gws[active].status().map(|s| s["started_at"].clone());
    pair.gws[active].start();
    wait_until("the restarted gateway's first snapshot", &device, TAKEOVER, || {
        pair.gws[active].status().map(|s| s["started_at"].clone()) != old_start
    })
    .await;
    let until = Instant::now() + Duration::from_secs(10); // over three leases
    while Instant::now() < until {
        assert_ne!(pair.gws[active].role().as_deref(), Some("active"), "the returning gateway took over");
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pair.gws[active].role().as_deref(), Some("standby"));
    assert_eq!(pair.gws[standby].role().as_deref(), Some("active"));
    let late = noc.try_collect_until(Duration::from_secs(2), |_| false).await.unwrap_err();
    let senders = from(&late);
    assert!(senders.iter().all(|n| n == new_active), "the returning standby published: {senders:?}");
    drop(pair.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_peer_link_cut_never_both_poll() {
    let pair = start_pair().await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let mut noc = Subscriber::start(pair.broker.addr().port(), "noc", "hallmonitor/v1/pair/health", false).await;
    for p in &pair.proxies {
        p.sever();
    }
    let cut_at = Instant::now();
    // Sample for over three leases: at no moment two connections at the device, never two
    // gateways reporting active; the active keeps the lease with the witness.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let roles: Vec<Option<String>> = pair.gws.iter().map(Gateway::role).collect();
        assert!(
            !(roles[0].as_deref() == Some("active") && roles[1].as_deref() == Some("active")),
            "both active during the cut"
        );
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once during the cut");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pair.gws[active].role().as_deref(), Some("active"), "the active keeps the lease with the witness");
    let s = pair.gws[1 - active].status().expect("status");
    assert_eq!(s["ha"]["peer_link_up"], false, "{s}");
    // Without its standby the active publishes degraded (the witness's grant recorded it), and
    // only the active publishes.
    let s = pair.gws[active].status().expect("status");
    assert_eq!(s["ha"]["replica"]["state"], "degraded", "{s}");
    let health = noc.try_collect_until(Duration::from_secs(3), |_| false).await.unwrap_err();
    let senders: Vec<&str> = health.iter().map(|r| r.payload["ha"]["node"].as_str().unwrap_or("?")).collect();
    assert!(!senders.is_empty(), "the active went on publishing during the cut ({:?})", cut_at.elapsed());
    assert!(senders.iter().all(|n| *n == pair.gws[active].name), "the standby published: {senders:?}");
    assert!(
        health.iter().any(|r| r.payload["ha"]["replica"]["state"] == "degraded"),
        "health says the pair cannot take over: {:?}",
        health.iter().map(|r| &r.payload["ha"]).collect::<Vec<_>>()
    );
    // A handover needs the peer: refused (exit 1), and the active stays active.
    wait_until("the active to see the peer link down", &device, TAKEOVER, || {
        pair.gws[active].status().is_some_and(|s| s["ha"]["peer_link_up"] == false)
    })
    .await;
    let (code, _, stderr) = pair.gws[active].handover();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("peer link is down"), "{stderr}");
    assert_eq!(pair.gws[active].role().as_deref(), Some("active"));
    let requests = device.requests.load(Ordering::SeqCst);
    wait_until("the active to go on polling", &device, TAKEOVER, || device.requests.load(Ordering::SeqCst) > requests)
        .await;
    for p in &pair.proxies {
        p.restore();
    }
    assert_eq!(one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await, active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_cut_off_from_both_other_voters_fences_itself_and_the_other_takes_over() {
    let pair = start_pair().await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let standby = 1 - active;
    for p in &pair.proxies {
        p.sever();
    }
    pair.witness_links[active].sever();
    // The active can renew with its own voter only: it stops polling at its lease end; the
    // other wins the witness once the promises to the active ran out. Never both at once.
    wait_until("the cut-off active to fence itself and the other to take over", &device, TAKEOVER, || {
        pair.gws[active].role().as_deref() == Some("standby") && pair.gws[standby].role().as_deref() == Some("active")
    })
    .await;
    let s = pair.gws[active].status().expect("status");
    assert!(s["ha"]["reason"].as_str().is_some_and(|r| r.contains("lease ran out")), "{s}");
    assert!(s["ha"]["last_takeover_at"].is_string(), "it was active before: {s}");
    let requests = device.requests.load(Ordering::SeqCst);
    wait_until("the new active to poll", &device, TAKEOVER, || device.requests.load(Ordering::SeqCst) > requests).await;
    assert_eq!(device.open.load(Ordering::SeqCst), 1, "the fenced gateway closed its device connection");
}

/// The partition table's last row: the active losing its devices (its field bus cut) keeps the
/// lease (devices down are incidents, not a reason to flap); the standby never polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_that_loses_its_devices_keeps_the_lease() {
    let pair = start_pair().await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    wait_until("the active to poll", &device, TAKEOVER, || device.requests.load(Ordering::SeqCst) > 0).await;
    pair.device_links[active].sever();
    let device_down = |s: &Value| s["devices"][0]["up"] == false;
    wait_until("the active to see its device down", &device, TAKEOVER, || {
        pair.gws[active].status().is_some_and(|s| device_down(&s))
    })
    .await;
    let until = Instant::now() + Duration::from_secs(10); // over three leases
    while Instant::now() < until {
        assert_eq!(pair.gws[active].role().as_deref(), Some("active"), "the active gave the lease up");
        assert_ne!(pair.gws[1 - active].role().as_deref(), Some("active"), "the standby took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(device.accepted.load(Ordering::SeqCst), 1, "only the active ever connected");
    pair.device_links[active].restore();
    wait_until("the active to reach its device again", &device, TAKEOVER, || {
        pair.gws[active].status().is_some_and(|s| !device_down(&s))
    })
    .await;
}

/// Two cuts at once, the peer link and the WAN uplink: the active keeps the lease with the
/// witness, goes degraded and buffers; the standby neither takes over nor publishes; when the
/// uplink returns the NOC receives what the active buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_peer_link_and_the_uplink_cut_the_active_buffers_and_the_standby_waits() {
    let pair = start_pair().await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let mut noc = Subscriber::start(pair.broker.addr().port(), "noc", "hallmonitor/v1/pair/health", false).await;
    for p in &pair.proxies {
        p.sever();
    }
    pair.uplink.sever();
    let cut_at = hallmonitor::model::Timestamp::now();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let roles: Vec<Option<String>> = pair.gws.iter().map(Gateway::role).collect();
        assert_eq!(roles[active].as_deref(), Some("active"), "the active lost the lease: {roles:?}");
        assert_ne!(roles[1 - active].as_deref(), Some("active"), "the standby took over: {roles:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = pair.gws[active].status().expect("status");
    assert_eq!(s["ha"]["replica"]["state"], "degraded", "{s}");
    assert!(s["outbox"]["depth"].as_u64().is_some_and(|d| d > 0), "the active buffers: {s}");
    // Health made during the cut reaches the NOC once the uplink is back, from the active only.
    let made_during_cut = |r: &support::outbox::Received| {
        r.payload["created_at"]
            .as_str()
            .and_then(|t| hallmonitor::model::Timestamp::parse_rfc3339(t).ok())
            .is_some_and(|t| t > cut_at)
    };
    pair.uplink.restore();
    let got = noc.collect_until(TAKEOVER, made_during_cut).await;
    assert!(got.iter().all(|r| r.payload["ha"]["node"] == pair.gws[active].name), "the standby published");
    for p in &pair.proxies {
        p.restore();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_with_another_key_is_refused_and_logged_once_not_per_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (device, device_port) = Device::start().await;
    let witness = free_port();
    let key = secret(dir.path(), "other.key", "another key, long enough to be accepted: 0123456789");
    let mut w = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["witness", "--listen", &format!("127.0.0.1:{witness}"), "--lease", LEASE, "--key-file"])
            .arg(key)
            .arg("--state")
            .arg(dir.path().join("witness.json"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut witness_log = Lines::of(w.0.stdout.take().unwrap());
    witness_log.wait_for("witness started", Duration::from_secs(10));
    let mut gw = gateway(dir.path(), "gw1", LEASE, device_port, free_port(), free_port(), witness, free_port());
    gw.start();
    let log = gw.log.as_mut().unwrap();
    let line = log.wait_for("link=witness", Duration::from_secs(10));
    assert!(line.contains("link down") && line.contains("proof does not match"), "{line}");
    // Several retries later (backoff from 250 ms, capped at a third of the 3 s lease)...
    tokio::time::sleep(Duration::from_secs(5)).await;
    let gw_lines = log.drain().iter().filter(|l| l.contains("link=witness")).count();
    assert_eq!(gw_lines, 1, "one line per state change: {:#?}", log.seen);
    let refused = witness_log.drain().iter().filter(|l| l.contains("link refused")).count();
    assert_eq!(refused, 1, "{:#?}", witness_log.seen);
    // Alone with the peer and the witness unreachable, it never polls.
    assert_eq!(device.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(gw.role().as_deref(), Some("standby"));
}

/// Waits for the log line of this gateway's next role change to `to`, returning it.
fn next_role_change(gw: &mut Gateway, to: &str, timeout: Duration) -> String {
    gw.log.as_mut().expect("log").wait_for_next(&format!("to={to}"), timeout)
}

/// SIGTERM of the active: it drains, gives the lease back, and the standby takes over within
/// about one renew period, far below the crash bound (the promises to a killed active run for
/// a whole lease after its last renewal: at least 2/3 of a lease after the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_active_gives_the_lease_back_and_the_standby_takes_over_within_a_renew_period() {
    // A longer lease than the other tests, so "a renew period" and "the crash bound" are
    // seconds apart: renew 2 s; a crash takeover takes at least 4 s.
    let lease = Duration::from_secs(6);
    let mut pair = start_pair_with("6s").await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let standby = 1 - active;
    let requests = device.requests.load(Ordering::SeqCst);
    wait_until("the active to poll", &device, TAKEOVER, || device.requests.load(Ordering::SeqCst) > requests).await;
    pair.gws[standby].log.as_mut().expect("log").skip_seen();

    let accepted = device.accepted.load(Ordering::SeqCst);
    pair.gws[active].signal(libc::SIGTERM);
    let sent = Instant::now();
    let line = next_role_change(&mut pair.gws[standby], "active", TAKEOVER);
    let took = sent.elapsed();
    assert!(line.contains("the peer gave the lease up"), "{line}");
    assert!(
        took < lease / 3 + Duration::from_secs(1),
        "the standby took {took:?} to take over after SIGTERM of the active ({line})"
    );
    // The old active said why it stopped, and exited cleanly.
    let mut old = pair.gws[active].process.take().expect("running");
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(status) = old.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the SIGTERMed gateway did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(0));
    let log = pair.gws[active].log.as_mut().expect("log");
    let line = log.wait_for("to=standby", Duration::from_secs(5));
    assert!(line.contains("resigned"), "{line}");
    wait_until("the new active to poll", &device, TAKEOVER, || device.accepted.load(Ordering::SeqCst) > accepted).await;
    assert_eq!(pair.gws[standby].role().as_deref(), Some("active"));
}

/// `hallmonitor ha handover`: refused on the standby (exit 2, naming the active); on the active
/// the roles swap and the polls move to the peer, never two actives or two device connections
/// at once; the old active stays standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_handover_moves_the_active_role_to_the_peer_and_is_refused_on_the_standby() {
    let pair = start_pair().await;
    let device = pair.device.clone();
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let standby = 1 - active;
    let (old, new) = (&pair.gws[active], &pair.gws[standby]);
    wait_until("the active to poll", &device, TAKEOVER, || old.polls() > 0).await;

    // Once the standby knows who is active (its voter or the others refused it for the active).
    wait_until("the standby to know the active", &device, TAKEOVER, || {
        new.status().is_some_and(|s| s["ha"]["active_node"] == old.name)
    })
    .await;
    let (code, _, stderr) = new.handover();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} is standby", new.name)), "{stderr}");
    assert!(stderr.contains(&format!("on the active, {}", old.name)), "{stderr}");

    let accepted = device.accepted.load(Ordering::SeqCst);
    let config = old.config.clone();
    let runtime = old.runtime.clone();
    let command = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["ha", "handover", "--config"])
            .arg(&config)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("RUNTIME_DIRECTORY")
            .output()
            .expect("run hallmonitor ha handover")
    });
    // At every sample while it runs: never two device connections. (Two snapshots cannot be
    // read at one instant, so "never two actives" is checked below from their times.)
    let mut samples = 0;
    while !command.is_finished() {
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once during the handover");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = command.join().expect("the command thread");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{}: standby now; {} is active", old.name, new.name)), "{stdout}");
    assert!(samples > 0);
    assert_eq!(one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await, standby, "the roles swapped");
    // The new active became active only once the old one had stopped being active.
    let (old_status, new_status) = (old.status().expect("status"), new.status().expect("status"));
    let at = |v: &Value| hallmonitor::model::Timestamp::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339");
    let (resigned, took_over) = (at(&old_status["ha"]["since"]), at(&new_status["ha"]["last_takeover_at"]));
    assert!(took_over >= resigned, "{} active at {took_over:?}, {} standby only from {resigned:?}", new.name, old.name);
    assert!(old_status["ha"]["reason"].as_str().is_some_and(|r| r.contains("handed over")), "{old_status}");
    // The polls moved: the new active opened its own device connection and polls; the old
    // one's count stands still.
    wait_until("the new active to poll", &device, TAKEOVER, || {
        device.accepted.load(Ordering::SeqCst) > accepted && new.polls() > 0
    })
    .await;
    let (old_polls, new_polls) = (old.polls(), new.polls());
    let until = Instant::now() + Duration::from_secs(4); // over a lease: the old one's pause
    while Instant::now() < until {
        assert_eq!(old.role().as_deref().unwrap_or("standby"), "standby", "the old active took the lease back");
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled at once");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(old.polls(), old_polls, "the old active polled after handing over");
    assert!(new.polls() > new_polls, "the new active polls");
    assert_eq!(device.open.load(Ordering::SeqCst), 1);
}

#[test]
fn ha_handover_without_a_pair_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[site]\nid = \"solo\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[store]\npath = \"{}\"\n",
            dir.path().join("store").display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["ha", "handover", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no [ha] section"), "{stderr}");
}

/// A hung active (SIGSTOP: its broker connection stays open, as after a power cut until the
/// broker's keep-alive runs out) is replaced; only then does its connection drop and the broker
/// publish its retained last will, after the new active's `online`. The new active sees it and
/// republishes `online`: the retained status a NOC reads afterwards says the site is online
/// under the new active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_last_will_of_a_replaced_active_does_not_leave_the_site_offline() {
    let mut pair = start_pair().await;
    let device = pair.device.clone();
    let topic = "hallmonitor/v1/pair/status";
    let mut live = Subscriber::start(pair.broker.addr().port(), "noc-live", topic, false).await;
    let active = one_active([&pair.gws[0], &pair.gws[1]], &device, TAKEOVER).await;
    let standby = 1 - active;
    let (old_name, new_name) = (pair.gws[active].name, pair.gws[standby].name);
    live.collect_until(TAKEOVER, |r| r.payload["state"] == "online" && r.payload["node"] == old_name).await;

    pair.gws[active].signal(libc::SIGSTOP);
    // (The hung process keeps its device connection open, so no connection count here.)
    let deadline = Instant::now() + TAKEOVER;
    while pair.gws[standby].role().as_deref() != Some("active") {
        assert!(Instant::now() < deadline, "the standby did not take over from the hung active");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    live.collect_until(TAKEOVER, |r| r.payload["state"] == "online" && r.payload["node"] == new_name).await;
    // Now its connection drops: the will lands after the new active's online.
    pair.gws[active].kill();
    let will = live.collect_until(TAKEOVER, |r| r.payload["state"] == "offline").await;
    let will = &will.last().expect("the will").payload;
    assert_eq!(will["node"], old_name, "{will}");
    assert_eq!(will["reason"], "connection_lost", "{will}");
    assert!(will["term"].as_u64() < pair.gws[standby].status().expect("status")["ha"]["term"].as_u64(), "{will}");
    // The new active puts its online back over it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut noc = Subscriber::start(pair.broker.addr().port(), "noc-fresh", topic, false).await;
    let retained = noc.collect_until(Duration::from_secs(10), |_| true).await;
    let status = &retained.last().expect("a retained status").payload;
    assert_eq!(status["state"], "online", "the retained status after the takeover: {status}");
    assert_eq!(status["node"], new_name, "{status}");
}
