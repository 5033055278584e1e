//! The broadcast relay: every complete line a client sends goes to every
//! other client, behind a prefix (`[Broadcast] ` unless `--prefix` says
//! otherwise).
//!
//! ```text
//!   OPEN --line--> PREFIX + line + "\n" to every other client
//!        --line longer than --max-line--> "ERROR: line too long\n", CLOSE
//!        --EOF--> its unfinished line relayed as a line, CLOSE
//! ```
//!
//! Each line is encoded once, and all the lines of one read go into one
//! `Rc<[u8]>` that sits in every receiver's write queue; 1,000 receivers
//! cost 1,000 pointers per read, not 1,000 copies per line. Lines from different senders never interleave mid-line, because
//! a line is only ever queued whole. A receiver that stops reading is the
//! loop's business: pacing holds the senders back for it at most 250 ms,
//! once (`pacing.rs`, `STALL`), and past `--write-limit` it is disconnected
//! as a slow consumer (`event_loop/relay.rs`, `judge_receiver`), so it
//! holds up nobody for longer.

use std::collections::BTreeMap;
use std::time::Instant;

use super::lines::{content, Lines, TooLong, LINE_TOO_LONG};
use super::room;
use super::{CloseReason, ConnId, Ctx, Limits, Protocol, Remote, Step};

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "[Broadcast] ";

/// The relay: who is connected here, and how lines are framed. (Members
/// on other workers are reached through the loop's hub, `Ctx::publish`.)
#[derive(Debug)]
pub struct Broadcast {
    /// Who is connected here, and since when.
    members: BTreeMap<ConnId, Instant>,
    prefix: Vec<u8>,
    limits: Limits,
}

/// One client's state: its unfinished line.
#[derive(Debug, Default)]
pub struct BroadcastSession {
    lines: Lines,
}

impl Broadcast {
    /// A relay, on one worker of however many.
    pub fn new(prefix: &str, limits: Limits) -> Self {
        Self {
            members: BTreeMap::new(),
            prefix: prefix.as_bytes().to_vec(),
            limits,
        }
    }

    /// Frames one line into `batch`.
    fn frame(&self, line: &[u8], batch: &mut Vec<u8>) {
        batch.extend_from_slice(&self.prefix);
        batch.extend_from_slice(content(line));
        batch.push(b'\n');
    }

    /// Sends the framed lines of one read from `from` to everyone else: one
    /// allocation, shared by every receiver, on every worker.
    fn relay(&mut self, from: ConnId, batch: Vec<u8>, ctx: &mut Ctx) {
        room::say(from, batch, self.members.keys().copied(), ctx);
    }
}

impl Protocol for Broadcast {
    type Session = BroadcastSession;
    const FANS_OUT: bool = true;
    /// A member may only read: silence is not idleness in a room.
    const QUIET_MEMBERS: bool = true;

    fn open(&mut self, id: ConnId, ctx: &mut Ctx) -> BroadcastSession {
        self.members.insert(id, ctx.now);
        BroadcastSession::default()
    }

