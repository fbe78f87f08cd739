//! The gateway pair's election, sans-IO: a majority-quorum lease over three voters
//! (docs/ha-design.md). A [`Voter`] grants a lease for a term to one node at a time and, for `L`
//! after sending a grant, grants no other node; a [`Node`] holds while a majority of voters'
//! grants cover it, counting each grant from when it *sent* the request, shortened by the drift
//! margin and the guard, so its lease ends before the promise of any voter it counted.
//!
//! A candidate that cannot win (a majority refused it for another node, or a voter refused it
//! for a node whose name sorts first) **releases** the grants it has: it forgets them,
//! then tells the voters, which drop the promise those grants made; if it gave a grant back or
//! yielded by name, it skips a round. Without this each gateway's own voter stays promised to
//! its own candidate (it answers first, in-process), and the pair has no holder whenever the
//! witness is down. A holder that meets a newer term renews under a newer one, keeping its
//! grants; [`Node::held_term`] is its fencing token. A holder may [`resign`](Node::resign)
//! (fenced at once, then a release of everything, then a pause); the other node, told by its
//! caller ([`Node::on_resigned`]), asks at once.
//!
//! Time is passed in (`now`, a monotonic reading of the caller's own clock, as a [`Duration`]
//! since any origin); nothing here reads a clock, sleeps or does IO. Voters are numbered
//! `0..VOTERS`; the caller delivers every [`Request`] a node emits to every voter it can reach
//! and hands each [`Reply`] back with the index of the voter that sent it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// How many voters the election has: gw1's, gw2's and the witness.
pub const VOTERS: usize = 3;
/// Grants a node needs to hold: a majority of [`VOTERS`].
pub const MAJORITY: usize = VOTERS / 2 + 1;

/// A node's name in the pair (`[ha] node`), e.g. `gw1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How current a node's replica is: the term and index of its newest commit, compared in that
/// order (as Raft compares logs), so a node that committed more in an older term is still older
/// than one that committed less in a newer term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    pub term: u64,
    pub index: u64,
}

/// The election's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseParams {
    /// `L`: how long a voter promises, on its own clock, after sending a grant.
    lease: Duration,
    /// `ρ`, in parts per million: the most any clock's rate may differ from real time.
    drift_ppm: u32,
    /// How long before its lease ends a holder stops starting actions: at least the longest
    /// action it may start (a Modbus request's timeout, a publish), which cannot be recalled.
    guard: Duration,
}

/// Why a [`LeaseParams`] cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseParamsError {
    #[error("drift {drift_ppm} ppm is too large: at most 100000 (10 %)")]
    DriftTooLarge { drift_ppm: u32 },
    #[error(
        "lease {lease:?} with drift {drift_ppm} ppm and guard {guard:?} leaves a holder {usable:?}: \
         it needs more than two renew periods ({renew:?} each) so one lost renewal does not fence it"
    )]
    TooShort { lease: Duration, drift_ppm: u32, guard: Duration, usable: Duration, renew: Duration },
}

impl LeaseParams {
    pub fn new(lease: Duration, drift_ppm: u32, guard: Duration) -> Result<Self, LeaseParamsError> {
        if drift_ppm > 100_000 {
            return Err(LeaseParamsError::DriftTooLarge { drift_ppm });
        }
        let params = Self { lease, drift_ppm, guard };
        let (usable, renew) = (params.usable(), params.renew_every());
        if usable <= renew * 2 {
            return Err(LeaseParamsError::TooShort { lease, drift_ppm, guard, usable, renew });
        }
        Ok(params)
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often a holder renews, and a candidate asks again: `L / 3`.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How long a grant lets a node hold, counted on the node's clock from when it sent the
    /// request: `L (1 − ρ) / (1 + ρ) − guard`. The voter sent the grant after that instant and
    /// promises `L` on its clock; with both clocks within ±ρ of real time, the voter's `L` lasts
    /// at least `L / (1 + ρ)` real time and the node's span at most `L / (1 + ρ)` minus the guard.
    pub fn usable(&self) -> Duration {
        let million = 1_000_000u128;
        let nanos =
            self.lease.as_nanos() * (million - u128::from(self.drift_ppm)) / (million + u128::from(self.drift_ppm));
        // `nanos` ≤ the lease's own nanoseconds, which came from a Duration.
        let span = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        span.saturating_sub(self.guard)
    }
}

/// A node asks every voter for (or to renew) its lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub candidate: NodeId,
    /// Chosen afresh each time the node starts, so a grant answering a request of an earlier run
    /// of the same node is never matched to a request of this run.
    pub incarnation: u64,
    /// Numbers this run's requests; a grant echoes it, so the node knows when it sent the
    /// request the grant answers.
    pub round: u64,
    pub term: u64,
    /// The candidate's replica: voters refuse one older than the newest they have seen.
    pub generation: Generation,
}

/// A candidate gives back the grants of its requests up to `up_to_round`, none of which it
/// counts any more.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    pub candidate: NodeId,
    pub incarnation: u64,
    pub up_to_round: u64,
    /// A holder gave up the lease ([`Node::resign`]): the other node may ask at once (the shell
    /// of the gateway whose voter receives it tells its node, [`Node::on_resigned`]). Left out
    /// when false, so a candidate's release reads as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resigned: bool,
}

/// A voter's answer to one [`Request`], echoing what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub candidate: NodeId,
    pub incarnation: u64,
    pub round: u64,
    pub term: u64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    Granted,
    Refused(Refusal),
}

