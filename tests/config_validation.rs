//! Every configuration rule, checked the way a facility engineer meets it: a file with a
//! mistake, and the `PATH:LINE:COL: message` lines it produces.

mod support;

use std::path::{Path, PathBuf};

use hallmonitor::config::{self, ConfigError, Loaded};
use support::files::secret;

const BASE: &str = r#"
[site]
id = "fra1"

[[zones]]
id = "hall1-b"
racks = ["B07", "B08"]

[[zones]]
id = "hall1-c"
racks = ["C01"]
adjacent = ["hall1-b"]

[[devices]]
id = "pdu-b07-a"
profile = "apc-rpdu2"
zone = "hall1-b"
rack = "B07"
[devices.snmp]
address = "127.0.0.1:161"
community_file = "COMMUNITY_FILE"

[[devices]]
id = "crah-b1"
profile = "generic-crah"
zone = "hall1-b"
[devices.modbus]
address = "127.0.0.1:502"
"#;

fn load(text: &str) -> Result<Loaded, ConfigError> {
    config::load_str(Path::new("site.toml"), &with_community(text))
}

/// `text` with BASE's `COMMUNITY_FILE` replaced by a private (0600) community file.
fn with_community(text: &str) -> String {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = FILE.get_or_init(|| secret(&temp_dir(), "community", "public"));
    text.replace("COMMUNITY_FILE", &path.display().to_string())
}

/// Loads `text`, expects failure and returns the rendered error lines.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.errors.iter().map(|d| d.to_string()).collect(),
    }
}

/// The single error line containing `needle`, asserting it has a position on `line`.
fn assert_error_at(errs: &[String], needle: &str, line: usize) {
    let hit =
        errs.iter().find(|e| e.contains(needle)).unwrap_or_else(|| panic!("no error mentions {needle:?}: {errs:#?}"));
    let prefix = format!("site.toml:{line}:");
    assert!(hit.starts_with(&prefix), "expected position on line {line}: {hit}");
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in text")) + 1
}

#[test]
fn the_base_config_is_valid() {
    let loaded = load(BASE).unwrap();
    assert_eq!(loaded.config.devices.len(), 2);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn three_semantic_mistakes_are_all_reported_with_positions() {
    let text = BASE
        .replace("id = \"crah-b1\"", "id = \"pdu-b07-a\"")
        .replace("zone = \"hall1-b\"\n[devices.modbus]", "zone = \"hall9\"\n[devices.modbus]")
        + "\n[thresholds.inlet_temp_c]\nwarn_high = 35.0\ncrit_high = 32.0\n";
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let dup_line = text.lines().enumerate().filter(|(_, l)| l.contains("id = \"pdu-b07-a\"")).nth(1).unwrap().0 + 1;
    assert_error_at(&errs, "duplicate device id", dup_line);
    assert_error_at(&errs, "unknown zone \"hall9\"", line_of(&text, "zone = \"hall9\""));
    assert_error_at(&errs, "warn_high must be below crit_high", line_of(&text, "warn_high = 35.0"));
    // Column points at the value.
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("site.toml:{}:8:", line_of(&text, "zone = \"hall9\"")))),
        "{errs:#?}"
    );
}

