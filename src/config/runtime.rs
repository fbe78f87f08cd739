//! Validated, runtime configuration: what the stages are built from.
//!
//! Everything here has been checked; durations and sizes are numbers, references resolve,
//! secrets have been read. Nothing here keeps a `*Config` or a span.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::broker::BrokerUrl;
use crate::model::{DeviceId, Metric, RackId, SiteId, ZoneId};
use crate::profiles::Profile;

/// A secret read from a file or the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (for messages and reload).
    pub path: PathBuf,
    pub site: SiteId,
    pub mqtt: Option<MqttSettings>,
    pub store: StoreSettings,
    pub log_level: Option<String>,
    pub zones: Vec<Zone>,
    pub devices: Vec<DeviceSpec>,
    pub engine: EngineSettings,
    pub health_interval: Duration,
    /// The gateway pair, when `[ha]` is configured.
    pub ha: Option<HaSettings>,
}

/// `[ha]`, checked: the lease timing leaves room for a lost renewal (as
/// `ha::lease::LeaseParams::new` requires) and the guard covers the longest device request.
#[derive(Debug, Clone)]
pub struct HaSettings {
    pub node: String,
    pub listen: std::net::SocketAddr,
    /// `host:port`, resolved at each connection attempt.
    pub peer: String,
    pub witness: String,
    pub key_file: PathBuf,
    /// The key's bytes (at least 32); never logged.
    pub key: Secret,
    pub lease: Duration,
    pub drift_ppm: u32,
    pub guard: Duration,
}

/// The shortest shared key of the pair (as `ha::link::MIN_KEY_LEN`, which refuses shorter).
pub const HA_MIN_KEY_LEN: usize = 32;

