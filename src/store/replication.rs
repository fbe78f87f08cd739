//! The store's side of the gateway pair's replication (issue 15, docs/ha-design.md): the active
//! turns every change it makes into a [`ReplicationRecord`], the standby applies them, and a
//! [`Store::snapshot`] brings a new or lagging standby up to date.
//!
//! - **What a record holds**: the ordered writes of one sled batch (tree, key, value or removal)
//!   with the store's epoch, the stream position it brings the store to (`position`, a (term,
//!   index) pair the caller's election numbers), the position it follows (`prev`) and the last
//!   `seq` it covers (`upto_seq`, what the publisher may send once the standby has it). The
//!   position is itself one of the writes (`META_REPLICA`): on the active it is written in the
//!   commit's own batch, on the standby with the record, so a store's position always names
//!   exactly its content, across crashes, on both nodes.
//! - **How the active gets them**: [`Store::replicate_as`] turns capture on for a term. Each
//!   `commit` then queues one record. The removals of `ack`/`discard` and the drop report's
//!   changes are kept aside and ride at the front of the next commit's record, or of the one
//!   [`Store::seal_removals`] makes when no commit comes (the shell calls it on a timer): acks
//!   are the most frequent write, and a standby that misses one only resends that message, with
//!   its `msg_id`, after a takeover, which the delivery contract allows.
//!   [`Store::take_replication`] hands out what is queued, in order, once a flush covers it
//!   (as [`Store::snapshot`] does): nothing the standby holds can be lost by the active, so the
//!   active never reuses a position for other content after a crash.
//! - **The standby**: [`Store::apply_replicated`] refuses a change record of another epoch (the
//!   standby needs a snapshot first) or one whose `prev` is not its position (a gap), then
//!   writes the record in one atomic batch, flushes, and updates the in-memory accounting (next
//!   seq, depth, bytes, droppable, engine-state chunks, drop report) from the writes. A snapshot
//!   replaces the whole content (every tree but [`NODE_LOCAL_TREE`]) and adopts the epoch, so
//!   `msg_id(seq)` is the same on both nodes.
//! - Records carry no time and no node name; the election's term fences them (in `ha::replica`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use thiserror::Error;

use super::record::{self, META_DROPS, META_EPOCH, META_NEXT_SEQ, META_SCHEMA, META_STATE_CHUNKS};
use super::{DropReport, Index, STORE_SCHEMA_VERSION, Store, StoreError};
use crate::outbox::MessageClass;

/// The stream position of the store's content (16 bytes: term, index, big-endian).
pub(crate) const META_REPLICA: &[u8] = b"mreplica";
/// A tree that replication never writes and a snapshot never carries nor replaces: the place for
/// state that belongs to one node (e.g. its voter's record).
pub const NODE_LOCAL_TREE: &[u8] = b"node-local";
/// sled's name of the default tree; records name it with an empty tree name.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// First bytes of an encoded record.
const MAGIC: &[u8; 4] = b"HMRR";
/// Version of the record encoding this build writes and reads.
pub const REPLICATION_RECORD_VERSION: u8 = 1;

/// Where a store's content stands in the replication stream: the (term, index) of the newest
/// record it holds, compared term first. `(0, 0)`: no record yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaPosition {
    pub term: u64,
    pub index: u64,
}

impl ReplicaPosition {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.term.to_be_bytes());
        b[8..].copy_from_slice(&self.index.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let term = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let index = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        (b.len() == 16).then_some(ReplicaPosition { term, index })
    }
}

/// One write: `value` `None` removes `key`. `tree` empty is sled's default tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationOp {
    pub tree: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl ReplicationOp {
    fn insert(key: &[u8], value: &[u8]) -> Self {
        ReplicationOp { tree: Vec::new(), key: key.to_vec(), value: Some(value.to_vec()) }
    }
    fn remove(key: &[u8]) -> Self {
        ReplicationOp { tree: Vec::new(), key: key.to_vec(), value: None }
    }
}

/// Changes to apply on top of `prev`, or the whole content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Changes,
    Snapshot,
}

/// One step of the replication stream (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRecord {
    kind: RecordKind,
    epoch: String,
    position: ReplicaPosition,
    prev: ReplicaPosition,
    upto_seq: u64,
    ops: Vec<ReplicationOp>,
}

impl ReplicationRecord {
    pub fn kind(&self) -> RecordKind {
        self.kind
    }
    /// The epoch of the store that wrote it (the first half of every `msg_id`).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }
    /// The position a store holding this record is at.
    pub fn position(&self) -> ReplicaPosition {
        self.position
    }
    /// The position this record follows (a snapshot: its own position).
    pub fn prev(&self) -> ReplicaPosition {
        self.prev
    }
    /// The last `seq` assigned when it was written: every message up to it is in a store that
    /// holds this record.
    pub fn upto_seq(&self) -> u64 {
        self.upto_seq
    }
    pub fn ops(&self) -> &[ReplicationOp] {
        &self.ops
    }

