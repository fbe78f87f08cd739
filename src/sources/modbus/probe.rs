//! `hallmonitor probe modbus`: read raw registers and show every interpretation.
//!
//! Byte and word order confusion is the most common Modbus commissioning problem. This
//! prints the raw words and, side by side, u16/i16 per register, u32/i32/f32 in all four
//! orders (ABCD, CDAB, BADC, DCBA) for each pair, and u64/f64 in all four orders for each
//! run of four, and states whether the register was taken as a zero- or one-based address,
//! so the engineer can match a known value on the device's display to the right profile
//! settings (`type`, `word_order`, `byte_swap`, `addressing`).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::decode::{Order, decode_raw};
use super::error::Span;
use super::identify::{Identification, identify, object_name};
use super::transport::{Answer, Endpoint, Link, ReadRequest};
use crate::config::{Parity, SerialSettings};
use crate::error::UsageError;
use crate::profiles::modbus::{Table, ValueType};
use crate::sources::SourceStats;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device address: `host:port` for Modbus TCP (port 502 if omitted), or a serial
    /// port path such as `/dev/ttyUSB0` for Modbus RTU.
    pub address: String,
    /// Unit id (slave address).
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    /// First register to read. A zero-based wire address unless `--one-based` is given.
    #[arg(long, required_unless_present = "identify")]
    pub register: Option<u16>,
    /// Instead of registers, ask the unit who it is: Read Device Identification (function
    /// 43/14), VendorName, ProductCode, MajorMinorRevision and the regular objects
    /// (VendorUrl, ProductName, ModelName) where the device has them.
    #[arg(long, conflicts_with_all = ["register", "input", "one_based"])]
    pub identify: bool,
    /// Number of registers to read (1..=125).
    #[arg(long, default_value_t = 4)]
    pub count: u16,
    /// Read input registers (function 04) instead of holding registers (function 03).
    #[arg(long)]
    pub input: bool,
    /// Take `--register` as a one-based register number as printed in many manuals
    /// (register 40001 / 30001 / 1 is wire address 0).
    #[arg(long)]
    pub one_based: bool,
    /// Time to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// RTU only: baud rate.
    #[arg(long, default_value_t = 19200)]
    pub baud: u32,
    /// RTU only: parity `none`, `even` or `odd`.
    #[arg(long, default_value = "even")]
    pub parity: String,
}

/// The wire address a user's `--register` means.
fn wire_address(register: u16, one_based: bool) -> Result<u16, String> {
    if !one_based {
        return Ok(register);
    }
    // Manuals often print 4xxxx/3xxxx prefixes for holding/input registers.
    let n = match register {
        40001..=49999 => register - 40000,
        30001..=39999 => register - 30000,
        r => r,
    };
    n.checked_sub(1).ok_or_else(|| "with --one-based, registers start at 1".to_owned())
}

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    if args.address.starts_with('/') {
        let parity = match args.parity.as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => return Err(format!("--parity {other:?}: expected none, even or odd")),
        };
        return Ok(Endpoint::Rtu(SerialSettings {
            path: args.address.clone(),
            baud: args.baud,
            parity,
            data_bits: 8,
            stop_bits: 1,
            spacing: Duration::ZERO,
        }));
    }
    let addr = if args.address.contains(':') { args.address.clone() } else { format!("{}:502", args.address) };
    Ok(Endpoint::Tcp(addr))
}

