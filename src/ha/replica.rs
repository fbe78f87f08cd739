//! The replication stream's rules, sans-IO (docs/ha-design.md, "Replication: nothing is
//! published that the standby does not have"). Records are opaque bytes here: the store makes
//! them (with their generation, already written into the active's own batch) and applies them;
//! this module decides what to send, what to accept and what may be published.
//!
//! - [`Leader`] (the active): keeps every [`Entry`] the standby has not acknowledged, in order;
//!   [`Leader::publishable_upto`] is the last `seq` of the newest entry the standby acknowledged
//!   (**the sync rule**: the publisher sends nothing beyond it). When something waits for the
//!   standby and the standby has been silent, or the wait has lasted, longer than
//!   `degrade_after`, the leader asks for degraded mode ([`SyncState::DegradePending`]): the
//!   shell has a majority grant a renewal carrying [`Leader::reported_generation`], then calls
//!   [`Leader::degrade`], and only then is everything pushed to it publishable. It leaves
//!   degraded mode when the standby holds everything again. A standby out of step (restarted,
//!   missed entries, another stream) gets the entries after its position when the leader still
//!   has them, else a snapshot; entries beyond `max_unacked_bytes` are dropped for a snapshot too.
//! - [`Follower`] (the standby): applies an entry only if it follows its position exactly (a
//!   record's `prev` is its position; a snapshot replaces everything), refuses any entry of a
//!   leader term older than the newest it has seen (fencing: a deposed active cannot write to
//!   it), and treats a resend of what it has as a duplicate.
//!
//! [`Entry`] and [`Reply`] have a versioned byte encoding for the peer link's frames.
//!
//! Time is passed in (`now`, the caller's monotonic clock as a [`Duration`]); nothing here reads
//! a clock, sleeps or does IO.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use super::lease::Generation;

/// One step of the stream, as the peer link carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sending leader's term (its fencing token). Not always `generation.term`: a snapshot
    /// sent just after a takeover is at the position the previous term left.
    pub term: u64,
    /// The position a store holding this entry is at.
    pub generation: Generation,
    /// The position it follows (a snapshot: its own generation).
    pub prev: Generation,
    /// The whole content rather than changes.
    pub snapshot: bool,
    /// The last outbox `seq` it covers.
    pub upto_seq: u64,
    /// The store's encoded record.
    pub bytes: Vec<u8>,
}

/// What the active's store produced, before the leader stamps its term on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub generation: Generation,
    pub prev: Generation,
    pub upto_seq: u64,
    pub bytes: Vec<u8>,
}

/// The standby's answer to an entry (or, on connecting, its greeting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It holds everything up to this position (durably).
    Applied(Generation),
    /// It is at `position` of `stream` (its store's epoch) and cannot take what it was sent:
    /// send what follows, or a snapshot when it is another stream or a position the leader no
    /// longer has. Also what a standby says when it connects.
    Behind { position: Generation, stream: String },
    /// It has seen a newer leader term: the sender is deposed.
    Fenced { newest_term: u64 },
}

/// The leader's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderParams {
    /// How long publishing may wait for an absent standby before the leader asks for degraded
    /// mode. Well under the lease, so a dead standby costs at most this much publishing delay.
    pub degrade_after: Duration,
    /// Unacknowledged entries kept for a standby; beyond, they are dropped and it gets a
    /// snapshot instead.
    pub max_unacked_bytes: usize,
}

/// Where the stream stands, for the publisher and for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// The standby has every entry.
    InSync,
    /// Entries wait for the standby, the oldest for `waiting`; publishing waits with them.
    Lagging { entries: usize, bytes: usize, waiting: Duration },
    /// The standby has been absent too long: have a majority grant a renewal carrying `report`,
    /// then call [`Leader::degrade`]. Publishing still waits.
    DegradePending { report: Generation },
    /// Publishing without the standby since `since`: the pair cannot take over meanwhile.
    Degraded { since: Duration },
}

/// Why an entry could not be pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PushError {
    #[error("replication record {got:?} does not follow {last:?}: a record was lost, the standby needs a snapshot")]
    OutOfOrder { last: Generation, got: Generation },
}

/// Why [`Leader::degrade`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DegradeError {
    #[error("degraded mode needs a majority to have granted generation {needed:?}, got {granted:?}")]
    NotCovered { needed: Generation, granted: Generation },
}

/// The active's side of the stream.
#[derive(Debug)]
pub struct Leader {
    params: LeaderParams,
    term: u64,
    /// The active store's epoch: a standby of another one needs a snapshot.
    stream: String,
    /// The newest entry pushed, and the last seq it covers.
    last: Generation,
    last_upto_seq: u64,
    /// The newest position the standby acknowledged, if it acknowledged one of ours.
    acked: Option<Generation>,
    acked_upto_seq: u64,
    /// Pushed, not acknowledged, oldest first, with when they were pushed.
    unacked: VecDeque<(Duration, Entry)>,
    unacked_bytes: usize,
    heard_at: Duration,
    /// Since when the standby needs a snapshot (it was not sent yet).
    needs_snapshot: Option<Duration>,
    /// The newest entry dropped at the bound: a snapshot older than it does not replace it.
    dropped_through: Option<Generation>,
    degraded_since: Option<Duration>,
    /// Pushed (or held at start) and neither acknowledged by the standby nor covered by a
    /// generation a majority granted: (generation, last seq), oldest first. Degraded, these
    /// wait: a voter that does not know an entry's generation could grant the standby, which
    /// may have applied older entries (its acks lost) but not this one.
    uncovered: VecDeque<(Generation, u64)>,
    /// The last seq of the newest entry a majority's grant covers.
    covered_upto_seq: u64,
    /// When this leader started: a standby that never says where it is leads to degraded mode
    /// like one that falls silent.
    started_at: Duration,
}

