//! The daemon shell: wires sources -> engine -> store -> publish with channels and drives
//! the engine's timers. The only place that reads the clock, handles signals, reloads the
//! configuration, talks to systemd and writes the status snapshot.
//!
//! `run` is a loop over `Inputs::next` (signals, the tick, a batch of readings, an engine
//! timer), each handed to one small method of `Agent`, then `Agent::after_turn` commits.
//!
//! Loop invariant: every batch of engine events is committed to the store together with
//! the engine state that produced it before the publisher is woken, so a crash at any point
//! neither loses nor duplicates an event.
//!
//! The tick (watchdog, health, status) comes before readings in the loop's order: a
//! sustained backlog of readings cannot starve the watchdog into having the daemon killed.

pub mod clock;
pub mod devices;
pub mod ha;
mod memory;
pub mod replication;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::{Clock, SimulatedTime};
use devices::DeviceTable;

use crate::config::{self, Config, DeviceSpec, MqttSettings};
use crate::engine::{Engine, EngineState, Event, IncidentEventKind, PatternState};
use crate::error::UsageError;
use crate::model::{DeviceId, Reading, Timestamp};
use crate::outbox::Outbound;
use crate::publish::message::outbound_for;
use crate::publish::status::PairIdentity;
use crate::publish::{
    DeviceCounts, HaHealth, HealthBody, OutboxHealth, PollCounts, PublishWaker, Publisher, PublisherOptions,
    PublisherStatus, ReplicaHealth,
};
use crate::sources::{self, ProtocolCounts, SourceContext, SourceStats};
use crate::status::{
    self, BrokerStatus, HaStatus, IncidentStatus, OutboxStatus, PatternStatus, PollCounters, StatusSnapshot,
};
use crate::store::{StateChunks, Store, StoreError};

/// How the agent is run: the daemon, or the demo's compressed clock.
pub struct AgentOptions {
    pub clock: Clock,
    /// Where the status snapshot goes (`crate::status::snapshot_dir`, or the demo's own).
    pub status_dir: PathBuf,
    /// Talk to systemd (READY, watchdog) when it is there.
    pub systemd: bool,
    /// Stop when this is cancelled (besides SIGTERM/SIGINT).
    pub shutdown: CancellationToken,
}

/// Runs the daemon until SIGTERM/SIGINT or `opts.shutdown`. Returns after a clean shutdown.
pub async fn run(config: Config, opts: AgentOptions) -> anyhow::Result<()> {
    let ha_settings = config.ha.clone();
    let store_dir = config.store.path.clone();
    let (mut agent, readings) = Agent::start(config, opts.clock, opts.status_dir, opts.systemd)?;
    let mut inputs = Inputs::new(readings, TICK, opts.shutdown)?;
    if let Some(settings) = &ha_settings {
        let mut shell = ha::HaShell::start(settings, &store_dir).await?;
        inputs.role = Some(shell.state());
        if let Some(links) = shell.take_stream_links() {
            let setup = replication::FollowerSetup {
                store: agent.store.clone(),
                links,
                generation: shell.generation(),
                view: agent.replica_view.clone(),
            };
            let stop = CancellationToken::new();
            agent.follower = Some((stop.clone(), tokio::spawn(replication::follow(setup, stop))));
        }
        agent.ha = Some(shell);
        agent.on_role().await;
    }
    agent.started();
    loop {
        let deadline = agent.next_deadline();
        let flow = match inputs.next(deadline).await {
            Input::Signal(s) => agent.on_signal(s).await,
            Input::Shutdown => ControlFlow::Break(()),
            Input::Tick => {
                agent.on_tick();
                ControlFlow::Continue(())
            }
            Input::Readings(batch) => {
                agent.on_readings(batch);
                ControlFlow::Continue(())
            }
            Input::Timeout => {
                agent.on_timeout();
                ControlFlow::Continue(())
            }
            Input::Role => {
                agent.on_role().await;
                ControlFlow::Continue(())
            }
        };
        if flow.is_break() {
            break;
        }
        if agent.after_turn().await.is_break() {
            return Err(agent.give_up().await);
        }
    }
    agent.shutdown().await;
    Ok(())
}

/// A signal the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: shut down.
    Terminate,
    /// SIGINT: shut down.
    Interrupt,
    /// SIGHUP: reload the configuration.
    Hangup,
    /// SIGUSR1 (`hallmonitor ha handover`): a pair's active hands the lease to the peer.
    Handover,
}

