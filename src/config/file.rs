//! The configuration file as written by a facility engineer (docs/contracts.md#configuration).
//!
//! These `*Config` types mirror the TOML one to one; every field is documented because this
//! is the user's reference. Values whose problems we want to report with a position (ids,
//! references, durations, sizes, addresses) are kept `Spanned` and checked in `validate`,
//! so that one run reports every mistake at once.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::profiles::ProfileConfig;

/// A duration string such as `"500ms"`, `"10s"`, `"5m"`, `"30d"`, with its position.
pub type DurationStr = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Who this gateway is.
    pub site: SiteConfig,
    /// Where the NOC's broker is. Required by `run`; `poll`, `replay` and `check-config` work without it.
    pub mqtt: Option<MqttConfig>,
    /// Local buffer while the uplink is down.
    #[serde(default)]
    pub store: StoreConfig,
    /// Log output for technicians.
    #[serde(default)]
    pub log: LogConfig,
    /// Defaults for every device's polling.
    #[serde(default)]
    pub polling: PollingConfig,
    /// Sensor zones of the data halls.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Rack facts the rules need, keyed by rack id (e.g. breaker ratings, thresholds).
    #[serde(default)]
    pub racks: BTreeMap<Spanned<String>, RackConfig>,
    /// The polled devices.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Site-wide thresholds per metric; built-in facility defaults apply where absent.
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, ThresholdConfig>,
    /// How breaches become incidents.
    #[serde(default)]
    pub correlation: CorrelationConfig,
    /// When recurring incidents become a pattern signal.
    #[serde(default)]
    pub patterns: PatternsConfig,
    /// Optional per-zone min/avg/max summaries.
    #[serde(default)]
    pub rollups: RollupsConfig,
    /// Agent health messages.
    #[serde(default)]
    pub health: HealthConfig,
    /// Device profiles defined inline, keyed by profile name.
    #[serde(default)]
    pub profiles: BTreeMap<Spanned<String>, ProfileConfig>,
    /// A directory of `*.toml` profile files (one profile per file, named after the file).
    /// Relative paths are relative to this config file.
    pub profiles_dir: Option<Spanned<String>>,
    /// The gateway pair (docs/ha-design.md): this gateway, its peer and the witness elect one
    /// active gateway. Without it this gateway runs alone, as before.
    pub ha: Option<HaConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// This gateway's name in the pair, `[a-z0-9_-]+`, different from the peer's.
    pub node: Spanned<String>,
    /// `IP:port` this gateway's end of the peer link listens on (the daemon's only listening
    /// socket); the peer and the witness do not connect here, the peer's node does.
    pub listen: Spanned<String>,
    /// `host:port` of the other gateway's `listen`.
    pub peer: Spanned<String>,
    /// `host:port` of the witness (`hallmonitor witness --listen`), on a third box on site.
    pub witness: Spanned<String>,
    /// File holding the pair's shared key (first line, at least 32 bytes; the same on both
    /// gateways and the witness). Install it 0640 root:hallmonitor.
    pub key_file: Spanned<String>,
    /// How long a voter's grant lasts. Takeover after the active dies takes about twice this
    /// (under 30 s with the default).
    #[serde(default = "default_ha_lease")]
    pub lease: DurationStr,
    /// The most any clock of the pair may run fast or slow, in percent (`"1%"`).
    #[serde(default = "default_ha_drift")]
    pub drift: Spanned<String>,
    /// How long before its lease ends the active stops starting polls and publishes: at least
    /// the longest device request timeout.
    #[serde(default = "default_ha_guard")]
    pub guard: DurationStr,
}

