//! One device's SNMP session on top of async-snmp: building the client from
//! `SnmpSettings`, batched GETs that halve (and remember) on tooBig, bounded multi-column
//! GETBULK table walks (GETNEXT on v1), and mapping library errors to `SnmpError`.
//!
//! Table walks are sized to the table: a session remembers how many rows each column had at
//! the end of its last walk and asks for that many repetitions, at most `max_repetitions`;
//! one walk in `CHECK_END_EVERY` asks for one more, to see the end. A table that grew is
//! walked on past that once seen (a sensor plugged in shows up within ten polls); one that
//! shrank ends early; both are learned afresh. Columns that need under half the repetitions
//! of the longest one go in a request of their own rather than being padded to its length,
//! unless their rows are few and known: then they are asked cell by cell in the longest
//! one's request (`FOLD_MAX_ROWS`), so a PDU's poll is one request.
//!
//! Sockets: pollers share one UDP socket per local bind address (`SharedSockets`). Besides
//! saving a socket and a receive task per device, this avoids a real failure: async-snmp
//! binds client sockets with SO_REUSEADDR, and Linux may then hand two such sockets the
//! same ephemeral port, after which one device's answers go to the other socket and that
//! device looks dead forever (seen with 200 per-device sockets: one device down per run).
//!
//! Replies are matched to requests by request-id, and (`strict_source`) only accepted from
//! the device's own address and port: the shared socket binds the unspecified address, so
//! without that check anyone on the network who guessed a request-id could answer for a
//! device. A reply from elsewhere is dropped and the request keeps waiting for the real one.
//!
//! SNMPv3: async-snmp discovers the engine id on first use and resynchronises the time
//! window from an authenticated notInTimeWindow report, so an agent that rebooted (boots
//! counter up, time reset) keeps answering. If the agent's engine id changed (device
//! replaced or reset), the request fails with an unknownEngineID report; the client then
//! rediscovers the engine once and retries (see `retrying_v3`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use async_snmp::{
    Auth, Candidate, Client, Community, CommunityResponsePolicy, CommunityVersion, Error as LibError, ErrorStatus, Oid,
    RequestRegistration, ResponseMetadata, Retry, Transport, UdpClient, UdpHandle, UdpTransport, UsmConfig, Value,
    VarBind, v3::ReportStatus,
};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use tokio::sync::Semaphore;

use super::plan::ColumnRows;
use super::wire;
use crate::config::{AuthProtocol, PrivProtocol, SnmpSettings, SnmpVersion};

/// Rows per column at most: a guard against agents whose tables never end.
const MAX_ROWS_PER_COLUMN: usize = 10_000;

/// One walk in this many asks each column for one row past its learned length, to see a
/// table that grew (a sensor plugged in); the others ask for the learned length only.
const CHECK_END_EVERY: u32 = 10;

/// A column of at most this many rows, known from the last walk, is asked cell by cell as
/// non-repeaters of the longest columns' GETBULK (a PDU's phase and sensor tables).
const FOLD_MAX_ROWS: usize = 4;

/// Varbinds one GETBULK may ask for with folded columns: what agents answer in one message.
const FOLD_MAX_VARBINDS: usize = 60;

/// Longest wait for one answer (the config allows less): keeps a deadline representable.
/// Replays whose answer had another shape, in a row, after which a session stops recording
/// templates (an agent whose tables change at every poll, or that encodes names unusually).
const TEMPLATE_MISSES_MAX: u8 = 3;
const MAX_ATTEMPT: Duration = Duration::from_secs(3600);

/// Why a request to an agent failed. Keeps "the agent answered with an error" apart from
/// "the agent could not be reached".
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SnmpError {
    /// No answer within timeout and retries. For SNMPv3 with authentication this is also
    /// what wrong credentials look like: the agent drops what it cannot authenticate.
    #[error("no answer from {address} after {retries} retries{hint}", hint = if *.v3_auth {
        ": agent unreachable, or SNMPv3 credentials may be wrong (a wrong password looks like silence)"
    } else {
        ": agent unreachable, or wrong community"
    })]
    Timeout { address: String, retries: u32, v3_auth: bool },
    /// The network refused the request (ICMP unreachable, no route...).
    #[error("cannot reach {address}: {detail}")]
    Unreachable { address: String, detail: String },
    /// The agent answered with an error-status (genErr, tooBig on one OID, noAccess...).
    #[error("agent {address} answered with error-status {status}{at}", at = oid.as_ref().map(|o| format!(" for {o}")).unwrap_or_default())]
    ErrorStatus { address: String, status: String, oid: Option<String> },
    /// The agent rejected our SNMPv3 credentials (an authenticated report or failed check).
    #[error("agent {address} rejected SNMPv3 credentials ({detail}): credentials may be wrong")]
    Credentials { address: String, detail: String },
    /// Anything else the agent sent that made no sense (decode error, broken walk...).
    #[error("bad answer from {address}: {detail}")]
    Protocol { address: String, detail: String },
    /// The device's settings could not make a client (e.g. a v3 password under 8 chars).
    #[error("cannot set up SNMP for {address}: {detail}")]
    Setup { address: String, detail: String },
}

impl SnmpError {
    /// True when the agent could not be reached at all (no answer, network error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SnmpError::Timeout { .. } | SnmpError::Unreachable { .. })
    }
}

/// Polls of one agent (by its configured address) that may run at once. Usually an agent is
/// one device, whose polls run one after the other anyway. An agent that answers for many
/// devices (an SNMP proxy, the master of a daisy chain, a simulator) is sent no more than it
/// can answer: past its capacity, requests wait in its queue beyond their timeout, it answers
/// them for nobody while their retries queue behind, and it falls behind for good (the
/// 100 PDUs of `scripts/bench-peers`, one snmpsim process, fell to 0-44 % of points at 1 s).
pub const POLLS_PER_AGENT: usize = 4;

/// UDP sockets shared by all pollers of a process, one per local bind address: the
/// loopback address for loopback agents, the unspecified address of the family otherwise;
/// and each agent's turns to be polled (`POLLS_PER_AGENT`).
#[derive(Default)]
pub struct SharedSockets {
    sockets: tokio::sync::Mutex<HashMap<SocketAddr, UdpTransport>>,
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl SharedSockets {
    pub fn new() -> Self {
        Self::default()
    }

    /// The turns of the agent at `address`, shared by every device polled there.
    pub fn agent_turns(&self, address: &str) -> Arc<Semaphore> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.entry(address.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(POLLS_PER_AGENT))).clone()
    }

    async fn for_target(&self, target: &SocketAddr) -> Result<UdpTransport, String> {
        let bind: SocketAddr = match (target.is_ipv4(), target.ip().is_loopback()) {
            (true, true) => ([127, 0, 0, 1], 0).into(),
            (true, false) => ([0, 0, 0, 0], 0).into(),
            (false, true) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
            (false, false) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let mut map = self.sockets.lock().await;
        if let Some(t) = map.get(&bind) {
            return Ok(t.clone());
        }
        let t = UdpTransport::bind(bind.to_string()).await.map_err(|e| format!("bind {bind}: {e}"))?;
        map.insert(bind, t.clone());
        Ok(t)
    }
}

/// A v2c poller's GETBULK without async-snmp's `Pdu`: encoded and decoded by `wire`, sent and
/// matched to its answer by the client's own socket (request-id, version, community and source
/// checked there, as for the client's requests). Timeouts and retries as the client's. An
/// answer `wire` cannot read comes back as `Ok(Err(_))`: the session then asks async-snmp.
struct CommunityBulk {
    handle: UdpHandle,
    community: Community,
    timeout: Duration,
    retry: Retry,
    /// The encoded request, kept from poll to poll.
    buf: Vec<u8>,
}

impl CommunityBulk {
    async fn get_bulk(
        &mut self,
        oids: &[Oid],
        non_repeaters: u32,
        max_repetitions: u32,
    ) -> Result<Result<Vec<VarBind>, wire::Malformed>, Box<LibError>> {
        let data = self.exchange(oids, non_repeaters, max_repetitions).await?;
        match wire::decode_response(&data) {
            Err(unreadable) => Ok(Err(unreadable)),
            Ok(r) if r.error_status != 0 => {
                let index = u32::try_from(r.error_index).unwrap_or(0);
                let oid =
                    index.checked_sub(1).and_then(|i| r.varbinds.get(i as usize)).map(|vb| Box::new(vb.oid.clone()));
                Err(LibError::Snmp {
                    target: self.handle.peer_addr(),
                    status: ErrorStatus::from_i32(r.error_status),
                    index,
                    oid,
                    metadata: Box::new(ResponseMetadata::default()),
                }
                .boxed())
            }
            Ok(r) => Ok(Ok(r.varbinds)),
        }
    }

    /// Sends the GETBULK (again after each timeout, as configured) and returns the answer
    /// as it came: the transport matched it to this request (id, version, community, source)
    /// before this returns, so it is the agent's answer, readable or not.
    async fn exchange(
        &mut self,
        oids: &[Oid],
        non_repeaters: u32,
        max_repetitions: u32,
    ) -> Result<Bytes, Box<LibError>> {
        self.exchange_as(oids, None, non_repeaters, max_repetitions).await
    }

