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
use hallmonitor::sources::snmp::{DevicePoller, SharedSockets};
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

/// Polls `spec` again and again as the daemon does (shared sockets: the poll's own BER):
/// after the first polls, each one replays the last request and reads the answer in place.
/// Every poll must read what the second one read (the peers' values do not move; the first
/// has no rates yet), and most polls must have been replays.
async fn poll_repeatedly_reads_the_same(peer: &mut Peer, install: &str, spec: &DeviceSpec) {
    poll_when_up(peer, install, spec).await;
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!("not snmp") };
    let Profile::Snmp(profile) = spec.profile.clone() else { panic!("not snmp") };
    let mut poller =
        DevicePoller::new(spec.clone(), settings, profile).unwrap().with_shared_sockets(Arc::new(SharedSockets::new()));
    let seen = |readings: Vec<Reading>| -> Vec<String> {
        readings
            .iter()
            .map(|r| format!("{} {:?} {:?} {:?} {:?}", r.point, r.label, r.value, r.quality, r.error))
            .collect()
    };
    let mut second = None;
    for n in 0..14 {
        let out = poller.poll().await;
        assert_eq!(out.result, Ok(()), "poll {n}");
        let readings = seen(out.readings);
        match (n, &second) {
            (0, _) => {}
            (1, _) => second = Some(readings),
            (_, Some(second)) => assert_eq!(&readings, second, "poll {n}"),
            _ => unreachable!(),
        }
    }
    assert!(poller.replays() >= 8, "{} of 14 polls replayed", poller.replays());
}

