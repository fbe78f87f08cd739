//! Register decoding and encoding: Modbus words to numbers and back.
//!
//! A multi-register value is assembled from 16-bit words. Two independent switches cover
//! the four orders seen in the field: `word_order` (which word is most significant) and
//! `byte_swap` (the two bytes inside each word are swapped). With the bytes of a 32-bit
//! value named A (most significant) to D:
//!
//! | word order | byte swap | on the wire |
//! | --- | --- | --- |
//! | big | no | ABCD |
//! | little | no | CDAB |
//! | big | yes | BADC |
//! | little | yes | DCBA |
//!
//! Decoding never panics: a register slice of the wrong length is an error, and a NaN or
//! infinite float from a device is an error (the reading becomes bad), not a value.
//! `encode` is the exact inverse, used by the simulator and the tests.

use crate::profiles::modbus::{ModbusPoint, ValueType, WordOrder};

/// Why a point's registers could not be turned into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer or more registers than the type needs (a short frame).
    #[error("expected {expected} register(s), got {got}")]
    Length { expected: usize, got: usize },
    /// The device sent NaN or an infinity (often "sensor absent" on power meters).
    #[error("device sent a non-finite value ({0})")]
    NotFinite(f64),
    /// The value cannot be represented in the point's type (simulator side).
    #[error("value {value} does not fit {ty:?}")]
    OutOfRange { value: f64, ty: ValueType },
}

/// Byte and word order of a multi-register value, named by where bytes A..D land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Big-endian words, big-endian bytes (the Modbus convention).
    Abcd,
    /// Little-endian word order ("word swap").
    Cdab,
    /// Bytes swapped within each word.
    Badc,
    /// Fully little-endian.
    Dcba,
}

impl Order {
    /// All four, in the order `probe` prints them.
    pub const ALL: [Order; 4] = [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba];

    /// The order produced by a profile's two switches.
    pub fn from_parts(word_order: WordOrder, byte_swap: bool) -> Self {
        match (word_order, byte_swap) {
            (WordOrder::Big, false) => Order::Abcd,
            (WordOrder::Little, false) => Order::Cdab,
            (WordOrder::Big, true) => Order::Badc,
            (WordOrder::Little, true) => Order::Dcba,
        }
    }

    fn word_order(self) -> WordOrder {
        match self {
            Order::Abcd | Order::Badc => WordOrder::Big,
            Order::Cdab | Order::Dcba => WordOrder::Little,
        }
    }

    fn byte_swap(self) -> bool {
        matches!(self, Order::Badc | Order::Dcba)
    }

    /// The name technicians use: `ABCD`, `CDAB`, `BADC`, `DCBA`.
    pub fn name(self) -> &'static str {
        match self {
            Order::Abcd => "ABCD",
            Order::Cdab => "CDAB",
            Order::Badc => "BADC",
            Order::Dcba => "DCBA",
        }
    }
}

/// Assembles up to four words into an integer, most significant word first after
/// applying the order.
fn assemble(words: &[u16], order: Order) -> u64 {
    let fix = |w: u16| if order.byte_swap() { w.swap_bytes() } else { w };
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(fix(*w));
    match order.word_order() {
        WordOrder::Big => words.iter().fold(0, fold),
        WordOrder::Little => words.iter().rev().fold(0, fold),
    }
}

/// Splits an integer of `n` words into registers in the given order (inverse of `assemble`).
fn disassemble(bits: u64, n: usize, order: Order) -> Vec<u16> {
    let fix = |w: u16| if order.byte_swap() { w.swap_bytes() } else { w };
    // Most significant word first.
    let mut words: Vec<u16> = (0..n).rev().map(|i| fix((bits >> (16 * i)) as u16)).collect();
    if order.word_order() == WordOrder::Little {
        words.reverse();
    }
    words
}

/// Decodes the raw (unscaled) value of `ty` from exactly `ty.width()` registers.
pub fn decode_raw(words: &[u16], ty: ValueType, order: Order) -> Result<f64, DecodeError> {
    let expected = usize::from(ty.width());
    if words.len() != expected {
        return Err(DecodeError::Length { expected, got: words.len() });
    }
    let bits = assemble(words, order);
    let v = match ty {
        ValueType::U16 => f64::from(bits as u16),
        ValueType::I16 => f64::from(bits as u16 as i16),
        ValueType::U32 => f64::from(bits as u32),
        ValueType::I32 => f64::from(bits as u32 as i32),
        // Counters beyond 2^53 lose their last digits; no facility counter gets there.
        ValueType::U64 => bits as f64,
        ValueType::F32 => f64::from(f32::from_bits(bits as u32)),
        ValueType::F64 => f64::from_bits(bits),
        ValueType::Bool => f64::from(u8::from(bits != 0)),
    };
    if v.is_finite() { Ok(v) } else { Err(DecodeError::NotFinite(v)) }
}

