//! One deterministic virtual-clock test per engine behaviour that matters to a NOC.

mod support;

use arcstr::ArcStr;
use hallmonitor::engine::{Engine, EngineState, Event, IncidentEventKind, PatternTrigger};
use hallmonitor::model::{Category, Severity, Timestamp};
use support::engine::*;

fn zone_config(sensors: usize) -> String {
    let mut c = String::from(
        r#"
[site]
id = "fra1"

[correlation]
clear_hold = "5m"
update_min_interval = "60s"

[patterns]
major_after = "2h"

[[zones]]
id = "hall1-b"
racks = ["B01", "B02", "B03", "B04"]

[[zones]]
id = "hall1-c"
racks = ["C01"]
"#,
    );
    for i in 0..sensors {
        let rack = format!("B0{}", i % 4 + 1);
        c.push_str(&device(&format!("th-{i:02}"), "test-probe", "hall1-b", Some(&rack), ""));
    }
    c.push_str(&device("th-c1", "test-probe", "hall1-c", Some("C01"), ""));
    c
}

fn sensors_at(t: i64, n: usize, value: impl Fn(usize) -> f64) -> Vec<hallmonitor::model::Reading> {
    (0..n).map(|i| temp(t, &format!("th-{i:02}"), "hall1-b", Some(&format!("B0{}", i % 4 + 1)), value(i))).collect()
}

#[test]
fn forty_sensors_crossing_at_once_give_one_incident() {
    let mut d = Driver::new(settings(&zone_config(40)));
    let mut t = T0;
    for step in 0..180 {
        // 10 s polls; from minute 5 to minute 20 the whole zone is hot.
        let hot = (30..120).contains(&step);
        d.feed(t, &sensors_at(t, 40, |i| if hot { 28.0 + i as f64 * 0.05 } else { 23.0 }));
        d.feed(t, &[temp(t, "th-c1", "hall1-c", Some("C01"), 23.0)]);
        t += 10_000;
    }
    d.advance_to(t + 10 * MIN);
    let opened = d.opened();
    assert_eq!(opened.len(), 1, "one incident, not a storm");
    let resolved = d.resolved();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].breaches.len(), 40, "all forty sensors are members");
    assert_eq!(resolved[0].racks.len(), 4);
    // The publisher must allow payloads this large (rumqttc's default limit is 10 KiB).
    let size = serde_json::to_vec(resolved[0]).unwrap().len();
    eprintln!("resolved payload with 40 members and its chronicle: {size} bytes");
    assert!(size < 64 * 1024, "{size} bytes");
    let events = d.incidents().len();
    assert!(events <= 6, "opened, a few coalesced updates, resolved: got {events}");
    let c = d.engine.counters();
    assert_eq!((c.raw_crossings, c.breaches, c.incidents_opened), (40, 40, 1));
}

#[test]
fn a_sensor_flapping_around_its_threshold_for_an_hour_gives_at_most_one_incident() {
    let mut d = Driver::new(settings(&zone_config(1)));
    let mut t = T0;
    for step in 0..(6 * 60 + 60) {
        // An hour of flapping in irregular runs around 27 °C, then an hour of calm.
        let v = if step < 360 {
            let run = [3, 1, 8, 2, 12, 1, 4, 9, 2, 7][(step / 7) % 10];
            if (step / run) % 2 == 0 { 27.3 } else { 26.3 }
        } else {
            24.0
        };
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), v)]);
        t += 10_000;
    }
    d.advance_to(t + 10 * MIN);
    assert!(d.opened().len() <= 1, "{} incidents", d.opened().len());
    assert_eq!(d.opened().len(), d.resolved().len(), "and it resolves once calm");
    // Some flaps held past `for`: one incident whose member left and returned inside clear_hold.
    let resolved = d.resolved();
    let chron = resolved[0].chronicle.as_ref().unwrap();
    assert!(chron.iter().any(|e| e.what == "breach_returned"), "{chron:#?}");
    assert!(d.engine.counters().raw_crossings > 10, "there was flapping to absorb");
}

