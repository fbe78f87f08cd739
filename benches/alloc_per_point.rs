//! Heap allocations per point on the poll hot path, counted (not timed), so the figures are
//! the same on a loaded machine as on an idle one (issue 13: "no per-point allocation on the
//! hot path").
//!
//! A counting `#[global_allocator]` wraps the system allocator. Each stage runs a few polls to
//! warm up (first-poll state, maps growing to size), then `POLLS` polls counted, and prints
//! allocations and bytes per point (per reading):
//! - snmp decode: an APC rPDU2 answer (2 scalars, 3 phases x current and voltage, 14 metered
//!   outlets with names, 2 probes: 25 values, as `scripts/bench-peers` serves) held in memory,
//!   turned into readings by `DevicePoller::decode`, the code a poll runs after the network.
//! - modbus decode: a 45-register input block (the bench-inrow profile of
//!   `scripts/bench-peers`) decoded with the plan and decode functions the poller uses, into
//!   readings built as `Poller::emit` builds them.
//! - engine: the readings of both through `Engine::handle_reading` (thresholds, correlation,
//!   rollups), then its events drained, as the agent's `on_readings` and `after_turn` do.
//!
//! Run: `cargo bench --bench alloc_per_point` (a release build, a second of work).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use arcstr::ArcStr;
use async_snmp::{Oid, Value};
use hallmonitor::config::{DeviceSpec, Transport, load_str};
use hallmonitor::engine::Engine;
use hallmonitor::model::{Quality, Reading, Timestamp};
use hallmonitor::profiles::Profile;
use hallmonitor::sources::modbus::decode::{decode_point, encode_point};
use hallmonitor::sources::modbus::plan;
use hallmonitor::sources::snmp::DevicePoller;
use hallmonitor::sources::snmp::plan::Fetched;

/// The system allocator, counting allocations (and reallocations) and bytes asked for.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the counters are
// atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 3;
const POLLS: usize = 200;
const T0: i64 = 1_793_577_600_000;

