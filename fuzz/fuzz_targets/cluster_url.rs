//! `--cluster URL` (`cluster/url.rs`): never panics; the password never
//! shows.
//!
//! - a URL that parses prints (Display and Debug) the same whatever its
//!   password: the password cannot leak into a log line;
//! - an error, and `redacted` of the text, never quote the password as
//!   typed (when it is long enough to tell, and appears nowhere else);
//! - what parses, printed with its password back in place, parses again to
//!   the same URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::cluster::url::{parse, redacted, ClusterUrl};

/// The password as typed: between the first `:` after `://` and the last
/// `@`, as the parser reads it.
fn typed_password(s: &str) -> Option<&str> {
    let rest = &s[s.find("://")? + 3..];
    let info = &rest[..rest.rfind('@')?];
    Some(&info[info.find(':')? + 1..])
}

/// The URL written back in full, the password percent-encoded.
fn unredacted(u: &ClusterUrl) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut out = String::from(if u.tls { "rediss://" } else { "redis://" });
    if let Some(p) = &u.password {
        out += &format!("{}:{}@", enc(u.user.as_deref().unwrap_or("")), enc(p));
    }
    if u.host.contains(':') {
        out += &format!("[{}]:{}", u.host, u.port);
    } else {
        out += &format!("{}:{}", u.host, u.port);
    }
    if let Some(db) = u.db {
        out += &format!("/{db}");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(s);
    if let Ok(u) = &parsed {
        let mut other = u.clone();
        other.password = u.password.as_ref().map(|p| format!("{p}-not"));
        assert_eq!(
            u.to_string(),
            other.to_string(),
            "Display shows the password"
        );
        assert_eq!(
            format!("{u:?}"),
            format!("{other:?}"),
            "Debug shows the password"
        );
        let again = parse(&unredacted(u)).expect("what parsed, written back, parses");
        assert!(again == *u, "written back, it parses otherwise");
    }
    // A password as typed, long enough that finding it is not chance:
    // what quotes it shows it, and shows 'Q's instead when it is replaced
    // by as many (text that merely contains the same letters does not
    // change).
    if let Some(p) = typed_password(s).filter(|p| p.len() >= 6) {
        let at = p.as_ptr() as usize - s.as_ptr() as usize;
        let q = format!("{}{}{}", &s[..at], "Q".repeat(p.len()), &s[at + p.len()..]);
        let shows = |said: &str, said_q: &str| said.contains(p) && !said_q.contains(p);
        assert!(
            !shows(&redacted(s), &redacted(&q)),
            "redacted shows the password"
        );
        if let (Err(e), Err(e_q)) = (&parsed, parse(&q)) {
            assert!(!shows(e, &e_q), "the error quotes the password: {e}");
        }
    }
});