#[test]
fn unknown_field_has_line_and_column() {
    let text = BASE.replace("[[devices]]\nid = \"crah-b1\"", "[[devices]]\nidd = \"x\"\nid = \"crah-b1\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_error_at(&errs, "unknown field `idd`", line_of(&text, "idd ="));
}

#[test]
fn a_top_level_key_after_a_table_gets_a_hint() {
    let text = BASE.to_owned() + "profiles_dir = \"profiles\"\n";
    let errs = errors(&text);
    assert_error_at(&errs, "unknown field `profiles_dir`", line_of(&text, "profiles_dir"));
    assert!(errs[0].contains("top-level keys go before the first [table]"), "{errs:?}");
    // A key that is not a top-level one gets no such hint.
    let errs = errors(&BASE.replace("[[devices]]\nid = \"crah-b1\"", "[[devices]]\nidd = \"x\"\nid = \"crah-b1\""));
    assert!(!errs[0].contains("top-level"), "{errs:?}");
}

#[test]
fn topic_prefix_must_make_valid_topics() {
    for (prefix, why) in [
        ("a/#/b", "wildcard"),
        ("a/+/b", "wildcard"),
        ("a//b", "empty level"),
        ("/a/b", "empty level"),
        ("a/b/", "empty level"),
        ("", "empty level"),
        ("$SYS/hm", "starts with $"),
    ] {
        let text = BASE.to_owned() + &format!("\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\ntopic_prefix = {prefix:?}\n");
        let errs = errors(&text);
        assert_error_at(&errs, &format!("mqtt.topic_prefix {prefix:?}"), line_of(&text, "topic_prefix"));
        assert!(errs.iter().any(|e| e.contains(why)), "{prefix}: {errs:#?}");
    }
    let text = BASE.to_owned() + "\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\ntopic_prefix = \"acme/dc-monitoring/v1\"\n";
    assert_eq!(load(&text).unwrap().config.mqtt.unwrap().topic_prefix, "acme/dc-monitoring/v1");
}

#[test]
fn ids_that_go_into_topics_cannot_hold_topic_characters() {
    for bad in ["fra+1", "fra#", "fra/1", "$fra"] {
        let text = BASE.replace("id = \"fra1\"", &format!("id = {bad:?}"));
        assert_error_at(&errors(&text), &format!("site id {bad:?} must match [a-z0-9_-]+"), 3);
        let text = BASE.replace("id = \"hall1-c\"", &format!("id = {bad:?}"));
        assert_error_at(&errors(&text), &format!("zone id {bad:?} must match"), line_of(&text, bad));
    }
}

#[test]
fn durations_out_of_their_range_are_errors_naming_the_range() {
    let text = BASE.to_owned()
        + "\n[polling]\ninterval = \"400000000000y\"\ntimeout = \"2h\"\n[patterns]\nwindow = \"10s\"\n\
           [mqtt]\nurl = \"mqtt://127.0.0.1\"\nkeep_alive = \"500ms\"\n\
           [thresholds.inlet_temp_c]\nwarn_high = 27.0\nfor = \"2d\"\n";
    let errs = errors(&text);
    assert_error_at(&errs, "polling.interval: 400000000000y is out of range (100ms..1d)", line_of(&text, "interval ="));
    assert_error_at(&errs, "polling.timeout: 2h is out of range (10ms..5m)", line_of(&text, "timeout ="));
    assert_error_at(&errs, "patterns.window: 10s is out of range (1m..365d)", line_of(&text, "window ="));
    assert_error_at(&errs, "mqtt.keep_alive: 500ms is out of range (1s..1h)", line_of(&text, "keep_alive"));
    assert_error_at(&errs, "thresholds.inlet_temp_c.for: 2d is out of range (0ms..1d)", line_of(&text, "for ="));
    let text =
        BASE.replace("zone = \"hall1-b\"\n[devices.modbus]", "zone = \"hall1-b\"\ninterval = \"0s\"\n[devices.modbus]");
    assert_error_at(&errors(&text), "interval: 0s is out of range (100ms..1d)", line_of(&text, "interval = \"0s\""));
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let errs = errors("[site]\nid = \"fra1\n");
    assert!(errs[0].starts_with("site.toml:2:"), "{errs:?}");
    let errs = errors("[site]\nid = 5\n");
    assert!(errs[0].starts_with("site.toml:2:6:"), "{errs:?}");
    assert!(errs[0].contains("string"), "{errs:?}");
}

#[test]
fn duplicate_zone_and_rack_in_two_zones() {
    let text = BASE.to_owned() + "\n[[zones]]\nid = \"hall1-b\"\nracks = [\"B07\"]\n";
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("duplicate zone id \"hall1-b\"")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("rack \"B07\" is already in zone")), "{errs:#?}");
}