/// Decodes a register point: type, order, bit extraction, then scale and offset.
pub fn decode_point(point: &ModbusPoint, words: &[u16]) -> Result<f64, DecodeError> {
    let order = Order::from_parts(point.word_order, point.byte_swap);
    let raw = match point.bit {
        Some(bit) => {
            let [w] = words else {
                return Err(DecodeError::Length { expected: 1, got: words.len() });
            };
            f64::from((w >> bit) & 1)
        }
        None => decode_raw(words, point.value_type, order)?,
    };
    scale(point, raw)
}

/// Decodes a coil or discrete-input point.
pub fn decode_bit(point: &ModbusPoint, bit: bool) -> Result<f64, DecodeError> {
    scale(point, f64::from(u8::from(bit)))
}

fn scale(point: &ModbusPoint, raw: f64) -> Result<f64, DecodeError> {
    // Scales like 0.1 or 0.01 divide by 10 or 100 instead of multiplying: the division is
    // correctly rounded, so 184 tenths prints as 18.4, not 18.400000000000002.
    let inv = 1.0 / point.scale;
    let divisor = inv.round();
    let scaled = if point.scale.abs() < 1.0 && divisor != 0.0 && (inv - divisor).abs() <= 1e-9 * divisor.abs() {
        raw / divisor
    } else {
        raw * point.scale
    };
    let v = scaled + point.offset;
    if v.is_finite() { Ok(v) } else { Err(DecodeError::NotFinite(v)) }
}

/// Encodes a raw (unscaled) value of `ty` into registers; integers are rounded.
pub fn encode_raw(value: f64, ty: ValueType, order: Order) -> Result<Vec<u16>, DecodeError> {
    let n = usize::from(ty.width());
    let out_of_range = || DecodeError::OutOfRange { value, ty };
    let int = |lo: f64, hi: f64| {
        let r = value.round();
        if r.is_finite() && r >= lo && r <= hi { Ok(r) } else { Err(out_of_range()) }
    };
    let bits: u64 = match ty {
        ValueType::U16 => int(0.0, f64::from(u16::MAX))? as u64,
        ValueType::I16 => int(f64::from(i16::MIN), f64::from(i16::MAX))? as i16 as u16 as u64,
        ValueType::U32 => int(0.0, f64::from(u32::MAX))? as u64,
        ValueType::I32 => int(f64::from(i32::MIN), f64::from(i32::MAX))? as i32 as u32 as u64,
        ValueType::U64 => int(0.0, u64::MAX as f64)? as u64,
        ValueType::F32 => u64::from((value as f32).to_bits()),
        ValueType::F64 => value.to_bits(),
        ValueType::Bool => u64::from(value != 0.0),
    };
    Ok(disassemble(bits, n, order))
}

/// Encodes a point's engineering value (inverse of `decode_point`, except bit points,
/// which the caller ORs into a shared register).
pub fn encode_point(point: &ModbusPoint, value: f64) -> Result<Vec<u16>, DecodeError> {
    let raw = (value - point.offset) / point.scale;
    encode_raw(raw, point.value_type, Order::from_parts(point.word_order, point.byte_swap))
}

#[cfg(test)]
mod tests {
    use arcstr::ArcStr;

    use super::*;
    use crate::model::{Metric, PointId};
    use crate::profiles::modbus::Table;

    fn point(ty: ValueType, wo: WordOrder, swap: bool, scale: f64, offset: f64) -> ModbusPoint {
        ModbusPoint {
            id: PointId::new("p"),
            metric: Metric::new("x"),
            unit: ArcStr::from(""),
            table: Table::Holding,
            address: 0,
            value_type: ty,
            word_order: wo,
            byte_swap: swap,
            bit: None,
            scale,
            offset,
            optional: false,
        }
    }

    // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79.
    #[test]
    fn f32_in_all_four_orders() {
        let cases = [
            (Order::Abcd, [0x42F6, 0xE979]),
            (Order::Cdab, [0xE979, 0x42F6]),
            (Order::Badc, [0xF642, 0x79E9]),
            (Order::Dcba, [0x79E9, 0xF642]),
        ];
        for (order, words) in cases {
            let v = decode_raw(&words, ValueType::F32, order).unwrap();
            assert_eq!(v as f32, 123.456f32, "{}", order.name());
            assert_eq!(encode_raw(v, ValueType::F32, order).unwrap(), words, "{}", order.name());
        }
    }

