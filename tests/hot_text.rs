//! The daemon's steady-state code is linked together (`src/hot-text.ld`, `build.rs`): a
//! gateway then keeps ~1.5 MiB of code resident for its loop, not the ~4 MiB it was spread
//! over (issue 13). These check the built binary, as `nm` shows it.

use std::process::Command;

const SCRIPT: &str = include_str!("../src/hot-text.ld");
const SECTION: &str = ".text.hallmonitor_hot";

/// The section patterns of the script's rules, without the `.text.` / `.text.unlikely.`
/// prefixes: symbol globs (`*` only).
fn rule_globs() -> Vec<&'static str> {
    SCRIPT
        .lines()
        .filter_map(|l| l.trim().strip_prefix("*(.text."))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// `*` matches any run of characters; nothing else is special.
fn glob_matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (k, part) in parts.iter().enumerate() {
        if k + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// (address, size, name) of the binary's functions, and the hot section's address range.
fn functions_and_hot_range() -> (Vec<(u64, u64, String)>, std::ops::Range<u64>) {
    let bin = env!("CARGO_BIN_EXE_hallmonitor");
    let nm = Command::new("nm").args(["-S", "--defined-only", bin]).output().expect("nm (binutils) runs");
    assert!(nm.status.success(), "nm {bin}: {}", String::from_utf8_lossy(&nm.stderr));
    let functions = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [addr, size, "t" | "T", name] => {
                    Some((u64::from_str_radix(addr, 16).ok()?, u64::from_str_radix(size, 16).ok()?, name.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    let readelf = Command::new("readelf").args(["-SW", bin]).output().expect("readelf (binutils) runs");
    let sections = String::from_utf8_lossy(&readelf.stdout).into_owned();
    let line = sections
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == SECTION))
        .unwrap_or_else(|| panic!("{bin} has no {SECTION} section: is build.rs passing src/hot-text.ld?\n{sections}"));
    let after: Vec<&str> = line.split(SECTION).nth(1).unwrap_or("").split_whitespace().collect();
    // Type, Address, Off, Size, ...
    let addr = u64::from_str_radix(after[1], 16).expect("section address");
    let size = u64::from_str_radix(after[3], 16).expect("section size");
    (functions, addr..addr + size)
}

#[test]
fn the_functions_of_a_poll_and_a_reading_are_linked_together() {
    let (functions, hot) = functions_and_hot_range();
    assert!(hot.end - hot.start >= 64 * 1024, "{SECTION} is {} bytes", hot.end - hot.start);
    for wanted in ["6Engine14handle_reading17h", "12DevicePoller6decode17h", "4wire10decode_oid17h"] {
        let found: Vec<_> = functions.iter().filter(|(_, _, n)| n.contains(wanted)).collect();
        assert!(!found.is_empty(), "no function {wanted} in the binary");
        for (addr, _, name) in found {
            assert!(hot.contains(addr), "{name} at {addr:#x} is outside {SECTION} {hot:x?}");
        }
    }
}

#[test]
fn the_hot_list_still_names_the_binarys_functions() {
    // A rename or a refactor leaves rules that match nothing: harmless, but the code they
    // stood for is back to being spread out. Past this share, rerun scripts/hot-text.
    let (functions, _) = functions_and_hot_range();
    let globs = rule_globs();
    assert!(globs.len() > 100, "{} rules in src/hot-text.ld", globs.len());
    let matched = globs.iter().filter(|g| functions.iter().any(|(_, _, n)| glob_matches(g, n))).count();
    let share = matched as f64 / globs.len() as f64;
    assert!(
        share >= 0.75,
        "only {matched} of {} rules of src/hot-text.ld name a function of this build: rerun scripts/hot-text",
        globs.len()
    );
}

#[test]
fn a_glob_matches_as_the_linker_reads_it() {
    assert!(glob_matches("_ZN3foo3bar17h*", "_ZN3foo3bar17h0123456789abcdefE"));
    assert!(glob_matches("_RNvCs*_3std4mainB*_", "_RNvCsjrHSE_3std4mainB5_"));
    assert!(!glob_matches("_ZN3foo3bar17h*", "_ZN3foo3baz17h0123456789abcdefE"));
    assert!(!glob_matches("main", "mainly"));
    assert!(glob_matches("main", "main"));
}
