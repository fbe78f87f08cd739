//! SNMP profile data: scalar OIDs and table columns, with the vendor's scaling.
//!
//! A column point yields one reading per table row. Rows can be narrowed four ways: a
//! fixed `rows` list (fetched with plain GETs, no walk), an `index_suffix` (tables indexed
//! by sensor type, as Raritan's), a `filter_column` whose integer value must be one of
//! `filter_values` (ENTITY-SENSOR's entPhySensorType), and a `select_column` whose text must
//! be one of `select_values` (Rittal CMC III's variable names). Per-row scaling comes from an
//! ENTITY-SENSOR scale column and/or a decimal-digits (precision) column, or a signed
//! factor column (`scale_sign_column`, CMC III cmcIIIVarScale).

use arcstr::ArcStr;

use crate::model::{Metric, PointId};

use super::{ProfileConfig, ProfileOf, ProfileProblem, check_common, unit_of};

pub type SnmpProfile = ProfileOf<SnmpPoint>;

/// Where a point's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpTarget {
    /// One OID, instance included.
    Scalar(String),
    /// A table column: one reading per row; `label` names the row.
    Column { column: String, label: Option<String>, rows: Vec<String> },
}

/// How a raw value becomes SI units beyond `scale` and `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowScaling {
    None,
    /// ENTITY-SENSOR-MIB entPhySensorScale column (SI prefix enum).
    EntityScale(String),
    /// Decimal-digits column: value / 10^digits.
    Decimals(String),
    /// Both (ENTITY-SENSOR entPhySensorScale and entPhySensorPrecision): scale column, then
    /// decimals column.
    EntityScaleAndDecimals(String, String),
}

/// Keeps only rows whose text in `column` is one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSelect {
    pub column: String,
    pub values: Vec<String>,
}

/// Keeps only rows whose `column` holds one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    pub column: String,
    pub values: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct SnmpPoint {
    pub id: PointId,
    pub metric: Metric,
    pub unit: ArcStr,
    pub target: SnmpTarget,
    pub scale: f64,
    pub offset: f64,
    pub rate: bool,
    pub row_scaling: RowScaling,
    pub string_number: bool,
    /// Only rows whose index ends with these arcs (dotted, no leading dot).
    pub index_suffix: Option<String>,
    pub filter: Option<RowFilter>,
    /// Label of rows without a label column: prefix + row index.
    pub label_prefix: Option<String>,
    /// Only some models have it: absent is "not present", not a bad reading.
    pub optional: bool,
    /// Non-empty: the reading is 1 when the raw value is one of these, else 0.
    pub flag_values: Vec<i64>,
    /// Only rows whose text in a column is one of some values.
    pub select: Option<RowSelect>,
    /// Column of a signed per-row factor: -N divides by N, +N multiplies by N.
    pub scale_sign_column: Option<String>,
}

impl SnmpPoint {
    /// For `flag_values` points: 1 when the raw value is one of them, else 0.
    pub fn flag(&self, raw: f64) -> Option<f64> {
        (!self.flag_values.is_empty()).then(|| f64::from(u8::from(self.flag_values.iter().any(|&v| v as f64 == raw))))
    }
}

/// Checks a numeric dotted OID and returns it without a leading dot.
pub fn normalize_oid(s: &str) -> Option<String> {
    let s = s.strip_prefix('.').unwrap_or(s);
    let ok = !s.is_empty() && s.split('.').all(|arc| !arc.is_empty() && arc.parse::<u32>().is_ok());
    (ok && s.split('.').count() >= 2).then(|| s.to_owned())
}

