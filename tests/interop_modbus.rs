//! Interop: the Modbus source against a real pymodbus server (tests/peers/pymodbus_server.py),
//! over TCP on loopback and over RTU through a socat pty pair. Needs the Debian packages
//! `python3-pymodbus` (run with /usr/bin/python3) and `socat`; fails loudly without them.
#![cfg(feature = "interop")]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hallmonitor::config::{BlockLimits, DeviceSpec, Parity, SerialSettings, Transport};
use hallmonitor::model::{DeviceId, Quality, Reading, ZoneId};
use hallmonitor::profiles::{ModbusProfile, Profile, ProfileConfig};
use hallmonitor::sources::SourceStats;
use hallmonitor::sources::modbus::identify::{Identification, identify};
use hallmonitor::sources::modbus::{Endpoint, Link};
use support::sources::{readings_until_done, source_context};

const PYTHON: &str = "/usr/bin/python3";

/// The peer's register map as a profile (see the docstring of the Python script).
const PROFILE: &str = r#"
protocol = "modbus"
addressing = "zero-based"

[[points]]
name = "neg_i16"
metric = "inlet_temp_c"
address = 0
type = "i16"
scale = 0.1

[[points]]
name = "big_u16"
metric = "count"
address = 1
type = "u16"

[[points]]
name = "volts_abcd"
metric = "voltage_v"
address = 10
type = "f32"

[[points]]
name = "amps_cdab"
metric = "phase_current_a"
address = 12
type = "f32"
word_order = "little"

[[points]]
name = "counter_big"
metric = "energy_kwh"
address = 20
type = "u32"

[[points]]
name = "counter_little"
metric = "energy_kwh"
address = 22
type = "u32"
word_order = "little"

[[points]]
name = "missing"
metric = "power_w"
address = 100
type = "f32"

[[points]]
name = "inlet"
metric = "inlet_temp_c"
table = "input"
address = 0
type = "i16"
scale = 0.1

[[points]]
name = "door"
metric = "alarm"
table = "discrete"
address = 3
"#;

struct Peer(Vec<Child>);

