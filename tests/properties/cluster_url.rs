//! `--cluster URL` (`cluster/url.rs`), as the fuzz target `cluster_url`
//! checks it:
//!
//! - a URL made of parts parses to those parts (the user and password
//!   percent-decoded, the port 6379 when left out);
//! - it prints (Display and Debug) the same whatever its password, and
//!   what it prints parses back to the same URL with `***` for the
//!   password; written back with its password, it parses to itself;
//! - the password, as typed, never shows: not in Display, Debug, an
//!   error, nor in `redacted` of the text, even when the rest is broken.
//!
//! Inputs are URLs built from parts (schemes in any case, host names,
//! IPv4, bracketed IPv6, ports, databases, users and passwords with
//! characters that need escaping), and the same with one part broken.

use monoloop::cluster::url::{parse, redacted, ClusterUrl};
use proptest::prelude::*;

use super::cases;

/// Percent-encodes all but the unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A password with a marker no other part holds, so that finding it in
/// output is no chance: it is the password.
fn password() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => prop::sample::select(vec!['@', ':', '/', '%', ' ', '?', '#', 'é', '[', ']']),
    ];
    prop::collection::vec(c, 0..12)
        .prop_map(|v| format!("Secret{}", v.into_iter().collect::<String>()))
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(b"abc-.xyz09_".to_vec()), 1..20)
            .prop_map(|v| String::from_utf8(v).unwrap()),
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u8; 16]>().prop_map(|o| std::net::Ipv6Addr::from(o).to_string()),
    ]
}

/// The parts of a URL, and the text made of them.
fn made() -> impl Strategy<Value = (ClusterUrl, String)> {
    let user = prop::option::of(
        prop::collection::vec(
            prop::sample::select(vec!['u', 'S', ':', '@', '%', '5']),
            1..6,
        )
        .prop_map(|v| v.into_iter().collect::<String>()),
    );
    (
        any::<bool>(),
        any::<bool>(),
        host(),
        prop::option::of(1u16..),
        user,
        prop::option::of(password()),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(tls, upper, host, port, user, password, db)| {
            let scheme = match (tls, upper) {
                (false, false) => "redis",
                (false, true) => "REDIS",
                (true, false) => "rediss",
                (true, true) => "Rediss",
            };
            let mut text = format!("{scheme}://");
            // A user goes only with a password: a user alone is refused.
            let user = user.filter(|_| password.is_some());
            if let Some(p) = &password {
                text += &format!("{}:{}@", enc(user.as_deref().unwrap_or("")), enc(p));
            }
            text += &if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            if let Some(port) = port {
                text += &format!(":{port}");
            }
            if let Some(db) = db {
                text += &format!("/{db}");
            }
            let url = ClusterUrl {
                tls,
                host,
                port: port.unwrap_or(6379),
                user,
                password,
                db,
            };
            (url, text)
        })
}

/// The URL written back in full, the password percent-encoded.
fn unredacted(u: &ClusterUrl) -> String {
    let mut out = String::from(if u.tls { "rediss://" } else { "redis://" });
    if let Some(p) = &u.password {
        out += &format!("{}:{}@", enc(u.user.as_deref().unwrap_or("")), enc(p));
    }
    match u.host.contains(':') {
        true => out += &format!("[{}]:{}", u.host, u.port),
        false => out += &format!("{}:{}", u.host, u.port),
    }
    if let Some(db) = u.db {
        out += &format!("/{db}");
    }
    out
}

/// One part of a URL's text broken: the port, the host, the database, an
/// escape in the password, or the scheme.
fn broken(text: &str, how: u8) -> String {
    match how {
        0 => format!("{text}:x"),
        1 => text.replacen("://", "://[", 1),
        2 => format!("{text}/notadb"),
        3 => text.replacen(":Secret", ":%zzSecret", 1),
        4 => text
            .replacen("redis", "rediz", 1)
            .replacen("REDIS", "rediz", 1)
            .replacen("Rediz", "rediz", 1),
        _ => format!("{text}?timeout=1"),
    }
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn a_url_parses_to_its_parts_and_never_shows_its_password((url, text) in made()) {
        let got = parse(&text);
        prop_assert_eq!(got.as_ref(), Ok(&url), "{}", text);
        let u = got.unwrap();
        let shown = u.to_string();
        let debug = format!("{u:?}");
        if let Some(p) = &u.password {
            prop_assert!(!shown.contains(p.as_str()) && !debug.contains(p.as_str()), "{}", shown);
            let mut other = u.clone();
            other.password = Some(format!("{p}-other"));
            prop_assert_eq!(other.to_string(), shown.clone());
            prop_assert_eq!(format!("{other:?}"), debug);
        }
        // What prints parses back, `***` the password.
        let mut starred = u.clone();
        starred.password = u.password.as_ref().map(|_| "***".to_string());
        prop_assert_eq!(parse(&shown), Ok(starred));
        prop_assert_eq!(parse(&unredacted(&u)), Ok(u));
        prop_assert!(!redacted(&text).contains("Secret"), "{}", redacted(&text));
    }

    #[test]
    fn a_broken_url_never_quotes_its_password((url, text) in made(), how in 0u8..6) {
        let bad = broken(&text, how);
        if let Err(e) = parse(&bad) {
            prop_assert!(!e.contains("Secret"), "{:?}: {}", bad, e);
        }
        if url.password.is_some() {
            prop_assert!(!redacted(&bad).contains("Secret"), "{}", redacted(&bad));
        }
    }
}
