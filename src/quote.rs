//! Quoting a value for a `key="value"` field of a log line, so that
//! whatever a client chose (a file name, a chat name, an error) can never
//! break the line or forge a field. The access log uses it for its own
//! fields, and protocols for their summaries (`Protocol::summary`), without
//! either importing the other.

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

/// `value` quoted as [`quote_into`] does.
pub fn quoted(value: &str) -> String {
    let mut s = String::new();
    quote_into(&mut s, value);
    s
}
