//! Device profiles: which registers or OIDs of a device model hold which points.
//!
//! A profile is data. Built-in ones are TOML files compiled into the binary (`builtin/`),
//! each citing its source; users add their own under `[profiles.NAME]` or in a profiles
//! directory, in the same format. `ProfileConfig` is that format; `build` checks it and
//! produces the runtime `Profile` the sources poll with.

pub mod modbus;
pub mod recognize;
pub mod snmp;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arcstr::ArcStr;
use serde::Deserialize;
use toml::Spanned;

pub use modbus::{ModbusPoint, ModbusProfile};
pub use snmp::{SnmpPoint, SnmpProfile};

/// A profile as written in TOML (built-in, `[profiles.NAME]` or a profiles-directory file).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `"modbus"` or `"snmp"`.
    pub protocol: Spanned<String>,
    /// What device model(s) this profile is for.
    pub description: Option<String>,
    /// Where the register map or MIB came from (manual, MIB file and revision).
    pub source: Option<String>,
    /// Set when the map could not be checked point by point against its public source:
    /// why not. `check-config` prints it next to every device using the profile.
    pub unverified: Option<String>,
    /// Modbus only: `"zero-based"` (addresses as sent on the wire, the default) or
    /// `"one-based"` (addresses as printed in many manuals: register 1 is wire address 0).
    pub addressing: Option<Spanned<String>>,
    /// SNMP, for `discover`: sysObjectID prefixes of the models this profile fits (numeric,
    /// e.g. `"1.3.6.1.4.1.318.1.3.4"`), each as its MIB declares it.
    #[serde(default)]
    pub sys_object_ids: Vec<Spanned<String>>,
    /// SNMP, for `discover`: an OID the device must have something under for the profile to
    /// fit: a scalar object without its instance (e.g. `1.3.6.1.2.1.33.1.1.1`,
    /// upsIdentManufacturer) or a table column (any row). Used alone (generic MIBs, tried
    /// last), or to confirm a `sys_object_ids` match and choose between matches.
    pub probe_oid: Option<Spanned<String>>,
    /// Modbus, for `discover`: VendorName the device reports in Read Device Identification
    /// (function 43/14), compared case-insensitively as a prefix.
    pub modbus_vendor: Option<Spanned<String>>,
    /// Modbus, for `discover`: ProductCode prefixes (Read Device Identification) this
    /// profile fits, compared case-insensitively; empty means any product of
    /// `modbus_vendor`. When several profiles fit, the longest matching prefix wins.
    #[serde(default)]
    pub modbus_product_codes: Vec<Spanned<String>>,
    /// The points this device model exposes.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

