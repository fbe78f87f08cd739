//! MQTT settings for a broker on loopback.

use std::time::Duration;

use hallmonitor::config::MqttSettings;

use super::outbox::PREFIX;

/// Plain MQTT to 127.0.0.1:`port`, no credentials, a 5 s keep-alive, 100 messages in flight and
/// reconnects at most 2 s apart; tests change what they need with `..settings(..)`.
pub fn settings(port: u16, client_id: &str) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        tls: false,
        client_id: client_id.into(),
        topic_prefix: PREFIX.into(),
        username: None,
        password: None,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
        keep_alive: Duration::from_secs(5),
        max_inflight: 100,
        reconnect_max: Duration::from_secs(2),
    }
}
