//! Modbus profile data: register tables, value types, word/byte order, scaling.

use arcstr::ArcStr;
use toml::Spanned;

use crate::model::{Metric, PointId};

use super::{ProfileConfig, ProfileOf, ProfileProblem, check_common, unit_of};

/// How a profile numbers registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Addresses are wire addresses (PDU addresses), register 0 is the first.
    ZeroBased,
    /// Addresses as printed in many manuals: register 1 is wire address 0.
    OneBased,
}

/// The Modbus data table a point lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl Table {
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

/// How the registers of a point are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    U64,
    F32,
    F64,
    /// A coil or discrete input.
    Bool,
}

impl ValueType {
    /// Registers this type occupies (bits for `Bool`).
    pub fn width(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 | ValueType::Bool => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 | ValueType::F64 => 4,
        }
    }
}

/// Order of the 16-bit words of a multi-register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// Most significant word first (ABCD) - the Modbus convention.
    Big,
    /// Least significant word first (CDAB).
    Little,
}

pub type ModbusProfile = ProfileOf<ModbusPoint>;

#[derive(Debug, Clone)]
pub struct ModbusPoint {
    pub id: PointId,
    pub metric: Metric,
    pub unit: ArcStr,
    pub table: Table,
    /// Wire (zero-based) address, after the profile's addressing has been applied.
    pub address: u16,
    pub value_type: ValueType,
    pub word_order: WordOrder,
    pub byte_swap: bool,
    /// A single bit of a register, for alarm words.
    pub bit: Option<u8>,
    pub scale: f64,
    pub offset: f64,
    /// Only some models have it: "illegal data address" is "not present", not bad.
    pub optional: bool,
}

/// How `discover` recognises a profile's devices from Read Device Identification (function
/// 43/14): the profile's `modbus_vendor` and `modbus_product_codes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusRecognition {
    /// VendorName prefix, compared case-insensitively.
    pub vendor: String,
    /// ProductCode prefixes, compared case-insensitively; empty: any product of the vendor.
    pub product_codes: Vec<String>,
}

impl ModbusRecognition {
    /// The recognition a profile declares, if it declares one (`modbus_vendor` set).
    pub fn of(cfg: &ProfileConfig) -> Option<Self> {
        let vendor = cfg.modbus_vendor.as_ref()?.get_ref().trim().to_owned();
        let product_codes = cfg.modbus_product_codes.iter().map(|c| c.get_ref().trim().to_owned()).collect();
        Some(ModbusRecognition { vendor, product_codes })
    }

    /// How closely a device reporting `vendor` and `product` fits: `None` not at all, else
    /// the length of the matching product code prefix (0 when the profile takes any product
    /// of the vendor), so that the most specific profile wins.
    pub fn fit(&self, vendor: &str, product: Option<&str>) -> Option<usize> {
        if self.vendor.is_empty() || !starts_with_ignoring_case(vendor.trim(), &self.vendor) {
            return None;
        }
        if self.product_codes.is_empty() {
            return Some(0);
        }
        let product = product?.trim();
        self.product_codes
            .iter()
            .filter(|code| !code.is_empty() && starts_with_ignoring_case(product, code))
            .map(String::len)
            .max()
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The profiles that fit a device reporting `vendor` and `product` in Read Device
/// Identification: the most specific fit (longest product code prefix) among
/// `profiles` (name, recognition); several when they fit equally well, none when nothing
/// fits.
pub fn recognise<'a>(vendor: &str, product: Option<&str>, profiles: &'a [(String, ModbusRecognition)]) -> Vec<&'a str> {
    let fits: Vec<(usize, &str)> =
        profiles.iter().filter_map(|(name, r)| r.fit(vendor, product).map(|f| (f, name.as_str()))).collect();
    let best = fits.iter().map(|(f, _)| *f).max();
    fits.into_iter().filter(|(f, _)| Some(*f) == best).map(|(_, name)| name).collect()
}