#[test]
fn a_device_going_dark_gives_one_comms_incident_and_no_thermal_one() {
    let mut cfg = zone_config(2);
    cfg.push_str("[polling]\ndown_after = 3\n");
    let mut d = Driver::new(settings(&cfg));
    let mut t = T0;
    for step in 0..360 {
        let mut rs = Vec::new();
        if step < 20 {
            rs.push(temp(t, "th-00", "hall1-b", Some("B01"), 23.0));
        } else if step < 24 {
            // It reads hot just before it dies: a crossing not yet held for 60 s.
            rs.push(temp(t, "th-00", "hall1-b", Some("B01"), 29.0));
            rs.push(good(t, "th-00", "rh", "humidity_pct", "%", 45.0, "hall1-b", Some("B01")));
        } else {
            rs.push(bad(t, "th-00", "temp", "inlet_temp_c", "hall1-b"));
            rs.push(bad(t, "th-00", "rh", "humidity_pct", "hall1-b"));
        }
        rs.push(temp(t, "th-01", "hall1-b", Some("B02"), 23.0));
        d.feed(t, &rs);
        t += 15_000;
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(opened[0].category, Category::Comms);
    assert_eq!(opened[0].breaches.len(), 1, "one comms breach for the device, not one per point");
    assert_eq!(opened[0].breaches[0].device.as_str(), "th-00");
    assert_eq!(opened[0].breaches[0].rule, "comms");
    // Three failed polls (not three bad readings) make it down: polls 24, 25, 26.
    assert_eq!(opened[0].opened_at, Timestamp(T0 + 26 * 15_000));
    assert!(d.incidents().iter().all(|i| i.category == Category::Comms));

    // It comes back: the comms incident resolves after clear_hold.
    for _ in 0..40 {
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 23.0), temp(t, "th-01", "hall1-b", Some("B02"), 23.0)]);
        t += 15_000;
    }
    let resolved = d.resolved();
    assert_eq!(resolved.len(), 1);
    let chron = resolved[0].chronicle.as_ref().unwrap();
    assert!(chron.iter().any(|e| e.what == "breach_cleared" && e.detail.contains("back online")), "{chron:#?}");
}

#[test]
fn a_device_down_with_a_held_breach_drops_it_into_the_comms_incident_only() {
    let mut d = Driver::new(settings(&zone_config(1)));
    let mut t = T0;
    for step in 0..60 {
        let r = if step < 20 {
            temp(t, "th-00", "hall1-b", Some("B01"), 29.0)
        } else {
            bad(t, "th-00", "temp", "inlet_temp_c", "hall1-b")
        };
        d.feed(t, &[r]);
        t += 10_000;
    }
    let opened = d.opened();
    assert_eq!(opened.iter().map(|i| i.category).collect::<Vec<_>>(), [Category::Thermal, Category::Comms]);
    // The thermal breach was suppressed when the device went down, so its incident resolves.
    d.advance_to(t + 10 * MIN);
    let resolved: Vec<Category> = d.resolved().iter().map(|i| i.category).collect();
    assert_eq!(resolved, [Category::Thermal]);
    assert!(d.engine.active_breaches().iter().all(|b| b.rule == "comms"));
}

/// A scripted hour: a warm-up, a breach that escalates, a cool-down, with a second sensor joining.
fn script(step: i64) -> Vec<hallmonitor::model::Reading> {
    let t = T0 + step * 10_000;
    let a = match step {
        0..=29 => 24.0,
        30..=89 => 28.0,
        90..=149 => 33.0,
        150..=199 => 28.5,
        _ => 23.0,
    };
    let b = if (60..=180).contains(&step) { 27.8 } else { 23.5 };
    vec![
        temp(t, "th-00", "hall1-b", Some("B01"), a),
        temp(t, "th-01", "hall1-b", Some("B02"), b),
        good(t, "th-00", "rh", "humidity_pct", "%", 40.0, "hall1-b", Some("B01")),
    ]
}

#[test]
fn export_and_import_mid_incident_continues_exactly() {
    let cfg = settings(&zone_config(2));
    let mut straight = Driver::new(cfg.clone());
    for step in 0..400 {
        straight.feed(T0 + step * 10_000, &script(step));
    }
    straight.advance_to(T0 + 400 * 10_000 + 20 * MIN);

    let mut first = Driver::new(cfg.clone());
    for step in 0..120 {
        first.feed(T0 + step * 10_000, &script(step));
    }
    assert_eq!(first.engine.open_incidents().len(), 1, "cut mid-incident");
    let json = serde_json::to_string(&first.engine.export_state()).unwrap();
    // What the daemon saves (borrowed, not copied) is the same bytes.
    assert_eq!(serde_json::to_string(&first.engine.state_view()).unwrap(), json);
    let state: EngineState = serde_json::from_str(&json).unwrap();
    let mut second = Driver { engine: Engine::new(cfg), events: first.events.clone(), now: first.now };
    second.engine.import_state(state);
    assert_eq!(second.engine.open_incidents(), first.engine.open_incidents());
    for step in 120..400 {
        second.feed(T0 + step * 10_000, &script(step));
    }
    second.advance_to(T0 + 400 * 10_000 + 20 * MIN);

    assert_eq!(second.events, straight.events, "same events as an uninterrupted run");
    assert_eq!(second.engine.counters(), straight.engine.counters());
    assert_eq!(straight.resolved().len(), 1);
}