impl Leader {
    /// A leader for `term` over the store of epoch `stream` at `position` (whose last seq is
    /// `upto_seq`). What the standby holds is unknown until it says: nothing is publishable
    /// before it does (the store may hold commits of an earlier run that no standby has), or
    /// before degraded mode.
    pub fn new(
        now: Duration,
        params: LeaderParams,
        term: u64,
        stream: String,
        position: Generation,
        upto_seq: u64,
    ) -> Self {
        Leader {
            params,
            term,
            stream,
            last: position,
            last_upto_seq: upto_seq,
            acked: None,
            acked_upto_seq: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            heard_at: now,
            needs_snapshot: None,
            dropped_through: None,
            degraded_since: None,
            uncovered: VecDeque::from([(position, upto_seq)]),
            covered_upto_seq: 0,
            started_at: now,
        }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The lease moved to a newer term: later entries carry it (the store numbers under it too).
    pub fn set_term(&mut self, term: u64) {
        self.term = self.term.max(term);
    }

    /// The newest generation pushed.
    pub fn last(&self) -> Generation {
        self.last
    }

    /// The newest position the standby acknowledged.
    pub fn acked(&self) -> Option<Generation> {
        self.acked
    }

    /// Takes the next record of the store; returns the entry to send (`None` while the standby
    /// waits for a snapshot, or when the entries waiting passed `max_unacked_bytes` and were
    /// dropped for one). A record that does not follow the last one means one was lost on the
    /// way here: it is refused, and the standby will get a snapshot.
    pub fn push(&mut self, now: Duration, record: Record) -> Result<Option<&Entry>, PushError> {
        if record.prev != self.last || record.generation <= record.prev {
            let err = PushError::OutOfOrder { last: self.last, got: record.generation };
            self.last = self.last.max(record.generation);
            self.last_upto_seq = self.last_upto_seq.max(record.upto_seq);
            self.want_snapshot(now, false);
            return Err(err);
        }
        self.last = record.generation;
        self.last_upto_seq = record.upto_seq;
        self.uncovered.push_back((record.generation, record.upto_seq));
        let entry = Entry {
            term: self.term,
            generation: record.generation,
            prev: record.prev,
            snapshot: false,
            upto_seq: record.upto_seq,
            bytes: record.bytes,
        };
        self.unacked_bytes += entry.bytes.len();
        self.unacked.push_back((now, entry));
        if self.unacked_bytes > self.params.max_unacked_bytes {
            self.want_snapshot(now, true);
        }
        if self.needs_snapshot.is_some() {
            return Ok(None); // kept for after the snapshot; useless to the standby before it
        }
        Ok(self.unacked.back().map(|(_, e)| e))
    }

    /// Takes a snapshot of the store (made after the standby asked); returns the entries to
    /// send: the snapshot, then those pushed while it was being made (newer than it). It
    /// replaces the older ones. If entries newer than it were dropped at the bound meanwhile,
    /// the standby needs another snapshot after this one. A snapshot older than what the standby
    /// acknowledged is not sent (nothing is returned).
    pub fn push_snapshot(&mut self, now: Duration, record: Record) -> Vec<&Entry> {
        if self.acked.is_some_and(|a| record.generation < a) {
            // Read before the standby acknowledged more: it cannot help, and applied it would
            // take acknowledged commits away. Still wanted: a newer one.
            return Vec::new();
        }
        self.unacked.retain(|(_, e)| e.generation > record.generation);
        if self.uncovered.back().is_none_or(|(g, _)| *g < record.generation) {
            self.uncovered.push_back((record.generation, record.upto_seq));
        }
        self.last = self.last.max(record.generation);
        self.last_upto_seq = self.last_upto_seq.max(record.upto_seq);
        self.unacked_bytes = record.bytes.len() + self.unacked.iter().map(|(_, e)| e.bytes.len()).sum::<usize>();
        if self.dropped_through.is_some_and(|d| d > record.generation) {
            self.needs_snapshot = Some(now);
        } else {
            self.needs_snapshot = None;
            self.dropped_through = None;
        }
        let entry = Entry {
            term: self.term,
            generation: record.generation,
            prev: record.generation,
            snapshot: true,
            upto_seq: record.upto_seq,
            bytes: record.bytes,
        };
        self.unacked.push_front((now, entry));
        self.unacked.iter().map(|(_, e)| e).collect()
    }

    /// The standby's reply. Returns the entries to (re)send when it is behind and they are still
    /// here; when they are not, [`Leader::needs_snapshot`] turns true.
    pub fn on_reply(&mut self, now: Duration, reply: Reply) -> Vec<&Entry> {
        match reply {
            Reply::Fenced { .. } => Vec::new(), // the lease says what follows; nothing to send
            Reply::Applied(p) => {
                self.heard_at = now;
                // Anything else is a late ack of what is already acknowledged.
                self.advance_to(p);
                Vec::new()
            }
            Reply::Behind { position, stream } => {
                self.heard_at = now;
                let continues = stream == self.stream
                    && (self.advance_to(position) || (Some(position) == self.acked && self.needs_snapshot.is_none()))
                    // What is left must follow where it is, or resending it cannot help.
                    && self.unacked.front().is_none_or(|(_, e)| e.snapshot || e.prev == position);
                if continues {
                    self.unacked.iter().map(|(_, e)| e).collect()
                } else {
                    self.want_snapshot(now, false);
                    Vec::new()
                }
            }
        }
    }

    /// Records that the standby holds `p`, if `p` is the last entry or one still waiting; false
    /// otherwise.
    fn advance_to(&mut self, p: Generation) -> bool {
        if p == self.last {
            // It holds everything (whatever was pending is in what it holds).
            self.unacked.clear();
            self.unacked_bytes = 0;
            self.needs_snapshot = None;
            self.dropped_through = None;
            self.acked_upto_seq = self.acked_upto_seq.max(self.last_upto_seq);
        } else if let Some(at) = self.unacked.iter().position(|(_, e)| e.generation == p) {
            let upto = self.unacked[at].1.upto_seq;
            for (_, e) in self.unacked.drain(..=at) {
                self.unacked_bytes -= e.bytes.len();
            }
            self.acked_upto_seq = self.acked_upto_seq.max(upto);
        } else {
            return false;
        }
        self.acked = Some(p);
        while self.uncovered.front().is_some_and(|(g, _)| *g <= p) {
            self.uncovered.pop_front();
        }
        if self.unacked.is_empty() && self.needs_snapshot.is_none() {
            self.degraded_since = None;
        }
        true
    }

    /// Asks for a snapshot. The entries waiting are kept (those newer than the snapshot will
    /// follow it) unless `drop` (the bound): then the snapshot must be newer than all of them.
    fn want_snapshot(&mut self, now: Duration, drop: bool) {
        let since = self.unacked.front().map_or(now, |(at, _)| *at);
        if drop {
            self.dropped_through = Some(self.dropped_through.map_or(self.last, |d| d.max(self.last)));
            self.unacked.clear();
            self.unacked_bytes = 0;
        }
        self.needs_snapshot = Some(self.needs_snapshot.map_or(since, |s| s.min(since)));
    }

    /// The standby needs a snapshot: take one from the store and [`Leader::push_snapshot`] it.
    pub fn needs_snapshot(&self) -> bool {
        self.needs_snapshot.is_some()
    }

    /// Entries the standby has not acknowledged, oldest first (to resend after a reconnect).
    pub fn unacked(&self) -> impl Iterator<Item = &Entry> {
        self.unacked.iter().map(|(_, e)| e)
    }

    /// Since when something waits for the standby.
    fn waiting_since(&self) -> Option<Duration> {
        let oldest = self.unacked.front().map(|(at, _)| *at);
        match (oldest, self.needs_snapshot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Where the stream stands at `now`.
    pub fn sync_state(&self, now: Duration) -> SyncState {
        if let Some(since) = self.degraded_since {
            return SyncState::Degraded { since };
        }
        // A standby that never said where it is holds back what the store has since the start.
        let waiting = self.waiting_since().or(self.acked.is_none().then_some(self.started_at));
        let Some(since) = waiting else { return SyncState::InSync };
        let silent = now.saturating_sub(self.heard_at);
        let waiting = now.saturating_sub(since);
        if silent >= self.params.degrade_after || waiting >= self.params.degrade_after {
            return SyncState::DegradePending { report: self.last };
        }
        SyncState::Lagging { entries: self.unacked.len(), bytes: self.unacked_bytes, waiting }
    }

    /// Enters degraded mode, or goes on in it, with `granted`, the newest generation a majority
    /// granted in renewals this node still counts (each voter stored it before granting): every
    /// voter that could grant the standby then knows it. Entering needs it to cover the oldest
    /// entry the standby may lack (with a snapshot pending, everything pushed); while degraded,
    /// each call makes publishable what it covers.
    pub fn degrade(&mut self, now: Duration, granted: Generation) -> Result<(), DegradeError> {
        if self.degraded_since.is_none() {
            let needed = match (self.needs_snapshot, self.unacked.front()) {
                (None, Some((_, e))) => e.generation,
                _ => self.last,
            };
            if granted < needed {
                return Err(DegradeError::NotCovered { needed, granted });
            }
            self.degraded_since = Some(now);
        }
        while let Some(&(g, upto)) = self.uncovered.front()
            && g <= granted
        {
            self.covered_upto_seq = self.covered_upto_seq.max(upto);
            self.uncovered.pop_front();
        }
        Ok(())
    }

    /// The highest `seq` the publisher may send: what the standby acknowledged; while degraded,
    /// also what a majority's grant covers (never an entry whose generation the voters may not
    /// know: the standby could otherwise win the lease without it).
    pub fn publishable_upto(&self) -> u64 {
        if self.degraded_since.is_some() { self.acked_upto_seq.max(self.covered_upto_seq) } else { self.acked_upto_seq }
    }

    /// The generation the holder reports in its lease renewals (`Node::set_generation`): the
    /// newest the standby holds (everything published is in it) while in step; the newest
    /// pushed once degradation is asked for or on.
    pub fn reported_generation(&self, now: Duration) -> Generation {
        match self.sync_state(now) {
            SyncState::DegradePending { .. } | SyncState::Degraded { .. } => self.last,
            SyncState::InSync | SyncState::Lagging { .. } => self.acked.unwrap_or_default(),
        }
    }

    /// How long the standby has been silent.
    pub fn standby_silent_for(&self, now: Duration) -> Duration {
        now.saturating_sub(self.heard_at)
    }
}

/// What the standby does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it to the store, then call [`Follower::applied`] and reply `Applied`.
    Apply,
    /// It holds this already (a resend): reply `Applied` with its position, apply nothing.
    Duplicate,
}

/// Why the standby refuses an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The sender's term is older than one the standby has seen: it was deposed (fencing).
    #[error("replication entry of term {term} refused: term {newest} has been seen (the sender is deposed)")]
    StaleTerm { term: u64, newest: u64 },
    /// The entry does not follow the standby's position (a lost entry, another stream's
    /// history): reply `Behind` with the position.
    #[error("replication entry after {prev:?} does not follow this standby's position {position:?}")]
    OutOfStep { position: Generation, prev: Generation },
}

/// The standby's side of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// The position of its store's content.
    position: Generation,
    /// The newest leader term seen.
    newest_term: u64,
    /// The term of the leader whose entry it applied last (unknown after a start).
    stream_term: Option<u64>,
}