pub(super) fn build(name: &str, cfg: &ProfileConfig) -> Result<ModbusProfile, Vec<ProfileProblem>> {
    let mut problems = Vec::new();
    check_common(name, cfg, "modbus", &mut problems);
    if let Some(v) = &cfg.modbus_vendor
        && v.get_ref().trim().is_empty()
    {
        problems.push(ProfileProblem::at(v, "modbus_vendor is empty: give the VendorName the device reports"));
    }
    if let Some(code) = cfg.modbus_product_codes.first() {
        if cfg.modbus_vendor.is_none() {
            problems.push(ProfileProblem::at(code, "modbus_product_codes needs modbus_vendor"));
        }
        for c in cfg.modbus_product_codes.iter().filter(|c| c.get_ref().trim().is_empty()) {
            problems.push(ProfileProblem::at(c, "an empty product code would match every product"));
        }
    }
    let addressing = choice(
        &cfg.addressing,
        "addressing",
        &[("zero-based", Addressing::ZeroBased), ("one-based", Addressing::OneBased)],
        Addressing::ZeroBased,
        &mut problems,
    );
    let mut points = Vec::with_capacity(cfg.points.len());
    for p in &cfg.points {
        let tables = [
            ("holding", Table::Holding),
            ("input", Table::Input),
            ("coil", Table::Coil),
            ("discrete", Table::Discrete),
        ];
        let table = choice(&p.table, "table", &tables, Table::Holding, &mut problems);
        let types = [
            ("u16", ValueType::U16),
            ("i16", ValueType::I16),
            ("u32", ValueType::U32),
            ("i32", ValueType::I32),
            ("u64", ValueType::U64),
            ("f32", ValueType::F32),
            ("f64", ValueType::F64),
            ("bool", ValueType::Bool),
        ];
        let default_type = if table.is_bits() { ValueType::Bool } else { ValueType::U16 };
        let value_type = choice(&p.value_type, "type", &types, default_type, &mut problems);
        if table.is_bits() != (value_type == ValueType::Bool) {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {:?}: type bool goes with coil/discrete tables and only with them", p.name.get_ref()),
            ));
        }
        let orders = [("big", WordOrder::Big), ("little", WordOrder::Little)];
        let word_order = choice(&p.word_order, "word_order", &orders, WordOrder::Big, &mut problems);
        let bit = match &p.bit {
            None => None,
            Some(b) if (0..16).contains(b.get_ref()) && value_type == ValueType::U16 => Some(*b.get_ref() as u8),
            Some(b) => {
                problems.push(ProfileProblem::at(b, "bit must be 0..=15 and goes with type u16"));
                None
            }
        };
        let address = match &p.address {
            None => {
                problems.push(ProfileProblem::at(&p.name, format!("point {:?} needs an `address`", p.name.get_ref())));
                0
            }
            Some(a) => {
                let raw = *a.get_ref();
                let wire = match addressing {
                    Addressing::ZeroBased => raw,
                    Addressing::OneBased => raw - 1,
                };
                let last = wire + i64::from(value_type.width()) - 1;
                if wire < 0 || last > 65535 {
                    problems.push(ProfileProblem::at(
                        a,
                        format!("address {raw} is outside the Modbus range for this profile's addressing"),
                    ));
                    0
                } else {
                    wire as u16
                }
            }
        };
        points.push(ModbusPoint {
            id: PointId::new(p.name.get_ref()),
            metric: Metric::new(p.metric.get_ref()),
            unit: unit_of(p),
            table,
            address,
            value_type,
            word_order,
            byte_swap: p.byte_swap,
            bit,
            scale: p.scale,
            offset: p.offset,
            optional: p.optional,
        });
    }
    ProfileOf::checked(name, cfg, points, problems)
}

/// The value `field` names among `choices`, or `default` when it is not given. An unknown name
/// is a problem listing the choices; `default` then stands in so the other checks still run.
fn choice<T: Copy>(
    field: &Option<Spanned<String>>,
    what: &str,
    choices: &[(&str, T)],
    default: T,
    problems: &mut Vec<ProfileProblem>,
) -> T {
    let Some(f) = field else { return default };
    if let Some((_, v)) = choices.iter().find(|(name, _)| name == f.get_ref()) {
        return *v;
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let (last, rest) = names.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
    problems.push(ProfileProblem::at(
        f,
        format!("unknown {what} {:?}: expected {} or {last}", f.get_ref(), rest.join(", ")),
    ));
    default
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(vendor: &str, codes: &[&str]) -> ModbusRecognition {
        ModbusRecognition { vendor: vendor.into(), product_codes: codes.iter().map(|c| (*c).to_owned()).collect() }
    }

    #[test]
    fn the_most_specific_profile_wins() {
        let profiles = vec![
            ("any-acme".to_owned(), rec("Acme", &[])),
            ("acme-pm".to_owned(), rec("acme", &["PM5", "PM"])),
            ("acme-pm55".to_owned(), rec("Acme", &["PM55"])),
            ("other".to_owned(), rec("Other Corp", &[])),
        ];
        assert_eq!(recognise("ACME Power", Some("PM5560"), &profiles), vec!["acme-pm55"]);
        assert_eq!(recognise("Acme", Some("PM5100"), &profiles), vec!["acme-pm"]);
        assert_eq!(recognise("Acme", Some("XY"), &profiles), vec!["any-acme"]);
        assert_eq!(recognise("Acme", None, &profiles), vec!["any-acme"]);
        assert!(recognise("Nobody", Some("PM5560"), &profiles).is_empty());
        let tie = vec![("a".to_owned(), rec("Acme", &["X1"])), ("b".to_owned(), rec("Acme", &["X1"]))];
        assert_eq!(recognise("Acme", Some("X100"), &tie), vec!["a", "b"]);
        // Non-ASCII text must not split a character.
        assert!(recognise("Ä", Some("x"), &[("u".to_owned(), rec("A", &[]))]).is_empty());
    }

    #[test]
    fn recognition_fields_are_checked() {
        let problems = |extra: &str| -> Vec<String> {
            let text = format!(
                "protocol = \"modbus\"\n{extra}\n[[points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\naddress = 0\n"
            );
            let cfg: ProfileConfig = toml::from_str(&text).unwrap();
            match cfg.build("p") {
                Ok(_) => vec![],
                Err(p) => p.into_iter().map(|p| p.message).collect(),
            }
        };
        assert!(problems("modbus_vendor = \"Acme\"\nmodbus_product_codes = [\"X1\"]").is_empty());
        assert_eq!(problems("modbus_product_codes = [\"X1\"]"), ["modbus_product_codes needs modbus_vendor"]);
        assert_eq!(
            problems("modbus_vendor = \" \"\nmodbus_product_codes = [\"\"]"),
            [
                "modbus_vendor is empty: give the VendorName the device reports",
                "an empty product code would match every product"
            ]
        );
        let cfg: ProfileConfig =
            toml::from_str("protocol = \"modbus\"\nmodbus_vendor = \" Acme \"\nmodbus_product_codes = [\"X1\"]\n")
                .unwrap();
        assert_eq!(ModbusRecognition::of(&cfg), Some(rec("Acme", &["X1"])));
    }
}
