//! One option's value from its text: seconds, counts, addresses, paths,
//! log levels.
//!
//! (`--listen` and `--metrics` are `listen.rs`'s.)
//!
//! Each converter takes the text that followed the option and returns the
//! value, or what it expected instead, in a few words; `parse.rs` (`opt`)
//! reads the arguments and puts `invalid value 'TEXT' for --OPTION: ` in
//! front. So the converters know no option names and no defaults (those
//! are `model.rs`'s), and they look at nothing outside their text, except
//! [`directory`], which checks that the directory exists. A CIDR is parsed
//! by `edge.rs`'s own `FromStr`.

use std::path::PathBuf;
use std::time::Duration;

use super::model::Workers;
#[cfg(feature = "cluster")]
use super::model::MIN_CLUSTER_OUTBOX;

/// A whole number, 0 included.
pub(super) fn whole(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| "expected a whole number".to_string())
}

/// A whole number from 1.
pub(super) fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number".into()),
    }
}

/// A size in bytes, from 1: a whole number, or one followed by `K`, `M` or
/// `G` (either case), 1024-based as buffer sizes are in nginx (`1m`) and
/// `head -c 1M`: `64K` is 65536 bytes.
pub(super) fn size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a number of bytes, such as 65536, 64K, 1M or 1G".into());
    }
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
    {
        Some(0) => Err("must be at least 1".into()),
        Some(bytes) => Ok(bytes),
        None => Err("too large".into()),
    }
}

/// `--cluster-outbox`: a [`size`], at least 64K.
#[cfg(feature = "cluster")]
pub(super) fn cluster_outbox(s: &str) -> Result<usize, String> {
    match size(s)? {
        n if n < MIN_CLUSTER_OUTBOX => Err("must be at least 64K".into()),
        n => Ok(n),
    }
}

/// `--cluster-prefix`: 1 to 64 letters, digits, `_`, `.`, `:` or `-`, the
/// start of every Redis key monoloop uses (`PREFIX:chat`).
#[cfg(feature = "cluster")]
pub(super) fn cluster_prefix(s: &str) -> Result<String, String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    match (1..=64).contains(&s.len()) && s.bytes().all(allowed) {
        true => Ok(s.to_string()),
        false => Err("expected 1 to 64 letters, digits or _ . : -".into()),
    }
}

/// `--workers`: a whole number from 1 to 1024, or `auto`.
pub(super) fn workers(s: &str) -> Result<Workers, String> {
    if s == "auto" {
        return Ok(Workers::Auto);
    }
    match positive(s) {
        Ok(n) if n <= 1024 => Ok(Workers::Count(n)),
        Ok(_) => Err("at most 1024".into()),
        Err(_) => Err("expected a whole number from 1, or auto".into()),
    }
}

/// Seconds, whole or fractional (`1`, `0.5`), at most a day.
pub(super) fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Like [`seconds`], with 0 meaning "off".
pub(super) fn seconds_or_off(s: &str) -> Result<Option<Duration>, String> {
    seconds(s).map(|d| (!d.is_zero()).then_some(d))
}

/// `--stats-interval`: 0 (off), or at least 0.1 s, so that a typo cannot
/// turn the log into a flood.
pub(super) fn stats_interval(s: &str) -> Result<Option<Duration>, String> {
    match seconds_or_off(s)? {
        Some(d) if d < Duration::from_millis(100) => {
            Err("must be 0 (off) or at least 0.1 seconds".into())
        }
        other => Ok(other),
    }
}

/// `--log-level`: a level name, in any case.
pub(super) fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

/// A file name, not checked: start-up opens it and says what is wrong.
pub(super) fn path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a file name".into());
    }
    Ok(PathBuf::from(s))
}

/// `h2,http/1.1`: protocol names for ALPN, comma-separated.
pub(super) fn alpn_list(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
    if names.iter().any(|n| n.is_empty() || n.len() > 255) {
        return Err("expected comma-separated protocol names, such as h2,http/1.1".into());
    }
    Ok(names)
}