/// One point of a profile. Modbus points use `table`/`address`/`type`; SNMP points use
/// `oid` (a scalar) or `column` (one reading per table row).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Point name, unique in the profile, e.g. `supply_air_temp`.
    pub name: Spanned<String>,
    /// Metric with its SI unit in the name, e.g. `inlet_temp_c`.
    pub metric: Spanned<String>,
    /// Unit of the value after scaling; derived from the metric name when omitted (`_c` °C,
    /// `_pct` %, `_a` A, `_v` V, `_w` W, `_kw` kW, `_kwh` kWh, `_va` VA, `_hz` Hz, `_s` s,
    /// `_h` h, `_min` min, `_rpm` rpm, `_pa` Pa, `_lpm` L/min, `_m3h` m³/h).
    pub unit: Option<String>,
    /// Multiply the raw value by this (e.g. 0.1 for tenths).
    #[serde(default = "one")]
    pub scale: f64,
    /// Then add this.
    #[serde(default)]
    pub offset: f64,
    /// Only some models of the family have this point. When the device lacks it (SNMP
    /// noSuchObject/noSuchInstance/endOfMibView or a table without rows, Modbus "illegal
    /// data address"), it is reported once as not present and then left out, instead of
    /// a bad reading every poll. It is looked for again after the device was unreachable
    /// and on every restart or reload.
    #[serde(default)]
    pub optional: bool,

    /// Modbus: `holding` (default), `input`, `coil` or `discrete`.
    pub table: Option<Spanned<String>>,
    /// Modbus: register or bit address (see the profile's `addressing`).
    pub address: Option<Spanned<i64>>,
    /// Modbus: `u16` (default), `i16`, `u32`, `i32`, `u64`, `f32`, `f64`, or `bool` for coils.
    #[serde(rename = "type")]
    pub value_type: Option<Spanned<String>>,
    /// Modbus: order of 16-bit words in multi-register values: `big` (default) or `little`.
    pub word_order: Option<Spanned<String>>,
    /// Modbus: swap the two bytes inside each register.
    #[serde(default)]
    pub byte_swap: bool,
    /// Modbus: read one bit (0 = least significant) of a register as 0/1, for alarm words.
    pub bit: Option<Spanned<i64>>,

    /// SNMP: OID of a scalar, numeric dotted form (`1.3.6.1...`, instance included).
    pub oid: Option<Spanned<String>>,
    /// SNMP: OID of a table column; every row becomes a reading.
    pub column: Option<Spanned<String>>,
    /// SNMP: column whose value names each row (outlet or sensor name) -> reading `label`.
    pub label_column: Option<Spanned<String>>,
    /// SNMP: only rows whose index is in this list (e.g. `["1"]`).
    #[serde(default)]
    pub rows: Vec<String>,
    /// SNMP: report a counter as a per-second rate instead of its raw value.
    #[serde(default)]
    pub rate: bool,
    /// SNMP: column with a power-of-ten exponent to apply per row (ENTITY-SENSOR-MIB
    /// entPhySensorScale, in SI prefix units: 9 = units, 8 = milli...).
    pub scale_column: Option<Spanned<String>>,
    /// SNMP: column with the number of decimal digits per row (ENTITY-SENSOR precision,
    /// Raritan `*DecimalDigits`): value / 10^digits.
    pub decimals_column: Option<Spanned<String>>,
    /// SNMP: the value is an OCTET STRING holding a decimal number (e.g. "23.5").
    #[serde(default)]
    pub string_number: bool,
    /// SNMP: only rows whose index ends with these arcs (e.g. `"1"` for the rmsCurrent rows
    /// of Raritan's per-sensor-type tables). The label column is looked up with the row
    /// index minus this suffix.
    pub index_suffix: Option<Spanned<String>>,
    /// SNMP: column whose integer value selects rows (e.g. ENTITY-SENSOR entPhySensorType);
    /// only rows whose value is in `filter_values` become readings.
    pub filter_column: Option<Spanned<String>>,
    /// SNMP: accepted values of `filter_column` (e.g. `[8]` for celsius).
    #[serde(default)]
    pub filter_values: Vec<i64>,
    /// SNMP: label for rows without a `label_column`: this prefix plus the row index
    /// (e.g. `"phase-"` gives `phase-1`). Without either, the label is the row index.
    pub label_prefix: Option<String>,
    /// SNMP: read an enumeration as a 0/1 flag: the reading is 1 when the raw value is one
    /// of these, else 0 (e.g. `[5]` on UPS-MIB upsOutputSource: battery(5)), so that a
    /// threshold at 0.5 raises on that state. `scale` and `offset` do not apply.
    #[serde(default)]
    pub flag_values: Vec<i64>,
    /// SNMP: column whose text names what each row is (e.g. Rittal CMC III cmcIIIVarName);
    /// only rows whose text is one of `select_values` become readings.
    pub select_column: Option<Spanned<String>>,
    /// SNMP: accepted texts of `select_column`, compared exactly (e.g. `["Temperature.Value"]`,
    /// which leaves out "System.Temperature.Value").
    #[serde(default)]
    pub select_values: Vec<String>,
    /// SNMP: column with a signed per-row factor (Rittal CMC III cmcIIIVarScale): negative
    /// -N divides the raw value by N, positive N multiplies it by N, 0 leaves it.
    pub scale_sign_column: Option<Spanned<String>>,
}

/// The profile files of a profiles directory (`*.toml`), sorted, so every reader (the
/// config, `discover snmp`, `discover modbus`) sees the same profiles in the same order.
pub fn profile_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn one() -> f64 {
    1.0
}

