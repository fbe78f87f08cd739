//! The SNMP source against the in-tree simulated agent: decoding, labels, batching, v1
//! fallback, tooBig, faults, SNMPv3 (including an agent reboot) and isolation of a slow agent.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hallmonitor::config::{self, AuthProtocol, DeviceSpec, PrivProtocol, Transport};
use hallmonitor::model::{DeviceId, PointId, Quality, Reading};
use hallmonitor::profiles::{Profile, SnmpProfile};
use hallmonitor::sim::snmp::{self as simsnmp, SimSnmpDevice, SimSnmpOptions, SimV3User};
use hallmonitor::sim::{SimFault, SimValues};
use hallmonitor::sources::SourceStats;
use hallmonitor::sources::snmp::{DevicePoller, SnmpSession};
use support::files::{secret, write_config};
use support::profiles::snmp_builtin;
use support::sources::{readings_until_done, source_context};
use tokio_util::sync::CancellationToken;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Loads a config from text, with secrets written next to it.
fn load(dir: &Path, text: &str) -> config::Config {
    config::load(&write_config(dir, text)).unwrap_or_else(|e| panic!("{e}")).config
}

fn device_toml(id: &str, profile: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[devices]]
id = "{id}"
profile = "{profile}"
zone = "hall1-b"
rack = "B07"
[devices.snmp]
address = "{addr}"
{extra}
"#
    )
}

fn config_text(devices: &str, timeout: &str, retries: u32) -> String {
    format!(
        r#"
[site]
id = "test"
[store]
path = "/tmp/unused"
[polling]
interval = "1s"
timeout = "{timeout}"
retries = {retries}
[[zones]]
id = "hall1-b"
racks = ["B07"]
{devices}
"#
    )
}

fn snmp_profile(spec: &DeviceSpec) -> Arc<SnmpProfile> {
    match &spec.profile {
        Profile::Snmp(p) => p.clone(),
        Profile::Modbus(_) => panic!("not an SNMP profile"),
    }
}

/// Polls the devices once through `sources::snmp::spawn`, returning readings and stats.
async fn poll_once(devices: Vec<DeviceSpec>) -> (Vec<Reading>, Arc<SourceStats>) {
    let (ctx, rx) = source_context(10_000, true);
    let stats = ctx.stats.clone();
    let tasks = hallmonitor::sources::snmp::spawn(devices, ctx);
    (readings_until_done(rx, tasks).await, stats)
}

fn find<'a>(readings: &'a [Reading], point: &str, label: Option<&str>) -> &'a Reading {
    readings
        .iter()
        .find(|r| r.point.as_str() == point && r.label.as_deref() == label)
        .unwrap_or_else(|| panic!("no reading {point} {label:?} in {readings:#?}"))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Values an APC rPDU2 with 3 rows serves.
fn apc_values(values: &SimValues, dev: &DeviceId) {
    let set = |p: &str, row: u32, v: f64| values.set(dev, &PointId::new(p), row, v);
    set("device_power", 0, 1230.0);
    set("device_energy", 0, 456.7);
    for (r, (a, v)) in [(12.3, 229.0), (4.5, 231.0), (0.0, 230.0)].into_iter().enumerate() {
        set("phase_current", r as u32 + 1, a);
        set("phase_voltage", r as u32 + 1, v);
    }
    for r in 1..=3 {
        set("outlet_current", r, f64::from(r) * 0.8);
        set("sensor_temp", r, 20.0 + f64::from(r) + 0.5);
        set("sensor_humidity", r, 40.0 + f64::from(r));
    }
}

async fn start_sim(
    community: &str,
    id: &str,
    profile: Arc<SnmpProfile>,
    rows: u32,
    values: Arc<SimValues>,
    options: SimSnmpOptions,
) -> simsnmp::SimSnmpAgent {
    let devices = HashMap::from([(community.to_owned(), SimSnmpDevice { id: DeviceId::new(id), profile, rows })]);
    simsnmp::serve_with(loopback(), devices, values, CancellationToken::new(), options).await.unwrap()
}