/// An existing directory (checked now, so that a typo exits 2 at once).
pub(super) fn directory(s: &str) -> Result<PathBuf, String> {
    match std::fs::metadata(s) {
        Ok(m) if m.is_dir() => Ok(PathBuf::from(s)),
        Ok(_) => Err("not a directory".into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// Any text, taken as is.
pub(super) fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_whole_or_fractional_and_at_most_a_day() {
        assert_eq!(seconds("1"), Ok(Duration::from_secs(1)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("86400"), Ok(Duration::from_secs(86_400)));
        assert!(seconds("86401")
            .unwrap_err()
            .contains("between 0 and 86400"));
        assert!(seconds("-1").unwrap_err().contains("between 0 and 86400"));
        assert_eq!(seconds("soon"), Err("expected a number of seconds".into()));
        assert_eq!(seconds_or_off("0"), Ok(None));
        assert_eq!(stats_interval("0"), Ok(None));
        assert_eq!(stats_interval("0.1"), Ok(Some(Duration::from_millis(100))));
        assert!(stats_interval("0.05").is_err());
    }

    #[test]
    fn counts_say_which_numbers_they_take() {
        assert_eq!(whole("0"), Ok(0));
        assert_eq!(positive("0"), Err("must be at least 1".into()));
        assert_eq!(positive("-1"), Err("expected a whole number".into()));
        assert_eq!(workers("auto"), Ok(Workers::Auto));
        assert_eq!(workers("1024"), Ok(Workers::Count(1024)));
        assert_eq!(workers("1025"), Err("at most 1024".into()));
        assert_eq!(
            workers("0"),
            Err("expected a whole number from 1, or auto".into())
        );
    }

    #[test]
    fn sizes_take_k_m_and_g_1024_based() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64K"), Ok(65_536));
        assert_eq!(size("64k"), Ok(65_536));
        assert_eq!(size("1M"), Ok(1_048_576));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert_eq!(size("0"), Err("must be at least 1".into()));
        assert_eq!(size("0K"), Err("must be at least 1".into()));
        for bad in ["", "K", "1.5M", "-1K", "+1", "1 M", "1MB", "1T", "lots"] {
            assert_eq!(
                size(bad),
                Err("expected a number of bytes, such as 65536, 64K, 1M or 1G".into()),
                "{bad:?}"
            );
        }
        assert_eq!(size("99999999999999999999"), Err("too large".into()));
        assert_eq!(
            size(&format!("{}G", usize::MAX >> 20)),
            Err("too large".into())
        );
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn cluster_values() {
        assert_eq!(cluster_outbox("64K"), Ok(65_536));
        assert_eq!(cluster_outbox("65535"), Err("must be at least 64K".into()));
        assert!(cluster_outbox("lots")
            .unwrap_err()
            .starts_with("expected a number"));
        assert_eq!(cluster_prefix("a"), Ok("a".into()));
        assert_eq!(
            cluster_prefix("My_app.v2:eu-1"),
            Ok("My_app.v2:eu-1".into())
        );
        assert!(cluster_prefix(&"x".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", "é", "{tag}", "a*", &"x".repeat(65)] {
            assert_eq!(
                cluster_prefix(bad),
                Err("expected 1 to 64 letters, digits or _ . : -".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_and_lists() {
        assert_eq!(parse_level("DEBUG"), Ok(log::LevelFilter::Debug));
        assert!(parse_level("loud").is_err());
        assert_eq!(
            alpn_list("h2, http/1.1"),
            Ok(vec!["h2".into(), "http/1.1".into()])
        );
        assert!(alpn_list("h2,").is_err());
        assert!(path("").is_err());
        assert_eq!(
            directory(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
            Err("not a directory".into())
        );
        assert!(directory(env!("CARGO_MANIFEST_DIR")).is_ok());
    }
}
