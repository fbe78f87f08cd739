//! The shell's clock: the only place the daemon reads wall-clock time.
//!
//! The daemon runs on the system clock. The demo runs the same pipeline on a compressed
//! clock (one simulated day in a few seconds), so the engine's timers, the readings' times
//! and the simulator's scenario all agree on one simulated time line.

use std::time::{Duration, Instant};

use crate::model::Timestamp;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// Simulated time = `sim_epoch` + (real time since `real_epoch`) x `speed`.
    Scaled { real_epoch: Instant, sim_epoch: Timestamp, speed: f64 },
}

impl Clock {
    pub fn scaled(sim_epoch: Timestamp, speed: f64) -> Self {
        Clock::Scaled { real_epoch: Instant::now(), sim_epoch, speed: speed.max(1e-6) }
    }

    pub fn now(&self) -> Timestamp {
        match *self {
            Clock::System => Timestamp::now(),
            Clock::Scaled { real_epoch, sim_epoch, speed } => {
                let sim_ms = real_epoch.elapsed().as_secs_f64() * 1000.0 * speed;
                Timestamp(sim_epoch.0.saturating_add(sim_ms as i64))
            }
        }
    }

    /// Whether readings must be re-stamped with this clock (their sources use the system clock).
    pub fn is_scaled(&self) -> bool {
        matches!(self, Clock::Scaled { .. })
    }

    /// The real instant at which this clock will show `at` (now, if it already does).
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        let now = self.now();
        let ahead_ms = at.0.saturating_sub(now.0).max(0) as f64;
        let real_ms = match *self {
            Clock::System => ahead_ms,
            Clock::Scaled { speed, .. } => ahead_ms / speed,
        };
        // Cap far-away deadlines: the loop wakes and recomputes, which is harmless.
        Instant::now() + Duration::from_secs_f64((real_ms / 1000.0).min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_maps_simulated_deadlines_to_real_ones() {
        let clock = Clock::scaled(Timestamp(0), 3600.0);
        let an_hour_later = Timestamp(3_600_000);
        let wait = clock.instant_of(an_hour_later).saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        assert!(clock.now().0 >= 0);
    }
}
