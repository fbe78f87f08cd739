//! Property tests of the engine's invariants over random reading streams.

mod support;

use std::collections::HashMap;

use hallmonitor::engine::{Event, IncidentEventKind};
use hallmonitor::model::{Reading, Timestamp};
use proptest::prelude::*;
use support::engine::*;

const CONFIG: &str = r#"
[site]
id = "fra1"
[polling]
down_after = 2
[correlation]
clear_hold = "5m"
update_min_interval = "60s"
[patterns]
recurrence = 2
window = "1h"
major_after = "20m"
[thresholds.inlet_temp_c]
rise = 4.0
rise_within = "3m"
[[zones]]
id = "hall1-b"
racks = ["B01", "B02"]
adjacent = ["hall1-c"]
[[zones]]
id = "hall1-c"
racks = ["C01"]
"#;

/// (device, zone, rack)
const DEVICES: [(&str, &str, &str); 3] =
    [("th-b1", "hall1-b", "B01"), ("th-b2", "hall1-b", "B02"), ("th-c1", "hall1-c", "C01")];

fn config() -> String {
    let mut c = CONFIG.to_owned();
    for (id, zone, rack) in DEVICES {
        c.push_str(&device(id, "test-probe", zone, Some(rack), ""));
    }
    c
}

#[derive(Debug, Clone)]
enum Op {
    Temp { dt_s: i64, dev: usize, value: f64 },
    Rh { dt_s: i64, dev: usize, value: f64 },
    Fail { dt_s: i64, dev: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..120, 0usize..3, 10.0f64..36.0).prop_map(|(dt_s, dev, value)| Op::Temp { dt_s, dev, value }),
        2 => (1i64..120, 0usize..3, 5.0f64..95.0).prop_map(|(dt_s, dev, value)| Op::Rh { dt_s, dev, value }),
        1 => (1i64..120, 0usize..3).prop_map(|(dt_s, dev)| Op::Fail { dt_s, dev }),
    ]
}

fn reading(t: i64, op: &Op) -> Reading {
    match *op {
        Op::Temp { dev, value, .. } => {
            let (id, zone, rack) = DEVICES[dev];
            temp(t, id, zone, Some(rack), value)
        }
        Op::Rh { dev, value, .. } => {
            let (id, zone, rack) = DEVICES[dev];
            good(t, id, "rh", "humidity_pct", "%", value, zone, Some(rack))
        }
        Op::Fail { dev, .. } => {
            let (id, zone, _) = DEVICES[dev];
            bad(t, id, "temp", "inlet_temp_c", zone)
        }
    }
}

fn check_membership(d: &Driver) -> Result<(), TestCaseError> {
    let open = d.engine.open_incidents();
    let active = d.engine.active_breaches();
    for b in &active {
        let holders = open
            .iter()
            .filter(|i| {
                i.breaches.iter().any(|m| {
                    m.cleared_at.is_none()
                        && m.device == b.device
                        && m.point == b.point
                        && m.label == b.label
                        && m.rule == b.rule
                })
            })
            .count();
        prop_assert_eq!(holders, 1, "breach {:?} is in {} open incidents", b, holders);
    }
    for i in &open {
        for m in i.breaches.iter().filter(|m| m.cleared_at.is_none()) {
            let held = active
                .iter()
                .any(|b| b.device == m.device && b.point == m.point && b.label == m.label && b.rule == m.rule);
            prop_assert!(held, "member {:?} of {} is not an active breach", m, i.incident_id);
        }
    }
    let mut keys: Vec<_> = open.iter().map(|i| (i.zone.clone(), i.category)).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    prop_assert_eq!(before, keys.len(), "one open incident per zone and category");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_invariants_hold_over_random_streams(ops in proptest::collection::vec(op(), 1..300)) {
        let mut d = Driver::new(settings(&config()));
        let mut t = T0;
        for op in &ops {
            let dt = match op { Op::Temp { dt_s, .. } | Op::Rh { dt_s, .. } | Op::Fail { dt_s, .. } => *dt_s };
            t += dt * 1000;
            d.feed(t, &[reading(t, op)]);
            check_membership(&d)?;
        }
        // Then every input goes quiet and healthy: everything resolves after clear_hold.
        for _ in 0..60 {
            t += 10_000;
            let calm: Vec<Reading> = DEVICES
                .iter()
                .flat_map(|(id, zone, rack)| {
                    [temp(t, id, zone, Some(rack), 23.0), good(t, id, "rh", "humidity_pct", "%", 45.0, zone, Some(rack))]
                })
                .collect();
            d.feed(t, &calm);
            check_membership(&d)?;
        }
        d.advance_to(t + 30 * MIN);
        prop_assert!(d.engine.open_incidents().is_empty(), "still open: {:?}", d.engine.open_incidents());
        prop_assert!(d.engine.active_breaches().is_empty());

        // Per incident: opened < updated* < resolved, resolved exactly clear_hold after the last clear.
        let mut seen: HashMap<String, Vec<IncidentEventKind>> = HashMap::new();
        let mut last_time: HashMap<String, Timestamp> = HashMap::new();
        for (at, e) in &d.events {
            if let Event::Incident(i) = e {
                seen.entry(i.incident_id.clone()).or_default().push(i.event);
                if let Some(prev) = last_time.insert(i.incident_id.clone(), *at) {
                    prop_assert!(prev <= *at);
                }
                if i.event == IncidentEventKind::Resolved {
                    let last_clear = i.breaches.iter().filter_map(|b| b.cleared_at).max().unwrap();
                    prop_assert!(i.breaches.iter().all(|b| b.cleared_at.is_some()));
                    prop_assert_eq!(i.resolved_at, Some(Timestamp(last_clear.0 + 5 * MIN)));
                    prop_assert!(i.chronicle.is_some());
                }
            }
        }
        for (id, kinds) in &seen {
            prop_assert_eq!(kinds.first(), Some(&IncidentEventKind::Opened), "{}", id);
            prop_assert_eq!(kinds.last(), Some(&IncidentEventKind::Resolved), "{}", id);
            prop_assert!(kinds[1..kinds.len() - 1].iter().all(|k| *k == IncidentEventKind::Updated), "{}: {:?}", id, kinds);
        }
        let c = d.engine.counters();
        prop_assert_eq!(c.incidents_opened as usize, seen.len());
        // State round-trips through JSON at any point.
        let json = serde_json::to_string(&d.engine.export_state()).unwrap();
        let _: hallmonitor::engine::EngineState = serde_json::from_str(&json).unwrap();
        // The daemon saves the borrowed view: the same bytes.
        prop_assert_eq!(serde_json::to_string(&d.engine.state_view()).unwrap(), json);
    }
}
