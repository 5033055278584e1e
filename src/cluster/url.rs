//! Where Redis is: a `redis://` or `rediss://` URL read into a
//! [`ClusterUrl`], and written back with its password hidden.
//!
//! The form is the one redis-cli and the client libraries take:
//!
//! ```text
//! redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     plain TCP
//! rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]    TLS
//! ```
//!
//! HOST is a name, an IPv4 address or an IPv6 address in brackets
//! (`[::1]`); PORT is 6379 when left out; DB is the number `SELECT`
//! takes (Redis refuses one it does not have). USER and PASSWORD are
//! percent-decoded, so that a password may hold `@`, `:` or `/` as
//! `%40`, `%3A`, `%2F`.
//!
//! This module owns the syntax only: `config/cluster.rs` calls [`parse`]
//! for `--cluster` and words its errors as every option's; whether the
//! host resolves, and what the password opens, is the link's to find out.
//!
//! The password is a secret: the URL prints (Display, and Debug too) with
//! `***` in its place, the errors never quote it, and [`redacted`] hides
//! it in text that did not parse, for the messages that quote what was
//! typed. It still lives in memory, in a plain `String`.

use std::fmt;
use std::net::Ipv6Addr;

/// The port when the URL gives none: Redis's.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed `redis://` or `rediss://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `rediss://`: TLS.
    pub tls: bool,
    /// A name or an address, without brackets (`::1`).
    pub host: String,
    pub port: u16,
    /// For `AUTH USER PASSWORD` (Redis 6's ACLs); `None`: `AUTH PASSWORD`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// For `SELECT`; `None`: none sent (Redis starts at 0).
    pub db: Option<u16>,
}

/// Reads `s`, a URL as `--cluster` takes it, or says in a few words what
/// is wrong with it (never quoting the password).
pub fn parse(s: &str) -> Result<ClusterUrl, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(
            "expected redis://HOST[:PORT] or rediss://HOST[:PORT] (TLS), \
                    such as redis://127.0.0.1:6379"
                .into(),
        );
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "redis" => false,
        "rediss" => true,
        other if !other.is_empty() && other.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Err(format!(
                "unknown scheme '{scheme}://': expected redis:// or rediss:// (TLS)"
            ))
        }
        _ => return Err("expected a URL starting redis:// or rediss:// (TLS)".into()),
    };
    // The last `@` ends the user and password, which may hold (unencoded)
    // any character but the host's.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => credentials(info)?,
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    let (host, port) = host_and_port(authority)?;
    let db = match path {
        None | Some("") => None,
        Some(p) if p.contains('?') => {
            return Err("options after '?' are not supported".into());
        }
        Some(p) => match p.parse::<u16>() {
            Ok(db) if p.bytes().all(|b| b.is_ascii_digit()) => Some(db),
            _ => {
                return Err(format!(
                    "invalid database '/{p}': expected its number, such as /0"
                ))
            }
        },
    };
    Ok(ClusterUrl {
        tls,
        host,
        port,
        user,
        password,
        db,
    })
}

/// `[USER]:PASSWORD`, each percent-decoded; a user alone is refused,
/// since whether it would be a user or a password is a guess.
fn credentials(info: &str) -> Result<(Option<String>, Option<String>), String> {
    let Some((user, password)) = info.split_once(':') else {
        return Err("expected :PASSWORD@ or USER:PASSWORD@ before the host".into());
    };
    let user = decode(user).map_err(|why| format!("the user name {why}"))?;
    let password = decode(password).map_err(|why| format!("the password {why}"))?;
    if password.is_empty() {
        return Err("the password after ':' is empty".into());
    }
    Ok(((!user.is_empty()).then_some(user), Some(password)))
}

/// `%XX` escapes decoded; the result must be UTF-8. The error says why
/// without quoting the text.
fn decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |b: Option<u8>| b.and_then(|b| char::from(b).to_digit(16));
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => return Err("has a % not followed by two hex digits"),
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")
}

