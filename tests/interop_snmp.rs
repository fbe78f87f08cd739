//! The SNMP source against real agents: net-snmp's snmpd (v2c, and v3 authPriv SHA + AES
//! with `createUser`) and snmpsim serving recordings shaped like an APC rPDU2 (metered by
//! outlet, and a switched one without the outlet metering table) and a Raritan PX3
//! (tests/data/snmpsim/*.snmprec). Each test starts its peer on a free loopback
//! port with its own configuration in a temporary directory and stops it afterwards.
//!
//! Peers: Debian package `snmpd` (and `snmp` for nothing here), and snmpsim from PyPI:
//! `pip install snmpsim pysmi` (console script `snmpsim-command-responder`).
#![cfg(feature = "interop")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hallmonitor::config::{self, DeviceSpec, Transport};
use hallmonitor::model::{Quality, Reading};
use hallmonitor::profiles::Profile;
use hallmonitor::sources::snmp::DevicePoller;
use support::files::secret;
use support::net::free_udp_port;

/// Kills the peer when the test ends, however it ends. Keeps where its log goes.
struct Peer(Child, PathBuf);
impl Peer {
    /// Panics with the peer's log if it has exited (e.g. a missing Python module).
    fn check_alive(&mut self, install: &str) {
        if let Ok(Some(status)) = self.0.try_wait() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            panic!("interop peer exited with {status}; is it installed ({install})? Its log:\n{log}");
        }
    }
}
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(cmd: &str, install: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&paths).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")]) {
        let p = dir.join(cmd);
        if p.is_file() {
            return p;
        }
    }
    panic!("interop peer `{cmd}` not found: install it with {install}");
}

fn device(dir: &Path, profile: &str, port: u16, snmp: &str) -> DeviceSpec {
    let text = format!(
        r#"
[site]
id = "interop"
[store]
path = "/tmp/unused"
[polling]
timeout = "500ms"
retries = 1
[[zones]]
id = "hall1-b"
racks = ["B07"]
[[devices]]
id = "dut"
profile = "{profile}"
zone = "hall1-b"
rack = "B07"
[devices.snmp]
address = "127.0.0.1:{port}"
{snmp}
"#
    );
    let path = dir.join(format!("{profile}-{}.toml", fastrand::u32(..)));
    std::fs::write(&path, text).unwrap();
    config::load(&path).unwrap_or_else(|e| panic!("{e}")).config.devices.remove(0)
}

async fn poll(spec: &DeviceSpec) -> (Vec<Reading>, Result<(), hallmonitor::sources::snmp::SnmpError>) {
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!("not snmp") };
    let Profile::Snmp(profile) = spec.profile.clone() else { panic!("not snmp") };
    let mut poller = DevicePoller::new(spec.clone(), settings, Arc::clone(&profile)).unwrap();
    let out = poller.poll().await;
    (out.readings, out.result)
}