    /// `exchange` of a request whose variable-bindings were encoded before (a replay).
    async fn exchange_encoded(
        &mut self,
        varbinds: &[u8],
        non_repeaters: u32,
        max_repetitions: u32,
    ) -> Result<Bytes, Box<LibError>> {
        self.exchange_as(&[], Some(varbinds), non_repeaters, max_repetitions).await
    }

    async fn exchange_as(
        &mut self,
        oids: &[Oid],
        varbinds: Option<&[u8]>,
        non_repeaters: u32,
        max_repetitions: u32,
    ) -> Result<Bytes, Box<LibError>> {
        let request_id = self.handle.alloc_request_id();
        let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let request = wire::GetBulk {
            community: self.community.as_bytes(),
            request_id,
            non_repeaters: clamp(non_repeaters),
            max_repetitions: clamp(max_repetitions),
            oids,
        };
        match varbinds {
            Some(varbinds) => wire::encode_with(&request, varbinds, &mut self.buf),
            None => wire::encode(&request, &mut self.buf),
        }
        let target = self.handle.peer_addr();
        let started = tokio::time::Instant::now();
        let retries = self.retry.retries();
        for attempt in 0..=retries {
            let registration = RequestRegistration::community(
                request_id,
                tokio::time::Instant::now() + self.timeout.min(MAX_ATTEMPT),
                CommunityVersion::V2c,
                self.community.clone(),
                CommunityResponsePolicy::Exact,
            );
            match self.handle.request_with(&self.buf, registration, |data, _| Ok(Candidate::Accept(data))).await {
                Ok(data) => return Ok(data),
                Err(e) if matches!(*e, LibError::Timeout { .. }) => {
                    if attempt < retries {
                        tokio::time::sleep(self.retry.compute_delay(attempt)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(LibError::Timeout { target, elapsed: started.elapsed(), retries }.boxed())
    }
}

/// The result of a batched GET: per OID, the value or why the agent would not give it.
pub type GetResults = HashMap<Oid, Result<Value, String>>;

/// The rows of walked table columns, by column.
pub type Columns = HashMap<Oid, ColumnRows>;

/// An OID a GETNEXT from which lands on `oid` when it exists: its parent for a `.0` instance,
/// else the same OID with its last arc one less (an instance is a leaf, so no OID lies
/// between the two). `None` for an OID too short to have one.
fn predecessor(oid: &Oid) -> Option<Oid> {
    let arcs = oid.arcs();
    let (&last, parent) = arcs.split_last()?;
    if parent.len() < 2 {
        return None;
    }
    if last == 0 {
        Some(Oid::from_slice(parent))
    } else {
        let mut before = arcs.to_vec();
        *before.last_mut()? = last - 1;
        Some(Oid::from_slice(&before))
    }
}

/// One device's SNMP session.
pub struct SnmpSession {
    client: UdpClient,
    /// The GETBULK of a v2c poller's walks (`wire`); v3, v1 and one-off sessions go through
    /// `client`, and so does a session after an answer `wire` could not read.
    bulk: Option<CommunityBulk>,
    address: String,
    version: SnmpVersion,
    v3_auth: bool,
    retries: u32,
    /// OIDs per GET; starts at `max_oids_per_request`, halved on tooBig and kept.
    batch: usize,
    max_repetitions: u32,
    /// GETBULK shape in use: repetitions and columns per request. Start at the configured
    /// limits; halved (and kept) when an agent fails a GETBULK with tooBig or genErr, which
    /// is what net-snmp answers when a v3 response would not fit.
    bulk_reps: u32,
    bulk_cols: usize,
    /// Consecutive v3 timeouts (for rediscovery backoff); reset by any answer.
    v3_timeouts: u32,
    /// Whether a v3 timeout or stale-engine report triggers a rediscovery (a request the
    /// caller did not ask for). `discover` turns it off: it paces every request itself.
    engine_recovery: bool,
    /// Requests sent since the last `take_requests`.
    requests: u64,
    /// Rows each table column had when its last walk ended: the next walk asks for that many
    /// repetitions, so a 3-row table costs 3 varbinds, not 25; one walk in `CHECK_END_EVERY`
    /// asks for one more to see the end. A table that shrank ends early; one that grew is
    /// walked on to its end once a walk sees the extra row; either way the walk learns the
    /// new length.
    learned_rows: HashMap<Oid, usize>,
    /// Table walks so far (which of them check the ends), from a random start: the sessions
    /// of a site, started together, would otherwise all check on the same poll, and an agent
    /// serving many of them (a proxy, a simulator) would see the extra load at once.
    walks: u32,
    /// Row indices of the short columns (`FOLD_MAX_ROWS`) at the end of the last walk.
    short_rows: HashMap<Oid, Vec<Vec<u32>>>,
    /// Folding short columns into one GETBULK; off for good once the agent refused one.
    fold: bool,
    /// Scalars a GETNEXT from their `predecessor` did not land on: asked with GET instead.
    get_instead: HashSet<Oid>,
    /// The last walk's request and the shape of its answer, while a poll can repeat it.
    template: Option<Template>,
    /// Replays in a row whose answer had another shape.
    template_misses: u8,
    /// Walks answered by a replay since the session began.
    replays: u64,
}

/// What a walk of one GETBULK looked at, from which `Template::of` makes a template.
struct AnswerShape {
    request: Vec<Oid>,
    non_repeaters: u32,
    reps: u32,
    answer_len: usize,
    /// The answer's varbinds the walk looked at: position, name, whether endOfMibView.
    looked: Vec<(usize, Oid, bool)>,
}

/// A poll's walk that took one GETBULK and left the session as it was, so the next poll
/// would send the same request and, while the agent's tables stay as they are, read an
/// answer with the same names in the same places. `SnmpSession::replay` sends it again and,
/// when the answer's names (compared as bytes) and ends are where they were, puts each value
/// where the walk put it: no request built, no name decoded but the cells' own, nothing
/// compared or looked up per varbind. A different answer goes to the walk, which learns what
/// changed. It is small (a gateway holds one per device): names and the request as BER, the
/// walk's columns by `key`; the results are built anew each poll, not kept.
struct Template {
    /// The walk it answers: its scalar targets, and its columns' keys in order.
    scalars: u64,
    columns: Vec<u64>,
    /// The request's variable-bindings (`wire::encode_varbinds`).
    varbinds: Vec<u8>,
    non_repeaters: u32,
    reps: u32,
    /// Varbinds in the answer.
    answer_len: u32,
    /// The varbinds the walk looked at, by position: position, its name's BER content
    /// (`names[from..to]`), whether it was endOfMibView.
    looked: Vec<(u32, u32, u32, bool)>,
    names: Vec<u8>,
    /// Where each value goes: the scalars landed on, and each column's cells, by position,
    /// with the length of the column's own BER content (a cell's row index follows it).
    scalar_at: Vec<(Oid, u32)>,
    cells_at: Vec<(Oid, u32, Vec<u32>)>,
    /// Kept across a walk of other columns since its last replay (`SnmpSession::walk`).
    kept: bool,
}

/// How a template knows a column, or a walk's scalar targets: by a hash of their OIDs.
fn key<'a>(oids: impl IntoIterator<Item = &'a Oid>) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x6861_6c6c).build_hasher();
    for oid in oids {
        oid.hash(&mut h);
    }
    h.finish()
}

/// The key of a walk's scalar targets.
fn scalars_key(scalars: &[(Oid, Oid)]) -> u64 {
    key(scalars.iter().map(|(oid, _)| oid))
}

impl Template {
    /// The template of a walk (`None` when a cell of `out` came from no varbind looked at,
    /// which a walk of one request does not do).
    fn of(
        shape: AnswerShape,
        scalars: &[(Oid, Oid)],
        columns: &[Oid],
        gets: &GetResults,
        out: &Columns,
    ) -> Option<Self> {
        let small = |n: usize| u32::try_from(n).ok();
        let mut names = Vec::new();
        let mut looked = Vec::with_capacity(shape.looked.len());
        let mut position: HashMap<&Oid, u32> = HashMap::with_capacity(shape.looked.len());
        for (at, oid, end) in &shape.looked {
            let (at, from) = (small(*at)?, small(names.len())?);
            wire::oid_content(oid, &mut names);
            looked.push((at, from, small(names.len())?, *end));
            if !*end && position.insert(oid, at).is_some() {
                return None;
            }
        }
        looked.sort_unstable_by_key(|l| l.0);
        let mut scalar_at = Vec::with_capacity(gets.len());
        for oid in gets.keys() {
            scalar_at.push((oid.clone(), *position.get(oid)?));
        }
        let mut cells_at = Vec::with_capacity(out.len());
        let mut prefix = Vec::new();
        for (column, rows) in out {
            prefix.clear();
            wire::oid_content(column, &mut prefix);
            let at: Option<Vec<u32>> = rows.oids().map(|oid| position.get(&oid).copied()).collect();
            let at = at?;
            // A replay reads each row from its name after these bytes.
            let name = |&i: &u32| looked.binary_search_by_key(&i, |l| l.0).ok().map(|l| looked[l]);
            if !at
                .iter()
                .all(|i| name(i).is_some_and(|(_, from, to, _)| names[from as usize..to as usize].starts_with(&prefix)))
            {
                return None;
            }
            cells_at.push((column.clone(), small(prefix.len())?, at));
        }
        let mut varbinds = Vec::new();
        wire::encode_varbinds(&shape.request, &mut varbinds);
        Some(Self {
            scalars: scalars_key(scalars),
            columns: columns.iter().map(|c| key([c])).collect(),
            varbinds,
            non_repeaters: shape.non_repeaters,
            reps: shape.reps,
            answer_len: small(shape.answer_len)?,
            looked,
            names,
            scalar_at,
            cells_at,
            kept: false,
        })
    }

    /// Whether a walk of `scalars` and `columns` asks at least what it answers: the same
    /// scalars, and its columns among them (a walk that also walks label columns).
    fn covers(&self, scalars: &[(Oid, Oid)], columns: &[Oid]) -> bool {
        let keys: Vec<u64> = columns.iter().map(|c| key([c])).collect();
        self.scalars == scalars_key(scalars) && self.columns.iter().all(|c| keys.contains(c))
    }

    /// Whether it answers a walk of `scalars` and `columns`.
    fn fits(&self, scalars: &[(Oid, Oid)], columns: &[Oid]) -> bool {
        self.scalars == scalars_key(scalars)
            && self.columns.len() == columns.len()
            && self.columns.iter().zip(columns).all(|(k, c)| *k == key([c]))
    }

    /// Whether an answer (`names` as ranges of `data`, `values`) has this shape.
    fn matches(&self, data: &[u8], names: &[(usize, usize)], values: &[Value]) -> bool {
        names.len() == self.answer_len as usize
            && self.looked.iter().all(|&(at, from, to, end)| {
                let (start, stop) = names[at as usize];
                data.get(start..stop) == self.names.get(from as usize..to as usize)
                    && matches!(values[at as usize], Value::EndOfMibView) == end
            })
    }
}

/// One column of a table walk in progress.
struct ColumnWalk {
    column: Oid,
    /// Rows returned so far in this walk.
    rows: usize,
    /// Rows the column had at the end of the previous walk, if it was walked before.
    expect: Option<usize>,
    /// Ask for one row past `expect` to see whether the table grew.
    check_end: bool,
}

impl ColumnWalk {
    /// Repetitions this column needs from the next GETBULK: the rows it is expected still to
    /// have (plus one to see its end when `check_end`), or `limit` when its length is unknown
    /// (never walked, or it already gave more rows than last time). At least 1, at most `limit`.
    fn repetitions(&self, limit: u32) -> u32 {
        match self.expect {
            Some(expect) if self.rows <= expect => {
                let past_end = usize::from(self.check_end);
                u32::try_from(expect - self.rows + past_end).unwrap_or(u32::MAX).min(limit).max(1)
            }
            _ => limit,
        }
    }

    /// Whether the column gave the rows it was expected to and is not checking for more.
    fn has_expected_rows(&self) -> bool {
        !self.check_end && self.expect == Some(self.rows)
    }
}

/// A short column asked cell by cell: `cells` are its rows at the last walk.
struct FoldedColumn {
    walk: ColumnWalk,
    cells: Vec<Vec<u32>>,
}

impl FoldedColumn {
    /// The GETNEXT starts that land on the cells: the column, then each cell but the last.
    fn starts(&self) -> impl Iterator<Item = Oid> + '_ {
        let column = &self.walk.column;
        let before_last = self.cells.split_last().map_or(&[][..], |(_, init)| init);
        std::iter::once(column.clone()).chain(before_last.iter().map(|row| super::plan::join(column, row)))
    }
}

/// Orders walks the longest tables first (unknown lengths before all), so that columns of
/// about the same length are next to each other and share a request.
fn longest_first(walks: &mut [ColumnWalk]) {
    walks.sort_by_key(|w| std::cmp::Reverse(w.expect.unwrap_or(usize::MAX)));
}

/// The first GETBULK of `walks` (longest first): how many columns share it, and the
/// repetitions it asks for. A column joins if it needs at least half the repetitions asked
/// for: a short table is not padded to a long one's length (every varbind costs the agent),
/// and tables of about the same length still go together.
fn first_group(walks: &[ColumnWalk], max_reps: u32, max_cols: usize) -> (usize, u32) {
    let Some(head) = walks.first() else { return (0, 1) };
    let mut reps = head.repetitions(max_reps);
    let mut n = 1;
    while n < walks.len().min(max_cols) {
        let r = walks[n].repetitions(max_reps);
        if r.saturating_mul(2) < reps {
            break;
        }
        reps = reps.max(r);
        n += 1;
    }
    (n, reps)
}

impl SnmpSession {
    /// Builds the client with its own UDP socket (no packet is sent yet). For one-off use
    /// (`probe`); pollers use `connect_shared`.
    pub async fn connect(settings: &SnmpSettings, timeout: Duration, retries: u32) -> Result<Self, SnmpError> {
        Self::connect_with(settings, timeout, retries, None).await
    }

