//! Context for thermal incidents: rack load against its baseline, and a cooling unit in alarm
//! as the probable cause.
//!
//! A rack's power is the sum of its PDUs' latest `power_w` (a PDU's unlabeled total when it
//! has one, else the sum of its labeled rows). A PDU that reports no power but current
//! (`phase_current_a`) counts as current × its `voltage_v` (apparent power, close to watts at
//! an IT load's power factor), or, without a voltage, the rack is measured in amps against an
//! amps baseline; `RackLoad::basis` says which. The baseline is the median of hourly means over
//! `baseline_window`: memory per rack is one small bucket per hour of the window, whatever the
//! run length.

use super::Engine;
use super::chronicle;
use super::events::RackLoad;
use super::state::{Bucket, LoadBasis, PointKind, RackState};
use crate::model::{RackId, Timestamp, humane_duration};

/// Load changes below this (percent) are not worth a hint.
const HINT_MIN_CHANGE_PCT: f64 = 10.0;

impl Engine {
    pub(super) fn rack_slot(&mut self, rack: &RackId) -> u32 {
        if let Some(i) = self.racks.get(rack.as_str()) {
            return *i;
        }
        let i = self.st.racks.len() as u32;
        self.st.racks.push(RackState {
            id: rack.clone(),
            power_w: None,
            buckets: Default::default(),
            basis: LoadBasis::default(),
            sampled_at: None,
        });
        self.racks.insert(rack.clone(), i);
        self.rack_points.push(Vec::new());
        i
    }

    /// A PDU of the rack reported power or current: recompute the rack total and add it to
    /// this hour. Per PDU: its power if it reports any; else its current × its mean voltage;
    /// else its current alone. The rack is in watts when every PDU gives watts, else in amps
    /// (the sum of the currents); a change of basis restarts the baseline, whose samples
    /// would not compare.
    pub(super) fn rack_power_sample(&mut self, now: Timestamp, rs: u32) {
        // Every power and phase reading of the rack lands here, and each sample walks all the
        // rack's points: once per instant is enough (the others of this poll count next time).
        if self.st.racks[rs as usize].sampled_at == Some(now) {
            return;
        }
        self.st.racks[rs as usize].sampled_at = Some(now);
        let points = &self.rack_points[rs as usize];
        let mut per_device: Vec<(&str, DeviceLoad)> = Vec::new();
        for &pi in points {
            let p = &self.st.points[pi as usize];
            let Some((_, v)) = p.last else { continue };
            let dev = p.device.as_str();
            let idx = match per_device.iter().position(|e| e.0 == dev) {
                Some(i) => i,
                None => {
                    per_device.push((dev, DeviceLoad::default()));
                    per_device.len() - 1
                }
            };
            let d = &mut per_device[idx].1;
            let labeled = p.label.is_some();
            match p.kind {
                PointKind::Power => d.power.add(labeled, v),
                PointKind::PhaseCurrent => d.current.add(labeled, v),
                _ => d.volts.push(v),
            }
        }
        let mut watts = Some(0.0);
        let mut amps = 0.0;
        let mut derived = false;
        for (_, d) in &per_device {
            let current = d.current.total();
            if let Some(i) = current {
                amps += i;
            }
            let w = match (d.power.total(), current) {
                (Some(w), _) => Some(w),
                (None, Some(i)) if !d.volts.is_empty() => {
                    derived = true;
                    Some(i * d.volts.iter().sum::<f64>() / d.volts.len() as f64)
                }
                (None, Some(_)) => None,
                (None, None) => Some(0.0), // only a voltage so far
            };
            watts = watts.zip(w).map(|(a, b)| a + b);
        }
        let (total, basis) = match watts {
            Some(w) if derived => (w, LoadBasis::CurrentXVoltage),
            Some(w) => (w, LoadBasis::PowerW),
            None => (amps, LoadBasis::CurrentA),
        };
        let window_ms = self.settings.baseline_window.as_millis().min(i64::MAX as u128) as i64;
        let rack = &mut self.st.racks[rs as usize];
        if rack.basis != basis {
            rack.basis = basis;
            rack.buckets.clear();
        }
        rack.power_w = Some(total);
        let hour = now.0.div_euclid(Timestamp::MS_PER_HOUR) * Timestamp::MS_PER_HOUR;
        match rack.buckets.back_mut() {
            Some(b) if b.hour == hour => {
                b.sum_w += total;
                b.n += 1;
            }
            _ => rack.buckets.push_back(Bucket { hour, sum_w: total, n: 1 }),
        }
        let oldest = now.0.saturating_sub(window_ms);
        while rack.buckets.front().is_some_and(|b| b.hour + Timestamp::MS_PER_HOUR <= oldest) {
            rack.buckets.pop_front();
        }
    }