#[test]
fn open_incidents_show_the_chronicle_so_far_and_updates_are_rate_limited() {
    let mut d = Driver::new(settings(&zone_config(2)));
    for step in 0..140 {
        d.feed(T0 + step * 10_000, &script(step));
    }
    let open = d.engine.open_incidents();
    assert_eq!(open.len(), 1);
    let chron = open[0].chronicle.as_ref().expect("queryable while open");
    let whats: Vec<&str> = chron.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(&whats[..3], ["opened", "breach_joined", "rack_added"], "{chron:#?}");
    assert!(whats.contains(&"severity_changed"));
    assert_eq!(open[0].severity, Severity::Critical);
    // Severity change went out immediately, at the poll where 33 °C was confirmed.
    let updates: Vec<(Timestamp, Severity)> = d
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Incident(i) if i.event == IncidentEventKind::Updated => Some((*t, i.severity)),
            _ => None,
        })
        .collect();
    let crit = updates.iter().find(|u| u.1 == Severity::Critical).expect("critical update");
    assert_eq!(crit.0, Timestamp(T0 + 90 * 10_000), "critical is reported at once");
    for w in updates.windows(2) {
        assert!(w[1].0.0 - w[0].0.0 >= 60_000 || w[1].1 != w[0].1, "non-severity updates at most once a minute");
    }
    // Turning critical is a major incident on its own.
    assert!(d.patterns().iter().any(|(_, p)| p.trigger == PatternTrigger::MajorIncident));
}

#[test]
fn cooling_unit_in_alarm_is_the_probable_cause_of_the_thermal_incident() {
    let mut cfg = zone_config(2);
    cfg.push_str(&device("crah-b1", "test-crah", "hall1-b", None, ""));
    let mut d = Driver::new(settings(&cfg));
    for step in 0..60 {
        let t = T0 + step * 10_000;
        let alarm = if step >= 10 { 1.0 } else { 0.0 };
        let v = if step >= 15 { 29.0 } else { 23.0 };
        d.feed(
            t,
            &[
                good(t, "crah-b1", "alarm", "alarm", "", alarm, "hall1-b", None),
                good(t, "crah-b1", "supply", "supply_air_temp_c", "°C", 18.0 + alarm * 6.0, "hall1-b", None),
                temp(t, "th-00", "hall1-b", Some("B01"), v),
                temp(t, "th-01", "hall1-b", Some("B02"), v),
            ],
        );
    }
    let opened = d.opened();
    let cats: Vec<Category> = opened.iter().map(|i| i.category).collect();
    assert_eq!(cats, [Category::Cooling, Category::Thermal], "its own cooling incident, one thermal incident");
    let thermal = opened[1];
    assert_eq!(thermal.breaches.len(), 1, "the second sensor joins later");
    let cause = thermal.context.probable_cause.as_deref().expect("probable cause");
    assert!(cause.starts_with("cooling unit crah-b1 in alarm since"), "{cause}");
}

#[test]
fn a_plus_b_feeds_together_must_stay_under_one_breaker() {
    let cfg = r#"
[site]
id = "fra1"
[[zones]]
id = "hall1-b"
racks = ["B07"]
"#
    .to_owned()
        + &device("pdu-b07-a", "test-pdu", "hall1-b", Some("B07"), "feed = \"a\"\nbreaker_a = 32.0")
        + &device("pdu-b07-b", "test-pdu", "hall1-b", Some("B07"), "feed = \"b\"\nbreaker_a = 32.0");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..40 {
        let t = T0 + step * 10_000;
        // Each feed at 14 A (44 % of 32 A): fine alone, but 28 A together > 25.6 A (80 %).
        let (a, b) = if step >= 10 { (14.0, 14.0) } else { (10.0, 10.0) };
        d.feed(
            t,
            &[
                good(t, "pdu-b07-a", "current", "phase_current_a", "A", a, "hall1-b", Some("B07")),
                good(t, "pdu-b07-b", "current", "phase_current_a", "A", b, "hall1-b", Some("B07")),
            ],
        );
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].category, Category::Power);
    let b = &opened[0].breaches[0];
    assert_eq!(b.rule, "redundancy");
    assert_eq!(b.value, Some(28.0));
    assert_eq!(b.threshold, Some(25.6));
    assert_eq!(b.severity, Severity::Warning);
}

#[test]
fn branch_current_at_80_and_90_percent_of_the_breaker() {
    let cfg = r#"
[site]
id = "fra1"
[[zones]]
id = "hall1-b"
racks = ["B07"]
"#
    .to_owned()
        + &device("pdu-b07-a", "test-pdu", "hall1-b", Some("B07"), "breaker_a = 16.0");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..40 {
        let t = T0 + step * 10_000;
        let a = match step {
            0..=9 => 10.0,
            10..=24 => 13.5, // > 12.8 A (80 %)
            _ => 14.8,       // > 14.4 A (90 %)
        };
        d.feed(t, &[good(t, "pdu-b07-a", "current", "phase_current_a", "A", a, "hall1-b", Some("B07"))]);
    }
    let sevs: Vec<Severity> = d.incidents().iter().map(|i| i.severity).collect();
    assert_eq!(sevs.first(), Some(&Severity::Warning));
    assert_eq!(sevs.last(), Some(&Severity::Critical));
    assert_eq!(d.opened()[0].breaches[0].rule, "breaker");
}

