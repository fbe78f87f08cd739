//! Shared model types that flow between pipeline stages: ids, timestamps and `Reading`.
//!
//! Every stage may use these; none of them does IO. Ids are cheap to clone (`ArcStr`)
//! because a reading carries several of them and thousands of readings flow per second.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcstr::ArcStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub ArcStr);

        impl $name {
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(ArcStr::from(s.as_ref()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A site (one gateway's scope), e.g. `fra1`.
    SiteId
);
id_type!(
    /// A configured device, e.g. `pdu-b07-a`.
    DeviceId
);
id_type!(
    /// A sensor zone of a data hall, e.g. `hall1-b`.
    ZoneId
);
id_type!(
    /// A rack position, e.g. `B07`.
    RackId
);
id_type!(
    /// A metric name with its SI unit in the name, e.g. `inlet_temp_c`.
    Metric
);
id_type!(
    /// A point of a device profile, e.g. `sensor_temp`.
    PointId
);

/// Wall-clock time as milliseconds since the Unix epoch (UTC).
///
/// The engine uses this as its only notion of time: it is handed in, never read, so a
/// recorded month replays in milliseconds. Serialized as RFC 3339 UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MS_PER_HOUR: i64 = 3_600_000;
    pub const MS_PER_DAY: i64 = 86_400_000;

    /// Reads the system clock. Only the IO shell calls this.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis().min(i64::MAX as u128) as i64))
    }
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64))
    }
    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
    /// Hour of the day (0..24) in UTC.
    pub fn hour_utc(self) -> u32 {
        self.0.rem_euclid(Self::MS_PER_DAY).div_euclid(Self::MS_PER_HOUR) as u32
    }
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }
    /// RFC 3339 UTC, with milliseconds only when they are not zero.
    pub fn to_rfc3339(self) -> String {
        let st = self.to_system_time();
        if self.0.rem_euclid(1000) == 0 {
            humantime::format_rfc3339_seconds(st).to_string()
        } else {
            humantime::format_rfc3339_millis(st).to_string()
        }
    }
    pub fn parse_rfc3339(s: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(s).map(Self::from)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(d.as_millis().min(i64::MAX as u128) as i64),
            Err(e) => Self(-(e.duration().as_millis().min(i64::MAX as u128) as i64)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}: {e}")))
    }
}

/// Whether a reading holds a value the device vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Good,
    Bad,
}

/// One value of one point of one device at one time; the unit of data between sources and
/// the engine. A failed poll produces readings with `Quality::Bad`, never silence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub at: Timestamp,
    pub device: DeviceId,
    pub point: PointId,
    pub metric: Metric,
    /// `None` exactly when `quality` is bad.
    pub value: Option<f64>,
    pub unit: ArcStr,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    /// Names a table row (an outlet, a phase, a probe) when the point is a table column.
    #[serde(default)]
    pub label: Option<ArcStr>,
    pub quality: Quality,
    /// Why the reading is bad (timeout, exception, noSuchInstance...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ArcStr>,
}

