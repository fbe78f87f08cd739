//! Request planning and decoding for one SNMP profile, without any IO.
//!
//! `Plan::new` turns a profile into the OIDs to GET (scalars, table cells whose rows the
//! profile lists, and sysUpTime.0 when there are counter rates) and the table columns to
//! walk (value, label, scaling and filter columns, each once however many points use it).
//! `Plan::decode` turns what came back into one `Cell` per point and row, each either a
//! number with its row factor or a reason why not; rows' labels and indices are kept from
//! poll to poll as `Arc`s, so a steady table decodes without allocating per row; columns
//! read only for labels are walked once a `LABELS_MAX_AGE` (`start_poll`), not every poll.
//! Invariant: every point yields at least one cell, so a point never goes silent (a column
//! with no rows yields one bad cell saying so).

use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use arcstr::ArcStr;
use async_snmp::{Oid, Value};

use super::scale::{self, Number};
use crate::profiles::SnmpProfile;
use crate::profiles::snmp::{RowScaling, SnmpTarget};

/// How old a table's row labels (outlet names, sensor descriptions) get before their columns
/// are walked again. They change when someone renames an outlet, not from poll to poll, and
/// were 16 of an rPDU2's 45 varbinds a poll. A poll that meets a row new since asks again
/// with them (`meets_unlabeled_row`).
pub const LABELS_MAX_AGE: Duration = Duration::from_secs(60);

/// Row index arcs after the column OID (e.g. `[1, 5, 1]` for pdu 1, outlet 5, type 1).
pub type RowIndex = Vec<u32>;

/// What the requests returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// GET results by requested OID (`Err` when the agent rejected that OID, e.g. v1
    /// noSuchName).
    pub gets: HashMap<Oid, Result<Value, String>>,
    /// Walked columns, by column OID.
    pub columns: HashMap<Oid, ColumnRows>,
}

impl Fetched {
    /// The rows of `column`, made empty when it has none yet (tests and benches fill them).
    pub fn column_mut(&mut self, column: &Oid) -> &mut ColumnRows {
        self.columns.entry(column.clone()).or_insert_with(|| ColumnRows::new(column))
    }
}

/// One walked table column: its answers in row order. A row is kept as its index (the arcs
/// after the column), all rows' arcs in one buffer, so a row costs no OID of its own (an
/// `Oid` holds 16 arcs inline) and no map node.
#[derive(Debug, Clone)]
pub struct ColumnRows {
    column: Oid,
    /// Every row's index, one after another (in the order they came, not sorted).
    arcs: Vec<u32>,
    /// Per row, in row order: its index (`arcs[from..to]`) and its value.
    cells: Vec<(u32, u32, Value)>,
}

impl ColumnRows {
    pub fn new(column: &Oid) -> Self {
        Self { column: column.clone(), arcs: Vec::new(), cells: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn row(&self, at: usize) -> &[u32] {
        let (from, to, _) = self.cells[at];
        &self.arcs[from as usize..to as usize]
    }

    /// The last row's index.
    pub fn last_row(&self) -> Option<&[u32]> {
        self.cells.len().checked_sub(1).map(|at| self.row(at))
    }

    /// Where a walk of this column goes on from: the last row's OID (the column before the
    /// first row).
    pub fn cursor(&self) -> Oid {
        self.last_row().map_or_else(|| self.column.clone(), |row| join(&self.column, row))
    }

    /// Room for `rows` more rows (a walk expecting the rows of the last one).
    pub fn reserve(&mut self, rows: usize) {
        self.cells.reserve(rows);
        self.arcs.reserve(rows);
    }

    /// The rows' OIDs, in order (made on each call).
    pub fn oids(&self) -> impl Iterator<Item = Oid> + '_ {
        self.rows().map(|row| join(&self.column, row))
    }

    /// The row indices, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.cells.len()).map(|at| self.row(at))
    }

    /// (row index, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u32], &Value)> + '_ {
        self.cells.iter().map(|(from, to, v)| (&self.arcs[*from as usize..*to as usize], v))
    }

    pub fn get(&self, row: &[u32]) -> Option<&Value> {
        let at = self.cells.binary_search_by(|(from, to, _)| self.arcs[*from as usize..*to as usize].cmp(row)).ok()?;
        Some(&self.cells[at].2)
    }

    /// Adds the answer for `oid` (a cell of this column; the caller checked).
    pub fn insert(&mut self, oid: Oid, value: Value) {
        let row = oid.arcs().get(self.column.len()..).unwrap_or_default();
        self.insert_row(row, value);
    }

    /// Adds the answer for the row `row`. A walk gives rows in order, so this is a push; one
    /// out of order goes in its place, and a second answer for a row replaces the first.
    pub fn insert_row(&mut self, row: &[u32], value: Value) {
        if self.last_row().is_none_or(|last| last < row) {
            self.push(row, value);
            return;
        }
        match self.cells.binary_search_by(|(from, to, _)| self.arcs[*from as usize..*to as usize].cmp(row)) {
            Ok(at) => self.cells[at].2 = value,
            Err(at) => {
                let from = self.arcs.len();
                self.arcs.extend_from_slice(row);
                self.cells.insert(at, (arc_at(from), arc_at(self.arcs.len()), value));
            }
        }
    }

    fn push(&mut self, row: &[u32], value: Value) {
        let from = self.arcs.len();
        self.arcs.extend_from_slice(row);
        self.cells.push((arc_at(from), arc_at(self.arcs.len()), value));
    }

    /// Adds a row whose index `read` appends to the arcs it is given (decoded straight off
    /// the wire, with no OID made); `None`, and nothing added, when `read` fails. A row that
    /// does not come after the last goes in its place, as with `insert_row`.
    pub fn insert_read(&mut self, value: Value, read: impl FnOnce(&mut Vec<u32>) -> Option<()>) -> Option<()> {
        let from = self.arcs.len();
        if read(&mut self.arcs).is_none() {
            self.arcs.truncate(from);
            return None;
        }
        let row = &self.arcs[from..];
        let in_order = self.cells.last().is_none_or(|(f, t, _)| &self.arcs[*f as usize..*t as usize] < row);
        if in_order {
            self.cells.push((arc_at(from), arc_at(self.arcs.len()), value));
        } else {
            let row: RowIndex = self.arcs.split_off(from);
            self.insert_row(&row, value);
        }
        Some(())
    }
}