/// Why a voter did not grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    /// The voter has granted a newer term.
    StaleTerm { highest: u64 },
    /// The voter granted this term to another node: a term belongs to one node for ever.
    TermTaken { by: NodeId },
    /// The voter's promise to another node has not run out.
    Promised { to: NodeId },
    /// The candidate's replica is older than the newest one the voter has seen.
    StaleReplica { newest: Generation },
    /// The voter (re)started less than `L` ago and may have promised before it did.
    Restarting,
    /// The candidate already released this round (the release overtook the request).
    Released,
}

/// What a voter keeps across restarts; the caller stores it durably after each grant and
/// before sending that grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoterRecord {
    pub highest_term: u64,
    /// The node that [`highest_term`](Self::highest_term) was granted to.
    pub term_owner: Option<NodeId>,
    /// The newest replica a granted candidate reported.
    pub newest: Generation,
}

#[derive(Debug, Clone)]
struct Promise {
    to: NodeId,
    until: Duration,
    /// The request whose grant made it, so a release covers it only if it covers that request.
    incarnation: u64,
    round: u64,
}

/// One voter: grants a lease to one node at a time.
#[derive(Debug, Clone)]
pub struct Voter {
    params: LeaseParams,
    record: VoterRecord,
    /// The node it last granted and when its promise runs out, on this voter's clock. Lost on
    /// a restart, which is why a restarted voter first stays quiet for `L`.
    promise: Option<Promise>,
    quiet_until: Duration,
    /// Per candidate: the incarnation and last round of its newest release.
    released: BTreeMap<NodeId, (u64, u64)>,
}

impl Voter {
    /// A voter starting at `now` with what it stored before. It grants nothing for `L`: the
    /// promise it may have made just before it stopped is not on disk (a monotonic reading
    /// means nothing after a reboot), so it waits that promise out.
    pub fn new(now: Duration, params: LeaseParams, record: VoterRecord) -> Self {
        Self { params, record, promise: None, quiet_until: now + params.lease, released: BTreeMap::new() }
    }

    /// What to store durably; changed only by a grant.
    pub fn record(&self) -> &VoterRecord {
        &self.record
    }

    pub fn on_request(&mut self, now: Duration, request: &Request) -> Reply {
        let verdict = match self.refusal(now, request) {
            Some(refusal) => Verdict::Refused(refusal),
            None => {
                self.record.highest_term = request.term;
                self.record.term_owner = Some(request.candidate.clone());
                self.record.newest = self.record.newest.max(request.generation);
                self.promise = Some(Promise {
                    to: request.candidate.clone(),
                    until: now + self.params.lease,
                    incarnation: request.incarnation,
                    round: request.round,
                });
                Verdict::Granted
            }
        };
        Reply {
            candidate: request.candidate.clone(),
            incarnation: request.incarnation,
            round: request.round,
            term: request.term,
            verdict,
        }
    }

    /// The node this voter is promised to at `now`, if its promise runs: the holder (or the
    /// candidate about to hold) as this voter sees it.
    pub fn promised_to(&self, now: Duration) -> Option<&NodeId> {
        self.promise.as_ref().filter(|p| now < p.until).map(|p| &p.to)
    }

    /// Drops the promise if it was made by a grant the release covers: the node counts none of
    /// those any more. The durable record (term, owner, replica) stays.
    pub fn on_release(&mut self, release: &Release) {
        let newest =
            self.released.entry(release.candidate.clone()).or_insert((release.incarnation, release.up_to_round));
        if newest.0 != release.incarnation || newest.1 < release.up_to_round {
            *newest = (release.incarnation, release.up_to_round);
        }
        if self.promise.as_ref().is_some_and(|p| {
            p.to == release.candidate && p.incarnation == release.incarnation && p.round <= release.up_to_round
        }) {
            self.promise = None;
        }
    }

    fn refusal(&self, now: Duration, request: &Request) -> Option<Refusal> {
        let record = &self.record;
        if request.term < record.highest_term {
            return Some(Refusal::StaleTerm { highest: record.highest_term });
        }
        if request.term == record.highest_term
            && let Some(owner) = record.term_owner.as_ref().filter(|o| **o != request.candidate)
        {
            return Some(Refusal::TermTaken { by: owner.clone() });
        }
        if now < self.quiet_until {
            return Some(Refusal::Restarting);
        }
        if self.released.get(&request.candidate).is_some_and(|(incarnation, up_to_round)| {
            *incarnation == request.incarnation && request.round <= *up_to_round
        }) {
            return Some(Refusal::Released);
        }
        if let Some(promise) = &self.promise
            && promise.to != request.candidate
            && now < promise.until
        {
            return Some(Refusal::Promised { to: promise.to.clone() });
        }
        if request.generation < record.newest {
            return Some(Refusal::StaleReplica { newest: record.newest });
        }
        None
    }
}

/// What a node is, as it last decided; [`Node::holds`] is what gates each action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not holding; asking the voters every renew period.
    Candidate,
    /// Holding the lease for [`Node::term`].
    Holder,
}

/// What a node asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// Send this request to every voter.
    Send(Request),
    /// Send this release to every voter.
    Release(Release),
    /// The node now holds the lease: it may poll and publish while [`Node::holds`].
    BecameHolder { term: u64 },
    /// The lease ran out: stop polling and publishing now (already past the last safe instant
    /// for starting an action; the guard covers the ones in flight).
    Fenced { term: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    sent_at: Duration,
    term: u64,
    /// The newest generation it granted (the voter stored it before granting).
    generation: Generation,
}