#[test]
fn dew_point_is_derived_from_temperature_and_humidity() {
    let mut d = Driver::new(settings(&zone_config(1)));
    for step in 0..30 {
        let t = T0 + step * 10_000;
        // 26 °C at 70 %RH: dew point ~20 °C, above the 17 °C critical bound, while the
        // temperature and the humidity (< 70 % warning) are each within their own limits.
        d.feed(
            t,
            &[
                temp(t, "th-00", "hall1-b", Some("B01"), 26.0),
                good(t, "th-00", "rh", "humidity_pct", "%", 69.0, "hall1-b", Some("B01")),
            ],
        );
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].category, Category::Thermal);
    let b = &opened[0].breaches[0];
    assert_eq!(b.metric.as_str(), "dew_point_c");
    assert!((b.value.unwrap() - 19.9).abs() < 0.3, "{b:?}");
    assert_eq!(b.severity, Severity::Critical);
}

#[test]
fn rate_of_change_rule_fires_on_a_fast_rise_inside_the_bounds() {
    let mut cfg = zone_config(1);
    cfg.push_str("[thresholds.inlet_temp_c]\nrise = 3.0\nrise_within = \"5m\"\n");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..30 {
        let t = T0 + step * 30_000;
        let v = if step < 10 { 20.0 } else { (20.0 + (step - 10) as f64 * 0.8).min(26.0) };
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), v)]);
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].breaches[0].rule, "rise");
    assert_eq!(opened[0].severity, Severity::Warning);
}

#[test]
fn rollups_summarise_each_zone_per_interval() {
    let mut cfg = zone_config(2);
    cfg.push_str("[rollups]\ninterval = \"5m\"\n");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..60 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 22.0), temp(t, "th-01", "hall1-b", Some("B02"), 24.0)]);
    }
    d.advance_to(T0 + 11 * MIN);
    let rollups: Vec<_> =
        d.events.iter().filter_map(|(_, e)| if let Event::Rollup(r) = e { Some(r) } else { None }).collect();
    assert_eq!(rollups.len(), 2, "two 5-minute intervals");
    let m = &rollups[0].metrics[0];
    assert_eq!((m.metric.as_str(), m.min, m.avg, m.max, m.count), ("inlet_temp_c", 22.0, 23.0, 24.0, 60));
    assert_eq!(rollups[0].to.0 - rollups[0].from.0, 5 * MIN);
}

#[test]
fn reconfigure_keeps_open_incidents_and_applies_new_thresholds() {
    let mut d = Driver::new(settings(&zone_config(1)));
    for step in 0..20 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 28.0)]);
    }
    assert_eq!(d.engine.open_incidents().len(), 1);
    let mut cfg = zone_config(1);
    cfg.push_str("[thresholds.inlet_temp_c]\nwarn_high = 30.0\n");
    d.engine.reconfigure(settings(&cfg));
    assert_eq!(d.engine.open_incidents().len(), 1, "kept across reload");
    for step in 20..80 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 28.0)]);
    }
    assert_eq!(d.resolved().len(), 1, "28 °C is fine under the new 30 °C bound");
}

#[test]
fn recurrence_counts_adjacent_zones_and_clears_when_the_window_empties() {
    let cfg = r#"
[site]
id = "fra1"
[correlation]
clear_hold = "5m"
[patterns]
recurrence = 2
window = "1h"
major_after = "2h"
[[zones]]
id = "hall1-b"
racks = ["B01"]
adjacent = ["hall1-c"]
[[zones]]
id = "hall1-c"
racks = ["C01"]
"#
    .to_owned()
        + &device("th-00", "test-probe", "hall1-b", Some("B01"), "")
        + &device("th-c1", "test-probe", "hall1-c", Some("C01"), "");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..(6 * 90) {
        let t = T0 + step * 10_000;
        let c_hot = (0..12).contains(&step);
        let b_hot = (120..132).contains(&step);
        d.feed(
            t,
            &[
                temp(t, "th-c1", "hall1-c", Some("C01"), if c_hot { 29.0 } else { 23.0 }),
                temp(t, "th-00", "hall1-b", Some("B01"), if b_hot { 29.0 } else { 23.0 }),
            ],
        );
    }
    let opened = d.opened();
    assert_eq!(opened.iter().map(|i| i.zone.as_str()).collect::<Vec<_>>(), ["hall1-c", "hall1-b"]);
    let patterns = d.patterns();
    assert_eq!(patterns.len(), 2, "{patterns:#?}");
    let (at, active) = patterns[0];
    assert_eq!(active.state, hallmonitor::engine::PatternState::Active);
    assert_eq!(at, opened[1].opened_at);
    assert_eq!(active.zone.as_str(), "hall1-b", "hall1-c had no own second occurrence and lists no neighbour");
    assert_eq!(active.zones.iter().map(|z| z.as_str()).collect::<Vec<_>>(), ["hall1-c", "hall1-b"]);
    assert_eq!(active.occurrences, 2);
    let (at, cleared) = patterns[1];
    assert_eq!(cleared.state, hallmonitor::engine::PatternState::Cleared);
    assert_eq!(cleared.pattern_id, active.pattern_id);
    assert_eq!(at.0, opened[0].opened_at.0 + HOUR, "cleared when the first occurrence leaves the window");
    assert!(d.engine.active_patterns().is_empty());
}

