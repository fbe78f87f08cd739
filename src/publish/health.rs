//! The body of the `P/S/health` message (docs/contracts.md#health), filled by the agent from
//! source stats, the outbox and the engine, and checked by `schemas/health.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::NoiseCounters;
use crate::model::{DeviceId, SiteId, Timestamp};
use crate::outbox::Outbound;
use crate::publish::message::outbound_health;
use crate::publish::publisher::PublisherStatus;
use crate::store::{DropReport, OutboxStats};

/// Poll outcomes of one protocol since the previous health message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCounts {
    pub ok: u64,
    pub failed: u64,
}

/// Devices configured, answering and not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCounts {
    pub total: u64,
    pub up: u64,
    /// Ids of the devices currently down.
    pub down: Vec<DeviceId>,
}

/// The outbox and the link to the broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxHealth {
    /// Messages not yet acknowledged by the broker.
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Age of the oldest un-acknowledged message, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unacked_age_s: Option<u64>,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_puback: Option<Timestamp>,
}

impl OutboxHealth {
    /// From the store figures and the publisher status at `now`.
    pub fn new(stats: &OutboxStats, publisher: &PublisherStatus, now: Timestamp) -> Self {
        Self {
            depth: stats.depth,
            bytes: stats.bytes,
            max_bytes: stats.max_bytes,
            oldest_unacked_age_s: stats.oldest_age(now).map(|d| d.as_secs()),
            connected: publisher.connected,
            last_puback: publisher.last_puback,
        }
    }
}

/// Everything in one health message (the envelope and `type` are added on commit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthBody {
    pub uptime_s: u64,
    /// Per protocol (`modbus`, `snmp`).
    pub polls: BTreeMap<String, PollCounts>,
    pub devices: DeviceCounts,
    pub outbox: OutboxHealth,
    /// What the outbox dropped since the previous health message (`Store::take_drop_report`).
    pub dropped: DropReport,
    /// How much noise the engine absorbed.
    pub noise: NoiseCounters,
    /// The gateway pair, when `[ha]` is configured (only the active publishes, so `role` is
    /// `active` whenever a message goes out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaHealth>,
}

/// This gateway's place in the pair, in health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaHealth {
    pub node: String,
    pub role: String,
    /// The term it holds the lease under (the fencing token).
    pub term: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_takeover_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_takeover_reason: Option<String>,
    /// The replication stream to the standby: `in_sync`, `lagging`, `waiting` or `degraded`
    /// (no takeover possible), with what the standby lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaHealth>,
}

/// The replication stream as health reports it (the active's view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaHealth {
    pub state: String,
    pub lag_entries: u64,
    pub lag_ms: u64,
}

impl HealthBody {
    /// The outbound message (QoS 1, retained, `P/S/health`).
    pub fn outbound(&self, prefix: &str, site: &SiteId) -> Outbound {
        outbound_health(prefix, site, self)
    }
}
