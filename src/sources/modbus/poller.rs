//! The per-device poll task: schedule, block reads with retries, decoding, failure counts.
//!
//! Invariants: one task per device, so polls of a device never overlap; the schedule is a
//! tokio interval with `MissedTickBehavior::Skip`, so a poll that overruns skips ticks
//! (counted in `polls_late`) instead of bunching them; every poll emits exactly one reading
//! per point, bad ones carrying the reason. Unreachable errors (timeouts, refused or lost
//! connections) are retried with capped, jittered exponential backoff; exceptions are the
//! device's answer and are not retried (except "busy"). After the first unreachable
//! block the rest of the poll is not attempted: the device is gone, and trying every block
//! would multiply the timeout by the number of blocks.
//!
//! Optional points (`optional = true`): a single-point read of one that the device refuses
//! with "illegal data address" means this model lacks it. It is logged once, yields no
//! reading and leaves the plan; after a poll that found the device unreachable it is read
//! again (the device may have been replaced by another model).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arcstr::ArcStr;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::decode::{DecodeError, decode_bit, decode_point};
use super::error::{ModbusError, Span};
use super::plan::{self, Block};
use super::transport::{Answer, Link, ReadRequest};
use crate::config::{BlockLimits, DeviceSpec};
use crate::model::{Quality, Reading, Timestamp};
use crate::profiles::modbus::ModbusProfile;
use crate::sources::SourceContext;

/// The reason recorded for an absent optional point (never sent as a reading).
// A static string: cloned for each absent point of each poll without allocating.
const NOT_PRESENT: ArcStr = arcstr::literal!("optional point not present on this device");

/// First retry delay; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay within one poll.
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Everything one device's task needs.
pub struct Poller {
    /// The device as configured.
    pub spec: DeviceSpec,
    /// Its register map.
    pub profile: Arc<ModbusProfile>,
    /// Its unit id on the link.
    pub unit: u8,
    /// How its points are coalesced into reads.
    pub limits: BlockLimits,
    /// The connection (shared with other units at the same address or on the same bus).
    pub link: Link,
    /// Where readings and counters go.
    pub ctx: SourceContext,
    plan: Vec<Block>,
    failures: u32,
    /// Optional points the device refused with "illegal data address": reported once,
    /// left out of the plan, and read again only after the device was unreachable.
    absent: Vec<usize>,
    /// The last poll found the device unreachable: look for absent points again.
    recheck: bool,
}

/// What one poll produced: a value or the reason, per point in profile order.
pub type PointResults = Vec<Result<f64, ArcStr>>;

impl Poller {
    /// A poller with a fresh block plan for the profile.
    pub fn new(
        spec: DeviceSpec,
        profile: Arc<ModbusProfile>,
        unit: u8,
        limits: BlockLimits,
        link: Link,
        ctx: SourceContext,
    ) -> Self {
        let plan = plan::plan(&profile.points, limits);
        Self { spec, profile, unit, limits, link, ctx, plan, failures: 0, absent: Vec::new(), recheck: false }
    }

    /// The current read plan (after any splits).
    pub fn plan(&self) -> &[Block] {
        &self.plan
    }

    /// Polls on schedule until cancelled (or once, with `ctx.once`).
    pub async fn run(mut self) {
        let period = self.spec.interval.max(Duration::from_millis(1));
        let first = crate::sources::first_poll_at(period, self.ctx.once);
        let mut ticker = tokio::time::interval_at(first, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let cancel = self.ctx.cancel.clone();
        loop {
            let scheduled = tokio::select! {
                _ = cancel.cancelled() => break,
                t = ticker.tick() => t,
            };
            let at = Timestamp::now();
            let results = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.poll() => r,
            };
            if !self.emit(at, results).await || self.ctx.once {
                break;
            }
            let overrun = Instant::now().saturating_duration_since(scheduled);
            let skipped = overrun.as_nanos() / period.as_nanos();
            if skipped > 0 {
                self.ctx.stats.modbus.polls_late.fetch_add(skipped as u64, Ordering::Relaxed);
                debug!(device = %self.spec.id, skipped = skipped as u64, "poll overran its interval");
            }
        }
    }

    /// One poll: read, decode, emit the readings, update counters.
    /// Returns false when nobody listens any more.
    pub async fn poll_once(&mut self) -> bool {
        let at = Timestamp::now();
        let results = self.poll().await;
        self.emit(at, results).await
    }