    #[test]
    fn integers_signed_and_unsigned() {
        assert_eq!(decode_raw(&[0xFF38], ValueType::I16, Order::Abcd).unwrap(), -200.0);
        assert_eq!(decode_raw(&[0xFF38], ValueType::U16, Order::Abcd).unwrap(), 65336.0);
        assert_eq!(decode_raw(&[0x38FF], ValueType::I16, Order::Badc).unwrap(), -200.0);
        assert_eq!(decode_raw(&[0x0001, 0x86A0], ValueType::U32, Order::Abcd).unwrap(), 100_000.0);
        assert_eq!(decode_raw(&[0x86A0, 0x0001], ValueType::U32, Order::Cdab).unwrap(), 100_000.0);
        assert_eq!(decode_raw(&[0xFFFE, 0x7960], ValueType::I32, Order::Abcd).unwrap(), -100_000.0);
        assert_eq!(decode_raw(&[0x7960, 0xFFFE], ValueType::I32, Order::Cdab).unwrap(), -100_000.0);
        assert_eq!(decode_raw(&[0x0000, 0x0001, 0x0000, 0x0002], ValueType::U64, Order::Abcd).unwrap(), 4294967298.0);
        assert_eq!(decode_raw(&[0x0002, 0x0000, 0x0001, 0x0000], ValueType::U64, Order::Cdab).unwrap(), 4294967298.0);
    }

    #[test]
    fn f64_big_and_little() {
        // 1234.5678 = 0x40934A456D5CFAAD
        let big = [0x4093, 0x4A45, 0x6D5C, 0xFAAD];
        assert_eq!(decode_raw(&big, ValueType::F64, Order::Abcd).unwrap(), 1234.5678);
        let little = [0xFAAD, 0x6D5C, 0x4A45, 0x4093];
        assert_eq!(decode_raw(&little, ValueType::F64, Order::Cdab).unwrap(), 1234.5678);
        let dcba = [0xADFA, 0x5C6D, 0x454A, 0x9340];
        assert_eq!(decode_raw(&dcba, ValueType::F64, Order::Dcba).unwrap(), 1234.5678);
        assert_eq!(encode_raw(1234.5678, ValueType::F64, Order::Dcba).unwrap(), dcba);
    }

    #[test]
    fn scale_offset_and_bits() {
        let p = point(ValueType::I16, WordOrder::Big, false, 0.1, 0.0);
        assert_eq!(decode_point(&p, &[0x00E6]).unwrap(), 23.0);
        // Exactly the decimal the device means, not 18.400000000000002.
        assert_eq!(decode_point(&p, &[184]).unwrap(), 18.4);
        let cents = point(ValueType::U32, WordOrder::Big, false, 0.01, 0.0);
        assert_eq!(decode_point(&cents, &[0x0096, 0xB43F]).unwrap(), 98765.43);
        assert!((decode_point(&p, &[0xFF9C]).unwrap() + 10.0).abs() < 1e-9);
        let k = point(ValueType::U16, WordOrder::Big, false, 0.01, -40.0);
        assert!((decode_point(&k, &[6500]).unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(encode_point(&k, 25.0).unwrap(), vec![6500]);
        let mut b = point(ValueType::U16, WordOrder::Big, false, 1.0, 0.0);
        b.bit = Some(3);
        assert_eq!(decode_point(&b, &[0b1000]).unwrap(), 1.0);
        assert_eq!(decode_point(&b, &[0b0111]).unwrap(), 0.0);
        assert_eq!(decode_bit(&b, true).unwrap(), 1.0);
    }

    #[test]
    fn nan_and_inf_from_a_device_are_errors() {
        assert!(matches!(decode_raw(&[0x7FC0, 0x0000], ValueType::F32, Order::Abcd), Err(DecodeError::NotFinite(_))));
        assert!(matches!(decode_raw(&[0x7F80, 0x0000], ValueType::F32, Order::Abcd), Err(DecodeError::NotFinite(_))));
        let p = point(ValueType::F64, WordOrder::Big, false, 1.0, 0.0);
        assert!(decode_point(&p, &[0xFFF0, 0, 0, 0]).is_err());
    }

    #[test]
    fn wrong_length_is_an_error_not_a_panic() {
        assert_eq!(decode_raw(&[1], ValueType::F32, Order::Abcd), Err(DecodeError::Length { expected: 2, got: 1 }));
        let mut b = point(ValueType::U16, WordOrder::Big, false, 1.0, 0.0);
        b.bit = Some(0);
        assert!(decode_point(&b, &[]).is_err());
        assert!(encode_raw(70000.0, ValueType::U16, Order::Abcd).is_err());
        assert!(encode_raw(-1.0, ValueType::U32, Order::Abcd).is_err());
    }

    #[test]
    fn encode_decode_round_trip_every_type_and_order() {
        let types = [
            (ValueType::U16, 4321.0),
            (ValueType::I16, -4321.0),
            (ValueType::U32, 3_000_000_000.0),
            (ValueType::I32, -2_000_000_000.0),
            (ValueType::U64, 9_007_199_254_740_000.0),
            (ValueType::F32, -0.5),
            (ValueType::F64, 6.02214076e23),
        ];
        for (ty, v) in types {
            for order in Order::ALL {
                let words = encode_raw(v, ty, order).unwrap();
                assert_eq!(decode_raw(&words, ty, order).unwrap(), v, "{ty:?} {}", order.name());
            }
        }
    }
}
