//! The Modbus source against the in-tree simulator (src/sim/modbus.rs) on loopback:
//! exact decoding, exceptions and block splitting, a silent device, a device that closes
//! the connection, refused connections, several unit ids behind one port.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hallmonitor::config::{BlockLimits, DeviceSpec, Transport};
use hallmonitor::model::{DeviceId, PointId, Quality, Reading, ZoneId};
use hallmonitor::profiles::{ModbusProfile, Profile, ProfileConfig};
use hallmonitor::sim::modbus::{SimModbusDevice, serve};
use hallmonitor::sim::{SimFault, SimValues};
use hallmonitor::sources::SourceContext;
use hallmonitor::sources::modbus::poller::Poller;
use hallmonitor::sources::modbus::{Endpoint, Link};
use support::sources::source_context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PROFILE: &str = r#"
protocol = "modbus"
addressing = "zero-based"

[[points]]
name = "supply"
metric = "supply_air_temp_c"
table = "input"
address = 0
type = "i16"
scale = 0.1

[[points]]
name = "power_abcd"
metric = "power_w"
address = 10
type = "f32"

[[points]]
name = "power_cdab"
metric = "power_w"
address = 12
type = "f32"
word_order = "little"

[[points]]
name = "energy"
metric = "energy_kwh"
address = 14
type = "u32"
scale = 0.01

[[points]]
name = "alarm_fan"
metric = "alarm"
address = 16
bit = 2

[[points]]
name = "volts_f64"
metric = "voltage_v"
address = 20
type = "f64"
word_order = "little"
byte_swap = true

[[points]]
name = "door"
metric = "alarm"
table = "discrete"
address = 5
"#;

fn profile(text: &str) -> Arc<ModbusProfile> {
    let cfg: ProfileConfig = toml::from_str(text).unwrap();
    match cfg.build("test").unwrap() {
        Profile::Modbus(p) => p,
        Profile::Snmp(_) => unreachable!(),
    }
}

fn spec(id: &str, address: &str, unit: u8, p: &Arc<ModbusProfile>) -> DeviceSpec {
    DeviceSpec {
        id: DeviceId::new(id),
        zone: ZoneId::new("hall1-b"),
        rack: Some(hallmonitor::model::RackId::new("B07")),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(300),
        retries: 1,
        down_after: 2,
        profile: Profile::Modbus(p.clone()),
        transport: Transport::ModbusTcp {
            address: address.to_owned(),
            unit,
            blocks: BlockLimits { max_gap: 10, max_block: 125 },
        },
        enabled: true,
    }
}

struct Sim {
    address: String,
    values: Arc<SimValues>,
    cancel: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start_sim(units: Vec<(u8, &str, Arc<ModbusProfile>)>) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let values = Arc::new(SimValues::new());
    let cancel = CancellationToken::new();
    let map: HashMap<u8, SimModbusDevice> =
        units.into_iter().map(|(u, id, profile)| (u, SimModbusDevice { id: DeviceId::new(id), profile })).collect();
    tokio::spawn(serve(listener, map, values.clone(), cancel.clone()));
    Sim { address, values, cancel }
}

fn poller(spec: DeviceSpec, ctx: &SourceContext) -> Poller {
    let (endpoint, unit, limits, profile) = match (&spec.transport, &spec.profile) {
        (Transport::ModbusTcp { address, unit, blocks }, Profile::Modbus(p)) => {
            (Endpoint::Tcp(address.clone()), *unit, *blocks, p.clone())
        }
        _ => unreachable!(),
    };
    let (link, _task) = Link::spawn(endpoint, ctx.stats.clone(), ctx.cancel.clone());
    Poller::new(spec, profile, unit, limits, link, ctx.clone())
}

fn drain(rx: &mut mpsc::Receiver<Reading>) -> HashMap<String, Reading> {
    let mut out = HashMap::new();
    while let Ok(r) = rx.try_recv() {
        out.insert(r.point.as_str().to_owned(), r);
    }
    out
}

