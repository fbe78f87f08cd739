//! The per-device poll task: one task per SNMP device, polls strictly one after another.
//!
//! Invariants: polls of one device never overlap (the loop awaits each poll before the
//! next tick; ticks missed meanwhile are skipped and counted as late); a slow or dead agent
//! only delays its own task; every poll yields a reading for every point (bad quality with
//! the reason when it failed); the first failed poll of a run is a warning, the rest are
//! debug lines ("device down" is the engine's comms rule, logged by the agent).
//!
//! Optional points (`optional = true`): one the device turns out not to have (every cell
//! absent) yields no reading; it is logged once as not present and left out of the
//! requests until a failed poll or a restart, so a device replaced by another model is
//! looked at afresh.
//!
//! Rates (`rate = true` on a counter point): the value is the per-second increase between
//! two polls. The first poll after start (or after the counter went backwards, or after a
//! failed poll of that row) has nothing to compare with, so it yields no reading for that
//! row; `poll --once` therefore prints no rate points. A poll where the agent restarted
//! since the previous one (its sysUpTime, asked along with the scalars, went back or is
//! shorter than the time since the last poll) starts every rate afresh too: counters
//! restart from zero on a reboot, and a rate across it would be nonsense.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use arcstr::ArcStr;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::{SharedSockets, SnmpError, SnmpSession};
use super::plan::{Cell, Fetched, Plan};
use super::scale::{self, Number};
use crate::config::{DeviceSpec, SnmpSettings};
use crate::model::{Quality, Reading, Timestamp};
use crate::profiles::SnmpProfile;
use crate::sources::SourceContext;

/// A rate's identity: point index and table row.
type RateKey = (usize, Option<Arc<[u32]>>);

/// What one poll of a device produced.
pub struct PollOutcome {
    pub readings: Vec<Reading>,
    /// `Err` when the device as a whole failed (readings are then all bad).
    pub result: Result<(), SnmpError>,
}

/// The state of one device between polls.
pub struct DevicePoller {
    spec: DeviceSpec,
    settings: SnmpSettings,
    profile: Arc<SnmpProfile>,
    plan: Plan,
    session: Option<SnmpSession>,
    /// The process's shared sockets (`None`: a socket of its own).
    sockets: Option<Arc<SharedSockets>>,
    /// The agent's turns, shared with the other devices it answers for (with `sockets`).
    turns: Option<Arc<tokio::sync::Semaphore>>,
    /// Last counter sample per (point, row), for rates.
    counters: HashMap<RateKey, (Number, Instant)>,
    /// The agent's sysUpTime at the last good poll (profiles with rates only).
    last_uptime: Option<(u32, Instant)>,
    /// Labels seen per point (by index) in the last good poll, so a failed poll yields a bad
    /// reading per known row rather than one per point.
    known_rows: Vec<Vec<Option<ArcStr>>>,
    /// Optional points this device turned out not to have: reported once, then not asked
    /// for (the plan leaves them out) until a failed poll or a restart.
    absent: HashSet<usize>,
    /// Why polls fail, while they do (to warn once per run of failures).
    down: Option<String>,
}

impl DevicePoller {
    /// Prepares a device; fails only if its profile cannot be planned.
    pub fn new(spec: DeviceSpec, settings: SnmpSettings, profile: Arc<SnmpProfile>) -> Result<Self, String> {
        let plan = Plan::new(&profile)?;
        Ok(Self::planned(spec, settings, profile, plan))
    }

    /// A device whose requests were planned already (`plan`, from its profile).
    pub fn planned(spec: DeviceSpec, settings: SnmpSettings, profile: Arc<SnmpProfile>, plan: Plan) -> Self {
        Self {
            spec,
            settings,
            profile,
            plan,
            session: None,
            sockets: None,
            turns: None,
            counters: HashMap::new(),
            last_uptime: None,
            known_rows: Vec::new(),
            absent: HashSet::new(),
            down: None,
        }
    }

    /// Polls through the process's shared sockets instead of a socket of its own.
    pub fn with_shared_sockets(mut self, sockets: Arc<SharedSockets>) -> Self {
        self.turns = Some(sockets.agent_turns(&self.settings.address));
        self.sockets = Some(sockets);
        self
    }

    /// Walks answered by replaying the last one's request since the session began.
    pub fn replays(&self) -> u64 {
        self.session.as_ref().map_or(0, SnmpSession::replays)
    }

    /// Requests sent on the wire since the last call.
    pub fn take_requests(&mut self) -> u64 {
        self.session.as_mut().map_or(0, SnmpSession::take_requests)
    }

