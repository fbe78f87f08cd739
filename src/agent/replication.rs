//! The replication stream over the peer link (docs/ha-design.md, "Replication"): the IO shell
//! around `ha::replica`'s [`Leader`] (on the active) and [`Follower`] (on the standby).
//!
//! - **The active** runs a [`Replicator`] while it holds the lease: after each store commit (a
//!   poke) and every second (acks sealed into a record of their own) it takes the store's new
//!   records, stamps them with its term and sends them over a link of its own to the peer's
//!   listen address; the standby's replies move the store's publish limit (the publisher sends
//!   nothing the standby does not hold), and a standby that is behind gets what follows or a
//!   snapshot. A standby absent longer than `degrade_after` makes it ask the election for a
//!   renewal carrying its newest generation; once a majority granted it, it publishes without
//!   the standby (degraded) until the standby holds everything again.
//! - **The standby** runs [`follow`] for the daemon's life: the peer link's listener hands it
//!   each replication link; it greets with its position and applies each entry to its store
//!   (durably, before acknowledging it), refusing a deposed active's.
//! - Both report the generation for the election's requests: the standby's position, the
//!   active's published generation (never going back).
//!
//! On the link, after the `Stream` hello (JSON, `ha::wire`), each message is one encoded
//! `replica::Entry` (to the standby) or `replica::Reply` (back), cut into frames of at most
//! `link::MAX_PAYLOAD`: each frame's first byte says whether more pieces follow.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ha::{HaState, boottime, initiate, read_frame};
use crate::ha::lease::{Generation, NodeId};
use crate::ha::link::{MAX_PAYLOAD, Session, SharedKey};
use crate::ha::replica::{Entry, Follower, Leader, LeaderParams, Record, Refusal, Reply, SyncState, Verdict};
use crate::ha::wire::{Message, StreamHello};
use crate::publish::PublishWaker;
use crate::store::{ReplicaPosition, ReplicationRecord, Store};

/// How often the active seals the acks no commit carried into a record of their own.
const SEAL_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// How often a standby in step says what it holds when it has nothing else to say: the active
/// tells an absent standby from an idle stream by this (its `degrade_after` is a third of the
/// lease, at least a second).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// Snapshots the standby asks for again without having acknowledged anything new come at
/// least this far apart, doubling up to the cap.
const SNAPSHOT_GAP_FIRST: Duration = Duration::from_millis(500);
const SNAPSHOT_GAP_MAX: Duration = Duration::from_secs(30);
/// A link on which the standby has said nothing (not even a heartbeat) for this long is
/// closed and dialled again: its host may have lost power, leaving the connection open here.
const LINK_SILENT_MAX: Duration = Duration::from_secs(5);
/// A piece's first byte: more pieces of this message follow, or this is the last.
const MORE: u8 = 1;
const LAST: u8 = 0;

fn generation(p: ReplicaPosition) -> Generation {
    Generation { term: p.term, index: p.index }
}

/// Where the stream stands, for `status` and health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// Active: `in_sync`, `lagging`, `waiting` (for a standby that has not said where it is, or
    /// a degraded-mode grant) or `degraded`; standby: `following` or `idle` (no active streams).
    pub state: String,
    /// Active: entries and bytes the standby has not acknowledged, and for how long the oldest
    /// has waited (ms).
    pub lag_entries: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    /// This store's position in the stream.
    pub position: Generation,
}

/// Whether an active whose stream is in `state` (`ReplicaView::state`) may hand over: its
/// standby holds everything published (`in_sync`, or `lagging`: what is in flight is not
/// published yet). `waiting` and `degraded` mean the voters know a generation the standby
/// lacks, so it could not win the lease.
pub fn standby_can_take_over(state: &str) -> bool {
    matches!(state, "in_sync" | "lagging")
}

/// A link an active opened to this gateway's listener for its replication stream.
pub struct StreamLink {
    pub hello: StreamHello,
    pub from: SocketAddr,
    pub session: Session,
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
    /// What arrived after the hello.
    pub buf: Vec<u8>,
}

/// One replication link, either side: frames queued to write, a message being reassembled.
struct Conn {
    session: Session,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    out: VecDeque<Vec<u8>>,
    out_bytes: usize,
    /// Bytes of the front frame already written.
    written: usize,
    assembling: Vec<u8>,
    max_message: usize,
    /// When the other end last sent a whole message (or the link opened).
    heard: Instant,
}