#[tokio::test]
async fn apc_pdu_over_v2c_decodes_exact_values_labels_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("pdu-b07-a");
    apc_values(&values, &dev);
    let agent = start_sim("s3cret", "pdu-b07-a", snmp_builtin("apc-rpdu2"), 3, values, SimSnmpOptions::default()).await;
    secret(dir.path(), "community", "s3cret");
    let cfg = load(
        dir.path(),
        &config_text(
            &device_toml("pdu-b07-a", "apc-rpdu2", agent.local_addr, r#"community_file = "community""#),
            "1s",
            1,
        ),
    );
    let (readings, stats) = poll_once(cfg.devices).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert!(readings.iter().all(|r| r.device.as_str() == "pdu-b07-a" && r.rack.as_ref().unwrap().as_str() == "B07"));
    assert!(close(find(&readings, "device_power", None).value, 1230.0));
    assert!(close(find(&readings, "device_energy", None).value, 456.7));
    let phase1 = find(&readings, "phase_current", Some("phase-1"));
    assert!(close(phase1.value, 12.3), "{phase1:?}");
    assert_eq!(&*phase1.unit, "A");
    assert_eq!(phase1.metric.as_str(), "phase_current_a");
    assert!(close(find(&readings, "phase_voltage", Some("phase-2")).value, 231.0));
    assert!(close(find(&readings, "outlet_current", Some("outlet-3")).value, 2.4));
    let t = find(&readings, "sensor_temp", Some("sensor-2"));
    assert!(close(t.value, 22.5), "{t:?}");
    assert_eq!(&*t.unit, "°C");
    assert!(close(find(&readings, "sensor_humidity", Some("sensor-1")).value, 41.0));
    assert_eq!(readings.len(), 2 + 5 * 3, "2 scalars + 5 table points x 3 rows");
    // One GETBULK: both scalars as non-repeaters, and all eight columns of 3 rows.
    let s = stats.snmp.snapshot();
    assert_eq!((s.polls_ok, s.polls_failed, s.requests), (1, 0, 1), "{s:?}");
    agent.stop().await;
}

#[tokio::test]
async fn v1_walks_with_getnext_and_marks_a_missing_object_bad() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DeviceId::new("pdu-v1");
    let all = SimValues::new();
    apc_values(&all, &dev);
    // The energy counter has no value: a v1 agent answers noSuchName for the whole PDU.
    let sim_values = Arc::new(SimValues::new());
    for (p, rows) in [
        ("device_power", 0..=0),
        ("phase_current", 1..=3),
        ("phase_voltage", 1..=3),
        ("outlet_current", 1..=3),
        ("sensor_temp", 1..=3),
        ("sensor_humidity", 1..=3),
    ] {
        for r in rows {
            sim_values.set(&dev, &PointId::new(p), r, all.get(&dev, &PointId::new(p), r).unwrap());
        }
    }
    let agent =
        start_sim("public", "pdu-v1", snmp_builtin("apc-rpdu2"), 3, sim_values, SimSnmpOptions::default()).await;
    secret(dir.path(), "community", "public");
    let cfg = load(
        dir.path(),
        &config_text(
            &device_toml("pdu-v1", "apc-rpdu2", agent.local_addr, "version = \"1\"\ncommunity_file = \"community\""),
            "1s",
            1,
        ),
    );
    let (readings, _) = poll_once(cfg.devices).await;
    let energy = find(&readings, "device_energy", None);
    assert_eq!(energy.quality, Quality::Bad);
    assert!(energy.error.as_deref().unwrap().contains("noSuchName"), "{energy:?}");
    assert!(close(find(&readings, "device_power", None).value, 1230.0));
    assert!(close(find(&readings, "outlet_current", Some("outlet-2")).value, 1.6));
    assert!(close(find(&readings, "sensor_temp", Some("sensor-3")).value, 23.5));
    agent.stop().await;
}

#[tokio::test]
async fn too_big_halves_the_batch_and_keeps_it() {
    // A profile with 40 scalars, served by an agent whose responses must fit 484 bytes.
    let mut text = String::from("protocol = \"snmp\"\n");
    for i in 1..=40 {
        text.push_str(&format!(
            "[[points]]\nname = \"t{i}\"\nmetric = \"inlet_temp_c\"\noid = \"1.3.6.1.4.1.99999.1.{i}.0\"\nscale = 0.1\n"
        ));
    }
    let cfg: hallmonitor::profiles::ProfileConfig = toml::from_str(&text).unwrap();
    let Profile::Snmp(profile) = cfg.build("many").unwrap() else { panic!() };
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("many");
    for i in 1..=40 {
        values.set(&dev, &PointId::new(format!("t{i}")), 0, 20.0 + f64::from(i) / 10.0);
    }
    let options = SimSnmpOptions { max_message_size: Some(484), ..Default::default() };
    let agent = start_sim("public", "many", profile.clone(), 0, values, options).await;
    let dir = tempfile::tempdir().unwrap();
    secret(dir.path(), "community", "public");
    let cfgfile = load(
        dir.path(),
        &config_text(
            &device_toml(
                "many",
                "apc-rpdu2",
                agent.local_addr,
                "max_oids_per_request = 40\ncommunity_file = \"community\"",
            ),
            "1s",
            1,
        ),
    );
    let Transport::Snmp(settings) = &cfgfile.devices[0].transport else { panic!() };
    let mut session = SnmpSession::connect(settings, Duration::from_secs(1), 1).await.unwrap();
    let oids: Vec<async_snmp::Oid> =
        (1..=40).map(|i| async_snmp::Oid::parse(&format!("1.3.6.1.4.1.99999.1.{i}.0")).unwrap()).collect();
    let got = session.get(&oids).await.unwrap();
    assert_eq!(got.len(), 40);
    assert!(got.values().all(|v| v.is_ok()));
    let first = session.batch_size();
    assert!(first < 40, "tooBig must shrink the batch, still {first}");
    session.take_requests();
    // Remembered: the next poll sends batches that fit right away, no more tooBig.
    session.get(&oids).await.unwrap();
    assert_eq!(session.batch_size(), first);
    let sent = session.take_requests();
    assert_eq!(sent as usize, 40usize.div_ceil(first), "requests {sent} with batch {first}");
    agent.stop().await;
}