impl Follower {
    /// A standby whose store is at `position` (`Store::replica_position`).
    pub fn new(position: Generation) -> Self {
        Follower { position, newest_term: position.term, stream_term: None }
    }

    pub fn position(&self) -> Generation {
        self.position
    }

    /// The newest leader term it has seen.
    pub fn newest_term(&self) -> u64 {
        self.newest_term
    }

    /// Whether to apply `entry` (see [`Verdict`]), or why not.
    pub fn check(&mut self, entry: &Entry) -> Result<Verdict, Refusal> {
        if entry.term < self.newest_term {
            return Err(Refusal::StaleTerm { term: entry.term, newest: self.newest_term });
        }
        self.newest_term = entry.term;
        // Something it holds already: a resend from the leader it follows, or from the leader of
        // its position's term (one leader numbers a term's generations, in one line), snapshots
        // included — a snapshot older than what it holds would take acknowledged commits away.
        let same_line = self.stream_term == Some(entry.term)
            || (entry.term == self.position.term && entry.generation.term == self.position.term);
        if same_line && entry.generation <= self.position {
            return Ok(Verdict::Duplicate);
        }
        if entry.snapshot || entry.prev == self.position {
            return Ok(Verdict::Apply);
        }
        Err(Refusal::OutOfStep { position: self.position, prev: entry.prev })
    }

