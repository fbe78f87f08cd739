//! The shell's clock: the only place the daemon reads wall-clock time.
//!
//! The daemon runs on the system clock. The demo runs the same pipeline on the simulator's
//! compressed clock (weeks in minutes), so the engine's timers, the readings' times and the
//! simulated devices all agree on one simulated time line.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::Timestamp;
#[cfg(feature = "sim")]
use crate::sim::scenario::SimClock;

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    #[cfg(feature = "sim")]
    Simulated(SimClock),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            #[cfg(feature = "sim")]
            Clock::Simulated(c) => c.now(),
        }
    }

    /// Whether readings must be re-stamped with this clock (sources stamp the system time).
    pub fn is_simulated(&self) -> bool {
        match self {
            Clock::System => false,
            #[cfg(feature = "sim")]
            Clock::Simulated(_) => true,
        }
    }

    /// The real instant at which this clock will show `at` (now, if it already does).
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        let wait = match self {
            Clock::System => Duration::from_millis(at.0.saturating_sub(Timestamp::now().0).max(0) as u64),
            #[cfg(feature = "sim")]
            Clock::Simulated(c) => c.wall_until(at),
        };
        // Far-away deadlines are capped: the loop wakes, finds nothing due and sleeps again.
        Instant::now() + wait.min(Duration::from_secs(3600))
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn simulated_clock_maps_simulated_deadlines_to_real_ones() {
        let clock = Clock::Simulated(SimClock::new(Timestamp(0), 3600.0));
        let an_hour_later = Timestamp(3_600_000);
        let wait = clock.instant_of(an_hour_later).saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(800), "{wait:?}");
        assert!(clock.is_simulated());
        let sys = Clock::System;
        let wait = sys.instant_of(Timestamp(Timestamp::now().0 + 2000)).saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(2) && wait > Duration::from_millis(1500), "{wait:?}");
    }
}
