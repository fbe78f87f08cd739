//! A simulated SNMP agent serving devices described by SNMP profiles, on async-snmp's agent.
//!
//! One agent (one UDP socket) serves any number of devices, each selected by the community
//! (v1/v2c) or SNMPv3 user name of the request. Each device serves its profile's scalars
//! from `SimValues` row 0 and every table column with `rows` rows (row r from `SimValues`
//! row r), inverse-scaled to the raw integer the real device would send, plus the helper
//! columns the profile reads: row names ("outlet-3", "sensor-1"), decimal digits (1),
//! ENTITY-SENSOR scale (units) and the type filter values. It also answers sysDescr,
//! sysUpTime and sysName. `SimFault::Silent`/`Close` drop requests (the handler waits until
//! the request deadline), `SimFault::Error` answers genErr.
//!
//! Invariant: for every profile point, decoding what this agent serves with the same
//! profile gives back the value set in `SimValues` (to the profile's resolution).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_snmp::agent::Agent;
use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerError, HandlerResult, MibHandler, RequestContext,
};
use async_snmp::v3::{AuthoritativeEngine, PersistedAuthoritativeEngine};
use async_snmp::{Oid, PduType, Value, VarBind};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{SimFault, SimValues};
use crate::config::{AuthProtocol, PrivProtocol};
use crate::model::DeviceId;
use crate::profiles::SnmpProfile;
use crate::profiles::snmp::{RowScaling, SnmpTarget};
use crate::sources::snmp::client;

/// One simulated device behind a community or v3 user name.
#[derive(Debug, Clone)]
pub struct SimSnmpDevice {
    pub id: DeviceId,
    pub profile: Arc<SnmpProfile>,
    /// Rows of every walked table column.
    pub rows: u32,
}

/// An SNMPv3 user the agent accepts; its name must be a key of the devices map.
#[derive(Debug, Clone)]
pub struct SimV3User {
    pub name: String,
    pub auth: AuthProtocol,
    pub auth_password: String,
    pub privacy: Option<(PrivProtocol, String)>,
}

/// Extra settings of a simulated agent.
#[derive(Debug, Clone, Default)]
pub struct SimSnmpOptions {
    pub v3_users: Vec<SimV3User>,
    /// SNMPv3 engine id and the boots count of the previous run: set it to restart an agent
    /// "after a reboot" (boots + 1, time from zero). `None` installs a fresh engine.
    pub previous_engine: Option<(Vec<u8>, u32)>,
    /// Largest response the agent sends (default 1472); small values provoke tooBig.
    pub max_message_size: Option<usize>,
    /// Counters to update (for benchmarks); `None` counts nothing.
    pub stats: Option<Arc<SimSnmpStats>>,
}

/// What a simulated agent was asked, for benchmarks: requests are counted per device by
/// request-id changes (a client's requests to one device never overlap).
#[derive(Debug, Default)]
pub struct SimSnmpStats {
    /// Request PDUs of any kind.
    pub requests: AtomicU64,
    /// GetRequest PDUs (one per poll of a device whose scalars fit one request).
    pub get_requests: AtomicU64,
    /// Varbinds answered (a GETBULK counts every repetition).
    pub varbinds: AtomicU64,
}

/// Why a simulated agent did not start.
#[derive(Debug, thiserror::Error)]
#[error("simulated SNMP agent on {bind}: {detail}")]
pub struct SimSnmpError {
    pub bind: SocketAddr,
    pub detail: String,
}

