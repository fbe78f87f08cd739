//! The repository carries its own contracts (`docs/`): no file may point to the outside design
//! document they were first written in, every `docs/<file>.md#<heading>` reference in code,
//! tests, configs and docs must name an existing file and heading, and every relative link in
//! the Markdown files must resolve.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The name of the outside document, as it was cited (uppercase); split so that this file does
/// not cite it itself.
const OUTSIDE_DOC: &str = concat!("DES", "IGN");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every text file of the repository with its content; build output, git metadata and other
/// hidden directories (but `.ci`) are left out, as are files that are not UTF-8.
fn text_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "target" && (!name.starts_with('.') || name == ".ci") {
                    walk(&path, out);
                }
            } else if let Ok(text) = fs::read_to_string(&path) {
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The anchor GitHub gives a heading: lowercase, punctuation but `-` and `_` removed, spaces
/// turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code fences); a repeated heading gets
/// `-1`, `-2`, ... as on GitHub.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if in_fence || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.insert(anchor);
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// References of the form `docs/<name>.md` or `docs/<name>.md#<anchor>` in any text, as
/// (offset, path from the repository root, anchor).
fn docs_references(text: &str) -> Vec<(usize, String, Option<String>)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("docs/") {
        if text[..at].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        let rest = &text[at..];
        let path_len = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..path_len].trim_end_matches('.');
        if !path.ends_with(".md") {
            continue;
        }
        let anchor = rest[path.len()..].strip_prefix('#').map(|a| {
            let len = a.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(a.len());
            a[..len].to_owned()
        });
        out.push((at, path.to_owned(), anchor.filter(|a| !a.is_empty())));
    }
    out
}

/// Targets of inline Markdown links `[text](target)` outside code fences, as (line, target);
/// web addresses are left out.
fn markdown_links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push((i + 1, target.to_owned()));
            }
        }
    }
    out
}

/// Checks that `path` exists and, when an anchor is given, that it is a heading of that
/// Markdown file; `Err` says what is wrong.
fn check_target(path: &Path, anchor: Option<&str>) -> Result<(), String> {
    if !path.exists() {
        return Err(format!("{} does not exist", relative(path)));
    }
    let Some(anchor) = anchor else { return Ok(()) };
    if path.extension().and_then(|e| e.to_str()) != Some("md") {
        return Ok(());
    }
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", relative(path)))?;
    if anchors(&text).contains(anchor) {
        Ok(())
    } else {
        Err(format!("{} has no heading with anchor #{anchor}", relative(path)))
    }
}

#[test]
fn no_file_refers_to_the_outside_design_document() {
    let mut found = Vec::new();
    for (path, text) in text_files() {
        for (at, _) in text.match_indices(OUTSIDE_DOC) {
            let before = text[..at].chars().next_back();
            let after = text[at + OUTSIDE_DOC.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !word(before) && !word(after) {
                found.push(format!("{}:{}", relative(&path), line_of(&text, at)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines cite a document outside the repository; point them into docs/ instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_docs_reference_names_an_existing_file_and_heading() {
    let files = text_files();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in &files {
        for (at, target, anchor) in docs_references(text) {
            checked += 1;
            if let Err(e) = check_target(&root().join(&target), anchor.as_deref()) {
                broken.push(format!("{}:{}: {e}", relative(path), line_of(text, at)));
            }
        }
    }
    assert!(broken.is_empty(), "broken references into docs/:\n{}", broken.join("\n"));
    // The code and tests do point into docs/: a scanner that finds nothing checks nothing.
    assert!(checked >= 15, "only {checked} references into docs/ found");
}

#[test]
fn every_relative_markdown_link_resolves() {
    let mut broken = Vec::new();
    for (path, text) in text_files() {
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        for (line, target) in markdown_links(&text) {
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() { path.clone() } else { path.parent().unwrap().join(file) };
            if let Err(e) = check_target(&resolved, anchor) {
                broken.push(format!("{}:{line}: ({target}) {e}", relative(&path)));
            }
        }
    }
    assert!(broken.is_empty(), "broken Markdown links:\n{}", broken.join("\n"));
}

#[test]
fn the_scanners_find_what_they_look_for() {
    assert_eq!(slug(" Outbox bound"), "outbox-bound");
    assert_eq!(slug("Cross-compiling for ARM gateways"), "cross-compiling-for-arm-gateways");
    assert_eq!(slug("`P/S/health` (QoS 0)"), "pshealth-qos-0");
    let md = "# Title\n## Topics\n```\n## not a heading\n```\n## Topics\n#nospace\n";
    let expected: BTreeSet<String> = ["title", "topics", "topics-1"].into_iter().map(String::from).collect();
    assert_eq!(anchors(md), expected);

    // Built with concat! so that this file holds no reference itself.
    let text = concat!("see docs", "/contracts.md#topics. Or docs", "/scenario.md, or my", "doc", "s/x.md");
    let refs: Vec<_> = docs_references(text).into_iter().map(|(_, p, a)| (p, a)).collect();
    assert_eq!(
        refs,
        [
            (concat!("docs", "/contracts.md").to_owned(), Some("topics".to_owned())),
            (concat!("docs", "/scenario.md").to_owned(), None)
        ]
    );
    let links = markdown_links("[a](x.md#b) [web](https://example.net) [c](#d)\n```\n[e](f)\n```\n");
    assert_eq!(links, [(1, "x.md#b".to_owned()), (1, "#d".to_owned())]);

    let contracts = root().join(concat!("docs", "/contracts.md"));
    assert!(check_target(&contracts, Some("durability")).is_ok());
    assert!(check_target(&contracts, Some("no-such-heading")).is_err());
    assert!(check_target(&root().join(concat!("docs", "/missing.md")), None).is_err());
}
