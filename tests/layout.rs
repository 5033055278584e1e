//! The shape of the source, checked: what docs/architecture.md and
//! `src/event_loop/mod.rs` say about the layout stays true.
//!
//! - no file in src/ or tests/ passes 900 lines;
//! - the modules of src/, drawn from their imports (`crate::…`, tests
//!   left out), have no circle;
//! - the files of `src/event_loop/` (one `impl Server` each) call only the
//!   layers below them, in the order `mod.rs` gives;
//! - a test that skips says so through `common::skip`, which shows in
//!   `cargo test`'s output, not with a `println!` it captures;
//! - CI (`.ci/run`) runs the test command README gives;
//! - what README.md and docs/ cite exists: every `src/`, `tests/`,
//!   `docs/` or `benches/` path they name, and every function a
//!   `file.rs::name` citation names in that file.
//!
//! It reads the source as text, simply: a method is a `fn` at four spaces
//! inside an `impl Server {` block, a call is `self.name(`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `src/event_loop/`'s files, top to bottom, as its `mod.rs` lists them.
const LAYERS: &[&str] = &[
    "mod",
    "shutdown",
    "time",
    "report",
    "visit",
    "relay",
    "admission",
    "entry",
    "output",
    "closing",
    "startup",
];

/// Queries on the struct, in `mod.rs`, that any layer may ask.
const QUERIES: &[&str] = &["active", "is_tls"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file without its unit tests and without `//` comments.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers that follow `prefix` in `text`.
fn names_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Methods called on `self` in `text`: `self.name(`.
fn calls(text: &str) -> Vec<&str> {
    names_after(text, "self.")
        .into_iter()
        .filter(|name| text.contains(&format!("self.{name}(")))
        .collect()
}

#[test]
fn no_file_in_src_or_tests_passes_900_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    rust_files(&tests(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).unwrap().lines().count();
            (n > 900).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split by layer: {long:?}");
}

#[test]
fn the_modules_imports_have_no_circle() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = code(f);
        for used in names_after(&text, "crate::") {
            if used != module {
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(used.to_string());
            }
        }
    }
    // A module on a circle reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert!(
                m != start,
                "{start} imports something that imports it back: {edges:#?}"
            );
            if seen.insert(m.clone()) {
                todo.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
}

#[test]
fn the_loops_layers_call_only_those_below() {
    let dir = src().join("event_loop");
    let layer = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut defined: BTreeMap<String, &str> = BTreeMap::new();
    let mut texts = Vec::new();
    for &file in LAYERS {
        let text = code(&dir.join(format!("{file}.rs")));
        // The methods of `impl Server` blocks.
        for block in text.split("\nimpl Server {").skip(1) {
            let block = block.split("\n}").next().unwrap_or("");
            for line in block.lines() {
                let line = line.strip_prefix("    ").unwrap_or("");
                for prefix in ["pub(super) fn ", "pub fn ", "fn "] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let name = rest.split(['(', '<']).next().unwrap_or("");
                        let before = defined.insert(name.to_string(), file);
                        assert!(before.is_none(), "{name} is defined twice");
                    }
                }
            }
        }
        texts.push((file, text));
    }
    assert!(defined.len() > 50, "found only {} methods", defined.len());
    let mut upward = Vec::new();
    for (file, text) in &texts {
        for called in calls(text) {
            let Some(&home) = defined.get(called) else {
                continue;
            };
            if home == *file || QUERIES.contains(&called) {
                continue;
            }
            if layer(home) <= layer(file) {
                upward.push(format!("{file}.rs calls {called} in {home}.rs"));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "calls up a layer: {upward:#?}");
}

#[test]
fn skips_are_said_where_cargo_test_shows_them() {
    let mut files = Vec::new();
    rust_files(&tests(), &mut files);
    let mut quiet = Vec::new();
    // skip.rs is the one place that writes the line; this file names the
    // macros it looks for.
    let exempt = |f: &PathBuf| f.ends_with("common/skip.rs") || f.ends_with("layout.rs");
    for f in files.iter().filter(|f| !exempt(f)) {
        let text = fs::read_to_string(f).unwrap();
        // `println!(` and `eprintln!(` alike.
        for (i, _) in text.match_indices("println!(") {
            let call = &text[i..];
            let call = &call[..call.find(");").unwrap_or(call.len())];
            if call.to_lowercase().contains("skip") {
                let line = text[..i].lines().count();
                quiet.push(format!("{}:{line}", f.display()));
            }
        }
    }
    assert!(
        quiet.is_empty(),
        "a skip printed where libtest captures it; use common::skip: {quiet:?}"
    );
}

#[test]
fn ci_runs_the_test_command_readme_gives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    // The indented line after "Test it:".
    let command = readme
        .split("Test it:")
        .nth(1)
        .and_then(|rest| rest.lines().map(str::trim).find(|l| !l.is_empty()))
        .expect("README says 'Test it:' and then the command");
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        "README's test command `{command}` is not a line of .ci/run"
    );
}

/// README.md and docs/*.md, as text.
fn docs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(root).unwrap().display().to_string();
            (name, fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// True for the characters of a path as the docs write one.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Paths in `text` that start with one of `roots` (`src/`, ...), at a word
/// boundary, without a trailing full stop. Only those that name a file (an
/// extension) or a directory (a trailing `/`) are citations; others are
/// examples (`docs/link`, a symlink in the file server's section).
fn cited_paths<'a>(text: &'a str, roots: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    for root in roots {
        for (i, _) in text.match_indices(root) {
            if text[..i].chars().next_back().is_some_and(path_char) {
                continue;
            }
            let rest = &text[i..];
            let end = rest.find(|c| !path_char(c)).unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            let file = Path::new(path).extension().is_some();
            if file || path.ends_with('/') {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn the_docs_cite_paths_and_functions_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    rust_files(&src(), &mut sources);
    rust_files(&tests(), &mut sources);
    let mut missing = Vec::new();
    for (doc, text) in docs() {
        for path in cited_paths(&text, &["src/", "tests/", "docs/", "benches/"]) {
            if !root.join(path).exists() {
                missing.push(format!("{doc}: {path} does not exist"));
            }
        }
        // `file.rs::name`: `tests/server.rs::a_test`, `lib.rs::serve`. A
        // file named without its directory may be any of that name.
        for (i, _) in text.match_indices(".rs::") {
            let start = text[..i]
                .rfind(|c: char| !path_char(c))
                .map_or(0, |j| j + 1);
            let file = &text[start..i + 3];
            let name: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let homes: Vec<&PathBuf> = sources.iter().filter(|s| s.ends_with(file)).collect();
            if homes.is_empty() {
                missing.push(format!("{doc}: {file} (in {file}::{name}) does not exist"));
                continue;
            }
            let defined = homes.iter().any(|h| {
                let text = fs::read_to_string(h).unwrap();
                ["fn ", "struct ", "enum ", "const ", "mod "]
                    .iter()
                    .any(|kind| {
                        text.match_indices(&format!("{kind}{name}")).any(|(j, _)| {
                            let after = text[j + kind.len() + name.len()..].chars().next();
                            !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        })
                    })
            });
            if !defined {
                missing.push(format!("{doc}: {file}::{name} names nothing in {file}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "stale citations: {missing:#?}");
}