/// A running simulated agent.
pub struct SimSnmpAgent {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Its SNMPv3 engine id and boots (pass back in `previous_engine` to "reboot" it).
    pub engine_id: Vec<u8>,
    pub engine_boots: u32,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl SimSnmpAgent {
    /// Stops the agent and waits until its socket is closed.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts an agent on `bind` serving `devices` (keyed by community or v3 user name) until
/// `cancel` fires.
pub async fn serve(
    bind: SocketAddr,
    devices: HashMap<String, SimSnmpDevice>,
    values: Arc<SimValues>,
    cancel: CancellationToken,
) -> Result<SimSnmpAgent, SimSnmpError> {
    serve_with(bind, devices, values, cancel, SimSnmpOptions::default()).await
}

/// `serve` with v3 users and engine state.
pub async fn serve_with(
    bind: SocketAddr,
    devices: HashMap<String, SimSnmpDevice>,
    values: Arc<SimValues>,
    cancel: CancellationToken,
    options: SimSnmpOptions,
) -> Result<SimSnmpAgent, SimSnmpError> {
    let err = |detail: String| SimSnmpError { bind, detail };
    let cancel = cancel.child_token();
    let v3_names: Vec<&str> = options.v3_users.iter().map(|u| u.name.as_str()).collect();
    let communities: Vec<String> = devices.keys().filter(|k| !v3_names.contains(&k.as_str())).cloned().collect();
    let started = Instant::now();
    let mibs: HashMap<Vec<u8>, DeviceMib> =
        devices.into_iter().map(|(key, d)| (key.into_bytes(), DeviceMib::new(d, started))).collect();
    let handler = Arc::new(SimHandler { devices: mibs, values, cancel: cancel.clone(), stats: options.stats.clone() });

    let engine = match &options.previous_engine {
        None => AuthoritativeEngine::install(b"hallmonitor-sim".to_vec(), |_| Ok::<(), std::convert::Infallible>(())),
        Some((id, boots)) => {
            let prev = PersistedAuthoritativeEngine::new(id.clone(), *boots).map_err(|e| err(e.to_string()))?;
            AuthoritativeEngine::restart(prev, |_| Ok::<(), std::convert::Infallible>(()))
        }
    }
    .map_err(|e| err(e.to_string()))?;
    let engine_id = engine.engine_id().to_vec();
    let engine_boots = engine.engine_boots();

    let mut builder = Agent::builder()
        .bind(bind.to_string())
        .communities(communities.iter().map(String::as_str))
        .authoritative_engine(engine)
        .without_builtin_handlers()
        .handler(Oid::from_slice(&[1, 3, 6, 1]), handler)
        .request_deadline(Some(Duration::from_secs(20)))
        .cancellation_token(cancel.clone())
        .allow_all_access();
    if let Some(size) = options.max_message_size {
        builder = builder.max_message_size(size);
    }
    for u in &options.v3_users {
        let (auth, apw) = (client::auth_protocol(u.auth), u.auth_password.clone());
        let privacy = u.privacy.clone();
        builder = builder
            .usm_user(u.name.clone().into_bytes(), move |user| match privacy {
                None => user.auth(auth, apw.as_bytes()),
                Some((p, ppw)) => user.auth_priv(auth, apw.as_bytes(), client::priv_protocol(p), ppw.as_bytes()),
            })
            .map_err(|e| err(format!("v3 user {}: {e}", u.name)))?;
    }
    let agent = builder.build().await.map_err(|e| err(e.to_string()))?;
    let local_addr = agent.local_addr();
    let task = tokio::spawn(async move {
        if let Err(e) = agent.run().await {
            tracing::warn!(address = %local_addr, error = %e, "simulated SNMP agent stopped");
        }
    });
    Ok(SimSnmpAgent { local_addr, engine_id, engine_boots, cancel, task })
}

/// What lives at one OID of a simulated device.
#[derive(Debug, Clone)]
enum Cell {
    SysDescr,
    SysUpTime,
    SysName,
    /// A point's value: `row` 0 for scalars, else the SimValues row.
    Value {
        point: usize,
        row: u32,
    },
    Text(Arc<str>),
    Int(i64),
    /// A filter column cell: the values the points reading it accept (first is served).
    Filter(Vec<i64>),
}

struct DeviceMib {
    device: SimSnmpDevice,
    cells: BTreeMap<Oid, Cell>,
    started: Instant,
    /// Request-id of the last request seen (for `SimSnmpStats`).
    last_request: Mutex<Option<i32>>,
}

fn parse(s: &str) -> Option<Vec<u32>> {
    s.trim_start_matches('.').split('.').filter(|a| !a.is_empty()).map(|a| a.parse().ok()).collect()
}

fn join(base: &[u32], idx: &[u32]) -> Oid {
    let mut v = base.to_vec();
    v.extend_from_slice(idx);
    Oid::from_slice(&v)
}

/// Row name kind from a metric: outlet, phase or sensor.
fn row_kind(metric: &str) -> &'static str {
    if metric.starts_with("outlet") {
        "outlet"
    } else if metric.starts_with("phase") || metric == "voltage_v" {
        "phase"
    } else {
        "sensor"
    }
}

/// Row factor the simulator's helper columns imply (decimal digits 1, scale units).
fn sim_row_factor(rs: &RowScaling) -> f64 {
    match rs {
        RowScaling::None | RowScaling::EntityScale(_) => 1.0,
        RowScaling::Decimals(_) | RowScaling::EntityScaleAndDecimals(..) => 0.1,
    }
}

impl DeviceMib {
    fn new(device: SimSnmpDevice, started: Instant) -> Self {
        let mut cells = BTreeMap::new();
        // Rows already handed out per (column, index suffix): points sharing a column
        // (ENTITY-SENSOR's one value column for every sensor type) get disjoint rows.
        let mut next_row: HashMap<(String, Option<String>), u32> = HashMap::new();
        for (pi, p) in device.profile.points.iter().enumerate() {
            match &p.target {
                SnmpTarget::Scalar(oid) => {
                    if let Some(o) = parse(oid) {
                        cells.insert(Oid::from_slice(&o), Cell::Value { point: pi, row: 0 });
                    }
                }
                SnmpTarget::Column { column, label, rows } => {
                    let Some(col) = parse(column) else { continue };
                    let suffix = p.index_suffix.as_deref().and_then(parse).unwrap_or_default();
                    // (sim row number, row index, base index for labels)
                    let mut layout: Vec<(u32, Vec<u32>, Vec<u32>)> = Vec::new();
                    if rows.is_empty() {
                        let start = next_row.entry((column.clone(), p.index_suffix.clone())).or_insert(0);
                        for r in 1..=device.rows {
                            let base = vec![*start + r];
                            let mut idx = base.clone();
                            idx.extend_from_slice(&suffix);
                            layout.push((r, idx, base));
                        }
                        *start += device.rows;
                    } else {
                        for (k, r) in rows.iter().enumerate() {
                            let Some(idx) = parse(r) else { continue };
                            let base = if !suffix.is_empty() && idx.ends_with(&suffix) {
                                idx[..idx.len() - suffix.len()].to_vec()
                            } else {
                                idx.clone()
                            };
                            layout.push((k as u32 + 1, idx, base));
                        }
                    }
                    let kind = row_kind(p.metric.as_str());
                    for (r, idx, base) in layout {
                        cells.insert(join(&col, &idx), Cell::Value { point: pi, row: r });
                        if let Some(l) = label.as_deref().and_then(parse) {
                            // First point naming a row wins (outlet current and power share names).
                            cells
                                .entry(join(&l, &base))
                                .or_insert_with(|| Cell::Text(Arc::from(format!("{kind}-{r}"))));
                        }
                        match &p.row_scaling {
                            RowScaling::None => {}
                            RowScaling::EntityScale(s) => insert_int(&mut cells, s, &idx, 9),
                            RowScaling::Decimals(d) => insert_int(&mut cells, d, &idx, 1),
                            RowScaling::EntityScaleAndDecimals(s, d) => {
                                insert_int(&mut cells, s, &idx, 9);
                                insert_int(&mut cells, d, &idx, 1);
                            }
                        }
                        if let Some(f) = &p.filter
                            && let Some(fc) = parse(&f.column)
                        {
                            let key = join(&fc, &idx);
                            match cells.get_mut(&key) {
                                // Shared filter cell: keep values every point accepts.
                                Some(Cell::Filter(existing)) => {
                                    let both: Vec<i64> =
                                        existing.iter().copied().filter(|v| f.values.contains(v)).collect();
                                    if !both.is_empty() {
                                        *existing = both;
                                    }
                                }
                                _ => {
                                    cells.insert(key, Cell::Filter(f.values.clone()));
                                }
                            }
                        }
                    }
                }
            }
        }
        for (oid, cell) in [
            (&[1, 3, 6, 1, 2, 1, 1, 1, 0][..], Cell::SysDescr),
            (&[1, 3, 6, 1, 2, 1, 1, 3, 0][..], Cell::SysUpTime),
            (&[1, 3, 6, 1, 2, 1, 1, 5, 0][..], Cell::SysName),
        ] {
            cells.entry(Oid::from_slice(oid)).or_insert(cell);
        }
        Self { device, cells, started, last_request: Mutex::new(None) }
    }

