//! Engine throughput: readings of 400 devices x 50 points (200 racks in 10 zones, each rack
//! with a 50-probe sensor string and a PDU with 48 outlets, a phase and a total) through
//! thresholds and correlation, polled every 10 s of virtual time. About 1 % of the sensor
//! strings run hot in some rounds, so breaches, incidents and updates are part of the cost.
//!
//! Run: `cargo bench --bench engine`. Criterion prints the throughput in elements (readings)
//! per second. After the timed runs the bench prints the engine state size after 1 and after 30
//! simulated days of a slice of the site, to show memory does not grow with run length.

use std::path::Path;

use arcstr::ArcStr;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hallmonitor::config::{EngineSettings, load_str};
use hallmonitor::engine::Engine;
use hallmonitor::model::{DeviceId, Metric, PointId, Quality, RackId, Reading, Timestamp, ZoneId};

const ZONES: usize = 10;
const RACKS_PER_ZONE: usize = 20;
const POINTS: usize = 50;
const ROUNDS: usize = 16;
const T0: i64 = 1_793_577_600_000;

const PROFILES: &str = r#"
[profiles.bench-probe]
protocol = "modbus"
[[profiles.bench-probe.points]]
name = "temp"
metric = "inlet_temp_c"
table = "input"
address = 0
type = "i16"
[profiles.bench-pdu]
protocol = "modbus"
[[profiles.bench-pdu.points]]
name = "power"
metric = "power_w"
table = "input"
address = 0
type = "u32"
"#;

fn settings(zones: usize, racks_per_zone: usize) -> EngineSettings {
    let mut c = String::from("[site]\nid = \"bench\"\n");
    for z in 0..zones {
        let racks: Vec<String> = (0..racks_per_zone).map(|r| format!("\"R{z:02}{r:02}\"")).collect();
        c.push_str(&format!("[[zones]]\nid = \"z{z:02}\"\nracks = [{}]\n", racks.join(", ")));
    }
    for z in 0..zones {
        for r in 0..racks_per_zone {
            for (kind, profile, extra) in [("th", "bench-probe", ""), ("pdu", "bench-pdu", "breaker_a = 32.0\n")] {
                c.push_str(&format!(
                    "[[devices]]\nid = \"{kind}-{z:02}{r:02}\"\nprofile = \"{profile}\"\nzone = \"z{z:02}\"\nrack = \"R{z:02}{r:02}\"\n{extra}[devices.modbus]\naddress = \"127.0.0.1:1502\"\n"
                ));
            }
        }
    }
    c.push_str(PROFILES);
    load_str(Path::new("bench.toml"), &c).expect("bench config loads").config.engine
}

/// The ids and units of one point, allocated once: sources clone these `Arc`s into every
/// reading (that is why the model's ids are `ArcStr`), so the bench does the same.
struct PointIds {
    device: DeviceId,
    point: PointId,
    metric: Metric,
    unit: ArcStr,
    zone: ZoneId,
    rack: RackId,
    label: Option<ArcStr>,
}

impl PointIds {
    fn new(device: &str, point: &str, label: Option<&str>, metric: &str, unit: &str, zone: &str, rack: &str) -> Self {
        Self {
            device: DeviceId::new(device),
            point: PointId::new(point),
            metric: Metric::new(metric),
            unit: ArcStr::from(unit),
            zone: ZoneId::new(zone),
            rack: RackId::new(rack),
            label: label.map(ArcStr::from),
        }
    }

    fn reading(&self, v: f64) -> Reading {
        Reading {
            at: Timestamp(0),
            device: self.device.clone(),
            point: self.point.clone(),
            metric: self.metric.clone(),
            value: Some(v),
            unit: self.unit.clone(),
            zone: self.zone.clone(),
            rack: Some(self.rack.clone()),
            label: self.label.clone(),
            quality: Quality::Good,
            error: None,
        }
    }
}

/// `ROUNDS` poll rounds of every point of every device.
fn rounds(zones: usize, racks_per_zone: usize) -> Vec<Vec<Reading>> {
    let mut ids: Vec<(usize, usize, usize, PointIds)> = Vec::new(); // (zone, rack, kind/index, ids)
    for z in 0..zones {
        let zone = format!("z{z:02}");
        for r in 0..racks_per_zone {
            let rack = format!("R{z:02}{r:02}");
            let th = format!("th-{z:02}{r:02}");
            let pdu = format!("pdu-{z:02}{r:02}");
            for p in 0..POINTS {
                ids.push((
                    z,
                    r,
                    p,
                    PointIds::new(&th, &format!("temp{p:02}"), None, "inlet_temp_c", "°C", &zone, &rack),
                ));
            }
            for o in 0..POINTS - 2 {
                let label = format!("outlet{o:02}");
                let pi = PointIds::new(&pdu, "outlet_current", Some(&label), "outlet_current_a", "A", &zone, &rack);
                ids.push((z, r, 100 + o, pi));
            }
            ids.push((z, r, 200, PointIds::new(&pdu, "current", None, "phase_current_a", "A", &zone, &rack)));
            ids.push((z, r, 300, PointIds::new(&pdu, "power", None, "power_w", "W", &zone, &rack)));
        }
    }
    let mut out = Vec::new();
    for round in 0..ROUNDS {
        let mut rs = Vec::with_capacity(ids.len());
        for (z, r, k, pi) in &ids {
            let v = match *k {
                p @ 0..100 => {
                    // Two racks of the site run hot in the second half of the rounds.
                    let hot = (z * racks_per_zone + r) % 100 == 7 && round >= ROUNDS / 2;
                    let noise = ((round * 31 + p * 17 + r) % 10) as f64 * 0.1;
                    if hot { 29.0 + noise } else { 22.0 + noise }
                }
                o @ 100..200 => 0.3 + ((round + o) % 7) as f64 * 0.01,
                200 => 14.0,
                _ => 3200.0 + round as f64,
            };
            rs.push(pi.reading(v));
        }
        out.push(rs);
    }
    out
}

