//! `hallmonitor check-config` as an engineer runs it: exit codes and what it prints.

use std::process::Command;

fn hallmonitor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
}

#[test]
fn shipped_example_is_valid_and_summarized() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hallmonitor.toml");
    let out = hallmonitor().args(["check-config", path]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("valid"));
    assert!(stdout.contains("devices   4 (1 modbus rtu, 1 modbus tcp, 2 snmp), 1 disabled"), "{stdout}");
    assert!(stdout.contains("zones     3 (hall1-a, hall1-b, hall1-c)"), "{stdout}");
    assert!(stdout.contains("profiles  apc-rpdu2 x2, generic-crah x1, modbus-th-probe x1"), "{stdout}");
    // Durations print as the config writes them ("30d", not humantime's "30days").
    assert!(stdout.contains("patterns  3 incidents in 30d (major after 8h, unreachable after 1d)"), "{stdout}");
}

#[test]
fn invalid_config_exits_2_with_one_positioned_line_per_error() {
    let dir = std::env::temp_dir().join(format!("hm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[site]\nid = \"fra1\"\n[[zones]]\nid = \"z\"\n[[devices]]\nid = \"d\"\nprofile = \"nope\"\nzone = \"y\"\n[devices.modbus]\naddress = \"127.0.0.1:502\"\n",
    )
    .unwrap();
    let out = hallmonitor().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display().to_string();
    assert!(stderr.contains(&format!("{p}:7:11: device \"d\" uses unknown profile \"nope\"")), "{stderr}");
    assert!(stderr.contains(&format!("{p}:8:8: device \"d\" is in unknown zone \"y\"")), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    let out = hallmonitor().args(["check-config", "/nonexistent/hallmonitor.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hallmonitor.toml: cannot read configuration"));
    let out = hallmonitor().args(["check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = hallmonitor().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_prints() {
    let out = hallmonitor().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hallmonitor "));
}