fn set(values: &SimValues, dev: &str, point: &str, v: f64) {
    values.set(&DeviceId::new(dev), &PointId::new(point), 0, v);
}

#[tokio::test]
async fn decodes_every_type_exactly_as_the_device_means_it() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "crah-b1", p.clone())]).await;
    for (point, v) in [
        ("supply", -3.5),
        ("power_abcd", 1234.5),
        ("power_cdab", -0.25),
        ("energy", 98765.43),
        ("alarm_fan", 1.0),
        ("volts_f64", 230.125),
        ("door", 1.0),
    ] {
        set(&sim.values, "crah-b1", point, v);
    }
    let (ctx, mut rx) = source_context(1024, true);
    let mut tasks = hallmonitor::sources::modbus::spawn(vec![spec("crah-b1", &sim.address, 1, &p)], ctx.clone());
    drop(ctx);
    let mut readings = HashMap::new();
    while let Some(r) = rx.recv().await {
        readings.insert(r.point.as_str().to_owned(), r);
    }
    for t in tasks.drain(..) {
        t.await.unwrap();
    }
    assert_eq!(readings.len(), 7);
    let value = |p: &str| readings[p].value.unwrap_or_else(|| panic!("{p}: {:?}", readings[p].error));
    assert_eq!(value("supply"), -3.5);
    assert_eq!(value("power_abcd"), 1234.5);
    assert_eq!(value("power_cdab"), -0.25);
    assert_eq!(value("energy"), 98765.43);
    assert_eq!(value("alarm_fan"), 1.0);
    assert_eq!(value("volts_f64"), 230.125);
    assert_eq!(value("door"), 1.0);
    let r = &readings["supply"];
    assert_eq!(r.quality, Quality::Good);
    assert_eq!(r.zone.as_str(), "hall1-b");
    assert_eq!(r.rack.as_ref().unwrap().as_str(), "B07");
    assert_eq!(&*r.unit, "°C");
}

#[tokio::test]
async fn an_unmapped_register_splits_the_block_and_only_that_point_goes_bad() {
    // The poller's profile has a point at 15 that the device does not have; the block
    // 10..=16 is refused as a whole.
    let device_profile = profile(PROFILE);
    let poll_profile = profile(&format!(
        "{PROFILE}\n[[points]]\nname = \"ghost\"\nmetric = \"power_w\"\naddress = 18\ntype = \"u16\"\n"
    ));
    let sim = start_sim(vec![(1, "pm1", device_profile)]).await;
    set(&sim.values, "pm1", "power_abcd", 500.0);
    let (ctx, mut rx) = source_context(1024, false);
    let mut poller = poller(spec("pm1", &sim.address, 1, &poll_profile), &ctx);
    let blocks_before = poller.plan().len();

    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r.len(), 8);
    let ghost = &r["ghost"];
    assert_eq!(ghost.quality, Quality::Bad);
    assert!(ghost.error.as_deref().unwrap().contains("exception 2 (illegal data address)"), "{ghost:?}");
    assert!(ghost.error.as_deref().unwrap().contains("holding registers 18..=18"), "{ghost:?}");
    for good in ["power_abcd", "power_cdab", "energy", "alarm_fan", "volts_f64", "supply", "door"] {
        assert_eq!(r[good].quality, Quality::Good, "{good}: {:?}", r[good].error);
    }
    assert_eq!(r["power_abcd"].value, Some(500.0));
    // The split is remembered: the next poll makes no refused request.
    assert!(poller.plan().len() > blocks_before);
    let requests = ctx.stats.modbus.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r["power_abcd"].quality, Quality::Good);
    assert_eq!(r["ghost"].quality, Quality::Bad);
    let second = ctx.stats.modbus.requests.load(std::sync::atomic::Ordering::Relaxed) - requests;
    assert_eq!(second as usize, poller.plan().len());
    assert_eq!(poller.failed_polls(), 0);
}

