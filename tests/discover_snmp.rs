//! `hallmonitor discover snmp` against real agents on loopback: one snmpsim per address
//! (127.0.0.x, one port), each serving one recording of tests/data/snmpsim under the one
//! community the scan uses; a host with only the system group; a silent address. And the
//! scan's pacing, counted by silent UDP sockets that never answer.
//!
//! Recordings: `linux-host-system-only.snmprec` is what net-snmp on Linux answers for the
//! system group: sysObjectID linux = { netSnmpAgentOIDs 10 } (NET-SNMP-TC),
//! netSnmpAgentOIDs = { netSnmpEnumerations 2 } (NET-SNMP-MIB) = 1.3.6.1.4.1.8072.3.2.10.
//! The Vertiv Geist recordings report i03 = 1.3.6.1.4.1.21239.42.1.53, "Value given for
//! sysObjectID on IMD3 units" (VERTIV-V5-MIB, LibreNMS mibs/vertiv/VERTIV-V5-MIB).
//!
//! Peers: snmpsim from PyPI (`pip install snmpsim pysmi`, console script
//! `snmpsim-command-responder`); net-snmp's snmpd (Debian package `snmpd`) for SNMPv3.
#![cfg(feature = "interop")]

mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::files::secret;
use support::net::free_udp_port;

const BIN: &str = env!("CARGO_BIN_EXE_hallmonitor");
/// The community every agent here answers to (snmpsim: the recording's file name).
const COMMUNITY: &str = "hall-b";
/// The tests run one at a time: the rate test times datagrams, which agents starting up
/// (snmpsim is Python) would delay.
static ALONE: Mutex<()> = Mutex::new(());

/// Kills the agent when the test ends, however it ends.
struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(cmd: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("interop peer `{cmd}` not found: pip install snmpsim pysmi"))
}

