//! The draft configuration `discover` prints on stdout: a complete config that `check-config`
//! accepts as it is, with one `[[devices]]` block per recognised device.
//!
//! Invariants: device ids are valid (`[a-z0-9_-]+`) and unique; every device sits in the
//! `--zone` given or in the zone `"unassigned"`, which `check-config` points out with a hint;
//! credentials appear only as file paths (absolute, so the draft works wherever it is saved),
//! never inline; text a device reported (sysLocation, sysDescr) only ever lands in comments,
//! on one line, so a device cannot inject TOML.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::PathBuf;

pub use crate::config::UNASSIGNED_ZONE;

/// Site id of the draft: a placeholder the engineer replaces.
const PLACEHOLDER_SITE: &str = "my-site";

/// How a draft device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftTransport {
    Snmp(DraftSnmp),
    /// Modbus TCP gateway or device, `host:port`.
    ModbusTcp {
        address: String,
        unit: u8,
    },
    /// Modbus RTU bus, with its line settings (`parity`: none, even or odd).
    ModbusRtu {
        serial: String,
        unit: u8,
        baud: u32,
        parity: &'static str,
        data_bits: u8,
        stop_bits: u8,
    },
}

/// SNMP access of a draft device: version and where its secrets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftSnmp {
    /// `host:port`.
    pub address: String,
    /// `"2c"` or `"3"`.
    pub version: &'static str,
    /// v1/v2c community file.
    pub community_file: Option<PathBuf>,
    /// v3 user.
    pub user: Option<String>,
    /// v3 authentication protocol name and password file.
    pub auth: Option<(String, PathBuf)>,
    /// v3 privacy protocol name and password file.
    pub privacy: Option<(String, PathBuf)>,
}

/// One device found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftDevice {
    /// What the id is made from (sysName, a Modbus product name...); the address when empty.
    pub name: String,
    /// Profile name (built-in or from `profiles_dir`).
    pub profile: String,
    /// Comment lines shown above the block (sysLocation, sysDescr...).
    pub comments: Vec<String>,
    pub transport: DraftTransport,
}

/// The whole draft.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// Comment lines at the top (what produced the draft).
    pub header: Vec<String>,
    /// `--zone`; `None` puts devices in `"unassigned"`.
    pub zone: Option<String>,
    /// A profiles directory the devices' user profiles come from (absolute).
    pub profiles_dir: Option<PathBuf>,
    pub devices: Vec<DraftDevice>,
    /// Comment lines at the end (devices that answered but matched no profile, ...).
    pub notes: Vec<String>,
}

