//! The echo protocol (RFC 862), with two optional extras from the tutorial
//! monoloop grows from: a greeting on connect, and a line mode that sends
//! each line back behind a prefix ("Echo: ").
//!
//! States, per connection:
//!
//! ```text
//!   raw mode:   OPEN --bytes--> (same bytes back) --EOF--> CLOSE
//!   line mode:  OPEN --bytes--> complete lines back as PREFIX+line,
//!                               an unfinished line kept in the session
//!               --EOF or shutdown--> the unfinished line back, CLOSE
//!               --line longer than --max-line--> "ERROR: line too long", CLOSE
//! ```
//!
//! The session holds only the unfinished line, and only in line mode; in raw
//! mode it is empty and a connection costs the echo protocol nothing.

use std::time::Instant;

use super::lines::{Lines, TooLong, LINE_TOO_LONG};
use super::{ConnId, Ctx, Drain, Limits, Protocol, Step};

/// Echo, configured once for the whole server.
#[derive(Debug, Clone)]
pub struct Echo {
    /// Sent once on connect, already with its trailing newline.
    greeting: Option<Vec<u8>>,
    /// `Some`: line mode, each complete line comes back behind this.
    prefix: Option<Vec<u8>>,
    limits: Limits,
}

/// One connection's echo state: the bytes of an unfinished line (line mode
/// only). Empty, it owns no heap memory.
#[derive(Debug, Default)]
pub struct EchoSession {
    lines: Lines,
}

impl Echo {
    pub fn new(greeting: Option<&str>, prefix: Option<&str>, limits: Limits) -> Self {
        Self {
            greeting: greeting.map(|g| {
                let mut g = g.as_bytes().to_vec();
                g.push(b'\n');
                g
            }),
            prefix: prefix.map(|p| p.as_bytes().to_vec()),
            limits,
        }
    }

    /// Line mode: sends back every complete line in `input`, keeps the rest.
    fn lines(&self, prefix: &[u8], s: &mut EchoSession, input: &[u8], ctx: &mut Ctx) -> Step {
        let fed = s.lines.feed(input, self.limits.max_line, ctx.now, |line| {
            ctx.write(prefix);
            ctx.write(line);
            Step::Continue
        });
        match fed {
            Ok(step) => step,
            Err(TooLong) => {
                ctx.write(LINE_TOO_LONG);
                Step::Close
            }
        }
    }

    /// Sends back the unfinished line, if any (the peer or the server is
    /// done, and nothing accepted is dropped).
    fn flush_partial(&self, s: &mut EchoSession, ctx: &mut Ctx) {
        if let (Some(prefix), Some(rest)) = (&self.prefix, s.lines.take_rest()) {
            ctx.write(prefix);
            ctx.write(&rest);
        }
    }
}

impl Protocol for Echo {
    type Session = EchoSession;

    fn open(&mut self, _id: ConnId, ctx: &mut Ctx) -> EchoSession {
        if let Some(g) = &self.greeting {
            ctx.write(g);
        }
        EchoSession::default()
    }

