//! What the outbox had to throw away since the last health message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outbox::MessageClass;

/// At most this many ranges are kept; later drops are still counted per class.
pub const MAX_DROP_RANGES: usize = 256;

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The outbox was at `max_bytes`.
    Full,
    /// The message alone was larger than the largest publishable packet.
    Oversize,
    /// The broker could never accept it (e.g. a topic with MQTT wildcards).
    Invalid,
}

/// A run of dropped messages of one class, in drop order: `count` messages with `seq` in
/// `first_seq..=last_seq` (other classes' messages in that range were not dropped unless
/// another range says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedRange {
    pub class: MessageClass,
    pub reason: DropReason,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
}

/// Drops since the report was last taken; goes into the next health message as `dropped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropReport {
    /// Messages dropped in total.
    pub total: u64,
    /// Per message class.
    pub by_class: BTreeMap<MessageClass, u64>,
    /// The dropped `seq` ranges, oldest drop first.
    pub ranges: Vec<DroppedRange>,
    /// True when more ranges happened than are listed (the counts are still complete).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ranges_truncated: bool,
}

impl DropReport {
    /// Nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Records one dropped message.
    pub fn record(&mut self, class: MessageClass, reason: DropReason, seq: u64) {
        self.total += 1;
        *self.by_class.entry(class).or_default() += 1;
        if let Some(last) = self.ranges.last_mut()
            && last.class == class
            && last.reason == reason
            && seq > last.last_seq
        {
            last.last_seq = seq;
            last.count += 1;
            return;
        }
        if self.ranges.len() >= MAX_DROP_RANGES {
            self.ranges_truncated = true;
            return;
        }
        self.ranges.push(DroppedRange { class, reason, first_seq: seq, last_seq: seq, count: 1 });
    }

    /// Appends the drops of `later` (which happened after this report's).
    pub fn extend(&mut self, later: DropReport) {
        self.total += later.total;
        for (class, n) in later.by_class {
            *self.by_class.entry(class).or_default() += n;
        }
        for r in later.ranges {
            if self.ranges.len() >= MAX_DROP_RANGES {
                self.ranges_truncated = true;
                break;
            }
            self.ranges.push(r);
        }
        self.ranges_truncated |= later.ranges_truncated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_drops_of_one_class_merge_into_a_range() {
        let mut r = DropReport::default();
        r.record(MessageClass::Health, DropReason::Full, 3);
        r.record(MessageClass::Health, DropReason::Full, 7);
        r.record(MessageClass::Rollup, DropReason::Full, 4);
        r.record(MessageClass::Rollup, DropReason::Oversize, 9);
        assert_eq!(r.total, 4);
        assert_eq!(r.by_class[&MessageClass::Health], 2);
        assert_eq!(r.ranges.len(), 3);
        assert_eq!((r.ranges[0].first_seq, r.ranges[0].last_seq, r.ranges[0].count), (3, 7, 2));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["by_class"]["health"], 2);
        assert_eq!(json["ranges"][2]["reason"], "oversize");
    }
}
