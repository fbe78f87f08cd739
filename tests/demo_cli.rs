//! `hallmonitor demo --seconds 30` end to end, as a newcomer runs it: real Modbus and MQTT
//! traffic on loopback, an uplink outage in the middle, and a summary that must show the
//! pattern signal before the major event and zero lost messages, even while other programs hold
//! the ports the shipped demo configs name.

#![cfg(feature = "embedded-broker")]

use std::net::{TcpListener, UdpSocket};
use std::process::Command;

#[test]
fn demo_shows_the_pattern_before_the_major_event_and_loses_nothing_across_the_outage() {
    // Something else holds ports the shipped demo configs name (Modbus 15020, SNMP 16101): the
    // demo must not care. A bind that fails means another program holds the port already,
    // which is the same situation.
    let _modbus = TcpListener::bind("127.0.0.1:15020").ok();
    let _snmp = UdpSocket::bind("127.0.0.1:16101").ok();
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["demo", "--seconds", "30"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run hallmonitor demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    // The NOC saw the recurrences as incidents of hall1-b, and the pattern signal.
    assert!(stdout.contains("hall1-b incident OPENED"), "{stdout}");
    assert!(stdout.contains("PATTERN ACTIVE  thermal 3 in 30d"), "{stdout}");
    // The outage happened and the outbox rode through it.
    assert!(stdout.contains("── uplink down at simulated"), "{stdout}");
    assert!(stdout.contains("── uplink restored at simulated"), "{stdout}");

    let summary = stdout.split("── summary").nth(1).expect("a summary");
    assert!(summary.contains("before the major event"), "{summary}");
    assert!(!summary.contains("NOT before"), "{summary}");
    assert!(summary.contains(" 0 missing, "), "{summary}");
    assert!(summary.contains(" 0 conflicting; 0 left in the outbox"), "{summary}");
    assert!(summary.contains("zero lost messages across the outage"), "{summary}");
    let buffered: u64 = summary
        .split("outage")
        .nth(1)
        .and_then(|s| s.split(": ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("buffered count");
    assert!(buffered > 0, "no message was buffered during the outage:\n{summary}");
}
