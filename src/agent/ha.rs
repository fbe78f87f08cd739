//! The gateway pair's IO shell (docs/ha-design.md): drives the sans-IO election (`ha::lease`)
//! over real sockets and the boot clock, and tells the agent when this gateway may act.
//!
//! Tasks, all under one stop token:
//! - **the election**: owns this gateway's `Node` and its own `Voter` (voter 0, in-process);
//!   sleeps until `Node::next_timeout`, sends each request to the three voters, counts replies,
//!   publishes the role ([`HaState`]) on a watch channel;
//! - **two dialers**, to the peer's and the witness's listen address (voters 1 and 2): each
//!   connects, authenticates (`ha::link`, this side the initiator), carries this node's
//!   requests and releases out and the voter's replies back, and reconnects with backoff;
//! - **the listener** on `[ha] listen`, the daemon's only listening socket: answers the peer
//!   node's requests with this gateway's voter (this side the responder). The witness
//!   (`hallmonitor witness`) runs the same listener and voter, without a node.
//! - **the fence timer**: cancels the lease token the moment the lease ends on the boot clock,
//!   whatever the election task is doing (an fsync of the voter record, say); the pollers run
//!   under that token, so none is left polling past the lease.
//!
//! [`HaShell::resign`] gives the lease up early (SIGTERM, `ha handover`): the node fences and
//! sends a release marked `resigned`; a gateway whose voter receives the peer's resignation has
//! its node ask at once. On stop each link first writes what is queued, so the release leaves.
//!
//! Time is `CLOCK_BOOTTIME`, which counts suspend (a holder suspended past its lease wakes up
//! knowing it). A voter writes its record (synced) before the grant leaves; a record that
//! cannot be written means no grant is sent. Link failures are logged once per link and state
//! change, not per attempt.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::replication::StreamLink;
use crate::config::HaSettings;
use crate::ha::lease::{
    Generation, LeaseParams, Node, NodeId, NodeOutput, Refusal, Release, Reply, Request, Verdict, Voter, VoterRecord,
};
use crate::ha::link::{CHALLENGE_LEN, HELLO_LEN, Initiator, NONCE_LEN, PROOF_LEN, Responder, Session, SharedKey};
use crate::ha::wire::{self, Message};
use crate::model::Timestamp;

/// The voter index of this gateway's own voter, the peer's and the witness's, as this node
/// counts them (indices are local to each node).
const OWN: usize = 0;
const PEER: usize = 1;
const WITNESS: usize = 2;
/// The file of this gateway's voter record, in the store directory.
pub const VOTER_RECORD_FILE: &str = "ha-voter.json";
const LEASE_RAN_OUT: &str = "lease ran out: no majority renewed it";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);

/// Reads `CLOCK_BOOTTIME`, the election's clock: monotonic and counting suspend.
pub fn boottime() -> Duration {
    read_boottime().unwrap_or_default()
}

fn read_boottime() -> std::io::Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0)))
}

/// Checked once at start, so `boottime` (which cannot report an error) never meets one: the
/// call fails only on a kernel without the clock (before Linux 2.6.39).
pub fn check_boottime() -> anyhow::Result<()> {
    read_boottime().map(|_| ()).context("reading CLOCK_BOOTTIME (the gateway pair's clock)")
}

/// Fresh random bytes (nonces, the incarnation).
fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow!("the system random source failed"))?;
    Ok(bytes)
}

/// Whether this gateway may poll and publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    Active,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

/// What the election last decided, for the agent, the status snapshot and health.
#[derive(Debug, Clone)]
pub struct HaState {
    pub node: String,
    pub role: Role,
    /// While active, the fencing token (`Node::held_term`); while standby, the term asked for.
    pub term: u64,
    /// When the role last changed (or the daemon started), and why.
    pub since: Timestamp,
    pub reason: String,
    /// When this gateway last became active, and why.
    pub last_takeover: Option<(Timestamp, String)>,
    pub peer_link_up: bool,
    pub witness_link_up: bool,
    /// The node holding the lease as far as this gateway knows: itself while active, else the
    /// other node its own voter is promised to, or that the other voters refused it for in the
    /// last lease (none when neither).
    pub active_node: Option<String>,
    /// While active: cancelled the moment the lease ends (by the fence timer). The agent runs
    /// the pollers under a child of it.
    pub lease: Option<CancellationToken>,
    /// The newest generation a majority of voters granted this node (`Node::granted_generation`):
    /// what degraded mode needs.
    pub granted_generation: Option<Generation>,
}