/// Incident categories (docs/contracts.md#names). Closed: the NOC routes on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Thermal,
    Humidity,
    Power,
    Cooling,
    Comms,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Thermal => "thermal",
            Category::Humidity => "humidity",
            Category::Power => "power",
            Category::Cooling => "cooling",
            Category::Comms => "comms",
        }
    }

    /// The category a metric's breaches belong to, `None` for metrics that never raise.
    pub fn of_metric(metric: &str) -> Option<Category> {
        Some(match metric {
            "inlet_temp_c" | "outlet_temp_c" | "dew_point_c" | "supply_air_temp_c" | "return_air_temp_c" => {
                Category::Thermal
            }
            "humidity_pct" => Category::Humidity,
            // UPS and transfer-switch states and loads (UPS-MIB, PowerNet ATS): power incidents.
            "ups_on_battery"
            | "ups_on_bypass"
            | "ups_battery_low"
            | "ups_alarms"
            | "battery_charge_pct"
            | "runtime_min"
            | "battery_temp_c"
            | "load_pct"
            | "frequency_hz"
            | "ats_redundancy_lost"
            | "ats_source_failed" => Category::Power,
            "phase_current_a" | "outlet_current_a" | "voltage_v" | "power_w" | "feed_load_pct" => Category::Power,
            "alarm"
            | "fan_speed_pct"
            | "cooling_alarms"
            | "leak_detected"
            | "entering_fluid_temp_c"
            | "leaving_fluid_temp_c" => Category::Cooling,
            m if m.ends_with("_temp_c") => Category::Thermal,
            m if m.ends_with("_current_a") => Category::Power,
            _ => return None,
        })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Breach severity; ordered so that `max` gives the worse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// A duration as every message, log line and report prints it: its largest unit, plus the
/// next one when that is not zero (`30d`, `5m`, `1m 30s`, `3d 4h`); below a second in
/// milliseconds (`250ms`). From a second up, fractions of a second are dropped: they are noise
/// in an age or a span measured between two timestamps. The text reads back as a config duration.
pub fn humane_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let secs = d.as_secs();
    // An invariant, not input: `secs >= 1` here, and the last unit is 1, so one unit fits.
    let first = UNITS.iter().position(|(size, _)| secs >= *size).unwrap_or(UNITS.len() - 1);
    let (size, unit) = UNITS[first];
    let mut text = format!("{}{unit}", secs / size);
    if let Some((next_size, next_unit)) = UNITS.get(first + 1) {
        let n = secs % size / next_size;
        if n > 0 {
            text.push_str(&format!(" {n}{next_unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: UPS and ATS states are power incidents; a hot battery or chilled water is
    /// not a hall thermal incident.
    #[test]
    fn ups_ats_and_cooler_metrics_have_their_category() {
        for m in ["ups_on_battery", "ups_on_bypass", "ups_battery_low", "load_pct", "battery_temp_c"] {
            assert_eq!(Category::of_metric(m), Some(Category::Power), "{m}");
        }
        assert_eq!(Category::of_metric("ats_redundancy_lost"), Some(Category::Power));
        for m in ["leak_detected", "cooling_alarms", "entering_fluid_temp_c", "leaving_fluid_temp_c"] {
            assert_eq!(Category::of_metric(m), Some(Category::Cooling), "{m}");
        }
        assert_eq!(Category::of_metric("inlet_temp_c"), Some(Category::Thermal));
        assert_eq!(Category::of_metric("ups_output_source"), None);
    }

    #[test]
    fn durations_print_in_at_most_two_units() {
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_micros(300), "0ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s"),
            (Duration::from_secs(4), "4s"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(12 * 60 + 3), "12m 3s"),
            (Duration::from_secs(3600 + 9), "1h"),
            (Duration::from_secs(3600 + 12 * 60 + 9), "1h 12m"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600 + 5), "3d 4h"),
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_secs(u64::MAX), "213503982334601d 7h"),
        ];
        for (d, text) in cases {
            assert_eq!(humane_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn humane_durations_read_back_as_config_durations() {
        for text in ["250ms", "2s", "1m 30s", "3d 4h", "30d", "7d", "5m"] {
            let d = humantime::parse_duration(text).unwrap();
            assert_eq!(humane_duration(d), text);
        }
    }

    #[test]
    fn timestamp_round_trips_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-11-02T14:05:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-02T14:05:00Z");
        assert_eq!(t.hour_utc(), 14);
        let t2 = Timestamp(t.0 + 250);
        assert_eq!(t2.to_rfc3339(), "2026-11-02T14:05:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339(&t2.to_rfc3339()).unwrap(), t2);
    }

    #[test]
    fn reading_json_matches_the_documented_example() {
        // The example of docs/contracts.md#readings.
        let line = r#"{"at":"2026-11-02T14:05:00Z","device":"pdu-b07-a","point":"sensor_temp","metric":"inlet_temp_c","value":28.4,"unit":"°C","zone":"hall1-b","rack":"B07","label":null,"quality":"good"}"#;
        let r: Reading = serde_json::from_str(line).unwrap();
        assert_eq!(r.device.as_str(), "pdu-b07-a");
        assert_eq!(r.value, Some(28.4));
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
    }
}
