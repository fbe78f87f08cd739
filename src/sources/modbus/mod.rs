//! Modbus TCP and RTU source: profiles in, `Reading`s out.
//!
//! `spawn` groups devices by link (one TCP connection per gateway address, one owner task
//! per RS-485 bus, see `transport`) and starts one poll task per device (`poller`). Each
//! poll reads the blocks `plan` coalesced from the device's profile and decodes them with
//! `decode`. `identify` reads Device Identification (43/14) and `scan` checks unit ids for
//! `discover modbus`. Errors are `ModbusError`s (`error`), keeping "the device answered with an
//! exception" apart from "the device could not be reached".

pub mod decode;
pub mod error;
#[cfg(test)]
mod fake;
pub mod identify;
pub mod plan;
pub mod poller;
pub mod probe;
pub mod scan;
pub mod transport;

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tracing::{error, warn};

use super::SourceContext;
use crate::config::{DeviceSpec, Transport};
use crate::profiles::Profile;

pub use error::ModbusError;
pub use transport::{Endpoint, Link};

/// Starts polling the given Modbus devices: one link task per TCP address or serial bus,
/// one poll task per device. All tasks end on `ctx.cancel`, or after one poll with `ctx.once`.
pub fn spawn(devices: Vec<DeviceSpec>, ctx: SourceContext) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut links: HashMap<String, (Endpoint, Link)> = HashMap::new();
    for spec in devices {
        let Profile::Modbus(profile) = &spec.profile else {
            // Config validation rejects this; never poll a device with the wrong profile kind.
            error!(device = %spec.id, profile = spec.profile.name(), "not a modbus profile; device not polled");
            continue;
        };
        let profile = profile.clone();
        let (endpoint, unit, limits) = match &spec.transport {
            Transport::ModbusTcp { address, unit, blocks } => (Endpoint::Tcp(address.clone()), *unit, *blocks),
            Transport::ModbusRtu { serial, unit, blocks } => (Endpoint::Rtu(serial.clone()), *unit, *blocks),
            Transport::Snmp(_) => {
                error!(device = %spec.id, "snmp device handed to the modbus source; not polled");
                continue;
            }
        };
        let key = endpoint.describe().to_owned();
        let (known, link) = links.entry(key).or_insert_with(|| {
            let (link, task) = transport::Link::spawn(endpoint.clone(), ctx.stats.clone(), ctx.cancel.clone());
            tasks.push(task);
            (endpoint.clone(), link)
        });
        if *known != endpoint {
            warn!(
                device = %spec.id, bus = known.describe(),
                "serial settings differ from the first device on this bus; the bus uses the first device's"
            );
        }
        let poller = poller::Poller::new(spec, profile, unit, limits, link.clone(), ctx.clone());
        tasks.push(tokio::spawn(poller.run()));
    }
    tasks
}
