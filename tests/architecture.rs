//! The architecture, enforced: reads every file under `src/` and fails, naming file and line,
//! where the code breaks the map of ARCHITECTURE.md. The tables below are the single truth that
//! ARCHITECTURE.md quotes; change them only together with it.
//!
//! It checks two things:
//! - **Layers**: a module may import modules of a lower tier, and of its own tier only along an
//!   edge listed in `SIDEWAYS`; never a tier above (no cycles, no upside-down imports).
//! - **Crates and clocks in their place**: each protocol crate is used only by the stage that owns
//!   it, and the engine never reads a clock, sleeps or touches tokio.
//!
//! The scan is textual, on code with comments, strings and char literals blanked out: it sees
//! `crate::x`, `crate::{x, y}`, `super::` paths that leave their top module, and `hallmonitor::x`
//! in `main.rs`. Unit tests inside `src/` are held to the same rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, top to bottom. A module may import any module of a lower tier.
///
/// `sim` (simulated devices, scenarios, the embedded broker) serves `demo`, `sim`, tests and
/// benchmarks. It sits right under `commands`: it may use the agent (e.g. to implement the
/// agent's clock with simulated time) and everything below, and nothing but `commands` (and
/// tests, benches) may import it; in particular the daemon (`agent`) never does.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["commands"],
    &["sim"],
    &["agent"],
    &["sources", "engine", "store", "publish", "status", "ha"],
    &["profiles", "config", "outbox"],
    &["model"],
    &["logging", "error", "backoff"],
];

/// Imports allowed between modules of one tier: (importer, imported, why). Acyclic on purpose.
const SIDEWAYS: &[(&str, &str, &str)] = &[
    ("publish", "store", "publish drains the outbox"),
    ("publish", "engine", "the NOC messages serialise the engine's events"),
    ("status", "engine", "the status snapshot shows open incidents and noise counters"),
    ("status", "sources", "the status snapshot shows per-protocol poll counters"),
    ("config", "profiles", "a device names its profile"),
];

/// Where each external crate may be used: (crate as written in code, allowed path prefixes).
const CRATES: &[(&str, &[&str])] = &[
    ("rumqttc", &["src/publish/", "src/sim/broker.rs"]),
    ("rumqttd", &["src/sim/broker.rs"]),
    ("sled", &["src/store/"]),
    ("tokio_modbus", &["src/sources/", "src/sim/"]),
    ("async_snmp", &["src/sources/", "src/sim/"]),
];

/// The sans-IO modules: time is passed in, they do no IO (`ha` is the gateway pair's election,
/// peer-link authentication and replication rules).
const SANS_IO: &[&str] = &["engine", "ha"];

/// Words the engine (and every `SANS_IO` module) must not contain: it never awaits, never reads a clock, never sleeps.
const ENGINE_FORBIDDEN: &[&str] =
    &["tokio", "tokio_util", "Instant::now", "SystemTime", "Timestamp::now", "sleep", "sleep_until"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    /// A short, stable name of what is broken, e.g. `imports commands` or `uses rumqttc`.
    rule: String,
    why: String,
}

#[test]
fn the_code_follows_the_architecture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = check_tree(root);
    let failures: Vec<String> =
        found.iter().map(|v| format!("{}:{}: {} ({})", v.file, v.line, v.rule, v.why)).collect();
    assert!(failures.is_empty(), "architecture violations:\n{}", failures.join("\n"));
}

#[test]
fn the_tables_are_consistent() {
    let all: Vec<&str> = LAYERS.iter().flat_map(|t| t.iter().copied()).collect();
    let unique: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a module is in two tiers");
    for (a, b, _) in SIDEWAYS {
        assert_eq!(tier(a), tier(b), "SIDEWAYS {a} -> {b} crosses tiers");
        assert!(tier(a).is_some(), "SIDEWAYS names unknown module {a}");
        assert!(!SIDEWAYS.iter().any(|(x, y, _)| x == b && y == a), "SIDEWAYS has the cycle {a} <-> {b}");
    }
}

