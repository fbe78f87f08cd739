//! The sled store: the outbox FIFO, the engine state and the store's own metadata.
//!
//! Invariants (docs/contracts.md#durability):
//! - **Nothing enters the outbox without being durable**: `commit` writes a batch of messages
//!   and the engine state in one atomic sled batch, then flushes; a message becomes visible to
//!   `peek_from` (and so to the publisher) only once a flush that covered it has completed.
//!   A crash therefore never leaves messages without the engine state that produced them, or
//!   the reverse, and never publishes a `seq` that a restart could hand out again.
//! - **Nothing leaves the outbox before PUBACK**: the only ways out are `ack(seq)` (called by
//!   the publisher on the broker's PUBACK of exactly that message, or once a QoS 0 message is
//!   written), the bound below, and `discard` of a message that can never be published.
//! - **Bounded**: at `max_bytes` the outbox drops the lowest `MessageClass::drop_rank` first,
//!   oldest first (health, rollups, incident updates); incident `opened`/`resolved` events and
//!   pattern signals go only when nothing else is left. The health message being committed
//!   (it carries the drop report) is kept over older incident updates. Every drop is logged, counted and kept
//!   (persisted) for the next health message (`take_drop_report`); when a health message is
//!   itself shed, the report it carried goes back in front of the pending one.
//! - `seq` is per store, strictly increasing, never reused; `msg_id` is `"<epoch>-<seq>"` with a
//!   random epoch chosen when the store is created, so a reset store cannot collide with ids
//!   the NOC has already seen.
//! - Opening a corrupt store or one written by a newer version fails with a clear error and
//!   deletes nothing.
//! - **Replication** (the gateway pair, `replication.rs`): once `replicate_as` is called, every
//!   change is also captured as a record for the standby; the standby applies records and
//!   snapshots with `apply_replicated`, which may replace the epoch (so `epoch()` returns a copy).

mod drops;
mod record;
mod replication;
mod voter_record;

pub use voter_record::{read_voter_record, write_voter_record};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use tracing::{error, info, warn};

pub use drops::{DropReason, DropReport, DroppedRange, MAX_DROP_RANGES};
pub use replication::{
    NODE_LOCAL_TREE, REPLICATION_RECORD_VERSION, RecordDecodeError, RecordKind, ReplicaPosition, ReplicationError,
    ReplicationOp, ReplicationRecord,
};

use crate::config::StoreSettings;
use crate::model::{SiteId, Timestamp};
use crate::outbox::{Envelope, MessageClass, Outbound, StoredMessage, with_envelope};
pub use record::StateChunks;
use record::{ENGINE_STATE, META_DROPS, META_EPOCH, META_NEXT_SEQ, META_SCHEMA, META_STATE_CHUNKS, STATE_CHUNK_BYTES};

/// Layout version this build writes and understands. 2: outbox records may be stored in
/// pieces (`record::split`); a release that knows only 1 refuses such a store by name instead
/// of calling its records corrupt. A store of version 1 is read as it is and marked 2.
pub const STORE_SCHEMA_VERSION: u32 = 2;
/// The sled directory inside `[store] path`.
pub const SLED_DIR: &str = "sled";
/// sled's page cache; its 1 GiB default is the whole RAM of a small gateway. The outbox is
/// read back once, in order, so a small cache costs little; the engine state, rewritten with
/// each event batch, otherwise stays cached (at 100 + 100 devices with state saves, 8 MiB cost
/// a median 1.2 MiB of peak RSS over 1 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024;
/// Largest payload (envelope included) the outbox accepts: what fits a 1 MiB MQTT packet
/// with room for the topic and headers. Larger messages are dropped (and reported) at commit
/// instead of poisoning the MQTT session later.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024 - 4096;

/// Why the store failed. Every variant names the store path.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "store {path}: cannot open ({source}); nothing was deleted — if the store is corrupt, move the directory aside and restart"
    )]
    Open { path: PathBuf, source: sled::Error },
    #[error("store {path}: in use by another process (is hallmonitor already running?)")]
    Locked { path: PathBuf },
    #[error(
        "store {path}: corrupt entry {what}: {reason}; nothing was deleted — move the directory aside to start a new store"
    )]
    Corrupt { path: PathBuf, what: String, reason: String },
    #[error(
        "store {path}: written by a newer hallmonitor (store schema {found}, this build understands up to {supported}); nothing was deleted"
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("store {path}: write failed ({source}); nothing was written, retry later (disk full?)")]
    Write { path: PathBuf, source: sled::Error },
    #[error("store {path}: flush failed ({source}); the last batch is not durable yet and will be retried")]
    Flush { path: PathBuf, source: sled::Error },
    #[error("store {path}: read failed: {source}")]
    Read { path: PathBuf, source: sled::Error },
}

