//! The publishing task: one tokio task owns the rumqttc `EventLoop` and `AsyncClient`, and
//! drains the outbox in order with a bounded in-flight window.
//!
//! rumqttc hands out no per-message ack token, so the task keeps a FIFO of the outbox `seq`s
//! it handed over with `try_publish`; each `Outgoing::Publish(pkid)` event pops the next one
//! (its packet id is known from then on) and `Incoming::PubAck(pkid)` acks exactly that `seq`.
//! On every ConnAck the task forgets everything rumqttc still holds (pending requests, stale
//! events) and resends from the oldest un-acknowledged outbox entry: the outbox, not rumqttc,
//! is the source of truth. The poll future is never cancelled (it is kept across wake-ups),
//! so rumqttc's state is never torn mid-write.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ClientError, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::MqttSettings;
use crate::model::{SiteId, Timestamp};
use crate::outbox::StoredMessage;
use crate::publish::connection::{PublishError, broker_name, classify, mqtt_options};
use crate::publish::message::site_topic;
use crate::publish::status::{self, PairIdentity};
use crate::store::{DropReason, Store};

/// Default largest MQTT packet, in and out (rumqttc's default is 10 KiB).
pub const DEFAULT_MAX_PACKET_BYTES: usize = 1024 * 1024;
/// A connection that lived this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// After the drain deadline: how long to wait for the offline status and DISCONNECT.
const FAREWELL_GRACE: Duration = Duration::from_secs(2);

/// Publisher options beyond `MqttSettings`.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub site: SiteId,
    pub mqtt: MqttSettings,
    /// Largest MQTT packet in and out; larger outbox entries are discarded and reported.
    pub max_packet_bytes: usize,
    /// First reconnect delay; doubles per failure up to `mqtt.reconnect_max`, with jitter.
    pub backoff_initial: Duration,
    /// In a gateway pair: who this is. Its status messages then carry `node` and `term`, and
    /// it watches the status topic to republish its `online` over a stale status.
    pub pair: Option<PairIdentity>,
}

impl PublisherOptions {
    pub fn new(mqtt: &MqttSettings, site: &SiteId) -> Self {
        Self {
            site: site.clone(),
            mqtt: mqtt.clone(),
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            backoff_initial: Duration::from_millis(500),
            pair: None,
        }
    }
}

/// What the agent shows in health and `status`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PublisherStatus {
    /// `mqtt[s]://host:port`.
    pub broker: String,
    pub connected: bool,
    pub connected_since: Option<Timestamp>,
    /// When the broker last acknowledged an outbox message.
    pub last_puback: Option<Timestamp>,
    pub last_acked_seq: Option<u64>,
    /// The last connection error, as logged.
    pub last_error: Option<String>,
    /// Outbox messages handed to MQTT and not yet acknowledged.
    pub in_flight: usize,
    /// Connection attempts since start (successful or not).
    pub connect_attempts: u64,
    /// Successful connections since start.
    pub connections: u64,
    /// Outbox messages acknowledged (QoS 1) or written (QoS 0) since start.
    pub acked_total: u64,
    /// The task has ended (after `shutdown`).
    pub stopped: bool,
}

/// Pokes the publisher after a commit so it drains at once. Cheap to clone.
#[derive(Clone)]
pub struct PublishWaker(Arc<Notify>);

impl PublishWaker {
    /// New durable messages are in the outbox.
    pub fn poke(&self) {
        self.0.notify_one();
    }
}