/// A built, checked profile ready to poll with.
#[derive(Debug, Clone)]
pub enum Profile {
    Modbus(Arc<ModbusProfile>),
    Snmp(Arc<SnmpProfile>),
}

impl Profile {
    pub fn name(&self) -> &str {
        match self {
            Profile::Modbus(p) => &p.name,
            Profile::Snmp(p) => &p.name,
        }
    }
    pub fn protocol(&self) -> &'static str {
        match self {
            Profile::Modbus(_) => "modbus",
            Profile::Snmp(_) => "snmp",
        }
    }
    /// Why the profile's map is not verified against its source, if it is not.
    pub fn unverified(&self) -> Option<&str> {
        match self {
            Profile::Modbus(p) => p.unverified.as_deref(),
            Profile::Snmp(p) => p.unverified.as_deref(),
        }
    }
    pub fn point_count(&self) -> usize {
        match self {
            Profile::Modbus(p) => p.points.len(),
            Profile::Snmp(p) => p.points.len(),
        }
    }
}

/// A built profile of one protocol: its points (`ModbusPoint` or `SnmpPoint`) and where its
/// map comes from.
#[derive(Debug, Clone)]
pub struct ProfileOf<P> {
    pub name: String,
    pub source: Option<String>,
    /// Why the map is not verified against its source (see `ProfileConfig::unverified`).
    pub unverified: Option<String>,
    pub points: Vec<P>,
}

impl<P> ProfileOf<P> {
    /// The profile `cfg` builds as `name`, unless its checks found `problems`.
    fn checked(
        name: &str,
        cfg: &ProfileConfig,
        points: Vec<P>,
        problems: Vec<ProfileProblem>,
    ) -> Result<Self, Vec<ProfileProblem>> {
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ProfileOf { name: name.to_owned(), source: cfg.source.clone(), unverified: cfg.unverified.clone(), points })
    }
}

/// A problem found in a profile, with the span of the offending value when known.
#[derive(Debug, Clone)]
pub struct ProfileProblem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl ProfileProblem {
    pub fn at<T>(value: &Spanned<T>, message: impl Into<String>) -> Self {
        let span = value.span();
        Self { span: (span.end > 0).then_some(span), message: message.into() }
    }
    pub fn nowhere(message: impl Into<String>) -> Self {
        Self { span: None, message: message.into() }
    }
}

impl ProfileConfig {
    /// Checks the profile and builds it; all problems are reported, not just the first.
    pub fn build(&self, name: &str) -> Result<Profile, Vec<ProfileProblem>> {
        match self.protocol.get_ref().as_str() {
            "modbus" => modbus::build(name, self).map(|p| Profile::Modbus(Arc::new(p))),
            "snmp" => snmp::build(name, self).map(|p| Profile::Snmp(Arc::new(p))),
            other => Err(vec![ProfileProblem::at(
                &self.protocol,
                format!("unknown protocol {other:?}: expected \"modbus\" or \"snmp\""),
            )]),
        }
    }
}

/// The built-in profiles: name -> TOML source. Each file cites where its map comes from.
pub const BUILTIN: &[(&str, &str)] = &[
    ("apc-rpdu2", include_str!("builtin/apc-rpdu2.toml")),
    ("raritan-pdu2", include_str!("builtin/raritan-pdu2.toml")),
    ("servertech-sentry4", include_str!("builtin/servertech-sentry4.toml")),
    ("entity-sensor", include_str!("builtin/entity-sensor.toml")),
    ("geist-watchdog", include_str!("builtin/geist-watchdog.toml")),
    ("schneider-pm5000", include_str!("builtin/schneider-pm5000.toml")),
    ("generic-crah", include_str!("builtin/generic-crah.toml")),
    ("modbus-th-probe", include_str!("builtin/modbus-th-probe.toml")),
    ("ups-mib", include_str!("builtin/ups-mib.toml")),
    ("apc-ats", include_str!("builtin/apc-ats.toml")),
    ("eaton-epdu", include_str!("builtin/eaton-epdu.toml")),
    ("apc-inrow", include_str!("builtin/apc-inrow.toml")),
    ("vertiv-geist", include_str!("builtin/vertiv-geist.toml")),
    ("rittal-cmc3", include_str!("builtin/rittal-cmc3.toml")),
];

