//! What a chat user may be called, and what of what they type reaches the
//! others: the name rule ([`valid_name`]), names compared without regard
//! to case ([`key`]), lines stripped of what could forge or hide text on
//! another user's terminal ([`sanitize`]), and whether stripping took
//! anything ([`as_typed`]: a name is judged as typed, never as stripped).
//! Pure functions over bytes; `chat.rs` applies them.

use super::MAX_NAME;
use crate::quote::invisible;

/// True for 1 to 32 ASCII letters, digits, `_`, `-` and `.`.
///
/// Names outside ASCII (`café`) are refused on purpose: Unicode look-alikes
/// (Cyrillic `а` beside Latin `a`) would make pretending to be someone else
/// trivial, and uniqueness without regard to case ([`key`]) is only simple
/// and well defined for ASCII.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The key a name is stored and looked up under: the name in ASCII
/// lowercase. Valid names are ASCII, so this is the whole of case folding;
/// a non-ASCII string (an unknown `/msg` target) keeps its other characters
/// and matches nobody.
pub(super) fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Makes a line safe to show on someone else's terminal: invalid UTF-8
/// becomes U+FFFD; ANSI escape sequences (CSI, OSC, DCS and two-byte ones),
/// control characters (C0 but tab, DEL, C1) and the invisible characters of
/// [`invisible`] (bidirectional controls, zero-width characters,
/// U+2028 and U+2029) are removed.
pub fn sanitize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: a string up to BEL or ESC \.
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // A two-character sequence (ESC c, ESC 7, ...).
                _ => {}
            },
            // The 8-bit CSI.
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() || invisible(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// True if `shown`, what [`sanitize`] made of `raw`, is `raw` exactly:
/// nothing was removed (a control character, an escape sequence, an
/// invisible character) and no invalid UTF-8 replaced.
///
/// A command line is parsed after it is sanitized, so `/nick` sees the
/// name with such characters gone. The prompt refuses a name that holds
/// them ([`valid_name`]); `/nick` refuses a line that held them, rather
/// than rename its user to what stripping left (`mal\u{202e}lory` must not
/// become `mallory`).
pub(super) fn as_typed(raw: &[u8], shown: &str) -> bool {
    raw == shown.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_are_stripped() {
        let bidi = [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', // LRE RLE PDF LRO RLO
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', // LRI RLI FSI PDI
            '\u{200e}', '\u{200f}', '\u{61c}', // LRM RLM ALM
        ];
        for c in bidi {
            assert_eq!(sanitize(format!("a{c}b").as_bytes()), "ab", "{c:?}");
        }
        // Right-to-left text itself is kept: only the invisible controls go.
        assert_eq!(
            sanitize("\u{5e9}\u{5dc}\u{5d5}\u{5dd}".as_bytes()),
            "\u{5e9}\u{5dc}\u{5d5}\u{5dd}"
        );
    }

    #[test]
    fn zero_width_characters_are_stripped() {
        for c in ['\u{200b}', '\u{200c}', '\u{200d}', '\u{feff}'] {
            assert_eq!(sanitize(format!("a{c}b").as_bytes()), "ab", "{c:?}");
        }
        // The price: an emoji sequence joined by U+200D shows as its parts.
        assert_eq!(
            sanitize("\u{1f469}\u{200d}\u{1f4bb}".as_bytes()),
            "\u{1f469}\u{1f4bb}"
        );
        // Other visible non-ASCII text is kept.
        assert_eq!(
            sanitize("caf\u{e9} \u{65e5}\u{672c}".as_bytes()),
            "caf\u{e9} \u{65e5}\u{672c}"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/chat_text.rs): the three bytes
    /// `e2 81 a0`, U+2060 WORD JOINER, came out of `sanitize` as they went
    /// in: zero width like U+200B, but missing from the list.
    #[test]
    fn word_joiner_and_the_other_zero_width_characters_are_stripped() {
        assert_eq!(sanitize(b"\xe2\x81\xa0"), "");
        for c in [
            '\u{2060}', '\u{2061}', '\u{2062}', '\u{2063}', '\u{2064}', '\u{180e}',
        ] {
            assert_eq!(sanitize(format!("a{c}b").as_bytes()), "ab", "{c:?}");
        }
    }

    #[test]
    fn line_and_paragraph_separators_are_stripped() {
        assert_eq!(sanitize("a\u{2028}b\u{2029}c".as_bytes()), "abc");
    }

    #[test]
    fn what_sanitizing_took_is_seen() {
        for raw in ["alice", "caf\u{e9} \t ok"] {
            assert!(
                as_typed(raw.as_bytes(), &sanitize(raw.as_bytes())),
                "{raw:?}"
            );
        }
        for raw in [
            &b"mal\xe2\x80\xaelory"[..], // U+202E
            b"mal\xe2\x80\x8blory",      // U+200B
            b"mal\x1blory",
            b"mal\x1b[0mlory",
            b"mal\x07lory",
            b"mal\xfflory",
        ] {
            assert!(!as_typed(raw, &sanitize(raw)), "{raw:?}");
        }
    }

    #[test]
    fn valid_names() {
        assert!(valid_name(b"a"));
        assert!(valid_name(b"A.b-c_9"));
        assert!(valid_name(&[b'x'; 32]));
        assert!(!valid_name(&[b'x'; 33]));
        assert!(!valid_name(b""));
        assert!(!valid_name("é".as_bytes()));
        assert!(!valid_name(b"/who"));
    }
}