    /// Sends only the requests the caller makes: no engine rediscovery after a v3 timeout or
    /// stale-engine report (for `discover`, whose fresh sessions have no engine to go stale
    /// and which paces every request it sends).
    pub fn without_engine_recovery(mut self) -> Self {
        self.engine_recovery = false;
        self
    }

    /// Builds the client on the process's shared socket for the agent's address family.
    pub async fn connect_shared(
        settings: &SnmpSettings,
        timeout: Duration,
        retries: u32,
        sockets: &SharedSockets,
    ) -> Result<Self, SnmpError> {
        Self::connect_with(settings, timeout, retries, Some(sockets)).await
    }

    async fn connect_with(
        settings: &SnmpSettings,
        timeout: Duration,
        retries: u32,
        sockets: Option<&SharedSockets>,
    ) -> Result<Self, SnmpError> {
        let address = settings.address.clone();
        let setup = |detail: String| SnmpError::Setup { address: address.clone(), detail };
        let (auth, v3_auth): (Auth, bool) = match settings.version {
            SnmpVersion::V1 => (Auth::v1(settings.community.expose()), false),
            SnmpVersion::V2c => (Auth::v2c(settings.community.expose()), false),
            SnmpVersion::V3 => {
                let v3 = settings.v3.as_ref().ok_or_else(|| setup("SNMPv3 without a user".into()))?;
                let usm = UsmConfig::new(v3.user.clone().into_bytes());
                let usm = match (&v3.auth, &v3.privacy) {
                    (None, _) => usm,
                    (Some((a, apw)), None) => {
                        usm.auth(auth_protocol(*a), apw.expose()).map_err(|e| setup(e.to_string()))?
                    }
                    (Some((a, apw)), Some((p, ppw))) => usm
                        .auth_priv(auth_protocol(*a), apw.expose(), priv_protocol(*p), ppw.expose())
                        .map_err(|e| setup(e.to_string()))?,
                };
                (usm.into(), v3.auth.is_some())
            }
        };
        // Request-level retries: exponential from 100 ms, capped at 1 s, ±25 % jitter, so a
        // lost datagram is resent quickly and a dead agent is not hammered.
        let retry = Retry::exponential(retries)
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(0.25)
            .build()
            .map_err(|e| setup(format!("retries: {e}")))?;
        let batch = settings.max_oids_per_request.max(1) as usize;
        let (client, bulk) = match sockets {
            // One-off sessions (`probe`): async-snmp resolves the address (a bare IPv6 one, a
            // default port) and owns the socket and every request.
            None => {
                let client = Client::builder(address.as_str(), auth)
                    .request_timeout(timeout)
                    .retry(retry)
                    .max_oids_per_request(batch)
                    .strict_source(true)
                    .construction_timeout(timeout.max(Duration::from_secs(1)))
                    .connect()
                    .await
                    .map_err(|e| setup(e.to_string()))?;
                (client, None)
            }
            Some(shared) => {
                let target = tokio::net::lookup_host(address.as_str())
                    .await
                    .map_err(|e| SnmpError::Unreachable { address: address.clone(), detail: format!("resolve: {e}") })?
                    .next()
                    .ok_or_else(|| SnmpError::Unreachable {
                        address: address.clone(),
                        detail: "name resolves to no address".into(),
                    })?;
                let transport = shared.for_target(&target).await.map_err(&setup)?;
                let client = Client::builder(target, auth)
                    .request_timeout(timeout)
                    .retry(retry.clone())
                    .max_oids_per_request(batch)
                    .strict_source(true)
                    .build_with(&transport)
                    .await
                    .map_err(|e| setup(e.to_string()))?;
                let bulk = match settings.version {
                    SnmpVersion::V2c => Some(CommunityBulk {
                        handle: transport.handle(target).map_err(|e| setup(e.to_string()))?.strict_source(true),
                        community: Community::new(settings.community.expose().to_owned()),
                        timeout,
                        retry,
                        buf: Vec::new(),
                    }),
                    SnmpVersion::V1 | SnmpVersion::V3 => None,
                };
                (client, bulk)
            }
        };
        Ok(Self {
            client,
            bulk,
            address,
            version: settings.version,
            v3_auth,
            retries,
            batch,
            max_repetitions: settings.max_repetitions.max(1),
            bulk_reps: settings.max_repetitions.max(1),
            bulk_cols: batch,
            v3_timeouts: 0,
            engine_recovery: true,
            requests: 0,
            learned_rows: HashMap::new(),
            walks: fastrand::u32(0..CHECK_END_EVERY),
            short_rows: HashMap::new(),
            fold: true,
            get_instead: HashSet::new(),
            template: None,
            template_misses: 0,
            replays: 0,
        })
    }