#[test]
fn unknown_rack_and_rack_of_another_zone() {
    let errs = errors(&BASE.replace("rack = \"B07\"", "rack = \"Z99\""));
    assert_error_at(&errs, "unknown rack \"Z99\"", line_of(BASE, "rack = \"B07\""));
    let errs = errors(&BASE.replace("rack = \"B07\"", "rack = \"C01\""));
    assert!(errs.iter().any(|e| e.contains("belongs to zone \"hall1-c\"")), "{errs:#?}");
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let errs = errors(&BASE.replace("profile = \"apc-rpdu2\"", "profile = \"apc-rpdu9\""));
    assert_error_at(&errs, "unknown profile \"apc-rpdu9\"", line_of(BASE, "profile = \"apc-rpdu2\""));
    assert!(errs[0].contains("generic-crah"), "{errs:?}");
}

#[test]
fn profile_of_the_wrong_protocol() {
    let errs = errors(&BASE.replace("profile = \"generic-crah\"", "profile = \"apc-rpdu2\""));
    assert!(errs.iter().any(|e| e.contains("is snmp but the device is polled over modbus")), "{errs:#?}");
}

#[test]
fn threshold_rules() {
    let errs = errors(&(BASE.to_owned() + "\n[thresholds.inlet_temp_c]\nhysteresis = -1.0\n"));
    assert!(errs.iter().any(|e| e.contains("hysteresis must not be negative")), "{errs:#?}");
    let errs = errors(&(BASE.to_owned() + "\n[thresholds.inlet_temp_c]\ncrit_low = 20.0\nwarn_low = 18.0\n"));
    assert!(errs.iter().any(|e| e.contains("crit_low must be below warn_low")), "{errs:#?}");
    let errs = errors(&(BASE.to_owned() + "\n[thresholds.inlet_temp_c]\nrise = 3.0\n"));
    assert!(errs.iter().any(|e| e.contains("rise needs rise_within")), "{errs:#?}");
    let errs = errors(&(BASE.to_owned() + "\n[thresholds.phase_current_a]\nbreaker_warn = 1.5\n"));
    assert!(errs.iter().any(|e| e.contains("breaker fractions")), "{errs:#?}");
}

#[test]
fn bad_durations_and_sizes() {
    let text = BASE.to_owned()
        + "\n[correlation]\nclear_hold = \"five minutes\"\n[store]\nmax_bytes = \"12 parsecs\"\n[polling]\ninterval = \"0s\"\n";
    let errs = errors(&text);
    assert_error_at(&errs, "correlation.clear_hold: bad duration", line_of(&text, "clear_hold"));
    assert_error_at(&errs, "store.max_bytes: bad size", line_of(&text, "max_bytes"));
    assert_error_at(&errs, "polling.interval: 0s is out of range (100ms..1d)", line_of(&text, "interval = \"0s\""));
}

#[test]
fn addresses_that_do_not_parse() {
    let errs = errors(&BASE.replace("address = \"127.0.0.1:502\"", "address = \"127.0.0.1:99999\""));
    assert!(errs.iter().any(|e| e.contains("bad port")), "{errs:#?}");
    let errs = errors(&BASE.replace("address = \"127.0.0.1:161\"", "address = \"not an address\""));
    assert!(errs.iter().any(|e| e.contains("is not host:port")), "{errs:#?}");
    let errs = errors(&(BASE.to_owned() + "\n[mqtt]\nurl = \"http://broker\"\n"));
    assert!(errs.iter().any(|e| e.contains("must start with mqtt:// or mqtts://")), "{errs:#?}");
    let errs = errors(&(BASE.to_owned() + "\n[mqtt]\nurl = \"mqtts://broker.example\"\n"));
    assert!(errs.iter().any(|e| e.contains("needs mqtt.ca_file")), "{errs:#?}");
}

