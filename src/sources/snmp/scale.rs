//! Turning SNMP values into numbers in SI units: type conversion, the vendor's row
//! scaling (ENTITY-SENSOR scale/precision, decimal-digit columns) and counter rates.
//!
//! Pure functions; every failure is a reason string that ends up in a bad reading's
//! `error`, so it names the OID and says what was wrong in words a technician can act on.

use std::fmt;
use std::time::Duration;

use async_snmp::Value;

/// A number as the agent sent it, before profile scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Integer, Gauge32, Unsigned32, TimeTicks, or a decimal OCTET STRING.
    Plain(f64),
    /// A 32-bit counter (wraps at 2^32).
    Counter32(u32),
    /// A 64-bit counter.
    Counter64(u64),
}

impl Number {
    /// The value itself (a counter's raw count).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Plain(v) => v,
            Number::Counter32(c) => f64::from(c),
            Number::Counter64(c) => c as f64,
        }
    }
}

/// Says what an exception value means, naming the OID.
pub fn exception_reason(value: &Value, oid: &dyn fmt::Display) -> Option<String> {
    match value {
        Value::NoSuchObject => {
            Some(format!("noSuchObject at {oid}: the agent does not implement this object (wrong profile or MIB?)"))
        }
        Value::NoSuchInstance => Some(format!("noSuchInstance at {oid}: the object exists but this instance does not")),
        Value::EndOfMibView => Some(format!("endOfMibView at {oid}: nothing at or after this OID")),
        _ => None,
    }
}

/// Converts one value to a number. `string_number` allows OCTET STRINGs holding a decimal
/// number ("23.5", " 23.5 C" takes the leading number).
pub fn to_number(value: &Value, oid: &dyn fmt::Display, string_number: bool) -> Result<Number, String> {
    if let Some(reason) = exception_reason(value, oid) {
        return Err(reason);
    }
    match value {
        Value::Integer(i) => Ok(Number::Plain(f64::from(*i))),
        Value::Gauge32(u) | Value::UInteger32(u) | Value::TimeTicks(u) => Ok(Number::Plain(f64::from(*u))),
        Value::Counter32(c) => Ok(Number::Counter32(*c)),
        Value::Counter64(c) => Ok(Number::Counter64(*c)),
        Value::OctetString(bytes) if string_number => {
            let text = String::from_utf8_lossy(bytes);
            parse_leading_number(&text)
                .map(Number::Plain)
                .ok_or_else(|| format!("OCTET STRING {text:?} at {oid} does not start with a number"))
        }
        // net-snmp `extend` scripts and some sensors send floats wrapped in Opaque.
        Value::Opaque(_) => value
            .as_opaque_double()
            .or_else(|| value.as_opaque_float().map(f64::from))
            .filter(|v| v.is_finite())
            .map(Number::Plain)
            .ok_or_else(|| format!("Opaque value at {oid} is not a float or double")),
        Value::OctetString(bytes) => Err(format!(
            "OCTET STRING {:?} at {oid} where a number was expected (set string_number = true if it holds one)",
            String::from_utf8_lossy(bytes)
        )),
        other => Err(format!("{} value at {oid} where a number was expected", other.kind())),
    }
}

fn parse_leading_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0)))
        .map_or(t.len(), |(i, _)| i);
    let v: f64 = t[..end].parse().ok()?;
    v.is_finite().then_some(v)
}

/// An integer from a scaling or filter column.
pub fn to_integer(value: &Value, oid: &dyn fmt::Display) -> Result<i64, String> {
    if let Some(reason) = exception_reason(value, oid) {
        return Err(reason);
    }
    match value {
        Value::Integer(i) => Ok(i64::from(*i)),
        Value::Gauge32(u) | Value::UInteger32(u) | Value::Counter32(u) => Ok(i64::from(*u)),
        other => Err(format!("{} value at {oid} where an integer was expected", other.kind())),
    }
}

/// ENTITY-SENSOR-MIB `SensorDataScale` (yocto(1) .. units(9) .. yotta(17)) as a factor.
pub fn entity_scale_factor(scale: i64) -> Result<f64, String> {
    if !(1..=17).contains(&scale) {
        return Err(format!("entPhySensorScale {scale} is outside yocto(1)..yotta(17)"));
    }
    Ok(10f64.powi(3 * (scale as i32 - 9)))
}

/// A signed scale factor (Rittal CMC III cmcIIIVarScale): -N divides by N, +N multiplies
/// by N, 0 leaves the value as it is.
pub fn signed_factor(n: i64) -> f64 {
    match n {
        0 => 1.0,
        n if n < 0 => 1.0 / n.unsigned_abs() as f64,
        n => n as f64,
    }
}

