//! `hallmonitor poll --once` and `hallmonitor probe snmp` against the in-tree simulated agent,
//! run as a user would: the real binary, a config file, JSON lines on stdout.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hallmonitor::model::{DeviceId, PointId, Quality, Reading};
use hallmonitor::sim::snmp::{self as simsnmp, SimSnmpDevice};
use hallmonitor::sim::{SimFault, SimValues};
use support::files::secret;
use support::profiles::snmp_builtin;
use tokio_util::sync::CancellationToken;

fn write_config(dir: &Path, addr: std::net::SocketAddr, community: &str) -> std::path::PathBuf {
    write_config_polling(dir, addr, community, "timeout = \"300ms\"\nretries = 1")
}

fn write_config_polling(dir: &Path, addr: std::net::SocketAddr, community: &str, polling: &str) -> std::path::PathBuf {
    secret(dir, "community", community);
    let text = format!(
        r#"
[site]
id = "fra1"
[store]
path = "/tmp/unused"
[polling]
{polling}
[[zones]]
id = "hall1-b"
racks = ["B07"]
[[devices]]
id = "pdu-b07-a"
profile = "apc-rpdu2"
zone = "hall1-b"
rack = "B07"
[devices.snmp]
address = "{addr}"
community_file = "community"
"#
    );
    support::files::write_config(dir, &text)
}

async fn start(values: Arc<SimValues>) -> simsnmp::SimSnmpAgent {
    let devices = HashMap::from([(
        "fra1-ro".to_owned(),
        SimSnmpDevice { id: DeviceId::new("pdu-b07-a"), profile: snmp_builtin("apc-rpdu2"), rows: 2 },
    )]);
    simsnmp::serve("127.0.0.1:0".parse().unwrap(), devices, values, CancellationToken::new()).await.unwrap()
}

fn set_values(values: &SimValues) {
    let d = DeviceId::new("pdu-b07-a");
    let set = |p: &str, r: u32, v: f64| values.set(&d, &PointId::new(p), r, v);
    set("device_power", 0, 2470.0);
    set("device_energy", 0, 1234.5);
    for r in 1..=2 {
        set("phase_current", r, 10.0 + f64::from(r) / 10.0);
        set("phase_voltage", r, 230.0);
        set("outlet_current", r, f64::from(r) * 1.5);
        set("sensor_temp", r, 24.0 + f64::from(r) / 10.0);
        set("sensor_humidity", r, 45.0);
    }
}

