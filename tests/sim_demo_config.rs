//! The shipped demo pair, config/sim-demo.toml (simulator) and config/demo.toml (agent), must
//! describe the same devices on the same loopback ports, and the scenario must tell the story
//! of docs/scenario.md#the-demo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use hallmonitor::config::{self, Transport};
use hallmonitor::sim::config::{self as simcfg, Endpoint};
use hallmonitor::sim::scenario::Scenario;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn sim_and_agent_configs_describe_the_same_devices() {
    let agent = config::load(&repo("config/demo.toml")).unwrap().config;
    let sim = simcfg::load(&repo("config/sim-demo.toml")).unwrap().settings;
    let agent_devs: BTreeMap<&str, _> = agent.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    assert_eq!(agent_devs.len(), sim.devices.len(), "same number of devices");
    for s in &sim.devices {
        let a = agent_devs.get(s.id.as_str()).unwrap_or_else(|| panic!("{} is simulated but not polled", s.id));
        assert_eq!(a.profile.name(), s.profile.name(), "{}: profile", s.id);
        assert_eq!(a.zone, s.zone, "{}: zone", s.id);
        assert_eq!(a.rack, s.rack, "{}: rack", s.id);
        match (&a.transport, &s.endpoint) {
            (Transport::ModbusTcp { address, unit, .. }, Endpoint::Modbus { port, unit: su }) => {
                assert_eq!(address, &format!("127.0.0.1:{port}"), "{}: address", s.id);
                assert_eq!(unit, su, "{}: unit", s.id);
            }
            (Transport::Snmp(snmp), Endpoint::Snmp { port, community }) => {
                assert_eq!(snmp.address, format!("127.0.0.1:{port}"), "{}: address", s.id);
                assert_eq!(snmp.community.expose(), community, "{}: community", s.id);
            }
            (t, e) => panic!("{}: agent polls {t:?} but the simulator serves {e:?}", s.id),
        }
    }
    // The zones the simulator uses are the agent's, with the racks it lists.
    for s in &sim.devices {
        let zone = agent.zones.iter().find(|z| z.id == s.zone).expect("zone configured");
        if let Some(r) = &s.rack {
            assert!(zone.racks.contains(r), "{}: rack {r} not in zone {}", s.id, zone.id);
        }
    }
    assert_eq!(agent.engine.recurrence, 3);
}

#[test]
fn check_config_accepts_the_demo_agent_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .arg("check-config")
        .arg(repo("config/demo.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("devices   39 (15 modbus tcp, 24 snmp)"));
}

#[test]
fn scenario_recurs_in_hall1_b_then_peaks_critical_on_day_21() {
    let sim = simcfg::load(&repo("config/sim-demo.toml")).unwrap().settings;
    let sc = Scenario::new(Arc::new(sim));
    let inlet = |dev: &str, day, h, m| sc.value_at(dev, "temperature", 0, sc.time_at(day, h, m)).unwrap();
    // Recurrences on days 1, 4, 7 ... 19: above the 27 °C warning, below the 32 °C critical.
    for day in [1, 4, 7, 10, 13, 16, 19] {
        let v = inlet("th-b07", day, 15, 0);
        assert!((27.5..32.0).contains(&v), "day {day} 15:00 th-b07 = {v}");
        assert!(inlet("th-b07", day, 12, 0) < 26.0, "day {day} morning is normal");
        assert!(inlet("th-b07", day, 18, 0) < 26.0, "day {day} evening is normal");
    }
    for day in [2, 3, 5, 20, 22] {
        assert!(inlet("th-b07", day, 15, 0) < 26.0, "no excursion on day {day}");
    }
    // The third recurrence (day 7) comes two weeks before the major event (day 21).
    let major = inlet("th-b07", 21, 16, 0);
    assert!(major > 33.0, "day 21 16:00 th-b07 = {major}: critical (> 32 °C)");
    assert!(inlet("th-b01", 21, 16, 0) > 32.0, "the whole zone is critical");
    assert!(inlet("th-b07", 21, 13, 45) > 27.0, "the major event starts earlier");
    assert!(inlet("th-b07", 21, 18, 0) > 27.0, "and lasts longer");
    // Other zones stay cool throughout.
    for day in [1, 7, 21] {
        assert!(inlet("th-a01", day, 15, 0) < 26.0 && inlet("th-c03", day, 15, 0) < 26.0);
    }
    // th-c02 is silent for 90 minutes on day 15.
    assert_eq!(sc.fault_at("th-c02", sc.time_at(15, 9, 30)), hallmonitor::sim::SimFault::Silent);
    assert_eq!(sc.fault_at("th-c02", sc.time_at(15, 10, 45)), hallmonitor::sim::SimFault::None);
}

#[test]
fn sim_command_checks_runs_and_reports_errors_with_positions() {
    let bin = env!("CARGO_BIN_EXE_hallmonitor");
    let out =
        Command::new(bin).args(["sim", "--check", "--config"]).arg(repo("config/sim-demo.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.starts_with("sim: 39 devices (15 modbus, 24 snmp)"), "{plan}");
    assert!(plan.contains("major event: zone hall1-b"), "{plan}");

    // Fitted into two minutes: the 22 days end an hour after the major event.
    let out = Command::new(bin)
        .args(["sim", "--check", "--fit", "120", "--config"])
        .arg(repo("config/sim-demo.toml"))
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains(
            "  fitted  2026-11-01T00:00:00Z to 2026-11-22T20:00:00Z (day 21) in 120 s: x1675 through 9 excursion"
        ),
        "{plan}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sim]\nspeed = -1\n[[sim.devices]]\nprofile = \"apc-rpdu2\"\nids = [\"p\"]\nzone = \"z\"\n")
        .unwrap();
    let out = Command::new(bin).args(["sim", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:9: sim.speed must be a positive number", bad.display())), "{err}");
    assert!(err.contains(&format!("{}:4:11: a device group needs port or base_port", bad.display())), "{err}");

    // A real run on free ports: the value driver runs for a second and stops cleanly.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ok = dir.path().join("one.toml");
    std::fs::write(
        &ok,
        format!("[sim]\nspeed = 3600\n[[sim.devices]]\nprofile = \"modbus-th-probe\"\nids = [\"t\"]\nzone = \"z\"\nport = {port}\n"),
    )
    .unwrap();
    let out = Command::new(bin).args(["sim", "--seconds", "1", "--config"]).arg(&ok).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sim: stopped at simulated 2026-11-01T01:"), "{stdout}");
}
