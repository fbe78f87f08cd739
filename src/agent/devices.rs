//! Device up/down as the shell sees it from readings, for health and the status snapshot.
//!
//! Sources log "device down"/"device up" themselves; this table only remembers the last
//! outcome per device so `status` can show it.

use std::collections::BTreeMap;

use crate::config::DeviceSpec;
use crate::model::{DeviceId, Quality, Reading, Timestamp};
use crate::status::DeviceStatus;

struct Tracked {
    status: DeviceStatus,
    down_after: u32,
    /// Bad readings of one poll share its time: count polls, not points.
    last_failed_poll: Option<Timestamp>,
}

#[derive(Default)]
pub struct DeviceTable {
    devices: BTreeMap<DeviceId, Tracked>,
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
        for spec in specs.iter().filter(|s| s.enabled) {
            let fresh = DeviceStatus::from_spec(spec);
            let tracked = match self.devices.remove(&spec.id) {
                Some(mut kept) => {
                    kept.status = DeviceStatus {
                        up: kept.status.up,
                        last_ok: kept.status.last_ok,
                        last_error: kept.status.last_error,
                        consecutive_failures: kept.status.consecutive_failures,
                        ..fresh
                    };
                    kept.down_after = spec.down_after;
                    kept
                }
                None => Tracked { status: fresh, down_after: spec.down_after, last_failed_poll: None },
            };
            next.insert(spec.id.clone(), tracked);
        }
        self.devices = next;
    }

    pub fn observe(&mut self, r: &Reading) {
        let Some(t) = self.devices.get_mut(&r.device) else { return };
        let s = &mut t.status;
        match r.quality {
            Quality::Good => {
                s.last_ok = Some(r.at);
                s.consecutive_failures = 0;
                s.up = true;
                t.last_failed_poll = None;
            }
            Quality::Bad => {
                s.last_error = r.error.as_deref().map(str::to_owned);
                if t.last_failed_poll != Some(r.at) {
                    t.last_failed_poll = Some(r.at);
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                }
                if s.consecutive_failures >= t.down_after {
                    s.up = false;
                }
            }
        }
    }

    pub fn snapshot(&self) -> Vec<DeviceStatus> {
        self.devices.values().map(|t| t.status.clone()).collect()
    }
}
