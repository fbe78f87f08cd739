//! A fleet of simulated Modbus TCP devices for `scripts/bench-modbus`.
//!
//! Starts N devices (one loopback port each, or all behind one port as unit ids with
//! `--shared-port`), each serving P holding registers through `hallmonitor::sim::modbus`,
//! writes a hallmonitor config that polls them all, prints `ready <config>` and serves
//! until SIGINT/SIGTERM. Then it prints, from the device side, when each device was
//! polled: how many polls arrived, how many came one interval after the previous one
//! (on schedule) and how many came late, with missed ticks.
//!
//! Usage: modbus_fleet [--devices N] [--points P] [--interval-ms MS] [--shared-port] --config-out PATH

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallmonitor::model::DeviceId;
use hallmonitor::profiles::{Profile, ProfileConfig};
use hallmonitor::sim::SimValues;
use hallmonitor::sim::modbus::{RequestHook, SimModbusDevice, serve_with_hook};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Opts {
    devices: usize,
    points: usize,
    interval: Duration,
    shared_port: bool,
    config_out: String,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        devices: 200,
        points: 50,
        interval: Duration::from_secs(1),
        shared_port: false,
        config_out: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--devices" => o.devices = val()?.parse().map_err(|e| format!("--devices: {e}"))?,
            "--points" => o.points = val()?.parse().map_err(|e| format!("--points: {e}"))?,
            "--interval-ms" => {
                o.interval = Duration::from_millis(val()?.parse().map_err(|e| format!("--interval-ms: {e}"))?)
            }
            "--shared-port" => o.shared_port = true,
            "--config-out" => o.config_out = val()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.config_out.is_empty() {
        return Err("--config-out PATH is required".into());
    }
    if o.shared_port && o.devices > 247 {
        return Err("--shared-port allows at most 247 unit ids".into());
    }
    if !(1..=125).contains(&o.points) {
        return Err("--points must be 1..=125 (one block read)".into());
    }
    Ok(o)
}

/// A profile of P holding registers: alternating i16 temperatures in tenths and u16 percentages.
fn profile_toml(points: usize) -> String {
    let mut s = String::from("protocol = \"modbus\"\naddressing = \"zero-based\"\n");
    for i in 0..points {
        let (metric, ty) = if i % 2 == 0 { ("inlet_temp_c", "i16") } else { ("humidity_pct", "u16") };
        s.push_str(&format!(
            "[[points]]\nname = \"r{i}\"\nmetric = \"{metric}\"\ntable = \"holding\"\naddress = {i}\ntype = \"{ty}\"\nscale = 0.1\n"
        ));
    }
    s
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("modbus_fleet: {e}");
            std::process::exit(2);
        }
    };
    let profile_text = profile_toml(o.points);
    let profile = match toml::from_str::<ProfileConfig>(&profile_text).map(|c| c.build("bench")) {
        Ok(Ok(Profile::Modbus(p))) => p,
        _ => {
            eprintln!("modbus_fleet: generated profile does not build");
            std::process::exit(1);
        }
    };
    let values = Arc::new(SimValues::new());
    let cancel = CancellationToken::new();
    let polls: Arc<Mutex<HashMap<DeviceId, Vec<Instant>>>> = Arc::new(Mutex::new(HashMap::new()));
    let hook: RequestHook = {
        let polls = polls.clone();
        Arc::new(move |d: &DeviceId| {
            let now = Instant::now();
            polls.lock().unwrap_or_else(|e| e.into_inner()).entry(d.clone()).or_default().push(now);
        })
    };

    let ids: Vec<DeviceId> = (0..o.devices).map(|i| DeviceId::new(format!("dev{i:03}"))).collect();
    for (n, id) in ids.iter().enumerate() {
        for p in &profile.points {
            values.set(id, &p.id, 0, 20.0 + (n % 10) as f64 + f64::from(p.address) / 10.0);
        }
    }
    let mut addresses = Vec::with_capacity(o.devices);
    let mut listeners = Vec::new();
    if o.shared_port {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = l.local_addr().expect("local addr").to_string();
        let units: HashMap<u8, SimModbusDevice> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| ((i + 1) as u8, SimModbusDevice { id: id.clone(), profile: profile.clone() }))
            .collect();
        for i in 0..o.devices {
            addresses.push((addr.clone(), i + 1));
        }
        listeners.push((l, units));
    } else {
        for id in &ids {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            addresses.push((l.local_addr().expect("local addr").to_string(), 1));
            listeners.push((l, HashMap::from([(1u8, SimModbusDevice { id: id.clone(), profile: profile.clone() })])));
        }
    }
    for (l, units) in listeners {
        tokio::spawn(serve_with_hook(l, units, values.clone(), cancel.clone(), Some(hook.clone())));
    }

    let mut cfg = String::from("[site]\nid = \"bench\"\n\n[polling]\n");
    cfg.push_str(&format!("interval = \"{}ms\"\ntimeout = \"500ms\"\nretries = 1\n\n", o.interval.as_millis()));
    cfg.push_str("[[zones]]\nid = \"hall1\"\n\n");
    for (id, (addr, unit)) in ids.iter().zip(&addresses) {
        cfg.push_str(&format!(
            "[[devices]]\nid = \"{id}\"\nprofile = \"bench\"\nzone = \"hall1\"\n[devices.modbus]\naddress = \"{addr}\"\nunit = {unit}\n\n"
        ));
    }
    cfg.push_str("[profiles.bench]\n");
    // The profile's top-level keys and [[points]] arrays, re-rooted under [profiles.bench].
    cfg.push_str(&profile_text.replace("[[points]]", "[[profiles.bench.points]]"));
    std::fs::write(&o.config_out, cfg).expect("write config");
    println!("ready {}", o.config_out);

    let started = Instant::now();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();

    let polls = polls.lock().unwrap_or_else(|e| e.into_inner());
    let period = o.interval.as_secs_f64();
    let (mut total, mut on_schedule, mut late, mut missed, mut early) = (0usize, 0usize, 0usize, 0u64, 0usize);
    let mut worst = 0f64;
    for id in &ids {
        let times = polls.get(id).map(Vec::as_slice).unwrap_or(&[]);
        total += times.len();
        for w in times.windows(2) {
            let gap = w[1].duration_since(w[0]).as_secs_f64();
            let dev = (gap - period).abs();
            worst = worst.max(dev);
            if dev <= 0.1 * period {
                on_schedule += 1;
            } else if gap > period {
                late += 1;
                missed += ((gap / period).round() as u64).saturating_sub(1);
            } else {
                early += 1;
            }
        }
    }
    let devices_polled = ids.iter().filter(|id| polls.get(*id).is_some_and(|v| !v.is_empty())).count();
    println!(
        "fleet: {} devices x {} registers, served for {:.1} s",
        o.devices,
        o.points,
        started.elapsed().as_secs_f64()
    );
    println!("fleet: devices polled at least once: {devices_polled}");
    println!("fleet: poll requests received: {total}");
    println!(
        "fleet: successive polls of a device: on schedule (interval +-10%) {on_schedule}, late {late} (missed ticks {missed}), early {early}; worst deviation {:.0} ms",
        worst * 1000.0
    );
}
