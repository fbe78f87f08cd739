//! Devices as health and the status snapshot show them.
//!
//! Up/down has one definition: the engine's comms rule (`down_after` failed polls in a row,
//! `Engine::device_comms`), the same that opens the comms incident. This table takes it from
//! the engine after each batch of readings, logs "device down" / "device up" once per
//! transition, and adds what the engine does not keep (address, last good poll).

use std::collections::BTreeMap;

use tracing::warn;

use crate::config::DeviceSpec;
use crate::engine::Engine;
use crate::model::{DeviceId, Quality, Reading};
use crate::status::DeviceStatus;

#[derive(Default)]
pub struct DeviceTable {
    devices: BTreeMap<DeviceId, DeviceStatus>,
    /// Bumped whenever what `status` shows of a device changes, other than its last good
    /// poll (which changes every poll): up/down, failures, last error, the set of devices.
    changes: u64,
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
            let status = match self.devices.remove(&spec.id) {
                Some(kept) => DeviceStatus {
                    up: kept.up,
                    last_ok: kept.last_ok,
                    last_error: kept.last_error,
                    consecutive_failures: kept.consecutive_failures,
                    ..fresh
                },
                None => fresh,
            };
            next.insert(spec.id.clone(), status);
        }
        self.devices = next;
        self.changes += 1;
    }

    /// Remembers the last good poll and the last error of a reading's device.
    /// Notes readings of one device (`run`, all with the first one's device id).
    pub fn observe(&mut self, run: &[Reading]) {
        let Some(s) = run.first().and_then(|r| self.devices.get_mut(&r.device)) else { return };
        for r in run {
            match r.quality {
                Quality::Good => s.last_ok = Some(r.at),
                Quality::Bad => {
                    if let Some(e) = r.error.as_deref()
                        && s.last_error.as_deref() != Some(e)
                    {
                        s.last_error = Some(e.to_owned());
                        self.changes += 1;
                    }
                }
            }
        }
    }

    /// Takes up/down and the failure count of every device from the engine.
    pub fn sync(&mut self, engine: &Engine) {
        let ids: Vec<DeviceId> = self.devices.keys().cloned().collect();
        self.sync_some(engine, &ids);
    }

    /// Takes up/down and the failure count of `ids` from the engine; logs each transition once.
    pub fn sync_some(&mut self, engine: &Engine, ids: &[DeviceId]) {
        for id in ids {
            let Some(s) = self.devices.get_mut(id) else { continue };
            let Some(comms) = engine.device_comms(id) else { continue };
            let up = !comms.down;
            if s.consecutive_failures != comms.failed_polls || s.up != up {
                self.changes += 1;
            }
            s.consecutive_failures = comms.failed_polls;
            if s.up && !up {
                let error = comms.last_error.as_deref().or(s.last_error.as_deref()).unwrap_or("-");
                warn!(device = %id, address = %s.address, failures = comms.failed_polls, error, "device down");
            } else if !s.up && up {
                // Same level as "device down", so whoever saw one sees the other.
                warn!(device = %id, address = %s.address, "device up");
            }
            s.up = up;
        }
    }

    /// Changes so far to what `status` shows of the devices, last good polls aside.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn snapshot(&self) -> Vec<DeviceStatus> {
        self.devices.values().cloned().collect()
    }
}
