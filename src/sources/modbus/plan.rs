//! Block planning: coalescing a device's points into the fewest read requests.
//!
//! Points of one table are sorted by address and merged into a block while the block stays
//! within `max_block` registers (125 at most, the protocol limit; 2000 for coils/discrete
//! inputs) and the hole between two points is at most `max_gap` registers. Reading a hole is
//! cheaper than another round trip, but some devices answer "illegal data address" for any
//! read that touches an unmapped register. When that happens the poller calls `split`: the
//! block is replaced by single-point reads for this poll, and afterwards by gap-free runs of
//! the points that proved readable (`settle`). The plan keeps that shape for the life of the
//! task, so the device is not probed with the bad block again on every poll.

use crate::config::BlockLimits;
use crate::profiles::modbus::{ModbusPoint, Table};

/// Protocol limit for one read of registers (function codes 3 and 4).
pub const MAX_REGISTERS: u16 = 125;
/// Protocol limit for one read of coils or discrete inputs (function codes 1 and 2).
pub const MAX_BITS: u16 = 2000;

/// One read request and the points decoded from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    /// First wire address.
    pub start: u16,
    /// Registers (or bits) to read.
    pub count: u16,
    /// Indices into the profile's points.
    pub points: Vec<usize>,
    /// This block came from splitting a block the device refused; it is not split again.
    pub split: bool,
}

impl Block {
    /// The registers of point `p` within an answer to this block.
    pub fn slice<'a>(&self, p: &ModbusPoint, answer: &'a [u16]) -> Option<&'a [u16]> {
        let from = usize::from(p.address.checked_sub(self.start)?);
        answer.get(from..from + usize::from(p.value_type.width()))
    }
}

fn width(p: &ModbusPoint) -> u32 {
    u32::from(p.value_type.width())
}

fn end(p: &ModbusPoint) -> u32 {
    u32::from(p.address) + width(p)
}

/// Plans the reads for `indices` of `points` (all of them for a fresh plan).
pub fn plan_points(points: &[ModbusPoint], indices: &[usize], limits: BlockLimits) -> Vec<Block> {
    let mut sorted: Vec<usize> = indices.iter().copied().filter(|&i| i < points.len()).collect();
    sorted.sort_by_key(|&i| (points[i].table, points[i].address, points[i].value_type.width()));
    let mut blocks: Vec<Block> = Vec::new();
    for i in sorted {
        let p = &points[i];
        let cap = if p.table.is_bits() { MAX_BITS } else { limits.max_block.clamp(1, MAX_REGISTERS) };
        if let Some(b) = blocks.last_mut()
            && b.table == p.table
        {
            let b_end = u32::from(b.start) + u32::from(b.count);
            let gap = u32::from(p.address).saturating_sub(b_end);
            let new_end = b_end.max(end(p));
            if gap <= u32::from(limits.max_gap) && new_end - u32::from(b.start) <= u32::from(cap) {
                // Fits: new_end - start <= cap <= 2000, so the cast cannot truncate.
                b.count = (new_end - u32::from(b.start)) as u16;
                b.points.push(i);
                continue;
            }
        }
        blocks.push(Block {
            table: p.table,
            start: p.address,
            count: p.value_type.width(),
            points: vec![i],
            split: false,
        });
    }
    blocks
}

/// Plans all points of a profile.
pub fn plan(points: &[ModbusPoint], limits: BlockLimits) -> Vec<Block> {
    let all: Vec<usize> = (0..points.len()).collect();
    plan_points(points, &all, limits)
}

/// Splits a refused block into one read per point (marked `split`).
pub fn split(points: &[ModbusPoint], block: &Block) -> Vec<Block> {
    block
        .points
        .iter()
        .filter_map(|&i| points.get(i).map(|p| (i, p)))
        .map(|(i, p)| Block {
            table: p.table,
            start: p.address,
            count: p.value_type.width(),
            points: vec![i],
            split: true,
        })
        .collect()
}

/// After the single-point reads of a split: points that answered are merged again into
/// gap-free runs (they proved readable register by register, so a run without holes reads
/// only good registers); points that were refused stay single, so one bad point never
/// takes a good one down with it.
pub fn settle(points: &[ModbusPoint], good: &[usize], bad: &[usize], limits: BlockLimits) -> Vec<Block> {
    let tight = BlockLimits { max_gap: 0, max_block: limits.max_block };
    let mut out = plan_points(points, good, tight);
    // max_block 1 keeps every bad point alone (a wide point still gets its own block).
    out.extend(plan_points(points, bad, BlockLimits { max_gap: 0, max_block: 1 }));
    for b in &mut out {
        b.split = true;
    }
    out.sort_by_key(|b| (b.table, b.start));
    out
}