#[tokio::test]
async fn repeated_polls_replay_their_getbulk_and_read_what_the_first_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut snmpd = start_snmpd(dir.path(), port);
    secret(dir.path(), "community", "hm-interop");
    let v2c = device(dir.path(), "apc-rpdu2", port, r#"community_file = "community""#);
    poll_repeatedly_reads_the_same(&mut snmpd, SNMPD, &v2c).await;

    let port = free_udp_port();
    let mut snmpsim = start_snmpsim(dir.path(), port);
    for recording in ["apc-rpdu2", "raritan-pdu2", "eaton-epdu"] {
        secret(dir.path(), recording, recording);
        let spec = device(dir.path(), recording, port, &format!("community_file = \"{recording}\""));
        poll_repeatedly_reads_the_same(&mut snmpsim, SNMPSIM, &spec).await;
    }
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
    for f in [
        "apc-rpdu2.snmprec",
        "apc-rpdu2-switched.snmprec",
        "raritan-pdu2.snmprec",
        "ups-mib.snmprec",
        "ups-mib-basic.snmprec",
        "apc-ats.snmprec",
        "apc-ats-basic.snmprec",
        "eaton-epdu.snmprec",
        "eaton-epdu-basic.snmprec",
        "apc-inrow.snmprec",
        "apc-inrow-basic.snmprec",
        "vertiv-geist.snmprec",
        "vertiv-geist-basic.snmprec",
        "rittal-cmc3.snmprec",
        "rittal-cmc3-basic.snmprec",
    ] {
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

/// UPS-MIB (RFC 1628): a three-phase online UPS on battery (brownout on its input) with
/// every optional object, and a small line-interactive one without the optional objects
/// (no bypass table, no current or power columns, no battery voltage or temperature).
#[tokio::test]
async fn snmpsim_recordings_of_ups_mib_upses_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "ups-mib");
    secret(dir.path(), "basic", "ups-mib-basic");
    let full = device(dir.path(), "ups-mib", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "battery_status", None), 2.0);
    assert_eq!(value(&readings, "battery_low", None), 0.0);
    assert_eq!(value(&readings, "seconds_on_battery", None), 95.0);
    assert_eq!(value(&readings, "runtime_remaining", None), 21.0);
    assert_eq!(value(&readings, "battery_charge", None), 97.0);
    assert_eq!(value(&readings, "battery_voltage", None), 408.0);
    assert_eq!(value(&readings, "battery_temp", None), 24.0);
    assert_eq!(value(&readings, "input_frequency", Some("input-2")), 49.9);
    assert_eq!(value(&readings, "input_voltage", Some("input-1")), 161.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-2")), 158.0);
    assert_eq!(value(&readings, "input_current", Some("input-3")), 1.3);
    assert_eq!(value(&readings, "input_power", Some("input-3")), 160.0);
    assert_eq!(value(&readings, "output_source", None), 5.0);
    assert_eq!(value(&readings, "on_battery", None), 1.0);
    assert_eq!(value(&readings, "on_bypass", None), 0.0);
    assert_eq!(value(&readings, "output_frequency", None), 50.0);
    assert_eq!(value(&readings, "output_voltage", Some("output-3")), 229.0);
    assert_eq!(value(&readings, "output_current", Some("output-1")), 24.1);
    assert_eq!(value(&readings, "output_power", Some("output-2")), 4400.0);
    assert_eq!(value(&readings, "output_load", Some("output-1")), 83.0);
    assert_eq!(value(&readings, "bypass_voltage", Some("bypass-2")), 159.0);
    assert_eq!(value(&readings, "alarms_present", None), 2.0);
    // 7 battery points, 4 input columns x 3 lines, 4 output scalars and flags, 4 output
    // columns x 3 lines, 3 bypass lines, the alarm count.
    assert_eq!(readings.len(), 7 + 12 + 4 + 12 + 3 + 1, "{readings:#?}");
    let units: Vec<(&str, &str)> = readings.iter().map(|r| (r.point.as_str(), &*r.unit)).collect();
    for expected in
        [("runtime_remaining", "min"), ("battery_charge", "%"), ("input_frequency", "Hz"), ("on_battery", "")]
    {
        assert!(units.contains(&expected), "{expected:?} in {units:?}");
    }

    let basic = device(dir.path(), "ups-mib", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    // The optional objects are absent: no reading for them, and nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    for absent in [
        "battery_voltage",
        "battery_temp",
        "input_current",
        "input_power",
        "output_current",
        "output_power",
        "bypass_voltage",
    ] {
        assert!(!readings.iter().any(|r| r.point.as_str() == absent), "{absent} in {readings:#?}");
    }
    assert_eq!(value(&readings, "runtime_remaining", None), 48.0);
    assert_eq!(value(&readings, "battery_charge", None), 100.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-1")), 196.0);
    assert_eq!(value(&readings, "input_frequency", Some("input-1")), 50.1);
    // booster(6): neither on battery nor on bypass.
    assert_eq!(value(&readings, "output_source", None), 6.0);
    assert_eq!(value(&readings, "on_battery", None), 0.0);
    assert_eq!(value(&readings, "on_bypass", None), 0.0);
    assert_eq!(value(&readings, "output_load", Some("output-1")), 31.0);
    assert_eq!(value(&readings, "alarms_present", None), 0.0);
    // 5 battery points, 2 input columns, 4 output scalars and flags, 2 output columns, alarms.
    assert_eq!(readings.len(), 5 + 2 + 4 + 2 + 1, "{readings:#?}");
}

/// PowerNet-MIB ATS group: an AP4423 on source A with source B failed (redundancy lost),
/// and an older AP7721 on source B, fully redundant, without the source status objects and
/// the input and output tables (only the phase tables).
#[tokio::test]
async fn snmpsim_recordings_of_apc_transfer_switches_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "apc-ats");
    secret(dir.path(), "basic", "apc-ats-basic");
    let full = device(dir.path(), "apc-ats", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "selected_source", None), 1.0);
    assert_eq!(value(&readings, "redundancy_lost", None), 1.0);
    assert_eq!(value(&readings, "source_a_failed", None), 0.0);
    assert_eq!(value(&readings, "source_b_failed", None), 1.0);
    assert_eq!(value(&readings, "input_frequency", Some("Feed A (UPS-1)")), 50.0);
    assert_eq!(value(&readings, "input_frequency", Some("Feed B (utility)")), 0.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-1.1")), 231.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-2.1")), 0.0);
    assert_eq!(value(&readings, "output_frequency", Some("output-1")), 50.0);
    assert_eq!(value(&readings, "output_voltage", Some("output-1.1")), 230.0);
    assert_eq!(value(&readings, "output_current", Some("output-1.1")), 14.2);
    assert_eq!(value(&readings, "output_load", Some("output-1.1")), 44.0);
    assert_eq!(value(&readings, "output_power", Some("output-1.1")), 3266.0);
    assert_eq!(readings.len(), 4 + 2 + 2 + 1 + 4, "{readings:#?}");
    let units: Vec<(&str, &str)> = readings.iter().map(|r| (r.point.as_str(), &*r.unit)).collect();
    assert!(units.contains(&("output_power", "VA")) && units.contains(&("output_load", "%")), "{units:?}");

    let basic = device(dir.path(), "apc-ats", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    // The optional objects are absent: no reading for them, and nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    for absent in ["source_a_failed", "source_b_failed", "input_frequency", "output_frequency"] {
        assert!(!readings.iter().any(|r| r.point.as_str() == absent), "{absent} in {readings:#?}");
    }
    assert_eq!(value(&readings, "selected_source", None), 2.0);
    assert_eq!(value(&readings, "redundancy_lost", None), 0.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-2.1")), 230.0);
    assert_eq!(value(&readings, "output_current", Some("output-1.1")), 6.3);
    assert_eq!(value(&readings, "output_load", Some("output-1.1")), 39.0);
    assert_eq!(value(&readings, "output_power", Some("output-1.1")), 1443.0);
    assert_eq!(readings.len(), 2 + 2 + 4, "{readings:#?}");
}

