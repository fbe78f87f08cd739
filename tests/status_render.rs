//! `hallmonitor status` against fixture snapshots: the exact text a technician sees.

use std::path::Path;
use std::process::Command;

use hallmonitor::commands::status::render;
use hallmonitor::model::Timestamp;
use hallmonitor::status::{self, StatusSnapshot};

fn fixture(name: &str) -> StatusSnapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

const BUSY_EXPECTED: &str = "\
hallmonitor 0.1.0 at site fra1: up 3d 4h, snapshot 4s old
config /etc/hallmonitor/hallmonitor.toml

DEVICES  2 up, 2 down
  DOWN th-c02           hall1-c/C02  modbus 72 fails, ok 12m ago
       10.20.7.50:502 unit 10: timeout after 2s (no answer to read of input 0..…
  DOWN pdu-a01-b-with-… hall1-a/A01  snmp   3 fails, never ok
       10.20.7.40:161: timeout (wrong v3 credentials?)
  up   crah-b           hall1-b      modbus ok 5s ago
  up   pdu-b07-a        hall1-b/B07  snmp   ok 2s ago

OPEN INCIDENTS  2
  CRIT thermal  hall1-b    B07,B08        open 1h 5m    3 breaches
       fra1-hall1-b-thermal-20261121T1405
       14:47 severity_changed: inlet_temp_c 32.6 °C > 32 on th-b07 (B07)
  warn comms    hall1-c    C02            open 11m      1 breach
       fra1-hall1-c-comms-20261121T1459

ACTIVE PATTERNS  1
  thermal  hall1-b    4 in 30d, 14:00-17:00 UTC, 4 of 4
       4 thermal incidents in hall1-b (and hall1-a) within 30d, clustered 14:00…

OUTBOX   17 queued (52.5 KiB), oldest un-acked 4m 14s, 0 dropped
BROKER   mqtts://noc.example.net:8883 DISCONNECTED, last ack 4m 14s ago
         last error: connection refused (os error 111)
POLLS    modbus 48211 ok/75 failed/0 late, snmp 24102 ok/3 failed/1 late
NOISE    1840 crossings -> 61 breaches -> 9 incidents (27 msgs), 1 pattern
";

#[test]
fn busy_snapshot_renders_down_devices_first_within_80_columns() {
    let out = render(&fixture("status-busy.json"), at("2026-11-21T15:10:04Z"), false);
    assert_eq!(out, BUSY_EXPECTED, "\n--- got ---\n{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "line over 80 columns: {line:?}");
    }
}

#[test]
fn stale_snapshot_warns_that_the_daemon_is_not_running() {
    let out = render(&fixture("status-busy.json"), at("2026-11-21T16:10:00Z"), false);
    let second = out.lines().nth(1).unwrap();
    assert_eq!(second, "WARNING: stale snapshot (written 2026-11-21T15:10:00Z): is the daemon running?");
    assert!(out.starts_with("hallmonitor 0.1.0 at site fra1: up 3d 4h, snapshot 1h old\n"));
}

#[test]
fn many_up_devices_are_counted_unless_all() {
    let mut snap = fixture("status-busy.json");
    let template = snap.devices[0].clone();
    for i in 0..20 {
        let mut d = template.clone();
        d.id = hallmonitor::model::DeviceId::new(format!("th-{i:02}"));
        snap.devices.push(d);
    }
    let out = render(&snap, at("2026-11-21T15:10:04Z"), false);
    assert!(out.contains("DEVICES  22 up, 2 down\n"), "{out}");
    assert!(out.contains("  ... and 14 more up (--all lists them)\n"), "{out}");
    let all = render(&snap, at("2026-11-21T15:10:04Z"), true);
    assert!(!all.contains("more up"));
    assert!(all.contains("  up   th-19 "));
}

#[test]
fn cli_reads_the_state_dir_and_fails_clearly_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_hallmonitor");
    let out = Command::new(bin).args(["status", "--state-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no status snapshot at") && err.contains("status.json"), "{err}");

    status::write_atomic(dir.path(), &fixture("status-busy.json")).unwrap();
    let out = Command::new(bin)
        .args(["status", "--now", "2026-11-21T15:10:04Z", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), BUSY_EXPECTED);

    let out = Command::new(bin).args(["status", "--json", "--state-dir"]).arg(dir.path()).output().unwrap();
    let back: StatusSnapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, fixture("status-busy.json"));
}

#[test]
fn a_gateway_pair_shows_its_role_term_links_and_last_takeover() {
    let mut snap = fixture("status-busy.json");
    snap.ha = Some(status::HaStatus {
        node: "gw1".into(),
        role: "standby".into(),
        term: 4,
        since: at("2026-11-21T15:07:00Z"),
        reason: "lease ran out: no majority renewed it".into(),
        last_takeover_at: Some(at("2026-11-21T12:00:00Z")),
        last_takeover_reason: Some("elected (peer and witness reachable)".into()),
        peer_link_up: false,
        witness_link_up: true,
        active_node: None,
        replica: status::ReplicaStatus { state: "idle".into(), position: "3.41".into(), ..Default::default() },
    });
    let out = render(&snap, at("2026-11-21T15:10:04Z"), false);
    let pair: Vec<&str> = out.lines().skip(2).take(4).collect();
    assert_eq!(
        pair,
        [
            "PAIR     gw1 STANDBY, term 4, for 3m; peer link DOWN, witness link up",
            "         why: lease ran out: no majority renewed it",
            "         replica: idle, at 3.41",
            "         last active 2026-11-21T12:00:00Z: elected (peer and witness reachable)",
        ],
        "\n{out}"
    );
    // An active whose standby is absent says what that costs.
    let ha = snap.ha.as_mut().expect("set above");
    ha.role = "active".into();
    ha.replica =
        status::ReplicaStatus { state: "degraded".into(), lag_ms: 4200, position: "5.77".into(), ..Default::default() };
    let out = render(&snap, at("2026-11-21T15:10:04Z"), false);
    assert!(out.contains("replica: DEGRADED for 4200 ms at 5.77: no takeover possible"), "\n{out}");
    // Without [ha] nothing changes (the exact busy rendering above has no PAIR line).
    assert!(!render(&fixture("status-busy.json"), at("2026-11-21T15:10:04Z"), false).contains("PAIR"));
}