/// Outbox figures for health and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages waiting for PUBACK (or to be sent).
    pub depth: u64,
    /// Bytes they occupy (the quantity bounded by `max_bytes`).
    pub bytes: u64,
    pub max_bytes: u64,
    /// `created_at` of the oldest waiting message.
    pub oldest_created_at: Option<Timestamp>,
    /// Messages dropped since the store was opened.
    pub dropped_since_open: u64,
    /// The last `seq` assigned (0 before the first).
    pub last_seq: u64,
}

impl OutboxStats {
    /// Age of the oldest un-acknowledged message at `now`.
    pub fn oldest_age(&self, now: Timestamp) -> Option<Duration> {
        self.oldest_created_at.map(|t| now.since(t))
    }
}

/// Options beyond `StoreSettings` (tests and benchmarks change them).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: u64,
    pub max_payload_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { cache_bytes: DEFAULT_CACHE_BYTES, max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES }
    }
}

/// The store handle; cheap to clone, shared by the agent (commit) and the publisher (peek, ack).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    path: PathBuf,
    site: SiteId,
    /// Replaced only when a replication snapshot adopts the active's epoch.
    epoch: RwLock<String>,
    max_bytes: u64,
    max_payload_bytes: usize,
    index: Mutex<Index>,
    /// Highest `seq` covered by a completed flush: what the publisher may see.
    durable_seq: AtomicU64,
    /// Highest `seq` the publisher may see besides: in a gateway pair, what the standby holds
    /// (the sync rule, `ha::replica`); `u64::MAX` otherwise.
    publish_limit: AtomicU64,
}

/// In-memory accounting, rebuilt from disk at open. Only the droppable classes are indexed
/// (seq -> bytes); the never-dropped-first classes are found by scanning from the oldest.
#[derive(Default)]
struct Index {
    next_seq: u64,
    depth: u64,
    bytes: u64,
    /// Per drop rank 0..=2.
    droppable: [BTreeMap<u64, u64>; 3],
    drops: DropReport,
    dropped_since_open: u64,
    /// Chunks of the saved engine state (`record::state_chunk_key`), so a smaller state can
    /// remove the ones it no longer needs.
    state_chunks: u32,
    /// The active's replication capture (`replicate_as`), if on.
    replication: Option<replication::Capture>,
}

impl Index {
    fn remove(&mut self, seq: u64, class: MessageClass, size: u64) {
        self.depth = self.depth.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        if let Some(m) = self.droppable.get_mut(class.drop_rank() as usize) {
            m.remove(&seq);
        }
    }
    fn add(&mut self, seq: u64, class: MessageClass, size: u64) {
        self.depth += 1;
        self.bytes += size;
        if let Some(m) = self.droppable.get_mut(class.drop_rank() as usize) {
            m.insert(seq, size);
        }
    }
}

/// The rank at which a message of `class` arriving in the current commit may be shed.
/// Existing entries shed at `class.drop_rank()`; a *new* health message only after the
/// incident updates, because it is the one that tells the NOC what was dropped.
pub fn shed_rank_of_new(class: MessageClass) -> u8 {
    match class {
        MessageClass::Health => MessageClass::IncidentUpdate.drop_rank(),
        c => c.drop_rank(),
    }
}

/// A resolved incident whose chronicle makes it too large to publish keeps its first and
/// last entries and says how many in between were omitted, rather than being dropped whole
/// (it is a lifecycle event). `None` when there is no chronicle to trim or nothing fits.
fn trim_chronicle(payload: &Value, fits: impl Fn(&Value) -> bool) -> Option<Value> {
    let entries = payload.get("chronicle")?.as_array()?;
    let n = entries.len();
    // Keep `keep` entries at each end (at least one omitted), halving until it fits.
    let mut keep = n.saturating_sub(1) / 2;
    while keep >= 1 {
        let omitted = n - 2 * keep;
        let mut kept: Vec<Value> = entries[..keep].to_vec();
        let at = entries[keep].get("at").cloned().unwrap_or(Value::Null);
        kept.push(serde_json::json!({
            "at": at,
            "what": "truncated",
            "detail": format!("{omitted} chronicle entries omitted: the message would exceed the size limit"),
        }));
        kept.extend_from_slice(&entries[n - keep..]);
        let mut p = payload.clone();
        p["chronicle"] = Value::Array(kept);
        if fits(&p) {
            return Some(p);
        }
        keep /= 2;
    }
    None
}