/// Parses and builds every built-in profile. A failure here is a bug in the shipped data,
/// which the tests catch; at runtime a broken built-in is reported like a user profile.
pub fn builtins() -> BTreeMap<String, Result<Profile, String>> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            let built = toml::from_str::<ProfileConfig>(text)
                .map_err(|e| format!("built-in profile {name}: {e}"))
                .and_then(|cfg| {
                    cfg.build(name).map_err(|problems| {
                        let msgs: Vec<_> = problems.into_iter().map(|p| p.message).collect();
                        format!("built-in profile {name}: {}", msgs.join("; "))
                    })
                });
            (name.to_string(), built)
        })
        .collect()
}

/// The unit a metric's name implies, for profiles that do not state one.
pub fn default_unit(metric: &str) -> &'static str {
    match metric {
        "humidity_pct" => "%RH",
        "alarm" => "",
        m if m.ends_with("_c") => "°C",
        m if m.ends_with("_pct") => "%",
        m if m.ends_with("_kwh") => "kWh",
        m if m.ends_with("_a") => "A",
        m if m.ends_with("_v") => "V",
        m if m.ends_with("_w") => "W",
        m if m.ends_with("_va") => "VA",
        m if m.ends_with("_hz") => "Hz",
        m if m.ends_with("_kw") => "kW",
        m if m.ends_with("_s") => "s",
        m if m.ends_with("_h") => "h",
        m if m.ends_with("_rpm") => "rpm",
        m if m.ends_with("_pa") => "Pa",
        m if m.ends_with("_lpm") => "L/min",
        m if m.ends_with("_m3h") => "m³/h",
        m if m.ends_with("_min") => "min",
        _ => "",
    }
}

/// What every profile is checked for, whatever its protocol (`"modbus"` or `"snmp"`): unique
/// point names, at least one point, and for each point its metric name, no field of the other
/// protocol, a usable scale and offset. The protocol's own checks come on top.
pub(crate) fn check_common(name: &str, cfg: &ProfileConfig, protocol: &str, problems: &mut Vec<ProfileProblem>) {
    if cfg.points.is_empty() {
        problems.push(ProfileProblem::nowhere(format!("profile {name} has no points")));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &cfg.points {
        let pname = p.name.get_ref();
        if !seen.insert(pname.as_str()) {
            problems.push(ProfileProblem::at(&p.name, format!("duplicate point name {pname:?}")));
        }
        let m = p.metric.get_ref();
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            problems.push(ProfileProblem::at(
                &p.metric,
                format!(
                    "metric {m:?} must be lowercase letters, digits and '_' with its unit in the name (e.g. inlet_temp_c)"
                ),
            ));
        }
        let snmp_fields = [
            ("oid", p.oid.is_some()),
            ("column", p.column.is_some()),
            ("label_column", p.label_column.is_some()),
            ("scale_column", p.scale_column.is_some()),
            ("decimals_column", p.decimals_column.is_some()),
            ("flag_values", !p.flag_values.is_empty()),
            ("select_column", p.select_column.is_some()),
            ("select_values", !p.select_values.is_empty()),
            ("scale_sign_column", p.scale_sign_column.is_some()),
        ];
        let modbus_fields = [
            ("table", p.table.is_some()),
            ("address", p.address.is_some()),
            ("type", p.value_type.is_some()),
            ("word_order", p.word_order.is_some()),
            ("bit", p.bit.is_some()),
        ];
        let (foreign, whose, this) = if protocol == "modbus" {
            (&snmp_fields[..], "an SNMP", "a modbus")
        } else {
            (&modbus_fields[..], "a Modbus", "an snmp")
        };
        for (field, _) in foreign.iter().filter(|(_, present)| *present) {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {pname:?}: `{field}` is {whose} field; this is {this} profile"),
            ));
        }
        if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {pname:?}: scale must be finite and non-zero, offset finite"),
            ));
        }
    }
}

