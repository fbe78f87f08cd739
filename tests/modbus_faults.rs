//! Misbehaving peers and scheduling: garbled, short and mismatched replies are errors and
//! never panics; a device that never answers neither delays another device nor bunches
//! its own polls (missed ticks are skipped and counted).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hallmonitor::config::{BlockLimits, DeviceSpec, Transport};
use hallmonitor::model::{DeviceId, PointId, Quality, Reading, ZoneId};
use hallmonitor::profiles::{ModbusProfile, Profile, ProfileConfig};
use hallmonitor::sim::modbus::{SimModbusDevice, serve};
use hallmonitor::sim::{SimFault, SimValues};
use support::sources::{readings_until_done, source_context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PROFILE: &str = r#"
protocol = "modbus"
[[points]]
name = "a"
metric = "inlet_temp_c"
address = 0
type = "i16"
scale = 0.1
[[points]]
name = "b"
metric = "humidity_pct"
address = 1
type = "u16"
scale = 0.1
"#;

fn profile() -> Arc<ModbusProfile> {
    let cfg: ProfileConfig = toml::from_str(PROFILE).unwrap();
    match cfg.build("t").unwrap() {
        Profile::Modbus(p) => p,
        Profile::Snmp(_) => unreachable!(),
    }
}

fn spec(id: &str, address: String, interval: Duration, timeout: Duration) -> DeviceSpec {
    DeviceSpec {
        id: DeviceId::new(id),
        zone: ZoneId::new("z"),
        rack: None,
        interval,
        timeout,
        retries: 0,
        down_after: 1,
        profile: Profile::Modbus(profile()),
        transport: Transport::ModbusTcp { address, unit: 1, blocks: BlockLimits { max_gap: 10, max_block: 125 } },
        enabled: true,
    }
}

/// How a fake device answers a request (the 12 request bytes in, reply bytes out).
type Reply = fn(&[u8]) -> Vec<u8>;

/// A fake device that answers every request with `reply(request)` bytes.
async fn fake_device(reply: Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 12];
                while s.read_exact(&mut req).await.is_ok() {
                    if s.write_all(&reply(&req)).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// MBAP header + PDU for a read-holding-registers reply to `req` with `data` bytes.
fn frame(req: &[u8], unit: u8, byte_count: u8, data: &[u8]) -> Vec<u8> {
    let len = (3 + data.len()) as u16;
    let mut f = vec![req[0], req[1], 0, 0, (len >> 8) as u8, len as u8, unit, 0x03, byte_count];
    f.extend_from_slice(data);
    f
}

async fn poll_once(spec: DeviceSpec) -> Vec<Reading> {
    let (ctx, rx) = source_context(64, true);
    let tasks = hallmonitor::sources::modbus::spawn(vec![spec], ctx);
    readings_until_done(rx, tasks).await
}

#[tokio::test]
async fn garbled_short_and_mismatched_replies_are_bad_readings_not_panics() {
    let cases: [(&str, Reply); 4] = [
        // One register where two were asked for.
        ("short", |req| frame(req, req[6], 2, &[0, 1])),
        // The answer of another unit id.
        ("wrong unit", |req| frame(req, req[6].wrapping_add(1), 4, &[0, 1, 0, 2])),
        // A stale transaction id.
        ("wrong transaction", |req| {
            let mut f = frame(req, req[6], 4, &[0, 1, 0, 2]);
            f[1] = f[1].wrapping_add(7);
            f
        }),
        // Noise.
        ("garbage", |_| vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x02, 0xff, 0xff]),
    ];
    let expect = |name: &str| match name {
        "short" => "asked for 2 registers, got 1",
        "garbage" => "garbled frame",
        _ => "mismatching headers",
    };
    for (name, reply) in cases {
        let address = fake_device(reply).await;
        let readings = poll_once(spec(name, address, Duration::from_secs(1), Duration::from_millis(300))).await;
        assert_eq!(readings.len(), 2, "{name}");
        for r in &readings {
            assert_eq!(r.quality, Quality::Bad, "{name}: {r:?}");
            let err = r.error.as_deref().unwrap();
            assert!(!err.contains("exception"), "{name}: {err}");
            assert!(err.starts_with("bad reply from unit 1 at 127.0.0.1:"), "{name}: {err}");
            assert!(err.contains(expect(name)), "{name}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_does_not_delay_another_and_its_missed_ticks_are_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let values = Arc::new(SimValues::new());
    let p = profile();
    values.set(&DeviceId::new("fast"), &PointId::new("a"), 0, 20.0);
    values.set_fault(&DeviceId::new("slow"), SimFault::Silent);
    let cancel_sim = CancellationToken::new();
    // Two listeners: the devices are on different addresses, as separate TCP devices are.
    let listener2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address2 = listener2.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        listener,
        HashMap::from([(1, SimModbusDevice { id: DeviceId::new("fast"), profile: p.clone() })]),
        values.clone(),
        cancel_sim.clone(),
    ));
    tokio::spawn(serve(
        listener2,
        HashMap::from([(1, SimModbusDevice { id: DeviceId::new("slow"), profile: p.clone() })]),
        values.clone(),
        cancel_sim.clone(),
    ));

    let (ctx, mut rx) = source_context(4096, false);
    let (stats, cancel) = (ctx.stats.clone(), ctx.cancel.clone());
    // The slow device's poll (a 1 s timeout) spans several of its 200 ms ticks.
    let devices = vec![
        spec("fast", address, Duration::from_millis(100), Duration::from_secs(1)),
        spec("slow", address2, Duration::from_millis(200), Duration::from_secs(1)),
    ];
    let tasks = hallmonitor::sources::modbus::spawn(devices, ctx);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cancel.cancel();
    for t in tasks {
        t.await.expect("no task panicked");
    }
    let mut polls: HashMap<String, usize> = HashMap::new();
    while let Ok(r) = rx.try_recv() {
        if r.point.as_str() == "a" {
            *polls.entry(r.device.as_str().to_owned()).or_default() += 1;
        }
    }
    let fast = polls.get("fast").copied().unwrap_or(0);
    let slow = polls.get("slow").copied().unwrap_or(0);
    // Had the slow device held the fast one up, the fast one would poll at most about as
    // often as the slow one finishes (once a second).
    assert!(fast >= 8, "fast device polled {fast} times in 2.5 s");
    assert!(slow <= 3, "slow device's polls must not overlap or bunch: {slow}");
    assert!(stats.modbus.polls_late.load(Ordering::Relaxed) >= 4, "{:?}", stats.modbus.snapshot());
    cancel_sim.cancel();
}