impl HaSettings {
    /// The rule of `ha::lease::LeaseParams::new`, checked here so a config error can name the
    /// position (config sits below `ha`; a test in `agent::ha` holds the two to the same
    /// answers): a holder's span `lease (1 − ρ) / (1 + ρ) − guard` must exceed two renew
    /// periods (`lease / 3` each), so one lost renewal does not fence it.
    pub fn check_timing(lease: Duration, drift_ppm: u32, guard: Duration) -> Result<(), String> {
        if drift_ppm > 100_000 {
            return Err(format!("drift {drift_ppm} ppm is too large: at most 10 %"));
        }
        let million = 1_000_000u128;
        let span = lease.as_nanos() * (million - u128::from(drift_ppm)) / (million + u128::from(drift_ppm));
        let span = Duration::from_nanos(u64::try_from(span).unwrap_or(u64::MAX)).saturating_sub(guard);
        let renew = lease / 3;
        if span <= renew * 2 {
            return Err(format!(
                "lease {} with drift {} ppm and guard {} leaves the active {}ms per grant: it needs more than two \
                 renew periods ({}ms each, a third of the lease); lengthen the lease or shorten the guard",
                crate::model::humane_duration(lease),
                drift_ppm,
                crate::model::humane_duration(guard),
                span.as_millis(),
                renew.as_millis()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    pub max_inflight: u16,
    pub reconnect_max: Duration,
}

impl MqttSettings {
    /// The broker as a URL, `mqtt[s]://host:port`: how messages and the summary name it.
    pub fn broker(&self) -> BrokerUrl {
        BrokerUrl { tls: self.tls, host: self.host.clone(), port: self.port }
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: ZoneId,
    pub racks: Vec<RackId>,
    pub adjacent: Vec<ZoneId>,
}

/// One polled device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: DeviceId,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub down_after: u32,
    pub profile: Profile,
    pub transport: Transport,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub enum Transport {
    ModbusTcp { address: String, unit: u8, blocks: BlockLimits },
    ModbusRtu { serial: SerialSettings, unit: u8, blocks: BlockLimits },
    Snmp(SnmpSettings),
}

impl Transport {
    pub fn protocol(&self) -> &'static str {
        match self {
            Transport::ModbusTcp { .. } | Transport::ModbusRtu { .. } => "modbus",
            Transport::Snmp(_) => "snmp",
        }
    }
    /// Where a technician would look: `10.0.0.5:502 unit 3`, `/dev/ttyS1 unit 7`, `10.0.0.9:161`.
    pub fn describe(&self) -> String {
        match self {
            Transport::ModbusTcp { address, unit, .. } => format!("{address} unit {unit}"),
            Transport::ModbusRtu { serial, unit, .. } => format!("{} unit {unit}", serial.path),
            Transport::Snmp(s) => s.address.clone(),
        }
    }
}

/// How a Modbus device's points are coalesced into block reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    pub max_gap: u16,
    pub max_block: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    pub path: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Quiet time between requests on the bus.
    pub spacing: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone)]
pub struct SnmpSettings {
    pub address: String,
    pub version: SnmpVersion,
    /// v1/v2c community (defaults to "public" only when no file or env is given).
    pub community: Secret,
    pub v3: Option<SnmpV3>,
    pub max_oids_per_request: u32,
    pub max_repetitions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnmpVersion {
    V1,
    V2c,
    V3,
}

impl SnmpVersion {
    /// The names `from_name` accepts, for messages and help.
    pub const NAMES: &'static str = "1, 2c or 3";

    /// The version a config file or command line names (`2` is `2c`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "1" => Self::V1,
            "2c" | "2" => Self::V2c,
            "3" => Self::V3,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SnmpV3 {
    pub user: String,
    pub auth: Option<(AuthProtocol, Secret)>,
    pub privacy: Option<(PrivProtocol, Secret)>,
}

/// What an SNMPv3 `auth` and `priv` protocol have alike: the key they set (the config field,
/// the probe option and the password setting are named after it), their names, a weak one.
pub trait V3Protocol: Copy + Sized {
    /// `auth` or `priv`.
    const KEY: &'static str;
    /// The names `from_name` accepts, for messages and help.
    const NAMES: &'static str;
    /// What to suggest instead of a weak protocol.
    const STRONGER: &'static str;
    /// The protocol a config file or command line names (any case).
    fn from_name(name: &str) -> Option<Self>;
    /// Broken enough that a technician should hear about it (still accepted for old devices).
    fn is_weak(self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl V3Protocol for AuthProtocol {
    const KEY: &'static str = "auth";
    const NAMES: &'static str = "md5, sha1, sha224, sha256, sha384 or sha512";
    const STRONGER: &'static str = "sha256";

    /// `sha` is `sha1`.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => Self::Md5,
            "sha" | "sha1" => Self::Sha1,
            "sha224" => Self::Sha224,
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }

    fn is_weak(self) -> bool {
        self == Self::Md5
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    Des,
    Aes128,
    Aes192,
    Aes256,
}

impl V3Protocol for PrivProtocol {
    const KEY: &'static str = "priv";
    const NAMES: &'static str = "des, aes128 (or aes), aes192 or aes256";
    const STRONGER: &'static str = "aes128";

    /// `aes` is `aes128`.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "des" => Self::Des,
            "aes" | "aes128" => Self::Aes128,
            "aes192" => Self::Aes192,
            "aes256" => Self::Aes256,
            _ => return None,
        })
    }

    fn is_weak(self) -> bool {
        self == Self::Des
    }
}

/// Which feed of a dual-fed rack a PDU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feed {
    A,
    B,
}

/// What the engine needs to know about a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMeta {
    pub id: DeviceId,
    pub zone: ZoneId,
    pub rack: Option<RackId>,
    pub feed: Option<Feed>,
    /// Branch-circuit breaker rating in amps.
    pub breaker_a: Option<f64>,
    /// A CRAH/CRAC: its alarms are the probable cause of its zone's thermal incidents.
    pub is_cooling_unit: bool,
}

/// Everything the sans-IO engine is configured with.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub site: SiteId,
    pub zones: Vec<Zone>,
    pub devices: Vec<DeviceMeta>,
    pub thresholds: ThresholdRules,
    /// Consecutive bad readings of a device before it is a comms breach.
    pub down_after: u32,
    pub clear_hold: Duration,
    pub update_min_interval: Duration,
    pub baseline_window: Duration,
    pub recurrence: u32,
    pub window: Duration,
    /// An active incident this long (or critical) raises a `major_incident` pattern.
    pub major_after: Duration,
    /// The same for a comms incident (devices unreachable): longer, a dark device is common.
    pub unreachable_major_after: Duration,
    pub rollup_interval: Option<Duration>,
}

