//! A simulated Modbus TCP server, driven by device profiles and `SimValues`.
//!
//! One listener serves any number of unit ids, each a `SimModbusDevice` with a profile.
//! A read is answered by encoding each point's current value (row 0 of `SimValues`) with
//! the profile's type, word/byte order, scale and offset, which is exactly the inverse of
//! the poller's decoder, so a test can assert the decoded value equals the value set.
//! Bit points (`bit = N`) sharing a register are ORed into it. Any register or bit in a
//! read that no point covers answers exception 2 (illegal data address), like strict real
//! devices do. Faults per device: `Silent` never answers, `Close` drops the connection,
//! `Error` answers exception 4. A unit id that is not configured gets exception 11
//! (gateway target device failed to respond), as a TCP gateway would answer.
//!
//! Cost: one task per listener plus one per client connection; a request does a couple of
//! map lookups per register. 200 devices on one port (unit ids) or on 200 ports both work.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

use super::values::{SimFault, SimValues};
use crate::model::DeviceId;
use crate::profiles::modbus::{ModbusProfile, Table};
use crate::sources::modbus::decode::encode_point;

/// A simulated device behind a unit id.
#[derive(Debug, Clone)]
pub struct SimModbusDevice {
    /// Key into `SimValues` (values and faults).
    pub id: DeviceId,
    /// The register map it serves.
    pub profile: Arc<ModbusProfile>,
}

/// Called with the device id for every request the server receives (benchmarks count
/// polls with it).
pub type RequestHook = Arc<dyn Fn(&DeviceId) + Send + Sync>;

/// Per unit: which points cover which register (or bit) of each table.
struct UnitMap {
    device: SimModbusDevice,
    /// (table, address) -> (point index, word offset within the point).
    cells: HashMap<(Table, u16), Vec<(usize, u16)>>,
}

impl UnitMap {
    fn new(device: SimModbusDevice) -> Self {
        let mut cells: HashMap<(Table, u16), Vec<(usize, u16)>> = HashMap::new();
        for (i, p) in device.profile.points.iter().enumerate() {
            for k in 0..p.value_type.width() {
                if let Some(addr) = p.address.checked_add(k) {
                    cells.entry((p.table, addr)).or_default().push((i, k));
                }
            }
        }
        Self { device, cells }
    }

    /// The value of one register, `None` if no point covers it.
    fn register(
        &self,
        values: &SimValues,
        table: Table,
        address: u16,
        cache: &mut BTreeMap<usize, Vec<u16>>,
    ) -> Option<u16> {
        let covering = self.cells.get(&(table, address))?;
        let points = &self.device.profile.points;
        let mut word = 0u16;
        for &(i, k) in covering {
            let p = points.get(i)?;
            let v = values.get(&self.device.id, &p.id, 0).unwrap_or(0.0);
            match p.bit {
                Some(bit) => {
                    if v != 0.0 {
                        word |= 1 << bit;
                    }
                }
                None => {
                    let words = cache
                        .entry(i)
                        // A value the type cannot hold is served as zeros; the test that set it
                        // will see the mismatch.
                        .or_insert_with(|| {
                            encode_point(p, v).unwrap_or_else(|_| vec![0; usize::from(p.value_type.width())])
                        });
                    word = words.get(usize::from(k)).copied().unwrap_or(0);
                }
            }
        }
        Some(word)
    }

    fn bit(&self, values: &SimValues, table: Table, address: u16) -> Option<bool> {
        let covering = self.cells.get(&(table, address))?;
        let (i, _) = covering.first()?;
        let p = self.device.profile.points.get(*i)?;
        Some(values.get(&self.device.id, &p.id, 0).unwrap_or(0.0) != 0.0)
    }

