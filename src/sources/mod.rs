//! Sources: one poll task per device, turning device answers into `Reading`s.
//!
//! Invariants: polls of one device never overlap; a slow or dead device never delays
//! another; a failed poll yields bad-quality readings (never silence); schedules skip
//! missed ticks instead of bunching them.

pub mod modbus;
pub mod snmp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{DeviceSpec, Transport};
use crate::model::Reading;

/// Poll counters of one protocol, shared with the agent for `health` and `status`.
#[derive(Debug, Default)]
pub struct ProtocolStats {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    /// Ticks skipped because the previous poll of that device was still running.
    pub polls_late: AtomicU64,
    /// Requests sent on the wire (shows batching).
    pub requests: AtomicU64,
}

#[derive(Debug, Default)]
pub struct SourceStats {
    pub modbus: ProtocolStats,
    pub snmp: ProtocolStats,
}

/// A plain copy of the counters for serializing into health/status.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ProtocolCounts {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub polls_late: u64,
    pub requests: u64,
}

impl ProtocolStats {
    pub fn snapshot(&self) -> ProtocolCounts {
        ProtocolCounts {
            polls_ok: self.polls_ok.load(Ordering::Relaxed),
            polls_failed: self.polls_failed.load(Ordering::Relaxed),
            polls_late: self.polls_late.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// What every poll task gets from the agent (or from `poll`).
#[derive(Clone)]
pub struct SourceContext {
    pub readings: mpsc::Sender<Reading>,
    pub stats: Arc<SourceStats>,
    pub cancel: CancellationToken,
    /// Poll each device once, then end (for `hallmonitor poll --once`).
    pub once: bool,
}

/// Sends a poll's readings to the agent, in order. Capacity is reserved for many at a time,
/// not one by one (each send was its own wait on the channel and on the cancel token: as much
/// work as decoding the reading). False when nobody listens any more, or the poller is
/// cancelled while the channel is full (reload, shutdown).
pub async fn send_readings(ctx: &SourceContext, readings: Vec<Reading>) -> bool {
    let mut readings = readings.into_iter();
    while readings.len() > 0 {
        let n = readings.len().min(ctx.readings.max_capacity());
        let permits = tokio::select! {
            p = ctx.readings.reserve_many(n) => p.ok(),
            _ = ctx.cancel.cancelled() => None,
        };
        let Some(permits) = permits else { return false };
        for (permit, r) in permits.zip(readings.by_ref()) {
            permit.send(r);
        }
    }
    true
}

/// Poll start slots per interval. Devices are spread over their interval so that a site is
/// not asked in one instant, but only over this many instants: each wake-up of the gateway
/// then starts a group of polls (and their answers arrive together) instead of one. At 100
/// devices every 5 s, one wake-up per device cost more CPU than decoding its answer.
const POLL_SLOTS: u32 = 8;

/// When a device polling every `interval` first polls: at a random one of `POLL_SLOTS`
/// instants per interval, on a grid shared by every device with that interval (anchored at
/// the first call), so devices of one slot tick together for as long as the daemon runs.
/// `once` (`poll --once`) starts now.
pub fn first_poll_at(interval: Duration, once: bool) -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    let now = Instant::now();
    if once {
        return now;
    }
    let anchor = *ANCHOR.get_or_init(|| now);
    let interval = interval.max(Duration::from_millis(1));
    let slot = interval / POLL_SLOTS;
    let on_grid = anchor + slot * fastrand::u32(0..POLL_SLOTS);
    // The grid's next tick at or after now, the grid point being before or after now (a
    // test's paused clock can run far ahead and back with a new runtime).
    let i = interval.as_nanos();
    let wait = match now.checked_duration_since(on_grid) {
        Some(past) => (i - past.as_nanos() % i) % i,
        None => (on_grid - now).as_nanos() % i,
    };
    now + Duration::from_nanos(u64::try_from(wait).unwrap_or(0))
}

/// Starts the poll tasks of all enabled devices. Each protocol groups devices as its
/// transport needs (one TCP connection per gateway address, one owner per RS-485 bus).
pub fn spawn_all(devices: &[DeviceSpec], ctx: &SourceContext) -> Vec<JoinHandle<()>> {
    let (mb, sn): (Vec<_>, Vec<_>) =
        devices.iter().filter(|d| d.enabled).cloned().partition(|d| !matches!(d.transport, Transport::Snmp(_)));
    let mut tasks = modbus::spawn(mb, ctx.clone());
    tasks.extend(snmp::spawn(sn, ctx.clone()));
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_fall_on_a_few_shared_instants_within_one_interval() {
        let interval = Duration::from_secs(5);
        let slot = interval / POLL_SLOTS;
        let now = Instant::now();
        let firsts: Vec<Instant> = (0..200).map(|_| first_poll_at(interval, false)).collect();
        let base = firsts[0];
        for t in &firsts {
            assert!(*t >= now && *t < Instant::now() + interval, "{t:?} not within one interval");
            // On one grid: any two are a whole number of slots apart.
            let apart = if *t >= base { *t - base } else { base - *t };
            assert_eq!(apart.as_nanos() % slot.as_nanos(), 0, "{apart:?} is not a multiple of {slot:?}");
        }
        // At most POLL_SLOTS phases (a slot whose tick passed during the loop moves on by one
        // interval, still in its phase).
        let first = *firsts.iter().min().unwrap();
        let mut phases: Vec<u128> = firsts.iter().map(|t| (*t - first).as_nanos() % interval.as_nanos()).collect();
        phases.sort_unstable();
        phases.dedup();
        assert!(phases.len() <= POLL_SLOTS as usize && phases.len() > 1, "{} phases", phases.len());
        assert!(first_poll_at(interval, true) <= Instant::now(), "--once starts now");
    }
}
