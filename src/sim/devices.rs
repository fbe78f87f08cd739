//! Start a simulated site's devices: bind every port the plan names on 127.0.0.1, then hand each
//! socket to its protocol server. The `sim` and `demo` commands and tests use this; it is the
//! simulator's own API, so commands stay thin.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::profiles::Profile;
use crate::sim::SimValues;
use crate::sim::config::{SimDevice, SimSettings};
use crate::sim::modbus::SimModbusDevice;
use crate::sim::snmp::SimSnmpDevice;

/// Which loopback ports the devices get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The ports the simulator config names (`hallmonitor sim`: agents are configured for them).
    AsConfigured,
    /// Free ports chosen by the system (`demo`, tests: nothing else on the machine interferes);
    /// `SimSockets::bound` maps each configured port to the one actually bound.
    AnyFree,
}

/// Every socket the simulator serves on, bound on 127.0.0.1, with the devices behind it.
pub struct SimSockets {
    /// Modbus TCP: bound port, listener, unit id -> device.
    pub modbus: Vec<(u16, tokio::net::TcpListener, BTreeMap<u8, SimDevice>)>,
    /// SNMP: bound port, socket, community -> device.
    pub snmp: Vec<(u16, tokio::net::UdpSocket, BTreeMap<String, SimDevice>)>,
    /// Configured port -> bound port, for Modbus (TCP) and SNMP (UDP) separately.
    pub bound: BoundPorts,
}

/// Where each configured port ended up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundPorts {
    pub modbus: BTreeMap<u16, u16>,
    pub snmp: BTreeMap<u16, u16>,
}

/// Binds every port of the plan on 127.0.0.1; a port that cannot be bound is an error naming
/// it and the device behind it.
pub async fn bind_all(settings: &SimSettings, ports: Ports) -> anyhow::Result<SimSockets> {
    let mut out = SimSockets { modbus: Vec::new(), snmp: Vec::new(), bound: BoundPorts::default() };
    let addr = |port| {
        let port = if ports == Ports::AnyFree { 0 } else { port };
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    };
    for (port, units) in settings.modbus_ports() {
        let who = first_id(units.values());
        let l = tokio::net::TcpListener::bind(addr(port))
            .await
            .map_err(|e| anyhow::anyhow!("sim: cannot listen on {} (Modbus TCP for {who}): {e}", addr(port)))?;
        let bound = l.local_addr().map_err(|e| anyhow::anyhow!("sim: Modbus TCP for {who}: {e}"))?.port();
        out.bound.modbus.insert(port, bound);
        out.modbus.push((bound, l, units.into_iter().map(|(u, d)| (u, d.clone())).collect()));
    }
    for (port, communities) in settings.snmp_ports() {
        let who = first_id(communities.values());
        let s = tokio::net::UdpSocket::bind(addr(port))
            .await
            .map_err(|e| anyhow::anyhow!("sim: cannot bind {} (SNMP for {who}): {e}", addr(port)))?;
        let bound = s.local_addr().map_err(|e| anyhow::anyhow!("sim: SNMP for {who}: {e}"))?.port();
        out.bound.snmp.insert(port, bound);
        out.snmp.push((bound, s, communities.into_iter().map(|(c, d)| (c, d.clone())).collect()));
    }
    Ok(out)
}

fn first_id<'a>(mut devices: impl Iterator<Item = &'a &'a SimDevice>) -> String {
    devices.next().map(|d| d.id.to_string()).unwrap_or_default()
}

/// Hands each bound socket to its protocol server; returns what could not be started.
pub async fn start_servers(sockets: SimSockets, values: &Arc<SimValues>, cancel: &CancellationToken) -> Vec<String> {
    let mut problems = Vec::new();
    for (port, listener, units) in sockets.modbus {
        let mut served = HashMap::new();
        for (unit, d) in units {
            match &d.profile {
                Profile::Modbus(p) => {
                    served.insert(unit, SimModbusDevice { id: d.id.clone(), profile: p.clone() });
                }
                Profile::Snmp(_) => problems.push(format!("{} on Modbus port {port} has an SNMP profile", d.id)),
            }
        }
        let (values, cancel) = (values.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::sim::modbus::serve(listener, served, values, cancel).await {
                tracing::error!(port, error = %e, "sim: Modbus server stopped");
            }
        });
    }
    for (port, socket, communities) in sockets.snmp {
        let mut served = HashMap::new();
        for (community, d) in communities {
            match &d.profile {
                Profile::Snmp(p) => {
                    served.insert(community, SimSnmpDevice { id: d.id.clone(), profile: p.clone(), rows: d.rows });
                }
                Profile::Modbus(_) => problems.push(format!("{} on SNMP port {port} has a Modbus profile", d.id)),
            }
        }
        // The SNMP agent binds its own socket: release ours (it reserved the port) first. On
        // loopback the moment between the two is too short for another program to matter.
        let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        drop(socket);
        match crate::sim::snmp::serve(bind, served, values.clone(), cancel.clone()).await {
            Ok(agent) => {
                // Hold the agent's handle until the simulator stops.
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    drop(agent);
                });
            }
            Err(e) => problems.push(format!("SNMP agent on port {port}: {e}")),
        }
    }
    problems
}