    /// The agent address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// OIDs per GET currently used (after any tooBig halving).
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Forgets the table lengths learned from earlier walks: the next walk follows every
    /// column to its end (after a poll met rows its labels' columns were not known to have).
    pub fn forget_rows(&mut self) {
        self.learned_rows.clear();
        self.short_rows.clear();
        self.template = None;
    }

    /// Sends the last walk's request again when this walk asks the same (`Template`), and
    /// when its answer has the same shape moves the values into `gets` and `out`. `None`:
    /// the walk must run (no template, or an answer of another shape, or one this path does
    /// not read); the template is gone then.
    async fn replay(
        &mut self,
        scalars: &[(Oid, Oid)],
        columns: &[Oid],
        gets: &mut GetResults,
        out: &mut Columns,
    ) -> Option<Result<(), SnmpError>> {
        let template = self.template.take()?;
        if !template.fits(scalars, columns) {
            // Another walk (the walk keeps the template when that one changes nothing).
            self.template = Some(template);
            return None;
        }
        let bulk = self.bulk.as_mut()?;
        self.requests += 1;
        let data = match bulk.exchange_encoded(&template.varbinds, template.non_repeaters, template.reps).await {
            Ok(data) => data,
            Err(e) => return Some(Err(self.map_error(&e))),
        };
        let mut names = Vec::with_capacity(template.answer_len as usize);
        let mut values = Vec::with_capacity(template.answer_len as usize);
        let readable = wire::decode_response_names(&data, &mut names, &mut values);
        if readable != Ok(0) || !template.matches(&data, &names, &values) {
            self.template_misses = self.template_misses.saturating_add(1);
            return None;
        }
        let mut take = |at: u32| std::mem::replace(&mut values[at as usize], Value::Null);
        *gets = template.scalar_at.iter().map(|(oid, at)| (oid.clone(), Ok(take(*at)))).collect();
        *out = Columns::with_capacity(template.cells_at.len());
        for (column, prefix, at) in &template.cells_at {
            let mut rows = ColumnRows::new(column);
            rows.reserve(at.len());
            for &i in at {
                let (start, end) = names[i as usize];
                // Its name is the template's: the column's content, then the row's arcs.
                let row = data.get(start + *prefix as usize..end)?;
                rows.insert_read(take(i), |arcs| wire::push_subids(row, arcs))?;
            }
            out.insert(column.clone(), rows);
        }
        self.template_misses = 0;
        self.replays += 1;
        self.template = Some(Template { kept: false, ..template });
        Some(Ok(()))
    }

    /// Requests sent since the last call.
    pub fn take_requests(&mut self) -> u64 {
        std::mem::take(&mut self.requests)
    }

    /// Walks answered by replaying the last one's request (`Template`) since the session began.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Maps a library error to `SnmpError`.
    pub fn map_error(&self, e: &LibError) -> SnmpError {
        let address = self.address.clone();
        match e.exchange_source() {
            LibError::Timeout { retries, .. } => {
                SnmpError::Timeout { address, retries: *retries, v3_auth: self.v3_auth }
            }
            LibError::Network { source, .. } => SnmpError::Unreachable { address, detail: source.to_string() },
            LibError::Snmp { status, oid, .. } => {
                SnmpError::ErrorStatus { address, status: status.to_string(), oid: oid.as_ref().map(|o| o.to_string()) }
            }
            LibError::Auth { .. } => SnmpError::Credentials { address, detail: "authentication failed".into() },
            LibError::Report { status, .. } => match status.as_ref() {
                ReportStatus::UnknownUserName { .. }
                | ReportStatus::WrongDigest { .. }
                | ReportStatus::DecryptionError { .. }
                | ReportStatus::UnsupportedSecurityLevel { .. } => {
                    SnmpError::Credentials { address, detail: format!("report: {status}") }
                }
                _ => SnmpError::Protocol { address, detail: format!("SNMPv3 report: {status}") },
            },
            other => SnmpError::Protocol { address, detail: other.to_string() },
        }
    }

    /// True for the v3 reports that a fresh engine discovery can cure.
    fn is_stale_engine(e: &LibError) -> bool {
        matches!(
            e.exchange_source(),
            LibError::Report { status, .. }
                if matches!(status.as_ref(), ReportStatus::UnknownEngineId { .. } | ReportStatus::NotInTimeWindow { .. })
        )
    }

    /// On a v3 engine-identity problem, rediscover once. Returns whether to retry.
    ///
    /// A replaced agent (new engine id) cannot authenticate our messages and stays silent,
    /// so a v3 timeout also triggers rediscovery, but with capped backoff: on the 1st, 2nd,
    /// 4th, 8th, 16th and then every 32nd consecutive failed poll, so a dead agent costs
    /// few extra requests and a replaced one is found again within 32 polls at worst.
    async fn recover_engine(&mut self, e: &LibError) -> bool {
        if self.version != SnmpVersion::V3 || !self.engine_recovery {
            return false;
        }
        if matches!(e.exchange_source(), LibError::Timeout { .. }) {
            self.v3_timeouts = self.v3_timeouts.saturating_add(1);
            let n = self.v3_timeouts;
            if !rediscover_after(n) {
                return false;
            }
            tracing::debug!(address = %self.address, failures = n, "SNMPv3 agent silent; rediscovering its engine");
        } else if Self::is_stale_engine(e) {
            tracing::info!(address = %self.address, "SNMPv3 engine changed (agent replaced or reset?); rediscovering");
        } else {
            return false;
        }
        self.requests += 1;
        self.client.rediscover_engine().await.is_ok()
    }

    /// GETs the OIDs in batches of at most `batch_size`. On SNMPv1 a noSuchName marks
    /// that one OID and the rest of its batch is asked again. A tooBig from the agent
    /// (seen as the library splitting our batch) halves the batch size for good.
    pub async fn get(&mut self, oids: &[Oid]) -> Result<GetResults, SnmpError> {
        let mut out = GetResults::with_capacity(oids.len());
        let mut pending: VecDeque<Vec<Oid>> = oids.chunks(self.batch).map(<[Oid]>::to_vec).collect();
        let mut engine_retry = true;
        while let Some(batch) = pending.pop_front() {
            let mut stream = self.client.get_many_chunks(&batch).map_err(|e| self.map_error(&e))?;
            let mut split = false;
            while let Some(item) = stream.next().await {
                self.requests += 1;
                match item {
                    Ok(chunk) => {
                        self.v3_timeouts = 0;
                        if chunk.request_range.len() < batch.len() {
                            split = true;
                        }
                        for vb in chunk.response.varbinds {
                            out.insert(vb.oid, Ok(vb.value));
                        }
                    }
                    Err(err) => {
                        let range = err.failed_request_range.clone();
                        if let LibError::Snmp { status: ErrorStatus::NoSuchName, index, .. } =
                            err.source.exchange_source()
                            && self.version == SnmpVersion::V1
                        {
                            // v1: the whole PDU fails for one missing OID; drop it, ask the rest.
                            let bad =
                                range.start + (*index as usize).saturating_sub(1).min(range.len().saturating_sub(1));
                            if let Some(oid) = batch.get(bad) {
                                out.insert(
                                    oid.clone(),
                                    Err(format!("noSuchName for {oid} (SNMPv1): the agent has no such object")),
                                );
                            }
                            let rest: Vec<Oid> = batch[range.start..]
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| range.start + i != bad)
                                .map(|(_, o)| o.clone())
                                .collect();
                            if !rest.is_empty() {
                                pending.push_front(rest);
                            }
                            break;
                        }
                        if engine_retry && self.recover_engine(&err.source).await {
                            engine_retry = false;
                            pending.push_front(batch[range.start..].to_vec());
                            break;
                        }
                        return Err(self.map_error(&err.source));
                    }
                }
            }
            if split && self.batch > 1 {
                self.batch = (self.batch / 2).max(1);
                tracing::info!(address = %self.address, max_oids = self.batch, "agent answered tooBig; using fewer OIDs per request from now on");
            }
        }
        Ok(out)
    }

    /// One GETNEXT of all `oids` (for `discover`'s probes): the varbinds that follow them, in
    /// request order.
    pub async fn get_next(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        self.requests += 1;
        let resp = self.client.get_next_many(oids).await.map_err(|e| self.map_error(&e))?;
        Ok(resp.varbinds.into_iter().map(|vb| (vb.oid, vb.value)).collect())
    }

    /// Walks table columns to their ends and returns each column's rows. SNMPv2c/v3 use
    /// GETBULK over several columns at once (one request returns up to `max_repetitions`
    /// rows of each, sized to what the table had last time); SNMPv1 walks each column with
    /// GETNEXT.
    pub async fn walk_columns(&mut self, columns: &[Oid]) -> Result<Columns, SnmpError> {
        let (mut gets, mut out) = (GetResults::new(), Columns::new());
        self.walk(&[], columns, &mut gets, &mut out).await?;
        Ok(out)
    }