    /// Polls once: all GETs, then all walks, then decoding.
    pub async fn poll(&mut self) -> PollOutcome {
        // Held while the requests are out, not while decoding. The semaphore is never closed.
        let turn = match self.turns.clone() {
            Some(t) => t.acquire_owned().await.ok(),
            None => None,
        };
        let at = Timestamp::now();
        self.plan.start_poll(Instant::now().into_std());
        let mut fetched = self.fetch().await;
        if fetched.as_ref().is_ok_and(|f| self.plan.meets_unlabeled_row(f)) {
            // A row new since the labels were walked: ask again with them (rare), walking
            // every column to its end (the label columns' known lengths are out of date).
            self.plan.walk_labels();
            if let Some(session) = self.session.as_mut() {
                session.forget_rows();
            }
            fetched = self.fetch().await;
        }
        drop(turn);
        let now = Instant::now();
        match fetched {
            Ok(f) => PollOutcome { readings: self.decode(&f, at, now), result: Ok(()) },
            Err(e) => {
                // A failed poll breaks every rate's chain of samples.
                self.counters.clear();
                self.last_uptime = None;
                let reason: ArcStr = ArcStr::from(e.to_string());
                let readings = self.bad_readings(at, &reason);
                // The device may come back as another model: look for every point again.
                if !self.absent.is_empty() {
                    self.absent.clear();
                    self.replan();
                }
                PollOutcome { readings, result: Err(e) }
            }
        }
    }

    /// Turns what one poll's requests returned into readings (`at`: when the poll started,
    /// `now`: when its answers came, for rates). The part of a poll after the network; public
    /// so that `benches/alloc_per_point.rs` can count what it allocates.
    pub fn decode(&mut self, fetched: &Fetched, at: Timestamp, now: Instant) -> Vec<Reading> {
        self.check_restart(self.plan.uptime(fetched), now);
        let cells = self.plan.decode(fetched);
        self.readings_from(cells, at, now)
    }

    /// Forgets every counter sample when the agent restarted since the last poll, so no
    /// rate spans the restart. Without a sysUpTime the counters' own checks remain.
    fn check_restart(&mut self, uptime: Option<u32>, now: Instant) {
        let prev = std::mem::replace(&mut self.last_uptime, uptime.map(|t| (t, now)));
        if let (Some((before, at)), Some(ticks)) = (prev, uptime)
            && scale::agent_restarted(before, ticks, now.duration_since(at))
        {
            tracing::info!(
                device = %self.spec.id,
                address = %self.settings.address,
                "agent restarted (sysUpTime went back); counter rates skip this interval"
            );
            self.counters.clear();
        }
    }

    async fn fetch(&mut self) -> Result<Fetched, SnmpError> {
        if self.session.is_none() {
            let (settings, timeout, retries) = (&self.settings, self.spec.timeout, self.spec.retries);
            self.session = Some(match &self.sockets {
                Some(shared) => SnmpSession::connect_shared(settings, timeout, retries, shared).await?,
                None => SnmpSession::connect(settings, timeout, retries).await?,
            });
        }
        let Some(session) = self.session.as_mut() else {
            // Just set above; unreachable in practice, but never panic in the daemon.
            return Err(SnmpError::Setup { address: self.settings.address.clone(), detail: "no session".into() });
        };
        let (gets, columns) = session.fetch(self.plan.get_oids(), self.plan.walk_columns()).await?;
        Ok(Fetched { gets, columns })
    }

    fn reading(&self, point: usize, at: Timestamp, label: Option<ArcStr>, value: Result<f64, ArcStr>) -> Reading {
        let p = &self.profile.points[point];
        let (value, quality, error) = match value {
            Ok(v) if v.is_finite() => (Some(v), Quality::Good, None),
            Ok(v) => (None, Quality::Bad, Some(ArcStr::from(format!("value {v} is not a finite number")))),
            Err(e) => (None, Quality::Bad, Some(e)),
        };
        Reading {
            at,
            device: self.spec.id.clone(),
            point: p.id.clone(),
            metric: p.metric.clone(),
            value,
            unit: p.unit.clone(),
            zone: self.spec.zone.clone(),
            rack: self.spec.rack.clone(),
            label,
            quality,
            error,
        }
    }

    /// Re-plans the requests without the absent points. The plan was built from this
    /// profile before, so it cannot fail now; if it did, the old plan stays.
    fn replan(&mut self) {
        match Plan::without(&self.profile, &self.absent) {
            Ok(plan) => self.plan = plan,
            Err(e) => tracing::error!(device = %self.spec.id, error = %e, "cannot re-plan SNMP requests"),
        }
    }