    #[inline]
    fn data(&mut self, s: &mut EchoSession, _id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step {
        match self.prefix.as_deref() {
            None => {
                // No copy: the loop writes the input from its read buffer.
                ctx.write_input();
                Step::Continue
            }
            Some(prefix) => self.lines(prefix, s, input, ctx),
        }
    }

    fn eof(&mut self, s: &mut EchoSession, _id: ConnId, ctx: &mut Ctx) -> Step {
        self.flush_partial(s, ctx);
        Step::Close
    }

    fn shutdown(&mut self, s: &mut EchoSession, _id: ConnId, ctx: &mut Ctx) -> Drain {
        self.flush_partial(s, ctx);
        Drain::Close
    }

    /// Raw mode has no lines, so never a deadline.
    fn has_deadlines(&self) -> bool {
        self.prefix.is_some()
    }

    /// Line mode: a line must be finished within the idle timeout of its
    /// first byte. Raw mode has no lines, so no deadline.
    #[inline]
    fn deadline(&self, s: &EchoSession) -> Option<Instant> {
        s.lines.deadline(self.limits.line_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Token;
    use std::time::Instant;

    /// Runs `f` with a fresh context and returns what it wrote.
    fn step<R>(f: impl FnOnce(&mut Ctx) -> R) -> (R, Vec<u8>) {
        step_on(&[], f)
    }

    /// Runs `f` with a context for `input`, and returns what the loop
    /// would send: the input itself when the reply is the uncopied input.
    fn step_on<R>(input: &[u8], f: impl FnOnce(&mut Ctx) -> R) -> (R, Vec<u8>) {
        let mut out = Vec::new();
        let mut sends = Vec::new();
        let mut ctx = Ctx::for_input(Instant::now(), input, &mut out, &mut sends);
        let r = f(&mut ctx);
        let as_is = ctx.reply_is_input();
        assert!(sends.is_empty(), "echo never writes to other connections");
        if as_is {
            assert!(out.is_empty(), "an uncopied reply is the whole reply");
            out = input.to_vec();
        }
        (r, out)
    }

    const ID: Token = Token(1);

    #[test]
    fn raw_mode_returns_bytes_unchanged() {
        let mut e = Echo::new(None, None, Limits::lines(10));
        let (mut s, greeting) = step(|c| e.open(ID, c));
        assert!(greeting.is_empty());
        let data: Vec<u8> = (0..=255).collect();
        let (r, out) = step_on(&data, |c| e.data(&mut s, ID, &data, c));
        assert_eq!(r, Step::Continue);
        assert_eq!(out, data, "raw mode ignores --max-line and newlines");
    }

    #[test]
    fn greeting_gets_a_newline() {
        let mut e = Echo::new(Some("Welcome to secure server"), None, Limits::lines(10));
        let (_, out) = step(|c| e.open(ID, c));
        assert_eq!(out, b"Welcome to secure server\n");
    }

    #[test]
    fn line_mode_prefixes_complete_lines_and_waits_for_the_rest() {
        let mut e = Echo::new(None, Some("Echo: "), Limits::lines(100));
        let (mut s, _) = step(|c| e.open(ID, c));
        let (_, out) = step(|c| e.data(&mut s, ID, b"one\ntw", c));
        assert_eq!(out, b"Echo: one\n");
        let (_, out) = step(|c| e.data(&mut s, ID, b"o\r\nthree\n", c));
        assert_eq!(out, b"Echo: two\r\nEcho: three\n");
        assert!(s.lines.is_empty());
    }

    #[test]
    fn line_mode_sends_the_unfinished_line_at_eof() {
        let mut e = Echo::new(None, Some("> "), Limits::lines(100));
        let (mut s, _) = step(|c| e.open(ID, c));
        step(|c| e.data(&mut s, ID, b"tail", c));
        let (r, out) = step(|c| e.eof(&mut s, ID, c));
        assert_eq!(r, Step::Close);
        assert_eq!(out, b"> tail");
    }

    #[test]
    fn line_mode_refuses_an_overlong_line_even_in_pieces() {
        let mut e = Echo::new(None, Some("> "), Limits::lines(8));
        let (mut s, _) = step(|c| e.open(ID, c));
        let (r, _) = step(|c| e.data(&mut s, ID, b"12345", c));
        assert_eq!(r, Step::Continue);
        let (r, out) = step(|c| e.data(&mut s, ID, b"6789", c));
        assert_eq!(r, Step::Close);
        assert_eq!(out, LINE_TOO_LONG);
        let mut s = EchoSession::default();
        let (r, out) = step(|c| e.data(&mut s, ID, b"123456789\n", c));
        assert_eq!((r, out.as_slice()), (Step::Close, LINE_TOO_LONG));
        let (r, out) = step(|c| e.data(&mut s, ID, b"12345678\n", c));
        assert_eq!((r, out.as_slice()), (Step::Continue, &b"> 12345678\n"[..]));
    }
}