/// The running publisher. Dropping it aborts the task (like a crash: the broker then
/// publishes the will); call `shutdown` for a clean stop.
pub struct Publisher {
    waker: PublishWaker,
    status: watch::Receiver<PublisherStatus>,
    cancel: CancellationToken,
    drain_deadline: Arc<std::sync::Mutex<Farewell>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Publisher {
    /// Starts publishing `store`'s outbox to the broker of `mqtt` (needs a tokio runtime).
    /// Fails only on local setup (unreadable CA or client key); connection problems are
    /// logged, shown in `status()` and retried with backoff.
    pub fn start(mqtt: &MqttSettings, site: &SiteId, store: Store) -> Result<Publisher, PublishError> {
        Self::start_with(PublisherOptions::new(mqtt, site), store)
    }

    /// `start` with explicit options.
    pub fn start_with(opts: PublisherOptions, store: Store) -> Result<Publisher, PublishError> {
        let window = opts.mqtt.max_inflight.max(1);
        let mqtt_opts = mqtt_options(&opts.mqtt, &opts.site, opts.pair.as_ref(), opts.max_packet_bytes, window)?;
        let cap = mqtt_opts.request_channel_capacity();
        let (client, eventloop) = AsyncClient::new(mqtt_opts, cap);
        let notify = Arc::new(Notify::new());
        let broker = broker_name(&opts.mqtt);
        let (status_tx, status_rx) = watch::channel(PublisherStatus { broker: broker.clone(), ..Default::default() });
        let cancel = CancellationToken::new();
        let drain_deadline =
            Arc::new(std::sync::Mutex::new(Farewell { deadline: Duration::from_secs(5), offline: true }));
        let status_topic = format!("{}/status", site_topic(&opts.mqtt.topic_prefix, &opts.site));
        let task = Task {
            store,
            client,
            notify: notify.clone(),
            cancel: cancel.clone(),
            drain_deadline: drain_deadline.clone(),
            status_tx,
            status_topic,
            broker,
            window: window as usize,
            started_at: Timestamp::now(),
            opts,
            connected: false,
            connected_at: None,
            failures: 0,
            handed: VecDeque::new(),
            inflight: HashMap::new(),
            cursor: None,
            last_logged_error: None,
            phase: Phase::Running,
            offline_acked: false,
            subscribe_refused_logged: false,
        };
        let handle = tokio::spawn(task.run(eventloop));
        Ok(Publisher { waker: PublishWaker(notify), status: status_rx, cancel, drain_deadline, task: Some(handle) })
    }

    /// Tells the publisher new messages are durable in the outbox.
    pub fn poke(&self) {
        self.waker.poke();
    }

    /// A handle the agent keeps to poke after each commit.
    pub fn waker(&self) -> PublishWaker {
        self.waker.clone()
    }

    /// Connection state, last PUBACK, last error, in-flight count.
    pub fn status(&self) -> watch::Receiver<PublisherStatus> {
        self.status.clone()
    }

    /// Clean stop: keep publishing until the outbox is drained or `deadline` passes, publish
    /// the retained offline status, DISCONNECT. Returns the final status.
    pub async fn shutdown(self, deadline: Duration) -> PublisherStatus {
        self.stop(Farewell { deadline, offline: true }).await
    }

    /// A gateway pair's planned handover: like `shutdown`, but without the offline status (the
    /// site is not going offline: the peer's `online` follows within moments, and a clean
    /// DISCONNECT sends no last will).
    pub async fn hand_over(self, deadline: Duration) -> PublisherStatus {
        self.stop(Farewell { deadline, offline: false }).await
    }

    async fn stop(mut self, farewell: Farewell) -> PublisherStatus {
        if let Ok(mut d) = self.drain_deadline.lock() {
            *d = farewell;
        }
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.status.borrow().clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How a clean stop ends: how long to drain, and whether to publish the offline status.
#[derive(Debug, Clone, Copy)]
struct Farewell {
    deadline: Duration,
    offline: bool,
}

/// One message handed to rumqttc and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Handed {
    Outbox { seq: u64, qos: u8 },
    Birth,
    Offline,
}

impl Handed {
    fn qos(self) -> u8 {
        match self {
            Handed::Outbox { qos, .. } => qos,
            Handed::Birth | Handed::Offline => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// Shutdown requested: drain until this instant.
    Draining(Instant),
    /// Offline status sent; waiting for its PUBACK until this instant.
    Farewell(Instant),
    /// DISCONNECT sent; waiting for it to be written until this instant.
    Disconnecting(Instant),
}

struct Task {
    store: Store,
    client: AsyncClient,
    notify: Arc<Notify>,
    cancel: CancellationToken,
    drain_deadline: Arc<std::sync::Mutex<Farewell>>,
    status_tx: watch::Sender<PublisherStatus>,
    status_topic: String,
    broker: String,
    window: usize,
    started_at: Timestamp,
    opts: PublisherOptions,
    connected: bool,
    connected_at: Option<Instant>,
    /// Consecutive failed connections (for the backoff).
    failures: u32,
    /// Handed to rumqttc, not yet written (no packet id yet), in order.
    handed: VecDeque<Handed>,
    /// Written with QoS 1, waiting for PUBACK, by packet id.
    inflight: HashMap<u16, Handed>,
    /// The last outbox seq handed over on this connection.
    cursor: Option<u64>,
    last_logged_error: Option<String>,
    phase: Phase,
    offline_acked: bool,
    /// The broker refused the status topic's subscription (pair only); logged once.
    subscribe_refused_logged: bool,
}

type PollFuture<'a> = Pin<Box<dyn Future<Output = Result<Event, ConnectionError>> + Send + 'a>>;

impl Task {
    async fn run(mut self, mut eventloop: EventLoop) {
        info!(broker = %self.broker, client_id = %self.opts.mqtt.client_id, window = self.window, "MQTT publisher started");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if self.cancel.is_cancelled() && self.phase == Phase::Running {
                self.begin_drain();
            }
            if self.finished() {
                break;
            }
            let ev = {
                let mut poll: PollFuture<'_> = Box::pin(eventloop.poll());
                loop {
                    let deadline = self.phase_deadline();
                    tokio::select! {
                        ev = &mut poll => break Some(ev),
                        _ = self.notify.notified() => self.fill(),
                        _ = tick.tick() => self.fill(),
                        _ = self.cancel.cancelled(), if self.phase == Phase::Running => {
                            self.begin_drain();
                            if !self.connected {
                                break None;
                            }
                            self.fill();
                        }
                        _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                            self.deadline_passed();
                            if self.finished() {
                                break None;
                            }
                        }
                    }
                }
            };
            let Some(ev) = ev else { break };
            self.handle(ev, &mut eventloop).await;
            self.publish_status();
        }
        self.connected = false;
        self.status_tx.send_modify(|s| {
            s.connected = false;
            s.stopped = true;
            s.in_flight = 0;
        });
        info!(broker = %self.broker, "MQTT publisher stopped");
    }

    fn finished(&self) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Draining(_) | Phase::Farewell(_) | Phase::Disconnecting(_) => !self.connected,
        }
    }

