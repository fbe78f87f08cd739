//! The one place that knows how to reach a broker (whose `mqtt[s]://host[:port]` URL
//! `config::BrokerUrl` parses, for the config and `tail` alike): the rumqttc options (TLS with rustls + ring, credentials, packet sizes, the publisher's will)
//! and rumqttc's connection errors turned into `PublishError`s a technician can act on. The
//! publisher and the `Subscriber` (`tail`, the demo's NOC view) both build their clients here;
//! their reconnects wait `crate::backoff::delay`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::MqttSettings;
use crate::model::SiteId;
use crate::publish::status;
use crate::store::StoreError;

/// Where Debian keeps the system CA bundle, used for `mqtts://` without `ca_file`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why publishing failed. Each names the broker (`mqtt[s]://host:port`).
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("MQTT broker {broker}: cannot read {what} {path}: {source}")]
    ReadFile { broker: String, what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("MQTT broker {broker}: TLS setup: {detail}")]
    TlsSetup { broker: String, detail: String },
    #[error("MQTT broker {broker}: TLS handshake failed: {detail}{hint}")]
    Tls { broker: String, detail: String, hint: String },
    #[error("MQTT broker {broker}: bad username or password (user {user:?})")]
    BadCredentials { broker: String, user: Option<String> },
    #[error(
        "MQTT broker {broker}: not authorized (check the username/password of user {user:?} and the broker's ACL for client id {client_id:?})"
    )]
    NotAuthorized { broker: String, client_id: String, user: Option<String> },
    #[error("MQTT broker {broker}: refused the connection ({code})")]
    Refused { broker: String, code: String },
    #[error("MQTT broker {broker}: unreachable: {detail}")]
    Unreachable { broker: String, detail: String },
    #[error("MQTT broker {broker}: connection timed out")]
    Timeout { broker: String },
    #[error("MQTT broker {broker}: connection lost: {detail}")]
    Lost { broker: String, detail: String },
    #[error("MQTT broker {broker}: outbox: {source}")]
    Store { broker: String, source: StoreError },
}

/// `mqtt://host:port` or `mqtts://host:port`.
pub fn broker_name(s: &MqttSettings) -> String {
    s.broker().to_string()
}

/// What every client of this module sets: client id, keep-alive, packet sizes in and out,
/// credentials and TLS.
pub(crate) fn client_options(
    s: &MqttSettings,
    max_incoming_bytes: usize,
    max_outgoing_bytes: usize,
) -> Result<MqttOptions, PublishError> {
    let broker = broker_name(s);
    let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
    // rumqttc panics below 1 s; config validation already refuses that, clamp anyway.
    o.set_keep_alive(s.keep_alive.max(Duration::from_secs(1)));
    o.set_max_packet_size(max_incoming_bytes, max_outgoing_bytes);
    if let Some(user) = &s.username {
        let pass = s.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
        o.set_credentials(user.clone(), pass);
    }
    if s.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(s, &broker)?))));
    }
    Ok(o)
}

/// rumqttc options for the publisher: a clean session (we subscribe to nothing and resend
/// from the outbox ourselves), the retained will on `P/S/status`, credentials and TLS.
pub fn mqtt_options(
    s: &MqttSettings,
    site: &SiteId,
    pair: Option<&status::PairIdentity>,
    max_packet_bytes: usize,
    window: u16,
) -> Result<MqttOptions, PublishError> {
    let mut o = client_options(s, max_packet_bytes, max_packet_bytes)?;
    o.set_clean_session(true);
    o.set_inflight(window.max(1));
    o.set_request_channel_capacity(window as usize + 16);
    let status_topic = format!("{}/status", crate::publish::message::site_topic(&s.topic_prefix, site));
    let will = serde_json::to_vec(&status::with_pair(status::will(site, &s.client_id), pair)).unwrap_or_default();
    o.set_last_will(LastWill::new(status_topic, will, QoS::AtLeastOnce, true));
    Ok(o)
}

