//! `ModbusError`: what went wrong talking to a Modbus device, and where.
//!
//! Two families are kept apart because they mean different things on site: the device
//! *answered with an exception* (it is alive; the register map or the device's state is
//! the problem) versus the device *could not be reached* (cabling, addressing, power,
//! a gateway). Every variant names the address and unit, and for requests the table and
//! register range, so the message alone tells a technician where to look.

use std::time::Duration;

use crate::profiles::modbus::Table;

/// Human name of a Modbus table, as used in messages.
pub fn table_name(table: Table) -> &'static str {
    match table {
        Table::Holding => "holding registers",
        Table::Input => "input registers",
        Table::Coil => "coils",
        Table::Discrete => "discrete inputs",
    }
}

/// Name of a Modbus exception code (Modbus Application Protocol v1.1b3, section 7).
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// The register range of a read, for messages: `holding registers 100..=109`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The table read.
    pub table: Table,
    /// First wire (zero-based) address.
    pub start: u16,
    /// Registers or bits read.
    pub count: u16,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = u32::from(self.start) + u32::from(self.count.max(1)) - 1;
        write!(f, "{} {}..={}", table_name(self.table), self.start, last)
    }
}

/// What a request asked for, for messages: `reading holding registers 100..=109` or
/// `reading device identification (object 0x00)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A register or bit read (functions 01-04).
    Read(Span),
    /// Read Device Identification (function 43, MEI type 14), stream from this object id.
    Identify { object: u8 },
}

impl From<Span> for Op {
    fn from(span: Span) -> Self {
        Op::Read(span)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Read(span) => write!(f, "reading {span}"),
            Op::Identify { object } => write!(f, "reading device identification (object 0x{object:02X})"),
        }
    }
}

/// A failed Modbus request or connection.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    /// The TCP connection could not be opened (refused, no route, unknown host).
    // The io error is part of the message (readings carry only the message), so it is not
    // also exposed as `source`, which would print it twice in an error chain.
    #[error("cannot connect to {address}: {io}")]
    Connect { address: String, io: std::io::Error },
    /// The TCP connection was not established within the timeout.
    #[error("no connection to {address} within {}", crate::model::humane_duration(*.after))]
    ConnectTimeout { address: String, after: Duration },
    /// The serial port of an RTU bus could not be opened.
    #[error("cannot open serial port {path}: {message}")]
    SerialOpen { path: String, message: String },
    /// No answer within the timeout.
    #[error("timeout after {}: no answer from unit {unit} at {address} {op}", crate::model::humane_duration(*.after))]
    Timeout { address: String, unit: u8, op: Op, after: Duration },
    /// The connection broke during a request (reset, closed by the device).
    #[error("connection to {address} lost {op} from unit {unit}: {io}")]
    Transport { address: String, unit: u8, op: Op, io: std::io::Error },
    /// The reply did not match the request (wrong unit id, wrong function, short or garbled frame).
    #[error("bad reply from unit {unit} at {address} {op}: {message}")]
    Protocol { address: String, unit: u8, op: Op, message: String },
    /// The device answered with a Modbus exception.
    #[error("exception {code} ({}) from unit {unit} at {address} {op}", exception_name(*.code))]
    Exception { address: String, unit: u8, op: Op, code: u8 },
    /// The link task is gone (shutdown in progress).
    #[error("link to {address} is shut down")]
    Closed { address: String },
}

impl ModbusError {
    /// The device answered (with an exception), as opposed to being unreachable.
    pub fn is_exception(&self) -> bool {
        matches!(self, ModbusError::Exception { .. })
    }

    /// Exception 2: the read touched a register the device does not have.
    pub fn is_illegal_address(&self) -> bool {
        matches!(self, ModbusError::Exception { code: 2, .. })
    }

    /// Worth retrying within the same poll: the device did not answer at all, or is busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModbusError::Exception { code, .. } => *code == 6,
            ModbusError::Closed { .. } => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_and_where() {
        let span = Span { table: Table::Holding, start: 100, count: 10 };
        let e = ModbusError::Exception { address: "10.0.0.5:502".into(), unit: 3, op: span.into(), code: 2 };
        assert_eq!(
            e.to_string(),
            "exception 2 (illegal data address) from unit 3 at 10.0.0.5:502 reading holding registers 100..=109"
        );
        let t = ModbusError::Timeout {
            address: "10.0.0.5:502".into(),
            unit: 3,
            op: span.into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            t.to_string(),
            "timeout after 2s: no answer from unit 3 at 10.0.0.5:502 reading holding registers 100..=109"
        );
        assert!(e.is_exception() && e.is_illegal_address() && !e.is_retryable());
        assert!(!t.is_exception() && t.is_retryable());
    }
}
