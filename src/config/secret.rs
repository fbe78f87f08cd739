//! Reading secrets (broker password, SNMP community, SNMPv3 passwords) from files, the one
//! reader every command uses, and the permission check that goes with it.
//!
//! The README installs secret files `0640 root:hallmonitor`: the service reads them through its
//! group, nobody else can. So only access by *other* users, or group write, is worth a warning;
//! group read is the intended layout.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Secret;

/// A secret read from a file, with the warning its permissions deserve, if any.
#[derive(Debug)]
pub struct SecretFile {
    pub secret: Secret,
    pub warning: Option<String>,
}

/// Reads the first line of `path` (without its line end) as a secret.
pub fn read_secret_file(path: &Path) -> std::io::Result<SecretFile> {
    let text = std::fs::read_to_string(path)?;
    let secret = Secret::new(text.lines().next().unwrap_or("").trim_end());
    Ok(SecretFile { secret, warning: secret_file_warning(path) })
}

/// What is wrong with the permissions of a secret (or private key) file: access by other
/// users, or write access for its group. `None` for 0600, 0640 and the like.
pub fn secret_file_warning(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    let problem = if mode & 0o007 != 0 {
        "is accessible to other users"
    } else if mode & 0o020 != 0 {
        "is writable by its group"
    } else {
        return None;
    };
    Some(format!(
        "secret file {} {problem} (mode {mode:04o}); make it 0640 root:hallmonitor as the README installs it \
         (chmod o-rwx,g-w)",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\nsecond line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn the_readme_layout_and_private_files_pass_silently() {
        for mode in [0o600, 0o640, 0o400, 0o440] {
            let (_dir, path) = file_with_mode(mode);
            let read = read_secret_file(&path).unwrap();
            assert_eq!(read.secret.expose(), "s3cret");
            assert_eq!(read.warning, None, "mode {mode:o}");
        }
    }

    #[test]
    fn world_access_and_group_write_are_warned_without_advising_chmod_600() {
        for (mode, why) in [(0o644, "other users"), (0o604, "other users"), (0o601, "other users"), (0o660, "group")] {
            let (_dir, path) = file_with_mode(mode);
            let warning = read_secret_file(&path).unwrap().warning.unwrap_or_else(|| panic!("mode {mode:o}"));
            assert!(warning.contains(why), "{warning}");
            assert!(warning.contains(&format!("mode {mode:04o}")), "{warning}");
            assert!(!warning.contains("600"), "{warning}");
        }
    }
}