/// The checker must see what it claims to see; a test of the test.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let cases: &[(&str, &str, &str)] = &[
        ("src/agent/mod.rs", "use crate::commands::UsageError;\n", "imports commands"),
        ("src/sources/snmp/probe.rs", "fn f() { crate::commands::runtime(); }\n", "imports commands"),
        ("src/store/mod.rs", "use crate::{\n    model::Seq,\n    publish::message::Envelope,\n};\n", "imports publish"),
        ("src/sources/modbus/probe.rs", "use super::super::super::sim::SimValues;\n", "imports sim"),
        ("src/engine/mod.rs", "let t = std::time::Instant::now();\n", "uses Instant::now in the engine"),
        ("src/engine/state.rs", "async fn f() { tokio::task::yield_now().await }\n", "uses tokio in the engine"),
        ("src/commands/tail.rs", "use rumqttc::AsyncClient;\n", "uses rumqttc"),
        ("src/agent/mod.rs", "fn f(_: sled::Db) {}\n", "uses sled"),
        ("src/ha/lease.rs", "let t = std::time::Instant::now();\n", "uses Instant::now in the ha"),
        ("src/ha/link.rs", "use crate::agent::Agent;\n", "imports agent"),
        ("src/commands/poll.rs", "use tokio_modbus::prelude::*;\n", "uses tokio_modbus"),
        ("src/newthing.rs", "fn f() {}\n", "is not in the layer table"),
    ];
    for (file, code, rule) in cases {
        let got = check_file(file, code);
        assert!(got.iter().any(|v| v.rule == *rule), "{file}: {code:?} should break {rule:?}, got {got:?}");
    }
    // Comments, docs and strings are not code.
    let quiet = "//! uses rumqttc and crate::commands\n/* sled */ fn f() { let _ = \"tokio_modbus crate::sim\"; }\n";
    assert_eq!(check_file("src/engine/mod.rs", quiet), vec![]);
    // Imports down, and allowed sideways, are fine.
    let fine = "use crate::{engine::Event, model::Timestamp};\nuse crate::store::Store;\n";
    assert_eq!(check_file("src/publish/health.rs", fine), vec![]);
}