/// A position in a column's arcs (a walk stops at 10,000 rows of at most 128 arcs).
fn arc_at(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// One decoded value of one point (and row).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Index of the point in the profile.
    pub point: usize,
    /// Row index for table points (`None` for scalars), shared with the plan's row cache.
    pub row: Option<Arc<[u32]>>,
    pub label: Option<ArcStr>,
    /// The raw number and the row factor (ENTITY-SENSOR scale, decimal digits), or why not.
    pub value: Result<(Number, f64), String>,
    /// The device does not have this object, instance or table at all (an exception value,
    /// SNMPv1 noSuchName, or a table without rows): what an `optional` point may be.
    pub absent: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Scalar(Oid),
    Column { column: Oid, fixed_rows: Option<Vec<RowIndex>> },
}

#[derive(Debug, Clone)]
struct PointPlan {
    target: Target,
    label: Option<Oid>,
    scale_col: Option<Oid>,
    decimals_col: Option<Oid>,
    filter: Option<(Oid, Vec<i64>)>,
    /// Rows whose text in the column is one of these.
    select: Option<(Oid, Vec<String>)>,
    /// Signed per-row factor column (-N divide, +N multiply).
    sign_col: Option<Oid>,
    suffix: RowIndex,
    label_prefix: Option<String>,
    string_number: bool,
}

/// The requests one poll of a device makes, and how to read their answers.
#[derive(Debug)]
pub struct Plan {
    /// What to ask and how to read it: the same for every device of a profile (until one
    /// leaves out points it lacks), so shared (`same_requests`): 5 KiB an rPDU2.
    requests: Arc<Requests>,
    /// Per point: the rows seen in the last poll with their labels, so that a row keeping its
    /// label from poll to poll costs no allocation (`Arc`s shared with the readings).
    row_names: Vec<HashMap<Arc<[u32]>, RowName>>,
    /// When the label columns were last walked and decoded (`None`: not yet).
    labels_at: Option<Instant>,
    /// This poll leaves the label-only columns out and keeps each row's last label.
    labels_kept: bool,
    /// The instant `start_poll` was given.
    poll_at: Option<Instant>,
    /// A poll without labels met a row that had none yet: the next one walks them.
    labels_wanted: bool,
    /// Where a row's label is put together before it is compared with the one kept.
    scratch: String,
    /// Cells the last decode made: the next one's list starts that large.
    last_cells: usize,
}

#[derive(Debug)]
struct Requests {
    /// OIDs fetched with GET, deduplicated, in profile order.
    get_oids: Vec<Oid>,
    /// Table columns walked with GETBULK (GETNEXT on v1), deduplicated.
    walk_columns: Vec<Oid>,
    /// `walk_columns` without those only read for row labels (what a poll that keeps the
    /// labels walks).
    value_columns: Vec<Oid>,
    /// Per profile point; `None` for a point left out (an optional point the device lacks).
    points: Vec<Option<PointPlan>>,
    /// sysUpTime.0, asked along with the scalars when the profile has rate points.
    uptime: Option<Oid>,
}

#[derive(Debug, Clone)]
struct RowName {
    row: Arc<[u32]>,
    label: ArcStr,
    /// Seen in the poll being decoded (rows gone from the table are then dropped).
    seen: bool,
}

/// SNMPv2-MIB sysUpTime.0: hundredths of a second since the agent (re)started.
fn sys_up_time() -> Oid {
    Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 3, 0])
}

fn parse_oid(s: &str) -> Result<Oid, String> {
    Oid::parse(s).map_err(|e| format!("bad OID {s:?} in profile: {e}"))
}

fn parse_index(s: &str) -> Result<RowIndex, String> {
    s.trim_start_matches('.')
        .split('.')
        .filter(|a| !a.is_empty())
        .map(|a| a.parse::<u32>().map_err(|_| format!("bad row index {s:?} in profile")))
        .collect()
}

/// The OID of a column's cell: the column, then the row index.
pub(super) fn join(column: &Oid, index: &[u32]) -> Oid {
    Oid::new(column.arcs().iter().chain(index).copied())
}

/// A column's cell (column OID and row index) as it is written in messages, without building
/// its `Oid`: only an error message needs it.
struct CellOid<'a>(&'a Oid, &'a [u32]);

impl std::fmt::Display for CellOid<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        for arc in self.1 {
            write!(f, ".{arc}")?;
        }
        Ok(())
    }
}

/// Appends a row index as text ("1.5.1").
fn push_index(out: &mut String, index: &[u32]) {
    use std::fmt::Write;
    for (k, arc) in index.iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{arc}");
    }
}

/// Adds to a list once, keeping first-seen order.
struct Unique {
    list: Vec<Oid>,
    seen: HashSet<Oid>,
}
impl Unique {
    fn new() -> Self {
        Self { list: Vec::new(), seen: HashSet::new() }
    }
    fn add(&mut self, oid: Oid) {
        if self.seen.insert(oid.clone()) {
            self.list.push(oid);
        }
    }
}

impl Plan {
    /// Plans the requests for a profile. Fails only on an OID the profile checker let
    /// through but the SNMP library rejects.
    pub fn new(profile: &SnmpProfile) -> Result<Self, String> {
        Self::without(profile, &HashSet::new())
    }