#[tokio::test]
async fn silent_and_erroring_agents_give_bad_readings_with_distinct_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let (silent, broken) = (DeviceId::new("pdu-silent"), DeviceId::new("pdu-broken"));
    apc_values(&values, &silent);
    apc_values(&values, &broken);
    values.set_fault(&silent, SimFault::Silent);
    values.set_fault(&broken, SimFault::Error);
    let devices = HashMap::from([
        ("c-silent".to_owned(), SimSnmpDevice { id: silent.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 2 }),
        ("c-broken".to_owned(), SimSnmpDevice { id: broken.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 2 }),
    ]);
    let agent = simsnmp::serve(loopback(), devices, values, CancellationToken::new()).await.unwrap();
    secret(dir.path(), "silent", "c-silent");
    secret(dir.path(), "broken", "c-broken");
    let cfg = load(
        dir.path(),
        &config_text(
            &format!(
                "{}{}",
                device_toml("pdu-silent", "apc-rpdu2", agent.local_addr, r#"community_file = "silent""#),
                device_toml("pdu-broken", "apc-rpdu2", agent.local_addr, r#"community_file = "broken""#)
            ),
            "200ms",
            1,
        ),
    );
    let (readings, stats) = poll_once(cfg.devices).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Bad && r.value.is_none()));
    let silent_r: Vec<_> = readings.iter().filter(|r| r.device == silent).collect();
    let broken_r: Vec<_> = readings.iter().filter(|r| r.device == broken).collect();
    // Never silence: one bad reading per point.
    assert_eq!(silent_r.len(), 7);
    assert_eq!(broken_r.len(), 7);
    let e = silent_r[0].error.as_deref().unwrap();
    assert!(e.contains("no answer from") && e.contains("agent unreachable"), "{e}");
    let e = broken_r[0].error.as_deref().unwrap();
    assert!(e.contains("answered with error-status genErr"), "{e}");
    assert_eq!(stats.snmp.snapshot().polls_failed, 2);
    agent.stop().await;
}