    /// GETs `scalars` and walks `columns`. On v2c/v3 the scalars ride along in the walk's
    /// first GETBULK as non-repeaters, each a GETNEXT from just before it (`predecessor`),
    /// so a poll of a PDU is one request where the agent answers it whole: an answer that
    /// lands on the scalar exactly is its value; one that does not (the object is absent, or
    /// the agent orders its OIDs oddly) is asked with a GET, now and from then on, so the
    /// results are always what a GET would give.
    pub async fn fetch(&mut self, scalars: &[Oid], columns: &[Oid]) -> Result<(GetResults, Columns), SnmpError> {
        let fold = self.version != SnmpVersion::V1 && !columns.is_empty() && scalars.len() <= self.batch;
        let mut direct: Vec<Oid> = Vec::new();
        let mut folded: Vec<(Oid, Oid)> = Vec::new();
        for oid in scalars {
            match predecessor(oid) {
                Some(start) if fold && !self.get_instead.contains(oid) => folded.push((oid.clone(), start)),
                _ => direct.push(oid.clone()),
            }
        }
        let (mut gets, mut out) = (GetResults::new(), Columns::new());
        let misses = self.walk(&folded, columns, &mut gets, &mut out).await?;
        for oid in misses {
            tracing::debug!(address = %self.address, %oid, "GETNEXT did not land on the scalar; asking it with GET from now on");
            self.get_instead.insert(oid.clone());
            direct.push(oid);
        }
        if !direct.is_empty() {
            gets.extend(self.get(&direct).await?);
        }
        Ok((gets, out))
    }

    /// The table walk behind `walk_columns` and `fetch`: `scalars` (target, GETNEXT start)
    /// go as non-repeaters in the first GETBULK. Puts the scalars that landed exactly in
    /// `gets` and the columns in `out` (a poll like the last one replays its request,
    /// `replay`), and returns the scalars that did not land (to be asked with GET).
    async fn walk(
        &mut self,
        scalars: &[(Oid, Oid)],
        columns: &[Oid],
        gets: &mut GetResults,
        out: &mut Columns,
    ) -> Result<Vec<Oid>, SnmpError> {
        let check_end = self.walks.is_multiple_of(CHECK_END_EVERY);
        if self.version != SnmpVersion::V1 && !columns.is_empty() {
            self.walks = self.walks.wrapping_add(1);
            if !check_end && let Some(done) = self.replay(scalars, columns, gets, out).await {
                return done.map(|()| Vec::new());
            }
        }
        let kept = self.template.take();
        *gets = GetResults::with_capacity(scalars.len());
        *out = columns.iter().map(|c| (c.clone(), ColumnRows::new(c))).collect();
        let mut misses: Vec<Oid> = Vec::new();
        if columns.is_empty() {
            misses.extend(scalars.iter().map(|(oid, _)| oid.clone()));
            return Ok(misses);
        }
        if self.version == SnmpVersion::V1 {
            misses.extend(scalars.iter().map(|(oid, _)| oid.clone()));
            for col in columns {
                let mut walk = self.client.walk_getnext(col.clone()).map_err(|e| self.map_error(&e))?;
                let rows = out.entry(col.clone()).or_insert_with(|| ColumnRows::new(col));
                self.requests += 1;
                while let Some(item) = walk.next().await {
                    self.requests += 1;
                    let vb = item.map_err(|e| self.map_error(&e))?;
                    if vb.oid.len() > col.len() && vb.oid.starts_with(col) {
                        rows.insert(vb.oid, vb.value);
                    }
                    if rows.len() >= MAX_ROWS_PER_COLUMN {
                        break;
                    }
                }
            }
            return Ok(misses);
        }
        // Non-repeaters still to be asked (only in the first request that succeeds).
        let mut pending_scalars = scalars;
        // What a template of this walk needs (`replay`), while it can still be one: a walk
        // of one request, no retry, nothing missed or changed, the session's state the same
        // after it, so that the next poll would send the same request again.
        let mut shape = (self.template_misses < TEMPLATE_MISSES_MAX && !check_end && self.bulk.is_some())
            .then(|| AnswerShape { request: Vec::new(), non_repeaters: 0, reps: 0, answer_len: 0, looked: Vec::new() });
        // Whether the walk left the session as it was (no retry, nothing missed, learned or
        // changed), so that the template of an earlier walk still says what a poll sends.
        let mut clean = true;
        // Every column still being walked, the longest tables first.
        let mut active: Vec<ColumnWalk> = columns
            .iter()
            .map(|c| ColumnWalk { column: c.clone(), rows: 0, expect: self.learned_rows.get(c).copied(), check_end })
            .collect();
        for w in &active {
            if let (Some(rows), Some(expect)) = (out.get_mut(&w.column), w.expect) {
                rows.reserve(expect + 1);
            }
        }
        longest_first(&mut active);
        // Short tables whose rows are known go cell by cell beside the scalars in the first
        // request (a GETNEXT from each cell's predecessor): one request a poll, not two.
        let mut folded = if check_end || !self.fold { Vec::new() } else { self.fold_short(&mut active, scalars.len()) };
        let mut rounds = 0usize;
        let mut engine_retry = true;
        while !active.is_empty() {
            rounds += 1;
            if rounds > MAX_ROWS_PER_COLUMN {
                return Err(SnmpError::Protocol {
                    address: self.address.clone(),
                    detail: "table walk did not finish (agent keeps returning rows)".into(),
                });
            }
            let (n, reps) = first_group(&active, self.bulk_reps, self.bulk_cols);
            let k = pending_scalars.len();
            let cells: usize = folded.iter().map(|f| f.cells.len()).sum();
            let request: Vec<Oid> = pending_scalars
                .iter()
                .map(|(_, start)| start.clone())
                .chain(folded.iter().flat_map(|f| f.starts()))
                // Each column from its cursor: the last row it gave (the column before the first).
                .chain(
                    active[..n].iter().map(|w| out.get(&w.column).map_or_else(|| w.column.clone(), ColumnRows::cursor)),
                )
                .collect();
            self.requests += 1;
            let non_repeaters = u32::try_from(k + cells).unwrap_or(u32::MAX);
            let answer = match &mut self.bulk {
                Some(bulk) => match bulk.get_bulk(&request, non_repeaters, reps).await {
                    Ok(Err(unreadable)) => {
                        tracing::info!(
                            address = %self.address,
                            detail = %unreadable,
                            "an answer the poll's own decoder cannot read; reading this agent with async-snmp from now on"
                        );
                        self.bulk = None;
                        self.requests += 1;
                        self.client.get_bulk(&request, non_repeaters, reps).await
                    }
                    Ok(Ok(varbinds)) => Ok(varbinds),
                    Err(e) => Err(e),
                },
                None => self.client.get_bulk(&request, non_repeaters, reps).await,
            };
            let mut vbs = match answer {
                Ok(v) => {
                    self.v3_timeouts = 0;
                    v
                }
                Err(e) => {
                    (shape, clean) = (None, false);
                    if engine_retry && self.recover_engine(&e).await {
                        engine_retry = false;
                        continue;
                    }
                    let too_big = matches!(
                        e.exchange_source(),
                        LibError::Snmp { status: ErrorStatus::TooBig | ErrorStatus::GenErr, .. }
                    );
                    if too_big && !folded.is_empty() {
                        // Walk them as columns from now on, before asking for less.
                        self.fold = false;
                        active.extend(folded.drain(..).map(|f| f.walk));
                        longest_first(&mut active);
                        rounds -= 1;
                        continue;
                    }
                    if too_big && (reps > 1 || n > 1) {
                        if reps > 1 {
                            self.bulk_reps = (reps / 2).max(1);
                        } else {
                            self.bulk_cols = (n / 2).max(1);
                        }
                        tracing::info!(
                            address = %self.address,
                            repetitions = self.bulk_reps,
                            columns = self.bulk_cols,
                            "agent failed a GETBULK (response too large?); asking for less per request from now on"
                        );
                        rounds -= 1;
                        continue;
                    }
                    return Err(self.map_error(&e));
                }
            };
            // A template is of a walk of one request, answered by our own decoder.
            if rounds > 1 || self.bulk.is_none() {
                shape = None;
            }
            if let Some(shape) = shape.as_mut() {
                (shape.request, shape.non_repeaters, shape.reps) = (request, non_repeaters, reps);
                shape.answer_len = vbs.len();
            }
            // Which of the answer's varbinds the walk looked at: their names and whether
            // they were endOfMibView decided what it did.
            let mut look = |at: usize, vb: &async_snmp::VarBind| {
                if let Some(shape) = shape.as_mut() {
                    shape.looked.push((at, vb.oid.clone(), matches!(vb.value, Value::EndOfMibView)));
                }
            };
            // The non-repeaters come first, one answer each: the scalars, then the folded cells.
            let repeaters = vbs.split_off((k + cells).min(vbs.len()));
            let mut cell_answers = vbs.split_off(k.min(vbs.len())).into_iter();
            let mut changed = Vec::new();
            let mut at = k;
            for f in folded.drain(..) {
                let answers: Vec<Option<async_snmp::VarBind>> = f.cells.iter().map(|_| cell_answers.next()).collect();
                for vb in answers.iter().flatten() {
                    look(at, vb);
                    at += 1;
                }
                let as_known = answers.iter().zip(&f.cells).all(|(vb, row)| {
                    vb.as_ref().is_some_and(|vb| {
                        !matches!(vb.value, Value::EndOfMibView)
                            && vb.oid.starts_with(&f.walk.column)
                            && vb.oid.arcs()[f.walk.column.len()..] == row[..]
                    })
                });
                if as_known {
                    if let Some(rows) = out.get_mut(&f.walk.column) {
                        for vb in answers.into_iter().flatten() {
                            rows.insert(vb.oid, vb.value);
                        }
                    }
                } else {
                    // The table changed: walk it as a column, afresh (after this round).
                    changed.push(ColumnWalk { expect: None, ..f.walk });
                }
            }
            for (i, (oid, _)) in pending_scalars.iter().enumerate() {
                match vbs.get_mut(i) {
                    Some(vb) if vb.oid == *oid => {
                        look(i, vb);
                        gets.insert(oid.clone(), Ok(std::mem::replace(&mut vb.value, Value::Null)));
                    }
                    _ => misses.push(oid.clone()),
                }
            }
            pending_scalars = &[];
            let mut done = vec![false; n];
            let mut advanced = vec![false; n];
            for (i, vb) in repeaters.into_iter().enumerate() {
                let j = i % n;
                if done[j] {
                    // Past this column's end: the rest of its repetitions are not looked at.
                    continue;
                }
                look(k + cells + i, &vb);
                let w = &mut active[j];
                if matches!(vb.value, Value::EndOfMibView)
                    || !vb.oid.starts_with(&w.column)
                    || vb.oid.len() == w.column.len()
                {
                    done[j] = true;
                    continue;
                }
                // Every column walked has its rows from the start (no OID cloned a varbind).
                let Some(rows) = out.get_mut(&w.column) else { continue };
                let row = vb.oid.arcs().get(w.column.len()..).unwrap_or_default();
                if rows.last_row().is_some_and(|last| row <= last) {
                    return Err(SnmpError::Protocol {
                        address: self.address.clone(),
                        detail: format!("walk of {} went backwards ({} after {})", w.column, vb.oid, rows.cursor()),
                    });
                }
                rows.insert_row(row, vb.value);
                w.rows += 1;
                advanced[j] = true;
                if rows.len() >= MAX_ROWS_PER_COLUMN || w.has_expected_rows() {
                    done[j] = true;
                }
            }
            // A column is finished at its end, and also when the agent gave nothing for it
            // (empty or truncated answer): asking again from the same cursor would get the
            // same nothing. A finished column's length is what the next walk asks for.
            let mut j = 0;
            let mut relearned = false;
            active.retain(|w| {
                let keep = j >= n || (!done[j] && advanced[j]);
                if !keep && self.learned_rows.get(&w.column) != Some(&w.rows) {
                    self.learned_rows.insert(w.column.clone(), w.rows);
                    relearned = true;
                }
                j += 1;
                keep
            });
            if relearned || !changed.is_empty() || !misses.is_empty() {
                (shape, clean) = (None, false);
            }
            if !changed.is_empty() {
                active.append(&mut changed);
                longest_first(&mut active);
            }
        }
        // Kept as they are while the rows stay the same: no allocation on a usual poll.
        for (column, rows) in out.iter() {
            if !(1..=FOLD_MAX_ROWS).contains(&rows.len()) {
                if self.short_rows.remove(column).is_some() {
                    (shape, clean) = (None, false);
                }
            } else if self.short_rows.get(column).is_none_or(|known| !known.iter().map(Vec::as_slice).eq(rows.rows())) {
                self.short_rows.insert(column.clone(), rows.rows().map(<[u32]>::to_vec).collect());
                (shape, clean) = (None, false);
            }
        }
        self.template = match (kept, shape) {
            // A walk that checked the ends, or also walked label columns (not twice in a
            // row: then the walk has more columns from now on), and changed nothing: the
            // polls between them still send the template's request. Whether these results
            // hold its cells where it put them is checked at the next replay.
            (Some(t), _)
                if clean
                    && self.bulk.is_some()
                    && t.covers(scalars, columns)
                    && (check_end || (!t.fits(scalars, columns) && !t.kept)) =>
            {
                Some(Template { kept: !t.fits(scalars, columns), ..t })
            }
            (_, Some(shape)) => Template::of(shape, scalars, columns, gets, out),
            _ => None,
        };
        Ok(misses)
    }