/// Limits for one metric, as resolved for one device (defaults < site < zone < rack < device).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub warn_high: Option<f64>,
    pub crit_high: Option<f64>,
    pub warn_low: Option<f64>,
    pub crit_low: Option<f64>,
    pub hysteresis: f64,
    pub hold_for: Duration,
    /// Rate-of-change rule: rise of more than `.0` units within `.1`.
    pub rise: Option<(f64, Duration)>,
    /// Fractions of the device's breaker rating for current metrics.
    pub breaker_warn: f64,
    pub breaker_crit: f64,
}

/// A partial threshold as given at one level; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdLayer {
    pub warn_high: Option<f64>,
    pub crit_high: Option<f64>,
    pub warn_low: Option<f64>,
    pub crit_low: Option<f64>,
    pub hysteresis: Option<f64>,
    pub hold_for: Option<Duration>,
    pub rise: Option<(f64, Duration)>,
    pub breaker_warn: Option<f64>,
    pub breaker_crit: Option<f64>,
}

impl ThresholdLayer {
    fn apply_to(&self, t: &mut Threshold) {
        macro_rules! take {
            ($($f:ident),*) => { $( if self.$f.is_some() { t.$f = self.$f; } )* };
        }
        take!(warn_high, crit_high, warn_low, crit_low, rise);
        if let Some(h) = self.hysteresis {
            t.hysteresis = h;
        }
        if let Some(d) = self.hold_for {
            t.hold_for = d;
        }
        if let Some(w) = self.breaker_warn {
            t.breaker_warn = w;
        }
        if let Some(c) = self.breaker_crit {
            t.breaker_crit = c;
        }
    }
}

type Layers = HashMap<Metric, ThresholdLayer>;

/// ASHRAE equipment class (thermal guidelines for data processing environments): it sets
/// the allowable inlet temperature range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AshraeClass {
    #[default]
    A1,
    A2,
    A3,
    A4,
}

impl AshraeClass {
    /// `A1`..`A4` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "A1" => Some(Self::A1),
            "A2" => Some(Self::A2),
            "A3" => Some(Self::A3),
            "A4" => Some(Self::A4),
            _ => None,
        }
    }

    /// Allowable inlet temperature range, °C.
    pub fn allowable_c(self) -> (f64, f64) {
        match self {
            Self::A1 => (15.0, 32.0),
            Self::A2 => (10.0, 35.0),
            Self::A3 => (5.0, 40.0),
            Self::A4 => (5.0, 45.0),
        }
    }
}

/// Thresholds at every level; `resolve` merges them for one device and metric.
#[derive(Debug, Clone, Default)]
pub struct ThresholdRules {
    pub defaults: Layers,
    pub site: Layers,
    pub zones: HashMap<ZoneId, Layers>,
    pub racks: HashMap<RackId, Layers>,
    pub devices: HashMap<DeviceId, Layers>,
}

impl ThresholdRules {
    /// Facility-aware defaults for ASHRAE class A1; see `for_ashrae_class`.
    pub fn with_facility_defaults() -> Self {
        Self::for_ashrae_class(AshraeClass::A1)
    }

