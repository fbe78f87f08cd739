//! `hallmonitor run` as a technician sees it: its log lines and its status, from the real
//! binary with stdout to a pipe. The devices are loopback ports nobody listens on and the
//! broker is unreachable, so nothing else is needed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn config(store: &Path, interval: &str, down_after: u32) -> String {
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
profile = "modbus-th-probe"
zone = "hall1-b"
rack = "B07"
[devices.modbus]
address = "127.0.0.1:{device}"
unit = 1
"#,
        broker = closed_port(),
        device = closed_port(),
        store = store.display()
    )
}

/// The daemon with its stdout (the log) to a pipe, read line by line on a thread.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
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
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a log line containing `what`; returns it.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {what:?} within {timeout:?}; got:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Every line logged so far.
    fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
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
    let cfg = dir.path().join("hallmonitor.toml");
    std::fs::write(&cfg, config(&dir.path().join("store"), "200ms", 3)).unwrap();
    let mut daemon = Daemon::start(&cfg, dir.path());
    daemon.wait_for("hallmonitor started", Duration::from_secs(20));
    // A warning too (levels are coloured): the device at a closed port fails its polls.
    daemon.wait_for("WARN", Duration::from_secs(20));
    let lines = daemon.drain();
    let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(coloured.is_empty(), "ANSI escape codes in piped log lines: {coloured:?}");
}