/// The unit a point's readings carry: its own, or the one its metric's name implies.
pub(crate) fn unit_of(point: &PointConfig) -> ArcStr {
    ArcStr::from(point.unit.as_deref().unwrap_or(default_unit(point.metric.get_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_suffixes_imply_their_unit() {
        for (metric, unit) in [
            ("inlet_temp_c", "°C"),
            ("current_a", "A"),
            ("energy_kwh", "kWh"),
            ("power_kw", "kW"),
            ("power_w", "W"),
            ("uptime_s", "s"),
            ("runtime_h", "h"),
            ("fan_speed_rpm", "rpm"),
            ("filter_dp_pa", "Pa"),
            ("water_flow_lpm", "L/min"),
            ("air_flow_m3h", "m³/h"),
            ("runtime_min", "min"),
            ("humidity_pct", "%RH"),
            ("alarm", ""),
            ("something_else", ""),
        ] {
            assert_eq!(default_unit(metric), unit, "{metric}");
        }
    }

    /// Both protocols get the same common checks, each naming the other protocol's fields.
    #[test]
    fn common_checks_hold_for_both_protocols() {
        let problems = |text: &str| -> Vec<String> {
            let cfg: ProfileConfig = toml::from_str(text).unwrap();
            cfg.build("p").err().unwrap_or_default().into_iter().map(|p| p.message).collect()
        };
        let modbus = problems(
            "protocol = \"modbus\"\n\
             [[points]]\nname = \"a\"\nmetric = \"Inlet\"\naddress = 1\noid = \"1.3.6.1.2.1.1.3.0\"\n\
             [[points]]\nname = \"a\"\nmetric = \"inlet_temp_c\"\naddress = 2\nscale = 0.0\n",
        );
        let snmp = problems(
            "protocol = \"snmp\"\n\
             [[points]]\nname = \"a\"\nmetric = \"Inlet\"\noid = \"1.3.6.1.2.1.1.3.0\"\naddress = 1\n\
             [[points]]\nname = \"a\"\nmetric = \"inlet_temp_c\"\noid = \"1.3.6.1.2.1.1.3.0\"\nscale = 0.0\n",
        );
        for (got, foreign) in [
            (modbus, "point \"a\": `oid` is an SNMP field; this is a modbus profile"),
            (snmp, "point \"a\": `address` is a Modbus field; this is an snmp profile"),
        ] {
            for want in [
                foreign,
                "duplicate point name \"a\"",
                "metric \"Inlet\" must be lowercase",
                "point \"a\": scale must be finite and non-zero",
            ] {
                assert!(got.iter().any(|m| m.contains(want)), "no {want:?} in {got:#?}");
            }
        }
        for protocol in ["modbus", "snmp"] {
            let got = problems(&format!("protocol = {protocol:?}\n"));
            assert_eq!(got, vec!["profile p has no points".to_owned()]);
        }
    }

    #[test]
    fn unknown_modbus_names_list_the_choices() {
        let cfg: ProfileConfig = toml::from_str(
            "protocol = \"modbus\"\naddressing = \"two-based\"\n\
             [[points]]\nname = \"a\"\nmetric = \"alarm\"\naddress = 1\ntable = \"coils\"\n\
             [[points]]\nname = \"b\"\nmetric = \"alarm\"\naddress = 2\ntype = \"f16\"\nword_order = \"middle\"\n",
        )
        .unwrap();
        let got: Vec<String> = cfg.build("p").err().unwrap().into_iter().map(|p| p.message).collect();
        assert_eq!(
            got,
            [
                "unknown addressing \"two-based\": expected zero-based or one-based",
                "unknown table \"coils\": expected holding, input, coil or discrete",
                "unknown type \"f16\": expected u16, i16, u32, i32, u64, f32, f64 or bool",
                "unknown word_order \"middle\": expected big or little",
            ]
        );
    }

    #[test]
    fn every_builtin_profile_builds() {
        for (name, built) in builtins() {
            let profile = built.unwrap_or_else(|e| panic!("{e}"));
            assert!(profile.point_count() > 0, "{name} has no points");
        }
    }

    /// Profiles checked point by point against their public source (issue 12): each names
    /// the document and version, and every point is preceded by a comment naming the MIB
    /// object or register-list entry it comes from. The others say why not, and
    /// `check-config` prints that.
    #[test]
    fn builtin_profiles_cite_their_source_or_say_they_are_unverified() {
        let verified = [
            "apc-rpdu2",
            "entity-sensor",
            "geist-watchdog",
            "servertech-sentry4",
            "ups-mib",
            "apc-ats",
            "eaton-epdu",
            "apc-inrow",
            "vertiv-geist",
            "rittal-cmc3",
        ];
        for (name, text) in BUILTIN {
            let cfg: ProfileConfig = toml::from_str(text).unwrap();
            let source = cfg.source.as_deref().unwrap_or_default();
            assert!(!source.is_empty(), "{name} names no source");
            if verified.contains(name) {
                assert!(cfg.unverified.is_none(), "{name} is verified but says unverified");
                let lines: Vec<&str> = text.lines().collect();
                for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == "[[points]]") {
                    assert!(
                        i > 0 && lines[i - 1].starts_with('#'),
                        "{name}: the point at line {} does not cite its MIB object",
                        i + 1
                    );
                }
            } else {
                let why = cfg.unverified.as_deref().unwrap_or_default();
                assert!(!why.is_empty(), "{name} is not verified and does not say why");
            }
        }
    }

    /// Points the MIB check found wrong, pinned to what the MIB says (PowerNet-MIB 4.2.6
    /// rPDU2SensorTempHumidityStatusType: temperatureOnly(1), temperatureHumidity(2);
    /// Sentry4-MIB: st4Phases is st4Objects 5).
    #[test]
    fn points_corrected_against_their_mib_stay_correct() {
        let all = builtins();
        let snmp = |name: &str| match all.get(name) {
            Some(Ok(Profile::Snmp(p))) => p.clone(),
            _ => panic!("{name} is not a built SNMP profile"),
        };
        let point = |p: &SnmpProfile, id: &str| {
            p.points.iter().find(|x| x.id.as_str() == id).cloned().unwrap_or_else(|| panic!("no point {id}"))
        };
        let apc = snmp("apc-rpdu2");
        assert_eq!(point(&apc, "sensor_temp").filter.map(|f| f.values), Some(vec![1, 2]));
        assert_eq!(point(&apc, "sensor_humidity").filter.map(|f| f.values), Some(vec![2]));
        let st = snmp("servertech-sentry4");
        assert_eq!(
            point(&st, "phase_voltage").target,
            snmp::SnmpTarget::Column { column: "1.3.6.1.4.1.1718.4.1.5.3.1.3".into(), label: None, rows: vec![] }
        );
    }

    #[test]
    fn flag_values_are_an_snmp_flag_without_scaling() {
        let problems = |text: &str| match toml::from_str::<ProfileConfig>(text).unwrap().build("t") {
            Ok(_) => String::new(),
            Err(p) => p.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; "),
        };
        let snmp = "protocol = \"snmp\"\n[[points]]\nname = \"on_battery\"\nmetric = \"ups_on_battery\"\noid = \"1.3.6.1.2.1.33.1.4.1.0\"\nflag_values = [5]\n";
        assert_eq!(problems(snmp), "");
        let scaled = problems(&format!("{snmp}scale = 0.1\n"));
        assert!(scaled.contains("`flag_values` makes a 0/1 flag"), "{scaled}");
        let modbus = problems(
            "protocol = \"modbus\"\n[[points]]\nname = \"x\"\nmetric = \"alarm\"\naddress = 0\nflag_values = [5]\n",
        );
        assert!(modbus.contains("`flag_values` is an SNMP field"), "{modbus}");
        let Ok(Profile::Snmp(p)) = toml::from_str::<ProfileConfig>(snmp).unwrap().build("t") else { panic!() };
        assert_eq!((p.points[0].flag(5.0), p.points[0].flag(3.0)), (Some(1.0), Some(0.0)));
    }

    #[test]
    fn builtin_names_are_the_contract() {
        let names: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
        for n in [
            "apc-rpdu2",
            "raritan-pdu2",
            "servertech-sentry4",
            "entity-sensor",
            "geist-watchdog",
            "schneider-pm5000",
            "generic-crah",
            "modbus-th-probe",
            "ups-mib",
            "apc-ats",
            "eaton-epdu",
            "apc-inrow",
            "vertiv-geist",
            "rittal-cmc3",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
    }
}