/// Bytes an entry counts against `max_bytes`: key plus record.
pub fn entry_bytes(topic: &str, payload_len: usize) -> u64 {
    (9 + 14 + topic.len() + payload_len) as u64
}

/// The published payload bytes of `msg` once it has `seq` (what `commit` stores).
pub fn enveloped_payload(site: &SiteId, epoch: &str, seq: u64, created_at: Timestamp, payload: &Value) -> Vec<u8> {
    let env = Envelope { site: site.clone(), msg_id: format!("{epoch}-{seq}"), seq, created_at };
    // Serializing a serde_json::Value cannot fail.
    serde_json::to_vec(&with_envelope(payload, &env)).unwrap_or_default()
}

/// Opens the sled directory. sled may release its file lock a moment after the last handle
/// is dropped (its background threads end asynchronously), so a lock conflict is retried
/// briefly before it is reported as another process holding the store.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let mut tries = 0;
    loop {
        // No background flusher (sled's default flushes every 500 ms): every commit flushes
        // before its messages may be published, so the timer would only make acks durable
        // sooner, at the price of two wake-ups and up to two fsyncs a second on the gateway's
        // flash. An ack lost in a crash is a duplicate with the same msg_id; a clean exit
        // flushes when sled closes.
        let config = sled::Config::new().path(path).cache_capacity(cache_bytes).flush_every_ms(None);
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                tries += 1;
                if tries >= 40 {
                    return Err(StoreError::Locked { path: path.to_owned() });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => return Err(StoreError::Open { path: path.to_owned(), source }),
        }
    }
}

/// What message `seq` takes in the outbox (key and record, all pieces): the size the bound
/// counts.
fn stored_size(db: &sled::Db, seq: u64, first: &[u8], h: &record::Header) -> sled::Result<u64> {
    let mut size = (9 + first.len()) as u64;
    if h.in_pieces {
        for piece in db.scan_prefix(record::pieces_prefix(seq)) {
            size += piece?.1.len() as u64;
        }
    }
    Ok(size)
}

/// The keys of message `seq`'s further pieces.
fn piece_keys(db: &sled::Db, seq: u64) -> sled::Result<Vec<sled::IVec>> {
    db.scan_prefix(record::pieces_prefix(seq)).keys().collect()
}

/// Pieces whose message is gone: an ack removes the first piece, then the others, so a crash
/// in between leaves them behind. Nothing reads them; they only take space.
fn remove_orphan_pieces(db: &sled::Db) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    let mut orphans = 0usize;
    for item in db.scan_prefix([record::OUTBOX_PIECE]) {
        let (k, _) = item?;
        let seq = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        if seq.is_none_or(|seq| db.get(record::outbox_key(seq)).ok().flatten().is_none()) {
            batch.remove(k);
            orphans += 1;
        }
    }
    if orphans > 0 {
        db.apply_batch(batch)?;
    }
    Ok(())
}

/// A stored record: its first piece as sled holds it, or all its pieces joined.
enum Record {
    Whole(sled::IVec),
    Joined(Vec<u8>),
}

impl std::ops::Deref for Record {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Record::Whole(v) => v,
            Record::Joined(v) => v,
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `settings.path` for `site`.
    pub fn open(settings: &StoreSettings, site: &SiteId) -> Result<Store, StoreError> {
        Self::open_with(settings, site, &StoreOptions::default())
    }