/// EATON-EPDU-MIB: a three-phase advanced-monitored ePDU with outlet metering, breakers and
/// one of two temperature probes connected, and a single-phase monitored one without outlet
/// metering, percent load or probes.
#[tokio::test]
async fn snmpsim_recordings_of_eaton_epdus_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "eaton-epdu");
    secret(dir.path(), "basic", "eaton-epdu-basic");
    let full = device(dir.path(), "eaton-epdu", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "input_frequency", Some("input-0.1")), 50.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-0.1.1")), 230.1);
    assert_eq!(value(&readings, "input_voltage", Some("input-0.1.3")), 231.0);
    assert_eq!(value(&readings, "input_current", Some("input-0.1.1")), 12.45);
    assert_eq!(value(&readings, "input_current", Some("input-0.1.3")), 11.02);
    // The neutral (inputCurrentMeasType neutral(2)) is no phase current.
    assert!(!readings.iter().any(|r| r.label.as_deref() == Some("input-0.1.4")), "{readings:#?}");
    assert_eq!(value(&readings, "input_load", Some("input-0.1.1")), 78.0);
    assert_eq!(value(&readings, "input_power", Some("input-0.1")), 7420.0);
    assert_eq!(value(&readings, "input_energy", Some("input-0.1")), 12345.678);
    assert_eq!(value(&readings, "group_current", Some("Breaker L2")), 6.4);
    assert_eq!(value(&readings, "outlet_current", Some("web-01")), 1.25);
    assert_eq!(value(&readings, "outlet_current", Some("db-02")), 0.73);
    assert_eq!(value(&readings, "sensor_temp", Some("Front")), 23.4);
    // The disconnected(0) probe has no reading.
    assert!(!readings.iter().any(|r| r.label.as_deref() == Some("Rear")), "{readings:#?}");
    assert_eq!(value(&readings, "sensor_humidity", Some("Front RH")), 45.2);
    assert_eq!(readings.len(), 1 + 3 + 3 + 3 + 1 + 1 + 3 + 2 + 1 + 1, "{readings:#?}");

    let basic = device(dir.path(), "eaton-epdu", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    // The optional tables are absent: no reading for them, and nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    for absent in ["input_load", "outlet_current", "sensor_temp", "sensor_humidity"] {
        assert!(!readings.iter().any(|r| r.point.as_str() == absent), "{absent} in {readings:#?}");
    }
    assert_eq!(value(&readings, "input_frequency", Some("input-0.1")), 60.0);
    assert_eq!(value(&readings, "input_voltage", Some("input-0.1.1")), 208.0);
    assert_eq!(value(&readings, "input_current", Some("input-0.1.1")), 15.5);
    assert_eq!(value(&readings, "input_power", Some("input-0.1")), 3150.0);
    assert_eq!(value(&readings, "input_energy", Some("input-0.1")), 98.765);
    assert_eq!(value(&readings, "group_current", Some("Section A")), 7.7);
    assert_eq!(value(&readings, "group_current", Some("Section B")), 7.8);
    assert_eq!(readings.len(), 5 + 2, "{readings:#?}");
}