    /// `entry` (checked with [`Follower::check`]) is now durably in the store.
    pub fn applied(&mut self, entry: &Entry) {
        self.position = entry.generation;
        self.stream_term = Some(entry.term);
    }

    /// The store refused an entry this follower let through (another epoch, a gap the store
    /// saw): the standby is out of step and must say so with `Behind`.
    pub fn lost_step(&mut self) {
        self.stream_term = None;
    }
}

/// Version of the wire encoding of [`Entry`] and [`Reply`] (inside the peer link's frames).
pub const REPLICA_WIRE_VERSION: u8 = 1;
const TAG_ENTRY: u8 = 1;
const TAG_APPLIED: u8 = 2;
const TAG_BEHIND: u8 = 3;
const TAG_FENCED: u8 = 4;

/// Why bytes from the peer are not an entry or a reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error(
        "replication message: version {found}, this build speaks version {REPLICA_WIRE_VERSION} (are both gateways on the same release?)"
    )]
    Version { found: u8 },
    #[error("replication message: truncated in the {0}")]
    Truncated(&'static str),
    #[error("replication message: unknown kind {0}")]
    UnknownKind(u8),
    #[error("replication message: {0}")]
    Invalid(&'static str),
}

fn put_generation(out: &mut Vec<u8>, g: Generation) {
    out.extend_from_slice(&g.term.to_be_bytes());
    out.extend_from_slice(&g.index.to_be_bytes());
}

/// Reads big-endian fields off the front of a message.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(b))
    }
    fn generation(&mut self, what: &'static str) -> Result<Generation, WireError> {
        Ok(Generation { term: self.u64(what)?, index: self.u64(what)? })
    }
    /// The version and the kind.
    fn header(&mut self) -> Result<u8, WireError> {
        let version = self.u8("version")?;
        if version != REPLICA_WIRE_VERSION {
            return Err(WireError::Version { found: version });
        }
        self.u8("kind")
    }
}

