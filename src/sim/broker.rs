//! An embedded MQTT broker (rumqttd) for `demo` and self-contained tests.
//!
//! Behind the `embedded-broker` feature so that gateway builds leave its ~200 crates out.
//! rumqttd has no stop API and cannot report the port it bound, so we pick a free loopback
//! port first (bind `127.0.0.1:0`, note the port, release it), start the broker on it in a
//! dedicated thread, and wait until it accepts connections. The broker lives until the process
//! ends; dropping `EmbeddedBroker` does not stop it. To simulate an outage, sever the network in
//! front of it (`sim::proxy`) rather than the broker.
//!
//! rumqttd logs every connection at `info` through `tracing`; callers that install a global
//! subscriber should add [`LOG_FILTER`] to it to keep the demo's output readable.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// An `EnvFilter` directive that silences rumqttd below warnings.
pub const LOG_FILTER: &str = "rumqttd=warn";

/// Why the embedded broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: cannot find a free loopback port: {0}")]
    NoPort(std::io::Error),
    #[error("embedded broker: cannot spawn its thread: {0}")]
    Thread(std::io::Error),
    #[error("embedded broker on {addr} did not accept connections within {waited:?}")]
    NotListening { addr: SocketAddr, waited: Duration },
}

/// A running embedded broker (MQTT 3.1.1 on loopback, no TLS, no auth, persistent sessions).
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on a free `127.0.0.1` port and returns once it accepts connections.
    pub fn start() -> Result<EmbeddedBroker, BrokerError> {
        let addr = {
            let probe = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::NoPort)?;
            probe.local_addr().map_err(BrokerError::NoPort)?
        };
        let config = broker_config(addr);
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let mut broker = Broker::new(config);
                // `start` blocks for the broker's lifetime; it only returns on a config error
                // or when every server thread has died.
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(EmbeddedBroker { addr });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BrokerError::NotListening { addr, waited })
    }

    /// Where clients connect (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://127.0.0.1:PORT`, as the agent config and `tail --broker` take it.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

fn broker_config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Resolved incidents carry whole chronicles; leave ample room.
        max_payload_size: 1 << 20,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "hallmonitor-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

    #[tokio::test]
    async fn qos1_publish_reaches_a_subscriber_and_is_acked() {
        let broker = EmbeddedBroker::start().unwrap();
        let addr = broker.addr();
        assert_eq!(addr.ip().to_string(), "127.0.0.1");

        let mut sub_opts = MqttOptions::new("sub", "127.0.0.1", addr.port());
        sub_opts.set_clean_session(false);
        let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 10);
        sub.subscribe("hallmonitor/v1/#", QoS::AtLeastOnce).await.unwrap();
        // Drive the subscriber until the broker confirms the subscription.
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            let mut subscribed = false;
            let mut publisher = None;
            loop {
                match sub_loop.poll().await.unwrap() {
                    Event::Incoming(Incoming::SubAck(_)) if !subscribed => {
                        subscribed = true;
                        publisher = Some(tokio::spawn(publish_once(addr)));
                    }
                    Event::Incoming(Incoming::Publish(p)) => return (p, publisher),
                    _ => {}
                }
            }
        })
        .await
        .expect("subscriber received nothing within 10 s");
        let (p, publisher) = got;
        assert_eq!(p.topic, "hallmonitor/v1/fra1/incidents/hall1-b");
        assert_eq!(&p.payload[..], br#"{"type":"incident"}"#);
        assert_eq!(p.qos, QoS::AtLeastOnce);
        let acked = publisher.unwrap().await.unwrap();
        assert!(acked, "the publisher got its PUBACK");
    }

    #[tokio::test]
    async fn a_persistent_subscriber_gets_what_was_published_while_it_was_away() {
        let broker = EmbeddedBroker::start().unwrap();
        let port = broker.addr().port();
        let opts = || {
            let mut o = MqttOptions::new("noc-sub", "127.0.0.1", port);
            o.set_clean_session(false);
            o
        };
        // Subscribe, then go away.
        {
            let (sub, mut ev) = AsyncClient::new(opts(), 10);
            sub.subscribe("hallmonitor/v1/#", QoS::AtLeastOnce).await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), async {
                while !matches!(ev.poll().await, Ok(Event::Incoming(Incoming::SubAck(_)))) {}
            })
            .await
            .expect("no SUBACK");
            sub.disconnect().await.unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
        }
        assert!(publish_once(broker.addr()).await);
        // Back with the same client id and no new subscription: the session delivers.
        let (_sub, mut ev) = AsyncClient::new(opts(), 10);
        let p = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(c))) => assert!(c.session_present, "session kept"),
                    Ok(Event::Incoming(Incoming::Publish(p))) => return p,
                    Ok(_) => {}
                    Err(e) => panic!("subscriber connection failed: {e}"),
                }
            }
        })
        .await
        .expect("the queued message never arrived");
        assert_eq!(p.topic, "hallmonitor/v1/fra1/incidents/hall1-b");
    }

    /// Publishes one QoS 1 message and waits for its PUBACK.
    async fn publish_once(addr: SocketAddr) -> bool {
        let mut opts = MqttOptions::new("pub", "127.0.0.1", addr.port());
        opts.set_clean_session(false);
        let (client, mut ev) = AsyncClient::new(opts, 10);
        client
            .publish(
                "hallmonitor/v1/fra1/incidents/hall1-b",
                QoS::AtLeastOnce,
                false,
                br#"{"type":"incident"}"#.to_vec(),
            )
            .await
            .unwrap();
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}
