//! The table of values simulated devices serve, written by a scenario, read by the servers.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::model::{DeviceId, PointId};

/// A misbehaviour a simulated device can be told to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// Answers normally.
    None,
    /// Receives requests but never answers (a timeout for the poller).
    Silent,
    /// Closes connections as soon as a request arrives (Modbus TCP) / drops the request.
    Close,
    /// Answers every request with an error (Modbus exception 4, SNMP genErr).
    Error,
}

/// Values keyed by (device, point, row). Row 0 is a scalar; table rows count from 1.
#[derive(Debug, Default)]
pub struct SimValues {
    values: RwLock<HashMap<(DeviceId, PointId, u32), f64>>,
    faults: RwLock<HashMap<DeviceId, SimFault>>,
}

impl SimValues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, device: &DeviceId, point: &PointId, row: u32, value: f64) {
        // A poisoned lock only means a writer panicked mid-insert; the map is still usable.
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        map.insert((device.clone(), point.clone(), row), value);
    }

    pub fn get(&self, device: &DeviceId, point: &PointId, row: u32) -> Option<f64> {
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(device.clone(), point.clone(), row)).copied()
    }

    pub fn set_fault(&self, device: &DeviceId, fault: SimFault) {
        let mut map = self.faults.write().unwrap_or_else(|e| e.into_inner());
        map.insert(device.clone(), fault);
    }

    pub fn fault(&self, device: &DeviceId) -> SimFault {
        let map = self.faults.read().unwrap_or_else(|e| e.into_inner());
        map.get(device).copied().unwrap_or(SimFault::None)
    }
}
