//! `config/hallmonitor.toml` is the user's reference: it must show every field of the
//! configuration (commented-out examples count). The field list comes from the config types
//! themselves (`config::fields`), so a new field without an example line fails here.

use std::collections::BTreeSet;
use std::path::Path;

use hallmonitor::config::fields::config_fields;

/// Every key the example mentions: `key = ...` and the parts of `[a.b]` / `[[a.b]]` headers,
/// on plain or commented-out lines.
fn keys_in(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[') {
            let inner = header.trim_start_matches('[');
            if let Some(end) = inner.find(']') {
                keys.extend(inner[..end].split('.').map(|k| k.trim().to_owned()));
            }
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

#[test]
fn the_example_config_shows_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hallmonitor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shown = keys_in(&text);
    let fields = config_fields();
    assert!(fields.len() > 50, "the field list is suspiciously short: {fields:?}");
    let missing: Vec<String> =
        fields.iter().filter(|f| !shown.contains(f.key)).map(|f| format!("{} (in {})", f.key, f.owner)).collect();
    assert!(missing.is_empty(), "{} does not show these fields:\n  {}", path.display(), missing.join("\n  "));
}

#[test]
fn keys_are_found_in_headers_and_comments() {
    let keys = keys_in("[a.b]\n# [[c]]\n#  d = 1\nprose that = is not a key\n  e=2 # f = 3\n");
    let want: BTreeSet<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    assert_eq!(keys, want);
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
