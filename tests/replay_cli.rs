//! `hallmonitor replay` end to end: a config and a recorded readings file in, the messages the
//! daemon would publish out.

mod support;

use std::process::Command;

use serde_json::Value;
use support::engine::{PROFILES, device};
use support::files::write_config;

fn config() -> String {
    let mut c = String::from(
        r#"
[site]
id = "fra1"
[correlation]
clear_hold = "5m"
[[zones]]
id = "hall1-b"
racks = ["B07"]
"#,
    );
    c.push_str(&device("th-b07", "test-probe", "hall1-b", Some("B07"), ""));
    c.push_str(PROFILES);
    c
}

/// 10 s readings: 2 min at 24 °C, 5 min at 29 °C, 15 min at 23 °C. Zone and rack are left
/// out, as in a recording made before the device was placed: replay takes them from the config.
fn readings() -> String {
    let mut out = String::new();
    for step in 0..132 {
        let v = match step {
            0..=11 => 24.0,
            12..=41 => 29.0,
            _ => 23.0,
        };
        let at = hallmonitor::model::Timestamp(support::engine::T0 + step * 10_000);
        out.push_str(&format!(
            "{{\"at\":\"{at}\",\"device\":\"th-b07\",\"point\":\"temp\",\"metric\":\"inlet_temp_c\",\"value\":{v},\"unit\":\"°C\",\"label\":null,\"quality\":\"good\"}}\n"
        ));
    }
    out
}

fn replay(config: &str, readings: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), config);
    let rd = dir.path().join("readings.jsonl");
    std::fs::write(&rd, readings).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg("--readings")
        .arg(&rd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_what_would_be_published() {
    let (code, stdout, stderr) = replay(&config(), &readings());
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 2, "{stdout}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["topic"], "hallmonitor/v1/fra1/incidents/hall1-b");
        let p = &l["payload"];
        assert_eq!(p["schema"], "hallmonitor/v1");
        assert_eq!(p["site"], "fra1");
        assert_eq!(p["seq"], (i + 1) as u64);
        assert_eq!(p["msg_id"], format!("replay-{}", i + 1));
        assert_eq!(p["type"], "incident");
        assert_eq!(p["zone"], "hall1-b");
        assert_eq!(p["racks"], serde_json::json!(["B07"]), "rack taken from the config");
    }
    let first = &lines[0]["payload"];
    assert_eq!(first["event"], "opened");
    // Crossed at 00:02:00, held for the default 60 s: the breach (and the incident) at 00:03:00.
    assert_eq!(first["created_at"], "2026-11-02T00:03:00Z");
    assert_eq!(first["opened_at"], "2026-11-02T00:03:00Z");
    assert_eq!(first["breaches"][0]["since"], "2026-11-02T00:02:00Z");
    let last = &lines.last().unwrap()["payload"];
    assert_eq!(last["event"], "resolved");
    // Back inside at 00:07:00, clear for 5 min: resolved by the timer at 00:12:00, between readings.
    assert_eq!(last["resolved_at"], "2026-11-02T00:12:00Z");
    assert_eq!(last["created_at"], "2026-11-02T00:12:00Z");
    let chronicle = last["chronicle"].as_array().unwrap();
    assert_eq!(chronicle.first().unwrap()["what"], "opened");
    assert_eq!(chronicle.last().unwrap()["what"], "resolved");
}

#[test]
fn replay_names_the_line_of_a_bad_reading_and_exits_2() {
    let mut r = readings();
    r.push_str("{\"at\":\"2026-11-02T01:00:00Z\",\"device\":\"nobody\",\"point\":\"temp\",\"metric\":\"inlet_temp_c\",\"value\":20}\n");
    let (code, _, stderr) = replay(&config(), &r);
    assert_eq!(code, 2);
    assert!(stderr.contains("readings.jsonl:133") && stderr.contains("\"nobody\""), "{stderr}");

    let (code, _, stderr) = replay(&config(), "not json\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("readings.jsonl:1: not a reading"), "{stderr}");
}
