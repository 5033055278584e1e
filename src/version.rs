//! What this binary is: its version, the commit it was built from (found
//! by `build.rs`: a short hash, or `unknown` outside a git checkout), and
//! whether TLS is built in. `--version` prints [`line`]; anything else that
//! reports the build takes the same facts from here.

/// The crate's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit, as `build.rs` found it.
pub const COMMIT: &str = env!("MONOLOOP_COMMIT");

/// Whether the `tls` feature is built in.
pub const TLS: bool = cfg!(feature = "tls");

/// What `monoloop --version` prints (without the newline):
/// `monoloop 0.1.0 (commit 9524292, tls)`, or `no-tls` for a build
/// without the feature.
pub fn line() -> String {
    let tls = if TLS { "tls" } else { "no-tls" };
    format!("monoloop {VERSION} (commit {COMMIT}, {tls})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_version_the_commit_and_tls() {
        let line = line();
        assert!(line.starts_with(&format!("monoloop {VERSION} (commit ")));
        assert!(line.ends_with(if TLS { ", tls)" } else { ", no-tls)" }));
        assert!(
            COMMIT == "unknown"
                || COMMIT.len() >= 7 && COMMIT.bytes().all(|b| b.is_ascii_hexdigit()),
            "{COMMIT}"
        );
    }
}
