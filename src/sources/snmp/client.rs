//! One device's SNMP session on top of async-snmp: building the client from
//! `SnmpSettings`, batched GETs that halve (and remember) on tooBig, bounded multi-column
//! GETBULK table walks (GETNEXT on v1), and mapping library errors to `SnmpError`.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use async_snmp::{
    Auth, Client, Error as LibError, ErrorStatus, Oid, Retry, UdpClient, UdpTransport, UsmConfig, Value,
    v3::ReportStatus,
};

use crate::config::{AuthProtocol, PrivProtocol, SnmpSettings, SnmpVersion};

/// Rows per column at most: a guard against agents whose tables never end.
const MAX_ROWS_PER_COLUMN: usize = 10_000;

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

/// UDP sockets shared by all pollers of a process, one per local bind address: the
/// loopback address for loopback agents, the unspecified address of the family otherwise.
#[derive(Default)]
pub struct SharedSockets {
    sockets: tokio::sync::Mutex<HashMap<SocketAddr, UdpTransport>>,
}

impl SharedSockets {
    pub fn new() -> Self {
        Self::default()
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

/// The result of a batched GET: per OID, the value or why the agent would not give it.
pub type GetResults = HashMap<Oid, Result<Value, String>>;

/// One device's SNMP session.
pub struct SnmpSession {
    client: UdpClient,
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
    /// Requests sent since the last `take_requests`.
    requests: u64,
}

impl SnmpSession {
    /// Builds the client with its own UDP socket (no packet is sent yet). For one-off use
    /// (`probe`); pollers use `connect_shared`.
    pub async fn connect(settings: &SnmpSettings, timeout: Duration, retries: u32) -> Result<Self, SnmpError> {
        Self::connect_with(settings, timeout, retries, None).await
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
        let client = match sockets {
            None => Client::builder(address.as_str(), auth)
                .request_timeout(timeout)
                .retry(retry)
                .max_oids_per_request(batch)
                .strict_source(true)
                .construction_timeout(timeout.max(Duration::from_secs(1)))
                .connect()
                .await
                .map_err(|e| setup(e.to_string()))?,
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
                Client::builder(target, auth)
                    .request_timeout(timeout)
                    .retry(retry)
                    .max_oids_per_request(batch)
                    .strict_source(true)
                    .build_with(&transport)
                    .await
                    .map_err(|e| setup(e.to_string()))?
            }
        };
        Ok(Self {
            client,
            address,
            version: settings.version,
            v3_auth,
            retries,
            batch,
            max_repetitions: settings.max_repetitions.max(1),
            bulk_reps: settings.max_repetitions.max(1),
            bulk_cols: batch,
            v3_timeouts: 0,
            requests: 0,
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

    /// Requests sent since the last call.
    pub fn take_requests(&mut self) -> u64 {
        std::mem::take(&mut self.requests)
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
        if self.version != SnmpVersion::V3 {
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
    /// GETBULK over several columns at once (one request returns `max_repetitions` rows of
    /// each); SNMPv1 walks each column with GETNEXT.
    pub async fn walk_columns(
        &mut self,
        columns: &[Oid],
    ) -> Result<HashMap<Oid, BTreeMap<Vec<u32>, Value>>, SnmpError> {
        let mut out: HashMap<Oid, BTreeMap<Vec<u32>, Value>> =
            columns.iter().map(|c| (c.clone(), BTreeMap::new())).collect();
        if columns.is_empty() {
            return Ok(out);
        }
        if self.version == SnmpVersion::V1 {
            for col in columns {
                let mut walk = self.client.walk_getnext(col.clone()).map_err(|e| self.map_error(&e))?;
                let rows = out.entry(col.clone()).or_default();
                self.requests += 1;
                while let Some(item) = walk.next().await {
                    self.requests += 1;
                    let vb = item.map_err(|e| self.map_error(&e))?;
                    if let Some(idx) = vb.oid.arcs().get(col.len()..) {
                        rows.insert(idx.to_vec(), vb.value);
                    }
                    if rows.len() >= MAX_ROWS_PER_COLUMN {
                        break;
                    }
                }
            }
            return Ok(out);
        }
        // (column, cursor) of every column still being walked.
        let mut active: Vec<(Oid, Oid)> = columns.iter().map(|c| (c.clone(), c.clone())).collect();
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
            let n = active.len().min(self.bulk_cols);
            let request: Vec<Oid> = active[..n].iter().map(|(_, cur)| cur.clone()).collect();
            self.requests += 1;
            let vbs = match self.client.get_bulk(&request, 0, self.bulk_reps).await {
                Ok(v) => {
                    self.v3_timeouts = 0;
                    v
                }
                Err(e) => {
                    if engine_retry && self.recover_engine(&e).await {
                        engine_retry = false;
                        continue;
                    }
                    let too_big = matches!(
                        e.exchange_source(),
                        LibError::Snmp { status: ErrorStatus::TooBig | ErrorStatus::GenErr, .. }
                    );
                    if too_big && (self.bulk_reps > 1 || n > 1) {
                        if self.bulk_reps > 1 {
                            self.bulk_reps = (self.bulk_reps / 2).max(1);
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
            let mut done = vec![false; n];
            let mut advanced = vec![false; n];
            for (i, vb) in vbs.into_iter().enumerate() {
                let j = i % n;
                if done[j] {
                    continue;
                }
                let (col, cur) = &mut active[j];
                if matches!(vb.value, Value::EndOfMibView) || !vb.oid.starts_with(col) || vb.oid.len() == col.len() {
                    done[j] = true;
                    continue;
                }
                if vb.oid <= *cur {
                    return Err(SnmpError::Protocol {
                        address: self.address.clone(),
                        detail: format!("walk of {col} went backwards ({} after {cur})", vb.oid),
                    });
                }
                let rows = out.entry(col.clone()).or_default();
                rows.insert(vb.oid.arcs()[col.len()..].to_vec(), vb.value);
                *cur = vb.oid;
                advanced[j] = true;
                if rows.len() >= MAX_ROWS_PER_COLUMN {
                    done[j] = true;
                }
            }
            // A column the agent gave nothing for (empty or truncated answer) is finished:
            // asking again from the same cursor would get the same nothing.
            let mut j = 0;
            active.retain(|_| {
                let keep = j >= n || (!done[j] && advanced[j]);
                j += 1;
                keep
            });
        }
        Ok(out)
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
