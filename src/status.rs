//! The status snapshot: what the daemon tells a technician standing at the gateway.
//!
//! The daemon writes a `StatusSnapshot` to `<dir>/status.json` at its 2 s tick when what it
//! shows changed (devices up or down, their errors, engine events, the broker, the outbox),
//! else every 10 s (every tick in a gateway pair), where `dir`
//! is `snapshot_dir`: the runtime directory (`$RUNTIME_DIRECTORY` under systemd, else a
//! per-daemon directory under `$XDG_RUNTIME_DIR`, `/run` or `/tmp`), a tmpfs on a usual
//! system, so frequent snapshots wear no flash. `hallmonitor status` reads it, finding
//! the directory from the same configuration. The file is replaced atomically (a new
//! temporary file with an unpredictable name, then rename), so a reader never sees half a
//! snapshot, and reading it never touches the sled store the daemon holds locked.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DeviceSpec;
use crate::engine::{ChronicleEntry, IncidentSummary, NoiseCounters, PatternEvent};
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
    /// The gateway pair, when `[ha]` is configured. (The replica's lag is not shown yet:
    /// replication is not wired.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
    /// The daemon's process id (`hallmonitor ha handover` signals it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// This gateway's place in the pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    pub node: String,
    /// `active` (polls and publishes) or `standby`.
    pub role: String,
    /// While active, the term it holds (the fencing token); while standby, the term it asks for.
    pub term: u64,
    /// When the role last changed (or the daemon started), and why.
    pub since: Timestamp,
    pub reason: String,
    #[serde(default)]
    pub last_takeover_at: Option<Timestamp>,
    #[serde(default)]
    pub last_takeover_reason: Option<String>,
    pub peer_link_up: bool,
    pub witness_link_up: bool,
    /// The node holding the lease as far as this gateway knows: itself while active, else the
    /// other node its own voter is promised to, or that the other voters refused it for in the
    /// last lease (none when neither).
    #[serde(default)]
    pub active_node: Option<String>,
    /// The replication stream: on the active, what its standby lacks; on the standby, what it
    /// holds.
    #[serde(default)]
    pub replica: ReplicaStatus,
}

/// Where a gateway's replication stream stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Active: `in_sync`, `lagging`, `waiting` (for the standby, or for a majority to grant
    /// degraded mode) or `degraded` (publishing without the standby: no takeover possible);
    /// standby: `following` (an active streams to it) or `idle`.
    pub state: String,
    /// Active: entries and bytes the standby has not acknowledged; how long the oldest waited.
    pub lag_entries: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    /// This store's position in the stream, `term.index`.
    pub position: String,
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
    /// An incident as the engine condenses it (`Engine::incident_summaries`).
    pub fn from_summary(s: IncidentSummary) -> Self {
        Self {
            incident_id: s.incident_id,
            zone: s.zone,
            category: s.category,
            severity: s.severity,
            opened_at: s.opened_at,
            racks: s.racks,
            breaches: s.open_breaches,
            last_chronicle: s.last_chronicle,
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

/// Where the daemon for `site` with its store at `store_path` keeps its snapshot: the first
/// `$RUNTIME_DIRECTORY` entry when systemd set it; else `<base>/<site>-<hash of store_path>`
/// (one directory per daemon: two daemons on one machine have two stores), where `<base>` is
/// `$XDG_RUNTIME_DIR/hallmonitor`, `/run/hallmonitor` for root, else `/tmp/hallmonitor-<uid>`.
pub fn snapshot_dir(site: &SiteId, store_path: &Path) -> PathBuf {
    if let Some(dir) = systemd_runtime_dir() {
        return dir;
    }
    runtime_base().join(instance_name(site, store_path))
}

/// `$RUNTIME_DIRECTORY` (its first entry), if systemd set it.
pub fn systemd_runtime_dir() -> Option<PathBuf> {
    let v = std::env::var_os("RUNTIME_DIRECTORY").filter(|v| !v.is_empty())?;
    // systemd joins several RuntimeDirectory= entries with ':'.
    let s = v.to_string_lossy();
    Some(PathBuf::from(s.split(':').next().unwrap_or(&s)))
}

fn runtime_base() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return xdg.join("hallmonitor");
    }
    match current_uid() {
        Some(0) => PathBuf::from("/run/hallmonitor"),
        Some(uid) => std::env::temp_dir().join(format!("hallmonitor-{uid}")),
        None => std::env::temp_dir().join("hallmonitor"),
    }
}

/// The effective uid, as the owner of `/proc/self` (no libc needed).
fn current_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `fra1-0123abcd`: the site, and a hash of the store path that tells two daemons apart.
fn instance_name(site: &SiteId, store_path: &Path) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in store_path.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{site}-{:08x}", h as u32)
}

/// Creates `dir` (mode 0700) if needed, refusing one that is not a directory owned by us
/// (in a shared `/tmp`, someone else could have made it, or a symlink, first).
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    let ours = current_uid().is_none_or(|uid| meta.uid() == uid);
    if !meta.is_dir() || !ours {
        return Err(std::io::Error::other("not a directory owned by this user"));
    }
    Ok(())
}

/// Replaces `dir/status.json` atomically: a new temporary file with a random name in `dir`
/// (created exclusively: an existing file or symlink is never written through), then rename.
/// No fsync: the snapshot lives in a tmpfs and the next one is at most 10 s away.
pub fn write_atomic(dir: &Path, snap: &StatusSnapshot) -> Result<(), StatusError> {
    let path = dir.join(FILE_NAME);
    let err = |source| StatusError::Write { path: path.clone(), source };
    ensure_dir(dir).map_err(err)?;
    let (tmp, file) = create_temp(dir).map_err(err)?;
    // Straight into the file through a small buffer: at 400 devices the snapshot is 120 KB,
    // and built in memory first it was a 256 KiB buffer (and the copies growing it) every 2 s.
    // Compact: `status --json` prints it indented; the file is for `status` to read.
    let mut out = std::io::BufWriter::with_capacity(16 * 1024, file);
    let result = serde_json::to_writer(&mut out, snap)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .and_then(|()| fs::rename(&tmp, &path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// A new file `dir/.status.json.<random>.tmp`, readable by all (the snapshot is no secret).
fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{FILE_NAME}.{:016x}.tmp", fastrand::u64(..)));
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
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
            ha: None,
            pid: None,
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
    fn write_creates_its_directory_private() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("run").join("fra1-0123abcd");
        write_atomic(&sub, &snapshot()).unwrap();
        assert_eq!(read(&sub).unwrap(), snapshot());
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn write_never_writes_through_a_planted_temporary_file() {
        // The old temporary name was predictable (`.status.json.<pid>.tmp`): a symlink
        // planted there redirected the write to any file the daemon may write.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(dir.path(), &snapshot()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(read(dir.path()).unwrap(), snapshot());
    }

    #[test]
    fn write_refuses_a_directory_that_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("nope"), b"").unwrap();
        let e = write_atomic(&dir.path().join("nope"), &snapshot()).unwrap_err();
        assert!(e.to_string().contains("nope/status.json"), "{e}");
    }

    #[test]
    fn each_daemon_has_its_own_snapshot_directory() {
        let site = SiteId::new("fra1");
        let a = instance_name(&site, Path::new("/var/lib/hallmonitor"));
        let b = instance_name(&site, Path::new("/srv/other-store"));
        assert!(a.starts_with("fra1-") && a != b, "{a} {b}");
        assert_eq!(a, instance_name(&site, Path::new("/var/lib/hallmonitor")), "stable");
    }
}
