//! The relays across machines: `--cluster URL` and the options that need
//! it (`--cluster-prefix`, `--cluster-ca`, `--cluster-outbox`), read into
//! a [`ClusterOptions`] and checked together.
//!
//! Only broadcast and chat read them (`options.rs` says so): given to
//! another mode they are left over, and `parse.rs` refuses them as it
//! refuses any option a mode does not use. The URL's syntax is
//! `cluster/url.rs`'s; a problem with it quotes the URL with its password
//! hidden, since `main.rs` prints problems on stderr, which a service
//! manager keeps in its journal. Nothing is resolved or connected here and
//! the CA file is not read: the link does that when it starts.

use crate::cluster::url::{self, ClusterUrl};

use super::model::{ClusterOptions, Command, DEFAULT_CLUSTER_OUTBOX, DEFAULT_CLUSTER_PREFIX};
use super::options;
use super::parse::{opt, raw_value, NOT_BUILT};
use super::values::{cluster_outbox, cluster_prefix, path};

/// The cluster options of `command`: `None` without `--cluster` (or for a
/// mode that takes none, which leaves them to be refused as misplaced).
/// An option that needs `--cluster` given without it, `--cluster-ca`
/// without `rediss://`, and `rediss://` in a build without TLS are
/// problems.
pub(super) fn cluster_options(
    args: &mut pico_args::Arguments,
    command: Command,
) -> Result<Option<ClusterOptions>, String> {
    if !options::takes(command, "--cluster") {
        return Ok(None);
    }
    let url = url_option(args)?;
    let prefix = opt(args, "--cluster-prefix", cluster_prefix)?;
    let ca = opt(args, "--cluster-ca", path)?;
    let outbox = opt(args, "--cluster-outbox", cluster_outbox)?;
    let Some(url) = url else {
        let given = [
            ("--cluster-prefix", prefix.is_some()),
            ("--cluster-ca", ca.is_some()),
            ("--cluster-outbox", outbox.is_some()),
        ];
        return match given.iter().find(|(_, on)| *on) {
            Some((option, _)) => Err(format!("{option} needs --cluster")),
            None => Ok(None),
        };
    };
    if url.tls && cfg!(not(feature = "tls")) {
        return Err(format!(
            "--cluster {url} needs TLS, {NOT_BUILT}; redis:// is plain TCP"
        ));
    }
    if ca.is_some() && cfg!(not(feature = "tls")) {
        return Err(format!("--cluster-ca needs TLS, {NOT_BUILT}"));
    }
    if ca.is_some() && !url.tls {
        return Err(
            "--cluster-ca needs a rediss:// URL: redis:// is plain TCP, with no \
             certificate to verify"
                .into(),
        );
    }
    Ok(Some(ClusterOptions {
        url,
        prefix: prefix.unwrap_or_else(|| DEFAULT_CLUSTER_PREFIX.into()),
        ca,
        outbox: outbox.unwrap_or(DEFAULT_CLUSTER_OUTBOX),
    }))
}

