//! The daemon shell: wires sources -> engine -> store -> publish with channels and drives
//! the engine's timers. The only place that reads the clock, handles signals, reloads the
//! configuration, talks to systemd and writes the status snapshot.
//!
//! Loop invariant: every batch of engine events is committed to the store together with
//! the engine state that produced it before the publisher is woken, so a crash at any point
//! neither loses nor duplicates an event.

pub mod clock;
pub mod devices;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::Clock;
use devices::DeviceTable;

use crate::commands::UsageError;
use crate::config::{self, Config, DeviceSpec, MqttSettings};
use crate::engine::{Engine, EngineState, Event, IncidentEventKind, PatternState};
use crate::model::{Reading, Timestamp};
use crate::publish::message::{Outbound, outbound_for};
use crate::publish::{DeviceCounts, HealthBody, OutboxHealth, PollCounts, Publisher, PublisherStatus};
use crate::sources::{self, ProtocolCounts, SourceContext, SourceStats};
use crate::status::{self, BrokerStatus, IncidentStatus, OutboxStatus, PatternStatus, PollCounters, StatusSnapshot};
use crate::store::{Store, StoreError};

/// How the agent is run: the daemon, or the demo's compressed clock.
pub struct AgentOptions {
    pub clock: Clock,
    /// Where the status snapshot goes ($RUNTIME_DIRECTORY under systemd, else the store path).
    pub status_dir: PathBuf,
    /// Talk to systemd (READY, watchdog) when it is there.
    pub systemd: bool,
    /// Stop when this is cancelled (besides SIGTERM/SIGINT).
    pub shutdown: CancellationToken,
}