/// One gateway's side of the election.
#[derive(Debug, Clone)]
pub struct Node {
    name: NodeId,
    params: LeaseParams,
    incarnation: u64,
    term: u64,
    highest_seen: u64,
    generation: Generation,
    next_round: u64,
    /// Rounds of the current term still able to count, with when each was sent and the
    /// generation it carried, oldest first.
    sent: VecDeque<(u64, Duration, Generation)>,
    /// Per voter: when the newest request it granted since the node last forgot its rounds was
    /// sent, and the newest term it granted.
    granted: [Option<Grant>; VOTERS],
    /// Per voter: whether it refused one of the rounds in `sent` for another node's promise.
    refused: [bool; VOTERS],
    role: Role,
    next_request_at: Duration,
    /// A node that resigned, and the round this node sent first after hearing it: a voter's
    /// refusal of that round for its promise to the resigned node is stale (the release that
    /// drops the promise is still on its way) and is neither a reason to yield nor counted.
    resigned: Option<(NodeId, u64)>,
}

impl Node {
    /// A node starting at `now`; `incarnation` must differ from every earlier run's (a random
    /// number). It asks for the lease at once.
    pub fn new(name: NodeId, params: LeaseParams, incarnation: u64, now: Duration) -> Self {
        Self {
            name,
            params,
            incarnation,
            term: 1,
            highest_seen: 0,
            generation: Generation::default(),
            next_round: 0,
            sent: VecDeque::new(),
            granted: [None; VOTERS],
            refused: [false; VOTERS],
            role: Role::Candidate,
            next_request_at: now,
            resigned: None,
        }
    }