/// `HOST[:PORT]`, HOST perhaps an IPv6 address in brackets.
fn host_and_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(inside) = authority.strip_prefix('[') {
        let Some((address, after)) = inside.split_once(']') else {
            return Err(format!("invalid host '{authority}': no closing ]"));
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address '[{address}]'"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("unexpected '{after}' after '[{address}]'")),
            },
        };
        (address, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err("an IPv6 address goes in brackets, as in redis://[::1]:6379".into());
        }
        if host.is_empty() {
            return Err("no host given, as in redis://127.0.0.1:6379".into());
        }
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if host.len() > 253 || !host.bytes().all(name) {
            return Err(format!("invalid host '{host}'"));
        }
        (host, port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some("") => return Err("expected a port number after ':'".into()),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "invalid port '{p}': expected a number from 1 to 65535"
            ))
        }
        Some(p) => match p.parse::<u16>() {
            Ok(port @ 1..) => port,
            _ => return Err(format!("port {p} is out of range: ports are 1 to 65535")),
        },
    };
    Ok((host.to_string(), port))
}

/// Quoting a URL as typed, its password hidden (in `quote.rs`, which a
/// build without the cluster keeps: the command line quotes with it).
pub use crate::quote::redacted;

/// The URL, its password as `***` (and the port always written).
impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        if let Some(user) = &self.user {
            encode(f, user)?;
        }
        match (&self.user, &self.password) {
            (_, Some(_)) => f.write_str(":***@")?,
            (Some(_), None) => f.write_str("@")?,
            (None, None) => {}
        }
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port)?,
            false => write!(f, "{}:{}", self.host, self.port)?,
        }
        match self.db {
            Some(db) => write!(f, "/{db}"),
            None => Ok(()),
        }
    }
}

/// Written by hand, so that `{:?}` hides the password too.
impl fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