/// Runs the daemon until SIGTERM/SIGINT or `opts.shutdown`. Returns after a clean shutdown.
pub async fn run(config: Config, opts: AgentOptions) -> anyhow::Result<()> {
    let clock = opts.clock.clone();
    let started_at = clock.now();
    let Some(mqtt) = config.mqtt.clone() else {
        return Err(UsageError(format!(
            "{}: `run` needs an [mqtt] section (where to forward to)",
            config.path.display()
        ))
        .into());
    };
    let store = Store::open(&config.store, &config.site)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let mut engine = Engine::new(config.engine.clone());
    if let Some(bytes) = store.load_engine_state()? {
        match serde_json::from_slice::<EngineState>(&bytes) {
            Ok(state) => {
                engine.import_state(state);
                info!(
                    open_incidents = engine.open_incidents().len(),
                    active_patterns = engine.active_patterns().len(),
                    "engine state restored"
                );
            }
            // Refusing to start would also strand the outbox; forward it and start the
            // engine afresh, loudly.
            Err(e) => error!(
                error = %e,
                store = %config.store.path.display(),
                "engine state unreadable: starting without the open incidents and pattern history it held (the outbox is kept and forwarded)"
            ),
        }
    }
    let publisher = Publisher::start(&mqtt, &config.site, store.clone())?;
    let waker = publisher.waker();
    let pub_status = publisher.status();

    let (tx, mut rx) = mpsc::channel::<Reading>(READING_QUEUE);
    let stats = Arc::new(SourceStats::default());
    let mut sources = Sources::start(&config.devices, tx.clone(), stats.clone());
    let mut devices = DeviceTable::new(&config.devices);
    let mut config = config;
    let mut pending = PendingCommit::default();

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    let watchdog = opts.systemd.then(watchdog_interval).flatten();
    if opts.systemd {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
    info!(site = %config.site, devices = config.devices.len(), broker = %crate::publish::broker_name(&mqtt), "hallmonitor started");

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_health = Instant::now();
    let mut last_state_save = Instant::now();
    let mut last_buffering_log = Instant::now();
    let mut health_polls = (ProtocolCounts::default(), ProtocolCounts::default());
    let far = || Instant::now() + Duration::from_secs(3600);

    loop {
        let deadline = engine.next_timeout().map(|t| clock.instant_of(t));
        tokio::select! {
            biased;
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = opts.shutdown.cancelled() => break,
            _ = sighup.recv() => {
                match reload(&config) {
                    Ok(new) if new.site != config.site || new.store.path != config.store.path => error!(
                        "configuration reload refused: the site id or the store path changed; restart the daemon to apply them"
                    ),
                    Ok(mut new) => {
                        if mqtt_changed(new.mqtt.as_ref(), config.mqtt.as_ref()) {
                            warn!("configuration reload: [mqtt] changed; it applies after a restart, the running connection is kept");
                        }
                        // What runs is what the publisher was started with.
                        new.mqtt = config.mqtt.clone();
                        engine.reconfigure(new.engine.clone());
                        sources.stop().await;
                        sources = Sources::start(&new.devices, tx.clone(), stats.clone());
                        devices.reconfigure(&new.devices);
                        info!(devices = new.devices.len(), "configuration reloaded");
                        config = new;
                    }
                    Err(e) => error!(error = %e, "configuration reload refused; keeping the running configuration"),
                }
            }
            Some(first) = rx.recv() => {
                let now = clock.now();
                let mut handle = |mut r: Reading| {
                    if clock.is_simulated() {
                        r.at = now;
                    }
                    devices.observe(&r);
                    engine.handle_reading(now, &r);
                };
                handle(first);
                // Take what is already queued in one go: one commit per batch, not per reading.
                for _ in 0..READING_BATCH {
                    match rx.try_recv() {
                        Ok(r) => handle(r),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                engine.handle_timeout(clock.now());
            }
            _ = tick.tick() => {
                let now = clock.now();
                if watchdog.is_some() {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                let publisher_now = pub_status.borrow().clone();
                if !publisher_now.connected
                    && last_buffering_log.elapsed() >= BUFFERING_LOG_EVERY
                    && let Ok(outbox) = store.stats()
                    && outbox.depth > 0
                {
                    last_buffering_log = Instant::now();
                    warn!(
                        depth = outbox.depth,
                        bytes = outbox.bytes,
                        oldest_age_s = outbox.oldest_age(now).map_or(0, |d| d.as_secs()),
                        broker = %publisher_now.broker,
                        "broker unreachable: buffering in the outbox"
                    );
                }
                if last_health.elapsed() >= config.health_interval {
                    last_health = Instant::now();
                    let body = health_body(&store, &publisher_now, &stats, &mut health_polls, &devices, &engine, started_at, now);
                    pending.outbound.push(body.outbound(&mqtt.topic_prefix, &config.site));
                }
                if last_state_save.elapsed() >= STATE_SAVE_EVERY {
                    last_state_save = Instant::now();
                    pending.state_due = true;
                }
                let snapshot = status_snapshot(&config, &store, &publisher_now, &stats, &devices, &engine, started_at, now);
                if let Err(e) = status::write_atomic(&opts.status_dir, &snapshot) {
                    warn!(error = %e, dir = %opts.status_dir.display(), "cannot write the status snapshot");
                }
            }
        }
        while let Some(event) = engine.poll_event() {
            log_event(&event);
            pending.outbound.push(outbound_for(&mqtt.topic_prefix, &config.site, &event));
            pending.engine_events = true;
        }
        if pending.is_due() && pending.commit(&store, &engine, clock.now()).await {
            waker.poke();
        }
        if pending.failing_since.is_some_and(|since| since.elapsed() >= STORE_FAILURE_EXIT) {
            // sled does not recover from a failed write until reopened, and what waits in
            // memory would only grow: exit so systemd restarts the daemon on a reopened store.
            sources.stop().await;
            let _ = publisher.shutdown(DRAIN_ON_SHUTDOWN).await;
            anyhow::bail!(
                "the store at {} has refused writes for {} (disk full?); exiting so the daemon restarts on a reopened store ({} messages not yet durable are lost)",
                config.store.path.display(),
                humantime::format_duration(STORE_FAILURE_EXIT),
                pending.outbound.len()
            );
        }
    }

    // Shutdown: stop polling, let the engine's last events and its state reach the store,
    // then give the publisher a few seconds to drain.
    sources.stop().await;
    while let Some(event) = engine.poll_event() {
        log_event(&event);
        pending.outbound.push(outbound_for(&mqtt.topic_prefix, &config.site, &event));
    }
    pending.state_due = true;
    for _ in 0..3 {
        if pending.commit(&store, &engine, clock.now()).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    waker.poke();
    if opts.systemd {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    }
    let final_status = publisher.shutdown(DRAIN_ON_SHUTDOWN).await;
    let stats_now = store.stats().ok();
    info!(
        left_in_outbox = stats_now.as_ref().map_or(0, |s| s.depth),
        acked = final_status.acked_total,
        "hallmonitor stopped"
    );
    let snapshot = status_snapshot(&config, &store, &final_status, &stats, &devices, &engine, started_at, clock.now());
    let _ = status::write_atomic(&opts.status_dir, &snapshot);
    Ok(())
}

const READING_QUEUE: usize = 8192;
const READING_BATCH: usize = 4096;
const TICK: Duration = Duration::from_secs(2);
// Between event batches (which always carry the state): bounds what a power cut can lose of
// breach timers and load baselines without rewriting the state to flash every few seconds.
const STATE_SAVE_EVERY: Duration = Duration::from_secs(300);
const DRAIN_ON_SHUTDOWN: Duration = Duration::from_secs(5);
const BUFFERING_LOG_EVERY: Duration = Duration::from_secs(60);
const STORE_FAILURE_EXIT: Duration = Duration::from_secs(300);

/// The running poll tasks; restarted as a whole on reload.
struct Sources {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sources {
    fn start(devices: &[DeviceSpec], readings: mpsc::Sender<Reading>, stats: Arc<SourceStats>) -> Self {
        let cancel = CancellationToken::new();
        let ctx = SourceContext { readings, stats, cancel: cancel.clone(), once: false };
        Self { tasks: sources::spawn_all(devices, &ctx), cancel }
    }

    async fn stop(&mut self) {
        self.cancel.cancel();
        let deadline = Instant::now() + Duration::from_secs(3);
        for mut t in self.tasks.drain(..) {
            // A poll task that panicked is already logged by tokio; shutdown goes on. One
            // that does not stop in time is aborted so no old poller outlives a reload.
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

/// Messages and state waiting to be committed. A commit that fails to write keeps them
/// (the disk may be full) and is retried on the next loop turn; nothing is lost meanwhile.
///
/// The engine state goes with every batch that holds engine events (the loop invariant) and
/// with the periodic save, but not with a batch of the shell's own messages only (health):
/// those do not come from the engine, so a restart from the previous state neither loses nor
/// repeats them. The state is large (hundreds of bytes per point: megabytes at a few
/// thousand points), so writing it with every health message cost CPU, memory and flash wear.
#[derive(Default)]
struct PendingCommit {
    outbound: Vec<Outbound>,
    /// `outbound` holds events taken from the engine since the last commit.
    engine_events: bool,
    state_due: bool,
    /// A commit wrote but could not flush: flush before anything else.
    flush_due: bool,
    failing_since: Option<Instant>,
    /// Size of the last serialized engine state, to size the next buffer in one allocation.
    state_len: usize,
}

impl PendingCommit {
    fn is_due(&self) -> bool {
        !self.outbound.is_empty() || self.state_due || self.flush_due
    }

    /// Returns whether new messages became durable.
    async fn commit(&mut self, store: &Store, engine: &Engine, now: Timestamp) -> bool {
        if self.flush_due {
            if let Err(e) = store.flush().await {
                self.failed(&e);
                return false;
            }
            self.flush_due = false;
        }
        if self.outbound.is_empty() && !self.state_due {
            return true;
        }
        // Only batches with engine events (and the periodic save) carry the state. A state
        // that does not serialize is never written: the last good one stays.
        let state = if self.engine_events || self.state_due {
            let mut buf = Vec::with_capacity(self.state_len + self.state_len / 8);
            match serde_json::to_writer(&mut buf, &engine.export_state()) {
                Ok(()) => {
                    self.state_len = buf.len();
                    Some(buf)
                }
                Err(e) => {
                    error!(error = %e, "cannot serialize the engine state; keeping the last saved one");
                    None
                }
            }
        } else {
            None
        };
        match store.commit(&self.outbound, state.as_deref(), now).await {
            Ok(_) => {
                if let Some(since) = self.failing_since.take() {
                    info!(after_s = since.elapsed().as_secs(), "store writable again");
                }
                self.outbound.clear();
                self.engine_events = false;
                self.state_due = false;
                true
            }
            Err(StoreError::Flush { .. }) => {
                // Written, not yet durable: never write it twice.
                self.outbound.clear();
                self.engine_events = false;
                self.state_due = false;
                self.flush_due = true;
                false
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    fn failed(&mut self, e: &StoreError) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            error!(error = %e, pending = self.outbound.len(), "store write failed; keeping events in memory and retrying");
        }
    }
}

fn reload(current: &Config) -> Result<Config, config::ConfigError> {
    let loaded = config::load(&current.path)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    Ok(loaded.config)
}

/// Whether the broker connection settings differ (secrets compared without being printed).
fn mqtt_changed(a: Option<&MqttSettings>, b: Option<&MqttSettings>) -> bool {
    let key = |m: &MqttSettings| {
        (
            crate::publish::broker_name(m),
            m.client_id.clone(),
            m.topic_prefix.clone(),
            m.username.clone(),
            m.password.as_ref().map(|p| p.expose().to_owned()),
            m.ca_file.clone(),
            m.client_cert_file.clone(),
            m.client_key_file.clone(),
            m.keep_alive,
            m.max_inflight,
        )
    };
    a.map(key) != b.map(key)
}

/// The systemd watchdog period, if the unit asks for one.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// One stable log line per event a technician may grep for.
fn log_event(event: &Event) {
    match event {
        Event::Incident(e) => {
            let racks = e.racks.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
            let detail = crate::engine::breach_list(&e.breaches, 3);
            match e.event {
                IncidentEventKind::Opened => {
                    warn!(incident = %e.incident_id, zone = %e.zone, category = %e.category, severity = %e.severity, racks, detail, "incident opened")
                }
                IncidentEventKind::Updated => {
                    let changes = e.changes.join("; ");
                    info!(incident = %e.incident_id, zone = %e.zone, category = %e.category, severity = %e.severity, racks, changes, breaches = e.breaches.len(), detail, "incident updated")
                }
                IncidentEventKind::Resolved => {
                    info!(incident = %e.incident_id, zone = %e.zone, category = %e.category, racks, chronicle = e.chronicle.as_ref().map_or(0, |c| c.len()), "incident resolved")
                }
            }
        }
        Event::Pattern(p) => match p.state {
            PatternState::Active => {
                warn!(pattern = %p.pattern_id, zone = %p.zone, category = %p.category, occurrences = p.occurrences, window = %p.window, summary = %p.summary, "pattern raised")
            }
            PatternState::Updated => {
                info!(pattern = %p.pattern_id, zone = %p.zone, occurrences = p.occurrences, summary = %p.summary, "pattern updated")
            }
            PatternState::Cleared => info!(pattern = %p.pattern_id, zone = %p.zone, "pattern cleared"),
        },
        Event::Rollup(_) => {}
    }
}

/// The `P/S/health` body: poll outcomes since the previous one, devices, outbox, drops, noise.
#[allow(clippy::too_many_arguments)]
fn health_body(
    store: &Store,
    publisher: &PublisherStatus,
    stats: &SourceStats,
    previous: &mut (ProtocolCounts, ProtocolCounts),
    devices: &DeviceTable,
    engine: &Engine,
    started_at: Timestamp,
    now: Timestamp,
) -> HealthBody {
    let (modbus, snmp) = (stats.modbus.snapshot(), stats.snmp.snapshot());
    let delta = |now: &ProtocolCounts, before: &ProtocolCounts| PollCounts {
        ok: now.polls_ok.saturating_sub(before.polls_ok),
        failed: now.polls_failed.saturating_sub(before.polls_failed),
    };
    let polls = BTreeMap::from([
        ("modbus".to_owned(), delta(&modbus, &previous.0)),
        ("snmp".to_owned(), delta(&snmp, &previous.1)),
    ]);
    *previous = (modbus, snmp);
    let snapshot = devices.snapshot();
    let down: Vec<_> = snapshot.iter().filter(|d| !d.up).map(|d| d.id.clone()).collect();
    let outbox = match store.stats() {
        Ok(s) => OutboxHealth::new(&s, publisher, now),
        Err(e) => {
            warn!(error = %e, "cannot read outbox figures for health");
            OutboxHealth::default()
        }
    };
    let dropped = store.take_drop_report().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read the outbox drop report");
        Default::default()
    });
    if dropped.total > 0 {
        warn!(dropped = dropped.total, "outbox full: messages were dropped (reported in health)");
    }
    HealthBody {
        uptime_s: now.since(started_at).as_secs(),
        polls,
        devices: DeviceCounts { total: snapshot.len() as u64, up: (snapshot.len() - down.len()) as u64, down },
        outbox,
        dropped,
        noise: engine.counters(),
    }
}

/// What `hallmonitor status` shows, as of `now`.
#[allow(clippy::too_many_arguments)]
fn status_snapshot(
    config: &Config,
    store: &Store,
    publisher: &PublisherStatus,
    stats: &SourceStats,
    devices: &DeviceTable,
    engine: &Engine,
    started_at: Timestamp,
    now: Timestamp,
) -> StatusSnapshot {
    let outbox = store
        .stats()
        .map(|s| OutboxStatus {
            depth: s.depth,
            bytes: s.bytes,
            oldest_unacked_age_s: s.oldest_age(now).map(|d| d.as_secs()),
            dropped: s.dropped_since_open,
        })
        .unwrap_or_default();
    StatusSnapshot {
        site: config.site.clone(),
        written_at: now,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        config_path: config.path.clone(),
        devices: devices.snapshot(),
        incidents: engine.open_incidents().iter().map(IncidentStatus::from_event).collect(),
        patterns: engine.active_patterns().iter().map(PatternStatus::from_event).collect(),
        outbox,
        broker: BrokerStatus {
            url: publisher.broker.clone(),
            connected: publisher.connected,
            last_ack_at: publisher.last_puback,
            last_error: publisher.last_error.clone(),
        },
        polls: PollCounters { modbus: stats.modbus.snapshot(), snmp: stats.snmp.snapshot() },
        noise: engine.counters(),
    }
}