/// Decimal digits (ENTITY-SENSOR precision, Raritan `*DecimalDigits`) as a factor.
/// ENTITY-SENSOR-MIB (RFC 3433, EntitySensorPrecision) allows -8..9: 1..9 is the number of
/// fractional digits; 0 means "not a fixed-point number" and -8..-1 "the number of accurate
/// digits", neither of which scales the value.
pub fn decimals_factor(digits: i64) -> Result<f64, String> {
    if !(-8..=9).contains(&digits) {
        return Err(format!("decimal digits {digits} outside -8..9"));
    }
    Ok(10f64.powi(-(digits.max(0) as i32)))
}

/// Multiplies by `k`, dividing instead when `k` is the reciprocal of a whole number
/// (0.1, 0.01, 0.001...): `212 / 10` is exactly the nearest double to 21.2, `212 * 0.1`
/// is not, and readings should not print as 21.200000000000003.
pub fn apply_factor(v: f64, k: f64) -> f64 {
    if k > 0.0 && k < 1.0 {
        let inv = 1.0 / k;
        if (inv - inv.round()).abs() < 1e-9 * inv {
            return v / inv.round();
        }
    }
    v * k
}

/// The value in the profile's unit: raw number, row factor, then `scale` and `offset`.
pub fn to_si(raw: f64, row_factor: f64, scale: f64, offset: f64) -> f64 {
    apply_factor(apply_factor(raw, row_factor), scale) + offset
}

/// Per-second rate between two counter samples. `None` when the counter went backwards in
/// a way a single wrap cannot explain (agent restart, counter reset) or no time passed.
///
/// A Counter32 that went backwards is taken as one wrap only when the wrapped increase is
/// under half the counter's range: a reset counter (agent reboot) that went from 1,000,000
/// back to 500 would otherwise read as an increase of about 4.29 billion. The cost is that
/// a counter really advancing by 2^31 or more in one interval is skipped too, which the
/// meters this agent reads (energy, runtime) never do at sane poll intervals.
pub fn counter_rate(prev: Number, now: Number, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let delta = match (prev, now) {
        (Number::Counter32(a), Number::Counter32(b)) if b >= a => f64::from(b - a),
        (Number::Counter32(a), Number::Counter32(b)) => {
            let wrapped = b.wrapping_sub(a);
            if wrapped >= 1 << 31 {
                return None;
            }
            f64::from(wrapped)
        }
        (Number::Counter64(a), Number::Counter64(b)) if b >= a => (b - a) as f64,
        (Number::Plain(a), Number::Plain(b)) if b >= a => b - a,
        _ => return None,
    };
    Some(delta / secs)
}