    /// Takes out of `active` (sorted, longest first) the short columns to ask cell by cell
    /// in the first request: those not in the longest columns' request, whose rows the last
    /// walk saw, while the request stays within `FOLD_MAX_VARBINDS`.
    fn fold_short(&self, active: &mut Vec<ColumnWalk>, scalars: usize) -> Vec<FoldedColumn> {
        let (first, reps) = first_group(active, self.bulk_reps, self.bulk_cols);
        let mut budget = FOLD_MAX_VARBINDS.saturating_sub(scalars + first * reps as usize);
        let mut folded = Vec::new();
        let mut j = first;
        while j < active.len() {
            let w = &active[j];
            match self.short_rows.get(&w.column) {
                Some(rows) if w.expect == Some(rows.len()) && rows.len() <= budget => {
                    budget -= rows.len();
                    let cells = rows.clone();
                    folded.push(FoldedColumn { walk: active.remove(j), cells });
                }
                _ => j += 1,
            }
        }
        folded
    }

    /// Walks a whole subtree (for `probe`): GETBULK on v2c/v3, GETNEXT on v1.
    pub async fn walk_subtree(&mut self, root: &Oid) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let mut walk = if self.version == SnmpVersion::V1 {
            self.client.walk_getnext(root.clone())
        } else {
            self.client.bulk_walk(root.clone(), self.max_repetitions)
        }
        .map_err(|e| self.map_error(&e))?;
        let mut out = Vec::new();
        while let Some(item) = walk.next().await {
            let vb = item.map_err(|e| self.map_error(&e))?;
            out.push((vb.oid, vb.value));
        }
        if out.is_empty() {
            // A scalar instance is not "under" itself: GET it instead.
            let got = self.get(std::slice::from_ref(root)).await?;
            if let Some(Ok(v)) = got.get(root)
                && !v.is_exception()
            {
                out.push((root.clone(), v.clone()));
            }
        }
        Ok(out)
    }

    /// The configured retries (for messages).
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// Whether the `n`th consecutive v3 timeout should trigger an engine rediscovery.
fn rediscover_after(n: u32) -> bool {
    (n.is_power_of_two() && n <= 32) || (n > 0 && n.is_multiple_of(32))
}

/// Our config's auth protocol in async-snmp's terms (also used by the simulated agent).
pub(crate) fn auth_protocol(a: AuthProtocol) -> async_snmp::AuthProtocol {
    match a {
        AuthProtocol::Md5 => async_snmp::AuthProtocol::Md5,
        AuthProtocol::Sha1 => async_snmp::AuthProtocol::Sha1,
        AuthProtocol::Sha224 => async_snmp::AuthProtocol::Sha224,
        AuthProtocol::Sha256 => async_snmp::AuthProtocol::Sha256,
        AuthProtocol::Sha384 => async_snmp::AuthProtocol::Sha384,
        AuthProtocol::Sha512 => async_snmp::AuthProtocol::Sha512,
    }
}

