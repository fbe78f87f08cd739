//! Files a config refers to.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `value` and a newline to the secret file `dir/name`, private (0600) as the config
/// loader wants it; returns its path.
pub fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Writes `text` to `dir/hallmonitor.toml`, where a config's relative paths (secret files) are
/// looked up from; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("hallmonitor.toml");
    std::fs::write(&path, text).unwrap();
    path
}
