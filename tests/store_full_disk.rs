//! A full disk under the store: commits fail with a clear, typed error (never a panic), what
//! was durable stays readable, and once space is freed the reopened store takes writes again.
//!
//! Needs root to mount a small tmpfs (CI runs as root); part of the `interop` suite.

#![cfg(feature = "interop")]

use std::path::{Path, PathBuf};
use std::process::Command;

use hallmonitor::config::StoreSettings;
use hallmonitor::model::{SiteId, Timestamp};
use hallmonitor::outbox::{MessageClass, Outbound};
use hallmonitor::store::{Store, StoreError};

/// A tmpfs of `size` mounted for the test's lifetime.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(dir: &Path, size: &str) -> TinyDisk {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "this test mounts a tmpfs to fill a disk: run it as root (scripts/test does, in CI)");
        TinyDisk(dir.to_owned())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn message(i: u64) -> Outbound {
    Outbound {
        topic: "hallmonitor/v1/fra1/incidents/hall1-b".into(),
        qos: 1,
        retain: false,
        class: MessageClass::IncidentLifecycle,
        payload: serde_json::json!({"type": "incident", "event": "opened", "n": i, "pad": "x".repeat(900)}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_and_the_store_recovers_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TinyDisk::mount(tmp.path(), "6m");
    // Leave the store a little room, then take it away with a filler we can delete later.
    let filler = disk.0.join("filler");
    let settings = StoreSettings { path: disk.0.join("store"), max_bytes: 1 << 30 };
    let store = Store::open(&settings, &SiteId::new("fra1")).expect("open on the small disk");
    std::fs::write(&filler, vec![0u8; 3 << 20]).unwrap();

    let mut committed = 0u64;
    let mut failure = None;
    for batch in 0..5_000u64 {
        let msgs: Vec<Outbound> = (0..20).map(|i| message(batch * 20 + i)).collect();
        match store.commit(&msgs, Some(b"engine-state"), Timestamp::now()).await {
            Ok(seqs) => committed += seqs.len() as u64,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("the disk filled up before 100,000 messages");
    assert!(matches!(err, StoreError::Write { .. } | StoreError::Flush { .. }), "unexpected error kind: {err}");
    let text = err.to_string();
    assert!(text.contains(&settings.path.display().to_string()), "the error names the store: {text}");
    assert!(committed > 0, "some messages fit before the disk was full");

    // What was durable is still there, in order.
    let first = store.peek_from(None, 1).expect("the outbox stays readable on a full disk");
    assert_eq!(first.first().map(|m| m.seq), Some(1));

    // Space comes back. sled keeps reporting the failed write until it is reopened, which is
    // why the daemon exits (for systemd to restart it) after a few minutes of failed commits.
    std::fs::remove_file(&filler).unwrap();
    drop(store);
    let store = Store::open(&settings, &SiteId::new("fra1")).expect("reopen once space is back");
    let depth = store.stats().unwrap().depth;
    assert!(depth >= committed.saturating_sub(20), "what was durable survived: {depth} of {committed}");
    store.commit(&[message(999_999)], Some(b"engine-state"), Timestamp::now()).await.expect("writable again");
    drop(store);
    drop(disk);
}
