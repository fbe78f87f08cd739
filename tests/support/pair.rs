//! A gateway of a pair as a test runs it: `hallmonitor run` with a config the test writes
//! (its `[ha]` section from [`ha_section`]), in its own directory with its own runtime dir
//! (status snapshot), the log read line by line; the witness; and the device both gateways
//! reach, which counts its connections (two open at once would be two Modbus masters).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::files::{secret, write_config};
use super::process::{KillOnDrop, Lines, status};

/// The pair's shared key (both gateways and the witness).
pub const KEY: &str = "0123456789abcdef0123456789abcdef-pair-test-key";

/// The `[ha]` section of gateway `name`, its peer link on `listen`, the other's on `peer`.
pub fn ha_section(name: &str, listen: u16, peer: u16, witness: u16, lease: &str) -> String {
    format!(
        "\n[ha]\nnode = \"{name}\"\nlisten = \"127.0.0.1:{listen}\"\npeer = \"127.0.0.1:{peer}\"\n\
         witness = \"127.0.0.1:{witness}\"\nkey_file = \"ha.key\"\nlease = \"{lease}\"\nguard = \"500ms\"\n"
    )
}

/// One gateway: its config, runtime directory, process and log.
pub struct Gateway {
    pub name: &'static str,
    pub config: PathBuf,
    pub runtime: PathBuf,
    pub process: Option<KillOnDrop>,
    /// The log of the current run.
    pub log: Option<Lines>,
}

impl Gateway {
    /// Writes `dir/name/`: the key file, the config `config` returns for the store path it is
    /// given, a runtime directory. Does not start it.
    pub fn new(dir: &Path, name: &'static str, config: impl FnOnce(&Path) -> String) -> Gateway {
        let home = dir.join(name);
        std::fs::create_dir_all(home.join("run")).unwrap();
        secret(&home, "ha.key", KEY);
        let text = config(&home.join("store"));
        let config = write_config(&home, &text);
        Gateway { name, config, runtime: home.join("run"), process: None, log: None }
    }

    pub fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env_remove("RUNTIME_DIRECTORY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hallmonitor run");
        let mut child = KillOnDrop(child);
        self.log = child.0.stdout.take().map(Lines::of);
        self.process = Some(child);
    }

    /// SIGKILL (KillOnDrop kills and reaps).
    pub fn kill(&mut self) {
        self.process.take();
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.process.as_ref().expect("running").0.id();
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill {pid}");
    }

    /// `hallmonitor ha handover --config` for this gateway: (exit code, stdout, stderr).
    pub fn handover(&self) -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
            .args(["ha", "handover", "--timeout", "30s", "--config"])
            .arg(&self.config)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env_remove("RUNTIME_DIRECTORY")
            .output()
            .expect("run hallmonitor ha handover");
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (out.status.code(), text(out.stdout), text(out.stderr))
    }

    /// Modbus polls this gateway made since it started, from its snapshot.
    pub fn polls(&self) -> u64 {
        self.status().and_then(|s| s["polls"]["modbus"]["polls_ok"].as_u64()).unwrap_or(0)
    }

    pub fn status(&self) -> Option<Value> {
        status(&self.config, &self.runtime)
    }

    /// The role in the daemon's snapshot, if it has one that is fresh (written in the last 4 s).
    pub fn role(&self) -> Option<String> {
        let s = self.status()?;
        let written = s["written_at"].as_str().and_then(|t| hallmonitor::model::Timestamp::parse_rfc3339(t).ok());
        let fresh = written.is_none_or(|w| hallmonitor::model::Timestamp::now().since(w) < Duration::from_secs(4));
        fresh.then(|| s["ha"]["role"].as_str().unwrap_or("").to_owned())
    }
}

/// `hallmonitor witness` on 127.0.0.1:`port`, its state in `dir`.
pub fn start_witness(dir: &Path, port: u16, lease: &str) -> KillOnDrop {
    let key = secret(dir, "witness.key", KEY);
    let child = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["witness", "--listen", &format!("127.0.0.1:{port}"), "--lease", lease, "--key-file"])
        .arg(key)
        .arg("--state")
        .arg(dir.join("witness.json"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hallmonitor witness");
    KillOnDrop(child)
}

/// A Modbus TCP device (any unit) answering reads from its registers (all 0 until set),
/// counting connections and requests.
#[derive(Clone, Default)]
pub struct Device {
    registers: Arc<[AtomicU16; 8]>,
    pub open: Arc<AtomicUsize>,
    pub most_open: Arc<AtomicUsize>,
    pub accepted: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Device {
    /// Listens on a free loopback port; returns the device and the port.
    pub async fn start() -> (Device, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let device = Device::default();
        let d = device.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let d = d.clone();
                d.accepted.fetch_add(1, Ordering::SeqCst);
                let now = d.open.fetch_add(1, Ordering::SeqCst) + 1;
                d.most_open.fetch_max(now, Ordering::SeqCst);
                tokio::spawn(async move {
                    // MBAP header (7 bytes), function, start address, register count.
                    let mut req = [0u8; 12];
                    while s.read_exact(&mut req).await.is_ok() {
                        d.requests.fetch_add(1, Ordering::SeqCst);
                        let start = u16::from_be_bytes([req[8], req[9]]);
                        let count = u16::from_be_bytes([req[10], req[11]]).min(125);
                        let len = 3 + 2 * count;
                        let mut reply = vec![req[0], req[1], 0, 0, (len >> 8) as u8, len as u8, req[6], req[7]];
                        reply.push((2 * count) as u8);
                        for address in start..start.saturating_add(count) {
                            reply.extend(d.register(address).to_be_bytes());
                        }
                        if s.write_all(&reply).await.is_err() {
                            break;
                        }
                    }
                    d.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (device, port)
    }

    /// Sets register `address` (0..8; the others read 0).
    pub fn set(&self, address: u16, value: u16) {
        self.registers[usize::from(address)].store(value, Ordering::SeqCst);
    }

    fn register(&self, address: u16) -> u16 {
        self.registers.get(usize::from(address)).map_or(0, |r| r.load(Ordering::SeqCst))
    }
}

/// Waits until `pred` holds, checking at each sample that the device never had two
/// connections at once (two Modbus masters).
pub async fn wait_until(what: &str, device: &Device, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        assert!(device.most_open.load(Ordering::SeqCst) <= 1, "two gateways polled the device at once ({what})");
        if pred() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