async fn run(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor")).args(args).output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_prints_decoded_snmp_readings_as_json_lines() {
    let values = Arc::new(SimValues::new());
    set_values(&values);
    let agent = start(values).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), agent.local_addr, "fra1-ro");
    let out = run(&["poll", "--config", cfg.to_str().unwrap(), "--once"]).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let readings: Vec<Reading> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(readings.len(), 2 + 5 * 2);
    assert!(readings.iter().all(|r| r.quality == Quality::Good && r.zone.as_str() == "hall1-b"));
    let get = |point: &str, label: Option<&str>| {
        readings.iter().find(|r| r.point.as_str() == point && r.label.as_deref() == label).unwrap()
    };
    assert_eq!(get("device_power", None).value, Some(2470.0));
    assert_eq!(get("device_energy", None).value, Some(1234.5));
    assert_eq!(get("phase_current", Some("phase-2")).value, Some(10.2));
    assert_eq!(get("outlet_current", Some("outlet-2")).value, Some(3.0));
    let t = get("sensor_temp", Some("sensor-1"));
    assert_eq!((t.value, &*t.unit, t.metric.as_str()), (Some(24.1), "°C", "inlet_temp_c"));
    // The JSON line carries the fields of docs/contracts.md#readings.
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    for k in ["at", "device", "point", "metric", "value", "unit", "zone", "rack", "quality"] {
        assert!(line.get(k).is_some(), "missing {k} in {line}");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_of_a_silent_agent_prints_bad_readings_and_exits_1() {
    let values = Arc::new(SimValues::new());
    set_values(&values);
    values.set_fault(&DeviceId::new("pdu-b07-a"), SimFault::Silent);
    let agent = start(values).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), agent.local_addr, "fra1-ro");
    let out = run(&["poll", "--config", cfg.to_str().unwrap(), "--once"]).await;
    assert_eq!(out.status.code(), Some(1));
    let readings: Vec<Reading> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(readings.len(), 7, "one bad reading per point");
    for r in &readings {
        assert_eq!(r.quality, Quality::Bad);
        assert!(r.error.as_deref().unwrap().contains("no answer from"), "{r:?}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Down is the daemon's decision (`down_after`); the poller warns of the failed poll.
    assert_eq!(stderr.matches("poll failed").count(), 1, "{stderr}");
    assert!(!stderr.contains("device down"), "{stderr}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_walks_a_subtree_and_prints_types() {
    let values = Arc::new(SimValues::new());
    set_values(&values);
    let agent = start(values).await;
    let dir = tempfile::tempdir().unwrap();
    let cf = dir.path().join("c");
    std::fs::write(&cf, "fra1-ro\n").unwrap();
    let addr = agent.local_addr.to_string();
    let out = run(&[
        "probe",
        "snmp",
        &addr,
        "--oid",
        "1.3.6.1.4.1.318.1.1.26.9.4.3.1",
        "--community-file",
        cf.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "1.3.6.1.4.1.318.1.1.26.9.4.3.1.3.1 = octet_string: \"outlet-1\"",
            "1.3.6.1.4.1.318.1.1.26.9.4.3.1.3.2 = octet_string: \"outlet-2\"",
            "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6.1 = integer: 15",
            "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6.2 = integer: 30",
        ]
    );
    // A community file others may read is warned about, like one named in a config ...
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let scalar = ["probe", "snmp", &addr, "--oid", "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6.1", "--community-file"];
    let out = run(&[&scalar[..], &[cf.to_str().unwrap()]].concat()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accessible to other users (mode 0644)"), "{stderr}");
    // ... and the README's 0640 root:hallmonitor layout is not.
    std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&[&scalar[..], &[cf.to_str().unwrap()]].concat()).await;
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_down_and_up_are_logged_once_each_not_per_poll() {
    use tokio::io::AsyncBufReadExt;
    let values = Arc::new(SimValues::new());
    set_values(&values);
    let dev = DeviceId::new("pdu-b07-a");
    values.set_fault(&dev, SimFault::Silent);
    let agent = start(values.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_polling(
        dir.path(),
        agent.local_addr,
        "fra1-ro",
        "interval = \"200ms\"\ntimeout = \"50ms\"\nretries = 0",
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["poll", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Four failed polls (7 bad readings each), then the agent comes back.
    let mut bad = 0;
    while bad < 4 * 7 {
        let r: Reading = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(r.quality, Quality::Bad);
        bad += 1;
    }
    values.set_fault(&dev, SimFault::None);
    let mut good = 0;
    while good < 2 * 12 {
        let r: Reading = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if r.quality == Quality::Good {
            good += 1;
        }
    }
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One warning for the run of four failed polls, not one per poll; down/up is the
    // daemon's decision (`down_after`), not the poller's.
    assert_eq!(stderr.matches("poll failed").count(), 1, "{stderr}");
    assert!(!stderr.contains("device down") && !stderr.contains("device up"), "{stderr}");
    assert!(stderr.contains("pdu-b07-a") && stderr.contains(&agent.local_addr.to_string()), "{stderr}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_exits_0_on_a_healthy_pdu_that_lacks_only_optional_outlet_metering() {
    // A switched PDU (AP8853-like): no rPDU2 outlet metering table.
    let values = Arc::new(SimValues::new());
    let d = DeviceId::new("pdu-b07-a");
    let set = |p: &str, r: u32, v: f64| values.set(&d, &PointId::new(p), r, v);
    set("device_power", 0, 2470.0);
    set("device_energy", 0, 1234.5);
    for r in 1..=2 {
        set("phase_current", r, 10.0);
        set("phase_voltage", r, 230.0);
        set("sensor_temp", r, 24.0);
        set("sensor_humidity", r, 45.0);
    }
    let agent = start(values).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), agent.local_addr, "fra1-ro");
    let out = run(&["poll", "--config", cfg.to_str().unwrap(), "--once"]).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let readings: Vec<Reading> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(readings.len(), 2 + 4 * 2, "{stdout}");
    assert!(readings.iter().all(|r| r.quality == Quality::Good && r.point.as_str() != "outlet_current"));
    agent.stop().await;
}