    fn data(&mut self, s: &mut BroadcastSession, id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step {
        // Every line of this read goes out as one chunk: with many
        // receivers, that is one queue entry each per read, not per line.
        let mut batch = Vec::new();
        let fed = s.lines.feed(input, self.limits.max_line, ctx.now, |line| {
            self.frame(line, &mut batch);
            Step::Continue
        });
        // Lines before an overlong one are still relayed.
        self.relay(id, batch, ctx);
        match fed {
            Ok(step) => step,
            Err(TooLong) => {
                ctx.write(LINE_TOO_LONG);
                Step::Close
            }
        }
    }

    fn eof(&mut self, s: &mut BroadcastSession, id: ConnId, ctx: &mut Ctx) -> Step {
        if let Some(rest) = s.lines.take_rest() {
            let mut batch = Vec::new();
            self.frame(&rest, &mut batch);
            self.relay(id, batch, ctx);
        }
        Step::Close
    }

    fn closed(&mut self, _s: BroadcastSession, id: ConnId, _why: CloseReason, _ctx: &mut Ctx) {
        self.members.remove(&id);
    }

    /// Lines from other workers' members: to every member here.
    fn remote(&mut self, message: Remote, ctx: &mut Ctx) {
        let members = &self.members;
        let here = |id| members.contains_key(&id);
        room::arrived(message, members.iter().map(|(&m, &t)| (m, t)), here, ctx);
    }

    /// A line must be finished within the idle timeout of its first byte.
    fn deadline(&self, s: &BroadcastSession) -> Option<Instant> {
        s.lines.deadline(self.limits.line_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shared;
    use mio::Token;
    use std::time::Instant;

    type Sent = Vec<(Token, Shared)>;

    fn step<R>(f: impl FnOnce(&mut Ctx) -> R) -> (R, Vec<u8>, Sent) {
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let r = f(&mut Ctx::new(Instant::now(), &mut out, &mut sends));
        (r, out, sends)
    }

    fn three() -> (Broadcast, Vec<BroadcastSession>) {
        let mut b = Broadcast::new(DEFAULT_PREFIX, Limits::lines(16));
        let sessions = (1..=3).map(|i| step(|c| b.open(Token(i), c)).0).collect();
        (b, sessions)
    }

    #[test]
    fn a_line_reaches_everyone_but_its_sender_as_one_shared_chunk() {
        let (mut b, mut s) = three();
        let (r, own, sent) = step(|c| b.data(&mut s[0], Token(1), b"hi all\r\n", c));
        assert_eq!(r, Step::Continue);
        assert!(own.is_empty());
        let to: Vec<_> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(to, [Token(2), Token(3)]);
        assert_eq!(&*sent[0].1, b"[Broadcast] hi all\n");
        assert!(sent[0].1.ptr_eq(&sent[1].1), "encoded once, shared");
    }

    #[test]
    fn unfinished_lines_wait_and_are_relayed_at_eof() {
        let (mut b, mut s) = three();
        let (_, _, sent) = step(|c| b.data(&mut s[1], Token(2), b"part", c));
        assert!(sent.is_empty());
        let (r, _, sent) = step(|c| b.eof(&mut s[1], Token(2), c));
        assert_eq!(r, Step::Close);
        assert_eq!(&*sent[0].1, b"[Broadcast] part\n");
    }

    #[test]
    fn overlong_line_closes_only_the_sender() {
        let (mut b, mut s) = three();
        let (r, own, sent) = step(|c| b.data(&mut s[0], Token(1), &[b'x'; 40], c));
        assert_eq!(r, Step::Close);
        assert_eq!(own, LINE_TOO_LONG);
        assert!(sent.is_empty());
    }

    #[test]
    fn departed_members_receive_nothing() {
        let (mut b, mut s) = three();
        let gone = s.pop().unwrap();
        step(|c| b.closed(gone, Token(3), CloseReason::Done, c));
        let (_, _, sent) = step(|c| b.data(&mut s[0], Token(1), b"x\n", c));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, Token(2));
    }

    #[test]
    fn the_lines_of_one_read_travel_as_one_chunk() {
        let (mut b, mut s) = three();
        let (_, _, sent) = step(|c| b.data(&mut s[0], Token(1), b"one\ntwo\nthr", c));
        assert_eq!(sent.len(), 2, "one chunk per receiver");
        assert_eq!(&*sent[0].1, b"[Broadcast] one\n[Broadcast] two\n");
    }

    #[test]
    fn empty_prefix_relays_the_bare_line() {
        let mut b = Broadcast::new("", Limits::lines(16));
        let mut a = step(|c| b.open(Token(1), c)).0;
        step(|c| b.open(Token(2), c));
        let (_, _, sent) = step(|c| b.data(&mut a, Token(1), b"bare\n", c));
        assert_eq!(&*sent[0].1, b"bare\n");
    }
}