fn counts() -> (u64, u64) {
    (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
}

/// Runs `poll` `WARMUP` times, then `POLLS` times counted; prints and returns the
/// allocations per point. `poll` returns how many points it produced.
fn stage(name: &str, mut poll: impl FnMut(usize) -> usize) {
    for i in 0..WARMUP {
        poll(i);
    }
    let (a0, b0) = counts();
    let mut points = 0;
    for i in WARMUP..WARMUP + POLLS {
        points += poll(i);
    }
    let (a1, b1) = counts();
    let points = points.max(1) as f64;
    println!(
        "{name:<14} {:>6.2} allocations/point {:>8.1} bytes/point ({} points per poll)",
        (a1 - a0) as f64 / points,
        (b1 - b0) as f64 / points,
        points / POLLS as f64
    );
}

fn config() -> hallmonitor::config::Config {
    // The community is never sent (no network here), but the config must name a file for it.
    let dir = tempfile::tempdir().expect("temporary directory");
    let community = dir.path().join("community");
    std::fs::write(&community, "public\n").expect("community file written");
    let mut c = String::from(
        r#"[site]
id = "bench"
[[zones]]
id = "z1"
racks = ["R01"]
[[devices]]
id = "pdu-001"
profile = "apc-rpdu2"
zone = "z1"
rack = "R01"
feed = "A"
breaker_a = 16.0
[devices.snmp]
address = "127.0.0.1:1161"
version = "2c"
community_file = "COMMUNITY"
[[devices]]
id = "inrow-001"
profile = "bench-inrow"
zone = "z1"
[devices.modbus]
address = "127.0.0.1:1502"
unit = 1
[profiles.bench-inrow]
protocol = "modbus"
addressing = "zero-based"
"#,
    );
    let metrics = [
        "supply_air_temp_c",
        "return_air_temp_c",
        "humidity_pct",
        "fan_speed_pct",
        "cooling_capacity_pct",
        "inlet_temp_c",
        "power_kw",
    ];
    for a in 0..45 {
        c.push_str(&format!(
            "[[profiles.bench-inrow.points]]\nname = \"r{a:02}\"\nmetric = \"{}\"\ntable = \"input\"\naddress = {a}\ntype = \"i16\"\nscale = 0.1\n",
            metrics[a % metrics.len()]
        ));
    }
    let c = c.replace("COMMUNITY", &community.display().to_string());
    load_str(Path::new("bench.toml"), &c).expect("bench config loads").config
}

fn device(config: &hallmonitor::config::Config, id: &str) -> DeviceSpec {
    config.devices.iter().find(|d| d.id.as_str() == id).expect("device in the bench config").clone()
}

fn oid(s: &str) -> Oid {
    Oid::parse(s).expect("bench OID")
}

/// What an APC rPDU2 with 14 metered outlets and 2 probes answers to a poll.
fn rpdu2_answer() -> Fetched {
    let apc = "1.3.6.1.4.1.318.1.1.26";
    let mut f = Fetched::default();
    f.gets.insert(oid(&format!("{apc}.4.3.1.5.1")), Ok(Value::Integer(57)));
    f.gets.insert(oid(&format!("{apc}.4.3.1.9.1")), Ok(Value::Integer(123_456)));
    let mut column = |col: &str, rows: Vec<(u32, Value)>| {
        let m = f.column_mut(&oid(&format!("{apc}.{col}")));
        for (row, v) in rows {
            m.insert_row(&[row], v);
        }
    };
    column("6.3.1.5", (1..=3).map(|r| (r, Value::Integer(28 + r as i32))).collect());
    column("6.3.1.6", (1..=3).map(|r| (r, Value::Integer(229 + r as i32))).collect());
    column("9.4.3.1.6", (1..=14).map(|r| (r, Value::Integer(r as i32 % 7))).collect());
    column(
        "9.4.3.1.3",
        (1..=14).map(|r| (r, Value::OctetString(format!("server-{r:02}").into_bytes().into()))).collect(),
    );
    // Probe 1 is temperatureHumidity(2), probe 2 temperatureOnly(1).
    column(
        "10.2.2.1.3",
        vec![(1, Value::OctetString("inlet-top".into())), (2, Value::OctetString("inlet-low".into()))],
    );
    column("10.2.2.1.5", vec![(1, Value::Integer(2)), (2, Value::Integer(1))]);
    column("10.2.2.1.8", vec![(1, Value::Integer(239)), (2, Value::Integer(251))]);
    column("10.2.2.1.10", vec![(1, Value::Integer(45)), (2, Value::Integer(-1))]);
    f
}

fn main() {
    let config = config();
    let at = |i: usize| Timestamp(T0 + i as i64 * 1000);
    let mut snmp_out: Vec<Vec<Reading>> = Vec::new();
    let mut modbus_out: Vec<Vec<Reading>> = Vec::new();

    // (a) SNMP: the answer is in memory; what is counted is the decode into readings.
    let pdu = device(&config, "pdu-001");
    let (Transport::Snmp(settings), Profile::Snmp(profile)) = (pdu.transport.clone(), pdu.profile.clone()) else {
        panic!("pdu-001 is an SNMP device");
    };
    let mut poller = DevicePoller::new(pdu, settings, profile).expect("apc-rpdu2 plans");
    let answer = rpdu2_answer();
    let start = tokio::time::Instant::now();
    stage("snmp decode", |i| {
        let readings = poller.decode(&answer, at(i), start + std::time::Duration::from_secs(i as u64));
        let n = readings.len();
        snmp_out.push(readings);
        n
    });

    // (b) Modbus: one 45-register block answer in memory, decoded point by point.
    let inrow = device(&config, "inrow-001");
    let (Transport::ModbusTcp { blocks: limits, .. }, Profile::Modbus(profile)) =
        (inrow.transport.clone(), inrow.profile.clone())
    else {
        panic!("inrow-001 is a Modbus TCP device");
    };
    let blocks = plan::plan(&profile.points, limits);
    let answers: Vec<Vec<u16>> = blocks
        .iter()
        .map(|b| {
            let mut words = vec![0u16; usize::from(b.count)];
            for &i in &b.points {
                let pt = &profile.points[i];
                let enc = encode_point(pt, 21.5 + i as f64 * 0.1).expect("bench value encodes");
                let at = usize::from(pt.address - b.start);
                words[at..at + enc.len()].copy_from_slice(&enc);
            }
            words
        })
        .collect();
    stage("modbus decode", |i| {
        let mut results: Vec<Option<Result<f64, ArcStr>>> = vec![None; profile.points.len()];
        for (block, words) in blocks.iter().zip(&answers) {
            for &p in &block.points {
                let point = &profile.points[p];
                let value = match block.slice(point, words) {
                    Some(w) => decode_point(point, w).map_err(|e| ArcStr::from(e.to_string())),
                    None => Err(ArcStr::from("short answer")),
                };
                results[p] = Some(value);
            }
        }
        let readings: Vec<Reading> = profile
            .points
            .iter()
            .zip(results)
            .map(|(point, result)| {
                let (value, quality, error) = match result {
                    Some(Ok(v)) => (Some(v), Quality::Good, None),
                    Some(Err(e)) => (None, Quality::Bad, Some(e)),
                    None => (None, Quality::Bad, Some(ArcStr::from("not read"))),
                };
                Reading {
                    at: at(i),
                    device: inrow.id.clone(),
                    point: point.id.clone(),
                    metric: point.metric.clone(),
                    value,
                    unit: point.unit.clone(),
                    zone: inrow.zone.clone(),
                    rack: inrow.rack.clone(),
                    label: None,
                    quality,
                    error,
                }
            })
            .collect();
        let n = readings.len();
        modbus_out.push(readings);
        n
    });

    // (c) The engine, fed each poll's readings of both devices.
    let mut engine = Engine::new(config.engine.clone());
    stage("engine", |i| {
        let now = at(i);
        engine.handle_timeout(now);
        let mut n = 0;
        for r in snmp_out[i].iter().chain(&modbus_out[i]) {
            engine.handle_reading(now, r);
            n += 1;
        }
        while engine.poll_event().is_some() {}
        n
    });
}