/// PowerNet-MIB airIRRC: an ACRC301S with a leak sensor and containment pressure, and an
/// older ACRC100 without either.
#[tokio::test]
async fn snmpsim_recordings_of_apc_inrow_coolers_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "apc-inrow");
    secret(dir.path(), "basic", "apc-inrow-basic");
    let full = device(dir.path(), "apc-inrow", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "rack_inlet_temp", None), 23.8);
    assert_eq!(value(&readings, "supply_air_temp", None), 18.3);
    assert_eq!(value(&readings, "return_air_temp", None), 36.2);
    assert_eq!(value(&readings, "cooling_output", None), 18.4);
    assert_eq!(value(&readings, "cooling_demand", None), 19.0);
    assert_eq!(value(&readings, "air_flow", None), 1350.0);
    assert_eq!(value(&readings, "fan_speed", None), 62.5);
    assert_eq!(value(&readings, "filter_dp", None), 51.0);
    assert_eq!(value(&readings, "containment_dp", None), 3.0);
    assert_eq!(value(&readings, "valve_position", None), 57.0);
    assert_eq!(value(&readings, "fluid_flow", None), 0.74);
    assert_eq!(value(&readings, "entering_fluid_temp", None), 12.1);
    assert_eq!(value(&readings, "leaving_fluid_temp", None), 16.3);
    assert_eq!(value(&readings, "leak", None), 0.0);
    assert_eq!(value(&readings, "alarms_present", None), 1.0);
    assert_eq!(readings.len(), 15, "{readings:#?}");
    let units: Vec<(&str, &str)> = readings.iter().map(|r| (r.point.as_str(), &*r.unit)).collect();
    for expected in [("cooling_output", "kW"), ("air_flow", "L/s"), ("filter_dp", "Pa"), ("leak", "")] {
        assert!(units.contains(&expected), "{expected:?} in {units:?}");
    }

    let basic = device(dir.path(), "apc-inrow", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    // The optional objects are absent: no reading for them, and nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    for absent in ["containment_dp", "leak"] {
        assert!(!readings.iter().any(|r| r.point.as_str() == absent), "{absent} in {readings:#?}");
    }
    assert_eq!(value(&readings, "rack_inlet_temp", None), 22.1);
    assert_eq!(value(&readings, "cooling_output", None), 9.5);
    assert_eq!(value(&readings, "air_flow", None), 610.0);
    assert_eq!(value(&readings, "fluid_flow", None), 0.41);
    assert_eq!(value(&readings, "leaving_fluid_temp", None), 14.9);
    assert_eq!(value(&readings, "alarms_present", None), 0.0);
    assert_eq!(readings.len(), 13, "{readings:#?}");
}