    /// Plans the requests for a profile, leaving out the points whose indices are in `skip`
    /// (they are not asked for and yield no cells).
    pub fn without(profile: &SnmpProfile, skip: &HashSet<usize>) -> Result<Self, String> {
        let mut gets = Unique::new();
        let mut walks = Unique::new();
        let mut points = Vec::with_capacity(profile.points.len());
        for (i, p) in profile.points.iter().enumerate() {
            if skip.contains(&i) {
                points.push(None);
                continue;
            }
            let (label_s, rows_s) = match &p.target {
                SnmpTarget::Scalar(_) => (None, &[][..]),
                SnmpTarget::Column { label, rows, .. } => (label.as_deref(), rows.as_slice()),
            };
            let label = label_s.map(parse_oid).transpose()?;
            let (scale_col, decimals_col) = match &p.row_scaling {
                RowScaling::None => (None, None),
                RowScaling::EntityScale(s) => (Some(parse_oid(s)?), None),
                RowScaling::Decimals(d) => (None, Some(parse_oid(d)?)),
                RowScaling::EntityScaleAndDecimals(s, d) => (Some(parse_oid(s)?), Some(parse_oid(d)?)),
            };
            let filter = match &p.filter {
                Some(f) => Some((parse_oid(&f.column)?, f.values.clone())),
                None => None,
            };
            let select = match &p.select {
                Some(sel) => Some((parse_oid(&sel.column)?, sel.values.clone())),
                None => None,
            };
            let sign_col = p.scale_sign_column.as_deref().map(parse_oid).transpose()?;
            let suffix = p.index_suffix.as_deref().map(parse_index).transpose()?.unwrap_or_default();
            let target = match &p.target {
                SnmpTarget::Scalar(oid) => {
                    let oid = parse_oid(oid)?;
                    gets.add(oid.clone());
                    Target::Scalar(oid)
                }
                SnmpTarget::Column { column, .. } => {
                    let column = parse_oid(column)?;
                    let filter_col = filter.as_ref().map(|f| f.0.clone());
                    let select_col = select.as_ref().map(|s| s.0.clone());
                    let helpers: Vec<&Oid> = [&label, &scale_col, &decimals_col, &filter_col, &select_col, &sign_col]
                        .into_iter()
                        .flatten()
                        .collect();
                    if rows_s.is_empty() {
                        walks.add(column.clone());
                        for h in helpers {
                            walks.add(h.clone());
                        }
                        Target::Column { column, fixed_rows: None }
                    } else {
                        // Known rows need no walk: GET each cell directly.
                        let rows = rows_s.iter().map(|r| parse_index(r)).collect::<Result<Vec<_>, _>>()?;
                        for row in &rows {
                            gets.add(join(&column, row));
                            for h in &helpers {
                                gets.add(join(h, row));
                            }
                            if let (Some(l), Some(base)) = (&label, strip_suffix(row, &suffix))
                                && !suffix.is_empty()
                            {
                                gets.add(join(l, base));
                            }
                        }
                        Target::Column { column, fixed_rows: Some(rows) }
                    }
                }
            };
            points.push(Some(PointPlan {
                target,
                label,
                scale_col,
                decimals_col,
                filter,
                select,
                sign_col,
                suffix,
                label_prefix: p.label_prefix.clone(),
                string_number: p.string_number,
            }));
        }
        // Counter rates need to know whether the agent restarted between polls.
        let uptime = profile.points.iter().any(|p| p.rate).then(sys_up_time);
        if let Some(oid) = &uptime {
            gets.add(oid.clone());
        }
        // Every point left out (optional points the device lacks): still ask for
        // something, so a poll keeps telling a live agent from a dead one.
        if gets.list.is_empty() && walks.list.is_empty() && !profile.points.is_empty() {
            gets.add(sys_up_time());
        }
        // A column read only for row labels is walked once a `LABELS_MAX_AGE`, not every poll.
        let label_only = |c: &Oid| {
            points.iter().flatten().all(|p| {
                let as_value = matches!(&p.target, Target::Column { column, fixed_rows: None } if column == c);
                let as_helper = [&p.scale_col, &p.decimals_col, &p.sign_col].into_iter().flatten().any(|h| h == c)
                    || p.filter.as_ref().is_some_and(|(h, _)| h == c)
                    || p.select.as_ref().is_some_and(|(h, _)| h == c);
                !as_value && !as_helper
            })
        };
        let value_columns = walks.list.iter().filter(|c| !label_only(c)).cloned().collect();
        let requests = Requests { get_oids: gets.list, walk_columns: walks.list, value_columns, points, uptime };
        Ok(Self::asking(Arc::new(requests)))
    }

    fn asking(requests: Arc<Requests>) -> Self {
        let row_names = vec![HashMap::new(); requests.points.len()];
        Self {
            requests,
            row_names,
            scratch: String::new(),
            last_cells: 0,
            labels_at: None,
            labels_kept: false,
            poll_at: None,
            labels_wanted: false,
        }
    }

    /// The plan for another device of the same profile: the same requests (shared), none of
    /// this device's rows.
    pub fn same_requests(&self) -> Self {
        Self::asking(self.requests.clone())
    }

    /// OIDs fetched with GET, deduplicated, in profile order.
    pub fn get_oids(&self) -> &[Oid] {
        &self.requests.get_oids
    }

    /// Table columns walked with GETBULK (GETNEXT on v1), deduplicated: all of them, or
    /// those a poll that keeps the labels needs (`start_poll`).
    pub fn walk_columns(&self) -> &[Oid] {
        if self.labels_kept { &self.requests.value_columns } else { &self.requests.walk_columns }
    }

    /// Decides what the poll starting at `now` walks: the label columns too on the first
    /// poll, once their labels are `LABELS_MAX_AGE` old, and after a poll that met a row
    /// without one (a new row); otherwise each row keeps its last label.
    pub fn start_poll(&mut self, now: Instant) {
        let due =
            self.labels_wanted || self.labels_at.is_none_or(|at| now.saturating_duration_since(at) >= LABELS_MAX_AGE);
        self.labels_kept = !due && self.requests.value_columns.len() < self.requests.walk_columns.len();
        self.poll_at = Some(now);
    }