/// Why this gateway gives the lease up before it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resign {
    /// SIGTERM: the daemon stops (after draining its outbox while it still held the lease).
    Shutdown,
    /// `hallmonitor ha handover`: it stays, as standby, and asks for nothing for one lease so
    /// the peer wins.
    Handover,
}

/// A request to the election task.
struct ResignRequest {
    why: Resign,
    done: oneshot::Sender<()>,
}

/// The running shell of a gateway in a pair.
pub struct HaShell {
    state: watch::Receiver<HaState>,
    /// The generation this node reports in its requests (set by the replication stream).
    generation: Arc<watch::Sender<Generation>>,
    /// Replication links the peer's active opens to this gateway's listener, until taken.
    streams: Option<mpsc::Receiver<StreamLink>>,
    key: Arc<SharedKey>,
    peer: String,
    node: NodeId,
    resign: mpsc::Sender<ResignRequest>,
    /// The election's lease end (see `Election::lease_end`).
    lease_end: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl HaShell {
    /// Binds `[ha] listen`, reads the voter record from `store_dir` and starts the election.
    /// Fails on what the operator must fix: the address is taken, the record is unreadable.
    pub async fn start(settings: &HaSettings, store_dir: &Path) -> anyhow::Result<HaShell> {
        check_boottime()?;
        let params =
            LeaseParams::new(settings.lease, settings.drift_ppm, settings.guard).map_err(|e| anyhow!("[ha]: {e}"))?;
        let key = Arc::new(
            SharedKey::new(settings.key.expose().as_bytes())
                .map_err(|e| anyhow!("[ha] key_file {}: {e}", settings.key_file.display()))?,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("[ha] listen: cannot bind {}", settings.listen))?;
        std::fs::create_dir_all(store_dir).with_context(|| format!("creating {}", store_dir.display()))?;
        let voter = VoterCore::open(&store_dir.join(VOTER_RECORD_FILE), params)?;
        let incarnation = u64::from_be_bytes(random::<8>()?);
        let node = Node::new(NodeId(settings.node.clone()), params, incarnation, boottime());
        let stop = CancellationToken::new();
        let (state_tx, state_rx) = watch::channel(HaState {
            node: settings.node.clone(),
            role: Role::Standby,
            term: node.term(),
            since: Timestamp::now(),
            reason: "started".to_owned(),
            last_takeover: None,
            peer_link_up: false,
            witness_link_up: false,
            active_node: None,
            lease: None,
            granted_generation: None,
        });
        info!(node = %settings.node, listen = %settings.listen, peer = %settings.peer, witness = %settings.witness, "gateway pair: started as standby, asking for the lease");
        let (voter_tx, voter_rx) = mpsc::channel(64);
        let (reply_tx, reply_rx) = mpsc::channel(64);
        let (links_tx, links_rx) = mpsc::channel(8);
        let idle = params.lease() * 2;
        let (streams_tx, streams_rx) = mpsc::channel(4);
        let mut tasks =
            vec![tokio::spawn(serve_voter(listener, key.clone(), voter_tx, Some(streams_tx), idle * 2, stop.clone()))];
        let mut dial_to = |name: &'static str, address: &str, voter: usize| {
            let (tx, rx) = mpsc::channel(8);
            let link = Dialer {
                name,
                address: address.to_owned(),
                voter,
                key: key.clone(),
                replies: reply_tx.clone(),
                links: links_tx.clone(),
                idle,
                backoff_cap: params.renew_every(),
                stop: stop.clone(),
            };
            tasks.push(tokio::spawn(link.run(rx)));
            tx
        };
        let peer = dial_to("peer", &settings.peer, PEER);
        let witness = dial_to("witness", &settings.witness, WITNESS);
        let lease_end = Arc::new(AtomicU64::new(0));
        let (resign_tx, resign_rx) = mpsc::channel(1);
        let (generation_tx, generation_rx) = watch::channel(Generation::default());
        let election = Election {
            generation: generation_rx,
            node,
            voter,
            peer,
            witness,
            state: state_tx,
            lease_end: lease_end.clone(),
            fence_timer: None,
            lease: params.lease(),
            refused_for: None,
            peer_resigned: None,
        };
        tasks.push(tokio::spawn(election.run(voter_rx, reply_rx, links_rx, resign_rx, stop.clone())));
        Ok(HaShell {
            state: state_rx,
            generation: Arc::new(generation_tx),
            streams: Some(streams_rx),
            key,
            peer: settings.peer.clone(),
            node: NodeId(settings.node.clone()),
            resign: resign_tx,
            lease_end,
            stop,
            tasks,
        })
    }