#[test]
fn state_with_rollups_survives_a_restart_after_an_emission() {
    // Regression: empty rollup accumulators once held ±infinity, which JSON writes as null and
    // cannot read back, so every restart after the first rollup failed to load the state.
    let mut cfg = zone_config(1);
    cfg.push_str("[rollups]\ninterval = \"5m\"\n");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..40 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 22.0)]);
    }
    d.advance_to(T0 + 6 * MIN);
    assert!(d.events.iter().any(|(_, e)| matches!(e, Event::Rollup(_))), "a rollup was emitted");
    let json = serde_json::to_vec(&d.engine.export_state()).unwrap();
    let state: hallmonitor::engine::EngineState = serde_json::from_slice(&json).expect("state reads back");
    let mut again = hallmonitor::engine::Engine::new(settings(&cfg));
    again.import_state(state);
}

#[test]
fn removing_a_device_lets_its_incident_resolve() {
    let mut d = Driver::new(settings(&zone_config(2)));
    for step in 0..20 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-00", "hall1-b", Some("B01"), 29.0), temp(t, "th-01", "hall1-b", Some("B02"), 22.0)]);
    }
    assert_eq!(d.engine.open_incidents().len(), 1);
    // th-00 leaves the configuration (removed, or `enabled = false`): it will never report again.
    d.engine.reconfigure(settings(&zone_config(2).replace("th-00", "th-99")));
    for step in 20..80 {
        let t = T0 + step * 10_000;
        d.feed(t, &[temp(t, "th-01", "hall1-b", Some("B02"), 22.0)]);
    }
    let resolved = d.resolved();
    assert_eq!(resolved.len(), 1, "the incident resolved after clear_hold");
    let chronicle = resolved[0].chronicle.as_ref().unwrap();
    assert!(chronicle.iter().any(|c| c.detail.contains("device removed from the configuration")), "{chronicle:#?}");
}

/// `zone_config` with the default `[patterns]` settings (no `major_after` of its own).
fn default_patterns_config(sensors: usize) -> String {
    zone_config(sensors).replace("major_after = \"2h\"\n", "")
}

