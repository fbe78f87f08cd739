//! The shell's clock: the only place the daemon reads wall-clock time.
//!
//! The daemon runs on the system clock. The demo runs the same pipeline on a simulated time
//! line (weeks in minutes), so the engine's timers, the readings' times and the simulated
//! devices all agree on one clock. Any `SimulatedTime` will do (the simulator's `SimClock`
//! is one): the agent does not depend on the simulator.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::Timestamp;

/// A time line running at its own pace against the wall clock.
pub trait SimulatedTime: Debug + Send + Sync {
    /// The simulated time now.
    fn now(&self) -> Timestamp;
    /// Wall-clock time from now until this clock reads `at` (zero if it already does).
    fn wait_until(&self, at: Timestamp) -> Duration;
}

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Simulated(Arc<dyn SimulatedTime>),
}

impl Clock {
    /// A clock on the simulated time line `time`.
    pub fn simulated(time: impl SimulatedTime + 'static) -> Self {
        Clock::Simulated(Arc::new(time))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Simulated(c) => c.now(),
        }
    }

    /// Whether readings must be re-stamped with this clock (sources stamp the system time).
    pub fn is_simulated(&self) -> bool {
        match self {
            Clock::System => false,
            Clock::Simulated(_) => true,
        }
    }

    /// The real instant at which this clock will show `at` (now, if it already does).
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        let wait = match self {
            Clock::System => Duration::from_millis(at.0.saturating_sub(Timestamp::now().0).max(0) as u64),
            Clock::Simulated(c) => c.wait_until(at),
        };
        // Far-away deadlines are capped: the loop wakes, finds nothing due and sleeps again.
        Instant::now() + wait.min(Duration::from_secs(3600))
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    /// Simulated time standing at `at`, running `speed` times the wall clock.
    #[derive(Debug)]
    struct Fixed {
        at: Timestamp,
        speed: f64,
    }

    impl SimulatedTime for Fixed {
        fn now(&self) -> Timestamp {
            self.at
        }
        fn wait_until(&self, at: Timestamp) -> Duration {
            Duration::from_secs_f64((at.0 - self.at.0).max(0) as f64 / 1000.0 / self.speed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn simulated_clock_maps_simulated_deadlines_to_real_ones() {
        let clock = Clock::simulated(Fixed { at: Timestamp(0), speed: 3600.0 });
        assert!(clock.is_simulated());
        assert_eq!(clock.now(), Timestamp(0));
        let an_hour_later = Timestamp(3_600_000);
        assert_eq!(clock.instant_of(an_hour_later) - Instant::now(), Duration::from_secs(1));
        assert_eq!(clock.instant_of(Timestamp(-5)), Instant::now(), "the past is now");
        let far = Timestamp(3_600_000 * 24 * 3600);
        assert_eq!(clock.instant_of(far) - Instant::now(), Duration::from_secs(3600), "capped");
        let sys = Clock::System;
        let wait = sys.instant_of(Timestamp(Timestamp::now().0 + 2000)).saturating_duration_since(Instant::now());
        assert!(wait <= Duration::from_secs(2) && wait > Duration::from_millis(1500), "{wait:?}");
    }
}