/// snmpsim on `ip:port` serving `recording` to the community `COMMUNITY`.
fn start_agent(dir: &Path, ip: &str, port: u16, recording: &str) -> Agent {
    let home = dir.join(ip);
    let data = home.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/snmpsim").join(recording);
    std::fs::copy(src, data.join(format!("{COMMUNITY}.snmprec"))).unwrap();
    let child = Command::new(which("snmpsim-command-responder"))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .arg(format!("--agent-udpv4-endpoint={ip}:{port}"))
        .arg(format!("--logging-method=file:{}", home.join("snmpsim.log").display()))
        .env("SNMPSIM_ALLOW_ROOT", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start snmpsim-command-responder");
    Agent(child)
}

/// Waits (bounded) until the agent answers a GET of sysName, asked with `probe snmp`.
fn wait_until_up(ip: &str, port: u16, community: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(BIN)
            .args(["probe", "snmp", &format!("{ip}:{port}"), "--oid", "1.3.6.1.2.1.1.5.0"])
            .args(["--timeout", "300ms", "--retries", "0", "--community-file"])
            .arg(community)
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "snmpsim on {ip}:{port} did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn discover(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(["discover", "snmp"]).args(args).output().unwrap();
    assert!(out.status.success(), "discover failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_scan_drafts_each_agent_with_its_profile_and_reports_the_rest() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let community = secret(dir.path(), "community", COMMUNITY);
    let agents = [
        ("127.0.0.11", "apc-rpdu2.snmprec"),
        ("127.0.0.12", "raritan-pdu2.snmprec"),
        ("127.0.0.13", "ups-mib.snmprec"),
        ("127.0.0.14", "vertiv-geist.snmprec"),
        ("127.0.0.15", "linux-host-system-only.snmprec"),
    ];
    // 127.0.0.16 stays silent.
    let _running: Vec<Agent> = agents.iter().map(|(ip, rec)| start_agent(dir.path(), ip, port, rec)).collect();
    for (ip, _) in &agents {
        wait_until_up(ip, port, &community);
    }
    let out = discover(&[
        "127.0.0.11-16",
        "--port",
        &port.to_string(),
        "--community-file",
        community.to_str().unwrap(),
        "--timeout",
        "500ms",
    ]);
    let draft = String::from_utf8(out.stdout).unwrap();
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(!draft.contains(COMMUNITY), "the community leaked into the draft:\n{draft}");

    // check-config accepts the draft as it is, and points at the unassigned zone.
    let path = dir.path().join("draft.toml");
    std::fs::write(&path, &draft).unwrap();
    let check = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check_out}{}\n{draft}", String::from_utf8_lossy(&check.stderr));
    assert!(check_out.contains("is in the zone \"unassigned\""), "{check_out}");

    let loaded = hallmonitor::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{draft}"));
    let found: HashMap<&str, (&str, String)> =
        loaded.config.devices.iter().map(|d| (d.id.as_str(), (d.profile.name(), d.transport.describe()))).collect();
    let want = [
        ("pdu-b07-a", "apc-rpdu2", "127.0.0.11"),
        ("pdu-b08-b", "raritan-pdu2", "127.0.0.12"),
        ("ups-hall1-a", "ups-mib", "127.0.0.13"),
        ("geist-b10-a", "vertiv-geist", "127.0.0.14"),
    ];
    assert_eq!(found.len(), want.len(), "{draft}");
    for (id, profile, ip) in want {
        let (got_profile, at) = found.get(id).unwrap_or_else(|| panic!("no device {id} in\n{draft}"));
        assert_eq!((*got_profile, at.as_str()), (profile, format!("{ip}:{port}").as_str()));
        // The confirming poll got points from each.
        let row = report.lines().find(|l| l.starts_with(&format!("{ip}:{port}"))).unwrap_or_else(|| panic!("{report}"));
        assert!(row.contains(profile) && row.contains(" points)") && !row.contains("(0 points)"), "{row}");
    }
    // The host with only the system group is reported, with what it said; the silent one is counted.
    let host =
        report.lines().find(|l| l.starts_with(&format!("127.0.0.15:{port}"))).unwrap_or_else(|| panic!("{report}"));
    assert!(host.contains("gw-b01") && host.contains("no profile: sysObjectID 1.3.6.1.4.1.8072.3.2.10"), "{host}");
    assert!(draft.contains("no profile: sysObjectID 1.3.6.1.4.1.8072.3.2.10"), "{draft}");
    assert!(report.contains("4 device(s) with a profile, 1 without, 1 silent address(es) of 6"), "{report}");
    assert!(!report.contains(&format!("127.0.0.16:{port}")), "{report}");
}

#[test]
fn a_user_profile_from_profiles_dir_is_recognised_and_named_in_the_draft() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let community = secret(dir.path(), "community", COMMUNITY);
    let _agent = start_agent(dir.path(), "127.0.0.17", port, "linux-host-system-only.snmprec");
    wait_until_up("127.0.0.17", port, &community);
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    // Net-SNMP on Linux (NET-SNMP-TC linux = 1.3.6.1.4.1.8072.3.2.10), read for its uptime.
    std::fs::write(
        profiles.join("linux-gateway.toml"),
        "protocol = \"snmp\"\nsource = \"SNMPv2-MIB\"\nsys_object_ids = [\"1.3.6.1.4.1.8072.3.2.10\"]\n\
         [[points]]\nname = \"uptime\"\nmetric = \"uptime_s\"\noid = \"1.3.6.1.2.1.1.3.0\"\nscale = 0.01\n",
    )
    .unwrap();
    let out = discover(&[
        "127.0.0.17",
        "--port",
        &port.to_string(),
        "--community-file",
        community.to_str().unwrap(),
        "--profiles-dir",
        profiles.to_str().unwrap(),
        "--zone",
        "hall-1",
    ]);
    let draft = String::from_utf8(out.stdout).unwrap();
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(report.contains("linux-gateway (1 points)"), "{report}");
    assert!(draft.contains("# sysLocation: Hall 1, row B, rack B01\n"), "{draft}");
    let path = dir.path().join("draft.toml");
    std::fs::write(&path, &draft).unwrap();
    let loaded = hallmonitor::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{draft}"));
    let d = &loaded.config.devices[0];
    assert_eq!((d.id.as_str(), d.profile.name(), d.zone.as_str()), ("gw-b01", "linux-gateway", "hall-1"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

/// net-snmp's snmpd on `ip:port` with an SNMPv3 authPriv user (SHA + AES) and the community.
fn start_snmpd(dir: &Path, ip: &str, port: u16) -> Agent {
    let snmpd = ["/usr/sbin/snmpd", "/usr/local/sbin/snmpd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("interop peer snmpd not found: apt-get install snmpd");
    let home = dir.join(ip);
    std::fs::create_dir_all(home.join("persist")).unwrap();
    let conf = home.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "agentAddress udp:{ip}:{port}\nrocommunity {COMMUNITY} 127.0.0.1\n\
             createUser hmuser SHA \"auth-pass-123\" AES \"priv-pass-456\"\nrouser hmuser priv\n\
             sysName gw-v3\nsysLocation Hall 2, row C\n"
        ),
    )
    .unwrap();
    let child = Command::new(snmpd)
        .args(["-f", "-Lf"])
        .arg(home.join("snmpd.log"))
        .arg("-C")
        .arg("-c")
        .arg(&conf)
        .env("SNMP_PERSISTENT_DIR", home.join("persist"))
        .env("MIBS", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start snmpd");
    Agent(child)
}

#[test]
fn a_v3_scan_drafts_the_user_and_key_files_and_check_config_accepts_them() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let community = secret(dir.path(), "community", COMMUNITY);
    let auth = secret(dir.path(), "auth-key", "auth-pass-123");
    let privacy = secret(dir.path(), "priv-key", "priv-pass-456");
    let _agent = start_snmpd(dir.path(), "127.0.0.18", port);
    wait_until_up("127.0.0.18", port, &community);
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("linux-gateway.toml"),
        "protocol = \"snmp\"\nsource = \"SNMPv2-MIB\"\nsys_object_ids = [\"1.3.6.1.4.1.8072.3.2.10\"]\n\
         [[points]]\nname = \"uptime\"\nmetric = \"uptime_s\"\noid = \"1.3.6.1.2.1.1.3.0\"\nscale = 0.01\n",
    )
    .unwrap();
    let out = discover(&[
        "127.0.0.18",
        "--port",
        &port.to_string(),
        "--v3-user",
        "hmuser",
        "--auth-protocol",
        "sha",
        "--auth-key-file",
        auth.to_str().unwrap(),
        "--priv-protocol",
        "aes",
        "--priv-key-file",
        privacy.to_str().unwrap(),
        "--profiles-dir",
        profiles.to_str().unwrap(),
    ]);
    let draft = String::from_utf8(out.stdout).unwrap();
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(report.contains("linux-gateway (1 points)"), "{report}");
    assert!(!draft.contains("auth-pass") && !draft.contains("priv-pass"), "{draft}");
    for want in ["user = \"hmuser\"", "auth = \"sha\"", "priv = \"aes\"", "# sysLocation: Hall 2, row C"] {
        assert!(draft.contains(want), "no {want:?} in\n{draft}");
    }
    let path = dir.path().join("draft.toml");
    std::fs::write(&path, &draft).unwrap();
    let loaded = hallmonitor::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{draft}"));
    assert_eq!(loaded.config.devices[0].id.as_str(), "gw-v3");
}

/// Milliseconds between successive receipts, for a failure message.
fn gaps(seen: &[(u8, Instant)]) -> Vec<u128> {
    seen.windows(2).map(|w| (w[1].1 - w[0].1).as_millis()).collect()
}

#[test]
fn a_scan_keeps_its_rate_and_one_request_in_flight_per_address() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let community = secret(dir.path(), "community", COMMUNITY);
    let port = free_udp_port();
    // 41 addresses that swallow every request and note when it came.
    let seen: Arc<Mutex<Vec<(u8, Instant)>>> = Arc::default();
    let mut listeners = Vec::new();
    for last in 20u8..=60 {
        let socket = UdpSocket::bind(("127.0.0.".to_owned() + &last.to_string(), port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let seen = seen.clone();
        listeners.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                if socket.recv_from(&mut buf).is_ok() {
                    seen.lock().unwrap().push((last, Instant::now()));
                }
            }
        }));
    }
    let timeout = Duration::from_millis(500);
    let out = discover(&[
        "127.0.0.20-60",
        "--port",
        &port.to_string(),
        "--community-file",
        community.to_str().unwrap(),
        "--rate",
        "20/s",
        "--timeout",
        "500ms",
    ]);
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(report.contains("0 device(s) with a profile, 0 without, 41 silent address(es) of 41"), "{report}");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(_, at)| *at);
    // Each address: the request and one retry, never more.
    let mut per_address: HashMap<u8, Vec<Instant>> = HashMap::new();
    for (last, at) in &seen {
        per_address.entry(*last).or_default().push(*at);
    }
    assert_eq!(per_address.len(), 41, "{per_address:?}");
    for (last, times) in &per_address {
        assert_eq!(times.len(), 2, "127.0.0.{last} got {} requests", times.len());
        // The retry went out only after the first request had timed out: one in flight
        // (less up to 100 ms of lag in noting the first datagram).
        let gap = times[1] - times[0];
        assert!(gap >= timeout - Duration::from_millis(100), "127.0.0.{last}: retry after {gap:?}");
    }
    // No one-second window saw more than the rate (+1 for the window's edge). The times here
    // are when a listener thread got each datagram, up to ~100 ms after it was sent on a busy
    // machine; a window of 900 ms of receipts holds only datagrams sent within one second.
    let window = Duration::from_millis(900);
    for (i, (_, start)) in seen.iter().enumerate() {
        let in_window = seen[i..].iter().take_while(|(_, at)| *at < *start + window).count();
        assert!(in_window <= 21, "{in_window} requests within one second: {:?}", gaps(&seen));
    }
    // And on average: 82 requests at 20/s take at least 81 spacings of 50 ms.
    let span = seen[seen.len() - 1].1 - seen[0].1;
    assert!(span >= Duration::from_millis(81 * 50 - 200), "82 requests within {span:?}");
    drop(listeners);
}