    /// Whether a poll that left the labels out met a row of a point that has no label for it
    /// yet (a row new since the labels were walked). The poll then walks them at once
    /// (`walk_labels`, and fetches again) rather than give the row a stand-in label: a point's
    /// label is part of its identity downstream.
    pub fn meets_unlabeled_row(&self, f: &Fetched) -> bool {
        self.labels_kept
            && self.requests.points.iter().zip(&self.row_names).any(|(p, names)| {
                let Some(p) = p else { return false };
                let (Target::Column { column, fixed_rows: None }, Some(label)) = (&p.target, &p.label) else {
                    return false;
                };
                !f.columns.contains_key(label)
                    && f.columns.get(column).is_some_and(|rows| {
                        rows.rows().any(|row| !names.contains_key(row) && selected(p, row, f).is_some())
                    })
            })
    }

    /// Makes this poll walk the label columns too (see `meets_unlabeled_row`).
    pub fn walk_labels(&mut self) {
        self.labels_kept = false;
    }

    /// The agent's sysUpTime (TimeTicks) from the answers, when the plan asked for it (the
    /// profile has rate points) and the agent gave it.
    pub fn uptime(&self, fetched: &Fetched) -> Option<u32> {
        match fetched.gets.get(self.requests.uptime.as_ref()?) {
            Some(Ok(Value::TimeTicks(t))) => Some(*t),
            _ => None,
        }
    }

    /// Decodes what the requests returned into cells, at least one per point.
    pub fn decode(&mut self, fetched: &Fetched) -> Vec<Cell> {
        let mut cells = Vec::with_capacity(self.last_cells);
        let mut labels = if self.labels_kept { Labels::Kept { wanted: false } } else { Labels::Walked };
        for (i, p) in self.requests.points.iter().enumerate() {
            let Some(p) = p else { continue };
            let Some(names) = self.row_names.get_mut(i) else { continue };
            match &p.target {
                Target::Scalar(oid) => {
                    let got = fetched.gets.get(oid);
                    let value = match got {
                        None => Err(format!("the agent's response did not include {oid}")),
                        Some(Err(reason)) => Err(reason.clone()),
                        Some(Ok(v)) => scale::to_number(v, oid, p.string_number).map(|n| (n, 1.0)),
                    };
                    cells.push(Cell { point: i, row: None, label: None, value, absent: is_absent(got) });
                }
                Target::Column { column, fixed_rows } => {
                    // The listed rows, or else the walked ones (borrowed, not copied).
                    // A walked row comes with its value, so only listed rows are looked up.
                    let listed = fixed_rows.as_deref().unwrap_or_default();
                    let walked = if fixed_rows.is_none() { fetched.columns.get(column) } else { None };
                    let rows = listed
                        .iter()
                        .map(|row| (row.as_slice(), None))
                        .chain(walked.into_iter().flat_map(ColumnRows::iter).map(|(row, v)| (row, Some(v))));
                    // Once per point, not per row: whether this poll walked the label column.
                    let label_walked = p.label.as_ref().is_some_and(|l| fetched.columns.contains_key(l));
                    let before = cells.len();
                    let mut any_row = false;
                    for (row, value) in rows {
                        any_row = true;
                        let at = RowAt { column, row, value, label_walked };
                        if let Some(cell) = decode_row(i, p, &at, fetched, names, &mut self.scratch, &mut labels) {
                            cells.push(cell);
                        }
                    }
                    names.retain(|_, n| std::mem::replace(&mut n.seen, false));
                    if cells.len() == before {
                        let reason = if !any_row {
                            format!(
                                "table column {column} has no rows (the agent does not implement this table, or it is empty)"
                            )
                        } else {
                            format!("table column {column} has no rows matching the profile's row filter")
                        };
                        cells.push(Cell { point: i, row: None, label: None, value: Err(reason), absent: true });
                    }
                }
            }
        }
        self.last_cells = cells.len();
        match labels {
            Labels::Walked => (self.labels_at, self.labels_wanted) = (self.poll_at.or(self.labels_at), false),
            Labels::Kept { wanted } => self.labels_wanted |= wanted,
        }
        cells
    }
}

/// Whether a poll walked the label columns.
enum Labels {
    Walked,
    /// Left out: rows keep their labels; `wanted` when a row had none yet.
    Kept {
        wanted: bool,
    },
}

/// Where a cell is: its column and row, its value when the walk brought it along (`None`:
/// look it up), and whether the poll walked the point's label column.
struct RowAt<'a> {
    column: &'a Oid,
    row: &'a [u32],
    value: Option<&'a Value>,
    label_walked: bool,
}

/// One table row of one point into a cell (`None`: the row filter leaves it out). The row's
/// label is built in `scratch` and the one kept in `names` reused when it is the same.
fn decode_row(
    i: usize,
    p: &PointPlan,
    at: &RowAt<'_>,
    f: &Fetched,
    names: &mut HashMap<Arc<[u32]>, RowName>,
    scratch: &mut String,
    labels: &mut Labels,
) -> Option<Cell> {
    let (column, row) = (at.column, at.row);
    let base = selected(p, row, f)?;
    // Labels left out of this poll: the row's last one, when it has one. A label made of the
    // row's index alone is the same every poll: made once.
    let keep = match labels {
        Labels::Kept { wanted } if p.label.is_some() && !at.label_walked => {
            let known = names.contains_key(row);
            *wanted |= !known;
            known
        }
        _ => p.label.is_none() && names.contains_key(row),
    };
    if !keep {
        scratch.clear();
        if let Some(text) =
            p.label.as_ref().and_then(|l| lookup(f, l, row).or_else(|| lookup(f, l, base))).and_then(Value::as_bytes)
        {
            scratch.push_str(String::from_utf8_lossy(text).trim());
        }
        if scratch.is_empty() {
            scratch.push_str(p.label_prefix.as_deref().unwrap_or(""));
            push_index(scratch, base);
        }
    }
    let name = match names.get_mut(row) {
        Some(n) => n,
        None => {
            let row: Arc<[u32]> = Arc::from(row);
            names.entry(row.clone()).or_insert(RowName { row, label: ArcStr::from(scratch.as_str()), seen: false })
        }
    };
    if !keep && *name.label != **scratch {
        name.label = ArcStr::from(scratch.as_str());
    }
    name.seen = true;
    let oid = CellOid(column, row);
    let got = match at.value {
        Some(v) => Some(Ok(v)),
        None => lookup_result(f, column, row),
    };
    let absent = match &got {
        Some(Ok(v)) => v.is_exception(),
        Some(Err(_)) => true,
        None => false,
    };
    let value = match got {
        None => Err(format!("the agent's response did not include {oid}")),
        Some(Err(reason)) => Err(reason),
        Some(Ok(v)) => scale::to_number(v, &oid, p.string_number).and_then(|n| {
            let factor = row_factor(p, row, f)?;
            Ok((n, factor))
        }),
    };
    Some(Cell { point: i, row: Some(name.row.clone()), label: Some(name.label.clone()), value, absent })
}