    fn read_registers(
        &self,
        values: &SimValues,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > 125 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let mut cache = BTreeMap::new();
        (0..count)
            .map(|k| {
                let addr = start.checked_add(k).ok_or(ExceptionCode::IllegalDataAddress)?;
                self.register(values, table, addr, &mut cache).ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn read_bits(&self, values: &SimValues, table: Table, start: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        if count == 0 || count > 2000 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        (0..count)
            .map(|k| {
                let addr = start.checked_add(k).ok_or(ExceptionCode::IllegalDataAddress)?;
                self.bit(values, table, addr).ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }
}

/// One service per client connection; `close` makes its transport report end-of-stream.
struct SimService {
    units: Arc<HashMap<u8, UnitMap>>,
    values: Arc<SimValues>,
    close: Arc<AtomicBool>,
    hook: Option<RequestHook>,
}

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(self.answer(req))
    }
}

impl SimService {
    fn answer(&self, req: SlaveRequest<'static>) -> Result<Option<Response>, ExceptionCode> {
        let Some(unit) = self.units.get(&req.slave) else {
            return Err(ExceptionCode::GatewayTargetDevice);
        };
        if let Some(hook) = &self.hook {
            hook(&unit.device.id);
        }
        match self.values.fault(&unit.device.id) {
            SimFault::None => {}
            SimFault::Silent => return Ok(None),
            SimFault::Close => {
                self.close.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            SimFault::Error => return Err(ExceptionCode::ServerDeviceFailure),
        }
        let v = &self.values;
        let response = match req.request {
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(unit.read_registers(v, Table::Holding, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(unit.read_registers(v, Table::Input, a, n)?)
            }
            Request::ReadCoils(a, n) => Response::ReadCoils(unit.read_bits(v, Table::Coil, a, n)?),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(unit.read_bits(v, Table::Discrete, a, n)?)
            }
            // Read-only simulator: writes and other functions are not supported.
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(response))
    }
}

/// A TCP stream that reads as closed once `close` is set, so the server loop ends and
/// drops the connection (tokio-modbus's server has no other way to hang up).
#[derive(Debug)]
struct Closable {
    inner: TcpStream,
    close: Arc<AtomicBool>,
}

impl AsyncRead for Closable {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.close.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Closable {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `units` on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    units: HashMap<u8, SimModbusDevice>,
    values: Arc<SimValues>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with_hook(listener, units, values, cancel, None).await
}

/// `serve`, calling `hook` with the device id of every request received.
pub async fn serve_with_hook(
    listener: TcpListener,
    units: HashMap<u8, SimModbusDevice>,
    values: Arc<SimValues>,
    cancel: CancellationToken,
    hook: Option<RequestHook>,
) -> std::io::Result<()> {
    let units: Arc<HashMap<u8, UnitMap>> = Arc::new(units.into_iter().map(|(u, d)| (u, UnitMap::new(d))).collect());
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream: TcpStream, _addr: std::net::SocketAddr| {
        let close = Arc::new(AtomicBool::new(false));
        let service = SimService {
            units: Arc::clone(&units),
            values: Arc::clone(&values),
            close: Arc::clone(&close),
            hook: hook.clone(),
        };
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok(Some((service, Closable { inner: stream, close }))))
    };
    // A broken client connection is the client's problem; keep serving the others.
    let on_process_error = |_err: std::io::Error| {};
    server.serve_until(&on_connected, on_process_error, cancel.cancelled_owned()).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PointId;
    use crate::profiles::{Profile, ProfileConfig};

    fn profile(toml_text: &str) -> Arc<ModbusProfile> {
        let cfg: ProfileConfig = toml::from_str(toml_text).unwrap();
        match cfg.build("t").unwrap() {
            Profile::Modbus(p) => p,
            Profile::Snmp(_) => unreachable!(),
        }
    }

    #[test]
    fn unmapped_registers_are_illegal_addresses_and_bits_share_a_word() {
        let p = profile(
            r#"
            protocol = "modbus"
            [[points]]
            name = "t"
            metric = "inlet_temp_c"
            address = 0
            type = "i16"
            scale = 0.1
            [[points]]
            name = "a0"
            metric = "alarm"
            address = 1
            bit = 0
            [[points]]
            name = "a3"
            metric = "alarm"
            address = 1
            bit = 3
            "#,
        );
        let dev = DeviceId::new("d");
        let values = SimValues::new();
        values.set(&dev, &PointId::new("t"), 0, -12.5);
        values.set(&dev, &PointId::new("a3"), 0, 1.0);
        let unit = UnitMap::new(SimModbusDevice { id: dev, profile: p });
        assert_eq!(unit.read_registers(&values, Table::Holding, 0, 2), Ok(vec![(-125i16) as u16, 0b1000]));
        assert_eq!(unit.read_registers(&values, Table::Holding, 0, 3), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(unit.read_registers(&values, Table::Input, 0, 1), Err(ExceptionCode::IllegalDataAddress));
    }
}