    /// Where the replication stream reports the generation for this node's requests.
    pub fn generation(&self) -> Arc<watch::Sender<Generation>> {
        self.generation.clone()
    }

    /// The replication links the peer's active opens here (once; `None` after).
    pub fn take_stream_links(&mut self) -> Option<mpsc::Receiver<StreamLink>> {
        self.streams.take()
    }

    /// The peer-link key, the peer's address and this node's name, for the replication link.
    pub fn link_to_peer(&self) -> (Arc<SharedKey>, String, NodeId) {
        (self.key.clone(), self.peer.clone(), self.node.clone())
    }

    /// The role as the election decides it; `changed()` wakes on every change.
    pub fn state(&self) -> watch::Receiver<HaState> {
        self.state.clone()
    }

    /// How much of the lease is left (zero when not holding).
    pub fn lease_left(&self) -> Duration {
        Duration::from_nanos(self.lease_end.load(Ordering::SeqCst)).saturating_sub(boottime())
    }

    /// Gives the lease up now (fence, then a release to every voter, so the peer can take over
    /// within about one renew period instead of waiting out the promises), returning once the
    /// release is queued on the links. Call it only once nothing polls or publishes any more.
    pub async fn resign(&self, why: Resign) {
        let (done, finished) = oneshot::channel();
        if self.resign.send(ResignRequest { why, done }).await.is_ok() {
            let _ = timeout(Duration::from_secs(2), finished).await;
        }
    }

    /// Stops the election and the links (each link first sends what is queued on it, such as
    /// a release); the lease token (if active) is cancelled.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = timeout(Duration::from_secs(2), t).await;
        }
        if let Some(lease) = &self.state.borrow().lease {
            lease.cancel();
        }
    }
}

impl Drop for HaShell {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A voter with its durable record: this gateway's, or the witness's.
pub struct VoterCore {
    voter: Voter,
    record_path: PathBuf,
}

impl VoterCore {
    /// Reads the record; on a first start writes an empty one, so a place it cannot write is
    /// an error now rather than a refused grant later. A record that does not decode is an
    /// error, not a fresh start: a voter that forgot the terms it granted could grant one twice.
    pub fn open(record_path: &Path, params: LeaseParams) -> anyhow::Result<VoterCore> {
        let record = match crate::store::read_voter_record(record_path)
            .with_context(|| format!("reading the voter record {}", record_path.display()))?
        {
            Some(bytes) => wire::decode_record(&bytes).map_err(|e| {
                anyhow!(
                    "the voter record {} is unreadable ({e}); it holds the terms this voter granted: \
                     restore it, or (only with the whole pair stopped for one lease) remove it",
                    record_path.display()
                )
            })?,
            None => {
                let record = VoterRecord::default();
                crate::store::write_voter_record(record_path, &wire::encode_record(&record))
                    .with_context(|| format!("writing the voter record {}", record_path.display()))?;
                record
            }
        };
        Ok(VoterCore { voter: Voter::new(boottime(), params, record), record_path: record_path.to_owned() })
    }