/// The row's index without the point's suffix, when the point's row filter and selection keep
/// the row (`None`: not one of this point's rows).
fn selected<'a>(p: &PointPlan, row: &'a [u32], f: &Fetched) -> Option<&'a [u32]> {
    let base = strip_suffix(row, &p.suffix)?;
    if let Some((fcol, values)) = &p.filter {
        let v = lookup(f, fcol, row)?;
        let n = scale::to_integer(v, &CellOid(fcol, row)).ok()?;
        if !values.contains(&n) {
            return None;
        }
    }
    if let Some((scol, wanted)) = &p.select {
        let text = lookup(f, scol, row)?.as_bytes()?;
        let text = String::from_utf8_lossy(text);
        if !wanted.iter().any(|w| w.as_str() == text.trim()) {
            return None;
        }
    }
    Some(base)
}

/// Whether a GET answer says the object is not there: an exception value, or the error
/// the client records for a GET (only SNMPv1 noSuchName, see `SnmpSession::get`).
fn is_absent(got: Option<&Result<Value, String>>) -> bool {
    match got {
        Some(Ok(v)) => v.is_exception(),
        Some(Err(_)) => true,
        None => false,
    }
}

fn row_factor(p: &PointPlan, row: &[u32], f: &Fetched) -> Result<f64, String> {
    let mut factor = 1.0;
    if let Some(sc) = &p.scale_col {
        let oid = CellOid(sc, row);
        let v = lookup(f, sc, row).ok_or_else(|| format!("scale column value {oid} missing"))?;
        factor *= scale::entity_scale_factor(scale::to_integer(v, &oid)?)?;
    }
    if let Some(dc) = &p.decimals_col {
        let oid = CellOid(dc, row);
        let v = lookup(f, dc, row).ok_or_else(|| format!("decimal-digits value {oid} missing"))?;
        factor *= scale::decimals_factor(scale::to_integer(v, &oid)?)?;
    }
    if let Some(sc) = &p.sign_col {
        let oid = CellOid(sc, row);
        let v = lookup(f, sc, row).ok_or_else(|| format!("scale factor value {oid} missing"))?;
        factor *= scale::signed_factor(scale::to_integer(v, &oid)?);
    }
    Ok(factor)
}

fn strip_suffix<'a>(row: &'a [u32], suffix: &[u32]) -> Option<&'a [u32]> {
    if suffix.is_empty() {
        Some(row)
    } else if row.len() > suffix.len() && row.ends_with(suffix) {
        Some(&row[..row.len() - suffix.len()])
    } else {
        None
    }
}

fn lookup<'a>(f: &'a Fetched, column: &Oid, row: &[u32]) -> Option<&'a Value> {
    match lookup_result(f, column, row) {
        Some(Ok(v)) if !v.is_exception() => Some(v),
        _ => None,
    }
}