/// Checks a `--zone` value the way the config checks zone ids.
pub fn check_zone(zone: &str) -> Result<(), String> {
    if is_ident(zone) {
        Ok(())
    } else {
        Err(format!("--zone {zone:?} must match [a-z0-9_-]+ (a zone id of the config)"))
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A device id made from what a device calls itself: lowercase, every run of other
/// characters one `-`, trimmed of `-`; `fallback` (made valid the same way) when nothing is left.
pub fn device_id(name: &str, fallback: &str) -> String {
    let make = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        // A long sysName (a full description) makes a poor id: keep the start.
        let trimmed: String = out.trim_matches('-').chars().take(48).collect();
        trimmed.trim_end_matches('-').to_owned()
    };
    let id = make(name);
    if id.is_empty() { make(fallback) } else { id }
}

/// `base`, or `base-2`, `base-3`... whichever is not in `taken` yet (then taken).
fn unique(base: String, taken: &mut HashSet<String>) -> String {
    let mut id = base.clone();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// One line of text from a device, safe in a TOML comment: no control characters, bounded.
pub fn comment_text(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 { format!("{}...", flat.chars().take(117).collect::<String>()) } else { flat }
}

/// A TOML basic string with its quotes (escapes what TOML needs escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn path_str(p: &std::path::Path) -> String {
    quoted(&p.to_string_lossy())
}

impl Draft {
    /// The draft as TOML text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            let _ = writeln!(s, "# {}", comment_text(h));
        }
        let zone = self.zone.as_deref().unwrap_or(UNASSIGNED_ZONE);
        let _ = writeln!(s, "# A draft: check the site id, zones and racks, then `hallmonitor check-config` it.");
        if self.zone.is_none() {
            let _ = writeln!(
                s,
                "# Every device is in the zone \"{UNASSIGNED_ZONE}\": move each to its real zone and rack."
            );
        }
        if let Some(dir) = &self.profiles_dir {
            let _ = writeln!(s, "profiles_dir = {}", path_str(dir));
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "[site]");
        let _ = writeln!(s, "id = {}   # placeholder: your site id, [a-z0-9_-]+", quoted(PLACEHOLDER_SITE));
        let _ = writeln!(s);
        let _ = writeln!(s, "# `run` needs the NOC's broker; `check-config` and `poll` work without it.");
        let _ = writeln!(s, "# [mqtt]");
        let _ = writeln!(s, "# url = \"mqtts://broker.example:8883\"");
        let _ = writeln!(s, "# ca_file = \"/etc/hallmonitor/ca.pem\"");
        let _ = writeln!(s);
        let _ = writeln!(s, "[store]");
        let _ = writeln!(s, "path = \"/var/lib/hallmonitor\"");
        let _ = writeln!(s, "max_bytes = \"512MiB\"");
        let _ = writeln!(s);
        let _ = writeln!(s, "[[zones]]");
        let _ = writeln!(s, "id = {}", quoted(zone));
        let _ = writeln!(s, "racks = []");
        let mut taken = HashSet::new();
        for d in &self.devices {
            let fallback = match &d.transport {
                DraftTransport::Snmp(snmp) => format!("snmp-{}", snmp.address),
                DraftTransport::ModbusTcp { address, unit } => format!("modbus-{address}-{unit}"),
                DraftTransport::ModbusRtu { serial, unit, .. } => format!("modbus-{serial}-{unit}"),
            };
            let id = unique(device_id(&d.name, &fallback), &mut taken);
            let _ = writeln!(s);
            for c in &d.comments {
                let _ = writeln!(s, "# {}", comment_text(c));
            }
            let _ = writeln!(s, "[[devices]]");
            let _ = writeln!(s, "id = {}", quoted(&id));
            let _ = writeln!(s, "profile = {}", quoted(&d.profile));
            let _ = writeln!(s, "zone = {}", quoted(zone));
            match &d.transport {
                DraftTransport::Snmp(snmp) => {
                    let _ = writeln!(s, "[devices.snmp]");
                    let _ = writeln!(s, "address = {}", quoted(&snmp.address));
                    let _ = writeln!(s, "version = {}", quoted(snmp.version));
                    if let Some(f) = &snmp.community_file {
                        let _ = writeln!(s, "community_file = {}", path_str(f));
                    }
                    if let Some(u) = &snmp.user {
                        let _ = writeln!(s, "user = {}", quoted(u));
                    }
                    if let Some((proto, f)) = &snmp.auth {
                        let _ = writeln!(s, "auth = {}", quoted(proto));
                        let _ = writeln!(s, "auth_password_file = {}", path_str(f));
                    }
                    if let Some((proto, f)) = &snmp.privacy {
                        let _ = writeln!(s, "priv = {}", quoted(proto));
                        let _ = writeln!(s, "priv_password_file = {}", path_str(f));
                    }
                }
                DraftTransport::ModbusTcp { address, unit } => {
                    let _ = writeln!(s, "[devices.modbus]");
                    let _ = writeln!(s, "address = {}", quoted(address));
                    let _ = writeln!(s, "unit = {unit}");
                }
                DraftTransport::ModbusRtu { serial, unit, baud, parity, data_bits, stop_bits } => {
                    let _ = writeln!(s, "[devices.modbus]");
                    let _ = writeln!(s, "serial = {}", quoted(serial));
                    let _ = writeln!(
                        s,
                        "baud = {baud}\nparity = {}\ndata_bits = {data_bits}\nstop_bits = {stop_bits}",
                        quoted(parity)
                    );
                    let _ = writeln!(s, "unit = {unit}");
                }
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "# {}", comment_text(n));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snmp_device(name: &str, address: &str, community: &std::path::Path) -> DraftDevice {
        DraftDevice {
            name: name.into(),
            profile: "apc-rpdu2".into(),
            comments: vec!["sysLocation: Hall 2\nrow B".into()],
            transport: DraftTransport::Snmp(DraftSnmp {
                address: address.into(),
                version: "2c",
                community_file: Some(community.to_owned()),
                user: None,
                auth: None,
                privacy: None,
            }),
        }
    }

    #[test]
    fn ids_are_valid_and_fall_back_to_the_address() {
        assert_eq!(device_id("PDU-A1.hall2.example.com", "x"), "pdu-a1-hall2-example-com");
        assert_eq!(device_id("  Rack 12 / Feed B  ", "x"), "rack-12-feed-b");
        assert_eq!(device_id("", "snmp-10.0.0.5:161"), "snmp-10-0-0-5-161");
        assert_eq!(device_id("äöü", "snmp-10.0.0.5:161"), "snmp-10-0-0-5-161");
        assert!(device_id(&"x".repeat(300), "y").len() <= 48);
    }

    #[test]
    fn the_draft_passes_check_config_with_unique_ids_and_secrets_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let community = dir.path().join("community");
        std::fs::write(&community, "s3cret-community\n").unwrap();
        std::fs::set_permissions(&community, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let draft = Draft {
            header: vec!["hallmonitor discover snmp 10.0.0.0/30".into()],
            zone: None,
            profiles_dir: None,
            devices: vec![
                snmp_device("pdu-a1", "10.0.0.1:161", &community),
                snmp_device("PDU-A1", "10.0.0.2:161", &community),
                snmp_device("", "10.0.0.3:161", &community),
            ],
            notes: vec!["10.0.0.4:161: no profile: sysObjectID 1.3.6.1.4.1.8072.3.2.10".into()],
        };
        let text = draft.render();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("# sysLocation: Hall 2 row B\n"), "{text}");
        let path = dir.path().join("draft.toml");
        std::fs::write(&path, &text).unwrap();
        let loaded = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let ids: Vec<&str> = loaded.config.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["pdu-a1", "pdu-a1-2", "snmp-10-0-0-3-161"]);
        assert!(loaded.config.devices.iter().all(|d| d.zone.as_str() == UNASSIGNED_ZONE));
        // check-config points at each device left in "unassigned", as a warning.
        let hints: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(hints.len(), 3, "{hints:#?}");
        assert!(
            hints[0].ends_with(
                "device \"pdu-a1\" is in the zone \"unassigned\" (from `discover`): move it to its real zone and rack"
            ),
            "{hints:#?}"
        );
    }

    #[test]
    fn a_given_zone_is_used_and_checked() {
        assert!(check_zone("hall-2").is_ok());
        assert_eq!(
            check_zone("Hall 2").unwrap_err(),
            "--zone \"Hall 2\" must match [a-z0-9_-]+ (a zone id of the config)"
        );
        let text = Draft { zone: Some("hall-2".into()), ..Draft::default() }.render();
        assert!(text.contains("[[zones]]\nid = \"hall-2\"\n") && !text.contains("unassigned"), "{text}");
    }
}