    /// `open` with explicit cache and payload limits.
    pub fn open_with(settings: &StoreSettings, site: &SiteId, opts: &StoreOptions) -> Result<Store, StoreError> {
        let path = settings.path.join(SLED_DIR);
        let db = open_sled(&path, opts.cache_bytes)?;
        let read = |source| StoreError::Read { path: path.clone(), source };
        let corrupt = |what: &str, reason: &str| StoreError::Corrupt {
            path: path.clone(),
            what: what.to_owned(),
            reason: reason.to_owned(),
        };

        let schema = db.get(META_SCHEMA).map_err(read)?;
        let epoch;
        let mut index = Index { next_seq: 1, ..Index::default() };
        match schema {
            None => {
                if !db.is_empty() {
                    return Err(corrupt("metadata", "no schema version, but the store is not empty"));
                }
                epoch = format!("{:016x}", fastrand::u64(..));
                let mut b = sled::Batch::default();
                b.insert(META_SCHEMA, &STORE_SCHEMA_VERSION.to_be_bytes());
                b.insert(META_EPOCH, epoch.as_bytes());
                b.insert(META_NEXT_SEQ, &1u64.to_be_bytes());
                db.apply_batch(b).map_err(|source| StoreError::Write { path: path.clone(), source })?;
                db.flush().map_err(|source| StoreError::Flush { path: path.clone(), source })?;
                info!(path = %path.display(), epoch = %epoch, "store created");
            }
            Some(v) => {
                let found =
                    u32::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("schema version", "not 4 bytes"))?);
                if found > STORE_SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema { path, found, supported: STORE_SCHEMA_VERSION });
                }
                if found < STORE_SCHEMA_VERSION {
                    db.insert(META_SCHEMA, &STORE_SCHEMA_VERSION.to_be_bytes())
                        .and_then(|_| db.flush())
                        .map_err(|source| StoreError::Write { path: path.clone(), source })?;
                    info!(path = %path.display(), from = found, to = STORE_SCHEMA_VERSION, "store layout version updated");
                }
                let e = db.get(META_EPOCH).map_err(read)?.ok_or_else(|| corrupt("epoch", "missing"))?;
                epoch = String::from_utf8(e.to_vec()).map_err(|_| corrupt("epoch", "not UTF-8"))?;
                let n = db.get(META_NEXT_SEQ).map_err(read)?.ok_or_else(|| corrupt("next seq", "missing"))?;
                index.next_seq =
                    u64::from_be_bytes(n.as_ref().try_into().map_err(|_| corrupt("next seq", "not 8 bytes"))?);
                // Sequence numbers start at 1; a 0 would make `durable_seq` underflow.
                if index.next_seq == 0 {
                    return Err(corrupt("next seq", "0 (sequence numbers start at 1)"));
                }
                if let Some(d) = db.get(META_DROPS).map_err(read)? {
                    index.drops = serde_json::from_slice(&d).map_err(|e| corrupt("drop report", &e.to_string()))?;
                }
                if let Some(c) = db.get(META_STATE_CHUNKS).map_err(read)? {
                    index.state_chunks = u32::from_be_bytes(
                        c.as_ref().try_into().map_err(|_| corrupt("engine state chunk count", "not 4 bytes"))?,
                    );
                }
                for item in db.range(record::outbox_key(0)..) {
                    let (k, v) = item.map_err(read)?;
                    let Some(seq) = record::seq_of_key(&k) else { break };
                    let h = record::decode_header(&v).map_err(|r| corrupt(&format!("outbox seq {seq}"), r))?;
                    if seq >= index.next_seq {
                        return Err(corrupt(&format!("outbox seq {seq}"), "beyond the stored next seq"));
                    }
                    let size = stored_size(&db, seq, &v, &h).map_err(read)?;
                    index.add(seq, h.class, size);
                }
                remove_orphan_pieces(&db).map_err(|source| StoreError::Write { path: path.clone(), source })?;
                info!(path = %path.display(), epoch = %epoch, depth = index.depth, bytes = index.bytes,
                    next_seq = index.next_seq, "store opened");
            }
        }
        let durable = index.next_seq - 1;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path,
                site: site.clone(),
                epoch: RwLock::new(epoch),
                max_bytes: settings.max_bytes,
                max_payload_bytes: opts.max_payload_bytes,
                index: Mutex::new(index),
                durable_seq: AtomicU64::new(durable),
                publish_limit: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// The sled directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The random epoch of this store (first half of every `msg_id`).
    pub fn epoch(&self) -> String {
        self.inner.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `msg_id` of `seq` in this store.
    pub fn msg_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch())
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than stopping: recover the guard rather than propagate poison.
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `msgs` (and, if given, the engine state) durable, in one atomic batch, then
    /// flushes. Returns the `seq` assigned to each message, in order (a message dropped at
    /// once because the outbox is full or it is too large still gets a `seq`, reported in
    /// the drop report).
    ///
    /// Errors are logged here (a full disk is an error, never a panic). On `Write` nothing
    /// was written: keep the batch and retry. On `Flush` the batch is
    /// written but not yet durable; it becomes visible to the publisher after a later
    /// successful flush (the next `commit` or `flush`), so do not commit it again.
    pub async fn commit(
        &self,
        msgs: &[Outbound],
        engine_state: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Vec<u64>, StoreError> {
        self.commit_chunks(msgs, engine_state.map(StateChunks::from), now).await
    }

    /// `commit`, with the engine state serialized straight into its chunks (the daemon's way).
    pub async fn commit_chunks(
        &self,
        msgs: &[Outbound],
        engine_state: Option<StateChunks>,
        now: Timestamp,
    ) -> Result<Vec<u64>, StoreError> {
        let result = match self.apply(msgs, engine_state, now) {
            Ok(upto) => self.flush_upto(upto).await.map(|()| upto),
            Err(e) => Err(e),
        };
        match result {
            Ok(upto) => Ok(((upto + 1 - msgs.len() as u64)..=upto).collect()),
            Err(e) => {
                // Logged here so a full disk is always visible; the caller retries.
                error!(path = %self.inner.path.display(), messages = msgs.len(), error = %e, "store commit failed");
                Err(e)
            }
        }
    }

    /// Saves only the engine state (durably).
    pub async fn save_engine_state(&self, state: &[u8], now: Timestamp) -> Result<(), StoreError> {
        self.commit(&[], Some(state), now).await.map(|_| ())
    }

    /// Flushes everything written so far and publishes it to `peek_from`.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let upto = self.index().next_seq - 1;
        self.flush_upto(upto).await
    }

    async fn flush_upto(&self, upto: u64) -> Result<(), StoreError> {
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|source| StoreError::Flush { path: self.inner.path.clone(), source })?;
        self.inner.durable_seq.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Writes the batch (not yet flushed); returns the last seq assigned.
    fn apply(&self, msgs: &[Outbound], engine_state: Option<StateChunks>, now: Timestamp) -> Result<u64, StoreError> {
        let mut idx = self.index();
        let first_seq = idx.next_seq;
        let epoch = self.epoch();
        let mut batch = replication::RecordingBatch::new(&idx);

        // New entries, with seq assigned; oversize ones are dropped right away.
        struct New {
            seq: u64,
            class: MessageClass,
            size: u64,
            value: Vec<u8>,
            dropped: bool,
        }
        let mut new = Vec::with_capacity(msgs.len());
        let mut report = idx.drops.clone();
        let mut drops_now: Vec<(u64, MessageClass, DropReason)> = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let seq = first_seq + i as u64;
            let mut payload = enveloped_payload(&self.inner.site, &epoch, seq, now, &m.payload);
            if payload.len() > self.inner.max_payload_bytes
                && let Some(trimmed) = trim_chronicle(&m.payload, |p| {
                    enveloped_payload(&self.inner.site, &epoch, seq, now, p).len() <= self.inner.max_payload_bytes
                })
            {
                warn!(path = %self.inner.path.display(), seq, "chronicle too large for one message; middle entries omitted");
                payload = enveloped_payload(&self.inner.site, &epoch, seq, now, &trimmed);
            }
            let dropped = payload.len() > self.inner.max_payload_bytes;
            if dropped {
                drops_now.push((seq, m.class, DropReason::Oversize));
            }
            let value = if dropped {
                Vec::new()
            } else {
                record::encode(m.class, m.qos.min(2), m.retain, now, &m.topic, &payload)
            };
            let size = (9 + value.len()) as u64;
            new.push(New { seq, class: m.class, size, value, dropped });
        }
        // first_seq >= 1, so this is first_seq - 1 for an empty batch.
        let last_seq = first_seq + msgs.len() as u64 - 1;

        // Shed until the batch fits: lowest rank first, oldest first, existing entries before
        // the new ones of the same rank (they are older). A new health message carries the
        // drop report the NOC needs, so it outlives older incident updates (see
        // `shed_rank_of_new`); the older health messages it supersedes go first.
        let incoming: u64 = new.iter().filter(|n| !n.dropped).map(|n| n.size).sum();
        let mut total = idx.bytes + incoming;
        let mut victims: Vec<(u64, MessageClass, u64)> = Vec::new(); // existing: seq, class, size
        if total > self.inner.max_bytes {
            'ranks: for rank in 0..=3u8 {
                if rank < 3 {
                    for (&seq, &size) in idx.droppable[rank as usize].iter() {
                        if total <= self.inner.max_bytes {
                            break 'ranks;
                        }
                        // The class is one of those with this rank; read it back for the report.
                        let class = self.class_at(seq).unwrap_or(match rank {
                            0 => MessageClass::Health,
                            1 => MessageClass::Rollup,
                            _ => MessageClass::IncidentUpdate,
                        });
                        victims.push((seq, class, size));
                        total -= size;
                    }
                } else {
                    let already: BTreeSet<u64> = victims.iter().map(|v| v.0).collect();
                    for item in self.inner.db.range(record::outbox_key(0)..) {
                        if total <= self.inner.max_bytes {
                            break 'ranks;
                        }
                        let (k, v) =
                            item.map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
                        let Some(seq) = record::seq_of_key(&k) else { break };
                        if already.contains(&seq) {
                            continue;
                        }
                        let (class, size) = match record::decode_header(&v) {
                            Ok(h) => (
                                h.class,
                                stored_size(&self.inner.db, seq, &v, &h)
                                    .map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?,
                            ),
                            Err(_) => (MessageClass::Pattern, (k.len() + v.len()) as u64),
                        };
                        victims.push((seq, class, size));
                        total -= size;
                    }
                }
                // New messages of this rank, oldest first; a new health message after the new
                // updates of its shed rank.
                for health_pass in [false, true] {
                    for n in new.iter_mut().filter(|n| {
                        !n.dropped
                            && shed_rank_of_new(n.class) == rank
                            && (n.class == MessageClass::Health) == health_pass
                    }) {
                        if total <= self.inner.max_bytes {
                            break 'ranks;
                        }
                        n.dropped = true;
                        drops_now.push((n.seq, n.class, DropReason::Full));
                        total -= n.size;
                    }
                }
            }
        }
        for &(seq, class, _) in &victims {
            drops_now.push((seq, class, DropReason::Full));
            batch.remove(&record::outbox_key(seq));
            for key in piece_keys(&self.inner.db, seq)
                .map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?
            {
                batch.remove(key);
            }
        }
        // A health message shed here takes away the drop report it carries: put those reports
        // back in front of the pending one, so the next health message repeats them and every
        // shed seq is still reported.
        let mut carried: Vec<(u64, DropReport)> = Vec::new();
        for &(seq, class, _) in &victims {
            if class == MessageClass::Health
                && let Some(r) = self.carried_drop_report(seq)
            {
                carried.push((seq, r));
            }
        }
        for n in new.iter().filter(|n| n.dropped && n.class == MessageClass::Health) {
            let m = &msgs[(n.seq - first_seq) as usize];
            if let Some(r) = m.payload.get("dropped").and_then(|d| serde_json::from_value::<DropReport>(d.clone()).ok())
            {
                carried.push((n.seq, r));
            }
        }
        if !carried.is_empty() {
            carried.sort_by_key(|c| c.0);
            let mut merged = DropReport::default();
            for (_, r) in carried {
                merged.extend(r);
            }
            merged.extend(report);
            report = merged;
        }
        drops_now.sort_by_key(|d| d.0);
        for &(seq, class, reason) in &drops_now {
            report.record(class, reason, seq);
        }
        for n in new.iter_mut() {
            if !n.dropped {
                let (first, pieces) = record::split(std::mem::take(&mut n.value));
                batch.insert(&record::outbox_key(n.seq), first);
                for (i, piece) in (1u32..).zip(pieces) {
                    batch.insert(&record::piece_key(n.seq, i), piece);
                }
            }
        }
        batch.insert(META_NEXT_SEQ, &(last_seq + 1).to_be_bytes());
        if !drops_now.is_empty() {
            batch.insert(META_DROPS, serde_json::to_vec(&report).unwrap_or_default());
        }
        let state_chunks = engine_state.map(|s| {
            let chunks = s.into_chunks();
            let count = chunks.len() as u32;
            for (n, chunk) in (0u32..).zip(chunks) {
                batch.insert(&record::state_chunk_key(n), chunk);
            }
            for n in count..idx.state_chunks {
                batch.remove(&record::state_chunk_key(n));
            }
            batch.insert(META_STATE_CHUNKS, &count.to_be_bytes());
            batch.remove(ENGINE_STATE);
            count
        });

        let (batch, replicated) = batch.seal(&idx, &epoch, last_seq);
        self.inner
            .db
            .apply_batch(batch)
            .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;

        // Written: now the accounting may follow.
        replication::queue(&mut idx, replicated);
        if let Some(count) = state_chunks {
            idx.state_chunks = count;
        }
        for &(seq, class, size) in &victims {
            idx.remove(seq, class, size);
        }
        for n in &new {
            if !n.dropped {
                idx.add(n.seq, n.class, n.size);
            }
        }
        idx.next_seq = last_seq + 1;
        idx.dropped_since_open += drops_now.len() as u64;
        idx.drops = report;
        drop(idx);
        if !drops_now.is_empty() {
            let mut by_class: BTreeMap<MessageClass, u64> = BTreeMap::new();
            for d in &drops_now {
                *by_class.entry(d.1).or_default() += 1;
            }
            warn!(path = %self.inner.path.display(), dropped = drops_now.len(), first_seq = drops_now[0].0,
                by_class = ?by_class, max_bytes = self.inner.max_bytes, "outbox dropped messages");
        }
        Ok(last_seq)
    }

    /// The non-empty `dropped` report inside the stored health message `seq`.
    fn carried_drop_report(&self, seq: u64) -> Option<DropReport> {
        let first = self.inner.db.get(record::outbox_key(seq)).ok()??;
        let h = record::decode_header(&first).ok()?;
        let v = self.whole_record(seq, first, &h).ok()?;
        let (_, payload) = record::body(&v, &h).ok()?;
        let json: Value = serde_json::from_slice(payload).ok()?;
        let r: DropReport = serde_json::from_value(json.get("dropped")?.clone()).ok()?;
        (!r.is_empty()).then_some(r)
    }

    /// Record `seq` whole, from its first piece.
    fn whole_record(&self, seq: u64, first: sled::IVec, h: &record::Header) -> sled::Result<Record> {
        if !h.in_pieces {
            return Ok(Record::Whole(first));
        }
        let mut joined = first.to_vec();
        for piece in self.inner.db.scan_prefix(record::pieces_prefix(seq)) {
            joined.extend_from_slice(&piece?.1);
        }
        Ok(Record::Joined(joined))
    }

    fn class_at(&self, seq: u64) -> Option<MessageClass> {
        let v = self.inner.db.get(record::outbox_key(seq)).ok()??;
        record::decode_header(&v).ok().map(|h| h.class)
    }

    /// Up to `n` durable messages after `after` (from the oldest when `None`), in seq order.
    pub fn peek_from(&self, after: Option<u64>, n: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let durable =
            self.inner.durable_seq.load(Ordering::Acquire).min(self.inner.publish_limit.load(Ordering::Acquire));
        let start = match after {
            Some(s) if s >= durable => return Ok(Vec::new()),
            Some(s) => s + 1,
            None => 0,
        };
        let mut out = Vec::with_capacity(n.min(1024));
        if n == 0 {
            return Ok(out);
        }
        for item in self.inner.db.range(record::outbox_key(start)..=record::outbox_key(durable)) {
            let (k, v) = item.map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
            let Some(seq) = record::seq_of_key(&k) else { break };
            let corrupt = |reason: &str| StoreError::Corrupt {
                path: self.inner.path.clone(),
                what: format!("outbox seq {seq}"),
                reason: reason.to_owned(),
            };
            let h = record::decode_header(&v).map_err(corrupt)?;
            let v = self
                .whole_record(seq, v, &h)
                .map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
            let (topic, payload) = record::body(&v, &h).map_err(corrupt)?;
            out.push(StoredMessage {
                seq,
                topic: topic.to_owned(),
                qos: h.qos,
                retain: h.retain,
                class: h.class,
                created_at: h.created_at,
                payload: payload.to_vec(),
                stored_bytes: (k.len() + v.len()) as u64,
            });
            if out.len() >= n {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes exactly the message `seq` (the broker acknowledged it). Returns whether it was
    /// still there (it may have been dropped at the bound meanwhile). Not flushed: losing an
    /// ack in a crash only means a duplicate with the same `msg_id`.
    pub fn ack(&self, seq: u64) -> Result<bool, StoreError> {
        let mut idx = self.index();
        Ok(self.remove_message(&mut idx, seq)?.is_some())
    }

    /// Removes message `seq` from the tree and the index (held by the caller, so the two stay
    /// in step); its class, or None if it was not there (already acked or dropped).
    fn remove_message(&self, idx: &mut Index, seq: u64) -> Result<Option<MessageClass>, StoreError> {
        let old = self
            .inner
            .db
            .remove(record::outbox_key(seq))
            .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;
        let Some(v) = old else { return Ok(None) };
        replication::note(idx, &record::outbox_key(seq), None);
        let header = record::decode_header(&v);
        let mut size = (9 + v.len()) as u64;
        if header.is_ok_and(|h| h.in_pieces) {
            // Removed after the first piece: a crash in between leaves pieces that `open`
            // removes; the message itself is gone either way.
            let mut batch = sled::Batch::default();
            for piece in self.inner.db.scan_prefix(record::pieces_prefix(seq)) {
                let (k, p) = piece.map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
                size += p.len() as u64;
                replication::note(idx, &k, None);
                batch.remove(k);
            }
            self.inner
                .db
                .apply_batch(batch)
                .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;
        }
        let class = header.map(|h| h.class).unwrap_or(MessageClass::Pattern);
        idx.remove(seq, class, size);
        Ok(Some(class))
    }

    /// Removes a message that can never be published (e.g. larger than the broker's packet
    /// limit), recording it in the drop report.
    pub fn discard(&self, seq: u64, reason: DropReason) -> Result<bool, StoreError> {
        let mut idx = self.index();
        let Some(class) = self.remove_message(&mut idx, seq)? else { return Ok(false) };
        idx.drops.record(class, reason, seq);
        idx.dropped_since_open += 1;
        let report = serde_json::to_vec(&idx.drops).unwrap_or_default();
        replication::note(&mut idx, META_DROPS, Some(&report));
        // Written under the index lock, in the order of the notes: a commit in between would
        // otherwise carry a newer report that this older one then overwrites.
        self.inner
            .db
            .insert(META_DROPS, report)
            .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;
        drop(idx);
        warn!(path = %self.inner.path.display(), seq, class = ?class, reason = ?reason, "outbox discarded message");
        Ok(true)
    }

    /// The drops since the last call (persisted until taken), for the next health message.
    pub fn take_drop_report(&self) -> Result<DropReport, StoreError> {
        let mut idx = self.index();
        if idx.drops.is_empty() {
            return Ok(DropReport::default());
        }
        self.inner
            .db
            .remove(META_DROPS)
            .map_err(|source| StoreError::Write { path: self.inner.path.clone(), source })?;
        replication::note(&mut idx, META_DROPS, None);
        Ok(std::mem::take(&mut idx.drops))
    }

    /// The drops not yet taken, without taking them.
    pub fn pending_drop_report(&self) -> DropReport {
        self.index().drops.clone()
    }

    /// Depth, bytes and the oldest waiting message.
    pub fn stats(&self) -> Result<OutboxStats, StoreError> {
        let (depth, bytes, dropped_since_open, last_seq) = {
            let idx = self.index();
            (idx.depth, idx.bytes, idx.dropped_since_open, idx.next_seq - 1)
        };
        let mut oldest_created_at = None;
        if let Some(item) = self.inner.db.range(record::outbox_key(0)..).next() {
            let (k, v) = item.map_err(|source| StoreError::Read { path: self.inner.path.clone(), source })?;
            if record::seq_of_key(&k).is_some() {
                oldest_created_at = record::decode_header(&v).ok().map(|h| h.created_at);
            }
        }
        Ok(OutboxStats {
            depth,
            bytes,
            max_bytes: self.inner.max_bytes,
            oldest_created_at,
            dropped_since_open,
            last_seq,
        })
    }

    /// The engine state saved by the last `commit` that carried one.
    pub fn load_engine_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let db = &self.inner.db;
        let read = |source| StoreError::Read { path: self.inner.path.clone(), source };
        if db.get(META_STATE_CHUNKS).map_err(read)?.is_none() {
            // Saved by a version that wrote the state as one value (or never saved).
            return Ok(db.get(ENGINE_STATE).map_err(read)?.map(|v| v.to_vec()));
        }
        let count = self.index().state_chunks;
        let mut state = Vec::with_capacity(count as usize * STATE_CHUNK_BYTES);
        for n in 0..count {
            let chunk = db.get(record::state_chunk_key(n)).map_err(read)?.ok_or_else(|| StoreError::Corrupt {
                path: self.inner.path.clone(),
                what: "engine state".to_owned(),
                reason: format!("chunk {n} of {count} is missing"),
            })?;
            state.extend_from_slice(&chunk);
        }
        Ok(Some(state))
    }

    /// Highest `seq` the publisher may send (covered by a completed flush).
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.load(Ordering::Acquire)
    }

    /// The outbox's bound in bytes (`[store] max_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// Limits what `peek_from` hands out to `seq`s up to `upto` (`u64::MAX`: no limit). The
    /// gateway pair's active sets it to what its standby holds.
    pub fn set_publish_limit(&self, upto: u64) {
        self.inner.publish_limit.store(upto, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