    /// The record as bytes (`MAGIC`, version, then the fields, big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let size: usize =
            self.ops.iter().map(|o| 11 + o.tree.len() + o.key.len() + o.value.as_ref().map_or(0, Vec::len)).sum();
        let mut out = Vec::with_capacity(64 + self.epoch.len() + size);
        out.extend_from_slice(MAGIC);
        out.push(REPLICATION_RECORD_VERSION);
        out.push(match self.kind {
            RecordKind::Changes => 0,
            RecordKind::Snapshot => 1,
        });
        for n in [self.position.term, self.position.index, self.prev.term, self.prev.index, self.upto_seq] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        // Epochs are 16 hex digits; the u16 length cannot overflow for any store this build made.
        out.extend_from_slice(&(self.epoch.len() as u16).to_be_bytes());
        out.extend_from_slice(self.epoch.as_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        for op in &self.ops {
            out.extend_from_slice(&(op.tree.len() as u16).to_be_bytes());
            out.extend_from_slice(&op.tree);
            out.extend_from_slice(&(op.key.len() as u32).to_be_bytes());
            out.extend_from_slice(&op.key);
            match &op.value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
        out
    }

    /// Reads a record written by `encode`; every refusal says what was wrong and at which byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(RecordDecodeError::NotARecord);
        }
        let version = r.u8("version")?;
        if version != REPLICATION_RECORD_VERSION {
            return Err(RecordDecodeError::Version { found: version, supported: REPLICATION_RECORD_VERSION });
        }
        let kind = match r.u8("kind")? {
            0 => RecordKind::Changes,
            1 => RecordKind::Snapshot,
            other => {
                return Err(RecordDecodeError::Invalid { at: r.at - 1, what: format!("unknown record kind {other}") });
            }
        };
        let position = ReplicaPosition { term: r.u64("position term")?, index: r.u64("position index")? };
        let prev = ReplicaPosition { term: r.u64("prev term")?, index: r.u64("prev index")? };
        let upto_seq = r.u64("upto seq")?;
        let epoch_len = r.u16("epoch length")? as usize;
        let epoch_at = r.at;
        let epoch = std::str::from_utf8(r.take(epoch_len, "epoch")?)
            .map_err(|_| RecordDecodeError::Invalid { at: epoch_at, what: "epoch is not UTF-8".into() })?
            .to_owned();
        let count = r.u32("op count")? as usize;
        // Each op takes at least 11 bytes: a count beyond what is left is a lie, not an allocation.
        if count > (bytes.len() - r.at) / 11 {
            return Err(RecordDecodeError::Invalid {
                at: r.at - 4,
                what: format!("op count {count} exceeds the record"),
            });
        }
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            let tree_len = r.u16("op tree length")? as usize;
            let tree = r.take(tree_len, "op tree")?.to_vec();
            let key_len = r.u32("op key length")? as usize;
            let key = r.take(key_len, "op key")?.to_vec();
            let value = match r.u8("op tag")? {
                0 => None,
                1 => {
                    let len = r.u32("op value length")? as usize;
                    Some(r.take(len, "op value")?.to_vec())
                }
                other => {
                    return Err(RecordDecodeError::Invalid { at: r.at - 1, what: format!("unknown op tag {other}") });
                }
            };
            ops.push(ReplicationOp { tree, key, value });
        }
        if r.at != bytes.len() {
            return Err(RecordDecodeError::Invalid {
                at: r.at,
                what: format!("{} bytes after the last op", bytes.len() - r.at),
            });
        }
        Ok(ReplicationRecord { kind, epoch, position, prev, upto_seq, ops })
    }
}

/// Why bytes are not a replication record.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordDecodeError {
    #[error("replication record: does not start with {MAGIC:?}")]
    NotARecord,
    #[error(
        "replication record: version {found}, this build reads version {supported} (are both gateways on the same release?)"
    )]
    Version { found: u8, supported: u8 },
    #[error("replication record: truncated in the {what} at byte {at}")]
    Truncated { at: usize, what: &'static str },
    #[error("replication record: {what} at byte {at}")]
    Invalid { at: usize, what: String },
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordDecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else { return Err(RecordDecodeError::Truncated { at: self.at, what }) };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, RecordDecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, RecordDecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, RecordDecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, RecordDecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
}

/// Why a record was not applied. Nothing was written in any case but `Store`.
#[derive(Debug, Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "store {path}: replication record of epoch {theirs} does not apply to this store (epoch {ours}): it needs a snapshot first"
    )]
    OtherEpoch { path: String, ours: String, theirs: String },
    #[error(
        "store {path}: replication record follows position {prev:?}, this store is at {ours:?}: it needs a snapshot"
    )]
    Gap { path: String, ours: ReplicaPosition, prev: ReplicaPosition },
    #[error("store {path}: replication record refused: {what}")]
    Invalid { path: String, what: String },
    #[error("store {path}: replicating as the active (replicate_as); a store that sends records cannot apply them")]
    Active { path: String },
}

