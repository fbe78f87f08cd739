//! The problem-statement scenario (docs/scenario.md#the-engine-test) on a virtual clock: three weeks of a
//! hall with four zones; one zone overheats in the afternoon every few days, a rack's PDU load
//! steps up mid-way, and three weeks in a major event follows.

mod support;

use hallmonitor::engine::{Event, IncidentEventKind, PatternState, PatternTrigger};
use hallmonitor::model::{Category, RackId, Reading, Severity};
use support::engine::*;

const ZONES: [(&str, [&str; 4]); 4] = [
    ("hall1-a", ["A01", "A02", "A03", "A04"]),
    ("hall1-b", ["B05", "B06", "B07", "B08"]),
    ("hall1-c", ["C09", "C10", "C11", "C12"]),
    ("hall1-d", ["D13", "D14", "D15", "D16"]),
];

/// (day, start minute of day UTC, minutes, B07 inlet °C): the hot afternoons of hall1-b.
const EPISODES: [(i64, i64, i64, f64); 6] = [
    (2, 14 * 60 + 20, 70, 28.5),
    (5, 15 * 60 + 10, 60, 28.4),
    (9, 14 * 60 + 40, 70, 29.0),
    (13, 14 * 60 + 30, 60, 28.6),
    (16, 15 * 60, 60, 28.8),
    // Three weeks in: rack density and poor airflow, throttling, the major event.
    (20, 14 * 60 + 10, 200, 33.5),
];

const STEP: i64 = 2 * MIN;
const LOAD_STEP_AT: i64 = 8 * DAY + 12 * HOUR;

fn config() -> String {
    let mut c = String::from(
        r#"
[site]
id = "fra1"

[correlation]
clear_hold = "10m"
update_min_interval = "60s"
baseline_window = "7d"

[patterns]
recurrence = 3
window = "30d"
major_after = "2h"
"#,
    );
    for (zone, racks) in ZONES {
        let adjacent = match zone {
            "hall1-b" => r#"["hall1-a", "hall1-c"]"#,
            "hall1-a" | "hall1-c" => r#"["hall1-b"]"#,
            _ => "[]",
        };
        let rack_list: Vec<String> = racks.iter().map(|r| format!("\"{r}\"")).collect();
        c.push_str(&format!(
            "[[zones]]\nid = \"{zone}\"\nracks = [{}]\nadjacent = {adjacent}\n\n",
            rack_list.join(", ")
        ));
    }
    for (zone, racks) in ZONES {
        for r in racks {
            let l = r.to_lowercase();
            c.push_str(&device(&format!("th-{l}"), "test-probe", zone, Some(r), ""));
            c.push_str(&device(&format!("pdu-{l}"), "test-pdu", zone, Some(r), ""));
        }
    }
    c
}

/// Inlet temperature of a rack at `t` (ms since T0).
fn inlet(t: i64, zone: &str, rack: &str, k: usize) -> f64 {
    let noise = ((t / STEP) as usize * 7 + k * 13) % 10;
    let normal = 22.0 + noise as f64 * 0.06;
    if zone != "hall1-b" {
        return normal;
    }
    let (day, minute) = (t / DAY, (t % DAY) / MIN);
    for (d, start, len, peak) in EPISODES {
        if day == d && minute >= start && minute < start + len {
            // The major event builds up: warm first, then past the allowable limit.
            let peak = if len > 120 && minute < start + 40 { 29.0 } else { peak };
            return match rack {
                "B07" => peak,
                "B08" => peak - 0.8,
                "B06" => 26.0,
                _ => normal,
            };
        }
    }
    normal
}

fn power(t: i64, rack: &str, k: usize) -> f64 {
    let noise = ((t / STEP) as usize * 3 + k) % 5;
    let base = if rack == "B07" && t >= LOAD_STEP_AT { 5500.0 } else { 4000.0 };
    base + noise as f64 * 10.0
}

/// What the PDUs report.
#[derive(Clone, Copy, PartialEq)]
enum Meter {
    Power,
    /// Three phase currents and a voltage, no power (many metered PDUs).
    CurrentAndVoltage,
    /// Three phase currents only.
    Current,
}

fn tick(t: i64, meter: Meter) -> Vec<Reading> {
    let mut out = Vec::new();
    for (zone, racks) in ZONES {
        for (k, r) in racks.iter().enumerate() {
            let l = r.to_lowercase();
            let (at, pdu) = (T0 + t, format!("pdu-{l}"));
            out.push(temp(at, &format!("th-{l}"), zone, Some(r), inlet(t, zone, r, k)));
            let p = power(t, r, k);
            if meter == Meter::Power {
                out.push(good(at, &pdu, "power", "power_w", "W", p, zone, Some(r)));
                continue;
            }
            for phase in ["phase-1", "phase-2", "phase-3"] {
                let mut i = good(at, &pdu, "current", "phase_current_a", "A", p / 230.0 / 3.0, zone, Some(r));
                i.label = Some(phase.into());
                out.push(i);
            }
            if meter == Meter::CurrentAndVoltage {
                out.push(good(at, &pdu, "voltage", "voltage_v", "V", 230.0, zone, Some(r)));
            }
        }
    }
    out
}