impl Drop for Peer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn require_pymodbus() {
    let ok =
        Command::new(PYTHON).args(["-c", "import pymodbus, serial"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "interop_modbus needs pymodbus for {PYTHON}: apt-get install python3-pymodbus python3-serial");
}

fn peer_script() -> String {
    format!("{}/tests/peers/pymodbus_server.py", env!("CARGO_MANIFEST_DIR"))
}

fn profile() -> Arc<ModbusProfile> {
    let cfg: ProfileConfig = toml::from_str(PROFILE).unwrap();
    match cfg.build("pymodbus-peer").unwrap() {
        Profile::Modbus(p) => p,
        Profile::Snmp(_) => unreachable!(),
    }
}

fn spec(transport: Transport) -> DeviceSpec {
    DeviceSpec {
        id: DeviceId::new(format!("peer-unit{}", unit_of(&transport))),
        zone: ZoneId::new("lab"),
        rack: None,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 2,
        down_after: 3,
        profile: Profile::Modbus(profile()),
        transport,
        enabled: true,
    }
}

fn unit_of(t: &Transport) -> u8 {
    match t {
        Transport::ModbusTcp { unit, .. } | Transport::ModbusRtu { unit, .. } => *unit,
        Transport::Snmp(_) => 0,
    }
}

/// Polls the devices once; readings keyed by point for the first device.
async fn poll_once(spec: DeviceSpec) -> HashMap<String, Reading> {
    poll_all(vec![spec])
        .await
        .into_iter()
        .filter(|((d, _), _)| d.ends_with("unit1"))
        .map(|((_, p), r)| (p, r))
        .collect()
}

/// Polls all devices once; readings keyed by (device, point).
async fn poll_all(specs: Vec<DeviceSpec>) -> HashMap<(String, String), Reading> {
    let (ctx, rx) = source_context(64, true);
    let tasks = hallmonitor::sources::modbus::spawn(specs, ctx);
    let readings = readings_until_done(rx, tasks).await;
    readings.into_iter().map(|r| ((r.device.as_str().to_owned(), r.point.as_str().to_owned()), r)).collect()
}

fn check(r: &HashMap<String, Reading>) {
    let v = |p: &str| r[p].value.unwrap_or_else(|| panic!("{p} is bad: {:?}", r[p].error));
    assert_eq!(v("neg_i16"), -12.5);
    assert_eq!(v("big_u16"), 65000.0);
    assert_eq!(v("volts_abcd"), 230.5);
    assert_eq!(v("amps_cdab"), -17.25);
    assert_eq!(v("counter_big"), 3_000_000_000.0);
    assert_eq!(v("counter_little"), 123_456_789.0);
    assert_eq!(v("inlet"), 23.5);
    assert_eq!(v("door"), 1.0);
    let missing = &r["missing"];
    assert_eq!(missing.quality, Quality::Bad);
    let err = missing.error.as_deref().unwrap();
    assert!(err.contains("exception 2 (illegal data address)"), "{err}");
    assert!(err.contains("holding registers 100..=101"), "{err}");
}

/// Polls until the peer answers (it takes a moment to start), at most ~10 s.
async fn poll_until_up(make: impl Fn() -> DeviceSpec) -> HashMap<String, Reading> {
    for _ in 0..40 {
        let r = poll_once(make()).await;
        if r.get("volts_abcd").is_some_and(|x| x.quality == Quality::Good) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the pymodbus peer never answered; see its output above");
}

#[tokio::test]
async fn pymodbus_over_tcp() {
    require_pymodbus();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(PYTHON)
        .arg(peer_script())
        .args(["--tcp", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus peer with /usr/bin/python3");
    let _peer = Peer(vec![child]);
    let address = format!("127.0.0.1:{port}");
    let r = poll_until_up(|| {
        spec(Transport::ModbusTcp {
            address: address.clone(),
            unit: 1,
            blocks: BlockLimits { max_gap: 10, max_block: 125 },
        })
    })
    .await;
    check(&r);
}

/// Starts socat with a pty pair and the peer on one end; returns them and our end's path.
fn start_rtu_peer(dir: &Path) -> (Peer, String) {
    let ours = dir.join("master");
    let theirs = dir.join("slave");
    let socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", ours.display()))
        .arg(format!("pty,raw,echo=0,link={}", theirs.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("interop_modbus needs socat (apt-get install socat): {e}"));
    let mut peer = Peer(vec![socat]);
    for _ in 0..50 {
        if ours.exists() && theirs.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ours.exists() && theirs.exists(), "socat did not create the pty pair");
    let server = Command::new(PYTHON)
        .arg(peer_script())
        .arg("--rtu")
        .arg(&theirs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus peer with /usr/bin/python3");
    peer.0.push(server);
    (peer, ours.to_string_lossy().into_owned())
}

/// Serial settings for our end of the pty pair.
fn pty_serial(path: &str) -> SerialSettings {
    SerialSettings {
        path: path.to_owned(),
        baud: 19200,
        // A pty has no parity; pyserial cannot even set it there (EINVAL).
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        spacing: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn pymodbus_over_rtu_through_a_socat_pty_pair() {
    require_pymodbus();
    let dir = tempfile::tempdir().unwrap();
    let (_peer, path) = start_rtu_peer(dir.path());
    let rtu = |unit: u8| {
        spec(Transport::ModbusRtu {
            serial: pty_serial(&path),
            unit,
            blocks: BlockLimits { max_gap: 10, max_block: 125 },
        })
    };
    let r = poll_until_up(|| rtu(1)).await;
    check(&r);

    // Two units on one bus: one port owner, requests one at a time, both answer.
    let both = poll_all(vec![rtu(1), rtu(2)]).await;
    let inlet = |d: &str| both[&(d.to_owned(), "inlet".to_owned())].value;
    assert_eq!(inlet("peer-unit1"), Some(23.5));
    assert_eq!(inlet("peer-unit2"), Some(-4.0));
    assert_eq!(both[&("peer-unit2".to_owned(), "amps_cdab".to_owned())].value, Some(-17.25));
}

/// Read Device Identification of the peer's units over `endpoint`: unit 1 reports the
/// identity the peer script sets (basic and regular objects), unit 2 answers exception 1.
async fn check_identification(endpoint: Endpoint) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let (link, task) = Link::spawn(endpoint, Arc::new(SourceStats::default()), cancel.clone());
    let mut first = None;
    // The peer takes a moment to start.
    for _ in 0..40 {
        match identify(&link, 1, Duration::from_secs(1)).await {
            Ok(outcome) => {
                first = Some(outcome);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let Some(Identification::Identified(id)) = first else { panic!("unit 1 did not identify: {first:?}") };
    assert_eq!(id.vendor(), Some("Hallmonitor Test Peers"));
    assert_eq!(id.product_code(), Some("HM-PEER-1"));
    assert_eq!(id.revision(), Some("3.0"));
    assert_eq!(id.vendor_url(), Some("https://example.invalid/peer"));
    assert_eq!(id.product_name(), Some("pymodbus peer"));
    assert_eq!(id.model_name(), Some("peer-1"));
    assert_eq!(id.note, None);
    let second = identify(&link, 2, Duration::from_secs(1)).await.unwrap();
    assert_eq!(second, Identification::Unsupported { code: 1 });
    cancel.cancel();
    drop(link);
    let _ = task.await;
}

#[tokio::test]
async fn pymodbus_device_identification_over_tcp() {
    require_pymodbus();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(PYTHON)
        .arg(peer_script())
        .args(["--tcp", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus peer with /usr/bin/python3");
    let _peer = Peer(vec![child]);
    check_identification(Endpoint::Tcp(format!("127.0.0.1:{port}"))).await;
}

#[tokio::test]
async fn pymodbus_device_identification_over_rtu() {
    require_pymodbus();
    let dir = tempfile::tempdir().unwrap();
    let (_peer, path) = start_rtu_peer(dir.path());
    check_identification(Endpoint::Rtu(pty_serial(&path))).await;
}