fn major_patterns(d: &Driver) -> Vec<&hallmonitor::engine::PatternEvent> {
    d.patterns()
        .into_iter()
        .filter(|(_, p)| {
            p.trigger == PatternTrigger::MajorIncident && p.state == hallmonitor::engine::PatternState::Active
        })
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn an_ordinary_warning_of_90_minutes_is_no_major_incident_but_a_critical_one_is() {
    let mut d = Driver::new(settings(&default_patterns_config(1)));
    // 29.5 °C for 90 minutes, then back to normal: a warning the shift handles.
    let mut t = T0;
    while t < T0 + 4 * HOUR {
        let v = if t < T0 + 90 * MIN { 29.5 } else { 23.0 };
        d.feed(t, &sensors_at(t, 1, |_| v));
        t += MIN;
    }
    assert_eq!(d.opened().len(), 1);
    assert_eq!(d.resolved().len(), 1);
    assert!(major_patterns(&d).is_empty(), "{:#?}", d.patterns());

    // The same sensor at 33 °C (critical): a major incident at once.
    while t < T0 + 5 * HOUR {
        d.feed(t, &sensors_at(t, 1, |_| 33.0));
        t += MIN;
    }
    let major = major_patterns(&d);
    assert_eq!(major.len(), 1, "{:#?}", d.patterns());
    assert!(major[0].summary.contains("turned critical"), "{}", major[0].summary);
}

#[test]
fn a_warning_still_active_after_hours_is_a_major_incident_one_clearing_is_not() {
    let mut d = Driver::new(settings(&default_patterns_config(1)));
    let mut t = T0;
    // 29.5 °C for 10 h.
    while t < T0 + 10 * HOUR {
        d.feed(t, &sensors_at(t, 1, |_| 29.5));
        t += 5 * MIN;
    }
    let major = major_patterns(&d);
    assert_eq!(major.len(), 1, "{:#?}", d.patterns());
    assert!(major[0].summary.contains("has lasted more than 8h"), "{}", major[0].summary);
    let opened_at = d.opened()[0].opened_at;
    assert_eq!(d.patterns()[0].0, opened_at.saturating_add(std::time::Duration::from_secs(8 * 3600)));

    // An incident whose sensor is back under its threshold when 8 h are up (it resolves
    // after its clear hold) raises nothing.
    let mut d = Driver::new(settings(&default_patterns_config(1)));
    let mut t = T0;
    while t < T0 + 9 * HOUR {
        let v = if t < T0 + 8 * HOUR - 2 * MIN { 29.5 } else { 23.0 };
        d.feed(t, &sensors_at(t, 1, |_| v));
        t += MIN;
    }
    assert_eq!(d.resolved().len(), 1);
    assert!(major_patterns(&d).is_empty(), "{:#?}", d.patterns());
}

#[test]
fn a_device_dark_for_hours_is_no_major_incident_until_it_stays_dark_for_a_day() {
    let mut cfg = default_patterns_config(1);
    cfg.push_str("[polling]\ndown_after = 3\n");
    let mut d = Driver::new(settings(&cfg));
    let dark = |t: i64| vec![bad(t, "th-00", "temp", "inlet_temp_c", "hall1-b")];
    let mut t = T0;
    // A PDU dark for 6 h, then back: one comms incident, no pattern.
    while t < T0 + 7 * HOUR {
        if t < T0 + 6 * HOUR {
            d.feed(t, &dark(t));
        } else {
            d.feed(t, &sensors_at(t, 1, |_| 23.0));
        }
        t += 5 * MIN;
    }
    assert_eq!(d.opened().len(), 1);
    assert_eq!(d.opened()[0].category, Category::Comms);
    assert_eq!(d.resolved().len(), 1);
    assert!(major_patterns(&d).is_empty(), "{:#?}", d.patterns());

    // Dark again for 26 h: the pattern comes 24 h after the comms incident opened.
    let from = t;
    while t < from + 26 * HOUR {
        d.feed(t, &dark(t));
        t += 5 * MIN;
    }
    let major = major_patterns(&d);
    assert_eq!(major.len(), 1, "{:#?}", d.patterns());
    assert_eq!(major[0].category, Category::Comms);
    assert!(major[0].summary.contains("unreachable for more than 1d"), "{}", major[0].summary);
    let opened_at = d.opened()[1].opened_at;
    assert_eq!(
        d.patterns().last().map(|p| p.0),
        Some(opened_at.saturating_add(std::time::Duration::from_secs(24 * 3600)))
    );
}

fn labeled(t: i64, device: &str, label: &str, v: f64) -> hallmonitor::model::Reading {
    let mut r = good(t, device, "ext_temp", "inlet_temp_c", "°C", v, "hall1-b", Some("B01"));
    r.label = Some(ArcStr::from(label));
    r
}

#[test]
fn breach_lists_name_each_sensor_once_worst_first_with_its_peak() {
    let mut cfg = zone_config(1);
    cfg.push_str(&device("pdu-b01", "test-pdu", "hall1-b", Some("B01"), ""));
    let mut d = Driver::new(settings(&cfg));
    let mut t = T0;
    // Three sensors of one PDU and a probe; "Inlet top" peaks at 30.5 then eases to 29.7.
    for step in 0..20 {
        let top = if step < 10 { 29.0 + step as f64 * 0.15 } else { 29.7 };
        let mut rs = vec![
            labeled(t, "pdu-b01", "Inlet top", top),
            labeled(t, "pdu-b01", "Inlet mid", 28.0),
            labeled(t, "pdu-b01", "Inlet bottom", 33.0),
        ];
        rs.extend(sensors_at(t, 1, |_| 27.5));
        d.feed(t, &rs);
        t += MIN;
    }
    let open = d.engine.open_incidents();
    let last = open.first().expect("an incident");
    assert_eq!(
        hallmonitor::engine::breach_list(&last.breaches, 3),
        "pdu-b01 Inlet bottom inlet_temp_c 33 °C > 32, pdu-b01 Inlet top inlet_temp_c 29.7 °C > 27 (peak 30.4), \
         pdu-b01 Inlet mid inlet_temp_c 28 °C > 27, +1 more"
    );
    // The "+1 more" is the probe, named by its device.
    assert!(hallmonitor::engine::breach_list(&last.breaches, 9).ends_with("th-00 inlet_temp_c 27.5 °C > 27"));
}

#[test]
fn a_sensor_back_under_its_threshold_inside_the_hysteresis_reads_as_clearing() {
    let mut d = Driver::new(settings(&zone_config(2)));
    let mut t = T0;
    for step in 0..12 {
        // th-00 goes to 29.5 and comes back to 26.8: under 27 but not yet under 27 - 0.5.
        let v0 = if step < 6 { 29.5 } else { 26.8 };
        d.feed(t, &sensors_at(t, 2, |i| if i == 0 { v0 } else { 28.0 }));
        t += MIN;
    }
    let open = d.engine.open_incidents();
    let last = open.first().expect("an incident");
    let b = last.breaches.iter().find(|b| b.device.as_str() == "th-00").expect("th-00 still a member");
    assert_eq!(b.cleared_at, None, "inside the hysteresis the breach is still held");
    assert_eq!(b.clears_at, Some(26.5));
    assert_eq!(b.peak, Some(29.5));
    let list = hallmonitor::engine::breach_list(&last.breaches, 3);
    assert_eq!(
        list,
        "th-01 inlet_temp_c 28 °C > 27, th-00 inlet_temp_c 26.8 °C (clearing: under 27, clears below 26.5)"
    );
    assert!(!list.contains("26.8 °C >"), "no value under its threshold shown as a breach: {list}");
}

#[test]
fn an_update_says_what_changed_since_the_previous_event() {
    let mut d = Driver::new(settings(&zone_config(2)));
    let mut t = T0;
    for minute in 0..16 {
        let v0 = match minute {
            0..=5 => 29.0,
            6..=8 => 30.5,
            _ => 33.0,
        };
        let v1 = if minute >= 3 { 28.5 } else { 23.0 };
        d.feed(t, &sensors_at(t, 2, |i| if i == 0 { v0 } else { v1 }));
        t += MIN;
    }
    let updates: Vec<Vec<String>> =
        d.incidents().iter().filter(|i| i.event == IncidentEventKind::Updated).map(|i| i.changes.clone()).collect();
    let all: Vec<&String> = updates.iter().flatten().collect();
    assert!(all.contains(&&"racks added: B02".to_owned()), "{updates:#?}");
    assert!(all.contains(&&"in breach: th-01 temp".to_owned()), "{updates:#?}");
    assert!(all.contains(&&"new peak inlet_temp_c 33 °C on th-00 (B01)".to_owned()), "{updates:#?}");
    assert!(all.contains(&&"severity warning -> critical".to_owned()), "{updates:#?}");
    // Each change is told once, not repeated by every later update.
    assert_eq!(all.iter().filter(|c| c.starts_with("racks added")).count(), 1, "{updates:#?}");
    assert!(updates.iter().all(|u| !u.is_empty()));
    // Opened carries no changes; its payload has the whole picture.
    assert!(d.opened()[0].changes.is_empty());
}

#[test]
fn the_ashrae_class_sets_the_critical_inlet_bounds() {
    let severity_at = |class: &str, v: f64| {
        let cfg = zone_config(1).replace("id = \"fra1\"\n", &format!("id = \"fra1\"\nashrae_class = \"{class}\"\n"));
        let mut d = Driver::new(settings(&cfg));
        for m in 0..5 {
            d.feed(T0 + m * MIN, &sensors_at(T0 + m * MIN, 1, |_| v));
        }
        d.engine.active_breaches().iter().filter(|b| b.rule != "rise").map(|b| b.severity).max()
    };
    assert_eq!(severity_at("A1", 34.0), Some(Severity::Critical), "A1 allowable ends at 32 °C");
    assert_eq!(severity_at("A3", 34.0), Some(Severity::Warning), "A3 allows up to 40 °C");
    assert_eq!(severity_at("a4", 44.0), Some(Severity::Warning));
    assert_eq!(severity_at("A2", 36.0), Some(Severity::Critical));
    assert_eq!(severity_at("A4", 6.0), Some(Severity::Warning), "A4 allows down to 5 °C");

    let bad = zone_config(1).replace("id = \"fra1\"\n", "id = \"fra1\"\nashrae_class = \"B2\"\n");
    let err = match hallmonitor::config::load_str(std::path::Path::new("site.toml"), &format!("{bad}\n{PROFILES}")) {
        Ok(_) => panic!("B2 is no ASHRAE class"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("site.toml:") && err.contains("site.ashrae_class must be A1, A2, A3 or A4"), "{err}");
}

#[test]
fn a_rise_of_more_than_20_c_in_an_hour_warns_by_default_and_5_c_where_tape_drives_are() {
    // An A4 room warming from 16 to 38 °C over 50 minutes (the high bound is 45 °C).
    let cfg = zone_config(1).replace("id = \"fra1\"\n", "id = \"fra1\"\nashrae_class = \"A4\"\n");
    let mut d = Driver::new(settings(&cfg));
    for m in 0..=50 {
        let t = T0 + m * MIN;
        d.feed(t, &sensors_at(t, 1, |_| 16.0 + 22.0 * m as f64 / 50.0));
    }
    let rises: Vec<_> = d.engine.active_breaches().into_iter().filter(|b| b.rule == "rise").collect();
    assert_eq!(rises.len(), 1, "{:#?}", d.engine.active_breaches());
    assert_eq!(rises[0].severity, Severity::Warning);

    // A slow, normal day (4 °C over an hour) raises nothing by default, but a tape library's
    // rack set to 5 °C per hour warns on a 6 °C rise that stays inside 18-27 °C.
    let mut cfg = zone_config(1);
    cfg.push_str("[racks.B01.thresholds.inlet_temp_c]\nrise = 5.0\nrise_within = \"1h\"\n");
    let mut d = Driver::new(settings(&cfg));
    let mut quiet = Driver::new(settings(&zone_config(1)));
    for m in 0..=40 {
        let t = T0 + m * MIN;
        let v = 19.0 + 6.0 * m as f64 / 40.0;
        d.feed(t, &sensors_at(t, 1, |_| v));
        quiet.feed(t, &sensors_at(t, 1, |_| v));
    }
    assert!(quiet.engine.active_breaches().is_empty());
    let b = d.engine.active_breaches();
    assert!(b.len() == 1 && b[0].rule == "rise", "{b:#?}");
}

#[test]
fn a_critical_incident_of_the_same_kind_every_day_is_handed_off_once() {
    let mut d = Driver::new(settings(&default_patterns_config(1)));
    // Three days, each with an hour at 33 °C (critical) in the afternoon.
    for day in 0..3 {
        let mut t = T0 + day * DAY + 14 * HOUR;
        while t < T0 + day * DAY + 16 * HOUR {
            let v = if t < T0 + day * DAY + 15 * HOUR { 33.0 } else { 23.0 };
            d.feed(t, &sensors_at(t, 1, |_| v));
            t += MIN;
        }
    }
    assert_eq!(d.opened().len(), 3);
    let major = major_patterns(&d);
    assert_eq!(major.len(), 1, "one hand-off for one recurring problem: {:#?}", d.patterns());
    assert_eq!(major[0].incident_ids, [d.opened()[0].incident_id.clone()]);
    let second = &d.resolved()[1];
    let chron = second.chronicle.as_ref().unwrap();
    assert!(
        chron.iter().any(|e| e.what == "pattern" && e.detail.contains("no new major-incident pattern")),
        "{chron:#?}"
    );
}

/// The ups-mib profile's flags and load (issue 12): a UPS on battery is a critical power
/// incident at once, on bypass a warning, and its output load warns over 80 % and is
/// critical over 90 %, all by default.
#[test]
fn a_ups_on_battery_or_bypass_or_loaded_over_80_percent_is_a_power_incident_by_default() {
    let cfg = r#"
[site]
id = "fra1"
[[zones]]
id = "hall1-b"
racks = ["B07"]
"#
    .to_owned()
        + &device("ups-a", "test-pdu", "hall1-b", None, "");
    let flag = |t: i64, point: &str, metric: &str, v: f64| good(t, "ups-a", point, metric, "", v, "hall1-b", None);
    let load = |t: i64, v: f64| good(t, "ups-a", "output_load", "load_pct", "%", v, "hall1-b", None);

    let mut d = Driver::new(settings(&cfg));
    for step in 0..20 {
        let t = T0 + step * 10_000;
        let on_battery = if step >= 10 { 1.0 } else { 0.0 };
        d.feed(t, &[flag(t, "on_battery", "ups_on_battery", on_battery), load(t, 60.0)]);
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!((opened[0].category, opened[0].severity), (Category::Power, Severity::Critical));
    assert_eq!(opened[0].opened_at, Timestamp(T0 + 10 * 10_000), "at the first poll on battery");
    assert_eq!(opened[0].breaches[0].point.as_str(), "on_battery");

    let mut d = Driver::new(settings(&cfg));
    for step in 0..40 {
        let t = T0 + step * 10_000;
        let on_bypass = if step >= 10 { 1.0 } else { 0.0 };
        d.feed(t, &[flag(t, "on_bypass", "ups_on_bypass", on_bypass)]);
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!((opened[0].category, opened[0].severity), (Category::Power, Severity::Warning));

    let mut d = Driver::new(settings(&cfg));
    for step in 0..60 {
        let t = T0 + step * 10_000;
        let v = match step {
            0..=9 => 60.0,
            10..=29 => 85.0,
            _ => 93.0,
        };
        d.feed(t, &[load(t, v)]);
    }
    let sevs: Vec<Severity> = d.incidents().iter().map(|i| i.severity).collect();
    assert_eq!(sevs.first(), Some(&Severity::Warning), "{sevs:?}");
    assert_eq!(sevs.last(), Some(&Severity::Critical), "{sevs:?}");
    assert_eq!(d.opened()[0].category, Category::Power);
}

/// The apc-ats profile's flag: an ATS that lost redundancy is a critical power incident of
/// the rack it feeds, at once and by default.
#[test]
fn an_ats_that_lost_redundancy_is_a_critical_power_incident_of_its_rack() {
    let cfg = r#"
[site]
id = "fra1"
[[zones]]
id = "hall1-b"
racks = ["B07"]
"#
    .to_owned()
        + &device("ats-b07", "test-pdu", "hall1-b", Some("B07"), "");
    let mut d = Driver::new(settings(&cfg));
    for step in 0..20 {
        let t = T0 + step * 10_000;
        let lost = if step >= 5 { 1.0 } else { 0.0 };
        d.feed(t, &[good(t, "ats-b07", "redundancy_lost", "ats_redundancy_lost", "", lost, "hall1-b", Some("B07"))]);
    }
    let opened = d.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!((opened[0].category, opened[0].severity), (Category::Power, Severity::Critical));
    assert_eq!(opened[0].opened_at, Timestamp(T0 + 5 * 10_000));
    assert_eq!(opened[0].racks.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["B07"]);
}

/// Regression: with the default rise rule every inlet point keeps rise samples; saved, they
/// made the engine state 3.6x larger (1.6 MB at bench-scale), rewritten with every event batch.
#[test]
fn quiet_inlet_points_stay_out_of_the_saved_state_despite_the_rise_window() {
    let mut d = Driver::new(settings(&zone_config(20)));
    for step in 0..60 {
        let t = T0 + step * 10_000;
        // Slowly warming, well inside the thresholds: the rise window holds samples.
        d.feed(t, &sensors_at(t, 20, |i| 21.0 + step as f64 * 0.01 + i as f64 * 0.001));
    }
    let json = serde_json::to_value(d.engine.export_state()).unwrap();
    assert_eq!(json["points"].as_array().map(Vec::len), Some(0), "quiet points were saved: {}", json["points"]);
}
