//! `hallmonitor run` as a technician sees it: its log lines and its status, from the real
//! binary with stdout to a pipe. The devices are loopback ports nobody listens on and the
//! broker is unreachable, so nothing else is needed.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::files::{secret, write_config};
use support::net::{free_port as closed_port, free_udp_port};
use support::process::{KillOnDrop, Lines, status};

/// A Modbus device at a closed TCP port.
fn modbus_device() -> String {
    format!("profile = \"modbus-th-probe\"\n[devices.modbus]\naddress = \"127.0.0.1:{}\"\nunit = 1\n", closed_port())
}

/// An SNMP device at a closed UDP port (its community in `dir/community`).
fn snmp_device(dir: &Path) -> String {
    let port = free_udp_port();
    let community = secret(dir, "community", "public");
    format!(
        "profile = \"entity-sensor\"\n[devices.snmp]\naddress = \"127.0.0.1:{port}\"\ncommunity_file = \"{}\"\n",
        community.display()
    )
}

fn config(store: &Path, interval: &str, down_after: u32) -> String {
    config_with(store, interval, down_after, &modbus_device())
}

fn config_with(store: &Path, interval: &str, down_after: u32, device: &str) -> String {
    format!(
        r#"
[site]
id = "fra1"

[mqtt]
url = "mqtt://127.0.0.1:{broker}"
client_id = "fra1-gw-test"

[store]
path = "{store}"

[polling]
interval = "{interval}"
timeout = "200ms"
down_after = {down_after}

[[zones]]
id = "hall1-b"
racks = ["B07"]

[[devices]]
id = "th-b07"
zone = "hall1-b"
rack = "B07"
{device}"#,
        broker = closed_port(),
        store = store.display()
    )
}

/// The daemon with its stdout (the log) to a pipe, read line by line on a thread.
struct Daemon {
    child: Child,
    log: Lines,
}

impl Daemon {
    fn start(config: &Path, runtime_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("XDG_RUNTIME_DIR", runtime_dir)
            .env_remove("NO_COLOR")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hallmonitor run");
        let log = Lines::of(child.stdout.take().unwrap());
        Self { child, log }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn log_lines_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &config(&dir.path().join("store"), "200ms", 3));
    let mut daemon = Daemon::start(&cfg, dir.path());
    daemon.log.wait_for("hallmonitor started", Duration::from_secs(20));
    // A warning too (levels are coloured): the device at a closed port fails its polls.
    daemon.log.wait_for("WARN", Duration::from_secs(20));
    let lines = daemon.log.drain();
    let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(coloured.is_empty(), "ANSI escape codes in piped log lines: {coloured:?}");
}

/// Polls `status` until `pred` holds for device th-b07 (or the snapshot); returns the snapshot.
fn wait_status(
    config: &Path,
    runtime_dir: &Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(config, runtime_dir).filter(|s| pred(s)) {
            return s;
        }
        assert!(Instant::now() < deadline, "status never showed {what}: {:?}", status(config, runtime_dir));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_modbus_device_is_down_after_down_after_failed_polls_in_log_status_and_engine_alike() {
    down_after_failed_polls(|_| modbus_device());
}

#[test]
fn an_snmp_device_is_down_after_down_after_failed_polls_in_log_status_and_engine_alike() {
    down_after_failed_polls(snmp_device);
}

fn down_after_failed_polls(device: impl Fn(&Path) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let store = dir.path().join("store");
    // Polls 4 s apart: the 2 s status tick shows the state between the first and second.
    let cfg = write_config(dir.path(), &config_with(&store, "4s", 2, &device(dir.path())));
    let mut daemon = Daemon::start(&cfg, &runtime);

    // One failed poll: status and engine say up, the log does not say down (a warning
    // that the poll failed is fine).
    let b07 = |s: &serde_json::Value| s["devices"][0].clone();
    let snap = wait_status(&cfg, &runtime, "one failed poll", |s| b07(s)["consecutive_failures"] == 1);
    assert_eq!(b07(&snap)["up"], true, "{snap:#}");
    assert_eq!(snap["incidents"], serde_json::json!([]), "no comms incident after one failed poll");
    // What the poll logged has reached the pipe by now (the snapshot came later).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !daemon.log.drain().iter().any(|l| l.contains("device down")),
        "device down logged after one failed poll: {:#?}",
        daemon.log.seen
    );
    let first = daemon.log.wait_for("poll failed", Duration::from_secs(1));
    assert!(!first.contains("down"), "{first}");

    // down_after = 2 failed polls: the log, the status and the engine's comms incident.
    let down = daemon.log.wait_for("device down", Duration::from_secs(20));
    assert!(down.contains("th-b07") && down.contains("failures=2"), "{down}");
    let snap = wait_status(&cfg, &runtime, "the device down", |s| b07(s)["up"] == false);
    assert!(b07(&snap)["consecutive_failures"].as_u64().unwrap() >= 2, "{snap:#}");
    wait_status(&cfg, &runtime, "the comms incident", |s| {
        s["incidents"].as_array().is_some_and(|i| i.iter().any(|i| i["category"] == "comms"))
    });
    // The snapshot lives in the runtime directory (a tmpfs), not in the store on flash.
    assert!(!store.join("status.json").exists());
}

/// The log file's disk is full (stdout and stderr both fail): the daemon goes on polling,
/// takes a reload and stops cleanly. It used to exit at start (101: `eprintln!` of a config
/// warning panicked) and, in the soak, to abort later (134) when stderr failed as well.
#[test]
fn a_log_that_cannot_be_written_stops_neither_the_daemon_nor_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let device = snmp_device(dir.path());
    // A world-readable community file: a config warning on stderr at start and at reload.
    let community = dir.path().join("community");
    std::fs::set_permissions(&community, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = write_config(dir.path(), &config_with(&dir.path().join("store"), "200ms", 3, &device));
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let mut daemon = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env("XDG_RUNTIME_DIR", dir.path())
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdout(full())
            .stderr(full())
            .spawn()
            .expect("start hallmonitor run"),
    );
    let child = &mut daemon.0;
    let polls = |s: &serde_json::Value| s["polls"]["snmp"]["polls_failed"].as_u64().unwrap_or(0);
    let before = polls(&wait_status(&cfg, dir.path(), "failed polls", |s| polls(s) >= 2));
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_status(&cfg, dir.path(), "polls after the reload", |s| polls(s) >= before + 5);
    assert!(child.try_wait().unwrap().is_none(), "the daemon stopped: {:?}", child.try_wait());
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code.code(), Some(0), "exit after SIGTERM: {code:?}");
}