fn default_ha_lease() -> DurationStr {
    Spanned::new(0..0, "10s".to_owned())
}
fn default_ha_drift() -> Spanned<String> {
    Spanned::new(0..0, "1%".to_owned())
}
fn default_ha_guard() -> DurationStr {
    Spanned::new(0..0, "2s".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Site id, `[a-z0-9_-]+`; appears in every topic and id.
    pub id: Spanned<String>,
    /// ASHRAE allowable class of the IT equipment, `A1` (default) to `A4`: the critical
    /// inlet temperature bounds.
    pub ashrae_class: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS). Port defaults to 1883 / 8883.
    pub url: Spanned<String>,
    /// MQTT client id; must be unique on the broker. Defaults to `hallmonitor-<site>`.
    pub client_id: Option<String>,
    /// Topic prefix `P` of docs/contracts.md#topics: levels separated by `/`, none empty, no
    /// `+`, `#` or leading `$`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: Spanned<String>,
    /// Broker user name.
    pub username: Option<String>,
    /// File holding the broker password (first line). Install it 0640 root:hallmonitor; a
    /// file other users may access, or its group write, gets a warning.
    pub password_file: Option<Spanned<String>>,
    /// Environment variable holding the broker password.
    pub password_env: Option<Spanned<String>>,
    /// CA certificate(s) (PEM) to verify the broker with. Without it, the system roots are not
    /// used: an `mqtts://` URL then requires `ca_file`.
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert_file: Option<Spanned<String>>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key_file: Option<Spanned<String>>,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: DurationStr,
    /// Messages published but not yet acknowledged at most.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// Longest wait between reconnect attempts (exponential backoff with jitter up to this).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: DurationStr,
}

