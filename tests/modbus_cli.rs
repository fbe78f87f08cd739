//! `hallmonitor poll --config X --once` against the in-process simulator: the JSON lines a
//! facility engineer sees when commissioning a CRAH and a temperature probe.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use hallmonitor::model::{DeviceId, PointId};
use hallmonitor::sim::SimValues;
use hallmonitor::sim::modbus::{SimModbusDevice, serve};
use support::files::write_config;
use support::profiles::modbus_builtin;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_prints_exact_readings_for_modbus_devices() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let values = Arc::new(SimValues::new());
    let crah = DeviceId::new("crah-b1");
    let probe = DeviceId::new("th-b07");
    for (point, v) in [
        ("supply_air_temp", 18.4),
        ("return_air_temp", 29.7),
        ("return_air_humidity", 45.5),
        ("fan_speed", 72.0),
        ("cooling_capacity", 55.0),
        ("alarm_fan_failure", 1.0),
    ] {
        values.set(&crah, &PointId::new(point), 0, v);
    }
    values.set(&probe, &PointId::new("temperature"), 0, -2.5);
    values.set(&probe, &PointId::new("humidity"), 0, 61.2);
    let units = HashMap::from([
        (1, SimModbusDevice { id: crah, profile: modbus_builtin("generic-crah") }),
        (2, SimModbusDevice { id: probe, profile: modbus_builtin("modbus-th-probe") }),
    ]);
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, units, values, cancel.clone()));

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[site]
id = "fra1"

[polling]
timeout = "2s"

[[zones]]
id = "hall1-b"
racks = ["B07"]

[[devices]]
id = "crah-b1"
profile = "generic-crah"
zone = "hall1-b"
[devices.modbus]
address = "127.0.0.1:{port}"
unit = 1

[[devices]]
id = "th-b07"
profile = "modbus-th-probe"
zone = "hall1-b"
rack = "B07"
[devices.modbus]
address = "127.0.0.1:{port}"
unit = 2
"#
        ),
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["poll", "--config"])
        .arg(&config)
        .arg("--once")
        .output()
        .await
        .unwrap();
    cancel.cancel();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);

    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 11 + 2, "{stdout}");
    let get = |device: &str, point: &str| -> &serde_json::Value {
        lines
            .iter()
            .find(|v| v["device"] == device && v["point"] == point)
            .unwrap_or_else(|| panic!("no reading {device}/{point} in\n{stdout}"))
    };
    let expect = [
        ("crah-b1", "supply_air_temp", "supply_air_temp_c", 18.4, "°C"),
        ("crah-b1", "return_air_temp", "return_air_temp_c", 29.7, "°C"),
        ("crah-b1", "return_air_humidity", "humidity_pct", 45.5, "%RH"),
        ("crah-b1", "fan_speed", "fan_speed_pct", 72.0, "%"),
        ("crah-b1", "alarm_fan_failure", "alarm", 1.0, ""),
        ("crah-b1", "alarm_common", "alarm", 0.0, ""),
        ("th-b07", "temperature", "inlet_temp_c", -2.5, "°C"),
        ("th-b07", "humidity", "humidity_pct", 61.2, "%RH"),
    ];
    for (device, point, metric, value, unit) in expect {
        let r = get(device, point);
        assert_eq!(r["metric"], metric, "{r}");
        assert_eq!(r["unit"], unit, "{r}");
        assert_eq!(r["quality"], "good", "{r}");
        let got = r["value"].as_f64().unwrap();
        // Tenths on the wire print as the decimal the device means (18.4, not 18.400000000000002).
        assert_eq!(got, value, "{device}/{point}");
        assert_eq!(r["zone"], "hall1-b");
        assert!(r["at"].as_str().unwrap().ends_with('Z'), "{r}");
    }
    assert_eq!(get("th-b07", "temperature")["rack"], "B07");
    assert!(get("crah-b1", "fan_speed")["rack"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_every_byte_order_side_by_side() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let values = Arc::new(SimValues::new());
    let meter = DeviceId::new("pm-1");
    // PM5000 current_a is register 3000 (one-based), FLOAT32 ABCD.
    values.set(&meter, &PointId::new("current_a"), 0, 12.5);
    values.set(&meter, &PointId::new("current_b"), 0, -3.75);
    let units = HashMap::from([(1, SimModbusDevice { id: meter, profile: modbus_builtin("schneider-pm5000") })]);
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, units, values, cancel.clone()));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["probe", "modbus", &address, "--unit", "1", "--register", "3000", "--count", "4", "--one-based"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("--register 3000 taken as one-based: wire address 2999"), "{stdout}");
    assert!(stdout.contains("holding registers 2999..=3002"), "{stdout}");
    let at = |addr: &str, order: &str| -> String {
        let section = stdout.split(&format!("  at {addr}:\n")).nth(1).unwrap_or_else(|| panic!("{stdout}"));
        section.lines().find(|l| l.trim_start().starts_with(order)).unwrap().to_owned()
    };
    assert!(at("2999", "ABCD").ends_with("f32 12.5"), "{stdout}");
    assert!(at("3001", "ABCD").ends_with("f32 -3.75"), "{stdout}");
    // The same registers in the wrong order are nonsense, which is the point of the table.
    assert!(!at("2999", "CDAB").ends_with("f32 12.5"), "{stdout}");

    // An unmapped register is reported as the device's exception, exit code 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["probe", "modbus", &address, "--register", "10"])
        .output()
        .await
        .unwrap();
    cancel.cancel();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exception 2 (illegal data address)"), "{stderr}");
}

#[test]
fn check_config_says_which_profiles_are_not_verified_against_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[site]
id = "fra1"

[[zones]]
id = "hall1-b"
racks = ["B07"]

[[devices]]
id = "pm-b"
profile = "schneider-pm5000"
zone = "hall1-b"
[devices.modbus]
address = "127.0.0.1:502"
unit = 1

[[devices]]
id = "pm-c"
profile = "schneider-pm5000"
zone = "hall1-b"
[devices.modbus]
address = "127.0.0.1:502"
unit = 2
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("NOT verified")).collect();
    assert_eq!(lines.len(), 1, "once per profile, not per device:\n{stdout}");
    assert!(lines[0].contains("schneider-pm5000") && lines[0].contains("register list"), "{stdout}");
}