impl Conn {
    fn new(session: Session, reader: OwnedReadHalf, writer: OwnedWriteHalf, buf: Vec<u8>, max_message: usize) -> Conn {
        Conn {
            session,
            reader,
            writer,
            buf,
            out: VecDeque::new(),
            out_bytes: 0,
            written: 0,
            assembling: Vec::new(),
            max_message,
            heard: Instant::now(),
        }
    }

    /// Seals `message` into pieces and queues them.
    fn queue(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let mut pieces = message.chunks(MAX_PAYLOAD - 1).peekable();
        if pieces.peek().is_none() {
            bail!("empty replication message");
        }
        while let Some(piece) = pieces.next() {
            let mut payload = Vec::with_capacity(piece.len() + 1);
            payload.push(if pieces.peek().is_some() { MORE } else { LAST });
            payload.extend_from_slice(piece);
            let frame = self.session.seal(&payload)?;
            self.out_bytes += frame.len();
            self.out.push_back(frame);
        }
        Ok(())
    }

    /// Writes what is queued while waiting for the next whole message from the other end.
    /// Cancel-safe: a write either happened (and is counted) or did not, and `read_frame` keeps
    /// partial frames in `buf`.
    async fn next_message(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let frame = if let Some(front) = self.out.front() {
                tokio::select! {
                    wrote = self.writer.write(&front[self.written..]) => {
                        let n = wrote.context("sending")?;
                        if n == 0 {
                            bail!("closed by the other end");
                        }
                        self.written += n;
                        if self.written == front.len() {
                            self.out_bytes -= front.len();
                            self.out.pop_front();
                            self.written = 0;
                        }
                        continue;
                    }
                    frame = read_frame(&mut self.reader, &mut self.buf) => frame?,
                }
            } else {
                read_frame(&mut self.reader, &mut self.buf).await?
            };
            let payload = self.session.open(&frame)?;
            let (&more, piece) = payload.split_first().ok_or_else(|| anyhow!("empty frame"))?;
            if self.assembling.len() + piece.len() > self.max_message {
                bail!("a replication message longer than {} bytes", self.max_message);
            }
            self.assembling.extend_from_slice(piece);
            match more {
                LAST => {
                    self.heard = Instant::now();
                    return Ok(std::mem::take(&mut self.assembling));
                }
                MORE => {}
                other => bail!("bad piece marker {other}"),
            }
        }
    }

    /// Writes everything queued (bounded by `within`), e.g. before closing.
    async fn flush(&mut self, within: Duration) {
        let _ = timeout(within, async {
            while let Some(front) = self.out.front() {
                if self.writer.write_all(&front[self.written..]).await.is_err() {
                    return;
                }
                self.out.pop_front();
                self.written = 0;
            }
        })
        .await;
    }
}

/// What the active's replicator needs from the daemon.
pub struct ReplicatorSetup {
    pub store: Store,
    pub peer: String,
    pub key: Arc<SharedKey>,
    pub node: NodeId,
    pub term: u64,
    pub params: LeaderParams,
    /// Where the generation for the election's requests goes.
    pub generation: Arc<watch::Sender<Generation>>,
    /// The election's state: the generation a majority granted, and the term.
    pub election: watch::Receiver<HaState>,
    pub view: Arc<watch::Sender<ReplicaView>>,
    pub waker: Option<PublishWaker>,
}

