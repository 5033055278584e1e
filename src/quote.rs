//! Quoting a value for a `key="value"` field of a log line, so that
//! whatever a client chose (a file name, a chat name, an error) can never
//! break the line or forge a field. The access log uses it for its own
//! fields, and protocols for their summaries (`Protocol::summary`), without
//! either importing the other. And quoting a URL as typed with its
//! password hidden ([`redacted`]), for the command line's problems.

use std::fmt::Write as _;

/// Appends `value` in double quotes, with `"` and `\` escaped, control
/// characters written as `\xNN` and the [`invisible`] ones (bidi controls,
/// zero-width characters, line separators) as `\u{NNNN}`, so that a field
/// never breaks the line, nor changes how it looks.
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
            c if invisible(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
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

/// True for the invisible characters with which a line could be made to
/// look like another on some terminals: they reorder the text, hide part
/// of it, or start a new line. Chat's `sanitize` removes them from what
/// users say (`protocol/chat/text.rs`); [`quote_into`] escapes them in the
/// log, where a client's file name could otherwise reorder an operator's
/// view of the line.
pub fn invisible(c: char) -> bool {
    matches!(
        c,
        // Bidirectional embeddings and overrides (LRE, RLE, PDF, LRO, RLO),
        // isolates (LRI, RLI, FSI, PDI), and the marks LRM, RLM and ALM.
        '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}'
            // Zero width: space, non-joiner, joiner, word joiner, the
            // invisible operators (function application, times, separator,
            // plus), the Mongolian vowel separator, and the byte order mark
            // (zero-width no-break space).
            | '\u{200b}'..='\u{200d}'
            | '\u{2060}'..='\u{2064}'
            | '\u{180e}'
            | '\u{feff}'
            // Line and paragraph separators: some terminals and clients
            // break the line there, and the rest of it could pose as
            // another user's line.
            | '\u{2028}'
            | '\u{2029}'
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_characters_are_escaped() {
        assert_eq!(quoted("a \"b\" \\"), r#""a \"b\" \\""#);
        assert_eq!(quoted("\u{1b}[2J\r\n"), r#""\x1b[2J\x0d\x0a""#);
        // A right-to-left override would reorder the rest of the line on
        // a terminal that honours it; a line separator would break it.
        assert_eq!(
            quoted("\u{202e}txt.exe\u{2028}\u{200b}"),
            r#""\u{202e}txt.exe\u{2028}\u{200b}""#
        );
        assert_eq!(quoted("café"), "\"café\"");
    }
}