pub(super) fn build(name: &str, cfg: &ProfileConfig) -> Result<SnmpProfile, Vec<ProfileProblem>> {
    let mut problems = Vec::new();
    check_common(name, cfg, "snmp", &mut problems);
    if let Some(a) = &cfg.addressing {
        problems.push(ProfileProblem::at(a, "`addressing` is a Modbus field; this is an snmp profile"));
    }
    // The recognition fields `discover` uses: numeric OIDs like every other.
    for f in cfg.sys_object_ids.iter().chain(cfg.probe_oid.as_ref()) {
        if normalize_oid(f.get_ref()).is_none() {
            problems.push(ProfileProblem::at(
                f,
                format!("{:?} is not a numeric OID (e.g. 1.3.6.1.4.1.318.1.3.4.6)", f.get_ref()),
            ));
        }
    }
    let mut points = Vec::with_capacity(cfg.points.len());
    for p in &cfg.points {
        let pname = p.name.get_ref();
        let mut oid_of = |field: &Option<toml::Spanned<String>>| -> Option<String> {
            let f = field.as_ref()?;
            let n = normalize_oid(f.get_ref());
            if n.is_none() {
                problems.push(ProfileProblem::at(
                    f,
                    format!("{:?} is not a numeric OID (e.g. 1.3.6.1.2.1.1.3.0)", f.get_ref()),
                ));
            }
            n
        };
        let scalar = oid_of(&p.oid);
        let column = oid_of(&p.column);
        let label = oid_of(&p.label_column);
        let scale_col = oid_of(&p.scale_column);
        let decimals_col = oid_of(&p.decimals_column);
        let filter_col = oid_of(&p.filter_column);
        let select_col = oid_of(&p.select_column);
        let sign_col = oid_of(&p.scale_sign_column);
        if (p.select_column.is_some() || p.scale_sign_column.is_some()) && p.column.is_none() {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {pname:?}: `select_column` and `scale_sign_column` go with `column`"),
            ));
        }
        if p.select_column.is_some() == p.select_values.is_empty() {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {pname:?}: `select_column` and `select_values` go together"),
            ));
        }
        let index_suffix = match &p.index_suffix {
            None => None,
            Some(s) => {
                let ok = s.get_ref().split('.').all(|a| a.parse::<u32>().is_ok());
                if !ok {
                    problems
                        .push(ProfileProblem::at(s, format!("index_suffix {:?} must be dotted numbers", s.get_ref())));
                }
                Some(s.get_ref().trim_start_matches('.').to_owned())
            }
        };
        if p.column.is_none() && (p.index_suffix.is_some() || p.filter_column.is_some() || p.label_prefix.is_some()) {
            problems.push(ProfileProblem::at(
                &p.name,
                format!("point {pname:?}: `index_suffix`, `filter_column` and `label_prefix` go with `column`"),
            ));
        }
        if p.filter_column.is_some() && p.filter_values.is_empty() {
            problems
                .push(ProfileProblem::at(&p.name, format!("point {pname:?}: `filter_column` needs `filter_values`")));
        }
        let target = match (scalar, column, p.oid.is_some(), p.column.is_some()) {
            (_, _, true, true) => {
                problems
                    .push(ProfileProblem::at(&p.name, format!("point {pname:?}: give `oid` or `column`, not both")));
                None
            }
            (Some(oid), None, _, _) => {
                if label.is_some() || !p.rows.is_empty() {
                    problems.push(ProfileProblem::at(
                        &p.name,
                        format!("point {pname:?}: `label_column` and `rows` go with `column`"),
                    ));
                }
                Some(SnmpTarget::Scalar(oid))
            }
            (None, Some(column), _, _) => Some(SnmpTarget::Column { column, label, rows: p.rows.clone() }),
            (None, None, false, false) => {
                problems.push(ProfileProblem::at(&p.name, format!("point {pname:?} needs an `oid` or a `column`")));
                None
            }
            _ => None, // a malformed OID, already reported
        };
        let row_scaling = match (scale_col, decimals_col) {
            (Some(s), Some(d)) => RowScaling::EntityScaleAndDecimals(s, d),
            (Some(c), None) => RowScaling::EntityScale(c),
            (None, Some(c)) => RowScaling::Decimals(c),
            (None, None) => RowScaling::None,
        };
        if !p.flag_values.is_empty() && (p.rate || p.scale != 1.0 || p.offset != 0.0) {
            problems.push(ProfileProblem::at(
                &p.name,
                format!(
                    "point {pname:?}: `flag_values` makes a 0/1 flag; it does not go with `rate`, `scale` or `offset`"
                ),
            ));
        }
        if let Some(target) = target {
            points.push(SnmpPoint {
                id: PointId::new(pname),
                metric: Metric::new(p.metric.get_ref()),
                unit: unit_of(p),
                target,
                scale: p.scale,
                offset: p.offset,
                rate: p.rate,
                row_scaling,
                string_number: p.string_number,
                index_suffix,
                filter: filter_col.map(|column| RowFilter { column, values: p.filter_values.clone() }),
                label_prefix: p.label_prefix.clone(),
                optional: p.optional,
                flag_values: p.flag_values.clone(),
                select: select_col.map(|column| RowSelect { column, values: p.select_values.clone() }),
                scale_sign_column: sign_col,
            });
        }
    }
    ProfileOf::checked(name, cfg, points, problems)
}

#[cfg(test)]
mod tests {
    use super::super::{Profile, ProfileConfig};

    fn problems(point: &str) -> String {
        let text = format!("protocol = \"snmp\"\n[[points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\n{point}");
        match toml::from_str::<ProfileConfig>(&text).unwrap().build("p") {
            Ok(_) => String::new(),
            Err(p) => p.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; "),
        }
    }

    #[test]
    fn row_selection_by_name_and_signed_scaling_go_with_a_column() {
        let good = "column = \"1.3.6.1.4.1.2606.7.4.2.2.1.11\"\nselect_column = \"1.3.6.1.4.1.2606.7.4.2.2.1.3\"\n\
                    select_values = [\"Temperature.Value\"]\nscale_sign_column = \"1.3.6.1.4.1.2606.7.4.2.2.1.7\"\n";
        assert_eq!(problems(good), "");
        let no_values = problems("column = \"1.3.6.1.2\"\nselect_column = \"1.3.6.1.3\"\n");
        assert!(no_values.contains("`select_column` and `select_values` go together"), "{no_values}");
        let scalar = problems("oid = \"1.3.6.1.2.0\"\nscale_sign_column = \"1.3.6.1.3\"\n");
        assert!(scalar.contains("go with `column`"), "{scalar}");
        let cfg: ProfileConfig = toml::from_str(&format!(
            "protocol = \"snmp\"\n[[points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\n{good}"
        ))
        .unwrap();
        let Ok(Profile::Snmp(p)) = cfg.build("p") else { panic!("builds") };
        let point = &p.points[0];
        assert_eq!(point.select.as_ref().map(|s| s.values.clone()), Some(vec!["Temperature.Value".to_owned()]));
        assert_eq!(point.scale_sign_column.as_deref(), Some("1.3.6.1.4.1.2606.7.4.2.2.1.7"));
    }
}