    pub fn name(&self) -> &NodeId {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The term it asks for. A holder may ask for a newer one than it holds under (see
    /// [`held_term`](Self::held_term)).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The term a holder holds under, its fencing token: a majority of voters granted it this
    /// term or a newer one, so any later holder's term is newer. `None` without a majority.
    pub fn held_term(&self) -> Option<u64> {
        let mut terms: Vec<u64> = self.granted.iter().flatten().map(|g| g.term).collect();
        terms.sort_unstable_by(|a, b| b.cmp(a));
        terms.get(MAJORITY - 1).copied()
    }

    /// The replica this node reports in its requests (the shell sets it as it commits).
    pub fn set_generation(&mut self, generation: Generation) {
        self.generation = generation;
    }

    /// The newest generation a majority of voters granted in requests this node still counts:
    /// each stored it before granting, so any candidate older than it is refused by one of them
    /// (what degraded mode needs before publishing without the standby).
    pub fn granted_generation(&self) -> Option<Generation> {
        let mut generations: Vec<Generation> = self.granted.iter().flatten().map(|g| g.generation).collect();
        generations.sort_unstable_by(|a, b| b.cmp(a));
        generations.get(MAJORITY - 1).copied()
    }

    /// Gives the lease up at once: stops holding (a holder is fenced), gives back every grant
    /// (a [`Release`] marked `resigned`, which the voters apply to every round sent so far) and
    /// asks for nothing for `pause`, long enough for the other node to win. On SIGTERM the
    /// process then ends; on a planned handover it stays a candidate.
    pub fn resign(&mut self, now: Duration, pause: Duration) -> Vec<NodeOutput> {
        let mut out = Vec::new();
        if self.role == Role::Holder {
            out.push(NodeOutput::Fenced { term: self.held_term().unwrap_or(self.term) });
            self.role = Role::Candidate;
        }
        let mut release = self.release();
        release.resigned = true;
        out.push(NodeOutput::Release(release));
        self.next_request_at = now + pause;
        out
    }

    /// This gateway's voter received `other`'s resignation: a candidate asks at once (at its
    /// next [`on_tick`](Self::on_tick)) instead of waiting out its period or a pause.
    pub fn on_resigned(&mut self, now: Duration, other: &NodeId) {
        if self.role == Role::Candidate && *other != self.name {
            self.next_request_at = self.next_request_at.min(now);
            self.resigned = Some((other.clone(), self.next_round));
        }
    }

    /// When the lease ends on this node's clock: the instant by which all but a minority of the
    /// counted grants have run out. `None` without a majority of grants in this term.
    pub fn lease_end(&self) -> Option<Duration> {
        let mut ends: Vec<Duration> = self.granted.iter().flatten().map(|g| g.sent_at + self.params.usable()).collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(MAJORITY - 1).copied()
    }

    /// Whether the node may start an action (a poll, a publish) at `now`. Ask right before each.
    pub fn holds(&self, now: Duration) -> bool {
        self.lease_end().is_some_and(|end| now < end)
    }

    /// When the caller must call [`on_tick`](Self::on_tick) next.
    pub fn next_timeout(&self) -> Duration {
        match (self.role, self.lease_end()) {
            (Role::Holder, Some(end)) => end.min(self.next_request_at),
            _ => self.next_request_at,
        }
    }

    /// Fences when the lease ran out; sends a request when one is due.
    pub fn on_tick(&mut self, now: Duration) -> Vec<NodeOutput> {
        let mut out = Vec::new();
        if self.role == Role::Holder && !self.holds(now) {
            self.role = Role::Candidate;
            out.push(NodeOutput::Fenced { term: self.held_term().unwrap_or(self.term) });
        }
        if now >= self.next_request_at {
            if self.highest_seen >= self.term {
                match self.role {
                    Role::Candidate => self.start_term(self.highest_seen + 1),
                    // A voter granted a newer term to a candidate that then gave it back: the
                    // holder renews under a newer term still, or it could never win that voter
                    // back. It keeps its grants: a promise is to the node, whatever the term.
                    Role::Holder => self.term = self.highest_seen + 1,
                }
            }
            let usable = self.params.usable();
            // A round sent longer ago than `usable` can no longer extend the lease.
            while self.sent.front().is_some_and(|(_, at, _)| *at + usable <= now) {
                self.sent.pop_front();
            }
            let round = self.next_round;
            self.next_round += 1;
            self.sent.push_back((round, now, self.generation));
            self.next_request_at = now + self.params.renew_every();
            out.push(NodeOutput::Send(Request {
                candidate: self.name.clone(),
                incarnation: self.incarnation,
                round,
                term: self.term,
                generation: self.generation,
            }));
        }
        out
    }

    /// Counts a grant, or learns a newer term from a refusal; `voter` is the sender's index.
    pub fn on_reply(&mut self, now: Duration, voter: usize, reply: &Reply) -> Vec<NodeOutput> {
        let mut out = Vec::new();
        if reply.candidate != self.name || reply.incarnation != self.incarnation || voter >= VOTERS {
            return out; // not an answer to this run of this node
        }
        match &reply.verdict {
            Verdict::Refused(Refusal::StaleTerm { highest }) => self.highest_seen = self.highest_seen.max(*highest),
            Verdict::Refused(Refusal::Promised { to: other })
                if self.resigned.as_ref().is_some_and(|(who, round)| who == other && reply.round == *round) => {}
            Verdict::Refused(Refusal::TermTaken { by: other } | Refusal::Promised { to: other }) => {
                if matches!(reply.verdict, Verdict::Refused(Refusal::TermTaken { .. })) {
                    self.highest_seen = self.highest_seen.max(reply.term);
                }
                let current = self.sent.iter().any(|(round, _, _)| *round == reply.round);
                if self.role == Role::Candidate && reply.term == self.term && current {
                    self.refused[voter] = true;
                    let cannot_win = self.refused.iter().filter(|r| **r).count() > VOTERS - MAJORITY;
                    // Two candidates each holding a voter yield to the name that sorts first.
                    let yields = *other < self.name;
                    if cannot_win || yields {
                        let held_any = self.granted.iter().any(Option::is_some);
                        out.push(NodeOutput::Release(self.release()));
                        if held_any || yields {
                            // Skip a round so the voters it gave back (or is about to be granted
                            // by: its requests to them are in flight) stay free for the other
                            // node's next request. Without the pause its own voter, answering
                            // first, is taken again at each of its rounds, and the two take the
                            // same new terms at each other's voters for ever.
                            self.next_request_at = now + self.params.renew_every() * 2;
                        }
                    }
                }
            }
            Verdict::Refused(_) => {}
            Verdict::Granted => {
                // Rounds are unique in this run, and forgotten when a candidate moves to a newer
                // term or releases: a round still in `sent` is one whose grant may count.
                let Some(&(_, sent_at, generation)) = self.sent.iter().find(|(round, _, _)| *round == reply.round)
                else {
                    return out; // too old to count, forgotten, or never sent by this run
                };
                let slot = &mut self.granted[voter];
                *slot = Some(match *slot {
                    Some(g) => Grant {
                        sent_at: g.sent_at.max(sent_at),
                        term: g.term.max(reply.term),
                        generation: g.generation.max(generation),
                    },
                    None => Grant { sent_at, term: reply.term, generation },
                });
                if self.role == Role::Candidate && self.holds(now) {
                    self.role = Role::Holder;
                    out.push(NodeOutput::BecameHolder { term: self.held_term().unwrap_or(self.term) });
                }
            }
        }
        out
    }

    fn start_term(&mut self, term: u64) {
        self.term = term;
        self.forget_rounds();
    }

    /// Forgets every round sent so far (so no late grant of one can count), then names them.
    fn release(&mut self) -> Release {
        self.forget_rounds();
        Release {
            candidate: self.name.clone(),
            incarnation: self.incarnation,
            up_to_round: self.next_round.saturating_sub(1),
            resigned: false,
        }
    }

    fn forget_rounds(&mut self) {
        self.sent.clear();
        self.granted = [None; VOTERS];
        self.refused = [false; VOTERS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_secs(10);

    fn params() -> LeaseParams {
        LeaseParams::new(L, 10_000, Duration::from_millis(500)).expect("valid params")
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn id(name: &str) -> NodeId {
        NodeId(name.to_owned())
    }

    fn request(name: &str, term: u64) -> Request {
        Request { candidate: id(name), incarnation: 1, round: 0, term, generation: Generation::default() }
    }

    /// A voter past its start-up quiet period.
    fn voter() -> Voter {
        Voter::new(Duration::ZERO, params(), VoterRecord::default())
    }

    fn sent(out: &[NodeOutput]) -> Request {
        out.iter()
            .find_map(|o| match o {
                NodeOutput::Send(r) => Some(r.clone()),
                _ => None,
            })
            .expect("the node sends a request")
    }

    fn granted(req: &Request) -> Reply {
        Reply {
            candidate: req.candidate.clone(),
            incarnation: req.incarnation,
            round: req.round,
            term: req.term,
            verdict: Verdict::Granted,
        }
    }

    #[test]
    fn the_holder_span_is_shortened_by_twice_the_drift_and_the_guard() {
        // 10 s × 0.99 / 1.01 = 9.80198 s, minus the 0.5 s guard.
        let usable = params().usable();
        assert!(usable > s(9.30) && usable < s(9.31), "{usable:?}");
        assert_eq!(params().renew_every(), s(10.0 / 3.0));
    }

    #[test]
    fn params_that_leave_no_room_for_a_lost_renewal_are_refused() {
        let err = LeaseParams::new(L, 10_000, s(4.0)).expect_err("guard too long");
        assert!(matches!(err, LeaseParamsError::TooShort { .. }), "{err}");
        assert!(err.to_string().contains("renew period"), "{err}");
        assert!(matches!(LeaseParams::new(L, 200_000, Duration::ZERO), Err(LeaseParamsError::DriftTooLarge { .. })));
    }

    #[test]
    fn a_restarted_voter_grants_nothing_for_one_lease() {
        let mut v = Voter::new(s(100.0), params(), VoterRecord::default());
        let reply = v.on_request(s(109.9), &request("gw1", 1));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::Restarting));
        assert_eq!(v.on_request(s(110.0), &request("gw1", 1)).verdict, Verdict::Granted);
    }

    #[test]
    fn a_voter_grants_no_other_node_until_its_promise_ran_out() {
        let mut v = voter();
        assert_eq!(v.on_request(s(20.0), &request("gw1", 1)).verdict, Verdict::Granted);
        let reply = v.on_request(s(29.9), &request("gw2", 2));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::Promised { to: id("gw1") }));
        assert_eq!(v.on_request(s(30.0), &request("gw2", 2)).verdict, Verdict::Granted);
    }

    #[test]
    fn a_renewal_extends_the_promise_from_the_new_grant() {
        let mut v = voter();
        v.on_request(s(20.0), &request("gw1", 1));
        assert_eq!(v.on_request(s(25.0), &request("gw1", 1)).verdict, Verdict::Granted);
        let reply = v.on_request(s(34.0), &request("gw2", 2));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::Promised { to: id("gw1") }));
        assert_eq!(v.on_request(s(35.0), &request("gw2", 2)).verdict, Verdict::Granted);
    }

    #[test]
    fn a_voter_refuses_a_term_older_than_the_highest_it_granted() {
        let mut v = voter();
        v.on_request(s(20.0), &request("gw1", 5));
        let reply = v.on_request(s(40.0), &request("gw2", 4));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::StaleTerm { highest: 5 }));
        assert_eq!(v.record().highest_term, 5);
    }

    #[test]
    fn a_term_belongs_to_one_node_even_after_its_promise() {
        let mut v = voter();
        v.on_request(s(20.0), &request("gw1", 3));
        let reply = v.on_request(s(40.0), &request("gw2", 3));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::TermTaken { by: id("gw1") }));
        assert_eq!(v.record().term_owner, Some(id("gw1")));
    }

    #[test]
    fn the_record_survives_a_restart_and_keeps_refusing_stale_terms() {
        let mut v = voter();
        v.on_request(s(20.0), &request("gw1", 7));
        let mut again = Voter::new(s(0.0), params(), v.record().clone());
        let reply = again.on_request(s(15.0), &request("gw2", 6));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::StaleTerm { highest: 7 }));
    }

    #[test]
    fn a_voter_refuses_a_candidate_with_an_older_replica() {
        let mut v = voter();
        let mut renewal = request("gw1", 2);
        renewal.generation = Generation { term: 2, index: 40 };
        v.on_request(s(20.0), &renewal);
        // gw2 committed more, but in an older term: its extra commits never reached the NOC.
        let mut stale = request("gw2", 3);
        stale.generation = Generation { term: 1, index: 90 };
        let reply = v.on_request(s(40.0), &stale);
        assert_eq!(
            reply.verdict,
            Verdict::Refused(Refusal::StaleReplica { newest: Generation { term: 2, index: 40 } })
        );
        stale.generation = Generation { term: 2, index: 40 };
        assert_eq!(v.on_request(s(40.0), &stale).verdict, Verdict::Granted);
    }

    #[test]
    fn reply_echoes_the_request() {
        let mut v = voter();
        let req =
            Request { candidate: id("gw2"), incarnation: 9, round: 4, term: 2, generation: Generation::default() };
        let reply = v.on_request(s(20.0), &req);
        assert_eq!((reply.candidate, reply.incarnation, reply.round, reply.term), (id("gw2"), 9, 4, 2));
    }

    #[test]
    fn a_node_holds_with_a_majority_counted_from_when_it_sent() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        assert!(node.on_reply(s(0.2), 0, &granted(&req)).is_empty(), "one grant is not a majority");
        assert!(!node.holds(s(0.2)));
        let out = node.on_reply(s(0.4), 2, &granted(&req));
        assert_eq!(out, vec![NodeOutput::BecameHolder { term: 1 }]);
        assert_eq!(node.role(), Role::Holder);
        // Counted from 0.0 (sent), not 0.4 (received).
        assert_eq!(node.lease_end(), Some(params().usable()));
        assert!(node.holds(params().usable() - s(0.001)));
        assert!(!node.holds(params().usable()));
    }

    #[test]
    fn a_node_renews_every_third_of_a_lease() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        sent(&node.on_tick(s(0.0)));
        assert_eq!(node.next_timeout(), params().renew_every());
        assert!(node.on_tick(s(3.0)).is_empty());
        let again = sent(&node.on_tick(params().renew_every()));
        assert_eq!((again.round, again.term), (1, 1));
    }

    #[test]
    fn a_renewal_moves_the_lease_end_to_the_newer_request() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let first = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&first));
        node.on_reply(s(0.1), 1, &granted(&first));
        let second = sent(&node.on_tick(params().renew_every()));
        node.on_reply(s(3.5), 0, &granted(&second));
        // Only one voter renewed: the majority-th end is still the first round's.
        assert_eq!(node.lease_end(), Some(params().usable()));
        node.on_reply(s(3.6), 2, &granted(&second));
        assert_eq!(node.lease_end(), Some(params().renew_every() + params().usable()));
    }

    #[test]
    fn a_late_grant_of_an_old_round_does_not_extend_the_lease() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let first = sent(&node.on_tick(s(0.0)));
        let second = sent(&node.on_tick(params().renew_every()));
        node.on_reply(s(3.4), 0, &granted(&second));
        node.on_reply(s(3.5), 1, &granted(&first)); // delayed answer to round 0
        assert_eq!(node.lease_end(), Some(params().usable()));
    }

    #[test]
    fn a_holder_fences_itself_when_its_lease_runs_out() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&req));
        node.on_reply(s(0.1), 1, &granted(&req));
        let end = params().usable();
        assert_eq!(node.next_timeout(), params().renew_every(), "renewal comes before the end");
        node.on_tick(params().renew_every()); // renewal lost
        node.on_tick(params().renew_every() * 2); // lost again
        assert_eq!(node.next_timeout(), end);
        let out = node.on_tick(end);
        assert_eq!(out, vec![NodeOutput::Fenced { term: 1 }]);
        assert_eq!(node.role(), Role::Candidate);
        assert!(!node.holds(end));
    }

    #[test]
    fn a_grant_for_another_run_or_node_is_ignored() {
        let mut node = Node::new(id("gw1"), params(), 2, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        let mut old_run = granted(&req);
        old_run.incarnation = 1;
        node.on_reply(s(0.1), 0, &old_run);
        node.on_reply(s(0.1), 1, &old_run);
        assert!(!node.holds(s(0.1)));
        let mut other = granted(&req);
        other.candidate = id("gw2");
        node.on_reply(s(0.1), 0, &other);
        node.on_reply(s(0.1), 1, &other);
        assert!(!node.holds(s(0.1)));
        assert!(node.on_reply(s(0.1), VOTERS, &granted(&req)).is_empty(), "no such voter");
    }

    #[test]
    fn a_candidate_refused_for_its_term_asks_next_with_a_newer_one() {
        let mut node = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        let mut reply = granted(&req);
        reply.verdict = Verdict::Refused(Refusal::StaleTerm { highest: 4 });
        node.on_reply(s(0.1), 2, &reply);
        let next = sent(&node.on_tick(params().renew_every()));
        assert_eq!(next.term, 5);
        reply.verdict = Verdict::Refused(Refusal::TermTaken { by: id("gw1") });
        reply.term = 5;
        node.on_reply(s(3.5), 2, &reply);
        assert_eq!(sent(&node.on_tick(params().renew_every() * 2)).term, 6);
    }

    #[test]
    fn grants_of_an_older_term_do_not_count_in_the_new_one() {
        let mut node = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&req));
        let mut refused = granted(&req);
        refused.verdict = Verdict::Refused(Refusal::StaleTerm { highest: 3 });
        node.on_reply(s(0.1), 1, &refused);
        let next = sent(&node.on_tick(params().renew_every()));
        assert_eq!(next.term, 4);
        node.on_reply(s(3.5), 1, &granted(&next));
        node.on_reply(s(3.5), 0, &granted(&req)); // term 1, too late to matter
        assert!(!node.holds(s(3.5)));
        node.on_reply(s(3.5), 2, &granted(&next));
        assert!(node.holds(s(3.5)));
    }

    #[test]
    fn a_node_reports_its_replica() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        node.set_generation(Generation { term: 3, index: 12 });
        assert_eq!(sent(&node.on_tick(s(0.0))).generation, Generation { term: 3, index: 12 });
    }

    #[test]
    fn the_generation_a_majority_granted_is_that_of_the_rounds_they_answered() {
        let g = |index| Generation { term: 2, index };
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        node.set_generation(g(5));
        let first = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&first));
        assert_eq!(node.granted_generation(), None, "one voter is no majority");
        node.on_reply(s(0.1), 2, &granted(&first));
        assert_eq!(node.granted_generation(), Some(g(5)));
        node.set_generation(g(9));
        let renewal = sent(&node.on_tick(params().renew_every()));
        assert_eq!(renewal.generation, g(9));
        node.on_reply(s(1.1), 0, &granted(&renewal));
        // Reported, granted by one voter only: a majority still knows only 5.
        assert_eq!(node.granted_generation(), Some(g(5)));
        node.on_reply(s(1.1), 1, &granted(&renewal));
        assert_eq!(node.granted_generation(), Some(g(9)));
    }

    fn refused(req: &Request, refusal: Refusal) -> Reply {
        Reply { verdict: Verdict::Refused(refusal), ..granted(req) }
    }

    fn release_of(out: &[NodeOutput]) -> Option<Release> {
        out.iter().find_map(|o| match o {
            NodeOutput::Release(r) => Some(r.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_release_drops_the_promise_of_the_rounds_it_covers_only() {
        let mut v = voter();
        let mut req = request("gw2", 1);
        req.round = 4;
        v.on_request(s(20.0), &req);
        let release = Release { candidate: id("gw2"), incarnation: 1, up_to_round: 3, resigned: false };
        v.on_release(&release);
        let reply = v.on_request(s(21.0), &request("gw1", 2));
        assert_eq!(reply.verdict, Verdict::Refused(Refusal::Promised { to: id("gw2") }), "round 4 is not covered");
        v.on_release(&Release { candidate: id("gw2"), incarnation: 0, up_to_round: 9, resigned: false });
        assert!(
            matches!(v.on_request(s(21.0), &request("gw1", 2)).verdict, Verdict::Refused(_)),
            "another run's release"
        );
        v.on_release(&Release { up_to_round: 4, ..release });
        assert_eq!(v.on_request(s(21.0), &request("gw1", 2)).verdict, Verdict::Granted);
        assert_eq!(v.record().highest_term, 2, "the durable record is not released");
    }

    #[test]
    fn a_request_overtaken_by_its_release_is_refused() {
        let mut v = voter();
        v.on_release(&Release { candidate: id("gw2"), incarnation: 1, up_to_round: 5, resigned: false });
        let mut req = request("gw2", 1);
        req.round = 5;
        assert_eq!(v.on_request(s(20.0), &req).verdict, Verdict::Refused(Refusal::Released));
        req.round = 6;
        assert_eq!(v.on_request(s(20.0), &req).verdict, Verdict::Granted);
    }

    #[test]
    fn a_candidate_refused_by_a_majority_for_another_node_releases_what_it_has() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&req));
        assert!(release_of(&node.on_reply(s(0.2), 1, &refused(&req, Refusal::Promised { to: id("gw2") }))).is_none());
        let out = node.on_reply(s(0.3), 2, &refused(&req, Refusal::TermTaken { by: id("gw2") }));
        let release = release_of(&out).expect("cannot win: releases");
        assert_eq!(release, Release { candidate: id("gw1"), incarnation: 1, up_to_round: 0, resigned: false });
        // It counts nothing of the released round, even a grant arriving now...
        node.on_reply(s(0.4), 1, &granted(&req));
        node.on_reply(s(0.4), 2, &granted(&req));
        assert!(!node.holds(s(0.4)));
        // ...and, having given a grant back, skips a round.
        assert_eq!(node.next_timeout(), s(0.3) + params().renew_every() * 2);
    }

    #[test]
    fn a_candidate_yields_to_the_name_that_sorts_first() {
        let mut gw2 = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&gw2.on_tick(s(0.0)));
        gw2.on_reply(s(0.0), 1, &granted(&req)); // its own voter, first
        let out = gw2.on_reply(s(0.1), 0, &refused(&req, Refusal::Promised { to: id("gw1") }));
        assert!(release_of(&out).is_some(), "gw2 yields to gw1");
        let mut gw1 = Node::new(id("gw1"), params(), 1, s(0.0));
        let req = sent(&gw1.on_tick(s(0.0)));
        gw1.on_reply(s(0.0), 0, &granted(&req));
        let out = gw1.on_reply(s(0.1), 1, &refused(&req, Refusal::Promised { to: id("gw2") }));
        assert!(release_of(&out).is_none(), "gw1 does not yield to gw2");
    }

    #[test]
    fn a_candidate_that_does_not_yield_and_gave_nothing_back_keeps_asking_every_third_of_a_lease() {
        let mut gw1 = Node::new(id("gw1"), params(), 1, s(0.0));
        let req = sent(&gw1.on_tick(s(0.0)));
        gw1.on_reply(s(0.1), 1, &refused(&req, Refusal::Promised { to: id("gw2") }));
        let out = gw1.on_reply(s(0.1), 2, &refused(&req, Refusal::Promised { to: id("gw2") }));
        assert!(release_of(&out).is_some(), "cannot win");
        assert_eq!(gw1.next_timeout(), params().renew_every(), "no pause: its takeover stays fast");
        // gw2 yields to gw1 and pauses a round, its requests to the others still in flight.
        let mut gw2 = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&gw2.on_tick(s(0.0)));
        let out = gw2.on_reply(s(0.0), 1, &refused(&req, Refusal::Promised { to: id("gw1") }));
        assert!(release_of(&out).is_some());
        assert_eq!(gw2.next_timeout(), params().renew_every() * 2);
    }

    #[test]
    fn a_holder_does_not_release() {
        let mut node = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 1, &granted(&req));
        node.on_reply(s(0.1), 2, &granted(&req));
        let out = node.on_reply(s(0.2), 0, &refused(&req, Refusal::Promised { to: id("gw1") }));
        assert!(out.is_empty());
        assert!(node.holds(s(0.2)));
    }

    #[test]
    fn a_holder_meeting_a_newer_term_renews_under_it_and_keeps_holding() {
        let mut node = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&req));
        node.on_reply(s(0.1), 1, &granted(&req));
        // The witness granted term 4 to gw1, which gave it back.
        node.on_reply(s(0.1), 2, &refused(&req, Refusal::StaleTerm { highest: 4 }));
        assert_eq!(node.held_term(), Some(1));
        let renewal = sent(&node.on_tick(params().renew_every()));
        assert_eq!(renewal.term, 5);
        assert!(node.holds(params().renew_every()), "its grants of term 1 still count");
        node.on_reply(s(3.5), 2, &granted(&renewal));
        assert_eq!(node.held_term(), Some(1), "one voter of term 5 is not a majority");
        node.on_reply(s(3.5), 0, &granted(&renewal));
        assert_eq!(node.held_term(), Some(5));
        assert_eq!(node.lease_end(), Some(params().renew_every() + params().usable()));
    }

    #[test]
    fn a_resigning_holder_is_fenced_at_once_releases_everything_and_pauses() {
        let mut node = Node::new(id("gw1"), params(), 1, s(0.0));
        let first = sent(&node.on_tick(s(0.0)));
        node.on_reply(s(0.1), 0, &granted(&first));
        node.on_reply(s(0.1), 1, &granted(&first));
        let second = sent(&node.on_tick(params().renew_every()));
        let out = node.resign(s(4.0), L);
        assert_eq!(out[0], NodeOutput::Fenced { term: 1 });
        let release = release_of(&out).expect("a release");
        assert_eq!(
            release,
            Release { candidate: id("gw1"), incarnation: 1, up_to_round: second.round, resigned: true }
        );
        assert!(!node.holds(s(4.0)), "no action after resigning");
        assert_eq!(node.role(), Role::Candidate);
        // A grant of a round it gave back, arriving now, does not count.
        node.on_reply(s(4.1), 0, &granted(&second));
        node.on_reply(s(4.1), 2, &granted(&second));
        assert!(!node.holds(s(4.1)));
        assert_eq!(node.next_timeout(), s(4.0) + L, "it asks again only after the pause");
        assert!(node.on_tick(s(5.0)).is_empty());
    }

    #[test]
    fn a_voter_frees_the_resigned_holder_at_once() {
        let mut v = voter();
        let mut gw1 = Node::new(id("gw1"), params(), 1, s(20.0));
        let req = sent(&gw1.on_tick(s(20.0)));
        gw1.on_reply(s(20.0), 0, &v.on_request(s(20.0), &req));
        assert_eq!(v.promised_to(s(21.0)), Some(&id("gw1")));
        let out = gw1.resign(s(21.0), L);
        v.on_release(&release_of(&out).expect("a release"));
        assert_eq!(v.promised_to(s(21.0)), None);
        assert_eq!(v.on_request(s(21.0), &request("gw2", 2)).verdict, Verdict::Granted);
        assert_eq!(v.promised_to(s(21.0)), Some(&id("gw2")));
        assert_eq!(v.promised_to(s(31.0)), None, "a promise runs for one lease");
    }

    #[test]
    fn told_of_a_resignation_a_candidate_asks_at_once_and_does_not_yield_to_the_stale_promise() {
        let mut gw2 = Node::new(id("gw2"), params(), 1, s(0.0));
        let req = sent(&gw2.on_tick(s(0.0)));
        // gw2 yielded to gw1 and pauses two renew periods.
        gw2.on_reply(s(0.1), 1, &granted(&req));
        assert!(release_of(&gw2.on_reply(s(0.1), 0, &refused(&req, Refusal::Promised { to: id("gw1") }))).is_some());
        assert_eq!(gw2.next_timeout(), s(0.1) + params().renew_every() * 2);
        gw2.on_resigned(s(1.0), &id("gw1"));
        assert_eq!(gw2.next_timeout(), s(1.0), "asks at once");
        let now = sent(&gw2.on_tick(s(1.0)));
        // The witness has not yet heard the release: its refusal is stale, not a reason to yield.
        let out = gw2.on_reply(s(1.1), 2, &refused(&now, Refusal::Promised { to: id("gw1") }));
        assert!(release_of(&out).is_none(), "{out:?}");
        gw2.on_reply(s(1.1), 1, &granted(&now));
        assert_eq!(gw2.on_reply(s(1.2), 0, &granted(&now)), vec![NodeOutput::BecameHolder { term: now.term }]);
        // A holder ignores the news; so does a node told of its own resignation.
        gw2.on_resigned(s(2.0), &id("gw1"));
        assert_eq!(gw2.next_timeout(), s(1.0) + params().renew_every());
        let mut gw1 = Node::new(id("gw1"), params(), 1, s(0.0));
        gw1.resign(s(0.0), L);
        gw1.on_resigned(s(0.5), &id("gw1"));
        assert_eq!(gw1.next_timeout(), L);
    }

    /// The whole election in the small: two nodes, three voters, the holder goes silent.
    #[test]
    fn the_other_node_takes_over_only_after_the_promises_ran_out() {
        let p = params();
        let mut voters: Vec<Voter> =
            (0..VOTERS).map(|_| Voter::new(Duration::ZERO, p, VoterRecord::default())).collect();
        let start = L; // past the voters' quiet period
        let mut gw1 = Node::new(id("gw1"), p, 1, start);
        let req = sent(&gw1.on_tick(start));
        for (i, v) in voters.iter_mut().enumerate() {
            gw1.on_reply(start, i, &v.on_request(start, &req));
        }
        assert!(gw1.holds(start));
        // gw1 dies; gw2 asks every renew period.
        let mut gw2 = Node::new(id("gw2"), p, 1, start);
        let mut t = start;
        let took_over = loop {
            for o in gw2.on_tick(t) {
                if let NodeOutput::Send(r) = o {
                    for (i, v) in voters.iter_mut().enumerate() {
                        gw2.on_reply(t, i, &v.on_request(t, &r));
                    }
                }
            }
            if gw2.holds(t) {
                break t;
            }
            t = gw2.next_timeout();
        };
        assert!(took_over >= start + L, "gw2 held at {took_over:?}, before the promises to gw1 ran out");
        assert!(!gw1.holds(took_over), "both hold at {took_over:?}");
        assert!(took_over <= start + L + p.renew_every());
        assert!(gw2.term() > 1);
    }
}
