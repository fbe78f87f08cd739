//! Retry delays: one capped, jittered exponential backoff for every retry loop (the MQTT
//! publisher and subscriber reconnects, Modbus read retries). Callers differ only in their
//! first delay and cap.
//!
//! The jitter ("equal jitter": a random delay in [d/2, d]) spreads gateways or devices that
//! failed together over the interval instead of retrying in lockstep.

use std::time::Duration;

/// The delay before retry number `retry` (0 for the first retry): `first * 2^retry`, capped
/// at `cap` (never below `first`), then a random point in its upper half.
pub fn delay(first: Duration, cap: Duration, retry: u32) -> Duration {
    let full = first.saturating_mul(1u32 << retry.min(20)).min(cap.max(first));
    let half = full / 2;
    half + Duration::from_nanos(fastrand::u64(0..=(full - half).as_nanos().min(u64::MAX as u128) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_is_capped_and_jittered() {
        let first = Duration::from_millis(500);
        let cap = Duration::from_secs(60);
        for _ in 0..100 {
            let d0 = delay(first, cap, 0);
            assert!(d0 >= Duration::from_millis(250) && d0 <= first, "{d0:?}");
            let d3 = delay(first, cap, 3);
            assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4), "{d3:?}");
            let d40 = delay(first, cap, 40);
            assert!(d40 >= Duration::from_secs(30) && d40 <= cap, "{d40:?}");
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| delay(first, cap, 8).as_millis()).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn a_cap_below_the_first_delay_never_shrinks_it() {
        let d = delay(Duration::from_secs(1), Duration::from_millis(10), 5);
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1), "{d:?}");
    }
}