impl Entry {
    /// Version, kind, term, generation, prev, snapshot flag, upto seq, then the record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(59 + self.bytes.len());
        out.extend_from_slice(&[REPLICA_WIRE_VERSION, TAG_ENTRY]);
        out.extend_from_slice(&self.term.to_be_bytes());
        put_generation(&mut out, self.generation);
        put_generation(&mut out, self.prev);
        out.push(u8::from(self.snapshot));
        out.extend_from_slice(&self.upto_seq.to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, WireError> {
        let mut f = Fields(bytes);
        match f.header()? {
            TAG_ENTRY => {}
            TAG_APPLIED | TAG_BEHIND | TAG_FENCED => {
                return Err(WireError::Invalid("a reply where an entry was expected"));
            }
            other => return Err(WireError::UnknownKind(other)),
        }
        let term = f.u64("term")?;
        let generation = f.generation("generation")?;
        let prev = f.generation("prev")?;
        let snapshot = match f.u8("snapshot flag")? {
            0 => false,
            1 => true,
            _ => return Err(WireError::Invalid("snapshot flag is neither 0 nor 1")),
        };
        let upto_seq = f.u64("upto seq")?;
        Ok(Entry { term, generation, prev, snapshot, upto_seq, bytes: f.0.to_vec() })
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![REPLICA_WIRE_VERSION];
        match self {
            Reply::Applied(g) => {
                out.push(TAG_APPLIED);
                put_generation(&mut out, *g);
            }
            Reply::Behind { position, stream } => {
                out.push(TAG_BEHIND);
                put_generation(&mut out, *position);
                out.extend_from_slice(stream.as_bytes());
            }
            Reply::Fenced { newest_term } => {
                out.push(TAG_FENCED);
                out.extend_from_slice(&newest_term.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let mut f = Fields(bytes);
        let reply = match f.header()? {
            TAG_APPLIED => Reply::Applied(f.generation("position")?),
            TAG_BEHIND => {
                let position = f.generation("position")?;
                let stream = std::str::from_utf8(std::mem::take(&mut f.0))
                    .map_err(|_| WireError::Invalid("stream is not UTF-8"))?
                    .to_owned();
                Reply::Behind { position, stream }
            }
            TAG_FENCED => Reply::Fenced { newest_term: f.u64("term")? },
            TAG_ENTRY => return Err(WireError::Invalid("an entry where a reply was expected")),
            other => return Err(WireError::UnknownKind(other)),
        };
        if !f.0.is_empty() {
            return Err(WireError::Invalid("bytes after the reply"));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(term: u64, index: u64) -> Generation {
        Generation { term, index }
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn params() -> LeaderParams {
        LeaderParams { degrade_after: s(3.0), max_unacked_bytes: 100 }
    }

    fn record(prev: Generation, generation: Generation, upto_seq: u64) -> Record {
        Record { generation, prev, upto_seq, bytes: vec![0; 10] }
    }

    /// A leader of term 1 over store "E" at (1, 4), seq 40, whose standby said it is there too.
    fn leader_in_step() -> Leader {
        let mut l = Leader::new(s(0.0), params(), 1, "E".into(), g(1, 4), 40);
        assert!(l.on_reply(s(0.0), Reply::Behind { position: g(1, 4), stream: "E".into() }).is_empty());
        l
    }

    #[test]
    fn nothing_is_publishable_before_the_standby_says_what_it_holds() {
        let l = Leader::new(s(0.0), params(), 1, "E".into(), g(1, 4), 40);
        assert_eq!(l.publishable_upto(), 0);
        assert_eq!(leader_in_step().publishable_upto(), 40);
    }

    #[test]
    fn a_commit_is_publishable_only_once_the_standby_acknowledged_it() {
        let mut l = leader_in_step();
        let e = l.push(s(1.0), record(g(1, 4), g(1, 5), 45)).unwrap().unwrap().clone();
        assert_eq!((e.term, e.generation, e.prev, e.snapshot), (1, g(1, 5), g(1, 4), false));
        l.push(s(1.1), record(g(1, 5), g(1, 6), 47)).unwrap();
        assert_eq!(l.publishable_upto(), 40);
        assert!(matches!(l.sync_state(s(1.2)), SyncState::Lagging { entries: 2, bytes: 20, .. }));
        l.on_reply(s(1.3), Reply::Applied(g(1, 5)));
        assert_eq!(l.publishable_upto(), 45);
        assert_eq!(l.unacked().count(), 1);
        l.on_reply(s(1.4), Reply::Applied(g(1, 6)));
        assert_eq!(l.publishable_upto(), 47);
        assert_eq!(l.sync_state(s(1.5)), SyncState::InSync);
        // A late, repeated ack changes nothing.
        l.on_reply(s(1.6), Reply::Applied(g(1, 5)));
        assert_eq!((l.publishable_upto(), l.needs_snapshot()), (47, false));
    }

    #[test]
    fn a_record_that_does_not_follow_the_last_one_is_refused_and_asks_for_a_snapshot() {
        let mut l = leader_in_step();
        let err = l.push(s(1.0), record(g(1, 5), g(1, 6), 50)).unwrap_err();
        assert_eq!(err, PushError::OutOfOrder { last: g(1, 4), got: g(1, 6) });
        assert!(l.needs_snapshot());
        let snap =
            l.push_snapshot(s(1.1), Record { generation: g(1, 6), prev: g(1, 6), upto_seq: 50, bytes: vec![1; 30] });
        assert_eq!((snap.len(), snap[0].snapshot), (1, true));
        assert!(!l.needs_snapshot());
        l.on_reply(s(1.2), Reply::Applied(g(1, 6)));
        assert_eq!(l.publishable_upto(), 50);
    }

    #[test]
    fn a_standby_behind_gets_what_follows_its_position_or_a_snapshot() {
        let mut l = leader_in_step();
        l.push(s(1.0), record(g(1, 4), g(1, 5), 45)).unwrap();
        l.push(s(1.0), record(g(1, 5), g(1, 6), 46)).unwrap();
        // Reconnected at (1, 5): only (1, 6) is resent.
        let resend: Vec<Generation> = l
            .on_reply(s(2.0), Reply::Behind { position: g(1, 5), stream: "E".into() })
            .iter()
            .map(|e| e.generation)
            .collect();
        assert_eq!(resend, vec![g(1, 6)]);
        assert!(!l.needs_snapshot());
        // At a position this leader never had (an older stream's history): a snapshot.
        assert!(l.on_reply(s(2.1), Reply::Behind { position: g(1, 2), stream: "E".into() }).is_empty());
        assert!(l.needs_snapshot());
        // Another store's stream, even at the same position: a snapshot.
        let mut l = leader_in_step();
        l.on_reply(s(2.2), Reply::Behind { position: g(1, 4), stream: "F".into() });
        assert!(l.needs_snapshot());
        assert_eq!(l.publishable_upto(), 40, "what it acknowledged before stays publishable");
    }

    #[test]
    fn records_pushed_while_a_snapshot_is_made_follow_it() {
        let mut l = leader_in_step();
        l.on_reply(s(1.0), Reply::Behind { position: g(1, 1), stream: "E".into() });
        assert!(l.needs_snapshot());
        // The store is at (1, 6) when the snapshot is read; (1, 7) is committed meanwhile. Until
        // the snapshot, nothing is sent: the standby could not use it.
        assert_eq!(l.push(s(1.1), record(g(1, 4), g(1, 5), 45)), Ok(None));
        l.push(s(1.1), record(g(1, 5), g(1, 6), 46)).unwrap();
        l.push(s(1.2), record(g(1, 6), g(1, 7), 47)).unwrap();
        let snap =
            l.push_snapshot(s(1.3), Record { generation: g(1, 6), prev: g(1, 6), upto_seq: 46, bytes: vec![1; 30] });
        let order: Vec<(Generation, bool)> = snap.iter().map(|e| (e.generation, e.snapshot)).collect();
        assert_eq!(order, vec![(g(1, 6), true), (g(1, 7), false)]);
        assert_eq!(l.unacked().count(), 2);
        l.on_reply(s(1.4), Reply::Applied(g(1, 6)));
        assert_eq!(l.publishable_upto(), 46);
        l.on_reply(s(1.5), Reply::Applied(g(1, 7)));
        assert_eq!((l.publishable_upto(), l.sync_state(s(1.5))), (47, SyncState::InSync));
    }

    #[test]
    fn a_standby_back_behind_what_it_acknowledged_gets_a_snapshot() {
        let mut l = leader_in_step();
        // The record after (1, 4) was lost before it reached the leader.
        assert!(l.push(s(1.0), record(g(1, 5), g(1, 6), 46)).is_err());
        let snap = l.push_snapshot(s(1.1), Record { generation: g(1, 6), prev: g(1, 6), upto_seq: 46, bytes: vec![] });
        assert!(snap[0].snapshot);
        l.on_reply(s(1.2), Reply::Applied(g(1, 6)));
        l.push(s(1.3), record(g(1, 6), g(1, 7), 47)).unwrap();
        l.push(s(1.3), record(g(1, 7), g(1, 8), 48)).unwrap();
        l.on_reply(s(1.4), Reply::Applied(g(1, 7)));
        // It says it is at (1, 6) again, though it acknowledged (1, 7) durably (a damaged or
        // replaced store): the leader no longer has what follows (1, 6), so a snapshot.
        assert!(l.on_reply(s(1.5), Reply::Behind { position: g(1, 6), stream: "E".into() }).is_empty());
        assert!(l.needs_snapshot());
    }

    #[test]
    fn entries_beyond_the_bound_are_dropped_for_a_snapshot() {
        let mut l = leader_in_step();
        let mut prev = g(1, 4);
        for i in 5..=14 {
            assert!(l.push(s(1.0), record(prev, g(1, i), i)).unwrap().is_some());
            prev = g(1, i);
        }
        assert!(!l.needs_snapshot(), "100 bytes are within the bound");
        assert!(l.push(s(1.0), record(prev, g(1, 15), 15)).unwrap().is_none());
        assert!(l.needs_snapshot());
        assert_eq!(l.unacked().count(), 0);
        // A snapshot read before (1, 15) was dropped does not replace it: another one is asked.
        l.push_snapshot(s(1.1), Record { generation: g(1, 14), prev: g(1, 14), upto_seq: 14, bytes: vec![] });
        assert!(l.needs_snapshot());
        l.push_snapshot(s(1.2), Record { generation: g(1, 15), prev: g(1, 15), upto_seq: 15, bytes: vec![] });
        assert!(!l.needs_snapshot());
    }

    #[test]
    fn an_absent_standby_leads_to_degraded_mode_only_through_a_majority_grant() {
        let mut l = leader_in_step();
        l.push(s(1.0), record(g(1, 4), g(1, 5), 45)).unwrap();
        l.push(s(2.0), record(g(1, 5), g(1, 6), 46)).unwrap();
        assert!(matches!(l.sync_state(s(2.9)), SyncState::Lagging { .. }));
        // The standby silent for 3 s (since 0.0) while entries wait: ask for degraded mode.
        assert_eq!(l.sync_state(s(4.0)), SyncState::DegradePending { report: g(1, 6) });
        assert_eq!(l.reported_generation(s(4.0)), g(1, 6));
        assert_eq!(l.publishable_upto(), 40, "nothing unreplicated before the majority grant");
        // A grant of an older generation does not cover the first unreplicated commit.
        assert_eq!(l.degrade(s(4.1), g(1, 4)), Err(DegradeError::NotCovered { needed: g(1, 5), granted: g(1, 4) }));
        l.degrade(s(4.2), g(1, 6)).unwrap();
        assert_eq!(l.sync_state(s(4.3)), SyncState::Degraded { since: s(4.2) });
        assert_eq!(l.publishable_upto(), 46);
        // Degraded: what is pushed is publishable once a majority's grant covers it, not before
        // (the standby may have applied (1, 6) with its ack lost, and win without (1, 7)).
        l.push(s(5.0), record(g(1, 6), g(1, 7), 49)).unwrap();
        assert_eq!(l.reported_generation(s(5.0)), g(1, 7));
        assert_eq!(l.publishable_upto(), 46);
        l.degrade(s(5.1), g(1, 6)).unwrap();
        assert_eq!(l.publishable_upto(), 46);
        l.degrade(s(5.2), g(1, 7)).unwrap();
        assert_eq!(l.publishable_upto(), 49);
        // The standby comes back behind: it is resent the rest, and in step again it ends
        // degraded mode.
        let resend = l.on_reply(s(6.0), Reply::Behind { position: g(1, 4), stream: "E".into() }).len();
        assert_eq!(resend, 3);
        assert!(matches!(l.sync_state(s(6.0)), SyncState::Degraded { .. }));
        l.on_reply(s(6.1), Reply::Applied(g(1, 7)));
        assert_eq!(l.sync_state(s(6.2)), SyncState::InSync);
        assert_eq!(l.publishable_upto(), 49);
    }

    #[test]
    fn a_new_leader_whose_standby_never_answers_publishes_its_store_through_degraded_mode() {
        // Elected at (1, 4), the store holding seq 1..=40 the old active committed.
        let mut l = Leader::new(s(0.0), params(), 2, "E".into(), g(1, 4), 40);
        assert_eq!(l.sync_state(s(2.9)), SyncState::Lagging { entries: 0, bytes: 0, waiting: s(2.9) });
        assert_eq!(l.sync_state(s(3.0)), SyncState::DegradePending { report: g(1, 4) });
        assert_eq!(l.publishable_upto(), 0);
        // The voters granted the election's request, which carried (1, 4).
        l.degrade(s(3.1), g(1, 4)).unwrap();
        assert_eq!(l.publishable_upto(), 40);
    }

    #[test]
    fn a_silent_standby_is_not_waited_for_when_nothing_waits() {
        let l = leader_in_step();
        assert_eq!(l.sync_state(s(100.0)), SyncState::InSync);
        assert_eq!(l.standby_silent_for(s(100.0)), s(100.0));
        // But the first commit then asks for degraded mode at once.
        let mut l = l;
        l.push(s(100.0), record(g(1, 4), g(1, 5), 41)).unwrap();
        assert_eq!(l.sync_state(s(100.0)), SyncState::DegradePending { report: g(1, 5) });
    }

    #[test]
    fn a_standby_that_answers_but_does_not_keep_up_leads_to_degraded_mode_too() {
        let mut l = leader_in_step();
        l.push(s(1.0), record(g(1, 4), g(1, 5), 45)).unwrap();
        l.push(s(1.5), record(g(1, 5), g(1, 6), 46)).unwrap();
        // It acknowledges the first at 3.5 s but the second still waits at 4.5 s.
        l.on_reply(s(3.5), Reply::Applied(g(1, 5)));
        assert!(matches!(l.sync_state(s(4.4)), SyncState::Lagging { entries: 1, .. }));
        assert_eq!(l.sync_state(s(4.5)), SyncState::DegradePending { report: g(1, 6) });
        // A fenced reply changes nothing here: the lease decides (the holder fences itself).
        assert!(l.on_reply(s(4.6), Reply::Fenced { newest_term: 3 }).is_empty());
        assert_eq!(l.publishable_upto(), 45);
    }

    #[test]
    fn entries_and_replies_round_trip_and_damage_is_refused() {
        let e =
            Entry { term: 3, generation: g(3, 9), prev: g(2, 8), snapshot: true, upto_seq: 77, bytes: b"rec".to_vec() };
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes), Ok(e));
        for r in [
            Reply::Applied(g(1, 2)),
            Reply::Behind { position: g(4, 5), stream: "00ff00ff00ff00ff".into() },
            Reply::Fenced { newest_term: 6 },
        ] {
            assert_eq!(Reply::decode(&r.encode()), Ok(r.clone()));
            assert_eq!(Entry::decode(&r.encode()), Err(WireError::Invalid("a reply where an entry was expected")));
        }
        assert_eq!(Entry::decode(&bytes[..20]), Err(WireError::Truncated("generation")));
        let mut newer = bytes.clone();
        newer[0] = 2;
        let err = Entry::decode(&newer).unwrap_err();
        assert_eq!(err, WireError::Version { found: 2 });
        assert!(err.to_string().contains("same release"));
        let mut kind = bytes;
        kind[1] = 9;
        assert_eq!(Entry::decode(&kind), Err(WireError::UnknownKind(9)));
        let mut applied = Reply::Applied(g(1, 2)).encode();
        applied.push(0);
        assert_eq!(Reply::decode(&applied), Err(WireError::Invalid("bytes after the reply")));
        assert_eq!(Reply::decode(&[]), Err(WireError::Truncated("version")));
    }

    fn entry(term: u64, prev: Generation, generation: Generation, snapshot: bool) -> Entry {
        Entry { term, generation, prev, snapshot, upto_seq: 0, bytes: Vec::new() }
    }

    #[test]
    fn a_follower_applies_the_next_entry_and_treats_a_resend_as_a_duplicate() {
        let mut f = Follower::new(g(1, 4));
        let e5 = entry(1, g(1, 4), g(1, 5), false);
        assert_eq!(f.check(&e5), Ok(Verdict::Apply));
        f.applied(&e5);
        assert_eq!(f.position(), g(1, 5));
        assert_eq!(f.check(&e5), Ok(Verdict::Duplicate));
        let e6 = entry(1, g(1, 5), g(1, 6), false);
        assert_eq!(f.check(&e6), Ok(Verdict::Apply));
    }

    #[test]
    fn a_follower_detects_a_gap() {
        let mut f = Follower::new(g(1, 4));
        let e6 = entry(1, g(1, 5), g(1, 6), false);
        assert_eq!(f.check(&e6), Err(Refusal::OutOfStep { position: g(1, 4), prev: g(1, 5) }));
        // A snapshot brings it back in step whatever its position.
        let snap = entry(1, g(1, 9), g(1, 9), true);
        assert_eq!(f.check(&snap), Ok(Verdict::Apply));
        f.applied(&snap);
        assert_eq!(f.check(&entry(1, g(1, 9), g(1, 10), false)), Ok(Verdict::Apply));
    }

    #[test]
    fn a_follower_refuses_an_older_term_once_it_saw_a_newer_one() {
        let mut f = Follower::new(g(1, 4));
        // The new active (term 2) continues from where the old one left off.
        let e5 = entry(2, g(1, 4), g(2, 5), false);
        assert_eq!(f.check(&e5), Ok(Verdict::Apply));
        f.applied(&e5);
        // The deposed active of term 1 can no longer write, not even a snapshot.
        let stale = entry(1, g(2, 5), g(1, 6), false);
        assert_eq!(f.check(&stale), Err(Refusal::StaleTerm { term: 1, newest: 2 }));
        assert_eq!(f.check(&entry(1, g(1, 9), g(1, 9), true)), Err(Refusal::StaleTerm { term: 1, newest: 2 }));
        // A refused entry of a newer term still fences the older one.
        let mut f = Follower::new(g(1, 4));
        assert!(matches!(f.check(&entry(3, g(3, 8), g(3, 9), false)), Err(Refusal::OutOfStep { .. })));
        assert_eq!(f.check(&entry(2, g(1, 4), g(2, 5), false)), Err(Refusal::StaleTerm { term: 2, newest: 3 }));
    }

    #[test]
    fn a_returning_node_with_commits_the_pair_never_had_gets_a_snapshot() {
        // gw1 (term 1) wrote (1, 11) that never reached gw2; gw2 took over at term 2 from (1, 10).
        let mut f = Follower::new(g(1, 11));
        assert!(matches!(f.check(&entry(2, g(1, 10), g(2, 11), false)), Err(Refusal::OutOfStep { .. })));
        // The new leader's snapshot is at the position the old term left (older than gw1's
        // own), yet it comes from a newer term: it is applied.
        let snap = entry(2, g(1, 10), g(1, 10), true);
        assert_eq!(f.check(&snap), Ok(Verdict::Apply));
        f.applied(&snap);
        assert_eq!(f.position(), g(1, 10));
        assert_eq!(f.check(&entry(2, g(1, 10), g(2, 11), false)), Ok(Verdict::Apply));
    }

    #[test]
    fn a_restarted_follower_knows_what_it_holds_of_its_positions_term() {
        // After a start it knows its position's term: what that term's leader resends at or
        // before it is a duplicate, a snapshot included (applying an older one would take
        // acknowledged commits away).
        let mut f = Follower::new(g(1, 5));
        assert_eq!(f.check(&entry(1, g(1, 4), g(1, 5), false)), Ok(Verdict::Duplicate));
        assert_eq!(f.check(&entry(1, g(1, 3), g(1, 3), true)), Ok(Verdict::Duplicate));
        assert_eq!(f.check(&entry(1, g(1, 5), g(1, 6), false)), Ok(Verdict::Apply));
        // A newer leader's entry at an older position is not assumed held.
        let mut f = Follower::new(g(1, 5));
        assert!(matches!(f.check(&entry(2, g(1, 3), g(2, 4), false)), Err(Refusal::OutOfStep { .. })));
    }
}