    /// The value at a cell now; `None` when the scenario set no value for it.
    fn value(&self, cell: &Cell, values: &SimValues) -> Option<Value> {
        Some(match cell {
            Cell::SysDescr => Value::OctetString(
                format!("hallmonitor simulated {} ({})", self.device.profile.name, self.device.id).into(),
            ),
            Cell::SysUpTime => {
                Value::TimeTicks((self.started.elapsed().as_millis() / 10).min(u128::from(u32::MAX)) as u32)
            }
            Cell::SysName => Value::OctetString(self.device.id.to_string().into()),
            Cell::Text(t) => Value::OctetString(t.to_string().into()),
            Cell::Int(i) => Value::Integer(*i as i32),
            Cell::Filter(v) => Value::Integer(v.first().copied().unwrap_or(0) as i32),
            Cell::Value { point, row } => {
                let p = self.device.profile.points.get(*point)?;
                let v = values.get(&self.device.id, &p.id, *row)?;
                let raw = (v - p.offset) / p.scale / sim_row_factor(&p.row_scaling);
                if p.string_number {
                    Value::OctetString(format!("{raw}").into())
                } else if p.rate {
                    Value::Counter64(raw.round().max(0.0) as u64)
                } else {
                    Value::Integer(raw.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32)
                }
            }
        })
    }
}

fn insert_int(cells: &mut BTreeMap<Oid, Cell>, column: &str, idx: &[u32], v: i64) {
    if let Some(c) = parse(column) {
        cells.insert(join(&c, idx), Cell::Int(v));
    }
}

struct SimHandler {
    devices: HashMap<Vec<u8>, DeviceMib>,
    values: Arc<SimValues>,
    cancel: CancellationToken,
    stats: Option<Arc<SimSnmpStats>>,
}

impl SimHandler {
    /// The device a request is for, or an error (unknown names get genErr: the agent has
    /// already checked the community / user, so this means a sim misconfiguration).
    async fn device(&self, ctx: &RequestContext) -> HandlerResult<&DeviceMib> {
        let Some(mib) = self.devices.get(ctx.security_name().as_bytes()) else {
            return Err(HandlerError::new("no simulated device for this community/user"));
        };
        if let Some(stats) = &self.stats {
            stats.varbinds.fetch_add(1, Ordering::Relaxed);
            let mut last = mib.last_request.lock().unwrap_or_else(|e| e.into_inner());
            if *last != Some(ctx.request_id()) {
                *last = Some(ctx.request_id());
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if ctx.pdu_type() == PduType::GetRequest {
                    stats.get_requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match self.values.fault(&mib.device.id) {
            SimFault::None => Ok(mib),
            SimFault::Error => Err(HandlerError::new("simulated device fault")),
            SimFault::Silent | SimFault::Close => {
                // Never answer in time: hold the request until its deadline (the client
                // has long given up) or the simulator stops.
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = self.cancel.cancelled() => {}
                }
                Err(HandlerError::new("simulated silent device"))
            }
        }
    }
}

impl MibHandler for SimHandler {
    fn get<'a>(&'a self, ctx: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetResult>> {
        Box::pin(async move {
            let mib = self.device(ctx).await?;
            Ok(match mib.cells.get(oid) {
                Some(cell) => match mib.value(cell, &self.values) {
                    Some(v) => GetResult::Value(v),
                    None => GetResult::NoSuchInstance,
                },
                None => {
                    // An object (column) we know but not this instance: noSuchInstance.
                    let known_object = oid
                        .parent()
                        .and_then(|parent| {
                            mib.cells.range(parent.clone()..).next().map(|(k, _)| k.starts_with(&parent))
                        })
                        .unwrap_or(false);
                    if known_object { GetResult::NoSuchInstance } else { GetResult::NoSuchObject }
                }
            })
        })
    }

    fn get_next<'a>(&'a self, ctx: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        Box::pin(async move {
            let mib = self.device(ctx).await?;
            for (k, cell) in mib.cells.range((Bound::Excluded(oid.clone()), Bound::Unbounded)) {
                if let Some(v) = mib.value(cell, &self.values) {
                    return Ok(GetNextResult::Value(VarBind::new(k.clone(), v)));
                }
            }
            Ok(GetNextResult::EndOfMibView)
        })
    }
}
