//! The status snapshot: what the daemon tells a technician standing at the gateway.
//!
//! The daemon writes a `StatusSnapshot` every few seconds to `<runtime dir>/status.json`,
//! where the runtime dir is `$RUNTIME_DIRECTORY` when systemd sets it, else the store path.
//! `hallmonitor status` reads it. The file is replaced atomically (temporary file in the same
//! directory, fsync, rename), so a reader never sees half a snapshot, and reading it never
//! touches the sled store the daemon holds locked.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DeviceSpec;
use crate::engine::{ChronicleEntry, IncidentEvent, NoiseCounters, PatternEvent};
use crate::model::{Category, DeviceId, RackId, Severity, SiteId, Timestamp, ZoneId};
use crate::sources::ProtocolCounts;

/// Name of the snapshot file inside the runtime directory.
pub const FILE_NAME: &str = "status.json";

/// Everything `hallmonitor status` shows, as of `written_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub site: SiteId,
    /// When the daemon wrote this snapshot; an old one means the daemon is not running.
    pub written_at: Timestamp,
    /// `CARGO_PKG_VERSION` of the daemon that wrote it.
    pub agent_version: String,
    pub started_at: Timestamp,
    pub config_path: PathBuf,
    pub devices: Vec<DeviceStatus>,
    pub incidents: Vec<IncidentStatus>,
    pub patterns: Vec<PatternStatus>,
    pub outbox: OutboxStatus,
    pub broker: BrokerStatus,
    pub polls: PollCounters,
    pub noise: NoiseCounters,
}

/// One configured device as the poller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub id: DeviceId,
    /// `modbus` or `snmp`.
    pub protocol: String,
    /// Where it is polled: `10.0.0.5:502 unit 3`, `/dev/ttyS1 unit 7`, `10.0.0.9:161`.
    pub address: String,
    pub zone: ZoneId,
    #[serde(default)]
    pub rack: Option<RackId>,
    /// False once `down_after` consecutive polls have failed.
    pub up: bool,
    #[serde(default)]
    pub last_ok: Option<Timestamp>,
    /// Why the last failed poll failed (kept after recovery, for the record).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u32,
}

impl DeviceStatus {
    /// A device not yet polled: up, no history.
    pub fn from_spec(d: &DeviceSpec) -> Self {
        Self {
            id: d.id.clone(),
            protocol: d.transport.protocol().to_owned(),
            address: d.transport.describe(),
            zone: d.zone.clone(),
            rack: d.rack.clone(),
            up: true,
            last_ok: None,
            last_error: None,
            consecutive_failures: 0,
        }
    }
}

/// An open incident, condensed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentStatus {
    pub incident_id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub severity: Severity,
    pub opened_at: Timestamp,
    pub racks: Vec<RackId>,
    /// Members currently in breach.
    pub breaches: usize,
    /// The newest line of its chronicle.
    #[serde(default)]
    pub last_chronicle: Option<ChronicleEntry>,
}

impl IncidentStatus {
    /// Condenses an incident as the engine reports it (`Engine::open_incidents`).
    pub fn from_event(e: &IncidentEvent) -> Self {
        Self {
            incident_id: e.incident_id.clone(),
            zone: e.zone.clone(),
            category: e.category,
            severity: e.severity,
            opened_at: e.opened_at,
            racks: e.racks.clone(),
            breaches: e.breaches.iter().filter(|b| b.cleared_at.is_none()).count(),
            last_chronicle: e.chronicle.as_ref().and_then(|c| c.last().cloned()),
        }
    }
}

/// An active pattern signal, condensed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternStatus {
    pub pattern_id: String,
    pub zone: ZoneId,
    pub category: Category,
    pub occurrences: u32,
    /// The rolling window, humane (e.g. "30d").
    pub window: String,
    #[serde(default)]
    pub time_of_day: Option<String>,
    pub summary: String,
}

impl PatternStatus {
    /// Condenses a pattern as the engine reports it (`Engine::active_patterns`).
    pub fn from_event(e: &PatternEvent) -> Self {
        Self {
            pattern_id: e.pattern_id.clone(),
            zone: e.zone.clone(),
            category: e.category,
            occurrences: e.occurrences,
            window: e.window.clone(),
            time_of_day: e.time_of_day.clone(),
            summary: e.summary.clone(),
        }
    }
}