/// Polls until the peer answers (it needs a moment to bind), at most ~15 s.
async fn poll_when_up(peer: &mut Peer, install: &str, spec: &DeviceSpec) -> Vec<Reading> {
    for _ in 0..30 {
        peer.check_alive(install);
        let (readings, result) = poll(spec).await;
        if result.is_ok() {
            return readings;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("peer never answered on {:?}", spec.transport.describe());
}

fn value(readings: &[Reading], point: &str, label: Option<&str>) -> f64 {
    let r = readings
        .iter()
        .find(|r| r.point.as_str() == point && r.label.as_deref() == label)
        .unwrap_or_else(|| panic!("no reading {point} {label:?} in {readings:#?}"));
    assert_eq!(r.quality, Quality::Good, "{r:?}");
    r.value.unwrap()
}

const SNMPD: &str = "the Debian package `snmpd`";
const SNMPSIM: &str = "`pip install snmpsim pysmi`";

const APC: &str = "1.3.6.1.4.1.318.1.1.26";

fn start_snmpd(dir: &Path, port: u16) -> Peer {
    let snmpd = which("snmpd", "the Debian package `snmpd` (apt-get install snmpd)");
    let persist = dir.join("persist");
    std::fs::create_dir_all(&persist).unwrap();
    // An APC-rPDU2-shaped subtree made of fixed values (`override` registers each OID).
    let conf = format!(
        r#"agentAddress udp:127.0.0.1:{port}
rocommunity hm-interop 127.0.0.1
createUser hmuser SHA "auth-pass-123" AES "priv-pass-456"
rouser hmuser priv
override .{APC}.4.3.1.5.1 integer 57
override .{APC}.4.3.1.9.1 integer 12345
override .{APC}.6.3.1.5.1 integer 28
override .{APC}.6.3.1.5.2 integer 31
override .{APC}.6.3.1.6.1 integer 228
override .{APC}.6.3.1.6.2 integer 229
override .{APC}.9.4.3.1.3.1 octet_str "web-01"
override .{APC}.9.4.3.1.3.2 octet_str "db-02"
override .{APC}.9.4.3.1.6.1 integer 12
override .{APC}.9.4.3.1.6.2 integer 7
override .{APC}.10.2.2.1.3.1 octet_str "Rack B07 inlet"
override .{APC}.10.2.2.1.5.1 integer 2
override .{APC}.10.2.2.1.8.1 integer 239
override .{APC}.10.2.2.1.10.1 integer 41
"#
    );
    let conf_path = dir.join("snmpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.join("snmpd.log");
    let child = Command::new(snmpd)
        .args(["-f", "-Lf"])
        .arg(&log)
        .arg("-C")
        .arg("-c")
        .arg(&conf_path)
        .env("SNMP_PERSISTENT_DIR", &persist)
        .env("MIBS", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start snmpd");
    Peer(child, log)
}

fn assert_apc(readings: &[Reading]) {
    assert_eq!(value(readings, "device_power", None), 570.0);
    assert_eq!(value(readings, "device_energy", None), 1234.5);
    assert_eq!(value(readings, "phase_current", Some("phase-1")), 2.8);
    assert_eq!(value(readings, "phase_current", Some("phase-2")), 3.1);
    assert_eq!(value(readings, "phase_voltage", Some("phase-2")), 229.0);
    assert_eq!(value(readings, "outlet_current", Some("web-01")), 1.2);
    assert_eq!(value(readings, "outlet_current", Some("db-02")), 0.7);
    assert_eq!(value(readings, "sensor_temp", Some("Rack B07 inlet")), 23.9);
    assert_eq!(value(readings, "sensor_humidity", Some("Rack B07 inlet")), 41.0);
}

#[tokio::test]
async fn snmpd_v2c_and_v3_auth_priv_decode_an_apc_shaped_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpd(dir.path(), port);
    secret(dir.path(), "community", "hm-interop");
    let v2c = device(dir.path(), "apc-rpdu2", port, r#"community_file = "community""#);
    let readings = poll_when_up(&mut peer, SNMPD, &v2c).await;
    assert_apc(&readings);
    assert_eq!(readings.len(), 2 + 2 * 2 + 2 + 1 + 1, "{readings:#?}");

    secret(dir.path(), "authpw", "auth-pass-123");
    secret(dir.path(), "privpw", "priv-pass-456");
    let v3 = device(
        dir.path(),
        "apc-rpdu2",
        port,
        "version = \"3\"\nuser = \"hmuser\"\nauth = \"sha1\"\nauth_password_file = \"authpw\"\npriv = \"aes128\"\npriv_password_file = \"privpw\"",
    );
    let (readings, result) = poll(&v3).await;
    assert_eq!(result, Ok(()), "{readings:#?}");
    assert_apc(&readings);
}

#[tokio::test]
async fn snmpd_v3_wrong_password_is_a_clear_credentials_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpd(dir.path(), port);
    secret(dir.path(), "community", "hm-interop");
    // Wait until the agent is up, so the failure below is about the password only.
    poll_when_up(&mut peer, SNMPD, &device(dir.path(), "apc-rpdu2", port, r#"community_file = "community""#)).await;
    secret(dir.path(), "authpw", "not-the-password");
    secret(dir.path(), "privpw", "priv-pass-456");
    let v3 = device(
        dir.path(),
        "apc-rpdu2",
        port,
        "version = \"3\"\nuser = \"hmuser\"\nauth = \"sha1\"\nauth_password_file = \"authpw\"\npriv = \"aes128\"\npriv_password_file = \"privpw\"",
    );
    let (readings, result) = poll(&v3).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("credentials may be wrong"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(readings.iter().all(|r| r.quality == Quality::Bad));
    assert!(readings.iter().all(|r| r.error.as_deref().is_some_and(|e| e.contains("credentials may be wrong"))));
}

fn start_snmpsim(dir: &Path, port: u16) -> Peer {
    let responder = which("snmpsim-command-responder", "`pip install snmpsim pysmi` (PyPI)");
    let data = dir.join("data");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snmpsim");
    for f in ["apc-rpdu2.snmprec", "apc-rpdu2-switched.snmprec", "raritan-pdu2.snmprec"] {
        std::fs::copy(src.join(f), data.join(f)).unwrap();
    }
    let log = dir.join("snmpsim.log");
    let child = Command::new(responder)
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        .arg(format!("--logging-method=file:{}", log.display()))
        // Tests may run as root (containers); snmpsim otherwise insists on dropping to a user.
        .env("SNMPSIM_ALLOW_ROOT", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("snmpsim.err")).unwrap())
        .spawn()
        .expect("start snmpsim-command-responder");
    Peer(child, dir.join("snmpsim.err"))
}

#[tokio::test]
async fn snmpsim_recordings_of_apc_and_raritan_pdus_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    // snmpsim selects the recording by community: the file name without .snmprec.
    secret(dir.path(), "apc", "apc-rpdu2");
    secret(dir.path(), "raritan", "raritan-pdu2");
    let apc = device(dir.path(), "apc-rpdu2", port, r#"community_file = "apc""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &apc).await;
    assert_apc(&readings);
    assert_eq!(value(&readings, "phase_current", Some("phase-3")), 0.0);
    assert_eq!(value(&readings, "sensor_temp", Some("Rack B07 top")), 27.1);
    // The temperature-only probe (temperatureOnly(1)) has no humidity reading.
    assert!(
        !readings.iter().any(|r| r.point.as_str() == "sensor_humidity" && r.label.as_deref() == Some("Rack B07 top"))
    );

    let raritan = device(dir.path(), "raritan-pdu2", port, r#"community_file = "raritan""#);
    let (readings, result) = poll(&raritan).await;
    assert_eq!(result, Ok(()));
    assert_eq!(value(&readings, "inlet_current", Some("inlet-1.1")), 4.25);
    assert_eq!(value(&readings, "inlet_voltage", Some("inlet-1.1")), 231.0);
    assert_eq!(value(&readings, "inlet_power", Some("inlet-1.1")), 982.0);
    assert_eq!(value(&readings, "inlet_energy", Some("inlet-1.1")), 1234.567);
    assert_eq!(value(&readings, "outlet_current", Some("storage-a")), 1.53);
    assert_eq!(value(&readings, "outlet_current", Some("storage-b")), 0.7);
    assert_eq!(readings.iter().filter(|r| r.point.as_str() == "outlet_current").count(), 2);
    assert_eq!(value(&readings, "external_temp", Some("Cold aisle B08")), 21.5);
    assert_eq!(value(&readings, "external_humidity", Some("Cold aisle B08 RH")), 45.0);
    let units: Vec<(&str, &str)> = readings.iter().map(|r| (r.metric.as_str(), &*r.unit)).collect();
    assert!(units.contains(&("energy_kwh", "kWh")) && units.contains(&("humidity_pct", "%RH")), "{units:?}");
}

#[tokio::test]
async fn snmpsim_switched_apc_pdu_without_outlet_metering_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "switched", "apc-rpdu2-switched");
    let apc = device(dir.path(), "apc-rpdu2", port, r#"community_file = "switched""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &apc).await;
    // The optional outlet table is absent: no reading for it, and nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert!(!readings.iter().any(|r| r.point.as_str() == "outlet_current"), "{readings:#?}");
    assert_eq!(value(&readings, "device_power", None), 310.0);
    assert_eq!(value(&readings, "phase_voltage", Some("phase-3")), 231.0);
    assert_eq!(value(&readings, "sensor_temp", Some("Rack B07 inlet")), 23.9);
    // 2 scalars, 3 phases x 2, temperature x 2, humidity x 1.
    assert_eq!(readings.len(), 2 + 6 + 2 + 1, "{readings:#?}");
}