/// Runs the probe on `rt` (the command layer owns the runtime).
pub fn run(args: Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    if args.identify {
        return run_identify(&args, rt);
    }
    if !(1..=125).contains(&args.count) {
        return Err(UsageError("--count must be 1..=125".into()).into());
    }
    // clap requires --register unless --identify is given.
    let register = args.register.ok_or_else(|| UsageError("--register is required".into()))?;
    let start = wire_address(register, args.one_based).map_err(UsageError)?;
    if u32::from(start) + u32::from(args.count) > 65536 {
        return Err(UsageError("register range runs past 65535".into()).into());
    }
    let endpoint = endpoint(&args).map_err(UsageError)?;
    let table = if args.input { Table::Input } else { Table::Holding };
    let span = Span { table, start, count: args.count };
    let words = rt.block_on(async {
        let cancel = CancellationToken::new();
        let (link, task) = Link::spawn(endpoint.clone(), Arc::new(SourceStats::default()), cancel.clone());
        let answer = link.read(ReadRequest { unit: args.unit, span, timeout: args.timeout }).await;
        cancel.cancel();
        drop(link);
        let _ = task.await;
        answer
    })?;
    let Answer::Registers(words) = words else {
        anyhow::bail!("device answered a register read with bits");
    };
    let how = if args.one_based {
        format!("--register {register} taken as one-based: wire address {start}")
    } else {
        format!(
            "--register {register} taken as a zero-based wire address (it is register {} in one-based manuals; use --one-based to give manual numbers)",
            u32::from(start) + 1
        )
    };
    print!("{}", render(endpoint.describe(), args.unit, span, &how, &words));
    Ok(ExitCode::SUCCESS)
}

/// `probe modbus --identify`: Read Device Identification and print the objects.
fn run_identify(args: &Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint(args).map_err(UsageError)?;
    let outcome = rt.block_on(async {
        let cancel = CancellationToken::new();
        let (link, task) = Link::spawn(endpoint.clone(), Arc::new(SourceStats::default()), cancel.clone());
        let outcome = identify(&link, args.unit, args.timeout).await;
        cancel.cancel();
        drop(link);
        let _ = task.await;
        outcome
    })?;
    print!("{}", render_identification(endpoint.describe(), args.unit, &outcome));
    Ok(ExitCode::SUCCESS)
}

/// The report for a Read Device Identification outcome.
pub fn render_identification(address: &str, unit: u8, outcome: &Identification) -> String {
    let mut o = String::new();
    match outcome {
        Identification::Unsupported { code } => {
            let _ = writeln!(
                o,
                "unit {unit} at {address} does not support Read Device Identification (exception {code}: {})",
                super::error::exception_name(*code)
            );
        }
        Identification::Identified(id) => {
            let _ = writeln!(
                o,
                "unit {unit} at {address}: Read Device Identification, conformity level 0x{:02X}",
                id.conformity
            );
            for (object, value) in &id.objects {
                let _ = writeln!(o, "  0x{object:02X} {:<20} {value}", object_name(*object));
            }
            if let Some(note) = &id.note {
                let _ = writeln!(o, "note: {note}");
            }
        }
    }
    o
}

fn fmt_f(v: Result<f64, super::decode::DecodeError>) -> String {
    match v {
        Ok(v) if v.abs() >= 1e9 || (v != 0.0 && v.abs() < 1e-4) => format!("{v:e}"),
        Ok(v) => format!("{v}"),
        Err(super::decode::DecodeError::NotFinite(v)) => format!("{v}"),
        Err(e) => e.to_string(),
    }
}

/// Integers in full digits (decoded integers are exact in f64 up to 2^53).
fn fmt_int(v: Result<f64, super::decode::DecodeError>) -> String {
    match v {
        Ok(v) => format!("{v:.0}"),
        other => fmt_f(other),
    }
}

/// An f32 printed with f32's shortest form, so 123.456 shows as the device meant it
/// rather than as its f64 widening 123.45600128173828.
fn fmt_f32(v: Result<f64, super::decode::DecodeError>) -> String {
    match v {
        Ok(v) => {
            let f = v as f32;
            if f.abs() >= 1e9 || (f != 0.0 && f.abs() < 1e-4) { format!("{f:e}") } else { format!("{f}") }
        }
        other => fmt_f(other),
    }
}

