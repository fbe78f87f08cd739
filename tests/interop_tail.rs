//! `hallmonitor tail` against a real mosquitto: known payloads published with mosquitto_pub
//! come out as the expected lines. Needs the Debian packages `mosquitto` and
//! `mosquitto-clients`.
#![cfg(feature = "interop")]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::net::{free_port, listens_within};
use support::process::{KillOnDrop, Lines, read_to_end};
use support::tls::{make_ca, make_server_cert};

fn start_mosquitto(dir: &std::path::Path) -> (KillOnDrop, u16) {
    let port = free_port();
    (start_mosquitto_on(dir, port, ""), port)
}

/// Starts mosquitto on `port` with `extra` config lines (e.g. TLS files).
fn start_mosquitto_on(dir: &std::path::Path, port: u16, extra: &str) -> KillOnDrop {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"))
        .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mosquitto ({e}): install the Debian package `mosquitto`"));
    let guard = KillOnDrop(child);
    assert!(listens_within(port, Duration::from_secs(10)), "mosquitto did not listen on 127.0.0.1:{port} within 10 s");
    guard
}

/// `hallmonitor tail ARGS` without colours, and the lines it prints on stderr (where it says
/// what it subscribed to).
fn start_tail(args: &[&str]) -> (KillOnDrop, Lines) {
    let mut tail = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .arg("tail")
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = Lines::of(tail.0.stderr.take().unwrap());
    (tail, err)
}

/// Everything tail prints on stdout, once it exits.
fn stdout_text(tail: &mut KillOnDrop) -> std::sync::mpsc::Receiver<String> {
    read_to_end(tail.0.stdout.take().unwrap())
}

fn publish(port: u16, topic: &str, payload: &str) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-m", payload])
        .status()
        .unwrap_or_else(|e| panic!("cannot run mosquitto_pub ({e}): install the Debian package `mosquitto-clients`"));
    assert!(status.success(), "mosquitto_pub failed for {topic}");
}

const OPENED: &str = r#"{"schema":"hallmonitor/v1","site":"fra1","msg_id":"fra1-41","seq":41,"created_at":"2026-11-02T14:06:00Z","type":"incident","event":"opened","incident_id":"fra1-hall1-b-thermal-20261102T1405","zone":"hall1-b","category":"thermal","severity":"warning","opened_at":"2026-11-02T14:05:00Z","racks":["B07"],"breaches":[{"device":"th-b07","point":"temp","metric":"inlet_temp_c","value":29.1,"unit":"°C","threshold":27.0,"severity":"warning","rack":"B07","since":"2026-11-02T14:04:00Z","rule":"high"}],"peak":{},"context":{"hint":"B07 draws 35 % more than its 7-day median"}}"#;
const PATTERN: &str = r#"{"schema":"hallmonitor/v1","site":"fra1","msg_id":"fra1-42","seq":42,"created_at":"2026-11-08T16:31:00Z","type":"pattern","state":"active","pattern_id":"fra1-hall1-b-thermal","zone":"hall1-b","zones":["hall1-b"],"category":"thermal","trigger":"recurrence","occurrences":3,"window":"30d","incident_ids":["a","b","c"],"first_seen":"2026-11-02T14:05:00Z","last_seen":"2026-11-08T14:02:00Z","racks":["B07"],"time_of_day":"14:00-17:00 UTC, 3 of 3","summary":"3 thermal incidents in hall1-b within 7 days"}"#;