/// The active's capture: what has been written and not yet handed out.
#[derive(Debug)]
pub(super) struct Capture {
    term: u64,
    /// The position of the newest record made (written to the store with it).
    position: ReplicaPosition,
    /// Writes of `ack`, `discard` and `take_drop_report`, for the front of the next record.
    loose: Vec<ReplicationOp>,
    queued: Vec<ReplicationRecord>,
}

/// A sled batch that also keeps its writes as ops when the store is capturing.
pub(super) struct RecordingBatch {
    batch: sled::Batch,
    ops: Option<Vec<ReplicationOp>>,
}

impl RecordingBatch {
    pub(super) fn new(idx: &Index) -> Self {
        RecordingBatch { batch: sled::Batch::default(), ops: idx.replication.as_ref().map(|_| Vec::new()) }
    }
    // The same bounds as `sled::Batch`, so `commit`'s calls read as they did.
    pub(super) fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        let (key, value) = (key.into(), value.into());
        if let Some(ops) = &mut self.ops {
            ops.push(ReplicationOp::insert(&key, &value));
        }
        self.batch.insert(key, value);
    }
    pub(super) fn remove(&mut self, key: impl Into<sled::IVec>) {
        let key = key.into();
        if let Some(ops) = &mut self.ops {
            ops.push(ReplicationOp::remove(&key));
        }
        self.batch.remove(key);
    }

    /// The batch to write, with the record it makes when capturing (`upto_seq`: the last seq
    /// after it). The position is written in the same batch, so it names the content exactly.
    /// Queue the record with [`queue`] once the batch is written.
    pub(super) fn seal(self, idx: &Index, epoch: &str, upto_seq: u64) -> (sled::Batch, Option<ReplicationRecord>) {
        let RecordingBatch { mut batch, ops } = self;
        let (Some(ops), Some(cap)) = (ops, idx.replication.as_ref()) else { return (batch, None) };
        let position = ReplicaPosition { term: cap.term, index: cap.position.index + 1 };
        let mut all = cap.loose.clone();
        all.extend(ops);
        all.push(ReplicationOp::insert(META_REPLICA, &position.to_bytes()));
        batch.insert(META_REPLICA, &position.to_bytes());
        let record = ReplicationRecord {
            kind: RecordKind::Changes,
            epoch: epoch.to_owned(),
            position,
            prev: cap.position,
            upto_seq,
            ops: all,
        };
        (batch, Some(record))
    }
}

/// Queues a record whose batch was written (see [`RecordingBatch::seal`]).
pub(super) fn queue(idx: &mut Index, record: Option<ReplicationRecord>) {
    if let (Some(cap), Some(record)) = (idx.replication.as_mut(), record) {
        cap.loose.clear();
        cap.position = record.position;
        cap.queued.push(record);
    }
}

/// Keeps a write made outside `commit` (an ack's removal, the drop report) for the next record.
pub(super) fn note(idx: &mut Index, key: &[u8], value: Option<&[u8]>) {
    if let Some(cap) = idx.replication.as_mut() {
        cap.loose.push(match value {
            Some(v) => ReplicationOp::insert(key, v),
            None => ReplicationOp::remove(key),
        });
    }
}

/// The bytes of the further pieces of outbox records (`record::split`) that `ops` write, by
/// seq: an entry's size in the accounting counts all its pieces.
fn piece_bytes(ops: &[ReplicationOp]) -> HashMap<u64, u64> {
    let mut bytes: HashMap<u64, u64> = HashMap::new();
    for op in ops.iter().filter(|op| op.tree.is_empty()) {
        if let (Some(seq), Some(v)) = (record::seq_of_piece_key(&op.key), &op.value) {
            *bytes.entry(seq).or_default() += v.len() as u64;
        }
    }
    bytes
}

/// An outbox entry as the accounting counts it.
#[derive(Clone, Copy)]
struct Entry {
    class: MessageClass,
    size: u64,
}

/// What an applied record does to the in-memory accounting.
enum Accounting {
    /// Each outbox entry written (seq, before, after) and the metadata the record sets.
    Changes {
        next_seq: u64,
        entries: Vec<(u64, Option<Entry>, Option<Entry>)>,
        drops: Option<DropReport>,
        state_chunks: Option<u32>,
    },
    /// A snapshot's content, counted afresh.
    Replace(Index),
}