/// `[mqtt] url` is read by the same parser as `tail --broker`: what one takes, the other takes,
/// and a bad URL is an error on the url's line.
#[test]
fn mqtt_urls_parse_as_tail_parses_them() {
    let text = BASE.to_owned() + "\n[mqtt]\nurl = \"mqtt://[::1]\"\n";
    let mqtt = load(&text).unwrap().config.mqtt.unwrap();
    assert_eq!((mqtt.host.as_str(), mqtt.port, mqtt.tls), ("::1", 1883, false));
    for (url, why) in [("mqtt://broker:notaport", "bad port \"notaport\""), ("mqtt://bro ker", "is not a host name")] {
        let text = BASE.to_owned() + &format!("\n[mqtt]\nurl = {url:?}\n");
        assert_error_at(&errors(&text), &format!("mqtt.url {url:?}: "), line_of(&text, "url ="));
        assert!(errors(&text).iter().any(|e| e.contains(why)), "{url}: {:#?}", errors(&text));
    }
}

#[test]
fn site_id_must_be_lowercase_ident() {
    let errs = errors(&BASE.replace("id = \"fra1\"", "id = \"FRA 1\""));
    assert_error_at(&errs, "site id \"FRA 1\" must match [a-z0-9_-]+", 3);
}

#[test]
fn unknown_adjacent_zone() {
    let errs = errors(&BASE.replace("adjacent = [\"hall1-b\"]", "adjacent = [\"hall2-x\"]"));
    assert!(errs.iter().any(|e| e.contains("unknown adjacent zone \"hall2-x\"")), "{errs:#?}");
}

/// A fresh directory under cargo's per-target scratch space (target/tmp), so that the secret
/// files the tests write never pile up in the system's /tmp.
fn temp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cfg-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn secret_files_missing_is_an_error_and_world_readable_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let cfg_path = dir.join("hallmonitor.toml");
    let text = BASE.to_owned()
        + "\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"fra1\"\npassword_file = \"mqtt.password\"\n";
    let text = with_community(&text);
    let err = config::load_str(&cfg_path, &text).unwrap_err();
    assert!(err.errors[0].to_string().contains("password file"), "{err}");
    assert!(err.errors[0].position.is_some());

    let pw = dir.join("mqtt.password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = config::load_str(&cfg_path, &text).unwrap();
    assert_eq!(loaded.config.mqtt.as_ref().unwrap().password.as_ref().unwrap().expose(), "s3cret");
    assert!(loaded.warnings.iter().any(|w| w.message.contains("accessible to other users")), "{:?}", loaded.warnings);
    // The secret never shows in Debug output (which is what ends up in logs).
    assert!(!format!("{:?}", loaded.config).contains("s3cret"));

    // The README's layout, 0640 root:hallmonitor, is right and passes silently.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let loaded = config::load_str(&cfg_path, &text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn snmp_v3_needs_user_and_passwords() {
    let text = BASE.replace("address = \"127.0.0.1:161\"", "address = \"127.0.0.1:161\"\nversion = \"3\"");
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("SNMPv3 needs `user`")), "{errs:#?}");
    let text = BASE.replace(
        "address = \"127.0.0.1:161\"",
        "address = \"127.0.0.1:161\"\nversion = \"3\"\nuser = \"m\"\nauth = \"sha256\"\npriv = \"aes128\"",
    );
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("auth needs auth_password_file")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("priv needs priv_password_file")), "{errs:#?}");
    let text = BASE.replace("address = \"127.0.0.1:161\"", "address = \"127.0.0.1:161\"\nuser = \"m\"");
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("SNMPv3 settings but version is \"2c\"")), "{errs:#?}");
}