#[test]
fn tail_prints_known_payloads_as_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (_mosquitto, port) = start_mosquitto(dir.path());

    let (mut tail, mut err) =
        start_tail(&["--broker", &format!("mqtt://127.0.0.1:{port}"), "--site", "fra1", "--count", "4"]);
    // Wait until tail says it is subscribed, so nothing published is missed.
    err.wait_for_next("subscribed to hallmonitor/v1/fra1/#", Duration::from_secs(15));

    publish(port, "hallmonitor/v1/fra1/incidents/hall1-b", OPENED);
    publish(port, "hallmonitor/v1/fra1/patterns/hall1-b", PATTERN);
    publish(port, "hallmonitor/v1/fra1/status", r#"{"state":"offline"}"#);
    publish(port, "hallmonitor/v1/fra1/health", "not json at all");
    // Another site's message must not show up (it would also be a 5th line).
    publish(port, "hallmonitor/v1/ams2/status", r#"{"state":"online"}"#);

    let out = stdout_text(&mut tail).recv_timeout(Duration::from_secs(15)).expect("tail did not exit after 4 messages");
    let status = tail.0.wait().unwrap();
    assert!(status.success(), "tail exited with {status}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-11-02 14:06:00 fra1 hall1-b incident OPENED   thermal warning racks B07 | th-b07 inlet_temp_c 29.1 °C > 27 \
             | B07 draws 35 % more than its 7-day median [fra1-hall1-b-thermal-20261102T1405]",
            "2026-11-08 16:31:00 fra1 hall1-b PATTERN ACTIVE  thermal 3 in 30d, 14:00-17:00 UTC, 3 of 3 racks B07 \
             | 3 thermal incidents in hall1-b within 7 days",
            "------------------- fra1 status OFFLINE",
            "unparseable payload on hallmonitor/v1/fra1/health (15 bytes)",
        ]
    );
}

#[test]
fn json_mode_prints_raw_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let (_mosquitto, port) = start_mosquitto(dir.path());
    // Retained, so it is delivered on subscribe: no need to wait for the subscription.
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-r"])
        .args(["-t", "hallmonitor/v1/fra1/patterns/hall1-b", "-m", PATTERN])
        .status()
        .expect("mosquitto_pub (Debian package mosquitto-clients)");
    assert!(status.success());
    let mut tail = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["tail", "--broker", &format!("mqtt://127.0.0.1:{port}"), "--zone", "hall1-b", "--json"])
            .args(["--count", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out =
        stdout_text(&mut tail).recv_timeout(Duration::from_secs(15)).expect("tail --json did not exit after 1 message");
    assert!(tail.0.wait().unwrap().success());
    assert_eq!(out, format!("{PATTERN}\n"));
}

#[test]
fn tail_resubscribes_after_the_broker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mosquitto, port) = start_mosquitto(dir.path());
    let (mut tail, mut err) = start_tail(&["--broker", &format!("mqtt://127.0.0.1:{port}"), "--count", "1"]);
    err.wait_for_next("subscribed to hallmonitor/v1/+/#", Duration::from_secs(20));
    drop(mosquitto);
    err.wait_for_next("unreachable", Duration::from_secs(20));
    let _mosquitto = start_mosquitto_on(dir.path(), port, "");
    err.wait_for_next("subscribed to hallmonitor/v1/+/#", Duration::from_secs(20));
    publish(port, "hallmonitor/v1/fra1/status", r#"{"state":"online"}"#);
    let out = stdout_text(&mut tail).recv_timeout(Duration::from_secs(15)).expect("tail did not exit");
    assert_eq!(out, "------------------- fra1 status online\n");
}

#[test]
fn tail_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_server_cert(d, "ca");
    // mosquitto started as root drops to its own user, which must be able to read these
    // throwaway files.
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [(d.to_owned(), 0o755), (d.join("server.key"), 0o644), (d.join("server.pem"), 0o644)] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(d.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port();
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        d.join("ca.pem").display(),
        d.join("server.pem").display(),
        d.join("server.key").display()
    );
    let _mosquitto = start_mosquitto_on(d, port, &extra);
    let ca = d.join("ca.pem");
    let (mut tail, mut err) = start_tail(&[
        "--broker",
        &format!("mqtts://127.0.0.1:{port}"),
        "--count",
        "1",
        "--ca-file",
        ca.to_str().unwrap(),
    ]);
    err.wait_for_next("subscribed to", Duration::from_secs(20));
    let st = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "--insecure", "--cafile"])
        .arg(d.join("ca.pem"))
        .args(["-t", "hallmonitor/v1/fra1/status", "-m", r#"{"state":"online"}"#])
        .status()
        .expect("mosquitto_pub (Debian package mosquitto-clients)");
    assert!(st.success());
    let out = stdout_text(&mut tail).recv_timeout(Duration::from_secs(15)).expect("tail did not exit");
    assert_eq!(out, "------------------- fra1 status online\n");
}
