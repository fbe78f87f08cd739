//! Threshold rules: from a value and a resolved `Threshold` to a breach level, and the small
//! state machine (`RuleState`) that turns crossings into breaches.
//!
//! Pure functions and plain data; no knowledge of incidents. Invariants: a crossing becomes a
//! breach only after it held for `hold_for` (confirmed by a reading at or after that time, so a
//! device going silent never confirms a breach); a breach clears only once the value is back
//! inside its bound by `hysteresis`; severity may change while a breach is active.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Threshold;
use crate::model::{Severity, Timestamp};

/// Which rule produced a breach; its name is the `rule` field of a `Breach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    High,
    Low,
    Rise,
    Breaker,
    Redundancy,
    Comms,
    Alarm,
}

impl RuleKind {
    /// The name used in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::High => "high",
            RuleKind::Low => "low",
            RuleKind::Rise => "rise",
            RuleKind::Breaker => "breaker",
            RuleKind::Redundancy => "redundancy",
            RuleKind::Comms => "comms",
            RuleKind::Alarm => "alarm",
        }
    }

    /// Whether "worse" means a lower value.
    pub fn is_low(self) -> bool {
        self == RuleKind::Low
    }
}

/// A value outside a bound: how bad, which rule, and the bound crossed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub severity: Severity,
    pub rule: RuleKind,
    pub bound: f64,
}

/// Classifies `v` against `t`. With `active` set (the breach currently held), bounds on the
/// side of that breach are moved back by the hysteresis, so the breach only clears (or drops
/// to a lower severity) once the value is clearly back inside. `high_rule` names high-side
/// hits (`High`, `Breaker`, `Redundancy` or `Alarm`).
pub fn classify(t: &Threshold, v: f64, active: Option<&Hit>, high_rule: RuleKind) -> Option<Hit> {
    let h = t.hysteresis.max(0.0);
    // Worst first: a critical bound before a warning one, high before low.
    let bounds = [
        (t.crit_high, Severity::Critical, false),
        (t.crit_low, Severity::Critical, true),
        (t.warn_high, Severity::Warning, false),
        (t.warn_low, Severity::Warning, true),
    ];
    bounds.into_iter().find_map(|(bound, severity, low)| {
        let b = bound?;
        let held = active.is_some_and(|a| a.rule.is_low() == low && a.rule != RuleKind::Rise && a.severity >= severity);
        let crossed = match (low, held) {
            (false, false) => v > b,
            (false, true) => v > b - h,
            (true, false) => v < b,
            (true, true) => v < b + h,
        };
        crossed.then_some(Hit { severity, rule: if low { RuleKind::Low } else { high_rule }, bound: b })
    })
}

/// The breaker rule as a threshold: warning/critical at the configured fractions of the
/// rating, with the hysteresis and hold of the metric's own threshold when it has one.
pub fn breaker_threshold(base: Option<&Threshold>, rating_a: f64) -> Threshold {
    let (hysteresis, hold_for, warn, crit) = match base {
        Some(t) => (t.hysteresis, t.hold_for, t.breaker_warn, t.breaker_crit),
        None => (0.5, Duration::from_secs(60), 0.8, 0.9),
    };
    Threshold {
        warn_high: Some(warn * rating_a),
        crit_high: Some(crit * rating_a),
        warn_low: None,
        crit_low: None,
        hysteresis,
        hold_for,
        rise: None,
        breaker_warn: warn,
        breaker_crit: crit,
    }
}

/// Dew point (°C) from dry-bulb temperature and relative humidity, Magnus formula with the
/// Sonntag constants (b = 17.62, c = 243.12 °C), good to ±0.35 °C over −45..60 °C.
pub fn dew_point_c(temp_c: f64, rh_pct: f64) -> Option<f64> {
    if !(temp_c.is_finite() && rh_pct.is_finite()) || rh_pct <= 0.0 || rh_pct > 100.5 {
        return None;
    }
    const B: f64 = 17.62;
    const C: f64 = 243.12;
    let gamma = (rh_pct.min(100.0) / 100.0).ln() + B * temp_c / (C + temp_c);
    let dp = C * gamma / (B - gamma);
    dp.is_finite().then_some(dp)
}

