//! Sources: one poll task per device, turning device answers into `Reading`s.
//!
//! Invariants: polls of one device never overlap; a slow or dead device never delays
//! another; a failed poll yields bad-quality readings (never silence); schedules skip
//! missed ticks instead of bunching them.

pub mod modbus;
pub mod snmp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
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

/// Starts the poll tasks of all enabled devices. Each protocol groups devices as its
/// transport needs (one TCP connection per gateway address, one owner per RS-485 bus).
pub fn spawn_all(devices: &[DeviceSpec], ctx: &SourceContext) -> Vec<JoinHandle<()>> {
    let (mb, sn): (Vec<_>, Vec<_>) =
        devices.iter().filter(|d| d.enabled).cloned().partition(|d| !matches!(d.transport, Transport::Snmp(_)));
    let mut tasks = modbus::spawn(mb, ctx.clone());
    tasks.extend(snmp::spawn(sn, ctx.clone()));
    tasks
}
