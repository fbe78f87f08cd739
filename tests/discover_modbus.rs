//! `hallmonitor discover modbus` against the pymodbus peer (tests/peers/pymodbus_server.py
//! with --silent-missing): unit 1 identifies itself, unit 2 answers registers but not
//! Read Device Identification, every other unit id is silent. The scan goes through a
//! counting TCP proxy, which records when each request reached it, to check the rate bound.
#![cfg(feature = "interop")]

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PYTHON: &str = "/usr/bin/python3";

/// A profile of the peer's register map, recognised by the identity the peer reports.
const PEER_PROFILE: &str = r#"
protocol = "modbus"
description = "the pymodbus test peer"
source = "tests/peers/pymodbus_server.py"
modbus_vendor = "Hallmonitor Test Peers"
modbus_product_codes = ["HM-PEER"]

[[points]]
name = "neg_i16"
metric = "inlet_temp_c"
address = 0
type = "i16"
scale = 0.1

[[points]]
name = "big_u16"
metric = "count"
address = 1
type = "u16"
"#;

struct Peer(Vec<Child>);

impl Drop for Peer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_tcp_peer() -> (Peer, u16) {
    let ok =
        Command::new(PYTHON).args(["-c", "import pymodbus, serial"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "discover_modbus needs pymodbus for {PYTHON}: apt-get install python3-pymodbus python3-serial");
    let port = support::net::free_port();
    let child = Command::new(PYTHON)
        .arg(format!("{}/tests/peers/pymodbus_server.py", env!("CARGO_MANIFEST_DIR")))
        .args(["--tcp", &port.to_string(), "--silent-missing"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus peer with /usr/bin/python3");
    let peer = Peer(vec![child]);
    assert!(support::net::listens_within(port, Duration::from_secs(10)), "the pymodbus peer did not start");
    (peer, port)
}

/// A TCP proxy on loopback in front of `port` that records the arrival time of each Modbus
/// TCP request (MBAP header + PDU) from the client.
async fn counting_proxy(port: u16) -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { continue };
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = [0u8; 7];
                    if client_rx.read_exact(&mut head).await.is_err() {
                        break;
                    }
                    let len = usize::from(u16::from_be_bytes([head[4], head[5]])).saturating_sub(1);
                    let mut pdu = vec![0u8; len];
                    if client_rx.read_exact(&mut pdu).await.is_err() {
                        break;
                    }
                    log.lock().unwrap().push(Instant::now());
                    // One write per frame: pymodbus 3.0 mishandles a frame that arrives in pieces.
                    let frame = [&head[..], &pdu[..]].concat();
                    if server_tx.write_all(&frame).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
            });
        }
    });
    (ours, seen)
}

fn hallmonitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hallmonitor")).args(args).output().expect("run hallmonitor")
}

fn write_profiles(dir: &Path) -> String {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join("peer.toml"), PEER_PROFILE).unwrap();
    profiles.to_string_lossy().into_owned()
}

