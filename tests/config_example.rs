//! `config/hallmonitor.toml` is the user's reference: it must show every field of the
//! configuration (commented-out examples count). The field list comes from the config types
//! themselves (`config::fields`), so a new field without an example line fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hallmonitor::config::fields::config_fields;

/// Every key path the example mentions, as dotted segments: the headers `[a.b]` / `[[a.b]]`
/// and their prefixes, and `key = ...` under the header above it, on plain or commented-out
/// lines.
fn paths_in(text: &str) -> BTreeSet<Vec<String>> {
    let mut paths = BTreeSet::new();
    let mut header: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim();
        if let Some(rest) = line.strip_prefix('[') {
            let inner = rest.trim_start_matches('[');
            if let Some(end) = inner.find(']') {
                header = inner[..end].split('.').map(|k| k.trim().to_owned()).collect();
                for n in 1..=header.len() {
                    paths.insert(header[..n].to_vec());
                }
            }
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                let mut path = header.clone();
                path.push(key.to_owned());
                paths.insert(path);
            }
        }
    }
    paths
}

/// A field path such as `racks.*.thresholds.*.for` against a concrete one from the example.
fn matches(pattern: &str, path: &[String]) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

#[test]
fn the_example_config_shows_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hallmonitor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shown = paths_in(&text);
    // A struct used in several places (thresholds per site, zone, rack, device) needs showing
    // in one of them.
    let mut places: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for f in config_fields() {
        places.entry((f.owner, f.key)).or_default().push(f.path);
    }
    assert!(places.len() > 50, "the field list is suspiciously short: {places:?}");
    let missing: Vec<String> = places
        .iter()
        .filter(|(_, at)| !at.iter().any(|p| shown.iter().any(|s| matches(p, s))))
        .map(|((owner, _), at)| format!("{} (in {owner})", at.join(" or ")))
        .collect();
    assert!(missing.is_empty(), "{} does not show these fields:\n  {}", path.display(), missing.join("\n  "));
}

#[test]
fn paths_are_found_under_their_headers_and_in_comments() {
    let paths = paths_in("top = 0\n[a.b]\n# c = 1\nprose that = is not a key\n# [[d]]\n  e=2 # f = 3\n");
    let want: BTreeSet<Vec<String>> = [&["top"][..], &["a"], &["a", "b"], &["a", "b", "c"], &["d"], &["d", "e"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(paths, want);
    assert!(matches("racks.*.thresholds.*.for", &paths_in("[racks.B07.thresholds.t]\nfor = 1\n").pop_last().unwrap()));
}

/// The commented-out profiles at the end of the example, uncommented, are valid profiles.
#[test]
fn the_example_profiles_build() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hallmonitor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("# --- Profiles").expect("the example has a profiles section");
    let mut uncommented = text[..start].to_owned();
    for line in text[start..].lines() {
        let body = line.trim_start_matches('#').trim_start();
        if body.starts_with('[') || body.split_once('=').is_some_and(|(k, _)| !k.trim().contains(' ')) {
            uncommented.push_str(body);
            uncommented.push('\n');
        }
    }
    assert!(uncommented.contains("\n[profiles.acme-th]\n"), "{uncommented}");
    let loaded = hallmonitor::config::load_str(&path, &uncommented).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.devices.iter().all(|d| d.profile.name() != "acme-th"), "profiles are defined, not used");
}