/// `text` percent-encoded but for the characters a URL leaves as they are,
/// so that a user name with `:` or `@` reads back as it was.
fn encode(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                write!(f, "{}", char::from(b))?
            }
            _ => write!(f, "%{b:02X}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ClusterUrl {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_host_alone_gets_the_default_port_and_no_more() {
        let u = url("redis://localhost");
        assert_eq!(
            u,
            ClusterUrl {
                tls: false,
                host: "localhost".into(),
                port: 6379,
                user: None,
                password: None,
                db: None,
            }
        );
        assert_eq!(u.to_string(), "redis://localhost:6379");
        assert_eq!(url("redis://127.0.0.1/").db, None);
        assert!(!url("REDIS://h").tls);
        assert_eq!(url("redis://redis_1.internal").host, "redis_1.internal");
    }

    #[test]
    fn port_db_and_tls_are_read() {
        let u = url("rediss://cache.example.org:6380/3");
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.db),
            ("cache.example.org", 6380, Some(3))
        );
        assert_eq!(u.to_string(), "rediss://cache.example.org:6380/3");
        assert_eq!(url("redis://h:1/0").db, Some(0));
        assert_eq!(url("redis://h:65535/65535").port, 65535);
        assert_eq!(url("redis://10.0.0.1:7000").host, "10.0.0.1");
    }

    #[test]
    fn ipv6_goes_in_brackets() {
        let u = url("redis://[::1]:7000/1");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, Some(1)));
        assert_eq!(u.to_string(), "redis://[::1]:7000/1");
        let u = url("rediss://[2001:db8::5]");
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::5", 6379));
        assert_eq!(u.to_string(), "rediss://[2001:db8::5]:6379");
        for (bad, why) in [
            ("redis://::1", "an IPv6 address goes in brackets"),
            ("redis://::1:6379", "an IPv6 address goes in brackets"),
            ("redis://[::1", "no closing ]"),
            ("redis://[nope]:1", "invalid IPv6 address '[nope]'"),
            ("redis://[::1]6379", "unexpected '6379' after '[::1]'"),
            ("redis://[::1]:", "expected a port number after ':'"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn user_and_password_are_percent_decoded() {
        let u = url("redis://:s3cret@h");
        assert_eq!((u.user, u.password.as_deref()), (None, Some("s3cret")));
        let u = url("redis://alice:p%40ss%3Aw%2Frd%25@h:1/2");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w/rd%"));
        assert_eq!((u.host.as_str(), u.port, u.db), ("h", 1, Some(2)));
        // Unencoded, `@`, `:` and `/` in the password still work: the last
        // `@` ends it.
        let u = url("redis://bob:a@b:c/d@h");
        assert_eq!(u.password.as_deref(), Some("a@b:c/d"));
        assert_eq!(u.host, "h");
        let u = url("redis://m%C3%BCller:x@h");
        assert_eq!(u.user.as_deref(), Some("müller"));
        assert_eq!(u.to_string(), "redis://m%C3%BCller:***@h:6379");
        for (bad, why) in [
            ("redis://alice@h", "expected :PASSWORD@ or USER:PASSWORD@"),
            ("redis://alice:@h", "the password after ':' is empty"),
            (
                "redis://:pw%4@h",
                "the password has a % not followed by two hex",
            ),
            (
                "redis://:pw%zz@h",
                "the password has a % not followed by two hex",
            ),
            (
                "redis://%ff:pw@h",
                "the user name is not UTF-8 once percent-decoded",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_ports_hosts_and_databases_say_what_is_wrong() {
        for (bad, why) in [
            (
                "redis://h:0",
                "port 0 is out of range: ports are 1 to 65535",
            ),
            (
                "redis://h:65536",
                "port 65536 is out of range: ports are 1 to 65535",
            ),
            (
                "redis://h:99999999999999999999",
                "port 99999999999999999999 is out of range",
            ),
            ("redis://h:http", "invalid port 'http': expected a number"),
            ("redis://h:-1", "invalid port '-1'"),
            ("redis://h:", "expected a port number after ':'"),
            ("redis://", "no host given"),
            ("redis://:6379", "no host given"),
            ("redis://:pw@", "no host given"),
            ("redis://h h", "invalid host 'h h'"),
            ("redis://h?db=1", "invalid host 'h?db=1'"),
            ("redis://h/x", "invalid database '/x': expected its number"),
            ("redis://h/65536", "invalid database '/65536'"),
            ("redis://h/+1", "invalid database '/+1'"),
            ("redis://h/0/1", "invalid database '/0/1'"),
            (
                "redis://h/0?timeout=1",
                "options after '?' are not supported",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_schemes_say_what_is_expected() {
        for (bad, why) in [
            (
                "localhost:6379",
                "expected redis://HOST[:PORT] or rediss://HOST[:PORT] (TLS), \
                 such as redis://127.0.0.1:6379",
            ),
            (
                "http://h",
                "unknown scheme 'http://': expected redis:// or rediss:// (TLS)",
            ),
            (
                "unix:///run/redis.sock",
                "unknown scheme 'unix://': expected redis:// or rediss:// (TLS)",
            ),
            (
                "://h",
                "expected a URL starting redis:// or rediss:// (TLS)",
            ),
        ] {
            assert_eq!(parse(bad).unwrap_err(), why, "{bad}");
        }
        for bad in ["", "redis:/h", "redis//h"] {
            assert!(
                parse(bad).unwrap_err().starts_with("expected redis://"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let secret = "hunter2";
        let u = url("rediss://admin:hunter2@db.internal:6380/4");
        let shown = u.to_string();
        assert_eq!(shown, "rediss://admin:***@db.internal:6380/4");
        let debug = format!("{u:?} {u:#?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("password: Some(\"***\")"), "{debug}");
        assert_eq!(u.password.as_deref(), Some(secret));
        // Nor in an error, nor in what an error quotes.
        for bad in [
            "redis://admin:hunter2@h:0",
            "redis://admin:hunter2@h:x",
            "redis://admin:hunter2@",
            "redis://admin:hunter2%@h",
            "redis://:hunter2@[::1",
            "redis://:hunter2@h/db",
            "http://:hunter2@h",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains(secret), "{bad}: {e}");
            let quoted = redacted(bad);
            assert!(!quoted.contains(secret), "{bad}: {quoted}");
        }
        assert_eq!(redacted("redis://a:b@c@h:1"), "redis://a:***@h:1");
        assert_eq!(redacted("redis://hunter2@h"), "redis://***@h");
        assert_eq!(redacted("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redacted("just text @ here"), "just text @ here");
        // A user without a password (not from parse, but representable).
        let u = ClusterUrl {
            password: None,
            ..url("redis://u:p@h")
        };
        assert_eq!(u.to_string(), "redis://u@h:6379");
    }

    #[test]
    fn display_reads_back_as_the_same_url_but_the_password() {
        for s in [
            "redis://h:1",
            "rediss://[fe80::1]:2/3",
            "redis://a%3Ab%40c:x@h:6379/0",
        ] {
            let u = url(s);
            let again = url(&u.to_string().replace("***", "x"));
            assert_eq!(
                ClusterUrl {
                    password: u.password.as_ref().map(|_| "x".to_string()),
                    ..u
                },
                again,
                "{s}"
            );
        }
    }
}
