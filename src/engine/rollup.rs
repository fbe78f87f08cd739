//! Zone rollups: min/avg/max per metric per zone over each `rollup_interval`.
//!
//! Intervals are aligned to multiples of the interval since the epoch, so every gateway's
//! rollups line up. One accumulator per (zone, metric) is reused interval after interval:
//! memory is bounded by the configuration. An interval with no readings emits nothing.

use std::collections::BTreeMap;

use arcstr::ArcStr;

use super::Engine;
use super::events::{Event, RollupEvent, RollupMetric};
use super::state::RollupAcc;
use crate::model::{Metric, Timestamp, ZoneId};

impl Engine {
    pub(super) fn rollup_slot(&mut self, key: (ZoneId, Metric), unit: ArcStr) -> u32 {
        if let Some(i) = self.rollup_ix.get(&key) {
            return *i;
        }
        let i = self.st.rollups.len() as u32;
        self.st.rollups.push(RollupAcc {
            zone: key.0.clone(),
            metric: key.1.clone(),
            unit,
            min: None,
            max: None,
            sum: 0.0,
            count: 0,
        });
        self.rollup_ix.insert(key, i);
        i
    }

    fn interval_ms(&self) -> Option<i64> {
        self.settings.rollup_interval.map(|d| (d.as_millis().min(i64::MAX as u128) as i64).max(1))
    }

    pub(super) fn rollup_add(&mut self, now: Timestamp, slot: u32, v: f64) {
        let Some(ms) = self.interval_ms() else { return };
        if self.st.rollup_from.is_none() {
            self.st.rollup_from = Some(Timestamp(now.0.div_euclid(ms) * ms));
        }
        let a = &mut self.st.rollups[slot as usize];
        a.min = Some(a.min.map_or(v, |m| m.min(v)));
        a.max = Some(a.max.map_or(v, |m| m.max(v)));
        a.sum += v;
        a.count += 1;
    }

    /// End of the interval being accumulated.
    pub(super) fn rollup_due(&self) -> Option<Timestamp> {
        let ms = self.interval_ms()?;
        self.st.rollup_from.map(|f| Timestamp(f.0.saturating_add(ms)))
    }

    pub(super) fn rollup_timers(&mut self, now: Timestamp) {
        let Some(due) = self.rollup_due() else { return };
        if now < due {
            return;
        }
        let from = self.st.rollup_from.unwrap_or(now);
        let mut zones: BTreeMap<ZoneId, Vec<RollupMetric>> = BTreeMap::new();
        for a in &mut self.st.rollups {
            if a.count == 0 {
                continue;
            }
            zones.entry(a.zone.clone()).or_default().push(RollupMetric {
                metric: a.metric.clone(),
                unit: a.unit.to_string(),
                min: a.min.unwrap_or(f64::NAN),
                avg: a.sum / a.count as f64,
                max: a.max.unwrap_or(f64::NAN),
                count: a.count,
            });
            a.min = None;
            a.max = None;
            a.sum = 0.0;
            a.count = 0;
        }
        for (zone, mut metrics) in zones {
            metrics.sort_by(|a, b| a.metric.cmp(&b.metric));
            self.st.events.push_back(Event::Rollup(RollupEvent { zone, from, to: due, metrics }));
        }
        // The next interval starts with the next reading (none may come for a while).
        self.st.rollup_from = None;
    }
}