/// Whether the agent restarted between two samples of its sysUpTime (in TimeTicks,
/// hundredths of a second) taken `elapsed` apart: the uptime went back, or the agent has
/// been up for less time than has passed since the previous sample (a restart followed by
/// more uptime than before). The tolerance (1 s plus 10 % of the interval) absorbs request
/// latency and clock drift. A sysUpTime wrap (after 497 days) looks like a restart and
/// costs one interval's rates.
pub fn agent_restarted(prev_ticks: u32, now_ticks: u32, elapsed: Duration) -> bool {
    if now_ticks < prev_ticks {
        return true;
    }
    let up = Duration::from_millis(u64::from(now_ticks) * 10);
    let slack = Duration::from_secs(1) + elapsed / 10;
    up + slack < elapsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_snmp::Oid;

    fn oid() -> Oid {
        Oid::parse("1.3.6.1.4.1.318.1.1.26.6.3.1.5.1").unwrap()
    }

    #[test]
    fn numeric_types_convert() {
        assert_eq!(to_number(&Value::Integer(-41), &oid(), false), Ok(Number::Plain(-41.0)));
        assert_eq!(to_number(&Value::Gauge32(228), &oid(), false), Ok(Number::Plain(228.0)));
        assert_eq!(to_number(&Value::Counter32(7), &oid(), false), Ok(Number::Counter32(7)));
        assert_eq!(to_number(&Value::Counter64(1 << 40), &oid(), false), Ok(Number::Counter64(1 << 40)));
        // Opaque-wrapped float (tag 0x9f78, 4 bytes): 23.5
        let opaque = Value::Opaque(vec![0x9f, 0x78, 0x04, 0x41, 0xbc, 0x00, 0x00].into());
        assert_eq!(to_number(&opaque, &oid(), false), Ok(Number::Plain(23.5)));
    }

    #[test]
    fn octet_string_numbers_need_the_flag() {
        let v = Value::OctetString(" 23.5 C".into());
        assert_eq!(to_number(&v, &oid(), true), Ok(Number::Plain(23.5)));
        let err = to_number(&v, &oid(), false).unwrap_err();
        assert!(err.contains("string_number"), "{err}");
        let junk = Value::OctetString("n/a".into());
        assert!(to_number(&junk, &oid(), true).is_err());
    }

    #[test]
    fn exceptions_say_what_and_where() {
        let e = to_number(&Value::NoSuchObject, &oid(), false).unwrap_err();
        assert!(e.starts_with("noSuchObject at 1.3.6.1.4.1.318.1.1.26.6.3.1.5.1"), "{e}");
        let e = to_number(&Value::NoSuchInstance, &oid(), false).unwrap_err();
        assert!(e.starts_with("noSuchInstance"), "{e}");
        let e = to_number(&Value::EndOfMibView, &oid(), false).unwrap_err();
        assert!(e.starts_with("endOfMibView"), "{e}");
        assert!(to_number(&Value::Null, &oid(), false).is_err());
    }

    #[test]
    fn entity_sensor_scale_and_precision() {
        // units(9), precision 1: 235 -> 23.5
        let f = entity_scale_factor(9).unwrap() * decimals_factor(1).unwrap();
        assert!((235.0 * f - 23.5).abs() < 1e-9);
        // milli(8), precision 0: 12500 mA -> 12.5 A
        assert!((12500.0 * entity_scale_factor(8).unwrap() - 12.5).abs() < 1e-9);
        // kilo(10): 3 kW -> 3000 W
        assert!((3.0 * entity_scale_factor(10).unwrap() - 3000.0).abs() < 1e-9);
        assert!(entity_scale_factor(0).is_err());
        assert!(decimals_factor(12).is_err());
        assert_eq!(to_si(235.0, signed_factor(-10), 1.0, 0.0), 23.5);
        assert_eq!(to_si(3.0, signed_factor(100), 1.0, 0.0), 300.0);
        assert_eq!((signed_factor(0), signed_factor(1), signed_factor(i64::MIN) > 0.0), (1.0, 1.0, true));
        // RFC 3433: a negative precision counts accurate digits; it does not scale.
        assert_eq!(decimals_factor(-2), Ok(1.0));
        assert_eq!(decimals_factor(0), Ok(1.0));
    }

    #[test]
    fn scaling_prints_like_the_vendor_means_it() {
        assert_eq!(to_si(212.0, 1.0, 0.1, 0.0), 21.2);
        assert_eq!(to_si(153.0, decimals_factor(2).unwrap(), 1.0, 0.0), 1.53);
        assert_eq!(to_si(4567.0, 1.0, 0.1, 0.0), 456.7);
        assert_eq!(to_si(57.0, 1.0, 10.0, 0.0), 570.0);
        assert_eq!(to_si(123456.0, 1.0, 0.001, 0.0), 123.456);
        assert_eq!(to_si(700.0, 1.0, 0.5, -40.0), 310.0);
    }

    #[test]
    fn rates_handle_wrap_and_reset() {
        let s = Duration::from_secs(10);
        assert_eq!(counter_rate(Number::Counter32(100), Number::Counter32(600), s), Some(50.0));
        // wrapped once
        assert_eq!(counter_rate(Number::Counter32(u32::MAX - 9), Number::Counter32(90), s), Some(10.0));
        assert_eq!(counter_rate(Number::Counter64(500), Number::Counter64(100), s), None);
        assert_eq!(counter_rate(Number::Counter64(1), Number::Counter64(2), Duration::ZERO), None);
    }

    #[test]
    fn a_reset_counter32_gives_no_rate_not_a_huge_one() {
        let s = Duration::from_secs(10);
        // Agent rebooted: the counter started again from zero.
        assert_eq!(counter_rate(Number::Counter32(1_000_000), Number::Counter32(500), s), None);
        assert_eq!(counter_rate(Number::Counter32(5), Number::Counter32(0), s), None);
        // A wrap just under half the range is still a wrap.
        assert_eq!(
            counter_rate(Number::Counter32(u32::MAX), Number::Counter32((1 << 31) - 2), s),
            Some(f64::from((1u32 << 31) - 1) / 10.0)
        );
    }

    #[test]
    fn agent_restart_is_seen_in_sys_up_time() {
        let min = Duration::from_secs(60);
        // Uptime advanced with the wall clock: no restart.
        assert!(!agent_restarted(100_000, 106_000, min));
        // Slightly less uptime than wall time (latency): no restart.
        assert!(!agent_restarted(100_000, 105_900, min));
        // Uptime went back.
        assert!(agent_restarted(100_000, 4_000, min));
        // Restarted 20 s ago after having been up for only 10 s: uptime is larger than
        // before but smaller than the time since the last sample.
        assert!(agent_restarted(1_000, 2_000, min));
    }
}
