//! What this binary is, for `--version`, the start-up line and the
//! metrics' `monoloop_build_info`: its version, the commit it was built
//! from, and whether TLS is built in.
//!
//! The commit is whatever the build set in `MONOLOOP_COMMIT` (the build
//! script, `build.rs` at the top, asks git), read when the crate is
//! compiled, or `unknown`: [`commit`] is the one place that reads it, so that another
//! source is one change away.

/// The crate's version, from Cargo.toml.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The commit this binary was built from, or `unknown`.
pub fn commit() -> &'static str {
    option_env!("MONOLOOP_COMMIT").unwrap_or("unknown")
}

/// Whether the `tls` feature is built in.
pub fn tls() -> bool {
    cfg!(feature = "tls")
}

/// `monoloop 0.1.0 (commit 9524292, tls)`, or `no-tls` for a build
/// without the feature.
pub fn describe() -> String {
    let tls = if tls() { "tls" } else { "no-tls" };
    format!("monoloop {} (commit {}, {tls})", version(), commit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_names_its_version_commit_and_tls() {
        let line = describe();
        assert!(line.starts_with(&format!("monoloop {} (commit ", version())));
        assert!(!commit().is_empty());
        assert!(line.ends_with(if tls() { ", tls)" } else { ", no-tls)" }));
    }
}
