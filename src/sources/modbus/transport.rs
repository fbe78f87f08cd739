//! Links: the one task that owns a Modbus connection (a TCP address or an RS-485 bus).
//!
//! Every device behind the same TCP gateway address, or on the same serial bus, sends its
//! reads through one `Link`. The link task executes them strictly one at a time: Modbus TCP
//! gateways and RTU buses answer one request at a time anyway, and an RS-485 bus must never
//! see two masters talk at once. On RTU the task also keeps the bus quiet for `spacing`
//! between requests, and a link made with `spawn_paced` (a discovery scan) starts its
//! requests at least `min_interval` apart. Besides register reads, a link carries Read
//! Device Identification requests (function 43/14, see `identify`).
//!
//! Invariants: every request is bounded by `tokio::time::timeout` (tokio-modbus has no
//! timeouts of its own); after a timeout, a transport error or a reply that does not match
//! its request, the connection is dropped and the next request reconnects, because a late
//! reply would otherwise be taken as the answer to the next request. Replies are checked
//! for length here, so a short frame is an error and never reaches the decoder.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::{ReadCode, Request, Response, Slave, SlaveContext};
use tokio_util::sync::CancellationToken;

use super::error::{ModbusError, Op, Span};
use crate::config::{Parity, SerialSettings};
use crate::profiles::modbus::Table;
use crate::sources::SourceStats;

/// Where a link connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP, `host:port`.
    Tcp(String),
    /// Modbus RTU on a serial port.
    Rtu(SerialSettings),
}

impl Endpoint {
    /// The address as messages show it.
    pub fn describe(&self) -> &str {
        match self {
            Endpoint::Tcp(a) => a,
            Endpoint::Rtu(s) => &s.path,
        }
    }
}

/// One read: which unit, which registers, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// Unit id (slave address).
    pub unit: u8,
    /// Table and registers.
    pub span: Span,
    /// Longest wait for the answer (and for connecting, when the link is down).
    pub timeout: Duration,
}

/// The data of a successful read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Holding or input registers, exactly as many as asked for.
    Registers(Vec<u16>),
    /// Coils or discrete inputs, exactly as many as asked for.
    Bits(Vec<bool>),
}

/// Which identification objects a Read Device Identification request streams (the spec's
/// "read device id code").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLevel {
    /// Code 01: VendorName, ProductCode, MajorMinorRevision (objects 0x00-0x02).
    Basic,
    /// Code 02: the basic objects and VendorUrl, ProductName, ModelName,
    /// UserApplicationName (0x03-0x06).
    Regular,
}

/// One Read Device Identification request (function 43, MEI type 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyRequest {
    /// Unit id (slave address).
    pub unit: u8,
    /// Basic or regular objects.
    pub level: IdLevel,
    /// The object id to start the stream at (0, or the previous answer's next object id).
    pub object: u8,
    /// Longest wait for the answer (and for connecting, when the link is down).
    pub timeout: Duration,
}

/// One answer to a Read Device Identification request, as the device sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPage {
    /// The device's conformity level (0x01-0x03, 0x81-0x83).
    pub conformity: u8,
    /// The device has more objects than fitted in this answer.
    pub more_follows: bool,
    /// Where the next request should start when `more_follows`.
    pub next_object: u8,
    /// (object id, raw value) in the order sent.
    pub objects: Vec<(u8, Vec<u8>)>,
}

enum Job {
    Read { req: ReadRequest, reply: oneshot::Sender<Result<Answer, ModbusError>> },
    Identify { req: IdentifyRequest, reply: oneshot::Sender<Result<IdPage, ModbusError>> },
}

/// A handle to a link task; cheap to clone, one per device using the link.
#[derive(Clone, Debug)]
pub struct Link {
    tx: mpsc::Sender<Job>,
    address: Arc<str>,
}

impl Link {
    /// Starts the task owning `endpoint`. It ends when every `Link` clone is dropped or
    /// `cancel` fires.
    pub fn spawn(endpoint: Endpoint, stats: Arc<SourceStats>, cancel: CancellationToken) -> (Link, JoinHandle<()>) {
        Link::spawn_paced(endpoint, stats, cancel, Duration::ZERO)
    }