fn default_topic_prefix() -> Spanned<String> {
    Spanned::new(0..0, "hallmonitor/v1".to_owned())
}
fn default_keep_alive() -> DurationStr {
    Spanned::new(0..0, "30s".to_owned())
}
fn default_max_inflight() -> u16 {
    100
}
fn default_reconnect_max() -> DurationStr {
    Spanned::new(0..0, "60s".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the sled store (outbox and engine state).
    #[serde(default = "default_store_path")]
    pub path: String,
    /// Outbox bound, e.g. `"512MiB"`. At the bound the oldest rollups and health go first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: Spanned<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: default_store_path(), max_bytes: default_max_bytes() }
    }
}
fn default_store_path() -> String {
    "/var/lib/hallmonitor".to_owned()
}
fn default_max_bytes() -> Spanned<String> {
    Spanned::new(0..0, "512MiB".to_owned())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug`, `trace`, or a full `RUST_LOG`-style filter.
    /// `RUST_LOG` in the environment wins.
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingConfig {
    /// Default poll interval of a device.
    #[serde(default = "default_interval")]
    pub interval: DurationStr,
    /// Time allowed for one request before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Retries of a failed request within one poll.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failed polls after which a device is reported down.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            retries: default_retries(),
            down_after: default_down_after(),
        }
    }
}
fn default_interval() -> DurationStr {
    Spanned::new(0..0, "10s".to_owned())
}
fn default_timeout() -> DurationStr {
    Spanned::new(0..0, "2s".to_owned())
}
fn default_retries() -> u32 {
    1
}
fn default_down_after() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Zone id, `[a-z0-9_-]+`.
    pub id: Spanned<String>,
    /// Racks in this zone.
    #[serde(default)]
    pub racks: Vec<Spanned<String>>,
    /// Zones with overlapping sensor coverage; their incidents count toward this zone's patterns.
    #[serde(default)]
    pub adjacent: Vec<Spanned<String>>,
    /// Thresholds for this zone, overriding the site's per metric.
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, ThresholdConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RackConfig {
    /// Thresholds for devices in this rack, overriding zone and site per metric.
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, ThresholdConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id, unique in the site.
    pub id: Spanned<String>,
    /// Built-in profile name or one from `[profiles.*]` / `profiles_dir`.
    pub profile: Spanned<String>,
    /// Zone the device's readings belong to.
    pub zone: Spanned<String>,
    /// Rack the device sits in or measures (must be one of the zone's racks).
    pub rack: Option<Spanned<String>>,
    /// Poll interval; defaults to `[polling] interval`.
    pub interval: Option<DurationStr>,
    /// Request timeout; defaults to `[polling] timeout`.
    pub timeout: Option<DurationStr>,
    /// For a rack PDU: which feed it is, `"a"` or `"b"` (enables the A+B redundancy rule).
    pub feed: Option<Spanned<String>>,
    /// For a rack PDU: breaker rating of its branch circuit in amps (80 %/90 % rules).
    pub breaker_a: Option<Spanned<f64>>,
    /// Set to false to keep the device configured but not polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Thresholds for this device only, overriding rack, zone and site per metric.
    #[serde(default)]
    pub thresholds: BTreeMap<Spanned<String>, ThresholdConfig>,
    /// Modbus transport (TCP or RTU).
    pub modbus: Option<Spanned<ModbusDeviceConfig>>,
    /// SNMP transport.
    pub snmp: Option<Spanned<SnmpDeviceConfig>>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDeviceConfig {
    /// Modbus TCP `host:port` (port 502 if omitted).
    pub address: Option<Spanned<String>>,
    /// Serial port of an RS-485 bus for Modbus RTU, e.g. `/dev/ttyS1`.
    pub serial: Option<Spanned<String>>,
    /// RTU baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// RTU parity: `none`, `even` (default, the Modbus standard) or `odd`.
    #[serde(default = "default_parity")]
    pub parity: Spanned<String>,
    /// RTU data bits (7 or 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// RTU stop bits (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Quiet time between requests on one RTU bus.
    #[serde(default = "default_bus_spacing")]
    pub spacing: DurationStr,
    /// Unit id (slave address), 0..=247; 255 is common for TCP-only devices.
    #[serde(default = "default_unit")]
    pub unit: Spanned<i64>,
    /// Largest gap of unused registers merged into one block read.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Largest block read in registers (the protocol allows 125).
    #[serde(default = "default_max_block")]
    pub max_block: Spanned<u16>,
}

fn default_baud() -> u32 {
    19200
}
fn default_parity() -> Spanned<String> {
    Spanned::new(0..0, "even".to_owned())
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_bus_spacing() -> DurationStr {
    Spanned::new(0..0, "5ms".to_owned())
}
fn default_unit() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}
fn default_max_gap() -> u16 {
    10
}
fn default_max_block() -> Spanned<u16> {
    Spanned::new(0..0, 125)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpDeviceConfig {
    /// Agent `host:port` (port 161 if omitted).
    pub address: Spanned<String>,
    /// `"1"`, `"2c"` or `"3"`.
    #[serde(default = "default_snmp_version")]
    pub version: Spanned<String>,
    /// v1/v2c: file holding the community string (first line). v1/v2c need this or
    /// `community_env`: there is no default community.
    pub community_file: Option<Spanned<String>>,
    /// v1/v2c: environment variable holding the community string.
    pub community_env: Option<Spanned<String>>,
    /// v3 user name.
    pub user: Option<Spanned<String>>,
    /// v3 authentication protocol: `md5`, `sha1`, `sha224`, `sha256`, `sha384`, `sha512`.
    pub auth: Option<Spanned<String>>,
    /// v3 authentication password file.
    pub auth_password_file: Option<Spanned<String>>,
    /// v3 authentication password environment variable.
    pub auth_password_env: Option<Spanned<String>>,
    /// v3 privacy protocol: `des`, `aes128` (alias `aes`), `aes192`, `aes256`.
    #[serde(rename = "priv")]
    pub privacy: Option<Spanned<String>>,
    /// v3 privacy password file.
    pub priv_password_file: Option<Spanned<String>>,
    /// v3 privacy password environment variable.
    pub priv_password_env: Option<Spanned<String>>,
    /// OIDs per GET request at most (halved and remembered on tooBig).
    #[serde(default = "default_max_oids")]
    pub max_oids_per_request: u32,
    /// GETBULK max-repetitions for table walks at most (after the first walk, a walk asks
    /// for the rows the table had last time, and one walk in ten for one more).
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
}

fn default_snmp_version() -> Spanned<String> {
    Spanned::new(0..0, "2c".to_owned())
}
fn default_max_oids() -> u32 {
    32
}
fn default_max_repetitions() -> u32 {
    25
}

/// Limits for one metric. Any subset may be given; unset bounds do not apply.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Warning when the value rises above this.
    pub warn_high: Option<Spanned<f64>>,
    /// Critical when the value rises above this.
    pub crit_high: Option<Spanned<f64>>,
    /// Warning when the value falls below this.
    pub warn_low: Option<Spanned<f64>>,
    /// Critical when the value falls below this.
    pub crit_low: Option<Spanned<f64>>,
    /// Distance back inside a bound before a breach clears (no flapping at the line).
    pub hysteresis: Option<Spanned<f64>>,
    /// How long a bound must be exceeded before it is a breach.
    #[serde(rename = "for")]
    pub hold_for: Option<DurationStr>,
    /// Rate-of-change rule: warning when the value rises by more than this many units ...
    pub rise: Option<Spanned<f64>>,
    /// ... within this window (e.g. `rise = 3.0`, `rise_within = "5m"`).
    pub rise_within: Option<DurationStr>,
    /// For current metrics: warning at this fraction of the device's `breaker_a` (default 0.8).
    pub breaker_warn: Option<Spanned<f64>>,
    /// For current metrics: critical at this fraction of the device's `breaker_a` (default 0.9).
    pub breaker_crit: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationConfig {
    /// All members clear this long -> incident resolved.
    #[serde(default = "default_clear_hold")]
    pub clear_hold: DurationStr,
    /// Rate limit for updates that do not change severity.
    #[serde(default = "default_update_min_interval")]
    pub update_min_interval: DurationStr,
    /// Window of the PDU load baseline the thermal context compares against.
    #[serde(default = "default_baseline_window")]
    pub baseline_window: DurationStr,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            clear_hold: default_clear_hold(),
            update_min_interval: default_update_min_interval(),
            baseline_window: default_baseline_window(),
        }
    }
}
fn default_clear_hold() -> DurationStr {
    Spanned::new(0..0, "5m".to_owned())
}
fn default_update_min_interval() -> DurationStr {
    Spanned::new(0..0, "60s".to_owned())
}
fn default_baseline_window() -> DurationStr {
    Spanned::new(0..0, "7d".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternsConfig {
    /// Incidents of one category in one zone (and adjacent zones) ...
    #[serde(default = "default_recurrence")]
    pub recurrence: Spanned<i64>,
    /// ... within this rolling window -> pattern signal.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// An incident still active this long, or critical, is a problem on its own.
    #[serde(default = "default_major_after")]
    pub major_after: DurationStr,
    /// A device unreachable this long (a comms incident) is a problem on its own.
    #[serde(default = "default_unreachable_major_after")]
    pub unreachable_major_after: DurationStr,
}

impl Default for PatternsConfig {
    fn default() -> Self {
        Self {
            recurrence: default_recurrence(),
            window: default_window(),
            major_after: default_major_after(),
            unreachable_major_after: default_unreachable_major_after(),
        }
    }
}
fn default_recurrence() -> Spanned<i64> {
    Spanned::new(0..0, 3)
}
fn default_window() -> DurationStr {
    Spanned::new(0..0, "30d".to_owned())
}
fn default_major_after() -> DurationStr {
    Spanned::new(0..0, "8h".to_owned())
}
fn default_unreachable_major_after() -> DurationStr {
    Spanned::new(0..0, "24h".to_owned())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollupsConfig {
    /// Per-zone min/avg/max per metric every this long; off when absent.
    pub interval: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// How often the agent publishes `P/S/health`.
    #[serde(default = "default_health_interval")]
    pub interval: DurationStr,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval: default_health_interval() }
    }
}
fn default_health_interval() -> DurationStr {
    Spanned::new(0..0, "60s".to_owned())
}