/// A crossing waiting for its `for` hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub since: Timestamp,
    pub hit: Hit,
}

/// The breach being held.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub since: Timestamp,
    pub hit: Hit,
}

/// Debounce and breach state of one rule on one point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The last value was outside a bound (ignoring hysteresis and hold): for noise counts.
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub pending: Option<Pending>,
    #[serde(default)]
    pub active: Option<Active>,
}

/// What one evaluation did to a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Nothing that incidents care about.
    Quiet,
    /// A crossing held long enough: a new breach.
    Raised(Active),
    /// The breach is still held; severity or bound may have changed.
    Held { from: Hit, to: Hit },
    /// The breach is over.
    Cleared(Hit),
}

impl RuleState {
    /// Advances the rule with a new classification. Returns the step and whether this
    /// evaluation was a new raw crossing (inside -> outside, before debounce).
    pub fn step(&mut self, now: Timestamp, hit: Option<Hit>, raw: bool, hold: Duration) -> (Step, bool) {
        let crossing = raw && !self.raw;
        self.raw = raw;
        let step = match (self.active, hit) {
            (None, None) => {
                self.pending = None;
                Step::Quiet
            }
            (None, Some(h)) => {
                let since = match self.pending {
                    Some(p) if p.hit.rule == h.rule => p.since,
                    _ => now,
                };
                if now.since(since) >= hold {
                    let a = Active { since, hit: h };
                    self.active = Some(a);
                    self.pending = None;
                    Step::Raised(a)
                } else {
                    self.pending = Some(Pending { since, hit: h });
                    Step::Quiet
                }
            }
            (Some(a), Some(h)) => {
                self.active = Some(Active { since: a.since, hit: h });
                Step::Held { from: a.hit, to: h }
            }
            (Some(a), None) => {
                self.active = None;
                self.pending = None;
                Step::Cleared(a.hit)
            }
        };
        (step, crossing)
    }

    /// Drops any breach or pending crossing (inhibition: the device is down). Returns the
    /// breach that was held, if any.
    pub fn reset(&mut self) -> Option<Hit> {
        self.pending = None;
        self.raw = false;
        self.active.take().map(|a| a.hit)
    }
}

/// One rule's state on one point, boxed only while it is not idle. Most points are idle most
/// of the time, so this keeps 48 of the 56 bytes of each of a point's three rules off the
/// engine's point list (issue 13); saved, it reads and writes exactly as a `RuleState`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleCell(Option<Box<RuleState>>);

static IDLE: RuleState = RuleState { raw: false, pending: None, active: None };

impl RuleCell {
    /// The state (an idle one when nothing is boxed).
    pub fn get(&self) -> &RuleState {
        self.0.as_deref().unwrap_or(&IDLE)
    }

    pub fn is_idle(&self) -> bool {
        self.0.is_none()
    }

    /// [`RuleState::step`], allocating only when the rule leaves idle.
    pub fn step(&mut self, now: Timestamp, hit: Option<Hit>, raw: bool, hold: Duration) -> (Step, bool) {
        match &mut self.0 {
            Some(state) => {
                let out = state.step(now, hit, raw, hold);
                if **state == IDLE {
                    self.0 = None;
                }
                out
            }
            None => {
                let mut state = RuleState::default();
                let out = state.step(now, hit, raw, hold);
                if state != IDLE {
                    self.0 = Some(Box::new(state));
                }
                out
            }
        }
    }

    /// [`RuleState::reset`].
    pub fn reset(&mut self) -> Option<Hit> {
        self.0.take().and_then(|mut state| state.reset())
    }
}