#[test]
fn a_v3_scan_of_silent_addresses_sends_only_the_engine_discovery_and_its_one_retry() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let auth = secret(dir.path(), "auth-key", "auth-pass-123");
    let privacy = secret(dir.path(), "priv-key", "priv-pass-456");
    let port = free_udp_port();
    // Silent SNMPv3 agents: before the fix each timeout also sent an unpaced engine rediscovery.
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let mut listeners = Vec::new();
    for last in 61u8..=64 {
        let socket = UdpSocket::bind(("127.0.0.".to_owned() + &last.to_string(), port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let seen = seen.clone();
        listeners.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if socket.recv_from(&mut buf).is_ok() {
                    seen.lock().unwrap().push(last);
                }
            }
        }));
    }
    let out = discover(&[
        "127.0.0.61-64",
        "--port",
        &port.to_string(),
        "--v3-user",
        "hmuser",
        "--auth-protocol",
        "sha",
        "--auth-key-file",
        auth.to_str().unwrap(),
        "--priv-protocol",
        "aes",
        "--priv-key-file",
        privacy.to_str().unwrap(),
        "--timeout",
        "300ms",
    ]);
    let report = String::from_utf8(out.stderr).unwrap();
    assert!(report.contains("4 silent address(es) of 4"), "{report}");
    let seen = seen.lock().unwrap().clone();
    for last in 61u8..=64 {
        let sent = seen.iter().filter(|l| **l == last).count();
        assert_eq!(sent, 2, "127.0.0.{last} got {sent} requests (the discovery and one retry expected)\n{report}");
    }
    drop(listeners);
}
