//! Device up/down as the shell sees it from readings, for logs and the status snapshot.
//!
//! Sources log "device down"/"device up" themselves; this table only remembers the last
//! outcome per device so `status` can show it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::DeviceSpec;
use crate::model::{DeviceId, Quality, Reading, Timestamp};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    pub id: DeviceId,
    pub protocol: String,
    pub address: String,
    pub zone: String,
    pub rack: Option<String>,
    pub up: bool,
    pub last_ok: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Consecutive failed polls (bad readings of one poll share its time).
    pub consecutive_failures: u32,
    #[serde(skip)]
    last_failed_poll: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub struct DeviceTable {
    devices: BTreeMap<DeviceId, DeviceHealth>,
    down_after: BTreeMap<DeviceId, u32>,
}

impl DeviceTable {
    pub fn new(specs: &[DeviceSpec]) -> Self {
        let mut t = Self::default();
        t.reconfigure(specs);
        t
    }

    /// Keeps what is known of devices that stay, adds new ones, forgets removed ones.
    pub fn reconfigure(&mut self, specs: &[DeviceSpec]) {
        let mut next = BTreeMap::new();
        self.down_after.clear();
        for s in specs.iter().filter(|s| s.enabled) {
            let kept = self.devices.remove(&s.id);
            let mut h = kept.unwrap_or(DeviceHealth {
                id: s.id.clone(),
                protocol: String::new(),
                address: String::new(),
                zone: String::new(),
                rack: None,
                up: true,
                last_ok: None,
                last_error: None,
                consecutive_failures: 0,
                last_failed_poll: None,
            });
            h.protocol = s.transport.protocol().to_owned();
            h.address = s.transport.describe();
            h.zone = s.zone.to_string();
            h.rack = s.rack.as_ref().map(|r| r.to_string());
            self.down_after.insert(s.id.clone(), s.down_after);
            next.insert(s.id.clone(), h);
        }
        self.devices = next;
    }

    pub fn observe(&mut self, r: &Reading) {
        let Some(h) = self.devices.get_mut(&r.device) else { return };
        match r.quality {
            Quality::Good => {
                h.last_ok = Some(r.at);
                h.consecutive_failures = 0;
                h.last_failed_poll = None;
                h.up = true;
            }
            Quality::Bad => {
                h.last_error = r.error.as_deref().map(str::to_owned);
                if h.last_failed_poll != Some(r.at) {
                    h.last_failed_poll = Some(r.at);
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                }
                let limit = self.down_after.get(&r.device).copied().unwrap_or(3);
                if h.consecutive_failures >= limit {
                    h.up = false;
                }
            }
        }
    }

    pub fn down_count(&self) -> usize {
        self.devices.values().filter(|d| !d.up).count()
    }

    pub fn snapshot(&self) -> Vec<DeviceHealth> {
        self.devices.values().cloned().collect()
    }
}