/// `--cluster URL`, read as `opt` reads an option, but quoting the URL
/// with its password hidden.
fn url_option(args: &mut pico_args::Arguments) -> Result<Option<ClusterUrl>, String> {
    let read = |args: &mut pico_args::Arguments| {
        raw_value(args, "--cluster").map_err(|e| url::redacted(&e))
    };
    let Some(raw) = read(args)? else {
        return Ok(None);
    };
    if !matches!(read(args), Ok(None)) {
        return Err("--cluster was given twice".into());
    }
    url::parse(&raw).map(Some).map_err(|why| {
        let shown = url::redacted(&raw);
        format!("invalid value '{shown}' for --cluster: {why}")
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::parse::tests::{config, run};

    fn problem(args: &[&str]) -> String {
        run(args).unwrap_err().problem
    }

    #[test]
    fn cluster_is_off_unless_given_and_has_its_defaults() {
        assert_eq!(config(&["broadcast"]).cluster, None);
        let c = config(&["chat", "--cluster", "redis://10.0.0.5"]).cluster;
        let c = c.expect("--cluster given");
        assert_eq!(c.url.to_string(), "redis://10.0.0.5:6379");
        assert_eq!(
            (c.prefix.as_str(), c.ca, c.outbox),
            ("monoloop", None, 4 << 20)
        );
    }

    #[test]
    fn every_cluster_option_is_read() {
        let mut args = vec!["broadcast", "--cluster", "redis://:pw@h:7/2"];
        args.extend(["--cluster-prefix", "app:eu-1", "--cluster-outbox", "64K"]);
        let c = config(&args).cluster.expect("--cluster given");
        assert_eq!(c.url.password.as_deref(), Some("pw"));
        assert_eq!((c.url.port, c.url.db), (7, Some(2)));
        assert_eq!((c.prefix.as_str(), c.outbox), ("app:eu-1", 65_536));
        if cfg!(feature = "tls") {
            let args = ["chat", "--cluster", "rediss://h", "--cluster-ca", "ca.pem"];
            let c = config(&args).cluster.expect("--cluster given");
            assert!(c.url.tls);
            assert_eq!(c.ca, Some(PathBuf::from("ca.pem")));
        }
    }

    #[test]
    fn options_that_need_cluster_say_so() {
        for option in ["--cluster-prefix", "--cluster-ca", "--cluster-outbox"] {
            let value = if option == "--cluster-outbox" {
                "1M"
            } else {
                "x"
            };
            assert_eq!(
                problem(&["chat", option, value]),
                format!("{option} needs --cluster")
            );
        }
        assert_eq!(
            problem(&[
                "broadcast",
                "--cluster",
                "redis://h",
                "--cluster-ca",
                "ca.pem"
            ]),
            if cfg!(feature = "tls") {
                "--cluster-ca needs a rediss:// URL: redis:// is plain TCP, with no \
                 certificate to verify"
            } else {
                "--cluster-ca needs TLS, but this monoloop was built without it \
                 (cargo feature \"tls\")"
            }
        );
    }

    #[test]
    fn only_the_relays_take_them() {
        assert_eq!(
            problem(&["echo", "--cluster", "redis://h"]),
            "echo does not use --cluster (broadcast and chat do)"
        );
        assert_eq!(
            problem(&["file", "--root", "/", "--cluster-prefix", "x"]),
            "file does not use --cluster-prefix (broadcast and chat do)"
        );
    }

    #[test]
    fn bad_values_name_the_option_and_hide_the_password() {
        for (args, want) in [
            (
                &["chat", "--cluster", "http://h"][..],
                "invalid value 'http://h' for --cluster: unknown scheme 'http://': \
                 expected redis:// or rediss:// (TLS)",
            ),
            (
                &["chat", "--cluster", "redis://u:secret@h:0"],
                "invalid value 'redis://u:***@h:0' for --cluster: \
                 port 0 is out of range: ports are 1 to 65535",
            ),
            (
                &["chat", "--cluster", "redis://h", "--cluster", "redis://h"],
                "--cluster was given twice",
            ),
            (
                &["chat", "--cluster", "redis://h", "--cluster-prefix", "a b"],
                "invalid value 'a b' for --cluster-prefix: \
                 expected 1 to 64 letters, digits or _ . : -",
            ),
            (
                &["chat", "--cluster", "redis://h", "--cluster-outbox", "1K"],
                "invalid value '1K' for --cluster-outbox: must be at least 64K",
            ),
            (
                &["chat", "--cluster=redis://:secret@h"],
                "'--cluster=redis://:***@h': give the value after a space: \
                 --cluster redis://:***@h",
            ),
            (
                &["echo", "--cluster=redis://:secret@h"],
                "unknown option '--cluster=redis://:***@h' for echo",
            ),
            (
                &["chat", "redis://:secret@h"],
                "unexpected argument 'redis://:***@h' for mode chat",
            ),
        ] {
            assert_eq!(problem(args), want, "{args:?}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_tls_feature_rediss_is_refused() {
        assert_eq!(
            problem(&["chat", "--cluster", "rediss://:pw@h"]),
            "--cluster rediss://:***@h:6379 needs TLS, but this monoloop was built \
             without it (cargo feature \"tls\"); redis:// is plain TCP"
        );
    }
}
