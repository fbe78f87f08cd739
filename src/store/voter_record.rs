//! The gateway pair's voter record (`ha::lease::VoterRecord`, encoded by `ha::wire`): one small
//! file, written whole and synced before the voter's grant is sent, so a restart never forgets
//! a term it granted. Here because only `store` writes to disk; the witness uses it too.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` durably: a temporary file beside it, fsync, rename over, fsync of
/// the directory. A crash leaves the old record or the new one, never a mix.
pub fn write_voter_record(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The record's bytes, `None` when there is none yet (a first start).
pub fn read_voter_record(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
