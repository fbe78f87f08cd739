//! Publishing to the NOC over MQTT. Only this module speaks MQTT.
//!
//! Invariants:
//! - **Nothing leaves the outbox before PUBACK**: an outbox entry is deleted only when the
//!   broker acknowledged that exact message (QoS 1; every message the agent makes), or once
//!   it was written (a QoS 0 entry left by a version that published health at QoS 0).
//! - Messages go out in outbox (`seq`) order through one connection with a bounded in-flight
//!   window; after any reconnect, and at start, publishing resumes from the oldest
//!   un-acknowledged entry, so the NOC sees every `seq`, in order, duplicates only with an
//!   identical `msg_id`.
//! - Only durable entries are published (see `store`), so a `seq` the NOC has seen is never
//!   reassigned after a crash.
//! - Reconnects back off exponentially with jitter up to `reconnect_max`; a connection error
//!   is one log line naming the broker and the cause, never a tight loop or a panic.
//! - The retained `P/S/status` says `online` after each connect; the broker publishes the
//!   `offline` will on an abrupt drop, and a clean shutdown publishes `offline` itself. In a
//!   gateway pair each status names the node and term, and the publisher, subscribed to its
//!   status topic, republishes `online` over a stale one (another gateway's late will).
//!
//! `message` maps engine events to topics and payloads; `connection` is the one place that
//! parses broker URLs, builds rumqttc options (TLS via rustls + ring, credentials) and
//! classifies errors; `publisher` is the task; `subscriber` is the QoS 1 client of `tail` and
//! the demo's NOC view. Nothing outside this module uses rumqttc (but the embedded broker).

pub mod connection;
pub mod health;
pub mod message;
pub mod publisher;
pub mod status;
pub mod subscriber;

pub use crate::config::BrokerUrl;
pub use connection::{PublishError, broker_name};
pub use health::{DeviceCounts, HaHealth, HealthBody, OutboxHealth, PollCounts, ReplicaHealth};
pub use publisher::{DEFAULT_MAX_PACKET_BYTES, PublishWaker, Publisher, PublisherOptions, PublisherStatus};