#[tokio::test]
async fn a_silent_agent_does_not_hold_up_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let (slow, fine) = (DeviceId::new("slow"), DeviceId::new("fine"));
    apc_values(&values, &slow);
    apc_values(&values, &fine);
    values.set_fault(&slow, SimFault::Silent);
    let devices = HashMap::from([
        ("slow".to_owned(), SimSnmpDevice { id: slow.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 1 }),
        ("fine".to_owned(), SimSnmpDevice { id: fine.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 1 }),
    ]);
    let agent = simsnmp::serve(loopback(), devices, values, CancellationToken::new()).await.unwrap();
    secret(dir.path(), "slow", "slow");
    secret(dir.path(), "fine", "fine");
    // The slow device is listed first and waits 3 x 500 ms; the fine one must not wait.
    let cfg = load(
        dir.path(),
        &config_text(
            &format!(
                "{}{}",
                device_toml("slow", "apc-rpdu2", agent.local_addr, r#"community_file = "slow""#),
                device_toml("fine", "apc-rpdu2", agent.local_addr, r#"community_file = "fine""#)
            ),
            "500ms",
            2,
        ),
    );
    let (readings, _) = poll_once(cfg.devices).await;
    let first_slow = readings.iter().position(|r| r.device == slow).unwrap();
    let last_fine = readings.iter().rposition(|r| r.device == fine).unwrap();
    assert!(last_fine < first_slow, "the fine device's readings came after the silent one's");
    assert!(readings.iter().filter(|r| r.device == fine).all(|r| r.quality == Quality::Good));
    agent.stop().await;
}

fn v3_user(name: &str) -> SimV3User {
    SimV3User {
        name: name.into(),
        auth: AuthProtocol::Sha256,
        auth_password: "auth-pass-123".into(),
        privacy: Some((PrivProtocol::Aes128, "priv-pass-456".into())),
    }
}

fn v3_device(dir: &Path, addr: SocketAddr, auth_pw: &str) -> DeviceSpec {
    secret(dir, "authpw", auth_pw);
    secret(dir, "privpw", "priv-pass-456");
    let extra = r#"version = "3"
user = "monitor"
auth = "sha256"
auth_password_file = "authpw"
priv = "aes128"
priv_password_file = "privpw""#;
    let cfg = load(dir, &config_text(&device_toml("pdu-v3", "apc-rpdu2", addr, extra), "300ms", 1));
    cfg.devices.into_iter().next().unwrap()
}

#[tokio::test]
async fn v3_auth_priv_survives_an_agent_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("pdu-v3");
    apc_values(&values, &dev);
    let options = SimSnmpOptions { v3_users: vec![v3_user("monitor")], ..Default::default() };
    let agent = start_sim("monitor", "pdu-v3", snmp_builtin("apc-rpdu2"), 2, values.clone(), options).await;
    let addr = agent.local_addr;
    let spec = v3_device(dir.path(), addr, "auth-pass-123");
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    let mut poller = DevicePoller::new(spec.clone(), settings, snmp_profile(&spec)).unwrap();
    let first = poller.poll().await;
    assert_eq!(first.result, Ok(()));
    assert!(close(find(&first.readings, "device_power", None).value, 1230.0));

    // Reboot: same engine id, boots + 1, engine time from zero, same port.
    let (engine_id, boots) = (agent.engine_id.clone(), agent.engine_boots);
    agent.stop().await;
    let options = SimSnmpOptions {
        v3_users: vec![v3_user("monitor")],
        previous_engine: Some((engine_id, boots)),
        ..Default::default()
    };
    let devices = HashMap::from([(
        "monitor".to_owned(),
        SimSnmpDevice { id: dev.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 2 },
    )]);
    let rebooted = simsnmp::serve_with(addr, devices, values, CancellationToken::new(), options).await.unwrap();
    assert_eq!(rebooted.engine_boots, boots + 1);
    let second = poller.poll().await;
    assert_eq!(second.result, Ok(()), "{:?}", second.readings.first());
    assert!(close(find(&second.readings, "outlet_current", Some("outlet-2")).value, 1.6));
    rebooted.stop().await;
}