/// What woke the loop.
#[derive(Debug)]
pub enum Input {
    Signal(Signal),
    /// `AgentOptions::shutdown` was cancelled.
    Shutdown,
    /// The periodic tick: watchdog, health, status.
    Tick,
    /// Readings already queued, at most `READING_BATCH + 1`, oldest first.
    Readings(Vec<Reading>),
    /// The engine's next timer is due.
    Timeout,
    /// The gateway pair's election changed this gateway's role.
    Role,
}

/// Everything the loop waits on, in priority order.
pub struct Inputs {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
    sigusr1: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
    readings: mpsc::Receiver<Reading>,
    tick: Interval,
    /// The gateway pair's role, with `[ha]`.
    pub role: Option<watch::Receiver<ha::HaState>>,
}

impl Inputs {
    /// Installs the signal handlers; the first tick is due at once, then every `tick`.
    pub fn new(readings: mpsc::Receiver<Reading>, tick: Duration, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let mut tick = tokio::time::interval(tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Ok(Self {
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sighup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            sigusr1: signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?,
            shutdown,
            readings,
            tick,
            role: None,
        })
    }

    /// The next input; `deadline` is when the engine's next timer is due.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Input {
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            _ = self.sigterm.recv() => Input::Signal(Signal::Terminate),
            _ = self.sigint.recv() => Input::Signal(Signal::Interrupt),
            _ = self.shutdown.cancelled() => Input::Shutdown,
            // Before everything else that acts: a lost lease stops the pollers and publisher.
            Some(()) = role_changed(&mut self.role) => Input::Role,
            // Before readings, which may never run dry (see the module docs).
            _ = self.tick.tick() => Input::Tick,
            _ = self.sighup.recv() => Input::Signal(Signal::Hangup),
            _ = self.sigusr1.recv() => Input::Signal(Signal::Handover),
            Some(first) = self.readings.recv() => {
                // Take what is already queued in one go (one commit per batch, not per
                // reading), but a bounded amount, so a turn stays short.
                let mut batch = Vec::with_capacity(self.readings.len().min(READING_BATCH) + 1);
                batch.push(first);
                while batch.len() <= READING_BATCH {
                    match self.readings.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                Input::Readings(batch)
            }
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Input::Timeout,
        }
    }
}

