//! A QoS 1 subscriber for what the NOC receives: `hallmonitor tail` and the demo's NOC view.
//!
//! It owns one rumqttc client built by `connection` (URL, TLS, credentials), subscribes to
//! its filters again on every ConnAck (a clean session forgets them), and reconnects after
//! any error with the shared backoff, so a broker restart costs a gap, never the subscriber.
//! The caller sees only what matters to it: subscribed, a message, or a retry with its cause.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, QoS};

use crate::config::{BrokerUrl, MqttSettings};
use crate::publish::connection::{PublishError, broker_name, classify, client_options};

/// Largest message accepted: a resolved incident carries its whole chronicle.
const MAX_INCOMING_BYTES: usize = 4 << 20;
/// Only SUBSCRIBE and DISCONNECT go out.
const MAX_OUTGOING_BYTES: usize = 64 << 10;
/// First reconnect delay; doubles up to `MqttSettings::reconnect_max`.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// What `Subscriber::next` saw.
#[derive(Debug)]
pub enum Received {
    /// The broker acknowledged a subscription (after each connect, once per filter).
    Subscribed,
    /// A message on one of the filters.
    Message { topic: String, payload: Vec<u8> },
    /// The connection failed or was lost; the next `next` waits `delay`, then reconnects.
    Retrying { error: PublishError, delay: Duration },
}

/// Settings for a subscriber to `url`: 30 s keep-alive, reconnects capped at 30 s, no
/// credentials or TLS files (set them on the result).
pub fn subscriber_settings(url: &BrokerUrl, client_id: String) -> MqttSettings {
    MqttSettings {
        host: url.host.clone(),
        port: url.port,
        tls: url.tls,
        client_id,
        topic_prefix: String::new(),
        username: None,
        password: None,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
        keep_alive: Duration::from_secs(30),
        max_inflight: 16,
        reconnect_max: Duration::from_secs(30),
    }
}

pub struct Subscriber {
    settings: MqttSettings,
    client: AsyncClient,
    events: EventLoop,
    filters: Vec<String>,
    connected: bool,
    /// Consecutive failures, for the backoff; reset by a ConnAck.
    failures: u32,
    /// The wait owed before the next reconnect attempt.
    pending: Option<Duration>,
}

impl Subscriber {
    /// A subscriber to `filters` (QoS 1). Fails only on local setup (unreadable CA file);
    /// the connection is made by `next`.
    pub fn new(settings: &MqttSettings, filters: Vec<String>) -> Result<Subscriber, PublishError> {
        let opts = client_options(settings, MAX_INCOMING_BYTES, MAX_OUTGOING_BYTES)?;
        let (client, events) = AsyncClient::new(opts, 16 + filters.len());
        Ok(Subscriber {
            settings: settings.clone(),
            client,
            events,
            filters,
            connected: false,
            failures: 0,
            pending: None,
        })
    }

    /// `mqtt[s]://host:port`.
    pub fn broker(&self) -> String {
        broker_name(&self.settings)
    }

    /// The next thing worth telling the caller. Cancel-safe only between calls: dropping it
    /// mid-way is for giving up (Ctrl-C, shutdown), not for polling something else.
    pub async fn next(&mut self) -> Received {
        if let Some(delay) = self.pending.take() {
            tokio::time::sleep(delay).await;
        }
        loop {
            match self.events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    self.connected = true;
                    self.failures = 0;
                    for f in &self.filters {
                        // The request channel holds every filter (sized for them), so this
                        // fails only if the event loop is gone, which `poll` then reports.
                        if let Err(e) = self.client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                            tracing::warn!(broker = %self.broker(), filter = %f, error = %e, "MQTT subscribe failed");
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => return Received::Subscribed,
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    return Received::Message { topic: p.topic, payload: p.payload.to_vec() };
                }
                Ok(_) => {}
                Err(e) => {
                    let error = classify(&self.settings, &e, self.connected);
                    self.connected = false;
                    let delay = crate::backoff::delay(FIRST_RETRY, self.settings.reconnect_max, self.failures);
                    self.failures = self.failures.saturating_add(1);
                    self.pending = Some(delay);
                    return Received::Retrying { error, delay };
                }
            }
        }
    }

    /// Queues a DISCONNECT (best effort: the process is about to stop anyway).
    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}
