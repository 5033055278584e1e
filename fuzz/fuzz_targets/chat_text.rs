//! Chat's names and lines (`protocol/chat/text.rs`): what a user types,
//! made safe for every other user's terminal.
//!
//! - `sanitize` lets out no control character (but tab), no escape
//!   sequence's ESC, no bidirectional control, no zero-width character and
//!   no line or paragraph separator, and is idempotent;
//! - a name `valid_name` accepts is 1 to 32 ASCII letters, digits, `_`,
//!   `-` or `.`, and sanitizing leaves it as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::protocol::chat::{sanitize, valid_name, MAX_NAME};

/// What must never reach another user's terminal.
fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        // Bidi_Control: the marks, embeddings, overrides and isolates.
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        // Zero width: space, non-joiner, joiner, word joiner, the invisible
        // operators, the Mongolian vowel separator, the byte order mark.
        || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{180e}' | '\u{feff}')
        // Line and paragraph separators.
        || matches!(c, '\u{2028}' | '\u{2029}')
}

fuzz_target!(|data: &[u8]| {
    let shown = sanitize(data);
    if let Some(c) = shown.chars().find(|&c| forbidden(c)) {
        panic!("sanitize let {c:?} through in {shown:?}");
    }
    assert_eq!(
        sanitize(shown.as_bytes()),
        shown,
        "sanitize is not idempotent"
    );
    if valid_name(data) {
        assert!((1..=MAX_NAME).contains(&data.len()));
        assert!(data
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')));
        assert_eq!(shown.as_bytes(), data, "a valid name changed by sanitizing");
    }
});