#[tokio::test]
async fn a_silent_device_times_out_goes_down_and_comes_back_up() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "th1", p.clone())]).await;
    set(&sim.values, "th1", "supply", 21.0);
    let (ctx, mut rx) = source_context(1024, false);
    let mut poller = poller(spec("th1", &sim.address, 1, &p), &ctx);
    sim.values.set_fault(&DeviceId::new("th1"), SimFault::Silent);

    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r.len(), 7, "one bad reading per point, never silence");
    let err = r["supply"].error.as_deref().unwrap().to_owned();
    assert!(err.starts_with("timeout after 300ms: no answer from unit 1 at"), "{err}");
    assert!(r.values().all(|x| x.quality == Quality::Bad && x.value.is_none()));
    assert_eq!(poller.failed_polls(), 1);
    assert!(poller.poll_once().await);
    drain(&mut rx);
    assert_eq!(poller.failed_polls(), 2, "down is the engine's decision (down_after); the poller counts");

    sim.values.set_fault(&DeviceId::new("th1"), SimFault::None);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r["supply"].value, Some(21.0), "{:?}", r["supply"].error);
    assert_eq!(poller.failed_polls(), 0);
    let stats = ctx.stats.modbus.snapshot();
    assert_eq!((stats.polls_ok, stats.polls_failed), (1, 2));
}

#[tokio::test]
async fn a_device_that_closes_the_connection_is_reconnected() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "c1", p.clone())]).await;
    set(&sim.values, "c1", "power_abcd", 42.0);
    let (ctx, mut rx) = source_context(1024, false);
    let mut poller = poller(spec("c1", &sim.address, 1, &p), &ctx);

    sim.values.set_fault(&DeviceId::new("c1"), SimFault::Close);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    let err = r["power_abcd"].error.as_deref().unwrap();
    assert!(err.contains("lost") || err.contains("bad reply"), "{err}");
    assert!(!err.contains("exception"), "{err}");

    sim.values.set_fault(&DeviceId::new("c1"), SimFault::None);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r["power_abcd"].value, Some(42.0), "{:?}", r["power_abcd"].error);
}

#[tokio::test]
async fn exception_answers_and_refused_connections_have_different_messages() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "e1", p.clone())]).await;
    sim.values.set_fault(&DeviceId::new("e1"), SimFault::Error);
    let (ctx, mut rx) = source_context(1024, false);
    let mut exc = poller(spec("e1", &sim.address, 1, &p), &ctx);
    assert!(exc.poll_once().await);
    let r = drain(&mut rx);
    let err = r["supply"].error.as_deref().unwrap();
    assert!(err.starts_with("exception 4 (server device failure) from unit 1 at"), "{err}");

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut refused = poller(spec("r1", &address, 1, &p), &ctx);
    assert!(refused.poll_once().await);
    let r = drain(&mut rx);
    let err = r["supply"].error.as_deref().unwrap();
    assert!(err.starts_with(&format!("cannot connect to {address}: ")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn unit_ids_behind_one_port_share_a_connection() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "u1", p.clone()), (2, "u2", p.clone())]).await;
    set(&sim.values, "u1", "supply", 18.5);
    set(&sim.values, "u2", "supply", 19.5);
    let (ctx, mut rx) = source_context(1024, true);
    let devices =
        vec![spec("u1", &sim.address, 1, &p), spec("u2", &sim.address, 2, &p), spec("u9", &sim.address, 9, &p)];
    let tasks = hallmonitor::sources::modbus::spawn(devices, ctx.clone());
    // Two pollers for u1/u2/u9 plus one link task for the shared address.
    assert_eq!(tasks.len(), 4);
    drop(ctx);
    let mut got: HashMap<(String, String), Reading> = HashMap::new();
    while let Some(r) = rx.recv().await {
        got.insert((r.device.as_str().to_owned(), r.point.as_str().to_owned()), r);
    }
    let key = |d: &str| (d.to_owned(), "supply".to_owned());
    assert_eq!(got[&key("u1")].value, Some(18.5));
    assert_eq!(got[&key("u2")].value, Some(19.5));
    let err = got[&key("u9")].error.as_deref().unwrap();
    assert!(err.starts_with("exception 11 (gateway target device failed to respond) from unit 9"), "{err}");
}