/// Waits for the next role change; never, without `[ha]` (or once the election is gone).
async fn role_changed(role: &mut Option<watch::Receiver<ha::HaState>>) -> Option<()> {
    match role {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(()),
            Err(_) => {
                *role = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// The running daemon: every stage and the shell's own bookkeeping.
pub struct Agent {
    config: Config,
    /// The settings the publisher runs with (a reload does not change them).
    mqtt: MqttSettings,
    clock: Clock,
    started_at: Timestamp,
    store: Store,
    engine: Engine,
    /// Taken when the agent stops; `None` while standby in a gateway pair.
    publisher: Option<Publisher>,
    waker: Option<PublishWaker>,
    publisher_status: watch::Receiver<PublisherStatus>,
    /// Kept to start the poll tasks again on reload.
    readings: mpsc::Sender<Reading>,
    stats: Arc<SourceStats>,
    sources: Sources,
    devices: DeviceTable,
    pending: PendingCommit,
    status_dir: PathBuf,
    systemd: bool,
    watchdog: bool,
    last_health: Instant,
    last_state_save: Instant,
    last_buffering_log: Instant,
    /// Engine events taken so far (the status snapshot shows what they changed).
    events_seen: u64,
    /// When the status snapshot was last written, and what it showed then.
    status_written: Option<(Instant, StatusKey)>,
    /// When to hand the executable's start-up pages back (`memory`), once start-up is over.
    release_pages_at: Option<Instant>,
    /// Poll counters at the last health message.
    health_polls: (ProtocolCounts, ProtocolCounts),
    /// The gateway pair's shell, with `[ha]`.
    ha: Option<ha::HaShell>,
    /// Polls and publishes: always without `[ha]`; with it, while the election says active.
    active: bool,
    /// In a pair: the replication stream to the standby, while active.
    replicator: Option<replication::Replicator>,
    /// In a pair: the standby's side of the stream (it runs for the daemon's life).
    follower: Option<(CancellationToken, JoinHandle<()>)>,
    /// Where the stream stands, either role (status, health).
    replica_view: Arc<watch::Sender<replication::ReplicaView>>,
}

impl Agent {
    /// Opens the store, restores the engine, starts the publisher and the poll tasks. Returns
    /// the receiving end of the readings channel, for `Inputs`.
    pub fn start(
        config: Config,
        clock: Clock,
        status_dir: PathBuf,
        systemd: bool,
    ) -> anyhow::Result<(Agent, mpsc::Receiver<Reading>)> {
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
        let engine = restore_engine(&config, &store)?;
        // In a gateway pair nothing polls or publishes until the election says active.
        let active = config.ha.is_none();
        let publisher = if active { Some(Publisher::start(&mqtt, &config.site, store.clone())?) } else { None };
        let (tx, rx) = mpsc::channel::<Reading>(READING_QUEUE);
        let stats = Arc::new(SourceStats::default());
        let sources = if active {
            Sources::start(&config.devices, tx.clone(), stats.clone(), &CancellationToken::new())
        } else {
            Sources::none()
        };
        let mut devices = DeviceTable::new(&config.devices);
        // Devices the restored engine holds down are down from the start.
        devices.sync(&engine);
        let now = Instant::now();
        let agent = Agent {
            waker: publisher.as_ref().map(Publisher::waker),
            publisher_status: match &publisher {
                Some(p) => p.status(),
                None => idle_publisher_status(&mqtt),
            },
            publisher,
            mqtt,
            clock,
            started_at,
            store,
            engine,
            readings: tx,
            stats,
            sources,
            devices,
            pending: PendingCommit::default(),
            status_dir,
            systemd,
            watchdog: systemd && watchdog_interval().is_some(),
            last_health: now,
            last_state_save: now,
            last_buffering_log: now,
            events_seen: 0,
            status_written: None,
            release_pages_at: Some(now + RELEASE_PAGES_AFTER),
            health_polls: Default::default(),
            ha: None,
            active,
            replicator: None,
            follower: None,
            replica_view: Arc::new(watch::channel(replication::ReplicaView::default()).0),
            config,
        };
        Ok((agent, rx))
    }

    /// Tells systemd and the log that the daemon runs.
    fn started(&self) {
        if self.systemd {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        info!(site = %self.config.site, devices = self.config.devices.len(), broker = %crate::publish::broker_name(&self.mqtt), "hallmonitor started");
    }

    /// When the engine's next timer is due, on the loop's clock.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.active {
            return None;
        }
        self.engine.next_timeout().map(|t| self.clock.instant_of(t))
    }

    /// SIGTERM/SIGINT stop the loop; SIGHUP reloads.
    pub async fn on_signal(&mut self, signal: Signal) -> ControlFlow<()> {
        match signal {
            Signal::Terminate => info!("SIGTERM: shutting down"),
            Signal::Interrupt => info!("SIGINT: shutting down"),
            Signal::Hangup => {
                self.on_reload().await;
                return ControlFlow::Continue(());
            }
            Signal::Handover => {
                self.on_handover().await;
                return ControlFlow::Continue(());
            }
        }
        ControlFlow::Break(())
    }

    /// Reloads the configuration file: new devices, rules and zones; incidents, patterns and
    /// the outbox are kept. A file that does not load, or that changes the site or the store,
    /// is refused and the running configuration kept.
    pub async fn on_reload(&mut self) {
        // The reload's code (the TOML, its checks) is paged in again: hand it back after.
        self.release_pages_at = Some(Instant::now() + RELEASE_PAGES_AFTER);
        let mut new = match reload(&self.config) {
            Ok(new) => new,
            Err(e) => {
                error!(error = %e, "configuration reload refused; keeping the running configuration");
                return;
            }
        };
        if new.site != self.config.site || new.store.path != self.config.store.path {
            error!(
                "configuration reload refused: the site id or the store path changed; restart the daemon to apply them"
            );
            return;
        }
        if mqtt_changed(new.mqtt.as_ref(), self.config.mqtt.as_ref()) {
            warn!("configuration reload: [mqtt] changed; it applies after a restart, the running connection is kept");
        }
        // What runs is what the publisher was started with.
        new.mqtt = self.config.mqtt.clone();
        self.engine.reconfigure(new.engine.clone());
        if ha_changed(new.ha.as_ref(), self.config.ha.as_ref()) {
            warn!("configuration reload: [ha] changed; it applies after a restart, the running election is kept");
        }
        new.ha = self.config.ha.clone();
        self.sources.stop().await;
        if let Some(lease) = self.poll_under() {
            self.sources = Sources::start(&new.devices, self.readings.clone(), self.stats.clone(), &lease);
        }
        self.devices.reconfigure(&new.devices);
        self.devices.sync(&self.engine);
        info!(devices = new.devices.len(), "configuration reloaded");
        self.config = new;
    }

    /// Feeds a batch of readings to the engine, at the shell's time.
    pub fn on_readings(&mut self, mut batch: Vec<Reading>) {
        let now = self.clock.now();
        // The devices this batch is about (a poll's readings come together; a repeat is
        // harmless).
        let mut touched: Vec<DeviceId> = Vec::new();
        // A device's readings come one after the other: its status is looked up once a run.
        for run in batch.chunk_by_mut(|a, b| a.device == b.device) {
            if self.clock.is_simulated() {
                run.iter_mut().for_each(|r| r.at = now);
            }
            if let Some(first) = run.first() {
                touched.push(first.device.clone());
            }
            self.devices.observe(run);
            for r in run.iter() {
                self.engine.handle_reading(now, r);
            }
        }
        self.devices.sync_some(&self.engine, &touched);
    }

    /// Runs the engine's due timers (a standby's engine waits: it receives no readings).
    pub fn on_timeout(&mut self) {
        if self.active {
            self.engine.handle_timeout(self.clock.now());
        }
    }

    /// The token the pollers run under when they may poll: a fresh one without `[ha]`, a
    /// child of the lease while active (cancelled the moment the lease ends), `None` while
    /// standby.
    fn poll_under(&self) -> Option<CancellationToken> {
        match &self.ha {
            None => Some(CancellationToken::new()),
            Some(shell) => {
                let state = shell.state();
                let state = state.borrow();
                match (&state.lease, state.role) {
                    (Some(lease), ha::Role::Active) if !lease.is_cancelled() => Some(lease.child_token()),
                    _ => None,
                }
            }
        }
    }

    /// The election changed this gateway's role: start, or stop, the pollers and the
    /// publisher. (The role change itself is logged by the election, once.)
    pub async fn on_role(&mut self) {
        let lease = self.poll_under();
        // The lease this gateway polled under ended (a fence and a new lease may come in one
        // change): stop first, then start afresh under the new one.
        if self.active && (lease.is_none() || self.sources.cancel.is_cancelled()) {
            self.active = false;
            // The lease token already stopped the pollers; wait for them to end. Dropping the
            // publisher aborts it at once (as a crash would): nothing more goes out.
            self.sources.stop().await;
            self.publisher.take();
            self.waker = None;
            self.publisher_status = idle_publisher_status(&self.mqtt);
            if let Some(r) = self.replicator.take() {
                r.stop(&self.store).await;
            }
        }
        if !self.active
            && let Some(lease) = lease
        {
            let pair = self.ha.as_ref().map(|shell| {
                let s = shell.state();
                let s = s.borrow();
                PairIdentity { node: s.node.clone(), term: s.term }
            });
            if pair.is_some() {
                // Nothing goes out before the stream says what the standby holds.
                self.store.set_publish_limit(0);
            }
            let opts = PublisherOptions { pair: pair.clone(), ..PublisherOptions::new(&self.mqtt, &self.config.site) };
            match Publisher::start_with(opts, self.store.clone()) {
                Ok(p) => {
                    self.waker = Some(p.waker());
                    self.publisher_status = p.status();
                    self.publisher = Some(p);
                }
                Err(e) => error!(error = %e, "active, but the publisher cannot start; polling anyway"),
            }
            if let Some(pair) = pair {
                self.start_replicating(pair.term);
                // The replica is now this gateway's: continue its incidents and patterns.
                self.reload_engine();
            }
            self.sources = Sources::start(&self.config.devices, self.readings.clone(), self.stats.clone(), &lease);
            self.active = true;
            if let Some(w) = &self.waker {
                w.poke();
            }
        }
        // `status` (and `ha handover`, waiting for it) see the new role at once.
        let publisher = self.publisher_status.borrow().clone();
        self.write_status(&publisher, self.clock.now());
    }

    /// Starts streaming the store to the standby under `term` (the store captures from now on,
    /// so no entry of the old active lands after the engine is reloaded from it).
    fn start_replicating(&mut self, term: u64) {
        let Some(shell) = &self.ha else { return };
        let Some(settings) = &self.config.ha else { return };
        let (key, peer, node) = shell.link_to_peer();
        let setup = replication::ReplicatorSetup {
            store: self.store.clone(),
            peer,
            key,
            node,
            term,
            params: crate::ha::replica::LeaderParams {
                degrade_after: settings.lease / 3,
                max_unacked_bytes: REPLICA_MAX_UNACKED,
            },
            generation: shell.generation(),
            election: shell.state(),
            view: self.replica_view.clone(),
            waker: self.waker.clone(),
        };
        match replication::Replicator::start(setup) {
            Ok(r) => self.replicator = Some(r),
            Err(e) => {
                // Publishing without a replica beats publishing nothing; the pair cannot take
                // over meanwhile, as in degraded mode.
                error!(error = %format!("{e:#}"), "active, but the replication stream cannot start; publishing without the standby");
                self.store.set_publish_limit(u64::MAX);
            }
        }
    }

    /// Replaces the engine with the one the store holds (what the previous active committed
    /// and replicated here).
    fn reload_engine(&mut self) {
        let engine = restore_engine(&self.config, &self.store).unwrap_or_else(|e| {
            error!(error = %e, "cannot read the replicated engine state: starting without its open incidents and pattern history");
            Engine::new(self.config.engine.clone())
        });
        self.engine = engine;
        self.devices = DeviceTable::new(&self.config.devices);
        self.devices.sync(&self.engine);
    }

    /// `hallmonitor ha handover` (SIGUSR1): an active with the peer link up stops polling,
    /// commits, drains its outbox while it still holds the lease, disconnects cleanly without
    /// an offline status, then resigns (fence, release) and stays as standby, asking for
    /// nothing for one lease so the peer wins. Anything else is logged and ignored.
    pub async fn on_handover(&mut self) {
        let Some(shell) = &self.ha else {
            warn!("SIGUSR1 (handover) ignored: no [ha] section, this gateway is not in a pair");
            return;
        };
        let (role, peer_link_up) = {
            let s = shell.state();
            let s = s.borrow();
            (s.role, s.peer_link_up)
        };
        if role != ha::Role::Active || !self.active {
            warn!("handover asked, but this gateway is standby: nothing to hand over");
            return;
        }
        if !peer_link_up {
            warn!("handover refused: the peer link is down, so the peer could not take over; staying active");
            return;
        }
        let replica = self.replica_view.borrow().state.clone();
        if !replication::standby_can_take_over(&replica) {
            warn!(replica = %replica, "handover refused: the standby does not hold what was published, so it could not take over; staying active");
            return;
        }
        info!("handover: stopping polls, draining the outbox, then giving the lease to the peer");
        self.sources.stop().await;
        self.commit_last_events().await;
        let drain = self.drain_time();
        if let Some(p) = self.publisher.take() {
            p.hand_over(drain).await;
        }
        if let Some(r) = self.replicator.take() {
            r.stop(&self.store).await;
        }
        self.waker = None;
        self.publisher_status = idle_publisher_status(&self.mqtt);
        self.active = false;
        if let Some(shell) = &self.ha {
            shell.resign(ha::Resign::Handover).await;
        }
        let publisher = self.publisher_status.borrow().clone();
        self.write_status(&publisher, self.clock.now());
    }

    /// The engine's last events and its state into the store (retried briefly), then a poke.
    async fn commit_last_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            log_event(&event);
            self.events_seen += 1;
            self.pending.outbound.push(outbound_for(&self.mqtt.topic_prefix, &self.config.site, &event));
        }
        self.pending.state_due = true;
        for _ in 0..3 {
            if self.pending.commit(&self.store, &self.engine, self.clock.now()).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(r) = &self.replicator {
            r.poke();
        }
        if let Some(w) = &self.waker {
            w.poke();
        }
    }

    /// The periodic work: pings the watchdog, logs buffering, queues health when due, marks
    /// the state save due, writes the status snapshot.
    pub fn on_tick(&mut self) {
        let now = self.clock.now();
        if self.watchdog {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
        let publisher_now = self.publisher_status.borrow().clone();
        if !publisher_now.connected
            && self.last_buffering_log.elapsed() >= BUFFERING_LOG_EVERY
            && let Ok(outbox) = self.store.stats()
            && outbox.depth > 0
        {
            self.last_buffering_log = Instant::now();
            warn!(
                depth = outbox.depth,
                bytes = outbox.bytes,
                oldest_age_s = outbox.oldest_age(now).map_or(0, |d| d.as_secs()),
                broker = %publisher_now.broker,
                "broker unreachable: buffering in the outbox"
            );
        }
        // A standby publishes nothing, health included (it would go out, stale, on takeover).
        if self.active && self.last_health.elapsed() >= self.config.health_interval {
            self.last_health = Instant::now();
            let body = self.health_body(&publisher_now, now);
            self.pending.outbound.push(body.outbound(&self.mqtt.topic_prefix, &self.config.site));
        }
        if self.last_state_save.elapsed() >= STATE_SAVE_EVERY {
            self.last_state_save = Instant::now();
            self.pending.state_due = true;
        }
        if self.status_due(&publisher_now) {
            self.write_status(&publisher_now, now);
        }
        if self.release_pages_at.is_some_and(|at| Instant::now() >= at) {
            self.release_pages_at = None;
            let _ = memory::release_startup_pages();
        }
    }

    /// After every input: takes the engine's events, commits what is due and wakes the
    /// publisher. Breaks when the store has refused writes for too long.
    pub async fn after_turn(&mut self) -> ControlFlow<()> {
        while let Some(event) = self.engine.poll_event() {
            log_event(&event);
            self.events_seen += 1;
            self.pending.outbound.push(outbound_for(&self.mqtt.topic_prefix, &self.config.site, &event));
            self.pending.engine_events = true;
        }
        // A standby's store is the active's replica: it writes nothing of its own.
        if self.active
            && self.pending.is_due()
            && self.pending.commit(&self.store, &self.engine, self.clock.now()).await
        {
            if let Some(r) = &self.replicator {
                r.poke();
            }
            if let Some(w) = &self.waker {
                w.poke();
            }
        }
        if self.pending.failing_since.is_some_and(|since| since.elapsed() >= STORE_FAILURE_EXIT) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// The store refuses writes: stops and returns the error to exit with.
    pub async fn give_up(mut self) -> anyhow::Error {
        // sled does not recover from a failed write until reopened, and what waits in
        // memory would only grow: exit so systemd restarts the daemon on a reopened store.
        self.sources.stop().await;
        if let Some(p) = self.publisher.take() {
            let _ = p.shutdown(self.drain_time()).await;
        }
        anyhow::anyhow!(
            "the store at {} has refused writes for {} (disk full?); exiting so the daemon restarts on a reopened store ({} messages not yet durable are lost)",
            self.config.store.path.display(),
            crate::model::humane_duration(STORE_FAILURE_EXIT),
            self.pending.outbound.len()
        )
    }

    /// Stops polling, lets the engine's last events and its state reach the store, then
    /// gives the publisher a few seconds to drain.
    pub async fn shutdown(mut self) {
        self.sources.stop().await;
        // A standby's engine is not the pair's: its state must not overwrite the replica's.
        if self.active {
            self.commit_last_events().await;
        }
        if self.systemd {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        }
        let final_status = match self.publisher.take() {
            Some(p) => p.shutdown(self.drain_time()).await,
            None => self.publisher_status.borrow().clone(),
        };
        if let Some(r) = self.replicator.take() {
            r.stop(&self.store).await;
        }
        if let Some((stop, task)) = self.follower.take() {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // In a pair, now that nothing polls or publishes: give the lease back, so the peer
        // takes over within about a renew period rather than after the promises ran out.
        if let Some(shell) = &self.ha {
            shell.resign(ha::Resign::Shutdown).await;
        }
        let stats_now = self.store.stats().ok();
        info!(
            left_in_outbox = stats_now.as_ref().map_or(0, |s| s.depth),
            acked = final_status.acked_total,
            "hallmonitor stopped"
        );
        let now = self.clock.now();
        let snapshot = status_snapshot(&self, &final_status, now);
        let _ = status::write_atomic(&self.status_dir, &snapshot);
        if let Some(shell) = self.ha.take() {
            shell.stop().await;
        }
    }

    /// How long the publisher may drain on the way out: in a gateway pair, no longer than the
    /// lease (past it, the other gateway may be publishing).
    fn drain_time(&self) -> Duration {
        match &self.ha {
            Some(shell) => DRAIN_ON_SHUTDOWN.min(shell.lease_left()),
            None => DRAIN_ON_SHUTDOWN,
        }
    }

    fn write_status(&mut self, publisher: &PublisherStatus, now: Timestamp) {
        let snapshot = status_snapshot(self, publisher, now);
        if let Err(e) = status::write_atomic(&self.status_dir, &snapshot) {
            warn!(error = %e, dir = %self.status_dir.display(), "cannot write the status snapshot");
        }
        self.status_written = Some((Instant::now(), self.status_key(publisher)));
    }

    /// Whether the tick should write the status snapshot: when what it shows changed, else
    /// every `STATUS_REFRESH` (so its age still says the daemon runs). Rewriting an
    /// unchanged snapshot of a few hundred devices every tick cost about a tenth of the
    /// daemon's CPU at a 5 s poll interval. In a gateway pair, every tick: `ha handover`
    /// watches the snapshot for the role, and takes an old one for a stopped daemon.
    fn status_due(&self, publisher: &PublisherStatus) -> bool {
        match &self.status_written {
            None => true,
            Some(_) if self.ha.is_some() => true,
            Some((at, key)) => at.elapsed() >= STATUS_REFRESH || *key != self.status_key(publisher),
        }
    }

    fn status_key(&self, publisher: &PublisherStatus) -> StatusKey {
        let outbox = self.store.stats().ok();
        StatusKey {
            devices: self.devices.changes(),
            events: self.events_seen,
            broker_connected: publisher.connected,
            broker_error: publisher.last_error.clone(),
            outbox_depth: outbox.as_ref().map(|s| s.depth),
            outbox_dropped: outbox.map(|s| s.dropped_since_open),
        }
    }

    /// The `P/S/health` body: poll outcomes since the previous one, devices, outbox, drops, noise.
    fn health_body(&mut self, publisher: &PublisherStatus, now: Timestamp) -> HealthBody {
        let (modbus, snmp) = (self.stats.modbus.snapshot(), self.stats.snmp.snapshot());
        let delta = |now: &ProtocolCounts, before: &ProtocolCounts| PollCounts {
            ok: now.polls_ok.saturating_sub(before.polls_ok),
            failed: now.polls_failed.saturating_sub(before.polls_failed),
        };
        let polls = BTreeMap::from([
            ("modbus".to_owned(), delta(&modbus, &self.health_polls.0)),
            ("snmp".to_owned(), delta(&snmp, &self.health_polls.1)),
        ]);
        self.health_polls = (modbus, snmp);
        let snapshot = self.devices.snapshot();
        let down: Vec<_> = snapshot.iter().filter(|d| !d.up).map(|d| d.id.clone()).collect();
        let outbox = match self.store.stats() {
            Ok(s) => OutboxHealth::new(&s, publisher, now),
            Err(e) => {
                warn!(error = %e, "cannot read outbox figures for health");
                OutboxHealth::default()
            }
        };
        let dropped = self.store.take_drop_report().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the outbox drop report");
            Default::default()
        });
        if dropped.total > 0 {
            warn!(dropped = dropped.total, "outbox full: messages were dropped (reported in health)");
        }
        HealthBody {
            uptime_s: now.since(self.started_at).as_secs(),
            polls,
            devices: DeviceCounts { total: snapshot.len() as u64, up: (snapshot.len() - down.len()) as u64, down },
            outbox,
            dropped,
            noise: self.engine.counters(),
            ha: self.ha.as_ref().map(|shell| {
                let s = shell.state();
                let s = s.borrow();
                HaHealth {
                    node: s.node.clone(),
                    role: s.role.as_str().to_owned(),
                    term: s.term,
                    last_takeover_at: s.last_takeover.as_ref().map(|t| t.0),
                    last_takeover_reason: s.last_takeover.as_ref().map(|t| t.1.clone()),
                    replica: {
                        let v = self.replica_view.borrow();
                        (!v.state.is_empty()).then(|| ReplicaHealth {
                            state: v.state.clone(),
                            lag_entries: v.lag_entries,
                            lag_ms: v.lag_ms,
                        })
                    },
                }
            }),
        }
    }
}

const READING_QUEUE: usize = 8192;
const READING_BATCH: usize = 4096;
const TICK: Duration = Duration::from_secs(2);
/// The status snapshot is rewritten at least this often when nothing it shows changed.
const STATUS_REFRESH: Duration = Duration::from_secs(10);
/// Start-up (sources started, the first polls, the broker connection) is over by then.
const RELEASE_PAGES_AFTER: Duration = Duration::from_secs(5);
// Between event batches (which always carry the state): bounds what a power cut can lose of
// breach timers and load baselines without rewriting the state to flash every few seconds.
const STATE_SAVE_EVERY: Duration = Duration::from_secs(300);
const DRAIN_ON_SHUTDOWN: Duration = Duration::from_secs(5);
/// Entries kept for an absent standby before it is sent a snapshot instead.
const REPLICA_MAX_UNACKED: usize = 16 << 20;
const BUFFERING_LOG_EVERY: Duration = Duration::from_secs(60);
const STORE_FAILURE_EXIT: Duration = Duration::from_secs(300);

/// What a status snapshot showed that a technician would look for, beside the counters and
/// last good polls that change with every poll: a tick writes a new one when this changes.
#[derive(PartialEq)]
struct StatusKey {
    devices: u64,
    events: u64,
    broker_connected: bool,
    broker_error: Option<String>,
    outbox_depth: Option<u64>,
    outbox_dropped: Option<u64>,
}

/// The running poll tasks; restarted as a whole on reload.
struct Sources {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sources {
    /// Starts the poll tasks under `parent` (they end when it is cancelled).
    fn start(
        devices: &[DeviceSpec],
        readings: mpsc::Sender<Reading>,
        stats: Arc<SourceStats>,
        parent: &CancellationToken,
    ) -> Self {
        let cancel = parent.child_token();
        let ctx = SourceContext { readings, stats, cancel: cancel.clone(), once: false };
        Self { tasks: sources::spawn_all(devices, &ctx), cancel }
    }

    /// No poll tasks (a standby).
    fn none() -> Self {
        Self { cancel: CancellationToken::new(), tasks: Vec::new() }
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
            let mut chunks = StateChunks::new();
            match serde_json::to_writer(&mut chunks, &engine.state_view()) {
                Ok(()) => Some(chunks),
                Err(e) => {
                    error!(error = %e, "cannot serialize the engine state; keeping the last saved one");
                    None
                }
            }
        } else {
            None
        };
        match store.commit_chunks(&self.outbound, state, now).await {
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

/// The engine as the store holds it (at start, or the replica on becoming active): its saved
/// state imported, or a fresh engine when there is none or it does not decode. Refusing to
/// start would also strand the outbox, so an unreadable state is logged, not fatal.
fn restore_engine(config: &Config, store: &Store) -> Result<Engine, StoreError> {
    let mut engine = Engine::new(config.engine.clone());
    if let Some(bytes) = store.load_engine_state()? {
        match serde_json::from_slice::<EngineState>(&bytes) {
            Ok(state) => {
                engine.import_state(state);
                info!(
                    open_incidents = engine.open_incidents().len(),
                    active_patterns = engine.active_patterns().len(),
                    next_seq = store.durable_seq() + 1,
                    "engine state restored"
                );
            }
            Err(e) => error!(
                error = %e,
                store = %config.store.path.display(),
                "engine state unreadable: starting without the open incidents and pattern history it held (the outbox is kept and forwarded)"
            ),
        }
    }
    Ok(engine)
}

/// Whether `[ha]` differs (the key compared without being printed).
fn ha_changed(a: Option<&config::HaSettings>, b: Option<&config::HaSettings>) -> bool {
    let key = |h: &config::HaSettings| {
        (
            h.node.clone(),
            h.listen,
            h.peer.clone(),
            h.witness.clone(),
            h.key.expose().to_owned(),
            h.lease,
            h.drift_ppm,
            h.guard,
        )
    };
    a.map(key) != b.map(key)
}

/// The publisher status shown while no publisher runs (a standby).
fn idle_publisher_status(mqtt: &MqttSettings) -> watch::Receiver<PublisherStatus> {
    watch::channel(PublisherStatus { broker: crate::publish::broker_name(mqtt), ..Default::default() }).1
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

/// What `hallmonitor status` shows, as of `now`.
fn status_snapshot(agent: &Agent, publisher: &PublisherStatus, now: Timestamp) -> StatusSnapshot {
    let outbox = agent
        .store
        .stats()
        .map(|s| OutboxStatus {
            depth: s.depth,
            bytes: s.bytes,
            oldest_unacked_age_s: s.oldest_age(now).map(|d| d.as_secs()),
            dropped: s.dropped_since_open,
        })
        .unwrap_or_default();
    StatusSnapshot {
        site: agent.config.site.clone(),
        written_at: now,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: agent.started_at,
        config_path: agent.config.path.clone(),
        devices: agent.devices.snapshot(),
        incidents: agent.engine.incident_summaries().into_iter().map(IncidentStatus::from_summary).collect(),
        patterns: agent.engine.active_patterns().iter().map(PatternStatus::from_event).collect(),
        outbox,
        broker: BrokerStatus {
            url: publisher.broker.clone(),
            connected: publisher.connected,
            last_ack_at: publisher.last_puback,
            last_error: publisher.last_error.clone(),
        },
        polls: PollCounters { modbus: agent.stats.modbus.snapshot(), snmp: agent.stats.snmp.snapshot() },
        noise: agent.engine.counters(),
        ha: agent.ha.as_ref().map(|shell| {
            let s = shell.state();
            let s = s.borrow();
            HaStatus {
                node: s.node.clone(),
                role: s.role.as_str().to_owned(),
                term: s.term,
                since: s.since,
                reason: s.reason.clone(),
                last_takeover_at: s.last_takeover.as_ref().map(|t| t.0),
                last_takeover_reason: s.last_takeover.as_ref().map(|t| t.1.clone()),
                peer_link_up: s.peer_link_up,
                witness_link_up: s.witness_link_up,
                active_node: s.active_node.clone(),
                replica: {
                    let v = agent.replica_view.borrow();
                    status::ReplicaStatus {
                        state: v.state.clone(),
                        lag_entries: v.lag_entries,
                        lag_bytes: v.lag_bytes,
                        lag_ms: v.lag_ms,
                        position: format!("{}.{}", v.position.term, v.position.index),
                    }
                },
            }
        }),
        pid: Some(std::process::id()),
    }
}

#[cfg(test)]
mod tests;