/// The active's side: runs while this gateway holds the lease.
pub struct Replicator {
    poke: Arc<Notify>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Replicator {
    /// Starts capturing the store's changes under `setup.term` and streaming them. The store's
    /// publish limit is what the standby acknowledged (nothing until it says where it is).
    pub fn start(setup: ReplicatorSetup) -> anyhow::Result<Replicator> {
        let position = setup.store.replicate_as(setup.term).context("starting replication in the store")?;
        let now = boottime();
        let leader = Leader::new(
            now,
            setup.params,
            setup.term,
            setup.store.epoch(),
            generation(position),
            setup.store.durable_seq(),
        );
        setup.store.set_publish_limit(leader.publishable_upto());
        let poke = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let run = LeaderLoop {
            leader,
            setup,
            poke: poke.clone(),
            conn: None,
            // What this node asked for the lease with (its position as standby): the voters
            // know it already, and everything published so far is in it.
            reported: generation(position),
            limit: 0,
            announced_sync: false,
            next_snapshot_at: Instant::now(),
            snapshot_gap: Duration::ZERO,
            acked_at_snapshot: None,
        };
        let task = tokio::spawn(run.run(stop.clone()));
        Ok(Replicator { poke, stop, task })
    }

    /// The store committed: stream the new records.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Stops streaming (fenced, handed over, shutting down); the store stops capturing and the
    /// publish limit is lifted (nothing publishes without the lease anyway).
    pub async fn stop(self, store: &Store) {
        self.stop.cancel();
        let _ = timeout(Duration::from_secs(2), self.task).await;
        store.stop_replicating();
        store.set_publish_limit(u64::MAX);
    }
}

struct LeaderLoop {
    leader: Leader,
    setup: ReplicatorSetup,
    poke: Arc<Notify>,
    conn: Option<Conn>,
    /// The generation reported to the election so far (it never goes back: a voter refuses a
    /// request older than one it granted).
    reported: Generation,
    limit: u64,
    /// "In sync" was logged since the standby was last absent.
    announced_sync: bool,
    /// No snapshot before this: a standby that keeps asking (it cannot apply one: a full disk)
    /// must not have the active read its whole store in a loop.
    next_snapshot_at: Instant,
    snapshot_gap: Duration,
    /// What the standby had acknowledged when the last snapshot was sent.
    acked_at_snapshot: Option<Generation>,
}

impl LeaderLoop {
    async fn run(mut self, stop: CancellationToken) {
        let (dialed_tx, mut dialed_rx) = mpsc::channel::<anyhow::Result<Conn>>(1);
        let mut dialing = false;
        let mut retry = 0u32;
        let mut next_dial = Instant::now();
        let mut logged_failure: Option<String> = None;
        let mut seal = tokio::time::interval(SEAL_EVERY);
        seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_message = self.max_message();
        loop {
            if self.conn.as_ref().is_some_and(|c| c.heard.elapsed() > LINK_SILENT_MAX) {
                warn!(peer = %self.setup.peer, silent = ?LINK_SILENT_MAX, "replication: the standby is silent on its link; dialling again");
                self.conn = None;
                next_dial = Instant::now();
            }
            if self.conn.is_none() && !dialing && Instant::now() >= next_dial {
                dialing = true;
                let (peer, key, tx) = (self.setup.peer.clone(), self.setup.key.clone(), dialed_tx.clone());
                let hello = StreamHello { leader: self.setup.node.clone(), term: self.leader.term() };
                tokio::spawn(async move {
                    let _ = tx.send(dial(&peer, &key, hello, max_message).await).await;
                });
            }
            self.after_event().await;
            let wake = self.next_check();
            let redial = (self.conn.is_none() && !dialing).then_some(next_dial);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.poke.notified() => self.take_records().await,
                _ = seal.tick() => {
                    if let Err(e) = self.setup.store.seal_removals() {
                        warn!(error = %e, "replication: cannot seal the acknowledged removals");
                    }
                    self.take_records().await;
                }
                Some(dialed) = dialed_rx.recv() => {
                    dialing = false;
                    match dialed {
                        Ok(conn) => {
                            retry = 0;
                            logged_failure = None;
                            info!(peer = %self.setup.peer, "replication: link to the standby up; waiting for it to say where it is");
                            self.conn = Some(conn);
                        }
                        Err(e) => {
                            let e = format!("{e:#}");
                            if logged_failure.as_deref() != Some(&e) {
                                warn!(peer = %self.setup.peer, error = %e, "replication: cannot reach the standby (retrying; logged once until it changes)");
                                logged_failure = Some(e);
                            }
                            next_dial = Instant::now() + crate::backoff::delay(BACKOFF_FIRST, BACKOFF_CAP, retry);
                            retry = retry.saturating_add(1);
                        }
                    }
                }
                message = next_message(&mut self.conn) => match message.and_then(|m| Ok(Reply::decode(&m)?)) {
                    Ok(reply) => self.on_reply(reply),
                    Err(e) => {
                        warn!(peer = %self.setup.peer, error = %format!("{e:#}"), "replication: link to the standby lost");
                        self.conn = None;
                        next_dial = Instant::now() + BACKOFF_FIRST;
                    }
                },
                _ = sleep_until(wake.min(redial.unwrap_or(wake))) => {}
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.flush(Duration::from_millis(500)).await;
        }
    }