/// The store-and-forward queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Messages waiting for a PUBACK.
    pub depth: u64,
    pub bytes: u64,
    /// Age of the oldest un-acknowledged message, seconds; `None` when empty.
    #[serde(default)]
    pub oldest_unacked_age_s: Option<u64>,
    /// Messages shed at `max_bytes` since start.
    pub dropped: u64,
}

/// The MQTT connection to the NOC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerStatus {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    pub connected: bool,
    /// Last PUBACK received.
    #[serde(default)]
    pub last_ack_at: Option<Timestamp>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Poll counters per protocol since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCounters {
    pub modbus: ProtocolCounts,
    pub snmp: ProtocolCounts,
}

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no status snapshot at {path} (is the daemon running, and is this its state dir?)")]
    Missing { path: PathBuf },
    #[error("cannot read status snapshot {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("status snapshot {path} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write status snapshot {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Where the daemon keeps its snapshot: `$RUNTIME_DIRECTORY` (first entry) when systemd set
/// it, else the store path.
pub fn runtime_dir(store_path: &Path) -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(v) if !v.is_empty() => {
            // systemd joins several RuntimeDirectory= entries with ':'.
            let s = v.to_string_lossy();
            PathBuf::from(s.split(':').next().unwrap_or(&s))
        }
        _ => store_path.to_owned(),
    }
}

/// Replaces `dir/status.json` atomically: write a temporary file in `dir`, fsync, rename.
pub fn write_atomic(dir: &Path, snap: &StatusSnapshot) -> Result<(), StatusError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let err = |source| StatusError::Write { path: path.clone(), source };
    // Serializing our own plain data cannot fail; map it to an io error all the same.
    let body = serde_json::to_vec_pretty(snap).map_err(|e| err(std::io::Error::other(e)))?;
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Reads `dir/status.json`.
pub fn read(dir: &Path) -> Result<StatusSnapshot, StatusError> {
    let path = dir.join(FILE_NAME);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StatusError::Missing { path }),
        Err(source) => return Err(StatusError::Read { path, source }),
    };
    serde_json::from_slice(&text).map_err(|source| StatusError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> StatusSnapshot {
        StatusSnapshot {
            site: SiteId::new("fra1"),
            written_at: Timestamp(1_000_000),
            agent_version: "0.1.0".into(),
            started_at: Timestamp(0),
            config_path: "/etc/hallmonitor/hallmonitor.toml".into(),
            devices: vec![DeviceStatus {
                id: DeviceId::new("th-b07"),
                protocol: "modbus".into(),
                address: "127.0.0.1:15020 unit 3".into(),
                zone: ZoneId::new("hall1-b"),
                rack: Some(RackId::new("B07")),
                up: false,
                last_ok: Some(Timestamp(900_000)),
                last_error: Some("timeout after 2s".into()),
                consecutive_failures: 4,
            }],
            incidents: vec![],
            patterns: vec![],
            outbox: OutboxStatus { depth: 3, bytes: 2048, oldest_unacked_age_s: Some(40), dropped: 0 },
            broker: BrokerStatus { url: "mqtt://127.0.0.1:1883".into(), ..Default::default() },
            polls: PollCounters::default(),
            noise: NoiseCounters::default(),
        }
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot();
        write_atomic(dir.path(), &snap).unwrap();
        let mut second = snap.clone();
        second.outbox.depth = 7;
        write_atomic(dir.path(), &second).unwrap();
        assert_eq!(read(dir.path()).unwrap(), second);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn missing_and_garbled_snapshots_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, StatusError::Missing { .. }));
        assert!(e.to_string().contains("status.json"), "{e}");
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(matches!(read(dir.path()).unwrap_err(), StatusError::Parse { .. }));
    }

    #[test]
    fn write_into_a_missing_directory_fails_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(&dir.path().join("nope"), &snapshot()).unwrap_err();
        assert!(e.to_string().contains("nope/status.json"), "{e}");
    }
}