    /// The rack's power now against the median of its hourly means.
    fn rack_load(&self, rack: &RackId) -> Option<RackLoad> {
        let rs = *self.racks.get(rack.as_str())?;
        let r = &self.st.racks[rs as usize];
        let power_w = r.power_w?;
        let mut means: Vec<f64> = r.buckets.iter().filter(|b| b.n > 0).map(|b| b.sum_w / b.n as f64).collect();
        if means.is_empty() {
            return None;
        }
        means.sort_by(f64::total_cmp);
        let mid = means.len() / 2;
        let baseline_w = if means.len() % 2 == 1 { means[mid] } else { (means[mid - 1] + means[mid]) / 2.0 };
        let change_pct =
            if baseline_w.abs() > f64::EPSILON { (power_w - baseline_w) / baseline_w * 100.0 } else { 0.0 };
        let (now, baseline) = (Some(round1(power_w)), Some(round1(baseline_w)));
        let amps = r.basis == LoadBasis::CurrentA;
        Some(RackLoad {
            rack: rack.clone(),
            power_w: if amps { None } else { now },
            baseline_w: if amps { None } else { baseline },
            change_pct: round1(change_pct),
            basis: r.basis.as_str().to_owned(),
            current_a: if amps { now } else { None },
            baseline_a: if amps { baseline } else { None },
        })
    }

    /// Refreshes the load context of a thermal incident; with `note`, records newly attached
    /// racks in the chronicle.
    pub(super) fn refresh_context(&mut self, now: Timestamp, ii: usize, note: bool) {
        let inc = &self.st.incidents[ii];
        let mut racks = inc.racks.clone();
        if racks.is_empty()
            && let Some(z) = self.ix.zones.get(&inc.zone)
        {
            // Zone-level sensors: the zone's racks are the candidates.
            racks = z.racks.clone();
        }
        let loads: Vec<RackLoad> = racks.iter().filter_map(|r| self.rack_load(r)).collect();
        let window = humane_duration(self.settings.baseline_window);
        let hint = loads
            .iter()
            .filter(|l| l.change_pct.abs() >= HINT_MIN_CHANGE_PCT)
            .max_by(|a, b| a.change_pct.total_cmp(&b.change_pct))
            .map(|l| {
                let dir = if l.change_pct >= 0.0 { "more" } else { "less" };
                let what = if l.current_a.is_some() { " current" } else { "" };
                let from =
                    if l.basis == LoadBasis::CurrentXVoltage.as_str() { " (from current × voltage)" } else { "" };
                format!(
                    "{} draws {} % {dir}{what} than its {window} median{from}",
                    l.rack,
                    chronicle::num(l.change_pct.abs().round())
                )
            });
        let inc = &mut self.st.incidents[ii];
        let known: Vec<RackId> = inc.context.rack_load.iter().map(|l| l.rack.clone()).collect();
        let new: Vec<&RackLoad> = loads.iter().filter(|l| !known.contains(&l.rack)).collect();
        if note && !new.is_empty() {
            let parts: Vec<String> = new
                .iter()
                .map(|l| {
                    let (now, base, unit) = match (l.power_w, l.baseline_w) {
                        (Some(p), Some(b)) => (p, b, "W"),
                        _ => (l.current_a.unwrap_or_default(), l.baseline_a.unwrap_or_default(), "A"),
                    };
                    let from = if l.basis == LoadBasis::CurrentXVoltage.as_str() { ", current × voltage" } else { "" };
                    format!(
                        "{} {} {unit} vs {} {unit} {window} median ({:+} %{from})",
                        l.rack,
                        chronicle::num(now),
                        chronicle::num(base),
                        chronicle::num(l.change_pct)
                    )
                })
                .collect();
            let mut detail = format!("rack load: {}", parts.join("; "));
            if let Some(h) = &hint {
                detail.push_str(&format!(" — {h}"));
            }
            inc.chronicle.push(chronicle::plain(now, "context", detail));
        }
        inc.context.rack_load = loads;
        if hint.is_some() || inc.context.hint.as_deref().is_some_and(|h| h.contains(" draws ")) {
            inc.context.hint = hint;
        }
    }

    /// Names a cooling unit in alarm in the incident's zone as its probable cause.
    pub(super) fn attach_probable_cause(&mut self, now: Timestamp, ii: usize) {
        let inc = &self.st.incidents[ii];
        if inc.context.probable_cause.is_some() {
            return;
        }
        let Some(d) = self.st.devices.iter().find(|d| d.zone == inc.zone && d.in_alarm.is_some()) else { return };
        let since = d.in_alarm.unwrap_or(now);
        let cause = format!("cooling unit {} in alarm since {}", d.id, since);
        let inc = &mut self.st.incidents[ii];
        inc.chronicle.push(chronicle::plain(now, "context", format!("probable cause: {cause}")));
        inc.context.probable_cause = Some(cause);
        inc.dirty = true;
    }
}

/// One PDU's latest inputs to its rack's load.
#[derive(Debug, Default)]
struct DeviceLoad {
    power: Sum,
    current: Sum,
    volts: Vec<f64>,
}

/// A PDU's unlabeled total when it has one, else the sum of its labeled rows.
#[derive(Debug, Default)]
struct Sum {
    total: Option<f64>,
    rows: Option<f64>,
}

impl Sum {
    fn add(&mut self, labeled: bool, v: f64) {
        let slot = if labeled { &mut self.rows } else { &mut self.total };
        *slot = Some(slot.unwrap_or(0.0) + v);
    }

    fn total(&self) -> Option<f64> {
        self.total.or(self.rows)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
