//! SNMP source: polls PDUs and environmental sensors over SNMP v1/v2c/v3.
//!
//! Layout: `plan` (profile -> requests, answers -> cells; no IO), `scale` (types, vendor
//! scaling, rates; no IO), `client` (async-snmp session: batched GETs, bounded GETBULK
//! table walks, error mapping to `SnmpError`), `wire` (the BER of a v2c poll's GETBULK and its
//! answer, no IO), `poller` (the per-device task), `probe`
//! (the `hallmonitor probe snmp` field tool), `discover` (what `discover snmp` asks an agent).
//!
//! One task per device: a slow agent delays only itself, and a device's polls never
//! overlap. Readings leave here in SI units with the row label for table points.

pub mod client;
pub mod discover;
pub mod plan;
pub mod poller;
pub mod probe;
pub mod scale;
mod wire;

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::SourceContext;
use crate::config::{DeviceSpec, Transport};
use crate::model::{Quality, Reading, Timestamp};
use crate::profiles::{Profile, SnmpProfile};

pub use client::{POLLS_PER_AGENT, SharedSockets, SnmpError, SnmpSession};
pub use poller::DevicePoller;

/// Starts polling the given SNMP devices, one task each.
pub fn spawn(devices: Vec<DeviceSpec>, ctx: SourceContext) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(devices.len());
    let sockets = Arc::new(SharedSockets::new());
    // Devices of one profile share its plan's requests (planned once).
    let mut plans: Vec<(Arc<SnmpProfile>, plan::Plan)> = Vec::new();
    for spec in devices {
        let (Transport::Snmp(settings), Profile::Snmp(profile)) = (&spec.transport, &spec.profile) else {
            // Config validation pairs SNMP transports with SNMP profiles; say so if not.
            tracing::error!(device = %spec.id, "not an SNMP device with an SNMP profile; not polled");
            continue;
        };
        let (settings, profile) = (settings.clone(), profile.clone());
        let plan = match plans.iter().find(|(p, _)| Arc::ptr_eq(p, &profile)) {
            Some((_, plan)) => Ok(plan.same_requests()),
            None => plan::Plan::new(&profile).inspect(|plan| plans.push((profile.clone(), plan.same_requests()))),
        };
        match plan.map(|plan| DevicePoller::planned(spec.clone(), settings, profile, plan)) {
            Ok(poller) => {
                let poller = poller.with_shared_sockets(sockets.clone());
                tasks.push(tokio::spawn(poller::run(poller, ctx.clone())));
            }
            Err(e) => {
                tracing::error!(device = %spec.id, error = %e, "cannot plan SNMP requests; device not polled");
                let ctx = ctx.clone();
                // Still say something per point, so the device is visibly bad, not silent.
                tasks.push(tokio::spawn(async move {
                    if let Profile::Snmp(p) = &spec.profile {
                        for pt in &p.points {
                            let r = Reading {
                                at: Timestamp::now(),
                                device: spec.id.clone(),
                                point: pt.id.clone(),
                                metric: pt.metric.clone(),
                                value: None,
                                unit: pt.unit.clone(),
                                zone: spec.zone.clone(),
                                rack: spec.rack.clone(),
                                label: None,
                                quality: Quality::Bad,
                                error: Some(e.as_str().into()),
                            };
                            if ctx.readings.send(r).await.is_err() {
                                break;
                            }
                        }
                    }
                }));
            }
        }
    }
    tasks
}