#[test]
fn snmp_v1_v2c_device_needs_a_community_source() {
    let text = BASE.replace("community_file = \"COMMUNITY_FILE\"\n", "");
    let errs = errors(&text);
    assert_error_at(
        &errs,
        "device \"pdu-b07-a\": SNMP v2c needs community_file or community_env",
        line_of(&text, "[devices.snmp]"),
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let text = BASE.replace("community_file = \"COMMUNITY_FILE\"", "community_env = \"HM_TEST_UNSET_COMMUNITY\"");
    let errs = errors(&text);
    assert!(errs.iter().any(|e| e.contains("HM_TEST_UNSET_COMMUNITY for community is not set")), "{errs:#?}");
    let loaded = load(BASE).unwrap();
    let snmp = loaded.config.devices.iter().find_map(|d| match &d.transport {
        config::Transport::Snmp(s) => Some(s),
        _ => None,
    });
    assert_eq!(snmp.unwrap().community.expose(), "public");
}

#[test]
fn snmp_v3_md5_and_des_are_warned_with_a_position() {
    let v3 = |auth: &str, privacy: &str| {
        BASE.replace(
            "community_file = \"COMMUNITY_FILE\"",
            &format!(
                "version = \"3\"\nuser = \"m\"\nauth = \"{auth}\"\nauth_password_file = \"COMMUNITY_FILE\"\n\
                 priv = \"{privacy}\"\npriv_password_file = \"COMMUNITY_FILE\""
            ),
        )
    };
    let text = v3("md5", "des");
    let warnings: Vec<String> = load(&text).unwrap().warnings.iter().map(|w| w.to_string()).collect();
    assert_error_at(&warnings, "auth md5 is broken", line_of(&text, "auth = "));
    assert_error_at(&warnings, "priv des is broken", line_of(&text, "priv = "));
    assert!(load(&v3("sha256", "aes128")).unwrap().warnings.is_empty());
}

#[test]
fn inline_profile_errors_point_into_the_profile() {
    let text = BASE.to_owned()
        + "\n[profiles.my-probe]\nprotocol = \"modbus\"\n[[profiles.my-probe.points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\naddress = 3\ntype = \"f33\"\n";
    let errs = errors(&text);
    assert_error_at(&errs, "unknown type \"f33\"", line_of(&text, "type = \"f33\""));
}

#[test]
fn profiles_dir_is_loaded_and_its_errors_name_the_profile_file() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("profiles")).unwrap();
    std::fs::write(
        dir.join("profiles/acme-th.toml"),
        "protocol = \"modbus\"\nsource = \"ACME TH-1 manual\"\n[[points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\ntable = \"input\"\naddress = 1\ntype = \"i16\"\nscale = 0.1\n",
    )
    .unwrap();
    // profiles_dir is a top-level key: it must come before the first table.
    let text = with_community(
        &("profiles_dir = \"profiles\"\n".to_owned()
            + &BASE.replace("profile = \"generic-crah\"", "profile = \"acme-th\"")),
    );
    let cfg_path = dir.join("hallmonitor.toml");
    let loaded = config::load_str(&cfg_path, &text).unwrap();
    assert!(loaded.config.devices.iter().any(|d| d.profile.name() == "acme-th"));

    std::fs::write(
        dir.join("profiles/acme-th.toml"),
        "protocol = \"modbus\"\n[[points]]\nname = \"t\"\nmetric = \"Inlet Temp\"\naddress = 1\n",
    )
    .unwrap();
    let err = config::load_str(&cfg_path, &text).unwrap_err();
    let line = err
        .errors
        .iter()
        .map(|d| d.to_string())
        .find(|l| l.contains("acme-th.toml"))
        .expect("error names the profile file");
    assert!(line.contains("acme-th.toml:4:"), "{line}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // sim-*.toml are simulator scenarios, checked by the simulator's own tests.
        if path.extension().is_some_and(|e| e == "toml") && !name.starts_with("sim-") {
            if let Err(e) = config::load(&path) {
                panic!("{} does not load:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

/// BASE with an `[ha]` section; `KEY_FILE` is replaced by a private key file of `key` bytes.
fn with_ha(ha: &str, key: &str) -> String {
    let key_file = secret(&temp_dir(), &format!("ha-{}.key", key.len()), key);
    BASE.to_owned() + "\n[ha]\n" + &ha.replace("KEY_FILE", &key_file.display().to_string())
}

const HA: &str = r#"node = "gw1"
listen = "127.0.0.1:7411"
peer = "10.20.0.12"
witness = "10.20.0.5:7411"
key_file = "KEY_FILE"
"#;
const LONG_KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn a_valid_ha_section_is_built_with_its_defaults() {
    let config = load(&with_ha(HA, LONG_KEY)).unwrap().config;
    let ha = config.ha.expect("[ha] built");
    assert_eq!(ha.node, "gw1");
    assert_eq!(ha.listen.to_string(), "127.0.0.1:7411");
    assert_eq!(ha.peer, "10.20.0.12:7411", "the default port");
    assert_eq!(ha.lease, std::time::Duration::from_secs(10));
    assert_eq!(ha.drift_ppm, 10_000);
    assert_eq!(ha.guard, std::time::Duration::from_secs(2));
    assert_eq!(ha.key.expose(), LONG_KEY);
    assert!(!format!("{ha:?}").contains(LONG_KEY), "the key is never printed");
    assert!(load(BASE).unwrap().config.ha.is_none(), "without [ha] nothing changes");
}

#[test]
fn check_config_summarizes_ha_without_the_key() {
    let config = load(&with_ha(HA, LONG_KEY)).unwrap().config;
    let summary = hallmonitor::commands::check_config::summary(&config);
    assert!(
        summary.contains(
            "ha        node gw1 listening on 127.0.0.1:7411, peer 10.20.0.12:7411, witness 10.20.0.5:7411; \
             lease 10s, drift 1%, guard 2s\n"
        ),
        "{summary}"
    );
    assert!(!summary.contains(LONG_KEY), "{summary}");
    let single = hallmonitor::commands::check_config::summary(&load(BASE).unwrap().config);
    assert!(single.contains("ha        not configured (a single gateway)\n"), "{single}");
}

#[test]
fn ha_mistakes_are_each_reported_with_their_position() {
    let text = with_ha(
        &(HA.replace("node = \"gw1\"", "node = \"GW 1\"")
            .replace("listen = \"127.0.0.1:7411\"", "listen = \"gw1.example:7411\"")
            .replace("peer = \"10.20.0.12\"", "peer = \"10.20.0.12:99999\"")
            + "drift = \"two percent\"\n"),
        "short",
    );
    let errs = errors(&text);
    assert_error_at(&errs, "ha.node \"GW 1\" must match", line_of(&text, "node = \"GW 1\""));
    assert_error_at(&errs, "ha.listen \"gw1.example:7411\" must be IP:port", line_of(&text, "listen ="));
    assert_error_at(&errs, "ha.peer: bad port", line_of(&text, "peer ="));
    assert_error_at(&errs, "the key has 5 bytes; the peer link needs at least 32", line_of(&text, "key_file ="));
    assert_error_at(&errs, "ha.drift: \"two percent\" must be a percentage", line_of(&text, "drift ="));
}

#[test]
fn ha_timing_without_room_for_a_lost_renewal_is_refused_at_the_lease() {
    let text = with_ha(&(HA.to_owned() + "lease = \"3s\"\nguard = \"1s\"\n"), LONG_KEY);
    let errs = errors(&text);
    assert_error_at(&errs, "more than two renew periods", line_of(&text, "lease = \"3s\""));
    // A lease long enough for the (default) guard fits.
    load(&with_ha(&(HA.to_owned() + "lease = \"7s\"\nguard = \"2s\"\n"), LONG_KEY)).unwrap();
}

#[test]
fn an_ha_guard_shorter_than_a_device_timeout_is_refused() {
    let text = with_ha(&(HA.to_owned() + "guard = \"500ms\"\n"), LONG_KEY);
    let errs = errors(&text);
    assert_error_at(&errs, "ha.guard 500ms is shorter than device", line_of(&text, "guard = \"500ms\""));
}