/// The most requests that arrived within any one second.
fn busiest_second(times: &[Instant]) -> usize {
    times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < *t + Duration::from_secs(1)).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_modbus_over_tcp_drafts_the_two_units_that_answer() {
    let (_peer, port) = start_tcp_peer();
    let (proxy, seen) = counting_proxy(port).await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(dir.path());
    let address = format!("127.0.0.1:{proxy}");
    let out = tokio::task::spawn_blocking(move || {
        hallmonitor(&[
            "discover",
            "modbus",
            &address,
            "--units",
            "1-5",
            "--rate",
            "4/s",
            "--timeout",
            "300ms",
            "--zone",
            "lab",
            "--profiles-dir",
            &profiles,
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "discover failed:\n{stderr}");

    // The table names both units, the identified one by vendor and product.
    let row = |unit: &str| stderr.lines().find(|l| l.starts_with(&format!("{unit:<5} "))).unwrap_or("").to_owned();
    assert!(row("1").contains("Hallmonitor Test Peers HM-PEER-1 (rev 3.0)"), "{stderr}");
    assert!(row("1").contains("peer") && row("1").contains("2/2"), "{stderr}");
    assert!(row("2").contains("no identification") && row("2").contains("peer"), "{stderr}");
    assert!(row("3").is_empty() && row("5").is_empty(), "silent units listed:\n{stderr}");
    assert!(stderr.contains("2 of 5 unit ids answered"), "{stderr}");

    // The draft has one device per answering unit, with the peer's profile.
    let blocks: Vec<&str> = stdout.split("[[devices]]").skip(1).collect();
    assert_eq!(blocks.len(), 2, "{stdout}");
    for (block, unit) in blocks.iter().zip(["unit = 1", "unit = 2"]) {
        assert!(block.contains("profile = \"peer\""), "{block}");
        assert!(block.contains(unit), "{block}");
        assert!(block.contains(&format!("address = \"127.0.0.1:{proxy}\"")), "{block}");
    }

    // check-config accepts the draft as it is.
    let draft = dir.path().join("draft.toml");
    std::fs::write(&draft, &stdout).unwrap();
    let check = hallmonitor(&["check-config", draft.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "check-config refused the draft:\n{stdout}\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The rate bound held on the wire: at most 4 requests started in any one second (one
    // more for a window that opens right on a request).
    let times = seen.lock().unwrap().clone();
    assert!(times.len() >= 5, "only {} requests seen", times.len());
    let busiest = busiest_second(&times);
    assert!(busiest <= 5, "{busiest} requests within one second at --rate 4/s");
}

#[test]
fn discover_modbus_over_rtu_through_a_socat_pty_pair() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("master");
    let theirs = dir.path().join("slave");
    let socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", ours.display()))
        .arg(format!("pty,raw,echo=0,link={}", theirs.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("discover_modbus needs socat (apt-get install socat): {e}"));
    let mut peer = Peer(vec![socat]);
    for _ in 0..50 {
        if ours.exists() && theirs.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ours.exists() && theirs.exists(), "socat did not create the pty pair");
    let server = Command::new(PYTHON)
        .arg(format!("{}/tests/peers/pymodbus_server.py", env!("CARGO_MANIFEST_DIR")))
        .arg("--rtu")
        .arg(&theirs)
        .arg("--silent-missing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pymodbus peer with /usr/bin/python3");
    peer.0.push(server);
    // The peer opens its end within a moment; give it time before the scan starts.
    std::thread::sleep(Duration::from_secs(2));
    let profiles = write_profiles(dir.path());
    let path = ours.to_string_lossy().into_owned();
    let out = hallmonitor(&[
        "discover",
        "modbus",
        "--serial",
        &path,
        "--parity",
        "none",
        "--units",
        "1-3",
        "--rate",
        "10/s",
        "--timeout",
        "500ms",
        "--profiles-dir",
        &profiles,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "discover failed:\n{stderr}");
    assert!(stderr.contains("2 of 3 unit ids answered"), "{stderr}");
    let blocks: Vec<&str> = stdout.split("[[devices]]").skip(1).collect();
    assert_eq!(blocks.len(), 2, "{stdout}");
    assert!(blocks[0].contains("id = \"hm-peer-1-u1\"") && blocks[1].contains("id = \"modbus-u2\""), "{stdout}");
    for block in &blocks {
        assert!(block.contains(&format!("serial = \"{path}\"")) && block.contains("parity = \"none\""), "{block}");
    }
    // Without --zone the devices go to the "unassigned" zone, and the draft is still valid.
    assert!(blocks[0].contains("zone = \"unassigned\""), "{stdout}");
    let draft = dir.path().join("draft.toml");
    std::fs::write(&draft, &stdout).unwrap();
    let check = hallmonitor(&["check-config", draft.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "check-config refused the draft:\n{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    drop(peer);
}