    /// Answers a request. A grant that changed the record is returned only once the record is
    /// on disk; `None` when it could not be written (nothing may then be sent).
    pub async fn on_request(&mut self, request: &Request) -> Option<Reply> {
        let before = self.voter.record().clone();
        let reply = self.voter.on_request(boottime(), request);
        if *self.voter.record() != before {
            let bytes = wire::encode_record(self.voter.record());
            let path = self.record_path.clone();
            let written = tokio::task::spawn_blocking(move || crate::store::write_voter_record(&path, &bytes)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %e, file = %self.record_path.display(), "gateway pair: cannot store the voter record; the grant is not sent");
                    return None;
                }
                Err(e) => {
                    error!(error = %e, "gateway pair: the voter record write did not finish; the grant is not sent");
                    return None;
                }
            }
        }
        Some(reply)
    }

    pub fn on_release(&mut self, release: &Release) {
        self.voter.on_release(release);
    }

    /// The node this voter is promised to now, if any.
    pub fn promised_to(&self) -> Option<&NodeId> {
        self.voter.promised_to(boottime())
    }
}

/// What a voter's listener hands to the task owning the voter.
pub enum VoterEvent {
    Request(Request, oneshot::Sender<Option<Reply>>),
    Release(Release),
}

/// Serves `key`-authenticated links on `listener`, handing each request and release to `tx`;
/// ends on `stop`. A link silent for `idle` is closed.
pub async fn serve_voter(
    listener: TcpListener,
    key: Arc<SharedKey>,
    tx: mpsc::Sender<VoterEvent>,
    streams: Option<mpsc::Sender<StreamLink>>,
    idle: Duration,
    stop: CancellationToken,
) {
    // Per remote address, the last handshake outcome logged, so a peer retrying with a wrong
    // key is logged once, not on every attempt.
    let logged: Arc<Mutex<HashMap<IpAddr, String>>> = Arc::default();
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "gateway pair: accept failed");
                    sleep(BACKOFF_FIRST).await;
                    continue;
                }
            },
        };
        let (key, tx, streams, stop, logged) = (key.clone(), tx.clone(), streams.clone(), stop.clone(), logged.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                () = answer(stream, from, &key, &tx, streams.as_ref(), idle, &logged) => {}
            }
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    from: SocketAddr,
    key: &SharedKey,
    tx: &mpsc::Sender<VoterEvent>,
    streams: Option<&mpsc::Sender<StreamLink>>,
    idle: Duration,
    logged: &Mutex<HashMap<IpAddr, String>>,
) {
    let _ = stream.set_nodelay(true);
    let outcome = match timeout(HANDSHAKE_TIMEOUT, respond(&mut stream, key)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("handshake timed out".to_owned()),
    };
    let now = match &outcome {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.clone(),
    };
    if let Ok(mut logged) = logged.lock()
        && logged.get(&from.ip()) != Some(&now)
    {
        if logged.len() >= 1024 {
            logged.clear(); // many addresses probing: bound the memory, at the cost of repeats
        }
        match &outcome {
            Ok(_) => info!(from = %from, "gateway pair: link accepted"),
            Err(e) => warn!(from = %from, error = %e, "gateway pair: link refused (logged once until it changes)"),
        }
        logged.insert(from.ip(), now);
    }
    let Ok(mut session) = outcome else { return };
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = Vec::new();
    loop {
        let frame = match timeout(idle, read_frame(&mut reader, &mut buf)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                info!(from = %from, error = %format!("{e:#}"), "gateway pair: link closed");
                return;
            }
            Err(_) => {
                info!(from = %from, "gateway pair: link idle, closed");
                return;
            }
        };
        let message = session.open(&frame).map_err(anyhow::Error::from).and_then(|p| Ok(Message::decode(&p)?));
        match message {
            Ok(Message::Request(request)) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send(VoterEvent::Request(request, reply_tx)).await.is_err() {
                    return;
                }
                if let Ok(Some(reply)) = reply_rx.await {
                    let sent = match session.seal(&Message::Reply(reply).encode()) {
                        Ok(frame) => writer.write_all(&frame).await.map_err(anyhow::Error::from),
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = sent {
                        info!(from = %from, error = %format!("{e:#}"), "gateway pair: link closed");
                        return;
                    }
                }
            }
            Ok(Message::Release(release)) => {
                if tx.send(VoterEvent::Release(release)).await.is_err() {
                    return;
                }
            }
            Ok(Message::Reply(_)) => {} // a voter's link carries no replies inbound
            Ok(Message::Stream(hello)) => {
                // The rest of this link is the peer's replication stream: the standby's
                // follower takes it over (a witness has none, and closes it).
                match streams {
                    Some(streams) => {
                        let link = StreamLink { hello, from, session, reader, writer, buf };
                        let _ = streams.send(link).await;
                    }
                    None => warn!(from = %from, "gateway pair: a replication stream offered to a witness; closed"),
                }
                return;
            }
            Err(e) => {
                warn!(from = %from, error = %format!("{e:#}"), "gateway pair: bad frame, closing the link");
                return;
            }
        }
    }
}

