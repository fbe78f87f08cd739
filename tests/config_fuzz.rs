//! The loader never panics, whatever it is fed: random text, and valid configs mutated
//! byte by byte. Every failure must be an error with a message.

use std::path::Path;

use proptest::prelude::*;

const VALID: &str = include_str!("../config/hallmonitor.toml");

fn check(text: &str) {
    match hallmonitor::config::load_str(Path::new("fuzz.toml"), text) {
        Ok(_) => {}
        Err(e) => {
            assert!(!e.errors.is_empty());
            assert!(e.errors.iter().all(|d| !d.message.is_empty()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }

    #[test]
    fn mutated_valid_config_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn numbers_in_any_field_never_panic(n in any::<i64>(), f in any::<f64>()) {
        let text = VALID
            .replace("unit = 7", &format!("unit = {n}"))
            .replace("warn_high = 27.0", &format!("warn_high = {f:?}"))
            .replace("recurrence = 3", &format!("recurrence = {n}"));
        check(&text);
    }
}