impl Serialize for RuleCell {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RuleCell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = RuleState::deserialize(deserializer)?;
        Ok(RuleCell((state != IDLE).then(|| Box::new(state))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inlet() -> Threshold {
        Threshold {
            warn_high: Some(27.0),
            crit_high: Some(32.0),
            warn_low: Some(18.0),
            crit_low: Some(15.0),
            hysteresis: 0.5,
            hold_for: Duration::from_secs(60),
            rise: None,
            breaker_warn: 0.8,
            breaker_crit: 0.9,
        }
    }

    #[test]
    fn classify_uses_hysteresis_only_on_the_held_side() {
        let t = inlet();
        assert_eq!(classify(&t, 27.0, None, RuleKind::High), None);
        let w = classify(&t, 27.1, None, RuleKind::High).unwrap();
        assert_eq!((w.severity, w.rule, w.bound), (Severity::Warning, RuleKind::High, 27.0));
        // Held: 26.8 is still a breach, 26.4 is not.
        assert!(classify(&t, 26.8, Some(&w), RuleKind::High).is_some());
        assert_eq!(classify(&t, 26.4, Some(&w), RuleKind::High), None);
        let c = classify(&t, 32.5, None, RuleKind::High).unwrap();
        assert_eq!(c.severity, Severity::Critical);
        // Critical held down to 31.5, then warning.
        assert_eq!(classify(&t, 31.7, Some(&c), RuleKind::High).unwrap().severity, Severity::Critical);
        assert_eq!(classify(&t, 31.4, Some(&c), RuleKind::High).unwrap().severity, Severity::Warning);
        assert_eq!(classify(&t, 14.0, None, RuleKind::High).unwrap().rule, RuleKind::Low);
    }

    #[test]
    fn a_spike_shorter_than_the_hold_is_not_a_breach() {
        let t = inlet();
        let mut rs = RuleState::default();
        let hit = classify(&t, 28.0, None, RuleKind::High);
        let (s, crossing) = rs.step(Timestamp(0), hit, true, t.hold_for);
        assert_eq!(s, Step::Quiet);
        assert!(crossing);
        let (s, _) = rs.step(Timestamp(30_000), None, false, t.hold_for);
        assert_eq!(s, Step::Quiet);
        assert_eq!(rs.pending, None);
        rs.step(Timestamp(40_000), hit, true, t.hold_for);
        let (s, crossing) = rs.step(Timestamp(100_000), hit, true, t.hold_for);
        assert!(!crossing);
        assert!(matches!(s, Step::Raised(a) if a.since == Timestamp(40_000)));
    }

    #[test]
    fn a_rule_cell_steps_as_its_state_boxing_only_while_not_idle() {
        let t = inlet();
        let (mut cell, mut state) = (RuleCell::default(), RuleState::default());
        let script = [
            (0, 25.0),
            (10_000, 28.0),
            (20_000, 26.0),
            (30_000, 28.5),
            (100_000, 29.0),
            (110_000, 33.0),
            (120_000, 20.0),
            (130_000, 20.0),
        ];
        for (at, v) in script {
            let hit = classify(&t, v, state.active.map(|a| a.hit).as_ref(), RuleKind::High);
            let raw = classify(&t, v, None, RuleKind::High).is_some();
            let expected = state.step(Timestamp(at), hit, raw, t.hold_for);
            assert_eq!(cell.step(Timestamp(at), hit, raw, t.hold_for), expected, "at {at}");
            assert_eq!(*cell.get(), state, "at {at}");
            assert_eq!(cell.is_idle(), state == RuleState::default(), "boxed only while not idle, at {at}");
            // Saved, a cell is its state: the same bytes, read back the same.
            let json = serde_json::to_string(&cell).unwrap();
            assert_eq!(json, serde_json::to_string(&state).unwrap());
            assert_eq!(serde_json::from_str::<RuleCell>(&json).unwrap(), cell);
        }
        assert!(cell.is_idle(), "cleared at the end of the script");
        cell.step(Timestamp(200_000), classify(&t, 40.0, None, RuleKind::High), true, Duration::ZERO);
        assert!(cell.reset().is_some());
        assert!(cell.is_idle());
    }

    #[test]
    fn dew_point_matches_reference_values() {
        // 25 °C at 50 %RH is about 13.9 °C dew point; 100 %RH is the temperature itself.
        let dp = dew_point_c(25.0, 50.0).unwrap();
        assert!((dp - 13.85).abs() < 0.1, "{dp}");
        assert!((dew_point_c(20.0, 100.0).unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(dew_point_c(20.0, 0.0), None);
    }

    #[test]
    fn breaker_rule_is_80_and_90_percent_of_the_rating() {
        let t = breaker_threshold(None, 32.0);
        assert_eq!(t.warn_high, Some(25.6));
        assert!((t.crit_high.unwrap() - 28.8).abs() < 1e-9);
    }
}