#[cfg(test)]
mod tests {
    use arcstr::ArcStr;

    use super::*;
    use crate::model::{Metric, PointId};
    use crate::profiles::modbus::{ValueType, WordOrder};

    fn pt(table: Table, address: u16, ty: ValueType) -> ModbusPoint {
        ModbusPoint {
            id: PointId::new(format!("p{address}")),
            metric: Metric::new("x"),
            unit: ArcStr::from(""),
            table,
            address,
            value_type: ty,
            word_order: WordOrder::Big,
            byte_swap: false,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            optional: false,
        }
    }

    const LIM: BlockLimits = BlockLimits { max_gap: 4, max_block: 125 };

    fn shape(blocks: &[Block]) -> Vec<(Table, u16, u16)> {
        blocks.iter().map(|b| (b.table, b.start, b.count)).collect()
    }

    #[test]
    fn merges_small_gaps_and_splits_large_ones() {
        let pts = vec![
            pt(Table::Holding, 0, ValueType::U16),
            pt(Table::Holding, 1, ValueType::F32),
            pt(Table::Holding, 7, ValueType::U16),  // gap 4 after 3: merged
            pt(Table::Holding, 20, ValueType::U16), // gap 12: new block
            pt(Table::Input, 0, ValueType::I16),    // other table: new block
        ];
        let blocks = plan(&pts, LIM);
        assert_eq!(shape(&blocks), vec![(Table::Holding, 0, 8), (Table::Holding, 20, 1), (Table::Input, 0, 1)]);
        assert_eq!(blocks[0].points, vec![0, 1, 2]);
    }

    #[test]
    fn never_exceeds_125_registers() {
        let pts: Vec<_> = (0..100).map(|i| pt(Table::Holding, i * 2, ValueType::F32)).collect();
        let blocks = plan(&pts, LIM);
        assert!(blocks.iter().all(|b| b.count <= 125), "{:?}", shape(&blocks));
        assert_eq!(shape(&blocks), vec![(Table::Holding, 0, 124), (Table::Holding, 124, 76)]);
        // Every point is in exactly one block, and inside it.
        let mut seen: Vec<usize> = blocks.iter().flat_map(|b| b.points.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        for b in &blocks {
            for &i in &b.points {
                assert!(pts[i].address >= b.start && end(&pts[i]) <= u32::from(b.start) + u32::from(b.count));
            }
        }
    }

    #[test]
    fn max_block_from_config_is_respected() {
        let pts: Vec<_> = (0..10).map(|i| pt(Table::Input, i, ValueType::U16)).collect();
        let blocks = plan(&pts, BlockLimits { max_gap: 0, max_block: 4 });
        assert_eq!(shape(&blocks), vec![(Table::Input, 0, 4), (Table::Input, 4, 4), (Table::Input, 8, 2)]);
    }

    #[test]
    fn overlapping_points_share_registers() {
        // An alarm word read both as a whole and as bits.
        let mut bit = pt(Table::Holding, 10, ValueType::U16);
        bit.bit = Some(2);
        let pts = vec![pt(Table::Holding, 10, ValueType::U16), bit, pt(Table::Holding, 11, ValueType::U16)];
        assert_eq!(shape(&plan(&pts, LIM)), vec![(Table::Holding, 10, 2)]);
    }

    #[test]
    fn coils_use_the_bit_limit() {
        let pts = vec![pt(Table::Coil, 0, ValueType::Bool), pt(Table::Coil, 300, ValueType::Bool)];
        assert_eq!(shape(&plan(&pts, BlockLimits { max_gap: 400, max_block: 125 })), vec![(Table::Coil, 0, 301)]);
    }

    #[test]
    fn split_then_settle_keeps_good_runs_and_isolates_bad_points() {
        let pts = vec![
            pt(Table::Holding, 0, ValueType::U16),
            pt(Table::Holding, 1, ValueType::U16),
            pt(Table::Holding, 4, ValueType::F32), // the hole 2..4 made the device refuse
            pt(Table::Holding, 6, ValueType::U16),
        ];
        let blocks = plan(&pts, LIM);
        assert_eq!(blocks.len(), 1);
        let singles = split(&pts, &blocks[0]);
        assert_eq!(
            shape(&singles),
            vec![(Table::Holding, 0, 1), (Table::Holding, 1, 1), (Table::Holding, 4, 2), (Table::Holding, 6, 1)]
        );
        assert!(singles.iter().all(|b| b.split));
        // Point 3 (address 6) is truly bad.
        let settled = settle(&pts, &[0, 1, 2], &[3], LIM);
        assert_eq!(shape(&settled), vec![(Table::Holding, 0, 2), (Table::Holding, 4, 2), (Table::Holding, 6, 1)]);
        assert!(settled.iter().all(|b| b.split));
    }
}