/// Our config's privacy protocol in async-snmp's terms (also used by the simulated agent).
pub(crate) fn priv_protocol(p: PrivProtocol) -> async_snmp::PrivProtocol {
    match p {
        PrivProtocol::Des => async_snmp::PrivProtocol::Des,
        PrivProtocol::Aes128 => async_snmp::PrivProtocol::Aes128,
        // net-snmp's AES-192/256 use the Blumenthal key extension.
        PrivProtocol::Aes192 => async_snmp::PrivProtocol::Aes192Blumenthal,
        PrivProtocol::Aes256 => async_snmp::PrivProtocol::Aes256Blumenthal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediscovery_backs_off_to_every_32nd_failure() {
        let tries: Vec<u32> = (1..=100).filter(|n| rediscover_after(*n)).collect();
        assert_eq!(tries, vec![1, 2, 4, 8, 16, 32, 64, 96]);
        assert!(!rediscover_after(0));
    }

    #[test]
    fn errors_keep_unreachable_apart_from_error_status() {
        let t = SnmpError::Timeout { address: "127.0.0.1:161".into(), retries: 2, v3_auth: true };
        assert!(t.is_unreachable());
        let msg = t.to_string();
        assert!(msg.contains("127.0.0.1:161") && msg.contains("credentials may be wrong"), "{msg}");
        let e =
            SnmpError::ErrorStatus { address: "a:161".into(), status: "genErr".into(), oid: Some("1.3.6.1".into()) };
        assert!(!e.is_unreachable());
        assert_eq!(e.to_string(), "agent a:161 answered with error-status genErr for 1.3.6.1");
        let c = SnmpError::Credentials { address: "a:161".into(), detail: "report: x".into() };
        assert!(c.to_string().contains("credentials may be wrong"));
    }
}

/// Table walks against an in-process agent whose table can grow and shrink between walks.
#[cfg(all(test, feature = "sim"))]
mod walk_tests {
    use std::collections::BTreeMap;
    use std::ops::Bound;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_snmp::VarBind;
    use async_snmp::agent::Agent;
    use async_snmp::handler::{BoxFuture, GetNextResult, GetResult, HandlerResult, MibHandler, RequestContext};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::Secret;

    const TABLE: [u32; 9] = [1, 3, 6, 1, 4, 1, 99999, 1, 1];

    /// Two columns (2 and 3) of `rows` rows each, and the varbinds it has served.
    #[derive(Default)]
    struct Table {
        rows: AtomicUsize,
        served: AtomicUsize,
        /// Rows of column 4, a short table beside columns 2 and 3 (row indices 1, 3, 5...).
        short_rows: AtomicUsize,
        /// Added to every value (a poll reads new values).
        bump: AtomicUsize,
    }

    impl Table {
        fn cells(&self) -> BTreeMap<Oid, Value> {
            let mut cells = BTreeMap::new();
            for col in [2u32, 3] {
                for row in 1..=self.rows.load(Ordering::SeqCst) as u32 {
                    let mut arcs = TABLE.to_vec();
                    arcs.extend([col, row]);
                    let v = col * 100 + row + self.bump.load(Ordering::SeqCst) as u32;
                    cells.insert(Oid::from_slice(&arcs), Value::Integer(i32::try_from(v).unwrap()));
                }
            }
            for n in 0..self.short_rows.load(Ordering::SeqCst) as u32 {
                let row = 2 * n + 1;
                cells.insert(
                    Oid::from_slice(&[&TABLE[..], &[4, row]].concat()),
                    Value::Integer(i32::try_from(400 + row).unwrap()),
                );
            }
            // Two scalars after the table: a `.0` one and an instance of another table.
            cells.insert(oid(&[2, 0]), Value::Integer(7 + self.bump.load(Ordering::SeqCst) as i32));
            cells.insert(oid(&[3, 5]), Value::Integer(9));
            cells
        }
    }

    impl MibHandler for Table {
        fn get<'a>(&'a self, _: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetResult>> {
            Box::pin(async move {
                self.served.fetch_add(1, Ordering::SeqCst);
                Ok(self.cells().remove(oid).map_or(GetResult::NoSuchObject, GetResult::Value))
            })
        }

        fn get_next<'a>(&'a self, _: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
            Box::pin(async move {
                self.served.fetch_add(1, Ordering::SeqCst);
                let cells = self.cells();
                Ok(match cells.range((Bound::Excluded(oid.clone()), Bound::Unbounded)).next() {
                    Some((k, v)) => GetNextResult::Value(VarBind::new(k.clone(), v.clone())),
                    None => GetNextResult::EndOfMibView,
                })
            })
        }
    }

    fn column(col: u32) -> Oid {
        let mut arcs = TABLE.to_vec();
        arcs.push(col);
        Oid::from_slice(&arcs)
    }

    /// An OID under 1.3.6.1.4.1.99999.1 (the table's parent).
    fn oid(arcs: &[u32]) -> Oid {
        let mut all = TABLE[..8].to_vec();
        all.extend(arcs);
        Oid::from_slice(&all)
    }

    /// An agent serving `table` on a loopback port, and a v2c session to it.
    async fn start(table: Arc<Table>, cancel: &CancellationToken) -> (SnmpSession, tokio::task::JoinHandle<()>) {
        let agent = Agent::builder()
            .bind("127.0.0.1:0")
            .communities(["public"])
            .without_builtin_handlers()
            .handler(Oid::from_slice(&[1, 3, 6, 1]), table)
            .cancellation_token(cancel.clone())
            .allow_all_access()
            .build()
            .await
            .unwrap();
        let address = agent.local_addr().to_string();
        let task = tokio::spawn(async move {
            let _ = agent.run().await;
        });
        let settings = SnmpSettings {
            address,
            version: SnmpVersion::V2c,
            community: Secret::new("public"),
            v3: None,
            max_oids_per_request: 32,
            max_repetitions: 25,
        };
        // Shared sockets, as pollers have: the walks run through the poll's own BER (`wire`).
        let sockets = SharedSockets::new();
        let mut session = SnmpSession::connect_shared(&settings, Duration::from_secs(2), 1, &sockets).await.unwrap();
        assert!(session.bulk.is_some());
        // The tests count walks from one that checks the ends (sessions start at a random one).
        session.walks = 0;
        (session, task)
    }

    #[tokio::test]
    async fn scalars_ride_in_the_walks_getbulk_and_answer_as_a_get_would() {
        let table = Arc::new(Table::default());
        table.rows.store(5, Ordering::SeqCst);
        let cancel = CancellationToken::new();
        let (mut session, task) = start(table.clone(), &cancel).await;
        let columns = [column(2), column(3)];
        let (scalar0, scalar5, absent) = (oid(&[2, 0]), oid(&[3, 5]), oid(&[4, 0]));

        let (gets, cols) = session.fetch(&[scalar0.clone(), scalar5.clone()], &columns).await.unwrap();
        assert_eq!(gets[&scalar0], Ok(Value::Integer(7)));
        assert_eq!(gets[&scalar5], Ok(Value::Integer(9)));
        assert_eq!(cols[&column(2)].len(), 5);
        assert_eq!(cols[&column(3)].len(), 5);
        assert_eq!(session.take_requests(), 1, "scalars and table in one GETBULK");

        // An object the agent lacks: the same answer as a GET (it is then asked with one).
        let (gets, _) = session.fetch(&[scalar0.clone(), absent.clone()], &columns).await.unwrap();
        let plain = session.get(std::slice::from_ref(&absent)).await.unwrap();
        assert_eq!(gets[&absent], plain[&absent]);
        assert_eq!(gets[&scalar0], Ok(Value::Integer(7)));
        cancel.cancel();
        let _ = task.await;
    }

    /// An agent whose answers the poll's own decoder refuses but async-snmp reads (here a
    /// value that is an empty OID): the walk reads them through async-snmp, then and after.
    #[tokio::test]
    async fn an_answer_wire_cannot_read_is_read_by_async_snmp_from_then_on() {
        let agent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let settings = SnmpSettings {
            address: agent.local_addr().unwrap().to_string(),
            version: SnmpVersion::V2c,
            community: Secret::new("public"),
            v3: None,
            max_oids_per_request: 32,
            max_repetitions: 25,
        };
        // Every GETBULK of column 2 gets row 1 (an empty OID value), then endOfMibView.
        let serve = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            for _ in 0..4 {
                let Ok((n, from)) = agent.recv_from(&mut buf).await else { return };
                // 30 LL 02 01 01 04 06 "public" A5 LL 02 <id length> <id>: the request-id.
                let id = &buf[15..17 + usize::from(buf[16])];
                assert!(n > 17 && buf[13] == 0xA5, "a GETBULK");
                // 1.3.6.1.4.1.99999.1.1.2.1 (99999 is 86 8D 1F in base 128), then .2.
                let name: Vec<u8> = vec![0x06, 0x0C, 0x2B, 6, 1, 4, 1, 0x86, 0x8D, 0x1F, 1, 1, 2, 1];
                let row = [&name[..], &[0x06, 0x00]].concat();
                let mut end = name.clone();
                *end.last_mut().unwrap() = 2;
                end.extend_from_slice(&[0x82, 0x00]);
                let vb = |b: &[u8]| [&[0x30, b.len() as u8][..], b].concat();
                let list = [vb(&row), vb(&end)].concat();
                let pdu = [id, &[0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, list.len() as u8], &list[..]].concat();
                let body =
                    [&[0x02, 0x01, 0x01, 0x04, 0x06][..], b"public", &[0xA2, pdu.len() as u8], &pdu[..]].concat();
                let message = [&[0x30, body.len() as u8][..], &body[..]].concat();
                let _ = agent.send_to(&message, from).await;
            }
        });
        let sockets = SharedSockets::new();
        let mut session =
            SnmpSession::connect_shared(&settings, Duration::from_millis(500), 0, &sockets).await.unwrap();
        assert!(session.bulk.is_some());
        let column = column(2);
        let got = session.walk_columns(std::slice::from_ref(&column)).await.unwrap();
        let rows: Vec<(Vec<u32>, Value)> = got[&column].iter().map(|(r, v)| (r.to_vec(), v.clone())).collect();
        assert_eq!(rows, vec![(vec![1], Value::ObjectIdentifier(Oid::from_slice(&[])))]);
        assert!(session.bulk.is_none(), "the session now reads this agent with async-snmp");
        let again = session.walk_columns(std::slice::from_ref(&column)).await.unwrap();
        assert_eq!(again[&column].len(), 1);
        serve.abort();
    }

    /// Walks both columns and returns (rows of column 2, rows of column 3, varbinds served).
    async fn walk(session: &mut SnmpSession, table: &Table) -> (Vec<Vec<u32>>, usize, usize) {
        let before = table.served.load(Ordering::SeqCst);
        let got = session.walk_columns(&[column(2), column(3)]).await.unwrap();
        let served = table.served.load(Ordering::SeqCst) - before;
        let rows2: Vec<Vec<u32>> = got[&column(2)].rows().map(<[u32]>::to_vec).collect();
        assert_eq!(got[&column(3)].len(), rows2.len(), "both columns walked to their end");
        for (row, v) in got[&column(3)].iter() {
            assert_eq!(*v, Value::Integer(300 + i32::try_from(row[0]).unwrap()));
        }
        (rows2, got[&column(3)].len(), served)
    }

    fn rows(n: u32) -> Vec<Vec<u32>> {
        (1..=n).map(|r| vec![r]).collect()
    }

    #[tokio::test]
    async fn getbulk_is_sized_to_the_table_and_relearns_when_it_grows_or_shrinks() {
        let table = Arc::new(Table::default());
        table.rows.store(5, Ordering::SeqCst);
        let cancel = CancellationToken::new();
        let (mut session, task) = start(table.clone(), &cancel).await;

        // First walk: the table's length is unknown, so it asks for max_repetitions.
        let (first, _, served_first) = walk(&mut session, &table).await;
        assert_eq!(first, rows(5));
        // Then the 5 rows it learned, per column, and not one more.
        let (again, _, served_again) = walk(&mut session, &table).await;
        assert_eq!(again, rows(5));
        assert_eq!(served_again, 2 * 5, "asked for {served_again} varbinds for 2 columns of 5 rows");
        assert!(served_again < served_first, "{served_again} not fewer than the first walk's {served_first}");
        assert_eq!(session.take_requests(), 2, "one GETBULK per walk");

        // The table grew past max_repetitions: the walk that checks the end (one in
        // CHECK_END_EVERY, counting from the first) sees it, reads every row and learns them.
        table.rows.store(30, Ordering::SeqCst);
        for n in 2..CHECK_END_EVERY {
            let (stale, _, served) = walk(&mut session, &table).await;
            assert_eq!(stale, rows(5), "walk {n} asks for the learned rows only");
            assert_eq!(served, 2 * 5);
        }
        let (grown, _, _) = walk(&mut session, &table).await;
        assert_eq!(grown, rows(30));
        session.take_requests();
        let (grown_again, _, served) = walk(&mut session, &table).await;
        assert_eq!(grown_again, rows(30));
        assert_eq!(served, 2 * 30, "asked for {served} varbinds for 2 columns of 30 rows");

        // It shrank: any walk sees that (it ends early), and the next one asks for 2 rows.
        table.rows.store(2, Ordering::SeqCst);
        let (shrunk, _, _) = walk(&mut session, &table).await;
        assert_eq!(shrunk, rows(2));
        let (shrunk_again, _, served) = walk(&mut session, &table).await;
        assert_eq!(shrunk_again, rows(2));
        assert_eq!(served, 2 * 2, "asked for {served} varbinds for 2 columns of 2 rows");

        cancel.cancel();
        let _ = task.await;
    }

    /// Scalars with their values, and columns with their cells.
    type Seen = (Vec<(Oid, Value)>, Vec<(Oid, Vec<(Oid, Value)>)>);

    /// What a GET of `scalars` and a walk of `columns` should give, from the agent's cells.
    fn expected(table: &Table, scalars: &[Oid], columns: &[Oid]) -> Seen {
        let cells = table.cells();
        let gets = scalars.iter().map(|s| (s.clone(), cells[s].clone())).collect();
        let cols = columns
            .iter()
            .map(|c| {
                let rows = cells.iter().filter(|(o, _)| o.starts_with(c) && o.len() > c.len());
                (c.clone(), rows.map(|(o, v)| (o.clone(), v.clone())).collect())
            })
            .collect();
        (gets, cols)
    }

    /// `fetch`'s results in the shape of `expected`.
    fn results(got: &(GetResults, Columns), scalars: &[Oid], columns: &[Oid]) -> Seen {
        let (gets, out) = got;
        let gets = scalars.iter().map(|s| (s.clone(), gets[s].clone().unwrap())).collect();
        let cols = columns
            .iter()
            .map(|c| (c.clone(), out[c].oids().zip(out[c].iter().map(|(_, v)| v.clone())).collect()))
            .collect();
        (gets, cols)
    }

    #[tokio::test]
    async fn a_poll_like_the_last_one_is_replayed_and_reads_what_a_walk_would() {
        let table = Arc::new(Table::default());
        table.rows.store(5, Ordering::SeqCst);
        table.short_rows.store(2, Ordering::SeqCst);
        let cancel = CancellationToken::new();
        let (mut session, task) = start(table.clone(), &cancel).await;
        let scalars = [oid(&[2, 0])];
        let columns = [column(2), column(3), column(4)];
        // A poll of `columns` (new values each time) reads what the agent has; its requests.
        let poll = async |session: &mut SnmpSession, columns: &[Oid]| {
            table.bump.fetch_add(1000, Ordering::SeqCst);
            let got = session.fetch(&scalars, columns).await.unwrap();
            assert_eq!(results(&got, &scalars, columns), expected(&table, &scalars, columns));
            assert_eq!(got.1.len(), columns.len(), "only the columns asked for");
            session.take_requests()
        };
        // The first walk checks the ends and learns the tables; the second is one request and
        // leaves a template; from then on each poll replays it, reading the new values.
        poll(&mut session, &columns).await;
        assert_eq!(poll(&mut session, &columns).await, 1);
        assert_eq!(session.replays(), 0);
        for n in 1..=5 {
            assert_eq!(poll(&mut session, &columns).await, 1);
            assert_eq!(session.replays(), n);
        }
        // A row goes from the long tables, then from the short one: the answer's names are
        // not where they were, so the walk runs after the replay (one more request) and the
        // results are the table as it is now; then replays again.
        for shrink in [&table.rows, &table.short_rows] {
            shrink.fetch_sub(1, Ordering::SeqCst);
            let replays = session.replays();
            // (Not a walk that checks the ends, which walks without replaying.)
            session.walks = 1;
            assert!(poll(&mut session, &columns).await >= 2);
            assert_eq!(session.replays(), replays);
            assert_eq!(session.template_misses, 1);
            // That walk learned the new length; the next one leaves a template.
            assert_eq!(poll(&mut session, &columns).await, 1);
            assert_eq!(session.replays(), replays);
            assert_eq!(poll(&mut session, &columns).await, 1);
            assert_eq!(session.replays(), replays + 1);
            assert_eq!(session.template_misses, 0);
        }
        // A walk that checks the ends and finds them where they were keeps the template, and
        // so does a walk of more columns (labels, once a minute): the next poll replays.
        session.walks = CHECK_END_EVERY;
        poll(&mut session, &columns).await;
        let replays = session.replays();
        assert_eq!(poll(&mut session, &columns).await, 1);
        assert_eq!(session.replays(), replays + 1);
        let fewer = [column(2), column(4)];
        poll(&mut session, &fewer).await;
        poll(&mut session, &fewer).await;
        let replays = session.replays();
        poll(&mut session, &columns).await;
        assert_eq!(poll(&mut session, &fewer).await, 1);
        assert_eq!(session.replays(), replays + 1);
        // More columns twice in a row: the walk has them from now on, and a template of them.
        poll(&mut session, &columns).await;
        poll(&mut session, &columns).await;
        let replays = session.replays();
        assert_eq!(poll(&mut session, &columns).await, 1);
        assert_eq!(session.replays(), replays + 1);
        // A row comes: the replay cannot see it, the walk that checks the ends does.
        table.rows.fetch_add(2, Ordering::SeqCst);
        let mut polls = 0;
        while session.fetch(&scalars, &columns).await.unwrap().1[&column(2)].len() != 6 {
            polls += 1;
            assert!(polls <= CHECK_END_EVERY, "the new row is never seen");
        }
        poll(&mut session, &columns).await;
        cancel.cancel();
        let _ = task.await;
    }

    #[tokio::test]
    async fn short_tables_ride_cell_by_cell_in_the_long_tables_getbulk() {
        let table = Arc::new(Table::default());
        table.rows.store(8, Ordering::SeqCst);
        table.short_rows.store(3, Ordering::SeqCst);
        let cancel = CancellationToken::new();
        let (mut session, task) = start(table.clone(), &cancel).await;
        let columns = [column(2), column(3), column(4)];
        let short = |got: &Columns| got[&column(4)].iter().map(|(r, v)| (r.to_vec(), v.clone())).collect::<Vec<_>>();
        let cells = |rows: &[u32]| rows.iter().map(|&r| (vec![r], Value::Integer(400 + r as i32))).collect::<Vec<_>>();

        // The first walk learns the tables: 8, 8 and 3 rows. A 3-row table is not padded to
        // 8 rows: without folding it would take a GETBULK of its own.
        let got = session.walk_columns(&columns).await.unwrap();
        assert_eq!(short(&got), cells(&[1, 3, 5]));
        session.take_requests();
        // Then one GETBULK: 3 cells as non-repeaters, 2 columns x 8 rows; the same answers.
        let before = table.served.load(Ordering::SeqCst);
        let got = session.walk_columns(&columns).await.unwrap();
        assert_eq!(session.take_requests(), 1);
        assert_eq!(table.served.load(Ordering::SeqCst) - before, 3 + 2 * 8);
        assert_eq!(short(&got), cells(&[1, 3, 5]));
        assert_eq!(got[&column(2)].len(), 8);
        // A row goes: the cells no longer land where they did, so the table is walked again.
        table.short_rows.store(2, Ordering::SeqCst);
        assert_eq!(short(&session.walk_columns(&columns).await.unwrap()), cells(&[1, 3]));
        session.take_requests();
        assert_eq!(short(&session.walk_columns(&columns).await.unwrap()), cells(&[1, 3]));
        assert_eq!(session.take_requests(), 1, "folded again once learned");
        // A row comes: seen by the walk that checks the ends (every CHECK_END_EVERY walks).
        table.short_rows.store(3, Ordering::SeqCst);
        let mut walks = 0;
        while short(&session.walk_columns(&columns).await.unwrap()).len() == 2 {
            walks += 1;
            assert!(walks < CHECK_END_EVERY, "the new row is never seen");
        }
        cancel.cancel();
        let _ = task.await;
    }
}