/// VERTIV-V5-MIB: a three-phase Geist PDU with breakers, outlet metering, a temperature probe
/// and an airflow/humidity probe, and a single-phase one without breakers or outlet metering
/// whose only probe is unplugged (Unavailable).
#[tokio::test]
async fn snmpsim_recordings_of_vertiv_geist_pdus_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "vertiv-geist");
    secret(dir.path(), "basic", "vertiv-geist-basic");
    let full = device(dir.path(), "vertiv-geist", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "pdu_power", Some("pdu-1")), 5320.0);
    assert_eq!(value(&readings, "pdu_energy", Some("pdu-1")), 8765.432);
    assert_eq!(value(&readings, "phase_voltage", Some("L2")), 229.7);
    assert_eq!(value(&readings, "phase_current", Some("L1")), 8.12);
    assert_eq!(value(&readings, "phase_current", Some("L3")), 7.9);
    assert_eq!(value(&readings, "phase_power", Some("L3")), 1860.0);
    assert_eq!(value(&readings, "breaker_current", Some("CB2")), 3.92);
    assert_eq!(value(&readings, "outlet_current", Some("Outlet 1")), 1.55);
    assert_eq!(value(&readings, "sensor_temp", Some("Cold aisle B10")), 22.4);
    assert_eq!(value(&readings, "airflow_sensor_temp", Some("Hot aisle B10")), 35.2);
    assert_eq!(value(&readings, "airflow_sensor_humidity", Some("Hot aisle B10")), 31.0);
    assert_eq!(value(&readings, "airflow_sensor_dew_point", Some("Hot aisle B10")), 15.4);
    assert_eq!(readings.len(), 2 + 3 * 3 + 2 + 2 + 1 + 3, "{readings:#?}");

    let basic = device(dir.path(), "vertiv-geist", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    // The optional tables are absent (or the probe unavailable): no reading, nothing bad.
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    for absent in ["breaker_current", "outlet_current", "sensor_temp", "airflow_sensor_temp"] {
        assert!(!readings.iter().any(|r| r.point.as_str() == absent), "{absent} in {readings:#?}");
    }
    assert_eq!(value(&readings, "pdu_power", Some("pdu-1")), 1480.0);
    assert_eq!(value(&readings, "pdu_energy", Some("pdu-1")), 250.0);
    assert_eq!(value(&readings, "phase_voltage", Some("L1")), 208.0);
    assert_eq!(value(&readings, "phase_current", Some("L1")), 7.12);
    assert_eq!(readings.len(), 2 + 3, "{readings:#?}");
}

/// Rittal CMC III: sensors are rows of cmcIIIVarTable chosen by name and scaled per row.
/// The full recording has a temperature/humidity sensor besides the unit's own ambient
/// sensor (and its internal "System.Temperature.Value", which is not ambient); the basic one
/// has no humidity sensor (the optional point is absent) and a unit in overload.
#[tokio::test]
async fn snmpsim_recordings_of_rittal_cmc3_units_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut peer = start_snmpsim(dir.path(), port);
    secret(dir.path(), "full", "rittal-cmc3");
    secret(dir.path(), "basic", "rittal-cmc3-basic");
    let full = device(dir.path(), "rittal-cmc3", port, r#"community_file = "full""#);
    let readings = poll_when_up(&mut peer, SNMPSIM, &full).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert_eq!(value(&readings, "ambient_temp", Some("var-1.2")), 23.5);
    assert_eq!(value(&readings, "ambient_temp", Some("var-3.2")), 27.0);
    assert_eq!(value(&readings, "humidity", Some("var-3.12")), 45.5);
    assert_eq!(value(&readings, "unit_fault", None), 0.0);
    // Two ambient temperatures, one humidity, the unit status.
    assert_eq!(readings.len(), 2 + 1 + 1, "{readings:#?}");

    let basic = device(dir.path(), "rittal-cmc3", port, r#"community_file = "basic""#);
    let (readings, result) = poll(&basic).await;
    assert_eq!(result, Ok(()));
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert!(!readings.iter().any(|r| r.point.as_str() == "humidity"), "{readings:#?}");
    assert_eq!(value(&readings, "ambient_temp", Some("var-1.2")), 21.8);
    // A positive cmcIIIVarScale multiplies: 2 x 10.
    assert_eq!(value(&readings, "ambient_temp", Some("var-2.2")), 20.0);
    assert_eq!(value(&readings, "unit_fault", None), 1.0);
    assert_eq!(readings.len(), 2 + 1, "{readings:#?}");
}