#[tokio::test]
async fn nan_from_a_device_is_a_bad_reading() {
    let p = profile(PROFILE);
    let sim = start_sim(vec![(1, "n1", p.clone())]).await;
    set(&sim.values, "n1", "power_abcd", f64::NAN);
    set(&sim.values, "n1", "power_cdab", 7.0);
    let (ctx, mut rx) = source_context(1024, false);
    let mut poller = poller(spec("n1", &sim.address, 1, &p), &ctx);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r["power_abcd"].quality, Quality::Bad);
    assert!(r["power_abcd"].error.as_deref().unwrap().contains("non-finite"), "{:?}", r["power_abcd"]);
    assert_eq!(r["power_cdab"].value, Some(7.0));
}

#[tokio::test]
async fn an_optional_point_the_device_lacks_is_not_present_not_bad_and_not_read_again() {
    // The poller's profile has an optional point at 18 that this model does not have.
    let device_profile = profile(PROFILE);
    let poll_profile = profile(&format!(
        "{PROFILE}\n[[points]]\nname = \"outlet_meter\"\nmetric = \"power_w\"\naddress = 18\ntype = \"u16\"\noptional = true\n"
    ));
    let sim = start_sim(vec![(1, "pm1", device_profile)]).await;
    set(&sim.values, "pm1", "power_abcd", 500.0);
    let (ctx, mut rx) = source_context(1024, false);
    let mut poller = poller(spec("pm1", &sim.address, 1, &poll_profile), &ctx);

    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert!(!r.contains_key("outlet_meter"), "{:?}", r.get("outlet_meter"));
    assert_eq!(r.len(), 7);
    assert!(r.values().all(|x| x.quality == Quality::Good), "{r:#?}");
    assert_eq!(r["power_abcd"].value, Some(500.0));
    // Not asked for again: the next poll's requests are exactly its plan, and none of it
    // covers register 18.
    let requests = ctx.stats.modbus.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(poller.poll_once().await);
    let r = drain(&mut rx);
    assert_eq!(r.len(), 7);
    assert!(r.values().all(|x| x.quality == Quality::Good), "{r:#?}");
    let second = ctx.stats.modbus.requests.load(std::sync::atomic::Ordering::Relaxed) - requests;
    assert_eq!(second as usize, poller.plan().len());
    assert!(poller.plan().iter().all(|b| !(b.start..b.start + b.count).contains(&18) || b.table.is_bits()));
    assert_eq!(ctx.stats.modbus.polls_failed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn poll_once_is_good_on_a_device_lacking_only_optional_points() {
    let device_profile = profile(PROFILE);
    let poll_profile = profile(&format!(
        "{PROFILE}\n[[points]]\nname = \"outlet_meter\"\nmetric = \"power_w\"\naddress = 40\ntype = \"u16\"\noptional = true\n"
    ));
    let sim = start_sim(vec![(1, "pm1", device_profile)]).await;
    let (ctx, mut rx) = source_context(1024, true);
    let tasks = hallmonitor::sources::modbus::spawn(vec![spec("pm1", &sim.address, 1, &poll_profile)], ctx.clone());
    drop(ctx);
    let mut readings = Vec::new();
    while let Some(r) = rx.recv().await {
        readings.push(r);
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(readings.len(), 7, "{readings:#?}");
    assert!(readings.iter().all(|r| r.quality == Quality::Good && r.point.as_str() != "outlet_meter"));
}
