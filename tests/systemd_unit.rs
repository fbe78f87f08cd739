//! The shipped systemd unit and the binary agree: a bad configuration is exit 2 from the main
//! process, and the unit does not restart on exit 2 (a restart cannot fix a bad config).
//! `scripts/test` runs `systemd-analyze verify` and `security` on the same file.

use std::process::Command;

const UNIT: &str = include_str!("../systemd/hallmonitor.service");

fn settings(key: &str) -> Vec<&'static str> {
    UNIT.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim).collect()
}

#[test]
fn a_bad_config_stops_the_service_instead_of_restarting_it_forever() {
    assert_eq!(settings("Restart"), ["on-failure"]);
    assert_eq!(settings("RestartPreventExitStatus"), ["2"]);
    // RestartPreventExitStatus= looks only at the main process: a config check in
    // ExecStartPre that exits 2 would still be restarted every RestartSec.
    assert!(settings("ExecStartPre").is_empty(), "ExecStartPre defeats RestartPreventExitStatus=2");
    let exec = settings("ExecStart");
    assert_eq!(exec.len(), 1);
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(&args[1..3], ["run", "--config"], "{exec:?}");

    // The main process exits 2 on a bad config, the code the unit refuses to restart on.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hallmonitor.toml");
    std::fs::write(&config, "site = \"fra1\"\nno_such_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor")).args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn no_listening_socket_and_a_private_runtime_directory() {
    assert_eq!(settings("SocketBindDeny"), ["any"]);
    // Only UDP may bind (the SNMP client binds 0.0.0.0:0); TCP cannot listen.
    assert_eq!(settings("SocketBindAllow"), ["udp"]);
    assert_eq!(settings("RuntimeDirectoryMode"), ["0750"]);
}
