//! Chat's names and lines (`protocol/chat/text.rs`), as the fuzz target
//! `chat_text` checks them:
//!
//! - `sanitize` lets out no control character (but tab), no escape
//!   sequence's ESC, no bidirectional control, no zero-width character and
//!   no line or paragraph separator, and is idempotent;
//! - it takes nothing from text that holds none of those: ordinary text,
//!   accents, CJK and emoji reach the room as typed;
//! - `valid_name` accepts exactly 1 to 32 ASCII letters, digits, `_`, `-`
//!   or `.`, and sanitizing leaves such a name as it is.
//!
//! Inputs mix ordinary text with the characters that must go (C0, C1, DEL,
//! ESC sequences, bidi, zero width, U+2028/9) and invalid UTF-8.

use monoloop::protocol::chat::{sanitize, valid_name, MAX_NAME};
use proptest::prelude::*;

use super::cases;

/// What must never reach another user's terminal (the fuzz target's list).
pub fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{180e}' | '\u{feff}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Ordinary text: what must come out as it went in.
fn ordinary() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        6 => prop::char::range(' ', '~'),
        1 => Just('\t'),
        1 => prop::sample::select(vec!['é', 'ß', 'ø', 'Ж', 'ש', 'ع', '中', '文', '€', '😀', '👍']),
        1 => any::<char>().prop_filter("not one to strip", |&c| !forbidden(c)),
    ];
    prop::collection::vec(c, 0..40).prop_map(|v| v.into_iter().collect())
}

/// Pieces that must be stripped, or that start something to strip.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "\x1b[31m",
            "\x1b[2J",
            "\x1b]0;title\x07",
            "\x1b]8;;http://x\x1b\\",
            "\x1bP+q\x1b\\",
            "\x1bc",
            "\x1b",
            "\x1b[",
            "\u{9b}31m",
            "\u{85}",
            "\x7f",
            "\r",
            "\n",
            "\x00",
            "\x08",
            "\u{202e}",
            "\u{2066}",
            "\u{200b}",
            "\u{2060}",
            "\u{feff}",
            "\u{2028}",
            "\u{2029}",
            "\u{180e}",
            "\u{061c}",
            "\u{200f}",
            "\t",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        ordinary().prop_map(String::into_bytes),
        // Invalid UTF-8: a lone continuation byte, a cut sequence, 0xff.
        prop::sample::select(vec![
            &b"\x80"[..],
            b"\xe2\x80",
            b"\xff",
            b"\xc0\xaf",
            b"\xed\xa0\x80"
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// A name near the rule: mostly allowed bytes, lengths around 32.
fn name_like() -> impl Strategy<Value = Vec<u8>> {
    let b = prop_oneof![
        10 => prop::sample::select(b"abcXYZ019_-.".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(b, 0..=MAX_NAME + 2)
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn sanitize_lets_nothing_through_and_is_idempotent(
        raw in prop_oneof![hostile(), prop::collection::vec(any::<u8>(), 0..64)]
    ) {
        let shown = sanitize(&raw);
        if let Some(c) = shown.chars().find(|&c| forbidden(c)) {
            prop_assert!(false, "sanitize let {:?} through in {:?}", c, shown);
        }
        prop_assert_eq!(sanitize(shown.as_bytes()), shown.clone(), "not idempotent");
    }

    #[test]
    fn sanitize_keeps_ordinary_text(text in ordinary()) {
        prop_assert_eq!(sanitize(text.as_bytes()), text);
    }

    #[test]
    fn a_valid_name_is_exactly_the_rule(name in name_like()) {
        let rule = (1..=MAX_NAME).contains(&name.len())
            && name.iter().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(b));
        prop_assert_eq!(valid_name(&name), rule);
        if rule {
            let shown = sanitize(&name);
            prop_assert_eq!(shown.as_bytes(), &name[..]);
        }
    }
}