    /// Finds the optional points the device does not have (every cell absent), logs each
    /// once and leaves them out of the plan from the next poll on.
    fn note_absent(&mut self, cells: &[Cell]) -> HashSet<usize> {
        let optional = |c: &Cell| self.profile.points.get(c.point).is_some_and(|p| p.optional);
        if !cells.iter().any(|c| c.absent && optional(c)) {
            // The usual poll: nothing to look up per cell.
            return HashSet::new();
        }
        let mut missing: HashSet<usize> = cells.iter().filter(|c| c.absent && optional(c)).map(|c| c.point).collect();
        for c in cells {
            if !c.absent {
                missing.remove(&c.point);
            }
        }
        let mut fresh: Vec<usize> = missing.iter().copied().filter(|i| !self.absent.contains(i)).collect();
        fresh.sort_unstable();
        for &i in &fresh {
            let p = &self.profile.points[i];
            tracing::info!(
                device = %self.spec.id,
                address = %self.settings.address,
                point = %p.id,
                "optional point not present on this device; not polled until the device is restarted or reloaded"
            );
            self.absent.insert(i);
        }
        if !fresh.is_empty() {
            self.replan();
        }
        missing
    }

    fn readings_from(&mut self, cells: Vec<Cell>, at: Timestamp, now: Instant) -> Vec<Reading> {
        let mut out = Vec::with_capacity(cells.len());
        // Refilled in place: the lists keep their capacity from poll to poll.
        let mut rows = std::mem::take(&mut self.known_rows);
        rows.iter_mut().for_each(Vec::clear);
        rows.resize_with(self.profile.points.len(), Vec::new);
        let missing = self.note_absent(&cells);
        for cell in cells {
            if missing.contains(&cell.point) {
                continue;
            }
            let p = &self.profile.points[cell.point];
            let (scale_k, offset) = (p.scale, p.offset);
            let rate = p.rate;
            if let Some(labels) = rows.get_mut(cell.point) {
                labels.push(cell.label.clone());
            }
            let value = match cell.value {
                Err(reason) => Err(ArcStr::from(reason)),
                Ok((n, factor)) if rate => {
                    let key = (cell.point, cell.row.clone());
                    let prev = self.counters.insert(key, (n, now));
                    match prev.and_then(|(pn, pt)| scale::counter_rate(pn, n, now.duration_since(pt))) {
                        Some(r) => Ok(scale::to_si(r, factor, scale_k, offset)),
                        // First sample (or a reset): nothing to report yet; see module doc.
                        None => continue,
                    }
                }
                Ok((n, factor)) => {
                    Ok(p.flag(n.as_f64()).unwrap_or_else(|| scale::to_si(n.as_f64(), factor, scale_k, offset)))
                }
            };
            out.push(self.reading(cell.point, at, cell.label, value));
        }
        self.known_rows = rows;
        out
    }

    fn bad_readings(&self, at: Timestamp, reason: &ArcStr) -> Vec<Reading> {
        let mut out = Vec::new();
        for i in 0..self.profile.points.len() {
            if self.absent.contains(&i) {
                continue;
            }
            match self.known_rows.get(i) {
                Some(labels) if !labels.is_empty() => {
                    for l in labels {
                        out.push(self.reading(i, at, l.clone(), Err(reason.clone())));
                    }
                }
                _ => out.push(self.reading(i, at, None, Err(reason.clone()))),
            }
        }
        out
    }

    /// Logs the first failed poll of a run (the rest at debug level) and returns whether the
    /// poll was ok. Whether the device is down is the engine's comms rule (`down_after`),
    /// logged by the agent.
    fn log_transition(&mut self, result: &Result<(), SnmpError>) -> bool {
        let device = self.spec.id.as_str();
        let address = self.settings.address.as_str();
        match (result, &self.down) {
            (Ok(()), None) => true,
            (Ok(()), Some(_)) => {
                tracing::info!(device, address, "poll ok again");
                self.down = None;
                true
            }
            (Err(e), None) => {
                let reason = e.to_string();
                if e.is_unreachable() {
                    tracing::warn!(device, address, reason = %reason, "poll failed");
                } else {
                    tracing::warn!(device, address, reason = %reason, "poll failed (agent answers with errors)");
                }
                self.down = Some(reason);
                false
            }
            (Err(e), Some(_)) => {
                tracing::debug!(device, address, reason = %e, "poll failed");
                false
            }
        }
    }
}

/// Runs one device until cancelled (or after one poll with `ctx.once`).
pub async fn run(mut poller: DevicePoller, ctx: SourceContext) {
    let interval = poller.spec.interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(crate::sources::first_poll_at(interval, ctx.once), interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let stats = &ctx.stats.snmp;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            // Boxed: the request futures (several KiB) then live only while a poll runs, not
            // in every device's task between polls.
            o = Box::pin(poller.poll()) => o,
        };
        stats.requests.fetch_add(poller.take_requests(), Ordering::Relaxed);
        if poller.log_transition(&outcome.result) {
            stats.polls_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.polls_failed.fetch_add(1, Ordering::Relaxed);
        }
        if !crate::sources::send_readings(&ctx, outcome.readings).await {
            return;
        }
        if ctx.once {
            return;
        }
        let took = started.elapsed();
        if took > interval {
            let skipped = (took.as_nanos() / interval.as_nanos().max(1)) as u64;
            stats.polls_late.fetch_add(skipped, Ordering::Relaxed);
        }
    }
}