    /// Facility-aware defaults: ASHRAE thermal envelope (recommended 18–27 °C as warning,
    /// the class's allowable range as critical, a rise of more than 20 °C within an hour as
    /// a warning), recommended dew point −9..15 °C, A1 allowable humidity 8–80 %RH, a UPS on
    /// battery or with a low battery and an ATS that lost redundancy as critical, a UPS on
    /// bypass as a warning, UPS load over 80 % warning and 90 % critical. Current metrics get
    /// the breaker rules through `breaker_*`.
    pub fn for_ashrae_class(class: AshraeClass) -> Self {
        let mut defaults = Layers::new();
        let (low, high) = class.allowable_c();
        let temp = ThresholdLayer {
            warn_high: Some(27.0),
            crit_high: Some(high),
            warn_low: Some(18.0),
            crit_low: Some(low),
            rise: Some((20.0, Duration::from_secs(3600))),
            ..Default::default()
        };
        defaults.insert(Metric::new("inlet_temp_c"), temp);
        defaults.insert(
            Metric::new("dew_point_c"),
            ThresholdLayer { warn_high: Some(15.0), warn_low: Some(-9.0), crit_high: Some(17.0), ..Default::default() },
        );
        defaults.insert(
            Metric::new("humidity_pct"),
            ThresholdLayer {
                warn_high: Some(70.0),
                crit_high: Some(80.0),
                warn_low: Some(20.0),
                crit_low: Some(8.0),
                hysteresis: Some(2.0),
                ..Default::default()
            },
        );
        // A CRAH alarm bit: any non-zero value is a critical cooling breach.
        defaults.insert(
            Metric::new("alarm"),
            ThresholdLayer {
                crit_high: Some(0.5),
                hysteresis: Some(0.0),
                hold_for: Some(Duration::ZERO),
                ..Default::default()
            },
        );
        // UPS and ATS states (0/1 flags): on battery, low battery and a lost ATS source are
        // critical at once; a UPS on bypass (its load unprotected) is a warning.
        for (metric, warn, crit) in [
            ("ups_on_battery", None, Some(0.5)),
            ("ups_battery_low", None, Some(0.5)),
            ("ats_redundancy_lost", None, Some(0.5)),
            ("ups_on_bypass", Some(0.5), None),
        ] {
            let flag = ThresholdLayer {
                warn_high: warn,
                crit_high: crit,
                hysteresis: Some(0.0),
                hold_for: Some(Duration::ZERO),
                ..Default::default()
            };
            defaults.insert(Metric::new(metric), flag);
        }
        // UPS output load, % of its capacity.
        defaults.insert(
            Metric::new("load_pct"),
            ThresholdLayer {
                warn_high: Some(80.0),
                crit_high: Some(90.0),
                hysteresis: Some(2.0),
                ..Default::default()
            },
        );
        Self { defaults, ..Default::default() }
    }

    /// The merged threshold for `metric` on a device, `None` if no level sets any bound and
    /// the metric has no breaker rule.
    pub fn resolve(
        &self,
        metric: &Metric,
        zone: &ZoneId,
        rack: Option<&RackId>,
        device: &DeviceId,
    ) -> Option<Threshold> {
        let mut t = Threshold {
            warn_high: None,
            crit_high: None,
            warn_low: None,
            crit_low: None,
            hysteresis: 0.5,
            hold_for: Duration::from_secs(60),
            rise: None,
            breaker_warn: 0.8,
            breaker_crit: 0.9,
        };
        let mut any = false;
        let levels = [
            Some(&self.defaults),
            Some(&self.site),
            self.zones.get(zone),
            rack.and_then(|r| self.racks.get(r)),
            self.devices.get(device),
        ];
        for layer in levels.into_iter().flatten().filter_map(|l| l.get(metric)) {
            layer.apply_to(&mut t);
            any = true;
        }
        let bounded = t.warn_high.is_some()
            || t.crit_high.is_some()
            || t.warn_low.is_some()
            || t.crit_low.is_some()
            || t.rise.is_some();
        (any && bounded).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_field_by_field() {
        let mut rules = ThresholdRules::with_facility_defaults();
        let m = Metric::new("inlet_temp_c");
        let zone = ZoneId::new("z1");
        let dev = DeviceId::new("d1");
        rules.zones.insert(
            zone.clone(),
            HashMap::from([(m.clone(), ThresholdLayer { crit_high: Some(30.0), ..Default::default() })]),
        );
        rules.devices.insert(
            dev.clone(),
            HashMap::from([(m.clone(), ThresholdLayer { hysteresis: Some(1.0), ..Default::default() })]),
        );
        let t = rules.resolve(&m, &zone, None, &dev).unwrap();
        assert_eq!(t.warn_high, Some(27.0));
        assert_eq!(t.crit_high, Some(30.0));
        assert_eq!(t.hysteresis, 1.0);
        assert!(rules.resolve(&Metric::new("fan_speed_pct"), &zone, None, &dev).is_none());
    }
}
