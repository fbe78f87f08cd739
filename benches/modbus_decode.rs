//! Criterion benches for the Modbus hot paths: decoding a 50-point block answer, planning
//! a 100-point profile, and the simulator's encoding of a point.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hallmonitor::config::BlockLimits;
use hallmonitor::profiles::{ModbusProfile, Profile, ProfileConfig};
use hallmonitor::sources::modbus::decode::{decode_point, encode_point};
use hallmonitor::sources::modbus::plan;

fn profile(points: usize) -> std::sync::Arc<ModbusProfile> {
    let mut s = String::from("protocol = \"modbus\"\n");
    let types = ["i16", "u16", "f32", "u32", "f64"];
    let mut address = 0u32;
    for i in 0..points {
        let ty = types[i % types.len()];
        let wo = if i % 3 == 0 { "little" } else { "big" };
        s.push_str(&format!(
            "[[points]]\nname = \"p{i}\"\nmetric = \"inlet_temp_c\"\naddress = {address}\ntype = \"{ty}\"\nword_order = \"{wo}\"\nscale = 0.1\n"
        ));
        address += match ty {
            "f32" | "u32" => 2,
            "f64" => 4,
            _ => 1,
        };
    }
    match toml::from_str::<ProfileConfig>(&s).unwrap().build("bench").unwrap() {
        Profile::Modbus(p) => p,
        Profile::Snmp(_) => unreachable!(),
    }
}

fn benches(c: &mut Criterion) {
    let limits = BlockLimits { max_gap: 10, max_block: 125 };
    let p50 = profile(50);
    let blocks = plan::plan(&p50.points, limits);
    // A block answer with plausible register contents.
    let answers: Vec<Vec<u16>> = blocks
        .iter()
        .map(|b| {
            let mut words = vec![0u16; usize::from(b.count)];
            for &i in &b.points {
                let pt = &p50.points[i];
                let enc = encode_point(pt, 21.5 + i as f64).unwrap();
                let at = usize::from(pt.address - b.start);
                words[at..at + enc.len()].copy_from_slice(&enc);
            }
            words
        })
        .collect();

    c.bench_function("decode 50 mixed points from block answers", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for (block, words) in blocks.iter().zip(&answers) {
                for &i in &block.points {
                    let pt = &p50.points[i];
                    if let Some(w) = block.slice(pt, black_box(words)) {
                        sum += decode_point(pt, w).unwrap_or(0.0);
                    }
                }
            }
            sum
        })
    });

    let p100 = profile(100);
    c.bench_function("plan 100 points", |b| b.iter(|| plan::plan(black_box(&p100.points), limits)));

    let pt = &p50.points[2];
    c.bench_function("encode one f32 point (simulator)", |b| b.iter(|| encode_point(pt, black_box(230.5))));
}

criterion_group!(modbus, benches);
criterion_main!(modbus);