/// A reading whose ids share no allocation with any other reading.
fn deep_copy(r: &Reading) -> Reading {
    Reading {
        at: r.at,
        device: DeviceId::new(r.device.as_str()),
        point: PointId::new(r.point.as_str()),
        metric: Metric::new(r.metric.as_str()),
        value: r.value,
        unit: ArcStr::from(&*r.unit),
        zone: ZoneId::new(r.zone.as_str()),
        rack: r.rack.as_ref().map(|x| RackId::new(x.as_str())),
        label: r.label.as_deref().map(ArcStr::from),
        quality: r.quality,
        error: None,
    }
}

/// CPU time this thread has run, from the kernel's scheduler statistics (ns). The machine this
/// runs on may be shared, so wall-clock throughput understates what one core does.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn bench_engine(c: &mut Criterion) {
    let site = rounds(ZONES, RACKS_PER_ZONE);
    let per_round = site[0].len();
    assert_eq!(per_round, 400 * POINTS);
    let mut engine = Engine::new(settings(ZONES, RACKS_PER_ZONE));
    let mut i: usize = 0;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(per_round as u64));
    group.sample_size(20);
    group.bench_function("400 devices x 50 points, one poll round", |b| {
        b.iter(|| {
            let now = Timestamp(T0 + i as i64 * 10_000);
            engine.handle_timeout(now);
            for r in &site[i % ROUNDS] {
                engine.handle_reading(now, r);
            }
            while engine.poll_event().is_some() {}
            i += 1;
        })
    });
    // The same rounds with every id freshly allocated per reading (a source that builds its
    // ids from strings on each poll instead of cloning them from the device spec): the hash
    // and compare then read cold memory, which this figure shows.
    let fresh: Vec<Vec<Reading>> = site.iter().map(|round| round.iter().map(deep_copy).collect()).collect();
    let mut engine2 = Engine::new(settings(ZONES, RACKS_PER_ZONE));
    let mut j: usize = 0;
    group.bench_function("400 devices x 50 points, one poll round, ids allocated per reading", |b| {
        b.iter(|| {
            let now = Timestamp(T0 + j as i64 * 10_000);
            engine2.handle_timeout(now);
            for r in &fresh[j % ROUNDS] {
                engine2.handle_reading(now, r);
            }
            while engine2.poll_event().is_some() {}
            j += 1;
        })
    });
    drop(fresh);
    group.finish();
    // The same work timed in CPU time (what one core does, whatever else runs on the machine).
    let mut e = Engine::new(settings(ZONES, RACKS_PER_ZONE));
    let (wall, cpu0) = (std::time::Instant::now(), thread_cpu_ns());
    let n_rounds = 200;
    for k in 0..n_rounds {
        let now = Timestamp(T0 + k as i64 * 10_000);
        e.handle_timeout(now);
        for r in &site[k % ROUNDS] {
            e.handle_reading(now, r);
        }
        while e.poll_event().is_some() {}
    }
    let wall = wall.elapsed().as_secs_f64();
    let n = (n_rounds * per_round) as f64;
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
        let cpu = (b - a) as f64 / 1e9;
        println!(
            "engine, 400 devices x 50 points, {n_rounds} rounds: {:.2} M readings per CPU-second ({:.2} M/s wall, CPU share {:.0} %)",
            n / cpu / 1e6,
            n / wall / 1e6,
            cpu / wall * 100.0
        );
    }

    let c = engine.counters();
    println!(
        "after {i} rounds ({} readings): {} breaches, {} incidents opened, {} incident events",
        i * per_round,
        c.breaches,
        c.incidents_opened,
        c.incident_events
    );

    // Memory against run length: a slice of the same site (10 devices x 50 points, to keep this
    // quick) polled every 60 s for 1 and for 30 simulated days.
    let small = rounds(1, 5);
    for days in [1i64, 30] {
        let mut e = Engine::new(settings(1, 5));
        let polls = days * 86_400 / 60;
        for k in 0..polls {
            let now = Timestamp(T0 + k * 60_000);
            e.handle_timeout(now);
            for r in &small[k as usize % ROUNDS] {
                e.handle_reading(now, r);
            }
            while e.poll_event().is_some() {}
        }
        let bytes = serde_json::to_vec(&e.export_state()).map(|v| v.len()).unwrap_or(0);
        println!(
            "engine state (JSON) after {days} simulated day(s), 10 devices x 50 points every 60 s: {bytes} bytes ({} readings)",
            polls as usize * small[0].len()
        );
    }
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