fn lookup_result<'a>(f: &'a Fetched, column: &Oid, row: &[u32]) -> Option<Result<&'a Value, String>> {
    if let Some(v) = f.columns.get(column).and_then(|m| m.get(row)) {
        return Some(Ok(v));
    }
    f.gets.get(&join(column, row)).map(|r| r.as_ref().map_err(Clone::clone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{Profile, builtins};

    fn profile(name: &str) -> Arc<SnmpProfile> {
        match builtins().remove(name).unwrap().unwrap() {
            Profile::Snmp(p) => p,
            Profile::Modbus(_) => panic!("not snmp"),
        }
    }

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    #[test]
    fn a_columns_rows_stay_in_row_order_however_they_come() {
        let col = oid("1.3.6.1.4.1.318.1.1.26.9.4.3.1.7");
        let mut rows = ColumnRows::new(&col);
        assert_eq!(rows.cursor(), col);
        rows.insert(join(&col, &[2]), Value::Integer(2));
        rows.insert_row(&[1, 5], Value::Integer(15));
        rows.insert_read(Value::Integer(3), |arcs| {
            arcs.push(3);
            Some(())
        })
        .unwrap();
        rows.insert_read(Value::Integer(1), |arcs| {
            arcs.push(1);
            Some(())
        })
        .unwrap();
        // A row read that fails adds nothing, not even half an index.
        assert_eq!(
            rows.insert_read(Value::Integer(9), |arcs| {
                arcs.push(9);
                None
            }),
            None
        );
        // A second answer for a row replaces the first.
        rows.insert_row(&[2], Value::Integer(22));
        let got: Vec<(Vec<u32>, Value)> = rows.iter().map(|(r, v)| (r.to_vec(), v.clone())).collect();
        let want = [(vec![1], 1), (vec![1, 5], 15), (vec![2], 22), (vec![3], 3)];
        assert_eq!(got, want.map(|(r, v)| (r, Value::Integer(v))));
        assert_eq!(rows.get(&[1, 5]), Some(&Value::Integer(15)));
        assert_eq!(rows.get(&[9]), None);
        assert_eq!(rows.last_row(), Some(&[3][..]));
        assert_eq!(rows.cursor(), join(&col, &[3]));
        assert_eq!(rows.oids().collect::<Vec<_>>(), [[1].as_slice(), &[1, 5], &[2], &[3]].map(|r| join(&col, r)));
    }

    fn column(f: &mut Fetched, col: &str, rows: &[(&[u32], Value)]) {
        let m = f.column_mut(&oid(col));
        for (idx, v) in rows {
            m.insert_row(idx, v.clone());
        }
    }

    #[test]
    fn apc_plan_gets_scalars_and_walks_each_column_once() {
        let plan = Plan::new(&profile("apc-rpdu2")).unwrap();
        assert_eq!(
            plan.get_oids(),
            vec![oid("1.3.6.1.4.1.318.1.1.26.4.3.1.5.1"), oid("1.3.6.1.4.1.318.1.1.26.4.3.1.9.1")]
        );
        // Two phase columns, outlet current + name, sensor temp + name + type, humidity.
        assert_eq!(plan.walk_columns().len(), 8, "{:?}", plan.walk_columns());
        let names = oid("1.3.6.1.4.1.318.1.1.26.10.2.2.1.3");
        assert_eq!(plan.walk_columns().iter().filter(|c| **c == names).count(), 1);
    }

    #[test]
    fn apc_decode_scales_labels_and_filters() {
        let p = profile("apc-rpdu2");
        let mut plan = Plan::new(&p).unwrap();
        let mut f = Fetched::default();
        f.gets.insert(oid("1.3.6.1.4.1.318.1.1.26.4.3.1.5.1"), Ok(Value::Integer(57)));
        f.gets.insert(oid("1.3.6.1.4.1.318.1.1.26.4.3.1.9.1"), Ok(Value::NoSuchInstance));
        column(&mut f, "1.3.6.1.4.1.318.1.1.26.6.3.1.5", &[(&[1], Value::Integer(28))]);
        column(&mut f, "1.3.6.1.4.1.318.1.1.26.6.3.1.6", &[(&[1], Value::Integer(228))]);
        column(&mut f, "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6", &[(&[1], Value::Integer(12)), (&[2], Value::Integer(0))]);
        column(
            &mut f,
            "1.3.6.1.4.1.318.1.1.26.9.4.3.1.3",
            &[(&[1], Value::OctetString("web-01".into())), (&[2], Value::OctetString("".into()))],
        );
        // Probe 1 is temperatureHumidity(2), probe 2 temperatureOnly(1), probe 3
        // commsLost(3) (PowerNet-MIB rPDU2SensorTempHumidityStatusType).
        column(
            &mut f,
            "1.3.6.1.4.1.318.1.1.26.10.2.2.1.5",
            &[(&[1], Value::Integer(2)), (&[2], Value::Integer(1)), (&[3], Value::Integer(3))],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.318.1.1.26.10.2.2.1.8",
            &[(&[1], Value::Integer(239)), (&[2], Value::Integer(251)), (&[3], Value::Integer(0))],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.318.1.1.26.10.2.2.1.10",
            &[(&[1], Value::Integer(45)), (&[2], Value::Integer(-1)), (&[3], Value::Integer(0))],
        );
        let cells = plan.decode(&f);
        let by = |name: &str| -> Vec<&Cell> {
            let idx = p.points.iter().position(|pt| pt.id.as_str() == name).unwrap();
            cells.iter().filter(|c| c.point == idx).collect()
        };
        assert_eq!(by("device_power")[0].value, Ok((Number::Plain(57.0), 1.0)));
        assert!(by("device_energy")[0].value.as_ref().unwrap_err().starts_with("noSuchInstance"));
        assert_eq!(by("phase_current")[0].label.as_deref(), Some("phase-1"));
        let outlets = by("outlet_current");
        assert_eq!(outlets.len(), 2);
        assert_eq!(outlets[0].label.as_deref(), Some("web-01"));
        assert_eq!(outlets[1].label.as_deref(), Some("2"), "empty name falls back to the index");
        assert_eq!(by("sensor_temp").len(), 2, "the probe with lost comms is no reading");
        let hum = by("sensor_humidity");
        assert_eq!(hum.len(), 1, "temperature-only probe has no humidity reading");
        assert_eq!(hum[0].value, Ok((Number::Plain(45.0), 1.0)));
    }

    /// Labels are kept from poll to poll: a renamed outlet shows its new name at the next
    /// poll, and one gone from the table yields no cell.
    #[test]
    fn kept_labels_follow_renamed_and_removed_rows() {
        let p = profile("apc-rpdu2");
        let mut plan = Plan::new(&p).unwrap();
        let outlet = p.points.iter().position(|pt| pt.id.as_str() == "outlet_current").unwrap();
        let poll = |plan: &mut Plan, names: &[(&[u32], &str)]| -> Vec<(Option<String>, Vec<u32>)> {
            let mut f = Fetched::default();
            let values: Vec<(&[u32], Value)> = names.iter().map(|(r, _)| (*r, Value::Integer(3))).collect();
            column(&mut f, "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6", &values);
            let labels: Vec<(&[u32], Value)> =
                names.iter().map(|(r, n)| (*r, Value::OctetString(n.as_bytes().to_vec().into()))).collect();
            column(&mut f, "1.3.6.1.4.1.318.1.1.26.9.4.3.1.3", &labels);
            plan.decode(&f)
                .into_iter()
                .filter(|c| c.point == outlet)
                .map(|c| (c.label.as_deref().map(str::to_owned), c.row.as_deref().unwrap_or_default().to_vec()))
                .collect()
        };
        let first = poll(&mut plan, &[(&[1], "web-01"), (&[2], "web-02")]);
        assert_eq!(first, vec![(Some("web-01".into()), vec![1]), (Some("web-02".into()), vec![2])]);
        let second = poll(&mut plan, &[(&[1], "db-01")]);
        assert_eq!(second, vec![(Some("db-01".into()), vec![1])]);
        let third = poll(&mut plan, &[(&[1], "db-01"), (&[2], "")]);
        assert_eq!(third, vec![(Some("db-01".into()), vec![1]), (Some("2".into()), vec![2])]);
    }

    #[test]
    fn label_columns_are_walked_once_a_minute_and_at_once_for_a_new_row() {
        let p = profile("apc-rpdu2");
        let mut plan = Plan::new(&p).unwrap();
        let outlet = p.points.iter().position(|pt| pt.id.as_str() == "outlet_current").unwrap();
        let names_col = oid("1.3.6.1.4.1.318.1.1.26.9.4.3.1.3");
        let t0 = Instant::now();
        // What the agent answers to the columns the plan asks for: outlets, and two probes of
        // which the second is commsLost(3), a row the temperature point's filter leaves out.
        let answer = |plan: &Plan, outlets: &[(&[u32], &str)]| {
            let mut f = Fetched::default();
            let values: Vec<(&[u32], Value)> = outlets.iter().map(|(r, _)| (*r, Value::Integer(3))).collect();
            column(&mut f, "1.3.6.1.4.1.318.1.1.26.9.4.3.1.6", &values);
            column(
                &mut f,
                "1.3.6.1.4.1.318.1.1.26.10.2.2.1.5",
                &[(&[1], Value::Integer(1)), (&[2], Value::Integer(3))],
            );
            column(
                &mut f,
                "1.3.6.1.4.1.318.1.1.26.10.2.2.1.8",
                &[(&[1], Value::Integer(239)), (&[2], Value::Integer(0))],
            );
            if plan.walk_columns().contains(&names_col) {
                let labels: Vec<(&[u32], Value)> =
                    outlets.iter().map(|(r, n)| (*r, Value::OctetString(n.as_bytes().to_vec().into()))).collect();
                column(&mut f, "1.3.6.1.4.1.318.1.1.26.9.4.3.1.3", &labels);
                column(
                    &mut f,
                    "1.3.6.1.4.1.318.1.1.26.10.2.2.1.3",
                    &[(&[1], Value::OctetString("Rack top".into())), (&[2], Value::OctetString("gone".into()))],
                );
            }
            f
        };
        // One poll as the poller makes it: (requests, whether they walked the names, labels).
        let poll = |plan: &mut Plan, at: Duration, outlets: &[(&[u32], &str)]| {
            plan.start_poll(t0 + at);
            let mut requests = 1;
            let mut f = answer(plan, outlets);
            if plan.meets_unlabeled_row(&f) {
                plan.walk_labels();
                requests += 1;
                f = answer(plan, outlets);
            }
            let walked = plan.walk_columns().contains(&names_col);
            let labels: Vec<String> = plan
                .decode(&f)
                .into_iter()
                .filter(|c| c.point == outlet)
                .map(|c| c.label.as_deref().unwrap_or_default().to_owned())
                .collect();
            (requests, walked, labels)
        };
        let secs = Duration::from_secs;
        // Outlet and probe names are label-only; every value and helper column is walked always.
        let label_only: Vec<&Oid> =
            plan.requests.walk_columns.iter().filter(|c| !plan.requests.value_columns.contains(c)).collect();
        assert_eq!(label_only, [&names_col, &oid("1.3.6.1.4.1.318.1.1.26.10.2.2.1.3")]);
        assert_eq!(poll(&mut plan, secs(0), &[(&[1], "web-01")]), (1, true, vec!["web-01".into()]));
        // Renamed, but the names are not asked again yet: the label kept is the last one seen
        // (and the probe row the filter leaves out never asks for them).
        assert_eq!(poll(&mut plan, secs(5), &[(&[1], "db-01")]), (1, false, vec!["web-01".into()]));
        // A new row: the same poll asks again with the names, and every row has its own.
        assert_eq!(
            poll(&mut plan, secs(10), &[(&[1], "db-01"), (&[2], "db-02")]),
            (2, true, vec!["db-01".into(), "db-02".into()])
        );
        assert_eq!(
            poll(&mut plan, secs(15), &[(&[1], "x"), (&[2], "y")]),
            (1, false, vec!["db-01".into(), "db-02".into()])
        );
        assert!(!poll(&mut plan, secs(69), &[(&[1], "x"), (&[2], "y")]).1);
        // A minute after the names were last walked, they are walked again.
        assert_eq!(poll(&mut plan, secs(70), &[(&[1], "x"), (&[2], "y")]), (1, true, vec!["x".into(), "y".into()]));
        // A poll that failed (nothing decoded) does not count as having walked them.
        plan.start_poll(t0 + secs(140));
        assert!(plan.walk_columns().contains(&names_col));
        assert!(poll(&mut plan, secs(141), &[(&[1], "x"), (&[2], "y")]).1);
        // Without the poller's second ask, a new row still decodes (its index for a label) and
        // the next poll walks the names.
        plan.start_poll(t0 + secs(150));
        let cells = plan.decode(&answer(&plan, &[(&[1], "x"), (&[2], "y"), (&[3], "z")]));
        assert_eq!(
            cells.iter().filter(|c| c.point == outlet).filter_map(|c| c.label.as_deref()).next_back(),
            Some("3")
        );
        plan.start_poll(t0 + secs(155));
        assert!(plan.walk_columns().contains(&names_col));
    }

    #[test]
    fn raritan_suffix_rows_take_decimal_digits_and_base_labels() {
        let p = profile("raritan-pdu2");
        let mut plan = Plan::new(&p).unwrap();
        let mut f = Fetched::default();
        let outlet_vals = "1.3.6.1.4.1.13742.6.5.4.3.1.4";
        column(
            &mut f,
            outlet_vals,
            &[(&[1, 1, 1], Value::Gauge32(153)), (&[1, 1, 4], Value::Gauge32(230)), (&[1, 2, 1], Value::Gauge32(7))],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.13742.6.3.5.4.1.7",
            &[(&[1, 1, 1], Value::Gauge32(2)), (&[1, 1, 4], Value::Gauge32(0)), (&[1, 2, 1], Value::Gauge32(1))],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.13742.6.3.5.3.1.3",
            &[(&[1, 1], Value::OctetString("db-1".into())), (&[1, 2], Value::OctetString("db-2".into()))],
        );
        let cells = plan.decode(&f);
        let idx = p.points.iter().position(|pt| pt.id.as_str() == "outlet_current").unwrap();
        let outlets: Vec<_> = cells.iter().filter(|c| c.point == idx).collect();
        assert_eq!(outlets.len(), 2);
        assert_eq!(outlets[0].label.as_deref(), Some("db-1"));
        let (n, factor) = outlets[0].value.clone().unwrap();
        assert!((n.as_f64() * factor - 1.53).abs() < 1e-9);
        let (n, factor) = outlets[1].value.clone().unwrap();
        assert!((n.as_f64() * factor - 0.7).abs() < 1e-9);
        // Inlet columns were not in the answer: one bad cell each, never silence.
        let inlet = p.points.iter().position(|pt| pt.id.as_str() == "inlet_voltage").unwrap();
        let bad: Vec<_> = cells.iter().filter(|c| c.point == inlet).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].value.as_ref().unwrap_err().contains("has no rows"));
    }

    #[test]
    fn entity_sensor_applies_scale_and_precision_per_row() {
        let p = profile("entity-sensor");
        let mut plan = Plan::new(&p).unwrap();
        let mut f = Fetched::default();
        let t = "1.3.6.1.2.1.99.1.1.1";
        column(&mut f, &format!("{t}.1"), &[(&[10], Value::Integer(8)), (&[11], Value::Integer(3))]);
        column(&mut f, &format!("{t}.2"), &[(&[10], Value::Integer(9)), (&[11], Value::Integer(8))]);
        column(&mut f, &format!("{t}.3"), &[(&[10], Value::Integer(1)), (&[11], Value::Integer(0))]);
        column(&mut f, &format!("{t}.4"), &[(&[10], Value::Integer(235)), (&[11], Value::Integer(230500))]);
        let cells = plan.decode(&f);
        let temp = cells.iter().find(|c| c.point == 0 && c.row.is_some()).unwrap();
        let (n, k) = temp.value.clone().unwrap();
        assert!((n.as_f64() * k - 23.5).abs() < 1e-9);
        let volt = cells.iter().find(|c| c.point == 2 && c.row.is_some()).unwrap();
        let (n, k) = volt.value.clone().unwrap();
        assert!((n.as_f64() * k - 230.5).abs() < 1e-9);
        assert_eq!(volt.label.as_deref(), Some("11"));
    }

    #[test]
    fn fixed_rows_become_gets() {
        let text = r#"
            protocol = "snmp"
            [[points]]
            name = "inlet_v"
            metric = "voltage_v"
            column = "1.3.6.1.4.1.13742.6.5.2.3.1.4"
            rows = ["1.1.4"]
            decimals_column = "1.3.6.1.4.1.13742.6.3.3.4.1.7"
        "#;
        let cfg: crate::profiles::ProfileConfig = toml::from_str(text).unwrap();
        let Profile::Snmp(p) = cfg.build("t").unwrap() else { panic!() };
        let mut plan = Plan::new(&p).unwrap();
        assert!(plan.walk_columns().is_empty());
        assert_eq!(
            plan.get_oids(),
            vec![oid("1.3.6.1.4.1.13742.6.5.2.3.1.4.1.1.4"), oid("1.3.6.1.4.1.13742.6.3.3.4.1.7.1.1.4")]
        );
        let mut f = Fetched::default();
        f.gets.insert(plan.get_oids()[0].clone(), Ok(Value::Gauge32(2301)));
        f.gets.insert(plan.get_oids()[1].clone(), Ok(Value::Gauge32(1)));
        let cells = plan.decode(&f);
        let (n, k) = cells[0].value.clone().unwrap();
        assert!((n.as_f64() * k - 230.1).abs() < 1e-9);
    }

    /// Rittal CMC III: rows chosen by their exact variable name, each scaled by its own
    /// signed factor (-N divides, +N multiplies); "System.Temperature.Value" is not ambient.
    #[test]
    fn cmc3_rows_are_selected_by_name_and_scaled_by_their_signed_factor() {
        let p = profile("rittal-cmc3");
        let mut plan = Plan::new(&p).unwrap();
        // Value, name and scale columns, each walked once for both points.
        assert_eq!(plan.walk_columns().len(), 3, "{:?}", plan.walk_columns());
        let mut f = Fetched::default();
        f.gets.insert(oid("1.3.6.1.4.1.2606.7.2.1.0"), Ok(Value::Integer(1)));
        let name = |s: &str| Value::OctetString(s.as_bytes().to_vec().into());
        column(
            &mut f,
            "1.3.6.1.4.1.2606.7.4.2.2.1.3",
            &[
                (&[1, 2], name("Temperature.Value")),
                (&[1, 54], name("System.Temperature.Value")),
                (&[3, 2], name("Temperature.Value")),
            ],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.2606.7.4.2.2.1.7",
            &[(&[1, 2], Value::Integer(-100)), (&[1, 54], Value::Integer(-100)), (&[3, 2], Value::Integer(10))],
        );
        column(
            &mut f,
            "1.3.6.1.4.1.2606.7.4.2.2.1.11",
            &[(&[1, 2], Value::Integer(2350)), (&[1, 54], Value::Integer(3230)), (&[3, 2], Value::Integer(2))],
        );
        let cells = plan.decode(&f);
        let temps: Vec<(Option<&str>, f64)> = cells
            .iter()
            .filter(|c| c.point == 0)
            .map(|c| {
                let (n, factor) = c.value.clone().unwrap();
                (c.label.as_deref(), n.as_f64() * factor)
            })
            .collect();
        assert_eq!(temps, vec![(Some("var-1.2"), 23.5), (Some("var-3.2"), 20.0)]);
        // No "Humidity.Value" row: the optional point is absent, not bad.
        let humidity: Vec<&Cell> = cells.iter().filter(|c| c.point == 1).collect();
        assert!(humidity.len() == 1 && humidity[0].absent, "{humidity:?}");
    }
}