/// The responder's side of the handshake.
async fn respond(stream: &mut TcpStream, key: &SharedKey) -> anyhow::Result<Session> {
    let mut hello = [0u8; HELLO_LEN];
    stream.read_exact(&mut hello).await.context("reading hello")?;
    let (responder, challenge) = Responder::on_hello(key, random::<NONCE_LEN>()?, &hello)?;
    stream.write_all(&challenge).await.context("sending challenge")?;
    let mut proof = [0u8; PROOF_LEN];
    stream.read_exact(&mut proof).await.context("reading proof")?;
    Ok(responder.on_proof(key, &proof)?)
}

/// The initiator's side of the handshake.
pub(super) async fn initiate(stream: &mut TcpStream, key: &SharedKey) -> anyhow::Result<Session> {
    let (initiator, hello) = Initiator::start(random::<NONCE_LEN>()?);
    stream.write_all(&hello).await.context("sending hello")?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut challenge).await.context("reading challenge")?;
    let (session, proof) = initiator.on_challenge(key, &challenge)?;
    stream.write_all(&proof).await.context("sending proof")?;
    Ok(session)
}

/// Reads one whole frame; `buf` keeps what arrived beyond it. Cancel-safe (a read either
/// completes into `buf` or did not happen).
pub(super) async fn read_frame(reader: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(len) = Session::frame_len(buf)? {
            return Ok(buf.drain(..len).collect());
        }
        let mut chunk = [0u8; 4096];
        let got = reader.read(&mut chunk).await?;
        if got == 0 {
            bail!("closed by the other end");
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// A link this node opens to a remote voter.
struct Dialer {
    name: &'static str,
    address: String,
    voter: usize,
    key: Arc<SharedKey>,
    replies: mpsc::Sender<(usize, Reply)>,
    /// (voter, up) on every change of the link's state.
    links: mpsc::Sender<(usize, bool)>,
    idle: Duration,
    backoff_cap: Duration,
    stop: CancellationToken,
}

impl Dialer {
    async fn run(self, mut outbox: mpsc::Receiver<Message>) {
        let mut retry = 0u32;
        let mut logged: Option<String> = None;
        loop {
            let attempt = async {
                let mut stream = TcpStream::connect(&self.address).await.context("connecting")?;
                let _ = stream.set_nodelay(true);
                let session = initiate(&mut stream, &self.key).await?;
                anyhow::Ok((stream, session))
            };
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = timeout(HANDSHAKE_TIMEOUT, attempt) => r.unwrap_or_else(|_| Err(anyhow!("handshake timed out"))),
            };
            let failure = match outcome {
                Ok((stream, session)) => {
                    retry = 0;
                    info!(link = %self.name, address = %self.address, "gateway pair: link up");
                    logged = None;
                    let _ = self.links.send((self.voter, true)).await;
                    let ended = self.carry(stream, session, &mut outbox).await;
                    let _ = self.links.send((self.voter, false)).await;
                    match ended {
                        Ok(()) => return, // stopped
                        Err(e) => format!("{e:#}"),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if logged.as_deref() != Some(&failure) {
                warn!(link = %self.name, address = %self.address, error = %failure, "gateway pair: link down (retrying with backoff; logged once until it changes)");
                logged = Some(failure);
            }
            // What was queued meanwhile is stale: the election sends afresh every renew period.
            while outbox.try_recv().is_ok() {}
            let wait = crate::backoff::delay(BACKOFF_FIRST, self.backoff_cap, retry);
            retry = retry.saturating_add(1);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = sleep(wait) => {}
            }
        }
    }

    /// Carries messages both ways until the link fails (`Err`) or the shell stops (`Ok`).
    async fn carry(
        &self,
        stream: TcpStream,
        mut session: Session,
        outbox: &mut mpsc::Receiver<Message>,
    ) -> anyhow::Result<()> {
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = Vec::new();
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                message = outbox.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    let frame = session.seal(&message.encode())?;
                    writer.write_all(&frame).await.context("sending")?;
                }
                frame = read_frame(&mut reader, &mut buf) => {
                    heard = tokio::time::Instant::now();
                    let payload = session.open(&frame?)?;
                    if let Message::Reply(reply) = Message::decode(&payload)? {
                        let _ = self.replies.send((self.voter, reply)).await;
                    }
                }
                _ = tokio::time::sleep_until(heard + self.idle) => bail!("no reply for {:?}", self.idle),
                // After what is queued (`biased`): a resignation's release goes out before the
                // link closes.
                _ = self.stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// The election task's state.
struct Election {
    /// The generation to report, from the replication stream.
    generation: watch::Receiver<Generation>,
    node: Node,
    voter: VoterCore,
    peer: mpsc::Sender<Message>,
    witness: mpsc::Sender<Message>,
    state: watch::Sender<HaState>,
    /// The lease end on the boot clock in nanoseconds (0: not holding), for the fence timer.
    lease_end: Arc<AtomicU64>,
    fence_timer: Option<JoinHandle<()>>,
    /// `L`: how long a node that handed over asks for nothing.
    lease: Duration,
    /// The node a voter last refused this one for (its promise to it), and when (boot clock):
    /// while candidate, who holds as far as the other voters say.
    refused_for: Option<(NodeId, Duration)>,
    /// When the peer last resigned (boot clock), until this node next becomes active: the
    /// reason it gives then, if that is within a lease.
    peer_resigned: Option<Duration>,
}

impl Election {
    async fn run(
        mut self,
        mut voter_rx: mpsc::Receiver<VoterEvent>,
        mut reply_rx: mpsc::Receiver<(usize, Reply)>,
        mut links_rx: mpsc::Receiver<(usize, bool)>,
        mut resign_rx: mpsc::Receiver<ResignRequest>,
        stop: CancellationToken,
    ) {
        loop {
            let generation = *self.generation.borrow_and_update();
            self.node.set_generation(generation);
            let wait = self.node.next_timeout().saturating_sub(boottime());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep(wait) => {
                    let out = self.node.on_tick(boottime());
                    self.handle(out).await;
                }
                Some(event) = voter_rx.recv() => match event {
                    VoterEvent::Request(request, reply) => {
                        let _ = reply.send(self.voter.on_request(&request).await);
                    }
                    VoterEvent::Release(release) => {
                        self.voter.on_release(&release);
                        // The peer resigned: ask now rather than at the next period.
                        if release.resigned
                            && release.candidate != *self.node.name()
                            && self.node.role() == crate::ha::lease::Role::Candidate
                        {
                            info!(node = %release.candidate, "gateway pair: the peer gave up the lease; asking for it");
                            self.node.on_resigned(boottime(), &release.candidate);
                            self.peer_resigned = Some(boottime());
                        }
                    }
                },
                Some(ResignRequest { why, done }) = resign_rx.recv() => {
                    let pause = match why {
                        // The process ends next; "never again in this run".
                        Resign::Shutdown => self.lease * 100,
                        Resign::Handover => self.lease,
                    };
                    let out = self.node.resign(boottime(), pause);
                    // Who it was refused for before it held says nothing about who holds next.
                    self.refused_for = None;
                    let reason = match why {
                        Resign::Shutdown => "resigned: shutting down (SIGTERM)",
                        Resign::Handover => "handed over (hallmonitor ha handover)",
                    };
                    self.handle_with(out, reason).await;
                    let _ = done.send(());
                }
                Some((voter, reply)) = reply_rx.recv() => {
                    if let Verdict::Refused(Refusal::Promised { to: other } | Refusal::TermTaken { by: other }) = &reply.verdict
                        && other != self.node.name()
                    {
                        self.refused_for = Some((other.clone(), boottime()));
                    }
                    let out = self.node.on_reply(boottime(), voter, &reply);
                    self.handle(out).await;
                }
                Some((voter, up)) = links_rx.recv() => self.state.send_modify(|s| match voter {
                    PEER => s.peer_link_up = up,
                    _ => s.witness_link_up = up,
                }),
            }
            self.refresh_active_node();
        }
        self.lease_end.store(0, Ordering::SeqCst);
        if let Some(lease) = &self.state.borrow().lease {
            lease.cancel();
        }
        if let Some(t) = self.fence_timer.take() {
            t.abort();
        }
    }

    async fn handle(&mut self, outputs: Vec<NodeOutput>) {
        self.handle_with(outputs, LEASE_RAN_OUT).await;
    }

    /// Carries out the node's outputs; `fence_reason` says why, should one be a fence.
    async fn handle_with(&mut self, outputs: Vec<NodeOutput>, fence_reason: &str) {
        let mut queue: VecDeque<NodeOutput> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                NodeOutput::Send(request) => {
                    // Lost when a link is down or full: the election is built for lost messages.
                    let _ = self.peer.try_send(Message::Request(request.clone()));
                    let _ = self.witness.try_send(Message::Request(request.clone()));
                    if let Some(reply) = self.voter.on_request(&request).await {
                        queue.extend(self.node.on_reply(boottime(), OWN, &reply));
                    }
                }
                NodeOutput::Release(release) => {
                    self.voter.on_release(&release);
                    let _ = self.peer.try_send(Message::Release(release.clone()));
                    let _ = self.witness.try_send(Message::Release(release));
                }
                NodeOutput::BecameHolder { term } => self.became_active(term),
                NodeOutput::Fenced { term } => self.fenced(term, fence_reason),
            }
        }
        self.publish_lease_end();
    }

    /// Keeps the fence timer's deadline at the node's lease end (renewals move it).
    fn publish_lease_end(&mut self) {
        let end = match self.node.role() {
            crate::ha::lease::Role::Holder => self.node.lease_end().map_or(0, |e| e.as_nanos() as u64),
            crate::ha::lease::Role::Candidate => 0,
        };
        self.lease_end.store(end, Ordering::SeqCst);
        let term = match self.node.role() {
            crate::ha::lease::Role::Holder => self.node.held_term().unwrap_or(self.node.term()),
            crate::ha::lease::Role::Candidate => self.node.term(),
        };
        let granted = match self.node.role() {
            crate::ha::lease::Role::Holder => self.node.granted_generation(),
            crate::ha::lease::Role::Candidate => None,
        };
        self.state.send_if_modified(|s| {
            let changed = s.term != term || s.granted_generation != granted;
            s.term = term;
            s.granted_generation = granted;
            changed
        });
    }

    fn became_active(&mut self, term: u64) {
        let (peer_up, witness_up) = {
            let s = self.state.borrow();
            (s.peer_link_up, s.witness_link_up)
        };
        let resigned = self.peer_resigned.take().is_some_and(|at| boottime() < at + self.lease);
        let reason = match (resigned, peer_up, witness_up) {
            (true, _, _) => "the peer gave the lease up (stopped, or handed over)",
            (false, true, true) => "elected (peer and witness reachable)",
            (false, false, _) => "peer unreachable (its lease ran out or it never held)",
            (false, true, false) => "elected without the witness",
        };
        let lease = CancellationToken::new();
        self.lease_end.store(self.node.lease_end().map_or(0, |e| e.as_nanos() as u64), Ordering::SeqCst);
        if let Some(t) = self.fence_timer.take() {
            t.abort();
        }
        self.fence_timer = Some(tokio::spawn(fence_at_lease_end(self.lease_end.clone(), lease.clone())));
        let now = Timestamp::now();
        info!(from = %Role::Standby.as_str(), to = %Role::Active.as_str(), term, reason, "role changed");
        self.state.send_modify(|s| {
            s.role = Role::Active;
            s.term = term;
            s.since = now;
            s.reason = reason.to_owned();
            s.last_takeover = Some((now, reason.to_owned()));
            s.lease = Some(lease);
        });
    }

    /// Who holds, as far as this gateway knows (see `HaState::active_node`).
    fn refresh_active_node(&mut self) {
        let holder = match self.node.role() {
            crate::ha::lease::Role::Holder => Some(self.node.name().0.clone()),
            // Its own voter's promise to the other node, else the other voters' (as their
            // refusals said, within one lease): its own voter may be free between renewals.
            crate::ha::lease::Role::Candidate => self
                .voter
                .promised_to()
                .filter(|n| *n != self.node.name())
                .or_else(|| self.refused_for.as_ref().filter(|(_, at)| boottime() < *at + self.lease).map(|(n, _)| n))
                .map(|n| n.0.clone()),
        };
        self.state.send_if_modified(|s| {
            let changed = s.active_node != holder;
            s.active_node = holder;
            changed
        });
    }

    fn fenced(&mut self, term: u64, reason: &str) {
        self.lease_end.store(0, Ordering::SeqCst);
        if let Some(lease) = &self.state.borrow().lease {
            lease.cancel();
        }
        if reason == LEASE_RAN_OUT {
            warn!(from = %Role::Active.as_str(), to = %Role::Standby.as_str(), term, reason, "role changed");
        } else {
            info!(from = %Role::Active.as_str(), to = %Role::Standby.as_str(), term, reason, "role changed");
        }
        self.state.send_modify(|s| {
            s.role = Role::Standby;
            s.since = Timestamp::now();
            s.reason = reason.to_owned();
            s.lease = None;
        });
    }
}

/// Cancels `lease` once the boot clock passes `end` (re-read after each sleep: renewals move
/// it; 0 means the lease is gone).
async fn fence_at_lease_end(end: Arc<AtomicU64>, lease: CancellationToken) {
    loop {
        let until = Duration::from_nanos(end.load(Ordering::SeqCst));
        let now = boottime();
        if until <= now {
            lease.cancel();
            return;
        }
        tokio::select! {
            _ = lease.cancelled() => return,
            _ = sleep(until - now) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config's check (with positions) and the election's own refuse the same timings.
    #[test]
    fn the_config_check_agrees_with_lease_params() {
        for lease_ms in [1_000u64, 3_000, 3_500, 6_000, 10_000, 30_000] {
            for drift_ppm in [0u32, 100, 10_000, 50_000, 100_000, 100_001] {
                for guard_ms in [0u64, 100, 500, 900, 1_000, 2_000, 3_000, 4_000] {
                    let (lease, guard) = (Duration::from_millis(lease_ms), Duration::from_millis(guard_ms));
                    let config = HaSettings::check_timing(lease, drift_ppm, guard).is_ok();
                    let election = LeaseParams::new(lease, drift_ppm, guard).is_ok();
                    assert_eq!(config, election, "lease {lease:?} drift {drift_ppm} guard {guard:?}");
                }
            }
        }
    }

    #[test]
    fn the_boot_clock_reads_and_moves_forward() {
        check_boottime().expect("Linux has CLOCK_BOOTTIME");
        let a = boottime();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime() > a);
    }

    #[test]
    fn a_voter_record_survives_a_restart_and_a_corrupt_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(VOTER_RECORD_FILE);
        let params = LeaseParams::new(Duration::from_secs(3), 10_000, Duration::from_millis(500)).expect("params");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut core = VoterCore::open(&path, params).expect("no record yet");
        assert!(path.exists(), "a first start writes an empty record");
        let nowhere = dir.path().join("missing-dir").join(VOTER_RECORD_FILE);
        let err = VoterCore::open(&nowhere, params).err().expect("an unwritable place fails at start");
        assert!(err.to_string().contains("writing the voter record"), "{err}");
        // Past the quiet period of a fresh voter.
        core.voter = Voter::new(Duration::ZERO, params, VoterRecord::default());
        let request = Request {
            candidate: NodeId("gw1".to_owned()),
            incarnation: 1,
            round: 0,
            term: 4,
            generation: Default::default(),
        };
        let reply = rt.block_on(core.on_request(&request)).expect("stored, so sent");
        assert_eq!(reply.verdict, crate::ha::lease::Verdict::Granted);
        let again = VoterCore::open(&path, params).expect("record readable");
        assert_eq!(again.voter.record().highest_term, 4);
        assert_eq!(again.voter.record().term_owner, Some(NodeId("gw1".to_owned())));
        std::fs::write(&path, b"{not json").expect("write");
        let err = VoterCore::open(&path, params).err().expect("corrupt record refused");
        assert!(err.to_string().contains("unreadable"), "{err}");
    }
}