    /// Like `spawn`, and requests start at least `min_interval` apart, whoever sends them
    /// (a scan's bounded rate: at most one request per `min_interval` on this link).
    pub fn spawn_paced(
        endpoint: Endpoint,
        stats: Arc<SourceStats>,
        cancel: CancellationToken,
        min_interval: Duration,
    ) -> (Link, JoinHandle<()>) {
        // A small queue: each device has at most one request in flight.
        let (tx, rx) = mpsc::channel(64);
        let address: Arc<str> = Arc::from(endpoint.describe());
        let owner = Owner { endpoint, ctx: None, stats, min_interval, last_start: None };
        let task = tokio::spawn(owner.run(rx, cancel));
        (Link { tx, address }, task)
    }

    /// The address as messages show it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Queues a read and waits for its answer.
    pub async fn read(&self, req: ReadRequest) -> Result<Answer, ModbusError> {
        let closed = || ModbusError::Closed { address: self.address.to_string() };
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Read { req, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Queues one Read Device Identification request and waits for its answer.
    pub async fn identify(&self, req: IdentifyRequest) -> Result<IdPage, ModbusError> {
        let closed = || ModbusError::Closed { address: self.address.to_string() };
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Identify { req, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

struct Owner {
    endpoint: Endpoint,
    ctx: Option<Context>,
    stats: Arc<SourceStats>,
    /// Shortest time between the starts of two requests (zero: no pacing).
    min_interval: Duration,
    last_start: Option<tokio::time::Instant>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, cancel: CancellationToken) {
        loop {
            let job = tokio::select! {
                _ = cancel.cancelled() => break,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            if let Some(last) = self.last_start
                && !self.min_interval.is_zero()
            {
                tokio::time::sleep_until(last + self.min_interval).await;
            }
            self.last_start = Some(tokio::time::Instant::now());
            // The asker may have given up (shutdown); nobody to tell then.
            match job {
                Job::Read { req, reply } => {
                    let _ = reply.send(self.read(req).await);
                }
                Job::Identify { req, reply } => {
                    let _ = reply.send(self.identify(req).await);
                }
            }
            if let Endpoint::Rtu(s) = &self.endpoint
                && !s.spacing.is_zero()
            {
                tokio::time::sleep(s.spacing).await;
            }
        }
    }

    async fn connect(&mut self, unit: u8, timeout: Duration) -> Result<(), ModbusError> {
        let slave = Slave(unit);
        match &self.endpoint {
            Endpoint::Tcp(address) => {
                let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str())).await
                {
                    Err(_) => return Err(ModbusError::ConnectTimeout { address: address.clone(), after: timeout }),
                    Ok(Err(io)) => return Err(ModbusError::Connect { address: address.clone(), io }),
                    Ok(Ok(s)) => s,
                };
                // Requests are small and latency-bound.
                let _ = stream.set_nodelay(true);
                self.ctx = Some(tokio_modbus::client::tcp::attach_slave(stream, slave));
            }
            Endpoint::Rtu(s) => {
                let builder = tokio_serial::new(&s.path, s.baud)
                    .parity(match s.parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .data_bits(if s.data_bits == 7 {
                        tokio_serial::DataBits::Seven
                    } else {
                        tokio_serial::DataBits::Eight
                    })
                    .stop_bits(if s.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    });
                let port = tokio_serial::SerialStream::open(&builder)
                    .map_err(|e| ModbusError::SerialOpen { path: s.path.clone(), message: e.to_string() })?;
                self.ctx = Some(tokio_modbus::client::rtu::attach_slave(port, slave));
            }
        }
        Ok(())
    }

    async fn read(&mut self, req: ReadRequest) -> Result<Answer, ModbusError> {
        let span = req.span;
        let request = match span.table {
            Table::Holding => Request::ReadHoldingRegisters(span.start, span.count),
            Table::Input => Request::ReadInputRegisters(span.start, span.count),
            Table::Coil => Request::ReadCoils(span.start, span.count),
            Table::Discrete => Request::ReadDiscreteInputs(span.start, span.count),
        };
        let response = self.execute(req.unit, req.timeout, Op::Read(span), request).await?;
        let result = check_reply(span, response).map_err(|message| ModbusError::Protocol {
            address: self.endpoint.describe().to_owned(),
            unit: req.unit,
            op: Op::Read(span),
            message,
        });
        if result.is_err() {
            self.ctx = None;
        }
        result
    }

    async fn identify(&mut self, req: IdentifyRequest) -> Result<IdPage, ModbusError> {
        let code = match req.level {
            IdLevel::Basic => ReadCode::Basic,
            IdLevel::Regular => ReadCode::Regular,
        };
        let op = Op::Identify { object: req.object };
        let response =
            self.execute(req.unit, req.timeout, op, Request::ReadDeviceIdentification(code, req.object)).await?;
        let result = match response {
            Response::ReadDeviceIdentification(r) => Ok(IdPage {
                conformity: r.conformity_level.value(),
                more_follows: r.more_follows,
                next_object: r.next_object_id,
                objects: r.device_id_objects.into_iter().map(|o| (o.id, o.value.to_vec())).collect(),
            }),
            other => Err(ModbusError::Protocol {
                address: self.endpoint.describe().to_owned(),
                unit: req.unit,
                op,
                message: format!("reply of the wrong kind: {other:?}"),
            }),
        };
        if result.is_err() {
            self.ctx = None;
        }
        result
    }

    /// Sends one request to `unit` and waits for its answer, at most `timeout`. An exception
    /// is an error here; the caller checks the kind and size of a normal reply.
    async fn execute(
        &mut self,
        unit: u8,
        timeout: Duration,
        op: Op,
        request: Request<'static>,
    ) -> Result<Response, ModbusError> {
        if self.ctx.is_none() {
            self.connect(unit, timeout).await?;
        }
        let address = self.endpoint.describe().to_owned();
        let Some(ctx) = self.ctx.as_mut() else {
            // connect() either set ctx or returned an error above.
            return Err(ModbusError::Closed { address });
        };
        ctx.set_slave(Slave(unit));
        self.stats.modbus.requests.fetch_add(1, Ordering::Relaxed);
        // `Client::call` rather than the `Reader` helpers: those debug-assert the reply length,
        // and a short frame from a device must be an error here, not a panic.
        let outcome = tokio::time::timeout(timeout, ctx.call(request)).await;
        let protocol = |message: String| ModbusError::Protocol { address: address.clone(), unit, op, message };
        let result = match outcome {
            Err(_) => Err(ModbusError::Timeout { address: address.clone(), unit, op, after: timeout }),
            // The codec reports undecodable bytes as InvalidData, and a frame that ends inside
            // a field as UnexpectedEof: a garbled frame, not a lost link.
            Ok(Err(tokio_modbus::Error::Transport(io)))
                if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) =>
            {
                Err(protocol(format!("garbled frame: {io}")))
            }
            Ok(Err(tokio_modbus::Error::Transport(io))) => {
                Err(ModbusError::Transport { address: address.clone(), unit, op, io })
            }
            Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(protocol(e.to_string())),
            Ok(Ok(Err(code))) => {
                return Err(ModbusError::Exception { address, unit, op, code: u8::from(code) });
            }
            Ok(Ok(Ok(response))) => Ok(response),
        };
        if result.is_err() {
            // Out of step or broken: a late reply must not answer the next request.
            self.ctx = None;
        }
        result
    }
}

/// Checks that a reply is the kind and size the request asked for.
fn check_reply(span: Span, response: Response) -> Result<Answer, String> {
    let want = usize::from(span.count);
    match (span.table, response) {
        (Table::Holding, Response::ReadHoldingRegisters(words))
        | (Table::Input, Response::ReadInputRegisters(words)) => {
            if words.len() == want {
                Ok(Answer::Registers(words))
            } else {
                Err(format!("asked for {want} registers, got {}", words.len()))
            }
        }
        (Table::Coil, Response::ReadCoils(mut bits)) | (Table::Discrete, Response::ReadDiscreteInputs(mut bits)) => {
            // Bits come padded to whole bytes.
            if bits.len() >= want {
                bits.truncate(want);
                Ok(Answer::Bits(bits))
            } else {
                Err(format!("asked for {want} bits, got {}", bits.len()))
            }
        }
        (_, other) => Err(format!("reply of the wrong kind: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_mismatched_replies_are_errors() {
        let span = Span { table: Table::Holding, start: 0, count: 3 };
        assert_eq!(
            check_reply(span, Response::ReadHoldingRegisters(vec![1, 2, 3])),
            Ok(Answer::Registers(vec![1, 2, 3]))
        );
        assert!(check_reply(span, Response::ReadHoldingRegisters(vec![1, 2])).is_err());
        assert!(check_reply(span, Response::ReadInputRegisters(vec![1, 2, 3])).is_err());
        let bits = Span { table: Table::Coil, start: 0, count: 3 };
        assert_eq!(
            check_reply(bits, Response::ReadCoils(vec![true, false, true, false, false, false, false, false])),
            Ok(Answer::Bits(vec![true, false, true]))
        );
    }
}
