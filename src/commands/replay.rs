//! `hallmonitor replay --config PATH --readings FILE`: the engine over recorded readings.
//!
//! Reads JSON lines as `poll` prints them (time from each reading's `at`; zone and rack from the
//! config's device when absent) and prints every message the daemon would publish, one JSON
//! line each: `{"topic": ..., "payload": {...}}`, payload with its envelope (`seq` from 1,
//! `msg_id` `replay-<seq>`, `created_at` the time the engine produced the event).
//!
//! Time: the engine's timers (`for` holds are confirmed by readings; `clear_hold`, update rate
//! limits, `major_after`, pattern windows and rollups by timeouts) are driven in time order
//! between readings, at exactly the instants `next_timeout` names. At end of file nothing is
//! flushed artificially: incidents still open stay open, as they would in the daemon at that
//! moment. Readings are taken in file order; one older than the previous is processed at the
//! previous one's time (the engine's clock never runs backwards).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use arcstr::ArcStr;
use serde::Deserialize;

use super::UsageError;
use crate::engine::{Engine, Event};
use crate::model::{DeviceId, Metric, PointId, Quality, RackId, Reading, Timestamp, ZoneId};
use crate::outbox::{Envelope, with_envelope};
use crate::publish::message::outbound_for;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (zones, devices, thresholds, correlation and pattern settings).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Recorded readings, one JSON object per line as `hallmonitor poll` prints them (`-` for stdin).
    #[arg(long, short)]
    pub readings: PathBuf,
}

/// A reading line; zone and rack may be absent (taken from the config's device).
#[derive(Debug, Deserialize)]
struct Line {
    at: Timestamp,
    device: DeviceId,
    point: PointId,
    metric: Metric,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    unit: Option<ArcStr>,
    #[serde(default)]
    zone: Option<ZoneId>,
    #[serde(default)]
    rack: Option<RackId>,
    #[serde(default)]
    label: Option<ArcStr>,
    #[serde(default = "good")]
    quality: Quality,
    #[serde(default)]
    error: Option<ArcStr>,
}

fn good() -> Quality {
    Quality::Good
}

/// Prints engine events as the messages the daemon would publish.
struct Printer<W: Write> {
    out: W,
    prefix: String,
    site: crate::model::SiteId,
    seq: u64,
}

impl<W: Write> Printer<W> {
    fn drain(&mut self, engine: &mut Engine, now: Timestamp) -> std::io::Result<()> {
        while let Some(ev) = engine.poll_event() {
            self.print(&ev, now)?;
        }
        Ok(())
    }

    fn print(&mut self, ev: &Event, now: Timestamp) -> std::io::Result<()> {
        self.seq += 1;
        let out = outbound_for(&self.prefix, &self.site, ev);
        let env = Envelope {
            site: self.site.clone(),
            msg_id: format!("replay-{}", self.seq),
            seq: self.seq,
            created_at: now,
        };
        let line = serde_json::json!({ "topic": out.topic, "payload": with_envelope(&out.payload, &env) });
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let input: Box<dyn BufRead> = if args.readings.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&args.readings)
            .map_err(|e| UsageError(format!("cannot read readings file {}: {e}", args.readings.display())))?;
        Box::new(BufReader::new(f))
    };
    let devices: std::collections::HashMap<&str, &crate::config::DeviceSpec> =
        config.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let prefix = config.mqtt.as_ref().map_or_else(|| "hallmonitor/v1".to_owned(), |m| m.topic_prefix.clone());
    let mut engine = Engine::new(config.engine.clone());
    let stdout = std::io::stdout();
    let mut printer =
        Printer { out: std::io::BufWriter::new(stdout.lock()), prefix, site: config.site.clone(), seq: 0 };
    let mut clock: Option<Timestamp> = None;
    for (n, line) in input.lines().enumerate() {
        let where_ = format!("{}:{}", args.readings.display(), n + 1);
        let line = line.map_err(|e| anyhow::anyhow!("{where_}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| UsageError(format!("{where_}: not a reading: {e}")))?;
        let dev = devices.get(l.device.as_str());
        let zone = match (l.zone, dev) {
            (Some(z), _) => z,
            (None, Some(d)) => d.zone.clone(),
            (None, None) => {
                return Err(UsageError(format!(
                    "{where_}: reading of device {:?} has no zone and the config has no such device",
                    l.device.as_str()
                ))
                .into());
            }
        };
        let rack = l.rack.or_else(|| dev.and_then(|d| d.rack.clone()));
        let quality = if l.value.is_none() { Quality::Bad } else { l.quality };
        let reading = Reading {
            at: l.at,
            device: l.device,
            point: l.point,
            metric: l.metric,
            value: if quality == Quality::Good { l.value } else { None },
            unit: l.unit.unwrap_or_default(),
            zone,
            rack,
            label: l.label,
            quality,
            error: l.error,
        };
        let now = clock.map_or(reading.at, |c| c.max(reading.at));
        // Timers due before this reading fire at their own instants, in order.
        let mut last_fired = None;
        while let Some(t) = engine.next_timeout()
            && t <= now
            && last_fired != Some(t)
        {
            // Each timeout clears what made it due; the guard only protects against a timer
            // that would name the same instant forever.
            last_fired = Some(t);
            engine.handle_timeout(t);
            printer.drain(&mut engine, t)?;
        }
        engine.handle_reading(now, &reading);
        printer.drain(&mut engine, now)?;
        clock = Some(now);
    }
    printer.out.flush()?;
    Ok(ExitCode::SUCCESS)
}