/// The report for `words` read from `span`.
pub fn render(address: &str, unit: u8, span: Span, how: &str, words: &[u16]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "unit {unit} at {address}: {span}");
    let _ = writeln!(o, "{how}");
    let _ = writeln!(o);
    let _ = writeln!(o, "{:>6} {:>7}  {:>6}  {:>6} {:>6}", "wire", "1-based", "hex", "u16", "i16");
    for (i, w) in words.iter().enumerate() {
        let a = u32::from(span.start) + i as u32;
        let _ = writeln!(o, "{a:>6} {:>7}  0x{w:04X}  {w:>6} {:>6}", a + 1, *w as i16);
    }
    if words.len() >= 2 {
        let _ = writeln!(o);
        let _ = writeln!(o, "32-bit values starting at each wire address (profile: word_order / byte_swap):");
        for (i, pair) in words.windows(2).enumerate() {
            let a = u32::from(span.start) + i as u32;
            let _ = writeln!(o, "  at {a}:");
            for order in Order::ALL {
                let _ = writeln!(
                    o,
                    "    {} {:<22} u32 {:>10}  i32 {:>11}  f32 {}",
                    order.name(),
                    settings(order),
                    fmt_int(decode_raw(pair, ValueType::U32, order)),
                    fmt_int(decode_raw(pair, ValueType::I32, order)),
                    fmt_f32(decode_raw(pair, ValueType::F32, order)),
                );
            }
        }
    }
    if words.len() >= 4 {
        let _ = writeln!(o);
        let _ = writeln!(o, "64-bit values starting at each wire address:");
        for (i, quad) in words.windows(4).enumerate() {
            let a = u32::from(span.start) + i as u32;
            let _ = writeln!(o, "  at {a}:");
            for order in Order::ALL {
                let _ = writeln!(
                    o,
                    "    {} {:<22} u64 {:>20}  f64 {}",
                    order.name(),
                    settings(order),
                    fmt_int(decode_raw(quad, ValueType::U64, order)),
                    fmt_f(decode_raw(quad, ValueType::F64, order)),
                );
            }
        }
    }
    o
}

fn settings(order: Order) -> &'static str {
    match order {
        Order::Abcd => "(big, no swap)",
        Order::Cdab => "(little, no swap)",
        Order::Badc => "(big, byte_swap)",
        Order::Dcba => "(little, byte_swap)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_based_numbers_become_wire_addresses() {
        assert_eq!(wire_address(3000, true), Ok(2999));
        assert_eq!(wire_address(40001, true), Ok(0));
        assert_eq!(wire_address(30010, true), Ok(9));
        assert_eq!(wire_address(3000, false), Ok(3000));
        assert!(wire_address(0, true).is_err());
    }

    #[test]
    fn report_shows_every_order_side_by_side() {
        let span = Span { table: Table::Holding, start: 100, count: 4 };
        // 123.456f32 ABCD in 100..=101, then 1.0f32 CDAB in 102..=103.
        let out = render("127.0.0.1:502", 1, span, "zero-based", &[0x42F6, 0xE979, 0x0000, 0x3F80]);
        assert!(out.contains("holding registers 100..=103"), "{out}");
        assert!(out.contains("   100     101  0x42F6   17142  17142"), "{out}");
        let abcd = out.lines().find(|l| l.contains("ABCD") && l.contains("123.456")).unwrap_or("");
        assert!(!abcd.is_empty(), "{out}");
        let at102 = out.split("at 102:").nth(1).unwrap();
        let cdab = at102.lines().find(|l| l.trim_start().starts_with("CDAB")).unwrap();
        assert!(cdab.ends_with("f32 1"), "{cdab}");
        assert!(out.contains("64-bit values"), "{out}");
    }

    #[test]
    fn identification_report_names_each_object() {
        let mut id = super::super::identify::DeviceIdentity { conformity: 0x81, ..Default::default() };
        id.objects.insert(0, "Acme".into());
        id.objects.insert(1, "X100".into());
        let out = render_identification("127.0.0.1:502", 3, &Identification::Identified(id));
        assert!(out.starts_with("unit 3 at 127.0.0.1:502: Read Device Identification, conformity level 0x81"), "{out}");
        assert!(out.contains("  0x00 VendorName           Acme\n"), "{out}");
        assert!(out.contains("  0x01 ProductCode          X100\n"), "{out}");
        let none = render_identification("127.0.0.1:502", 3, &Identification::Unsupported { code: 1 });
        assert!(none.contains("does not support Read Device Identification (exception 1: illegal function)"), "{none}");
    }
}
