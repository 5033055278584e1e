//! Quoting a value for a `key="value"` field of a log line, so that
//! whatever a client chose (a file name, a chat name, an error) can never
//! break the line or forge a field. The access log uses it for its own
//! fields, and protocols for their summaries (`Protocol::summary`), without
//! either importing the other. And quoting a URL as typed with its
//! password hidden ([`redacted`]), for the command line's problems.

use std::fmt::Write as _;

/// Appends `value` in double quotes, with `"` and `\` escaped and control
/// characters written as `\xNN`, so that a field never breaks the line.
pub fn quote_into(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32 & 0xff);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `value` as it is if it is a plain token (ASCII letters, digits
/// and `-._:/+`, not empty), else quoted as [`quote_into`] does: for values
/// that are almost always tokens (a host name, a protocol's name) but
/// could be anything.
pub fn token_into(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/+".contains(c));
    if plain {
        out.push_str(value);
    } else {
        quote_into(out, value);
    }
}

/// `value` quoted as [`quote_into`] does.
pub fn quoted(value: &str) -> String {
    let mut s = String::new();
    quote_into(&mut s, value);
    s
}

/// `text`, a URL as typed, with what would be its password (between the
/// `:` after `://` and the last `@`) replaced by `***`, or the whole of
/// what comes before that `@` when there is no `:`: for the messages that
/// quote a URL that did not parse. Text without `://` is returned as is.
pub fn redacted(text: &str) -> String {
    let Some(i) = text.find("://") else {
        return text.to_string();
    };
    let (scheme, rest) = text.split_at(i + 3);
    let Some(at) = rest.rfind('@') else {
        return text.to_string();
    };
    let (info, host) = rest.split_at(at);
    match info.split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:***{host}"),
        None => format!("{scheme}***{host}"),
    }
}