    fn phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining(t) | Phase::Farewell(t) | Phase::Disconnecting(t) => Some(t),
        }
    }

    fn begin_drain(&mut self) {
        let d = self.drain_deadline.lock().map(|d| d.deadline).unwrap_or(Duration::from_secs(5));
        info!(broker = %self.broker, deadline = ?d, "MQTT publisher draining the outbox before shutdown");
        self.phase = Phase::Draining(Instant::now() + d);
        if !self.connected {
            // Nothing can be drained; the will (published when the link dropped) stands.
            self.phase = Phase::Farewell(Instant::now());
        }
    }

    fn deadline_passed(&mut self) {
        match self.phase {
            Phase::Running => {}
            Phase::Draining(_) => {
                warn!(broker = %self.broker, in_flight = self.outstanding(), "MQTT drain deadline reached; the rest stays in the outbox");
                self.say_goodbye();
            }
            Phase::Farewell(_) => self.disconnect(),
            // DISCONNECT not written in time: give up (the broker publishes the will).
            Phase::Disconnecting(_) => self.connected = false,
        }
    }

    /// Publishes the retained offline status; the DISCONNECT follows its PUBACK. A handover
    /// says no offline: it disconnects at once.
    fn say_goodbye(&mut self) {
        if !self.drain_deadline.lock().map(|d| d.offline).unwrap_or(true) {
            self.disconnect();
            return;
        }
        let payload = status::with_pair(
            status::offline_shutdown(&self.opts.site, &self.opts.mqtt.client_id, Timestamp::now()),
            self.opts.pair.as_ref(),
        );
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        match self.client.try_publish(self.status_topic.clone(), QoS::AtLeastOnce, true, bytes) {
            Ok(()) => {
                self.handed.push_back(Handed::Offline);
                self.phase = Phase::Farewell(Instant::now() + FAREWELL_GRACE);
            }
            Err(e) => {
                warn!(broker = %self.broker, error = %e, "could not queue the offline status");
                self.disconnect();
            }
        }
    }

    fn disconnect(&mut self) {
        if let Err(e) = self.client.try_disconnect() {
            debug!(error = %e, "DISCONNECT not queued");
            self.connected = false;
        }
        self.phase = Phase::Disconnecting(Instant::now() + FAREWELL_GRACE);
    }

    fn outstanding(&self) -> usize {
        self.handed.len() + self.inflight.len()
    }

    /// Hands outbox messages to rumqttc until the window is full.
    fn fill(&mut self) {
        if !self.connected || !matches!(self.phase, Phase::Running | Phase::Draining(_)) {
            return;
        }
        loop {
            let room = self.window.saturating_sub(self.outstanding());
            if room == 0 {
                return;
            }
            let batch = match self.store.peek_from(self.cursor, room) {
                Ok(b) => b,
                Err(e) => {
                    error!(broker = %self.broker, error = %e, "cannot read the outbox");
                    return;
                }
            };
            if batch.is_empty() {
                if matches!(self.phase, Phase::Draining(_)) && self.outstanding() == 0 {
                    info!(broker = %self.broker, "outbox drained");
                    self.say_goodbye();
                }
                return;
            }
            for m in batch {
                if !self.hand_over(m) {
                    return;
                }
            }
        }
    }

    /// Returns false when rumqttc's request channel is full (try again on the next event).
    fn hand_over(&mut self, m: StoredMessage) -> bool {
        let seq = m.seq;
        if let Some(reason) = self.unpublishable(&m) {
            error!(broker = %self.broker, seq, topic = %m.topic, bytes = m.payload.len(), max = self.opts.max_packet_bytes,
                reason = ?reason, "outbox message can never be published; discarding it");
            if let Err(e) = self.store.discard(seq, reason) {
                error!(error = %e, seq, "cannot discard outbox message");
            }
            self.cursor = Some(seq);
            return true;
        }
        let qos = if m.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        match self.client.try_publish(m.topic, qos, m.retain, m.payload) {
            Ok(()) => {
                self.handed.push_back(Handed::Outbox { seq, qos: m.qos.min(1) });
                self.cursor = Some(seq);
                true
            }
            Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => false,
        }
    }

    fn unpublishable(&self, m: &StoredMessage) -> Option<DropReason> {
        // rumqttc's own arithmetic (Publish::size): fixed header + remaining length.
        let len = 2 + m.topic.len() + m.payload.len() + if m.qos > 0 { 2 } else { 0 };
        let remaining_len_len = match len {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        };
        if 1 + remaining_len_len + len > self.opts.max_packet_bytes {
            return Some(DropReason::Oversize);
        }
        if m.topic.is_empty() || m.topic.contains(['+', '#']) {
            return Some(DropReason::Invalid);
        }
        None
    }

    async fn handle(&mut self, ev: Result<Event, ConnectionError>, eventloop: &mut EventLoop) {
        match ev {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                // Whatever rumqttc kept from the last connection is stale: the outbox is the
                // truth, and resending from its oldest entry keeps the order.
                eventloop.pending.clear();
                eventloop.state.events.clear();
                self.handed.clear();
                self.inflight.clear();
                self.cursor = None;
                self.connected = true;
                self.connected_at = Some(Instant::now());
                self.last_logged_error = None;
                let depth = self.store.stats().map(|s| s.depth).unwrap_or(0);
                info!(broker = %self.broker, session_present = ack.session_present, outbox_depth = depth, "MQTT connected");
                self.status_tx.send_modify(|s| {
                    s.connected = true;
                    s.connected_since = Some(Timestamp::now());
                    s.connections += 1;
                    s.connect_attempts += 1;
                    s.last_error = None;
                });
                if self.opts.pair.is_some()
                    && let Err(e) = self.client.try_subscribe(self.status_topic.clone(), QoS::AtMostOnce)
                {
                    warn!(broker = %self.broker, error = %e, topic = %self.status_topic, "cannot subscribe to the status topic");
                }
                self.publish_birth();
                self.fill();
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                // Only the status topic is subscribed (in a pair): a stale status over ours.
                if let Some(me) = &self.opts.pair
                    && p.topic == self.status_topic.as_str()
                    && self.phase == Phase::Running
                    && let Ok(seen) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                    && status::is_stale_for(&seen, me)
                {
                    info!(broker = %self.broker, seen_node = seen["node"].as_str().unwrap_or("-"), seen_state = seen["state"].as_str().unwrap_or("-"),
                        "a stale status landed on the status topic (a late last will?); republishing online");
                    self.publish_birth();
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    && !self.subscribe_refused_logged
                {
                    self.subscribe_refused_logged = true;
                    warn!(broker = %self.broker, topic = %self.status_topic,
                        "the broker refused this client's subscription to its status topic (ACL?): a late last will of the other gateway would stay retained");
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => match self.handed.pop_front() {
                Some(h) if h.qos() == 0 => {
                    if let Handed::Outbox { seq, .. } = h {
                        self.acked(seq);
                    }
                }
                Some(h) => {
                    self.inflight.insert(pkid, h);
                }
                None => warn!(pkid, "MQTT publish written that was not handed over (ignored)"),
            },
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                match self.inflight.remove(&ack.pkid) {
                    Some(Handed::Outbox { seq, .. }) => self.acked(seq),
                    Some(Handed::Offline) => {
                        self.offline_acked = true;
                        if matches!(self.phase, Phase::Farewell(_)) {
                            self.disconnect();
                        }
                    }
                    Some(Handed::Birth) => debug!("birth status acknowledged"),
                    None => debug!(pkid = ack.pkid, "PUBACK for no message in flight (ignored)"),
                }
                self.fill();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                info!(broker = %self.broker, offline_status_acked = self.offline_acked, "MQTT disconnected cleanly");
                self.connected = false;
                self.phase = Phase::Farewell(Instant::now());
            }
            Ok(_) => {}
            Err(e) => self.connection_failed(e).await,
        }
    }

    /// The retained `online` status (with the pair's node and term).
    fn publish_birth(&mut self) {
        let birth = status::with_pair(
            status::online(&self.opts.site, &self.opts.mqtt.client_id, self.started_at, Timestamp::now()),
            self.opts.pair.as_ref(),
        );
        let bytes = serde_json::to_vec(&birth).unwrap_or_default();
        if self.client.try_publish(self.status_topic.clone(), QoS::AtLeastOnce, true, bytes).is_ok() {
            self.handed.push_back(Handed::Birth);
        }
    }

    fn acked(&mut self, seq: u64) {
        if let Err(e) = self.store.ack(seq) {
            // The message stays and is resent later: a duplicate with the same msg_id.
            error!(broker = %self.broker, seq, error = %e, "cannot delete an acknowledged message from the outbox");
        }
        self.status_tx.send_modify(|s| {
            s.last_puback = Some(Timestamp::now());
            s.last_acked_seq = Some(seq);
            s.acked_total += 1;
        });
    }

    async fn connection_failed(&mut self, e: ConnectionError) {
        let was_connected = self.connected;
        self.connected = false;
        let in_flight = self.outstanding();
        self.handed.clear();
        self.inflight.clear();
        self.cursor = None;
        if matches!(self.phase, Phase::Disconnecting(_) | Phase::Farewell(_)) {
            // The link went away while saying goodbye: done.
            return;
        }
        let err = classify(&self.opts.mqtt, &e, was_connected);
        let text = err.to_string();
        if self.connected_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
            self.failures = 0;
        }
        self.connected_at = None;
        self.failures = self.failures.saturating_add(1);
        let delay = crate::backoff::delay(
            self.opts.backoff_initial,
            self.opts.mqtt.reconnect_max,
            self.failures.saturating_sub(1),
        );
        // One line per distinct cause; repeats of the same cause only at debug level.
        if self.last_logged_error.as_deref() != Some(text.as_str()) {
            if was_connected {
                warn!(broker = %self.broker, error = %text, in_flight, retry_in = %crate::model::humane_duration(delay), "MQTT connection lost");
            } else {
                error!(broker = %self.broker, error = %text, retry_in = %crate::model::humane_duration(delay), "MQTT connection failed");
            }
            self.last_logged_error = Some(text.clone());
        } else {
            debug!(broker = %self.broker, error = %text, attempt = self.failures, retry_in = %crate::model::humane_duration(delay), "MQTT connection failed again");
        }
        self.status_tx.send_modify(|s| {
            s.connected = false;
            s.connected_since = None;
            s.in_flight = 0;
            s.last_error = Some(text);
            if !was_connected {
                s.connect_attempts += 1;
            }
        });
        if matches!(self.phase, Phase::Draining(_)) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    fn publish_status(&self) {
        let n = self.inflight.values().filter(|h| matches!(h, Handed::Outbox { .. })).count()
            + self.handed.iter().filter(|h| matches!(h, Handed::Outbox { .. })).count();
        self.status_tx.send_if_modified(|s| {
            if s.in_flight != n {
                s.in_flight = n;
                true
            } else {
                false
            }
        });
    }
}