    /// Reads every block once (with retries) and decodes the points.
    pub async fn poll(&mut self) -> PointResults {
        if (self.recheck || self.plan.is_empty()) && !self.absent.is_empty() {
            // Back after an outage, maybe as another model (or nothing else left to read,
            // which would tell nothing about the device): read the absent points again.
            self.plan.extend(plan::plan_points(&self.profile.points, &self.absent, self.limits));
            self.absent.clear();
        }
        let points = &self.profile.points;
        let mut results: Vec<Option<Result<f64, ArcStr>>> = vec![None; points.len()];
        for &i in &self.absent {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(Err(NOT_PRESENT));
            }
        }
        let mut unreachable: Option<ArcStr> = None;
        let mut next_plan = Vec::with_capacity(self.plan.len());
        let plan = std::mem::take(&mut self.plan);
        for block in plan {
            if let Some(err) = &unreachable {
                fail(&mut results, &block, err);
                next_plan.push(block);
                continue;
            }
            match self.read(&block).await {
                Ok(answer) => {
                    self.decode(&block, &answer, &mut results);
                    next_plan.push(block);
                }
                Err(e) if e.is_illegal_address() && !block.split && block.points.len() > 1 => {
                    match self.split(&block, &mut results).await {
                        Ok(settled) => {
                            info!(
                                device = %self.spec.id, address = %self.link.address(), span = %span_of(&block),
                                blocks = settled.len(), "block read refused; split into smaller reads"
                            );
                            next_plan.extend(settled);
                        }
                        Err(msg) => {
                            // Lost the device half-way through: split again next poll.
                            unreachable = Some(msg);
                            next_plan.push(block);
                        }
                    }
                }
                Err(e) if e.is_illegal_address() && self.mark_absent(&block.points) => {
                    fail(&mut results, &block, &NOT_PRESENT);
                }
                Err(e) => {
                    let msg: ArcStr = ArcStr::from(e.to_string());
                    fail(&mut results, &block, &msg);
                    if !e.is_exception() {
                        unreachable = Some(msg);
                    }
                    next_plan.push(block);
                }
            }
        }
        self.plan = next_plan;
        self.recheck = unreachable.is_some();
        // Every point is in some block (plan invariant); a gap here would be a planning bug,
        // reported as a bad reading rather than a panic.
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(arcstr::literal!("point not covered by any read (planning bug)"))))
            .collect()
    }

    /// Reads a refused block point by point. Returns the settled blocks, or why the device
    /// became unreachable meanwhile.
    async fn split(
        &mut self,
        block: &Block,
        results: &mut [Option<Result<f64, ArcStr>>],
    ) -> Result<Vec<Block>, ArcStr> {
        let points = Arc::clone(&self.profile);
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for single in plan::split(&points.points, block) {
            match self.read(&single).await {
                Ok(answer) => {
                    self.decode(&single, &answer, results);
                    good.extend(&single.points);
                }
                Err(e) if e.is_illegal_address() && self.mark_absent(&single.points) => {
                    fail(results, &single, &NOT_PRESENT);
                }
                Err(e) => {
                    let msg: ArcStr = ArcStr::from(e.to_string());
                    fail(results, &single, &msg);
                    if !e.is_exception() {
                        // Mark what is left of the block with the same reason.
                        for &i in &block.points {
                            if let Some(slot @ None) = results.get_mut(i) {
                                *slot = Some(Err(msg.clone()));
                            }
                        }
                        return Err(msg);
                    }
                    bad.extend(&single.points);
                }
            }
        }
        Ok(plan::settle(&points.points, &good, &bad, self.limits))
    }

    /// A refused read of exactly one optional point: the device does not have it. Logs it
    /// once and records it as absent; the caller leaves it out of the plan.
    fn mark_absent(&mut self, block_points: &[usize]) -> bool {
        let &[i] = block_points else { return false };
        let Some(point) = self.profile.points.get(i) else { return false };
        if !point.optional {
            return false;
        }
        info!(
            device = %self.spec.id, address = %self.link.address(), unit = self.unit, point = %point.id,
            "optional point not present on this device (illegal data address); not read again until the device was unreachable or is restarted"
        );
        self.absent.push(i);
        true
    }

    /// One block read with retries and backoff.
    async fn read(&self, block: &Block) -> Result<Answer, ModbusError> {
        let req = ReadRequest { unit: self.unit, span: span_of(block), timeout: self.spec.timeout };
        let mut attempt = 0u32;
        loop {
            match self.link.read(req).await {
                Ok(a) => return Ok(a),
                Err(e) if e.is_retryable() && attempt < self.spec.retries => {
                    let delay = backoff(attempt);
                    debug!(device = %self.spec.id, error = %e, retry_in = %crate::model::humane_duration(delay), "modbus read failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn decode(&self, block: &Block, answer: &Answer, results: &mut [Option<Result<f64, ArcStr>>]) {
        for &i in &block.points {
            let Some(point) = self.profile.points.get(i) else { continue };
            let value = match answer {
                Answer::Registers(words) => match block.slice(point, words) {
                    Some(w) => decode_point(point, w),
                    None => Err(DecodeError::Length { expected: usize::from(point.value_type.width()), got: 0 }),
                },
                Answer::Bits(bits) => {
                    let idx = usize::from(point.address.saturating_sub(block.start));
                    match bits.get(idx) {
                        Some(b) => decode_bit(point, *b),
                        None => Err(DecodeError::Length { expected: 1, got: 0 }),
                    }
                }
            };
            let value = value.map_err(|e| {
                ArcStr::from(format!(
                    "point {} ({} {}) at {} unit {}: {e}",
                    point.id,
                    super::error::table_name(point.table),
                    point.address,
                    self.link.address(),
                    self.unit
                ))
            });
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(value);
            }
        }
    }

    /// Sends the readings of one poll, stamped with the time the poll started, and updates
    /// counters. Returns false when nobody listens any more.
    async fn emit(&mut self, at: Timestamp, results: PointResults) -> bool {
        let stats = &self.ctx.stats.modbus;
        let any_good = results.iter().any(|r| r.is_ok());
        // Whether the device is down is the engine's comms rule (`down_after`), logged by the
        // agent; here only the first failed poll of a run is a warning.
        let absent = std::mem::take(&mut self.absent);
        if any_good {
            stats.polls_ok.fetch_add(1, Ordering::Relaxed);
            if self.failures > 0 {
                info!(device = %self.spec.id, address = %self.link.address(), unit = self.unit,
                    failed_before = self.failures, "poll ok again");
            }
            self.failures = 0;
        } else {
            stats.polls_failed.fetch_add(1, Ordering::Relaxed);
            self.failures = self.failures.saturating_add(1);
            let error = results.iter().find_map(|r| r.as_ref().err()).map_or("no points", |e| e);
            if self.failures == 1 {
                warn!(device = %self.spec.id, address = %self.link.address(), unit = self.unit, error, "poll failed");
            } else {
                debug!(device = %self.spec.id, address = %self.link.address(), unit = self.unit,
                    failures = self.failures, error, "poll failed");
            }
        }
        let profile = Arc::clone(&self.profile);
        let mut readings = Vec::with_capacity(profile.points.len());
        for (i, (point, result)) in profile.points.iter().zip(results).enumerate() {
            if absent.contains(&i) {
                continue;
            }
            let (value, quality, error) = match result {
                Ok(v) => (Some(v), Quality::Good, None),
                Err(e) => (None, Quality::Bad, Some(e)),
            };
            let reading = Reading {
                at,
                device: self.spec.id.clone(),
                point: point.id.clone(),
                metric: point.metric.clone(),
                value,
                unit: point.unit.clone(),
                zone: self.spec.zone.clone(),
                rack: self.spec.rack.clone(),
                label: None,
                quality,
                error,
            };
            readings.push(reading);
        }
        self.absent = absent;
        crate::sources::send_readings(&self.ctx, readings).await
    }

    /// Failed polls in a row (0 after a good one).
    pub fn failed_polls(&self) -> u32 {
        self.failures
    }
}

fn span_of(block: &Block) -> Span {
    Span { table: block.table, start: block.start, count: block.count }
}

fn fail(results: &mut [Option<Result<f64, ArcStr>>], block: &Block, msg: &ArcStr) {
    for &i in &block.points {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(Err(msg.clone()));
        }
    }
}

/// Delay before read retry `attempt` (0-based): the shared backoff with this poller's
/// first delay and cap, so devices behind one gateway do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    crate::backoff::delay(BACKOFF_BASE, BACKOFF_CAP, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let d0 = backoff(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = backoff(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            assert!(backoff(30) <= BACKOFF_CAP);
        }
    }
}