fn read(broker: &str, what: &'static str, path: &Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|source| PublishError::ReadFile {
        broker: broker.to_owned(),
        what,
        path: path.to_owned(),
        source,
    })
}

/// rustls client config with the ring provider (never aws-lc: two providers in one build
/// panic at the first handshake). PEM is read with rustls-pki-types' `PemObject`.
fn tls_config(s: &MqttSettings, broker: &str) -> Result<rustls::ClientConfig, PublishError> {
    let setup = |detail: String| PublishError::TlsSetup { broker: broker.to_owned(), detail };
    let ca_path = s.ca_file.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(broker, "CA file", &ca_path)? {
        roots.add(cert).map_err(|e| setup(format!("CA file {}: {e}", ca_path.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots);
    match (&s.client_cert_file, &s.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let certs = certificates(broker, "client certificate", cert_path)?;
            let pem = read(broker, "client key", key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
                pem::Error::NoItemsFound => {
                    setup(format!("client key {} holds no PEM private key", key_path.display()))
                }
                e => setup(format!("client key {}: {e}", key_path.display())),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| setup(format!("client certificate/key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(setup("client_cert_file and client_key_file go together".into())),
    }
}

/// Every PEM certificate in `path`; none at all is an error naming the file.
fn certificates(broker: &str, what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PublishError> {
    let setup = |detail: String| PublishError::TlsSetup { broker: broker.to_owned(), detail };
    let pem = read(broker, what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setup(format!("{what} {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Classifies a rumqttc error. `was_connected` tells a lost connection from a failed attempt.
pub fn classify(s: &MqttSettings, e: &ConnectionError, was_connected: bool) -> PublishError {
    let broker = broker_name(s);
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => PublishError::BadCredentials { broker, user: s.username.clone() },
            ConnectReturnCode::NotAuthorized => {
                PublishError::NotAuthorized { broker, client_id: s.client_id.clone(), user: s.username.clone() }
            }
            other => PublishError::Refused { broker, code: format!("{other:?}") },
        },
        ConnectionError::Tls(t) => {
            let detail = t.to_string();
            let hint = if detail.contains("UnknownIssuer") || detail.contains("certificate") {
                match &s.ca_file {
                    Some(ca) => format!(" (is {} the CA that signed the broker's certificate?)", ca.display()),
                    None => format!(" (no ca_file set; the system bundle {SYSTEM_CA_BUNDLE} was used)"),
                }
            } else {
                String::new()
            };
            PublishError::Tls { broker, detail, hint }
        }
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => PublishError::Timeout { broker },
        ConnectionError::Io(io) if !was_connected => PublishError::Unreachable { broker, detail: io.to_string() },
        other if was_connected => PublishError::Lost { broker, detail: other.to_string() },
        other => PublishError::Unreachable { broker, detail: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerUrl;

    fn settings(tls: bool) -> MqttSettings {
        let url = BrokerUrl { tls, host: "127.0.0.1".into(), port: 8883 };
        crate::publish::subscriber::subscriber_settings(&url, "t".into())
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let mut s = settings(true);
        s.ca_file = Some(ca.clone());
        let e = tls_config(&s, "mqtts://127.0.0.1:8883").unwrap_err().to_string();
        assert!(e.contains(&format!("CA file {} holds no PEM certificate", ca.display())), "{e}");
        s.ca_file = Some(dir.path().join("missing.pem"));
        let e = tls_config(&s, "mqtts://127.0.0.1:8883").unwrap_err().to_string();
        assert!(e.contains("cannot read CA file") && e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn a_truncated_certificate_is_an_error_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let mut s = settings(true);
        s.ca_file = Some(ca);
        let e = tls_config(&s, "b").unwrap_err().to_string();
        assert!(e.contains("TLS setup") && e.contains("ca.pem"), "{e}");
    }
}