#[tokio::test]
async fn v3_wrong_password_says_credentials_may_be_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    apc_values(&values, &DeviceId::new("pdu-v3"));
    let options = SimSnmpOptions { v3_users: vec![v3_user("monitor")], ..Default::default() };
    let agent = start_sim("monitor", "pdu-v3", snmp_builtin("apc-rpdu2"), 1, values, options).await;
    let spec = v3_device(dir.path(), agent.local_addr, "not-the-password");
    let (readings, _) = poll_once(vec![spec]).await;
    assert!(!readings.is_empty());
    for r in &readings {
        assert_eq!(r.quality, Quality::Bad);
        let e = r.error.as_deref().unwrap();
        assert!(e.contains("credentials may be wrong"), "{e}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn counter_rates_need_two_polls_then_give_per_second_values() {
    let text = r#"
        protocol = "snmp"
        [[points]]
        name = "energy_rate"
        metric = "power_w"
        oid = "1.3.6.1.4.1.99999.3.1.0"
        rate = true
        [[points]]
        name = "temp"
        metric = "inlet_temp_c"
        oid = "1.3.6.1.4.1.99999.3.2.0"
        scale = 0.1
    "#;
    let cfg: hallmonitor::profiles::ProfileConfig = toml::from_str(text).unwrap();
    let Profile::Snmp(profile) = cfg.build("counter").unwrap() else { panic!() };
    let dev = DeviceId::new("meter");
    let values = Arc::new(SimValues::new());
    values.set(&dev, &PointId::new("energy_rate"), 0, 1_000_000.0);
    values.set(&dev, &PointId::new("temp"), 0, 21.5);
    let agent = start_sim("public", "meter", profile.clone(), 0, values.clone(), SimSnmpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    secret(dir.path(), "community", "public");
    let cfgfile = load(
        dir.path(),
        &config_text(&device_toml("meter", "apc-rpdu2", agent.local_addr, r#"community_file = "community""#), "1s", 1),
    );
    let mut spec = cfgfile.devices.into_iter().next().unwrap();
    spec.profile = Profile::Snmp(profile.clone());
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    let mut poller = DevicePoller::new(spec, settings, profile).unwrap();
    let first = poller.poll().await;
    assert_eq!(first.result, Ok(()));
    // First sample of a counter: nothing to compare with, so no reading for it yet.
    assert!(!first.readings.iter().any(|r| r.point.as_str() == "energy_rate"));
    assert!(close(find(&first.readings, "temp", None).value, 21.5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    values.set(&dev, &PointId::new("energy_rate"), 0, 1_000_500.0);
    let second = poller.poll().await;
    let rate = find(&second.readings, "energy_rate", None);
    assert_eq!(rate.quality, Quality::Good);
    // 500 counts over a little more than 0.2 s.
    let v = rate.value.unwrap();
    assert!(v > 0.0 && v <= 2500.0, "{v}");
    agent.stop().await;
}

#[tokio::test]
async fn v3_rediscovers_when_the_agent_is_replaced_with_a_new_engine_id() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("pdu-v3");
    apc_values(&values, &dev);
    let options = SimSnmpOptions { v3_users: vec![v3_user("monitor")], ..Default::default() };
    let agent = start_sim("monitor", "pdu-v3", snmp_builtin("apc-rpdu2"), 1, values.clone(), options).await;
    let addr = agent.local_addr;
    let spec = v3_device(dir.path(), addr, "auth-pass-123");
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    let mut poller = DevicePoller::new(spec.clone(), settings, snmp_profile(&spec)).unwrap();
    assert_eq!(poller.poll().await.result, Ok(()));
    agent.stop().await;
    // A replacement unit: another engine id on the same address.
    let options = SimSnmpOptions {
        v3_users: vec![v3_user("monitor")],
        previous_engine: Some((b"replacement-unit".to_vec(), 7)),
        ..Default::default()
    };
    let devices =
        HashMap::from([("monitor".to_owned(), SimSnmpDevice { id: dev, profile: snmp_builtin("apc-rpdu2"), rows: 1 })]);
    let replaced = simsnmp::serve_with(addr, devices, values, CancellationToken::new(), options).await.unwrap();
    let out = poller.poll().await;
    assert_eq!(out.result, Ok(()), "{:?}", out.readings.first());
    assert!(close(find(&out.readings, "device_power", None).value, 1230.0));
    replaced.stop().await;
}

#[tokio::test]
async fn every_builtin_snmp_profile_round_trips_through_the_simulator() {
    use hallmonitor::profiles::snmp::{RowScaling, SnmpTarget};
    use hallmonitor::sources::snmp::scale::to_si;
    for name in ["apc-rpdu2", "raritan-pdu2", "servertech-sentry4", "entity-sensor", "geist-watchdog"] {
        let profile = snmp_builtin(name);
        let dev = DeviceId::new(name);
        let values = Arc::new(SimValues::new());
        let mut expected = HashMap::new();
        for (k, p) in profile.points.iter().enumerate() {
            // The simulator serves decimal digits 1 and ENTITY-SENSOR scale "units".
            let factor = match p.row_scaling {
                RowScaling::Decimals(_) | RowScaling::EntityScaleAndDecimals(..) => 0.1,
                _ => 1.0,
            };
            let rows = if matches!(p.target, SnmpTarget::Scalar(_)) { 0..=0 } else { 1..=2 };
            for r in rows {
                let raw = 200.0 + 10.0 * k as f64 + f64::from(r);
                let v = to_si(raw, factor, p.scale, p.offset);
                values.set(&dev, &p.id, r, v);
                expected.insert((p.id.to_string(), r), v);
            }
        }
        let agent = start_sim("public", name, profile.clone(), 2, values, SimSnmpOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        secret(dir.path(), "community", "public");
        let extra = r#"community_file = "community""#;
        let cfg = load(dir.path(), &config_text(&device_toml(name, name, agent.local_addr, extra), "1s", 1));
        let (readings, _) = poll_once(cfg.devices).await;
        assert!(readings.iter().all(|r| r.quality == Quality::Good), "{name}: {readings:#?}");
        for p in &profile.points {
            let mine: Vec<_> = readings.iter().filter(|r| r.point == p.id).collect();
            let want = if matches!(p.target, SnmpTarget::Scalar(_)) { 1 } else { 2 };
            assert_eq!(mine.len(), want, "{name}/{}: {mine:#?}", p.id);
            for (i, r) in mine.iter().enumerate() {
                let row = if want == 1 { 0 } else { i as u32 + 1 };
                assert_eq!(r.value, expected.get(&(p.id.to_string(), row)).copied(), "{name}/{} row {row}", p.id);
                if want == 2 {
                    assert!(r.label.is_some(), "{name}/{} has no row label", p.id);
                }
            }
        }
        agent.stop().await;
    }
}

/// Many devices through `spawn` (shared sockets) all answer. Background: with a socket per
/// device, async-snmp's SO_REUSEADDR let Linux give two client sockets one ephemeral port
/// (seen with `ss -uanp` in scripts/bench-snmp), and one device of 200 looked dead forever.
/// That collision is random, so this test cannot force it; it guards the shared path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_devices_all_answer_through_shared_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let mut devices = HashMap::new();
    let mut toml = String::new();
    for i in 0..300 {
        let id = DeviceId::new(format!("pdu-{i:03}"));
        apc_values(&values, &id);
        devices.insert(format!("c{i}"), SimSnmpDevice { id, profile: snmp_builtin("apc-rpdu2"), rows: 1 });
        secret(dir.path(), &format!("c{i}"), &format!("c{i}"));
    }
    let agent = simsnmp::serve(loopback(), devices, values, CancellationToken::new()).await.unwrap();
    for i in 0..300 {
        toml.push_str(&device_toml(
            &format!("pdu-{i:03}"),
            "apc-rpdu2",
            agent.local_addr,
            &format!("community_file = \"c{i}\""),
        ));
    }
    let cfg = load(dir.path(), &config_text(&toml, "2s", 2));
    let (readings, stats) = poll_once(cfg.devices).await;
    let bad: Vec<_> = readings.iter().filter(|r| r.quality == Quality::Bad).collect();
    assert!(bad.is_empty(), "{} bad readings, first: {:?}", bad.len(), bad.first());
    assert_eq!(stats.snmp.snapshot().polls_ok, 300);
    agent.stop().await;
}

/// A device whose only point is a counter rate, served by the simulator.
fn counter_profile() -> Arc<SnmpProfile> {
    let text = r#"
        protocol = "snmp"
        [[points]]
        name = "energy_rate"
        metric = "power_w"
        oid = "1.3.6.1.4.1.99999.3.1.0"
        rate = true
    "#;
    let cfg: hallmonitor::profiles::ProfileConfig = toml::from_str(text).unwrap();
    let Profile::Snmp(profile) = cfg.build("counter").unwrap() else { panic!() };
    profile
}

fn counter_poller(dir: &Path, addr: SocketAddr, profile: Arc<SnmpProfile>) -> DevicePoller {
    secret(dir, "community", "public");
    let device = device_toml("meter", "apc-rpdu2", addr, r#"community_file = "community""#);
    let cfgfile = load(dir, &config_text(&device, "300ms", 1));
    let mut spec = cfgfile.devices.into_iter().next().unwrap();
    spec.profile = Profile::Snmp(profile.clone());
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    DevicePoller::new(spec, settings, profile).unwrap()
}

#[tokio::test]
async fn a_counter_rate_across_an_agent_restart_gives_no_reading() {
    let profile = counter_profile();
    let dev = DeviceId::new("meter");
    let rate = PointId::new("energy_rate");
    let values = Arc::new(SimValues::new());
    values.set(&dev, &rate, 0, 1_000.0);
    let agent = start_sim("public", "meter", profile.clone(), 0, values.clone(), SimSnmpOptions::default()).await;
    let addr = agent.local_addr;
    let dir = tempfile::tempdir().unwrap();
    let mut poller = counter_poller(dir.path(), addr, profile.clone());
    // Let the agent's sysUpTime grow past what it will be right after the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(poller.poll().await.result, Ok(()));

    // The agent restarts (sysUpTime from zero) and its counter, restarted from zero too,
    // has already counted past the old value: the counter alone cannot tell.
    agent.stop().await;
    let devices = HashMap::from([("public".to_owned(), SimSnmpDevice { id: dev.clone(), profile, rows: 0 })]);
    let restarted = simsnmp::serve(addr, devices, values.clone(), CancellationToken::new()).await.unwrap();
    values.set(&dev, &rate, 0, 5_000.0);
    let across = poller.poll().await;
    assert_eq!(across.result, Ok(()));
    assert!(!across.readings.iter().any(|r| r.point == rate), "a rate across the restart: {:?}", across.readings);

    // The next interval has a fresh pair of samples again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    values.set(&dev, &rate, 0, 5_100.0);
    let after = poller.poll().await;
    let r = find(&after.readings, "energy_rate", None);
    assert_eq!(r.quality, Quality::Good);
    assert!(r.value.is_some_and(|v| v > 0.0 && v <= 500.0), "{r:?}");
    restarted.stop().await;
}

/// Relays SNMP requests sent to `listen` on to `agent`, and sends each answer back to the
/// client from `reply_from` (an address that is not the one the client asked).
async fn relay(agent: SocketAddr, reply_from: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = tokio::net::UdpSocket::bind(reply_from).await.unwrap();
    let listen = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else { return };
            back.send_to(&buf[..n], agent).await.unwrap();
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), back.recv(&mut buf)).await else {
                continue;
            };
            answer.send_to(&buf[..n], client).await.unwrap();
        }
    });
    (listen, task)
}

#[tokio::test]
async fn replies_from_an_address_other_than_the_devices_are_dropped() {
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("pdu-b07-a");
    apc_values(&values, &dev);
    let agent = start_sim("s3cret", "pdu-b07-a", snmp_builtin("apc-rpdu2"), 1, values, SimSnmpOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    secret(dir.path(), "community", "s3cret");
    let spec_for = |addr: SocketAddr| {
        let text =
            config_text(&device_toml("pdu-b07-a", "apc-rpdu2", addr, r#"community_file = "community""#), "300ms", 0);
        load(dir.path(), &text).devices.into_iter().next().unwrap()
    };

    let (other, relay_task) = relay(agent.local_addr, "127.0.0.2:0").await;

    // Answers from 127.0.0.2 to a request sent to 127.0.0.1: dropped, so the poll times
    // out, both on a socket of the poller's own and on the process's shared socket.
    let spec = spec_for(other);
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    let mut own = DevicePoller::new(spec.clone(), settings, snmp_profile(&spec)).unwrap();
    let outcome = own.poll().await;
    assert!(
        matches!(outcome.result, Err(hallmonitor::sources::snmp::SnmpError::Timeout { .. })),
        "{:?}",
        outcome.result
    );
    assert!(outcome.readings.iter().all(|r| r.quality == Quality::Bad));
    let (shared, _) = poll_once(vec![spec]).await;
    assert!(!shared.is_empty() && shared.iter().all(|r| r.quality == Quality::Bad), "{shared:#?}");

    // The real agent, asked directly, answers as usual.
    let (direct, _) = poll_once(vec![spec_for(agent.local_addr)]).await;
    assert!(direct.iter().all(|r| r.quality == Quality::Good), "{direct:#?}");
    relay_task.abort();
    agent.stop().await;
}

#[tokio::test]
async fn a_pdu_without_outlet_metering_reports_it_not_present_once_and_stops_asking() {
    // A switched PDU (AP8853-like): the rPDU2 outlet metering table is empty.
    let all = SimValues::new();
    let dev = DeviceId::new("pdu-switched");
    apc_values(&all, &dev);
    let values = Arc::new(SimValues::new());
    for p in ["device_power", "device_energy", "phase_current", "phase_voltage", "sensor_temp", "sensor_humidity"] {
        for row in 0..=3 {
            if let Some(v) = all.get(&dev, &PointId::new(p), row) {
                values.set(&dev, &PointId::new(p), row, v);
            }
        }
    }
    let stats = Arc::new(simsnmp::SimSnmpStats::default());
    let options = SimSnmpOptions { stats: Some(stats.clone()), ..Default::default() };
    let agent = start_sim("s3cret", "pdu-switched", snmp_builtin("apc-rpdu2"), 3, values, options).await;
    let dir = tempfile::tempdir().unwrap();
    secret(dir.path(), "community", "s3cret");
    let text = config_text(
        &device_toml("pdu-switched", "apc-rpdu2", agent.local_addr, r#"community_file = "community""#),
        "1s",
        1,
    );
    let spec = load(dir.path(), &text).devices.into_iter().next().unwrap();

    // poll --once: every reading good, none for the outlets.
    let (readings, source_stats) = poll_once(vec![spec.clone()]).await;
    assert!(readings.iter().all(|r| r.quality == Quality::Good), "{readings:#?}");
    assert!(!readings.iter().any(|r| r.point.as_str() == "outlet_current"), "{readings:#?}");
    assert_eq!(readings.len(), 2 + 4 * 3, "2 scalars + 4 table points x 3 rows");
    assert_eq!(source_stats.snmp.snapshot().polls_failed, 0);

    // The daemon's poller: after the first poll the outlet columns are no longer walked.
    let Transport::Snmp(settings) = spec.transport.clone() else { panic!() };
    let mut poller = DevicePoller::new(spec.clone(), settings, snmp_profile(&spec)).unwrap();
    let varbinds = || stats.varbinds.load(std::sync::atomic::Ordering::Relaxed);
    let before = varbinds();
    let first = poller.poll().await;
    let first_varbinds = varbinds() - before;
    assert_eq!(first.result, Ok(()));
    assert!(first.readings.iter().all(|r| r.quality == Quality::Good && r.point.as_str() != "outlet_current"));
    let before = varbinds();
    let second = poller.poll().await;
    let second_varbinds = varbinds() - before;
    assert_eq!(second.result, Ok(()));
    assert_eq!(second.readings.len(), first.readings.len());
    assert!(
        second_varbinds < first_varbinds,
        "the second poll still asks for the outlet table ({second_varbinds} varbinds, {first_varbinds} before)"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_agent_answering_for_many_devices_gets_a_few_polls_at_a_time() {
    use hallmonitor::sources::snmp::POLLS_PER_AGENT;
    // Ten devices behind one address (a proxy, a simulator) that never answers: every poll
    // waits out its 1 s timeout, so the polls it lets run at once are the requests it holds
    // before the first timeout.
    let agent = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let addr = agent.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    secret(dir.path(), "community", "public");
    let devices: String = (0..10)
        .map(|i| device_toml(&format!("pdu-{i}"), "apc-rpdu2", addr, r#"community_file = "community""#))
        .collect();
    let specs = load(dir.path(), &config_text(&devices, "1s", 0)).devices;
    let started = tokio::time::Instant::now();
    let polls = tokio::spawn(poll_once(specs));
    let mut asked_after = Vec::new();
    let mut buf = vec![0u8; 65536];
    while asked_after.len() < 10 {
        match tokio::time::timeout(Duration::from_secs(10), agent.recv_from(&mut buf)).await {
            Ok(Ok(_)) => asked_after.push(started.elapsed()),
            other => panic!("after {} requests: {other:?}", asked_after.len()),
        }
    }
    let before_a_timeout = asked_after.iter().filter(|t| **t < Duration::from_millis(800)).count();
    assert_eq!(before_a_timeout, POLLS_PER_AGENT, "requests before the first timeout, at {asked_after:?}");
    // The others were polled as turns came free, and every device reports its points bad.
    let (readings, stats) = polls.await.unwrap();
    assert_eq!(stats.snmp.polls_failed.load(std::sync::atomic::Ordering::Relaxed), 10);
    assert!(!readings.is_empty() && readings.iter().all(|r| r.quality == Quality::Bad), "{readings:#?}");
    for i in 0..10 {
        let id = format!("pdu-{i}");
        assert!(readings.iter().any(|r| r.device.as_str() == id), "no reading of {id}");
    }
}

/// Outlet names are walked once a minute, not every poll; an outlet that appears in between
/// still gets its own name in the poll that first sees it (the poll asks again with the
/// names), never a stand-in label (a label is part of a point's identity downstream).
#[tokio::test]
async fn a_row_new_since_the_labels_were_walked_gets_its_own_label_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let values = Arc::new(SimValues::new());
    let dev = DeviceId::new("pdu");
    apc_values(&values, &dev);
    values.set(&dev, &PointId::new("outlet_current"), 4, 3.2);
    let agent =
        start_sim("public", "pdu", snmp_builtin("apc-rpdu2"), 3, values.clone(), SimSnmpOptions::default()).await;
    let addr = agent.local_addr;
    let mut poller = counter_poller(dir.path(), addr, snmp_builtin("apc-rpdu2"));
    let outlets = |readings: &[Reading]| -> Vec<String> {
        readings
            .iter()
            .filter(|r| r.point.as_str() == "outlet_current")
            .filter_map(|r| r.label.as_deref().map(str::to_owned))
            .collect()
    };
    let first = poller.poll().await;
    assert_eq!(first.result, Ok(()));
    assert_eq!(outlets(&first.readings), ["outlet-1", "outlet-2", "outlet-3"]);
    assert_eq!(poller.take_requests(), 1);

    // The agent comes back with a fourth outlet (same port, same values).
    agent.stop().await;
    let devices = HashMap::from([(
        "public".to_owned(),
        SimSnmpDevice { id: dev.clone(), profile: snmp_builtin("apc-rpdu2"), rows: 4 },
    )]);
    let grown =
        simsnmp::serve_with(addr, devices, values, CancellationToken::new(), SimSnmpOptions::default()).await.unwrap();
    // The walk asks for the rows it knows, and one more once in a while to see a table grow.
    let mut polls = 0;
    let seen = loop {
        polls += 1;
        assert!(polls <= 12, "the fourth outlet never showed");
        let poll = poller.poll().await;
        assert_eq!(poll.result, Ok(()));
        let labels = outlets(&poll.readings);
        assert!(!labels.iter().any(|l| l == "4"), "a stand-in label: {labels:?}");
        if labels.len() == 4 {
            break poll;
        }
        // A steady poll, names kept: one request.
        assert_eq!(poller.take_requests(), 1);
    };
    assert_eq!(outlets(&seen.readings), ["outlet-1", "outlet-2", "outlet-3", "outlet-4"]);
    assert!(close(find(&seen.readings, "outlet_current", Some("outlet-4")).value, 3.2));
    assert!(poller.take_requests() >= 2, "the poll asked again with the names");
    let after = poller.poll().await;
    assert_eq!(outlets(&after.readings), ["outlet-1", "outlet-2", "outlet-3", "outlet-4"]);
    assert_eq!(poller.take_requests(), 1);
    grown.stop().await;
}
