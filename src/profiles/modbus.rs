//! Modbus profile data: register tables, value types, word/byte order, scaling.

use std::sync::Arc;

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
    pub unit: Arc<str>,
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

pub(super) fn build(name: &str, cfg: &ProfileConfig) -> Result<ModbusProfile, Vec<ProfileProblem>> {
    let mut problems = Vec::new();
    check_common(name, cfg, "modbus", &mut problems);
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