impl Accounting {
    fn apply_to(self, idx: &mut Index) {
        match self {
            Accounting::Changes { next_seq, entries, drops, state_chunks } => {
                for (seq, before, after) in entries {
                    if let Some(e) = before {
                        idx.remove(seq, e.class, e.size);
                    }
                    if let Some(e) = after {
                        idx.add(seq, e.class, e.size);
                    }
                }
                idx.next_seq = next_seq;
                if let Some(d) = drops {
                    idx.drops = d;
                }
                if let Some(n) = state_chunks {
                    idx.state_chunks = n;
                }
            }
            Accounting::Replace(next) => *idx = next,
        }
    }
}

impl Store {
    /// The stream position of this store's content (`(0, 0)` before any record).
    pub fn replica_position(&self) -> Result<ReplicaPosition, StoreError> {
        let v = self
            .inner
            .db
            .get(META_REPLICA)
            .map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
        match v {
            None => Ok(ReplicaPosition::default()),
            Some(v) => ReplicaPosition::from_bytes(&v).ok_or_else(|| StoreError::Corrupt {
                path: self.inner.path.clone(),
                what: "replica position".to_owned(),
                reason: "not 16 bytes".to_owned(),
            }),
        }
    }

    /// Starts (or, with a newer term, continues) capturing every change as a record numbered
    /// under `term`, continuing from the store's position. Returns that position.
    pub fn replicate_as(&self, term: u64) -> Result<ReplicaPosition, StoreError> {
        let mut idx = self.index();
        match idx.replication.as_mut() {
            Some(cap) => {
                cap.term = cap.term.max(term);
                Ok(cap.position)
            }
            None => {
                let position = self.replica_position()?;
                idx.replication =
                    Some(Capture { term: term.max(position.term), position, loose: Vec::new(), queued: Vec::new() });
                Ok(position)
            }
        }
    }

    /// Whether this store captures its changes (it is the active's).
    pub fn replicating(&self) -> bool {
        self.index().replication.is_some()
    }

    /// Stops capturing (fenced, or becoming the standby); what was not taken is dropped.
    pub fn stop_replicating(&self) {
        self.index().replication = None;
    }

    /// The records made since the last call, oldest first (empty when not capturing), once a
    /// flush has made them durable here: a record the standby holds can never be lost by the
    /// active, so a crash cannot make the active reuse its position for other content.
    pub async fn take_replication(&self) -> Result<Vec<ReplicationRecord>, StoreError> {
        let upto = match self.index().replication.as_ref().and_then(|c| c.queued.last()) {
            Some(r) => r.position,
            None => return Ok(Vec::new()),
        };
        self.flush_written().await?;
        let mut idx = self.index();
        let Some(cap) = idx.replication.as_mut() else { return Ok(Vec::new()) };
        // Only what the flush covered (a snapshot meanwhile may have emptied the queue).
        let n = cap.queued.iter().take_while(|r| r.position <= upto).count();
        Ok(cap.queued.drain(..n).collect())
    }

