//! Build script: the commit this binary is built from, for `--version`,
//! the start-up line and the metrics (`src/build.rs`, the module, reads it
//! as `MONOLOOP_COMMIT`).
//!
//! From a git checkout, `git rev-parse --short HEAD`; from a packaged crate
//! (`cargo package`, a crates.io download), the commit cargo wrote into
//! `.cargo_vcs_info.json`; otherwise (a tarball, no git installed)
//! `unknown`. Nothing here can fail a build: a missing tool or file only
//! means a less precise answer, so `cargo install` from anywhere works.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let commit = from_git(&dir)
        .or_else(|| from_vcs_info(&dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MONOLOOP_COMMIT={commit}");
    // Without this, cargo would run the script again after a change to any
    // file of the package; `from_git` adds the files that name the commit.
    println!("cargo:rerun-if-changed=build.rs");
}

/// `git ARGS` run in `dir`: its output, trimmed, if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The short commit of the checkout `dir` is in, if it is monoloop's own:
/// a crate unpacked inside another repository, or cargo's own copy under
/// target/package, is not tracked there, and its commit would be someone
/// else's.
fn from_git(dir: &Path) -> Option<String> {
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    let commit = git(dir, &["rev-parse", "--short", "HEAD"])?;
    // Build again when HEAD moves: a checkout changes HEAD, a commit the
    // branch's ref (or packed-refs, where git keeps refs it has packed).
    // Paths come from git, since a worktree keeps HEAD apart from refs.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// The commit `cargo package` recorded: `"sha1": "<40 hex digits>"` in
/// `.cargo_vcs_info.json`, shortened as git shortens it.
fn from_vcs_info(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let (_, rest) = text.split_once("\"sha1\"")?;
    let (_, rest) = rest.split_once('"')?;
    let sha: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (sha.len() >= 7).then(|| sha[..7].to_string())
}