    /// The longest message either way: a snapshot of a full outbox, with room for its encoding.
    fn max_message(&self) -> usize {
        usize::try_from(self.setup.store.max_bytes()).unwrap_or(usize::MAX).saturating_mul(2).saturating_add(64 << 20)
    }

    /// Takes the store's new records and streams them.
    async fn take_records(&mut self) {
        let records = match self.setup.store.take_replication().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "replication: cannot take the store's records");
                return;
            }
        };
        let now = boottime();
        for record in records {
            let record = record_of(&record);
            match self.leader.push(now, record) {
                Ok(Some(entry)) => {
                    let bytes = entry.encode();
                    self.send(&bytes);
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "replication: the standby will get a snapshot"),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let Some(conn) = self.conn.as_mut() else { return };
        if let Err(e) = conn.queue(bytes) {
            warn!(error = %format!("{e:#}"), "replication: cannot send to the standby; reconnecting");
            self.conn = None;
            return;
        }
        // A standby that reads nothing while entries pile up gets a snapshot on a new link.
        let bound = self.setup.params.max_unacked_bytes.saturating_mul(2).max(64 << 20);
        if conn.out_bytes > bound {
            warn!(queued = conn.out_bytes, "replication: the standby does not keep up; reconnecting");
            self.conn = None;
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let now = boottime();
        if let Reply::Fenced { newest_term } = &reply {
            warn!(
                newest_term,
                term = self.leader.term(),
                "replication: the standby has seen a newer active; this one is deposed"
            );
        }
        let resend: Vec<Vec<u8>> = self.leader.on_reply(now, reply).into_iter().map(Entry::encode).collect();
        for bytes in resend {
            self.send(&bytes);
        }
    }

    /// After every event: a snapshot if the standby needs one, degraded mode once a majority
    /// granted it, the publish limit, the generation reported, the view.
    async fn after_event(&mut self) {
        let now = boottime();
        if self.leader.acked() != self.acked_at_snapshot {
            self.snapshot_gap = Duration::ZERO; // the last one helped
        }
        if self.leader.needs_snapshot() && self.conn.is_some() && Instant::now() >= self.next_snapshot_at {
            self.acked_at_snapshot = self.leader.acked();
            self.snapshot_gap = (self.snapshot_gap * 2).clamp(SNAPSHOT_GAP_FIRST, SNAPSHOT_GAP_MAX);
            self.next_snapshot_at = Instant::now() + self.snapshot_gap;
            match self.setup.store.snapshot().await {
                Ok(snapshot) => {
                    let entries: Vec<Vec<u8>> =
                        self.leader.push_snapshot(now, record_of(&snapshot)).into_iter().map(Entry::encode).collect();
                    if !entries.is_empty() {
                        info!(position = ?snapshot.position(), messages = snapshot.upto_seq(), "replication: sending the standby a snapshot");
                    }
                    for bytes in entries {
                        self.send(&bytes);
                    }
                }
                Err(e) => warn!(error = %e, "replication: cannot read a snapshot for the standby"),
            }
        }
        // Degraded mode, and while in it what a majority's grant covers (the election's
        // renewals carry the generation reported below).
        let state = self.leader.sync_state(now);
        if matches!(state, SyncState::DegradePending { .. } | SyncState::Degraded { .. })
            && let Some(granted) = self.setup.election.borrow().granted_generation
            && self.leader.degrade(now, granted).is_ok()
            && matches!(state, SyncState::DegradePending { .. })
        {
            warn!(
                generation = ?granted,
                "replication: the standby is absent; publishing without it (degraded: no takeover until it is back in sync)"
            );
        }
        self.reported = self.reported.max(self.leader.reported_generation(now));
        self.setup.generation.send_if_modified(|g| {
            let changed = *g != self.reported;
            *g = self.reported;
            changed
        });
        let limit = self.leader.publishable_upto();
        if limit != self.limit {
            self.setup.store.set_publish_limit(limit);
            if limit > self.limit
                && let Some(w) = &self.setup.waker
            {
                w.poke();
            }
            self.limit = limit;
        }
        let view = self.view(now);
        // Logged when it matters to an operator: the pair can take over again (or for the first
        // time), not at every commit's round trip.
        match view.state.as_str() {
            "in_sync" if !self.announced_sync => {
                info!("replication: the standby holds everything (in sync): takeover possible");
                self.announced_sync = true;
            }
            "waiting" | "degraded" => self.announced_sync = false,
            _ => {}
        }
        self.setup.view.send_replace(view);
    }

    fn view(&self, now: Duration) -> ReplicaView {
        let (state, lag_entries, lag_bytes, lag_ms) = match self.leader.sync_state(now) {
            SyncState::InSync | SyncState::Lagging { .. } if self.leader.acked().is_none() => {
                ("waiting", 0, 0, self.leader.standby_silent_for(now).as_millis() as u64)
            }
            SyncState::InSync => ("in_sync", 0, 0, 0),
            SyncState::Lagging { entries, bytes, waiting } => {
                ("lagging", entries as u64, bytes as u64, waiting.as_millis() as u64)
            }
            SyncState::DegradePending { .. } => {
                let (entries, bytes) =
                    self.leader.unacked().fold((0u64, 0u64), |(n, b), e| (n + 1, b + e.bytes.len() as u64));
                ("waiting", entries, bytes, self.leader.standby_silent_for(now).as_millis() as u64)
            }
            SyncState::Degraded { since } => ("degraded", 0, 0, now.saturating_sub(since).as_millis() as u64),
        };
        ReplicaView { state: state.to_owned(), lag_entries, lag_bytes, lag_ms, position: self.leader.last() }
    }

    /// When to look at the stream again without an event: degraded mode, or a snapshot held
    /// back, may be due.
    fn next_check(&self) -> Instant {
        let step = match self.leader.sync_state(boottime()) {
            SyncState::Lagging { .. } | SyncState::DegradePending { .. } => Duration::from_millis(100),
            SyncState::InSync | SyncState::Degraded { .. } => Duration::from_secs(1),
        };
        let next = Instant::now() + step;
        if self.leader.needs_snapshot() { next.min(self.next_snapshot_at.max(Instant::now())) } else { next }
    }
}

/// Waits for the next message on `conn`; never, without one.
async fn next_message(conn: &mut Option<Conn>) -> anyhow::Result<Vec<u8>> {
    match conn.as_mut() {
        Some(c) => c.next_message().await,
        None => std::future::pending().await,
    }
}

/// Opens a replication link: connect, authenticate, say what it carries.
async fn dial(peer: &str, key: &SharedKey, hello: StreamHello, max_message: usize) -> anyhow::Result<Conn> {
    let attempt = async {
        let mut stream = TcpStream::connect(peer).await.context("connecting")?;
        let _ = stream.set_nodelay(true);
        let mut session = initiate(&mut stream, key).await?;
        let frame = session.seal(&Message::Stream(hello).encode())?;
        stream.write_all(&frame).await.context("sending the stream hello")?;
        let (reader, writer) = stream.into_split();
        anyhow::Ok(Conn::new(session, reader, writer, Vec::new(), max_message))
    };
    timeout(CONNECT_TIMEOUT, attempt).await.unwrap_or_else(|_| Err(anyhow!("timed out")))
}

fn record_of(record: &ReplicationRecord) -> Record {
    Record {
        generation: generation(record.position()),
        prev: generation(record.prev()),
        upto_seq: record.upto_seq(),
        bytes: record.encode(),
    }
}

/// What the standby needs.
pub struct FollowerSetup {
    pub store: Store,
    pub links: mpsc::Receiver<StreamLink>,
    pub generation: Arc<watch::Sender<Generation>>,
    pub view: Arc<watch::Sender<ReplicaView>>,
}

/// The standby's side, for the daemon's life: follows the stream of whichever active links to
/// it (the newest link wins), applying entries to the store. While this gateway is active its
/// store captures rather than applies, and links are closed.
pub async fn follow(mut setup: FollowerSetup, stop: CancellationToken) {
    let max_message = usize::try_from(setup.store.max_bytes()).unwrap_or(usize::MAX).saturating_mul(2) + (64 << 20);
    let start = setup.store.replica_position().map(generation).unwrap_or_default();
    let mut follower = Follower::new(start);
    let mut conn: Option<(Conn, SocketAddr)> = None;
    // Whether the standby is in step with the current link's stream (it acknowledged on it):
    // only then do heartbeats repeat its position.
    let mut in_step = false;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused_while_active = false;
    publish_position(&setup, follower.position(), "idle");
    loop {
        let message = async {
            match conn.as_mut() {
                Some((c, _)) => c.next_message().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = heartbeat.tick() => {
                if in_step
                    && let Some((c, _)) = conn.as_mut()
                    && c.out.is_empty()
                    && c.queue(&Reply::Applied(follower.position()).encode()).is_err()
                {
                    conn = None;
                }
            }
            link = setup.links.recv() => {
                let Some(link) = link else { break };
                if setup.store.replicating() {
                    if !refused_while_active {
                        warn!(from = %link.from, leader = %link.hello.leader, "replication: a stream offered while this gateway is active; closed");
                        refused_while_active = true;
                    }
                    continue;
                }
                refused_while_active = false;
                // The store may have moved while this gateway was active.
                let position = match setup.store.replica_position() {
                    Ok(p) => generation(p),
                    Err(e) => {
                        warn!(error = %e, "replication: cannot read the store's position; link closed");
                        continue;
                    }
                };
                if position != follower.position() {
                    follower = Follower::new(position);
                }
                info!(from = %link.from, leader = %link.hello.leader, term = link.hello.term, position = ?position, "replication: following the active");
                let mut c = Conn::new(link.session, link.reader, link.writer, link.buf, max_message);
                let greeting = Reply::Behind { position, stream: setup.store.epoch() };
                if c.queue(&greeting.encode()).is_ok() {
                    conn = Some((c, link.from));
                    in_step = false;
                }
                publish_position(&setup, position, "following");
            }
            message = message => {
                if setup.store.replicating() {
                    // This gateway became active: what the old active sends is moot, and its
                    // position must not replace the one the new active reports.
                    conn = None;
                    continue;
                }
                let reply = match message.and_then(|m| Ok(Entry::decode(&m)?)) {
                    Ok(entry) => apply(&setup.store, &mut follower, &entry).await,
                    Err(e) => {
                        if let Some((_, from)) = &conn {
                            info!(from = %from, error = %format!("{e:#}"), "replication: link from the active closed");
                        }
                        conn = None;
                        publish_position(&setup, follower.position(), "idle");
                        continue;
                    }
                };
                in_step = matches!(reply, Reply::Applied(_));
                if let Some((c, _)) = conn.as_mut()
                    && c.queue(&reply.encode()).is_err()
                {
                    conn = None;
                }
                publish_position(&setup, follower.position(), "following");
            }
        }
    }
}

/// Applies one entry (durably) and says what the standby now holds.
async fn apply(store: &Store, follower: &mut Follower, entry: &Entry) -> Reply {
    let behind = |store: &Store| Reply::Behind {
        position: store.replica_position().map(generation).unwrap_or_default(),
        stream: store.epoch(),
    };
    match follower.check(entry) {
        Ok(Verdict::Duplicate) => Reply::Applied(follower.position()),
        Ok(Verdict::Apply) => {
            let applied = match ReplicationRecord::decode(&entry.bytes) {
                Ok(record) => store.apply_replicated(&record).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match applied {
                Ok(()) => {
                    follower.applied(entry);
                    Reply::Applied(follower.position())
                }
                Err(e) => {
                    warn!(error = %e, generation = ?entry.generation, "replication: entry refused; asking the active for what follows this store's position");
                    follower.lost_step();
                    behind(store)
                }
            }
        }
        Err(Refusal::StaleTerm { newest, .. }) => Reply::Fenced { newest_term: newest },
        Err(Refusal::OutOfStep { .. }) => behind(store),
    }
}

fn publish_position(setup: &FollowerSetup, position: Generation, state: &str) {
    setup.generation.send_if_modified(|g| {
        let changed = *g != position;
        *g = position;
        changed
    });
    setup.view.send_if_modified(|v| {
        let new = ReplicaView { state: state.to_owned(), position, ..ReplicaView::default() };
        let changed = *v != new;
        *v = new;
        changed
    });
}