    /// Flushes what is written, without publishing anything new to `peek_from`.
    async fn flush_written(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Flush { path: self.inner.path.clone(), source })
    }

    /// Makes the kept removals (acks, discards, the drop report taken) into a record of their
    /// own when no commit has carried them; nothing when there are none. Not flushed, as `ack`
    /// (`take_replication` flushes before handing it out).
    pub fn seal_removals(&self) -> Result<(), StoreError> {
        let mut idx = self.index();
        let upto_seq = idx.next_seq - 1;
        let epoch = self.epoch();
        let Some(cap) = idx.replication.as_mut() else { return Ok(()) };
        if cap.loose.is_empty() {
            return Ok(());
        }
        let position = ReplicaPosition { term: cap.term, index: cap.position.index + 1 };
        self.inner
            .db
            .insert(META_REPLICA, &position.to_bytes())
            .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;
        let mut ops = std::mem::take(&mut cap.loose);
        ops.push(ReplicationOp::insert(META_REPLICA, &position.to_bytes()));
        let record =
            ReplicationRecord { kind: RecordKind::Changes, epoch, position, prev: cap.position, upto_seq, ops };
        cap.position = position;
        cap.queued.push(record);
        Ok(())
    }

    /// The whole content (every tree but [`NODE_LOCAL_TREE`]) as one record at the store's
    /// position, for a standby that is new or behind, once flushed here. Records queued or kept
    /// so far are in it and are dropped from the queue; the next record follows it.
    pub async fn snapshot(&self) -> Result<ReplicationRecord, StoreError> {
        let snapshot = self.read_snapshot()?;
        self.flush_written().await?;
        Ok(snapshot)
    }

    fn read_snapshot(&self) -> Result<ReplicationRecord, StoreError> {
        let mut idx = self.index();
        let read = |source| StoreError::Read { path: self.inner.path.clone(), source };
        let position = match idx.replication.as_mut() {
            Some(cap) => {
                cap.loose.clear();
                cap.queued.clear();
                cap.position
            }
            None => self.replica_position()?,
        };
        let mut ops = Vec::new();
        for name in self.inner.db.tree_names() {
            if &*name == NODE_LOCAL_TREE {
                continue;
            }
            let tree = self.inner.db.open_tree(&name).map_err(read)?;
            let tree_name = if &*name == SLED_DEFAULT_TREE { Vec::new() } else { name.to_vec() };
            for item in tree.iter() {
                let (k, v) = item.map_err(read)?;
                ops.push(ReplicationOp { tree: tree_name.clone(), key: k.to_vec(), value: Some(v.to_vec()) });
            }
        }
        Ok(ReplicationRecord {
            kind: RecordKind::Snapshot,
            epoch: self.epoch(),
            position,
            prev: position,
            upto_seq: idx.next_seq - 1,
            ops,
        })
    }

    /// Applies a record from the active (see the module doc): one atomic write, flushed, with
    /// the accounting updated; a snapshot replaces the content and adopts its epoch. After it
    /// returns, the standby holds the record durably and may acknowledge it.
    pub async fn apply_replicated(&self, record: &ReplicationRecord) -> Result<(), ReplicationError> {
        let durable = {
            let mut idx = self.index();
            if idx.replication.is_some() {
                return Err(ReplicationError::Active { path: self.inner.path.display().to_string() });
            }
            let (writes, accounting) = match record.kind {
                RecordKind::Changes => self.plan_changes(&idx, record)?,
                RecordKind::Snapshot => self.plan_snapshot(&idx, record)?,
            };
            self.write_atomically(writes)?;
            // Written: now the accounting may follow.
            accounting.apply_to(&mut idx);
            if record.kind == RecordKind::Snapshot {
                *self.inner.epoch.write().unwrap_or_else(|p| p.into_inner()) = record.epoch.clone();
            }
            idx.next_seq - 1
        };
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|source| StoreError::Flush { path: self.inner.path.clone(), source })?;
        // A snapshot may move the stream back (a node whose unpublished commits were discarded).
        self.inner.durable_seq.store(durable, Ordering::Release);
        Ok(())
    }

    fn invalid(&self, what: impl Into<String>) -> ReplicationError {
        ReplicationError::Invalid { path: self.inner.path.display().to_string(), what: what.into() }
    }

    /// Checks a change record against this store and works out what it does to the accounting.
    fn plan_changes(
        &self,
        idx: &Index,
        record: &ReplicationRecord,
    ) -> Result<(Vec<ReplicationOp>, Accounting), ReplicationError> {
        let path = || self.inner.path.display().to_string();
        let ours = self.epoch();
        if record.epoch != ours {
            return Err(ReplicationError::OtherEpoch { path: path(), ours, theirs: record.epoch.clone() });
        }
        let position = self.replica_position()?;
        if record.prev != position {
            return Err(ReplicationError::Gap { path: path(), ours: position, prev: record.prev });
        }
        let read = |source| StoreError::Read { path: self.inner.path.clone(), source };
        let mut next_seq = idx.next_seq;
        let mut drops = None;
        let mut state_chunks = None;
        let mut entries = Vec::new();
        // Entries as the record leaves them, for keys it writes twice.
        let mut seen: HashMap<Vec<u8>, Option<Entry>> = HashMap::new();
        let pieces = piece_bytes(&record.ops);
        let mut wrote_position = false;
        for op in &record.ops {
            if op.tree.as_slice() == NODE_LOCAL_TREE {
                return Err(self.invalid("it writes the node-local tree"));
            }
            if !op.tree.is_empty() {
                continue; // no accounting lives in other trees
            }
            let key = op.key.as_slice();
            if let Some(seq) = record::seq_of_key(key) {
                let before = match seen.get(key) {
                    Some(e) => *e,
                    None => match self.inner.db.get(key).map_err(read)? {
                        None => None,
                        Some(v) => match record::decode_header(&v) {
                            Err(_) => None,
                            Ok(h) => Some(Entry {
                                class: h.class,
                                size: super::stored_size(&self.inner.db, seq, &v, &h).map_err(read)?,
                            }),
                        },
                    },
                };
                let after = match &op.value {
                    None => None,
                    Some(v) => {
                        let h = record::decode_header(v).map_err(|r| self.invalid(format!("outbox seq {seq}: {r}")))?;
                        let rest = if h.in_pieces { pieces.get(&seq).copied().unwrap_or(0) } else { 0 };
                        Some(Entry { class: h.class, size: (key.len() + v.len()) as u64 + rest })
                    }
                };
                entries.push((seq, before, after));
                seen.insert(key.to_vec(), after);
            } else if key == META_NEXT_SEQ {
                let v = op.value.as_deref().ok_or_else(|| self.invalid("it removes the next seq"))?;
                let n = v.try_into().map(u64::from_be_bytes).map_err(|_| self.invalid("next seq is not 8 bytes"))?;
                if n < next_seq {
                    return Err(self.invalid(format!("next seq {n} goes back from {next_seq}")));
                }
                next_seq = n;
            } else if key == META_DROPS {
                drops = Some(match &op.value {
                    None => DropReport::default(),
                    Some(v) => serde_json::from_slice(v).map_err(|e| self.invalid(format!("drop report: {e}")))?,
                });
            } else if key == META_STATE_CHUNKS {
                state_chunks = Some(match op.value.as_deref() {
                    None => 0,
                    Some(v) => v
                        .try_into()
                        .map(u32::from_be_bytes)
                        .map_err(|_| self.invalid("engine state chunk count is not 4 bytes"))?,
                });
            } else if key == META_REPLICA {
                if op.value.as_deref().and_then(ReplicaPosition::from_bytes) != Some(record.position) {
                    return Err(self.invalid("its position write does not match its position"));
                }
                wrote_position = true;
            } else if key == META_EPOCH || key == META_SCHEMA {
                return Err(self.invalid("a change record may not rewrite the epoch or the schema"));
            }
        }
        if !wrote_position {
            return Err(self.invalid("it does not write its position"));
        }
        if let Some((seq, _, _)) = entries.iter().find(|(seq, _, after)| after.is_some() && *seq >= next_seq) {
            return Err(self.invalid(format!("outbox seq {seq} is beyond the next seq {next_seq}")));
        }
        Ok((record.ops.clone(), Accounting::Changes { next_seq, entries, drops, state_chunks }))
    }

    /// Checks a snapshot and returns the writes that make this store's content exactly the
    /// snapshot's, with the accounting of that content.
    fn plan_snapshot(
        &self,
        idx: &Index,
        record: &ReplicationRecord,
    ) -> Result<(Vec<ReplicationOp>, Accounting), ReplicationError> {
        let read = |source| StoreError::Read { path: self.inner.path.clone(), source };
        let mut next = Index { next_seq: 0, dropped_since_open: idx.dropped_since_open, ..Index::default() };
        let mut schema = None;
        let mut epoch = None;
        let mut keep: BTreeMap<&[u8], BTreeSet<&[u8]>> = BTreeMap::new();
        let mut entries = Vec::new();
        let pieces = piece_bytes(&record.ops);
        for op in &record.ops {
            if op.tree.as_slice() == NODE_LOCAL_TREE {
                return Err(self.invalid("it writes the node-local tree"));
            }
            let Some(v) = op.value.as_deref() else { return Err(self.invalid("a snapshot holds a removal")) };
            keep.entry(op.tree.as_slice()).or_default().insert(op.key.as_slice());
            if !op.tree.is_empty() {
                continue;
            }
            let key = op.key.as_slice();
            if let Some(seq) = record::seq_of_key(key) {
                let h = record::decode_header(v).map_err(|r| self.invalid(format!("outbox seq {seq}: {r}")))?;
                let rest = if h.in_pieces { pieces.get(&seq).copied().unwrap_or(0) } else { 0 };
                entries.push((seq, h.class, (key.len() + v.len()) as u64 + rest));
            } else if key == META_SCHEMA {
                schema = Some(
                    v.try_into().map(u32::from_be_bytes).map_err(|_| self.invalid("schema version is not 4 bytes"))?,
                );
            } else if key == META_EPOCH {
                epoch = Some(v);
            } else if key == META_NEXT_SEQ {
                next.next_seq =
                    v.try_into().map(u64::from_be_bytes).map_err(|_| self.invalid("next seq is not 8 bytes"))?;
            } else if key == META_DROPS {
                next.drops = serde_json::from_slice(v).map_err(|e| self.invalid(format!("drop report: {e}")))?;
            } else if key == META_STATE_CHUNKS {
                next.state_chunks = v
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| self.invalid("engine state chunk count is not 4 bytes"))?;
            }
        }
        match schema {
            None => return Err(self.invalid("the snapshot has no schema version")),
            Some(found) if found > STORE_SCHEMA_VERSION => {
                return Err(self.invalid(format!(
                    "the snapshot is of store schema {found}, this build understands up to {STORE_SCHEMA_VERSION}"
                )));
            }
            Some(_) => {}
        }
        if epoch != Some(record.epoch.as_bytes()) {
            return Err(self.invalid("the snapshot's epoch entry does not match its epoch"));
        }
        if next.next_seq == 0 {
            return Err(self.invalid("the snapshot has no next seq (sequence numbers start at 1)"));
        }
        for &(seq, class, size) in &entries {
            if seq >= next.next_seq {
                return Err(self.invalid(format!("outbox seq {seq} is beyond the snapshot's next seq")));
            }
            next.add(seq, class, size);
        }

        // Remove what the snapshot does not hold, tree by tree (the node-local tree excepted).
        let mut writes = Vec::new();
        let none = BTreeSet::new();
        for name in self.inner.db.tree_names() {
            if &*name == NODE_LOCAL_TREE {
                continue;
            }
            let tree_name = if &*name == SLED_DEFAULT_TREE { Vec::new() } else { name.to_vec() };
            let kept = keep.get(tree_name.as_slice()).unwrap_or(&none);
            let tree = self.inner.db.open_tree(&name).map_err(read)?;
            for k in tree.iter().keys() {
                let k = k.map_err(read)?;
                if !kept.contains(&*k) {
                    writes.push(ReplicationOp { tree: tree_name.clone(), key: k.to_vec(), value: None });
                }
            }
        }
        writes.extend(record.ops.iter().cloned());
        writes.push(ReplicationOp::insert(META_REPLICA, &record.position.to_bytes()));
        Ok((writes, Accounting::Replace(next)))
    }

    /// Writes `ops` in order as one atomic change: one batch when they touch one tree, a
    /// transaction over the trees otherwise.
    fn write_atomically(&self, ops: Vec<ReplicationOp>) -> Result<(), StoreError> {
        let write = |source| StoreError::Write { path: self.inner.path.clone(), source };
        let mut batches: BTreeMap<Vec<u8>, sled::Batch> = BTreeMap::new();
        for op in ops {
            let b = batches.entry(op.tree).or_default();
            match op.value {
                Some(v) => b.insert(op.key, v),
                None => b.remove(op.key),
            }
        }
        let db = &self.inner.db;
        if batches.len() <= 1 {
            let Some((name, batch)) = batches.into_iter().next() else { return Ok(()) };
            let tree = if name.is_empty() { (**db).clone() } else { db.open_tree(&name).map_err(write)? };
            return tree.apply_batch(batch).map_err(write);
        }
        let mut trees = Vec::with_capacity(batches.len());
        let mut list = Vec::with_capacity(batches.len());
        for (name, batch) in batches {
            trees.push(if name.is_empty() { (**db).clone() } else { db.open_tree(&name).map_err(write)? });
            list.push(batch);
        }
        use sled::Transactional;
        trees
            .as_slice()
            .transaction(|tx| {
                for (t, b) in tx.iter().zip(&list) {
                    t.apply_batch(b)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(source) => write(source),
                // Nothing here aborts; sled would only report an abort we asked for.
                sled::transaction::TransactionError::Abort(()) => {
                    write(sled::Error::ReportableBug("transaction aborted".into()))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::StoreSettings;
    use crate::model::{SiteId, Timestamp};
    use crate::outbox::Outbound;

    fn open(dir: &Path) -> Store {
        Store::open(&StoreSettings { path: dir.to_path_buf(), max_bytes: 1 << 20 }, &SiteId::new("fra1")).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn sample() -> ReplicationRecord {
        ReplicationRecord {
            kind: RecordKind::Changes,
            epoch: "00000000000000aa".into(),
            position: ReplicaPosition { term: 2, index: 7 },
            prev: ReplicaPosition { term: 1, index: 6 },
            upto_seq: 41,
            ops: vec![
                ReplicationOp::insert(b"o1", b"value"),
                ReplicationOp::remove(b"o0"),
                ReplicationOp { tree: b"other".to_vec(), key: b"k".to_vec(), value: Some(Vec::new()) },
            ],
        }
    }

    #[test]
    fn a_record_round_trips_through_its_encoding() {
        let r = sample();
        assert_eq!(ReplicationRecord::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn damaged_records_are_refused_with_what_and_where() {
        let bytes = sample().encode();
        assert_eq!(ReplicationRecord::decode(b"HMRX"), Err(RecordDecodeError::NotARecord));
        let mut newer = bytes.clone();
        newer[4] = 9;
        let err = ReplicationRecord::decode(&newer).unwrap_err();
        assert_eq!(err, RecordDecodeError::Version { found: 9, supported: 1 });
        assert!(err.to_string().contains("same release"), "{err}");
        // Cut anywhere, it says where and in what.
        for cut in 0..bytes.len() {
            let err = ReplicationRecord::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    RecordDecodeError::Truncated { .. }
                        | RecordDecodeError::NotARecord
                        | RecordDecodeError::Invalid { .. }
                ),
                "{cut}: {err}"
            );
        }
        assert_eq!(
            ReplicationRecord::decode(&bytes[..bytes.len() - 1]).unwrap_err().to_string(),
            // The last op's value is empty: the cut falls in its length.
            format!("replication record: truncated in the op value length at byte {}", bytes.len() - 4)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ReplicationRecord::decode(&longer).unwrap_err().to_string().contains("1 bytes after the last op"));
        let mut kind = bytes;
        kind[5] = 7;
        assert!(ReplicationRecord::decode(&kind).unwrap_err().to_string().contains("unknown record kind 7 at byte 5"));
    }

    #[test]
    fn an_op_count_beyond_the_record_is_refused_before_allocating() {
        let mut r = sample();
        r.ops.clear();
        let mut bytes = r.encode();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(ReplicationRecord::decode(&bytes).unwrap_err().to_string().contains("exceeds the record"));
    }

    #[test]
    fn records_and_snapshots_carry_every_tree_but_the_node_local_one() {
        let rt = rt();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(da.path());
        let b = open(db.path());
        a.inner.db.open_tree(b"extra").unwrap().insert(b"k", b"v").unwrap();
        a.inner.db.open_tree(NODE_LOCAL_TREE).unwrap().insert(b"voter", b"gw1's").unwrap();
        b.inner.db.open_tree(NODE_LOCAL_TREE).unwrap().insert(b"voter", b"gw2's").unwrap();
        b.inner.db.open_tree(b"stale").unwrap().insert(b"old", b"x").unwrap();
        let snap = rt.block_on(a.snapshot()).unwrap();
        assert!(snap.ops().iter().all(|o| o.tree.as_slice() != NODE_LOCAL_TREE));
        rt.block_on(b.apply_replicated(&snap)).unwrap();
        assert_eq!(b.inner.db.open_tree(b"extra").unwrap().get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(b.inner.db.open_tree(b"stale").unwrap().is_empty(), "a snapshot replaces every tree");
        let local = b.inner.db.open_tree(NODE_LOCAL_TREE).unwrap().get(b"voter").unwrap();
        assert_eq!(local.as_deref(), Some(&b"gw2's"[..]), "the node-local tree is this node's own");

        // A record over two trees applies as one.
        let mut r = sample();
        r.epoch = b.epoch();
        r.prev = b.replica_position().unwrap();
        r.position = ReplicaPosition { term: 2, index: r.prev.index + 1 };
        r.ops = vec![
            ReplicationOp { tree: b"extra".to_vec(), key: b"k".to_vec(), value: None },
            ReplicationOp::insert(META_REPLICA, &r.position.to_bytes()),
        ];
        rt.block_on(b.apply_replicated(&r)).unwrap();
        assert!(b.inner.db.open_tree(b"extra").unwrap().is_empty());
        assert_eq!(b.replica_position().unwrap(), r.position);
        // One that writes the node-local tree is refused, and writes nothing.
        let mut bad = r.clone();
        bad.prev = r.position;
        bad.position.index += 1;
        bad.ops = vec![
            ReplicationOp::insert(META_REPLICA, &bad.position.to_bytes()),
            ReplicationOp { tree: NODE_LOCAL_TREE.to_vec(), key: b"voter".to_vec(), value: None },
        ];
        let err = rt.block_on(b.apply_replicated(&bad)).unwrap_err();
        assert!(err.to_string().contains("node-local"), "{err}");
        assert_eq!(b.replica_position().unwrap(), r.position);
    }

    #[test]
    fn a_record_that_would_break_the_accounting_is_refused_whole() {
        let rt = rt();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(da.path());
        let b = open(db.path());
        rt.block_on(b.apply_replicated(&rt.block_on(a.snapshot()).unwrap())).unwrap();
        let position = ReplicaPosition { term: 1, index: 1 };
        let base = ReplicationRecord {
            kind: RecordKind::Changes,
            epoch: a.epoch(),
            position,
            prev: ReplicaPosition::default(),
            upto_seq: 0,
            ops: vec![ReplicationOp::insert(META_REPLICA, &position.to_bytes())],
        };
        let with = |op: ReplicationOp| {
            let mut r = base.clone();
            r.ops.insert(0, op);
            r
        };
        let cases = [
            (with(ReplicationOp::insert(&record::outbox_key(0), b"garbage")), "outbox seq 0"),
            (with(ReplicationOp::insert(META_NEXT_SEQ, b"1")), "next seq is not 8 bytes"),
            (with(ReplicationOp::insert(META_EPOCH, b"ffff")), "may not rewrite the epoch"),
            (with(ReplicationOp::insert(META_DROPS, b"{")), "drop report"),
            (ReplicationRecord { ops: Vec::new(), ..base.clone() }, "does not write its position"),
        ];
        for (r, why) in cases {
            let err = rt.block_on(b.apply_replicated(&r)).unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
            assert_eq!(b.replica_position().unwrap(), ReplicaPosition::default());
        }
        // A message beyond the next seq would be invisible and break the seq stream.
        let msg = Outbound {
            topic: "t".into(),
            qos: 1,
            retain: false,
            class: MessageClass::Pattern,
            payload: serde_json::json!({}),
        };
        a.replicate_as(1).unwrap();
        rt.block_on(a.commit(&[msg], None, Timestamp(0))).unwrap();
        let mut r = rt.block_on(a.take_replication()).unwrap().remove(0);
        r.ops.retain(|o| o.key.as_slice() != META_NEXT_SEQ);
        let err = rt.block_on(b.apply_replicated(&r)).unwrap_err();
        assert!(err.to_string().contains("beyond the next seq"), "{err}");
        assert_eq!(b.stats().unwrap().depth, 0);
    }
}