fn check_tree(root: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10, "found only {} files under {}", files.len(), root.join("src").display());
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        out.extend(check_file(&rel, &text));
    }
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/sources/modbus/probe.rs` -> [sources, modbus, probe].
fn module_path(file: &str) -> Vec<String> {
    let inner = file.strip_prefix("src/").unwrap_or(file).trim_end_matches(".rs");
    let mut parts: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn tier(module: &str) -> Option<usize> {
    LAYERS.iter().position(|t| t.contains(&module))
}

fn check_file(file: &str, text: &str) -> Vec<Violation> {
    let path = module_path(file);
    let me = path.first().cloned().unwrap_or_default();
    let mut out = Vec::new();
    let v = |line, rule: String, why: String| Violation { file: file.to_owned(), line, rule, why };
    if me == "lib" {
        return out; // only declares the modules
    }
    let Some(my_tier) = tier(&me) else {
        out.push(v(1, "is not in the layer table".into(), format!("add `{me}` to LAYERS in tests/architecture.rs")));
        return out;
    };
    let code = blank_non_code(text);
    for (line, target) in imports(&code, &path) {
        if target == me {
            continue;
        }
        let Some(their_tier) = tier(&target) else { continue }; // `crate::foo!` macros, std items
        let allowed = their_tier > my_tier
            || (their_tier == my_tier && SIDEWAYS.iter().any(|(a, b, _)| *a == me && *b == target));
        if !allowed {
            let why = if their_tier < my_tier {
                format!("`{me}` is below `{target}` in LAYERS")
            } else {
                format!("`{me}` and `{target}` share a tier and SIDEWAYS has no {me} -> {target}")
            };
            out.push(v(line, format!("imports {target}"), why));
        }
    }
    for (krate, allowed) in CRATES {
        if allowed.iter().any(|a| file.starts_with(a)) {
            continue;
        }
        for line in find_word(&code, krate) {
            out.push(v(line, format!("uses {krate}"), format!("only {} may use {krate}", allowed.join(", "))));
        }
    }
    if SANS_IO.contains(&me.as_str()) {
        for word in ENGINE_FORBIDDEN {
            for line in find_word(&code, word) {
                out.push(v(
                    line,
                    format!("uses {word} in the {me}"),
                    format!("the {me} never awaits, never reads a clock, never does IO"),
                ));
            }
        }
    }
    out
}

/// Each crate-internal import as (line, top module imported).
fn imports(code: &str, path: &[String]) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let roots: &[&str] = if path == ["main"] { &["hallmonitor::", "crate::"] } else { &["crate::", "super::"] };
    for root in roots {
        for (at, _) in code.match_indices(root) {
            if at > 0 && is_ident(bytes[at - 1]) || at >= 2 && &code[at - 2..at] == "::" {
                continue; // part of a longer path: `foo::super::`, `my_crate::`
            }
            let mut rest = &code[at..];
            if *root == "super::" {
                // Climb out of this file's module: `super::super::x` from [a, b, c] is [a, x].
                let mut p = path.to_vec();
                while let Some(r) = rest.strip_prefix("super::") {
                    p.pop();
                    rest = r;
                }
                if !p.is_empty() {
                    continue; // still inside its own top module
                }
            } else {
                rest = &rest[root.len()..];
            }
            let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
            let start = code.len() - rest.len();
            if rest.starts_with('{') {
                for (offset, name) in group_heads(rest) {
                    out.push((line_of(start + offset), name));
                }
            } else {
                let name: String = rest.bytes().take_while(|b| is_ident(*b)).map(char::from).collect();
                if !name.is_empty() {
                    out.push((line_of(start), name));
                }
            }
        }
    }
    out
}

/// The first path segment of each item of a `{a::b, c, d::{e}}` group, with its offset.
fn group_heads(group: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect_head = false;
    let bytes = group.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                expect_head = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_head = true,
            b if expect_head && is_ident(b) => {
                let end = (i..bytes.len()).find(|&j| !is_ident(bytes[j])).unwrap_or(bytes.len());
                out.push((i, group[i..end].to_owned()));
                expect_head = false;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Lines where `word` (which may contain `::`) occurs as whole identifiers.
fn find_word(code: &str, word: &str) -> Vec<usize> {
    let bytes = code.as_bytes();
    code.match_indices(word)
        .filter(|(at, _)| {
            let before = *at == 0 || !is_ident(bytes[at - 1]);
            let after = bytes.get(at + word.len()).is_none_or(|b| !is_ident(*b));
            before && after
        })
        .map(|(at, _)| code[..at].matches('\n').count() + 1)
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The code with comments, string and char literals replaced by spaces (newlines kept).
fn blank_non_code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = (i..b.len()).find(|&j| b[j] == b'\n').unwrap_or(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br"))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // Raw string: r"..", r#".."#, br#".."#.
            let mut j = i + if rest[0] == b'b' { 2 } else { 1 };
            let hashes = b[j..].iter().take_while(|c| **c == b'#').count();
            j += hashes;
            if b.get(j) != Some(&b'"') {
                i += 1; // an identifier like `r#type` or `brand`
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let end = (j + 1..b.len()).find(|&k| b[k..].starts_with(&close)).map_or(b.len(), |k| k + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a): only the first is blanked.
            let end = if rest.get(1) == Some(&b'\\') {
                (i + 2..b.len()).find(|&k| b[k] == b'\'').map(|k| k + 1)
            } else {
                // `i + 1` is a char boundary: byte `i` is the ASCII quote.
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch_len) == Some(&b'\'')).then_some(i + 2 + ch_len)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else if is_ident(rest[0]) {
            // Skip whole identifiers so `r` or `b` inside one never starts a literal.
            let end = (i..b.len()).find(|&j| !is_ident(b[j])).unwrap_or(b.len());
            if end > i + 1 || !matches!(rest[0], b'r' | b'b') {
                i = end;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: only ASCII is replaced by ASCII")
}