fn run_weeks(days: i64) -> Driver {
    run_metered(days, Meter::Power)
}

fn run_metered(days: i64, meter: Meter) -> Driver {
    let mut d = Driver::new(settings(&config()));
    let mut t = 0;
    while t < days * DAY {
        d.feed(T0 + t, &tick(t, meter));
        t += STEP;
    }
    d.advance_to(T0 + days * DAY);
    d
}

#[test]
fn pdus_reporting_current_without_power_still_give_the_load_context() {
    // Current and voltage: watts as current × voltage, said so.
    let d = run_metered(10, Meter::CurrentAndVoltage);
    let third = d.opened()[2];
    let b07 = third.context.rack_load.iter().find(|l| l.rack.as_str() == "B07").expect("B07 load context");
    assert_eq!(b07.basis, "current_x_voltage");
    assert!((b07.change_pct - 37.5).abs() < 1.5, "{b07:?}");
    assert!((b07.baseline_w.unwrap_or_default() - 4020.0).abs() < 30.0, "{b07:?}");
    // 38 %: the rack is sampled once per instant, at its first reading of the poll.
    assert_eq!(third.context.hint.as_deref(), Some("B07 draws 38 % more than its 7d median (from current × voltage)"));

    // Current only: amps against an amps baseline, no watts made up.
    let d = run_metered(10, Meter::Current);
    let third = d.opened()[2];
    let b07 = third.context.rack_load.iter().find(|l| l.rack.as_str() == "B07").expect("B07 load context");
    assert_eq!(b07.basis, "current_a");
    assert_eq!((b07.power_w, b07.baseline_w), (None, None));
    assert!((b07.baseline_a.unwrap_or_default() - 4020.0 / 230.0).abs() < 0.2, "{b07:?}");
    assert!((b07.current_a.unwrap_or_default() - 5520.0 / 230.0).abs() < 0.2, "{b07:?}");
    assert_eq!(third.context.hint.as_deref(), Some("B07 draws 38 % more current than its 7d median"));
    let json = serde_json::to_value(b07).unwrap();
    assert!(json.get("power_w").is_none() && json["current_a"].is_number(), "{json}");
}

