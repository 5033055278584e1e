//! Chat's command parser (`protocol/chat.rs`, `on_line` through
//! `Protocol::data`): a room with `bob` (1) and `carol` (2), and a third
//! user (0) whose bytes are the input, cut into reads as a peer chooses.
//! The input's first byte: bit 0, join as `alice` before the rest (else
//! the first line is the name); the other bits, `--max-line` (8 to 516).
//! Its read ends with EOF, then the close.
//!
//! - never panics;
//! - nothing the others receive, and nothing the user is told, holds a
//!   control character (but tab, and LF ending a line), a bidirectional
//!   control, a zero-width character or a line or paragraph separator:
//!   what the user typed and the server quotes back is sanitized too;
//! - nothing is forged: every line the others receive is one of the
//!   room's forms (`NAME: TEXT`, `NAME joined the chat`, `NAME is now
//!   NEW`, `[private] NAME: TEXT`, `NAME left the chat`), NAME the name
//!   the user held at that moment, followed through its joins and renames,
//!   and every name valid (`valid_name`);
//! - the name the session ends with is the one the others last heard.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mio::Token;
use monoloop::protocol::chat::{valid_name, Chat, ChatSession};
use monoloop::protocol::{CloseReason, Ctx, Limits, Protocol, Shared, Step};
use monoloop_fuzz::cut;

/// What must never reach a terminal (`chat_text` has the same list).
fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{180e}' | '\u{feff}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Every line of `bytes` (LF-ended but perhaps the last) is clean.
fn clean(bytes: &[u8], whose: &str) {
    let text = std::str::from_utf8(bytes).expect("output is UTF-8");
    for line in text.split('\n') {
        if let Some(c) = line.chars().find(|&c| forbidden(c)) {
            panic!("{c:?} reached {whose}: {line:?}");
        }
    }
}

/// One step of the room: the context, the step's own output and sends.
fn step<R>(f: impl FnOnce(&mut Ctx) -> R) -> (R, Vec<u8>, Vec<(Token, Shared)>) {
    let (mut out, mut sends) = (Vec::new(), Vec::new());
    let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
    let r = f(&mut ctx);
    (r, out, sends)
}

/// The user's name as the session holds it (`summary`: `user=NAME`).
fn name_of(chat: &Chat, s: &ChatSession) -> Option<String> {
    chat.summary(s)
        .map(|u| u.strip_prefix("user=").expect("user=NAME").to_string())
}

/// Checks what one step of user 0 sent the others, following its name as
/// each of them hears it (bob and carol hear the room's lines alike, and
/// each the private messages for them): `current` is per receiver.
fn follow(current: &mut [Option<String>; 2], sends: &[(Token, Shared)]) {
    for (to, chunk) in sends {
        assert!(matches!(to.0, 1 | 2), "sent to {to:?}");
        clean(chunk, "another user");
        assert!(chunk.ends_with(b"\n"), "a chunk ends inside a line");
        let text = std::str::from_utf8(chunk).unwrap();
        let current = &mut current[to.0 - 1];
        for line in text.strip_suffix('\n').unwrap().split('\n') {
            let me = current.clone();
            let said = |prefix: &str| after(line, prefix, me.as_deref());
            if let Some(rest) = said("").and_then(|r| r.strip_prefix(": ")) {
                assert!(!rest.trim().is_empty(), "an empty line relayed");
            } else if let Some(rest) = said("[private] ").and_then(|r| r.strip_prefix(": ")) {
                assert!(!rest.trim().is_empty(), "an empty private message");
            } else if said("") == Some(" left the chat") {
            } else if let Some(new) = said("").and_then(|r| r.strip_prefix(" is now ")) {
                assert!(valid_name(new.as_bytes()), "renamed to {new:?}");
                *current = Some(new.to_string());
            } else if let (None, Some(name)) = (&me, line.strip_suffix(" joined the chat")) {
                assert!(valid_name(name.as_bytes()), "joined as {name:?}");
                *current = Some(name.to_string());
            } else {
                panic!("a line in no form of the room's, as {me:?}: {line:?}");
            }
        }
    }
}

/// `line` after `prefix` and the name `me`, if it starts with them.
fn after<'l>(line: &'l str, prefix: &str, me: Option<&str>) -> Option<&'l str> {
    line.strip_prefix(prefix)?.strip_prefix(me?)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(first >> 1) * 4 + 8;
    let mut chat = Chat::new(Limits::lines(max_line));
    let mut sessions: Vec<ChatSession> = Vec::new();
    for (i, name) in [(1, "bob"), (2, "carol")] {
        let (mut s, _, _) = step(|ctx| chat.open(Token(i), ctx));
        let line = format!("{name}\n");
        let (r, out, _) = step(|ctx| chat.data(&mut s, Token(i), line.as_bytes(), ctx));
        assert!(r == Step::Continue && out == b"Welcome to the chat!\n");
        sessions.push(s);
    }

    let (mut me, out, _) = step(|ctx| chat.open(Token(0), ctx));
    clean(&out, "the user");
    let mut current = [None, None];
    let mut closed = false;
    let (_, pieces) = cut(data);
    let joins: &[&[u8]] = if first & 1 == 1 { &[b"alice\n"] } else { &[] };
    for piece in joins.iter().chain(pieces.iter()) {
        let (r, out, sends) = step(|ctx| chat.data(&mut me, Token(0), piece, ctx));
        clean(&out, "the user");
        follow(&mut current, &sends);
        let held = name_of(&chat, &me);
        assert!(
            current.iter().all(|c| *c == held),
            "the others heard another name"
        );
        if r != Step::Continue {
            closed = true;
            break;
        }
    }
    if !closed {
        let (_, out, sends) = step(|ctx| chat.eof(&mut me, Token(0), ctx));
        clean(&out, "the user");
        follow(&mut current, &sends);
        let held = name_of(&chat, &me);
        assert!(
            current.iter().all(|c| *c == held),
            "the others heard another name"
        );
    }
    let (_, _, sends) = step(|ctx| chat.closed(me, Token(0), CloseReason::Done, ctx));
    follow(&mut current, &sends);
    if current[0].is_some() {
        assert!(!sends.is_empty(), "a named user left unannounced");
    }
});