#[test]
fn recurring_afternoon_overheating_becomes_one_incident_each_and_a_pattern_before_the_major_event() {
    let d = run_weeks(21);

    // Each recurrence is exactly one incident, all in hall1-b, thermal; the rest of the hall is quiet.
    let opened = d.opened();
    assert_eq!(opened.len(), EPISODES.len(), "one incident per hot afternoon: {:#?}", opened);
    for (inc, (day, start, _, _)) in opened.iter().zip(EPISODES) {
        assert_eq!(inc.zone.as_str(), "hall1-b");
        assert_eq!(inc.category, Category::Thermal);
        assert_eq!(inc.opened_at.0 / DAY - T0 / DAY, day, "incident {} opened on the wrong day", inc.incident_id);
        let minute = (inc.opened_at.0 % DAY) / MIN;
        assert!(minute >= start && minute <= start + 4, "opened at minute {minute}, episode started {start}");
    }
    assert!(
        d.events.iter().all(|(_, e)| e.zone().as_str() == "hall1-b"),
        "other zones must stay quiet: {:?}",
        d.events.iter().map(|(_, e)| e.zone().as_str()).filter(|z| *z != "hall1-b").collect::<Vec<_>>()
    );
    let ids: Vec<&str> = opened.iter().map(|i| i.incident_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "incident ids are unique");
    assert!(ids[0].starts_with("fra1-hall1-b-thermal-20261104T1422"), "{}", ids[0]);

    // Every incident resolves with its whole chronicle, after its member racks cooled down.
    let resolved = d.resolved();
    assert_eq!(resolved.len(), EPISODES.len());
    for r in &resolved {
        let c = r.chronicle.as_ref().expect("resolved carries the chronicle");
        assert_eq!(c.first().map(|e| e.what.as_str()), Some("opened"));
        assert_eq!(c.last().map(|e| e.what.as_str()), Some("resolved"));
        assert!(c.iter().any(|e| e.what == "breach_joined"), "B08 joins the B07 incident: {c:#?}");
        assert!(c.iter().any(|e| e.what == "breach_cleared"));
        assert!(c.windows(2).all(|w| w[0].at <= w[1].at), "chronicle in time order");
        let racks: Vec<&str> = r.racks.iter().map(|r| r.as_str()).collect();
        assert_eq!(racks, ["B07", "B08"]);
    }

    // The pattern signal: at the third recurrence, before the major event.
    let patterns = d.patterns();
    let (first_at, first) = patterns[0];
    assert_eq!(first.state, PatternState::Active);
    assert_eq!(first.trigger, PatternTrigger::Recurrence);
    assert_eq!(first.zone.as_str(), "hall1-b");
    assert_eq!(first.occurrences, 3);
    assert_eq!(first.incident_ids, ids[..3]);
    assert_eq!(first_at, opened[2].opened_at, "raised when the third incident opened");
    assert_eq!(first.racks, [RackId::new("B07"), RackId::new("B08")]);
    assert_eq!(first.time_of_day.as_deref(), Some("14:00-16:00 UTC, 3 of 3"));
    assert_eq!(first.window, "30d");
    assert!(first.summary.contains("B07 draws 37 % more than its 7d median"), "{}", first.summary);
    assert!(first.summary.contains("3 thermal incidents in 30d"), "{}", first.summary);
    eprintln!("pattern at the third recurrence: {}", serde_json::to_string_pretty(first).unwrap());

    let major = patterns.iter().find(|(_, p)| p.trigger == PatternTrigger::MajorIncident).expect("a major event");
    assert!(first_at < major.0, "pattern before the major event");
    assert_eq!(major.1.incident_ids, [ids[5]]);
    let later: Vec<_> = patterns.iter().filter(|(_, p)| p.trigger == PatternTrigger::Recurrence).collect();
    assert_eq!(
        later.iter().map(|(_, p)| (p.state, p.occurrences)).collect::<Vec<_>>(),
        [(PatternState::Active, 3), (PatternState::Updated, 4), (PatternState::Updated, 5), (PatternState::Updated, 6)]
    );

    // The third incident carries the load context: B07 now against its 7-day median.
    let third = &opened[2];
    let b07 = third.context.rack_load.iter().find(|l| l.rack.as_str() == "B07").expect("B07 load context");
    assert!((b07.change_pct - 37.5).abs() < 1.5, "{b07:?}");
    assert!((b07.baseline_w.unwrap_or_default() - 4020.0).abs() < 30.0, "{b07:?}");
    assert_eq!(b07.basis, "power_w");
    assert_eq!(third.context.hint.as_deref(), Some("B07 draws 37 % more than its 7d median"));
    // Before the step, no load hint.
    assert_eq!(opened[0].context.hint, None);

    // The major event is critical.
    let sixth = d.incidents().into_iter().filter(|i| i.incident_id == ids[5]).map(|i| i.severity).max();
    assert_eq!(sixth, Some(Severity::Critical));
    let chron = resolved[5].chronicle.as_ref().unwrap();
    assert!(chron.iter().any(|e| e.what == "severity_changed"), "{chron:#?}");
    assert!(chron.iter().any(|e| e.what == "pattern"));

    // Events per incident: opened < updated* < resolved.
    for id in &ids {
        let kinds: Vec<IncidentEventKind> =
            d.incidents().iter().filter(|i| &i.incident_id == id).map(|i| i.event).collect();
        assert_eq!(kinds.first(), Some(&IncidentEventKind::Opened));
        assert_eq!(kinds.last(), Some(&IncidentEventKind::Resolved));
        assert!(kinds[1..kinds.len() - 1].iter().all(|k| *k == IncidentEventKind::Updated));
        assert!(kinds.len() <= 12, "updates are rate-limited: {} events for {id}", kinds.len());
    }
    let c = d.engine.counters();
    assert_eq!(c.incidents_opened, 6);
    assert!(c.raw_crossings >= 12 && c.breaches >= 12, "{c:?}");
    assert!(d.events.iter().all(|(_, e)| !matches!(e, Event::Rollup(_))), "rollups are off by default");
}

#[test]
fn state_size_does_not_grow_with_run_length() {
    let size = |days| serde_json::to_vec(&run_weeks(days).engine.export_state()).unwrap().len();
    let (one, eight, thirty) = (size(1), size(8), size(30));
    eprintln!("engine state (JSON) after 1 day: {one} B; 8 days: {eight} B; 30 days: {thirty} B");
    // Rack baselines fill up to their 7-day window and then stay; the pattern history holds
    // the incidents of the 30-day window. Nothing grows with the length of the run itself.
    assert!(thirty < eight + eight / 4, "state grew from {eight} to {thirty} bytes");
}
