//! The one seam between the loop and a protocol, crossed dynamically.
//!
//! A [`Protocol`] has its own session type, so code that is generic over
//! it is compiled once per protocol. The loop is the larger part of the
//! server and needs none of that: it only has to say "this connection
//! opened, sent these bytes, closed". So the loop holds one
//! `Box<dyn DynProtocol>` and is compiled once; [`Sessions`] is the small
//! generic adapter behind it, the only code compiled per protocol. It keeps
//! the protocol and every connection's session, found by the connection's
//! slot in the loop's table (`conn_table.rs`), so a `Connection` carries no
//! protocol type at all.
//!
//! The price is one indirect call per callback: for echo's `data`, about
//! 36 user-space instructions (saving registers, finding the session,
//! building the context in memory), measured under callgrind; the loop
//! gives them back elsewhere, and more (docs/benchmarks.md, issue 18). A
//! protocol that never has deadlines says so once
//! ([`DynProtocol::has_deadlines`]), so the loop does not ask per message.
//! sozu keeps its sessions behind trait objects for the same reason.
//!
//! Which connections have a session is the loop's to say: it calls
//! [`DynProtocol::open`] when a connection reaches OPEN and
//! [`DynProtocol::closed`] when it leaves OPEN or HALF-CLOSED
//! (`connection.rs`, "Stages"). Calls for a connection without a session
//! (one being turned away, say) do nothing and return the neutral answer.

use std::time::Instant;

use super::{Claim, CloseReason, ConnId, Ctx, Drain, Protocol, Remote, Step};
use crate::conn_table::slot;

/// A protocol as the loop sees it: one method per [`Protocol`] callback,
/// the session found by the connection's id. See the module docs.
pub trait DynProtocol {
    /// [`Protocol::FANS_OUT`], asked once when the loop starts.
    fn fans_out(&self) -> bool;
    /// [`Protocol::QUIET_MEMBERS`], asked once when the loop starts.
    fn quiet_members(&self) -> bool;
    /// [`Protocol::PRODUCES`], asked once when the loop starts.
    fn produces(&self) -> bool;
    /// [`Protocol::has_deadlines`], asked once when the loop starts.
    fn has_deadlines(&self) -> bool;
    /// The connection reached OPEN: its session begins ([`Protocol::open`]).
    fn open(&mut self, id: ConnId, ctx: &mut Ctx);
    /// [`Protocol::data`]; `Continue` without a session.
    fn data(&mut self, id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step;
    /// [`Protocol::eof`]; `Close` without a session.
    fn eof(&mut self, id: ConnId, ctx: &mut Ctx) -> Step;
    /// [`Protocol::producing`]; false without a session.
    fn producing(&self, id: ConnId) -> bool;
    /// [`Protocol::produce`]; `Close` without a session.
    fn produce(&mut self, id: ConnId, ctx: &mut Ctx) -> Step;
    /// [`Protocol::deadline`]; none without a session.
    fn deadline(&self, id: ConnId) -> Option<Instant>;
    /// [`Protocol::shutdown`]; `Close` without a session.
    fn shutdown(&mut self, id: ConnId, ctx: &mut Ctx) -> Drain;
    /// Ends the session, if there is one: the access log's summary first
    /// (asked only when `summary` is true, and returned), then
    /// [`Protocol::closed`]. Later calls for the same connection find no
    /// session and do nothing.
    fn closed(
        &mut self,
        id: ConnId,
        reason: CloseReason,
        summary: bool,
        ctx: &mut Ctx,
    ) -> Option<String>;
    /// [`Protocol::answer`]; `Continue` without a session.
    fn answer(&mut self, id: ConnId, answer: Claim, ctx: &mut Ctx) -> Step;
    /// [`Protocol::remote`].
    fn remote(&mut self, message: Remote, ctx: &mut Ctx);
}

/// A protocol and its sessions, behind [`DynProtocol`]: the generic part,
/// kept this small on purpose.
pub struct Sessions<P: Protocol> {
    protocol: P,
    /// Indexed by the connection's slot in the loop's table; a slot's
    /// session is `None` while no connection there is open.
    by_slot: Vec<Option<P::Session>>,
}

impl<P: Protocol> Sessions<P> {
    pub fn new(protocol: P) -> Self {
        Self {
            protocol,
            by_slot: Vec::new(),
        }
    }

    /// Boxed for the loop.
    pub fn boxed(protocol: P) -> Box<dyn DynProtocol + Send>
    where
        P: Send + 'static,
        P::Session: Send,
    {
        Box::new(Self::new(protocol))
    }

    #[inline]
    fn get(&self, id: ConnId) -> Option<&P::Session> {
        self.by_slot.get(slot(id))?.as_ref()
    }
}

impl<P: Protocol> DynProtocol for Sessions<P> {
    fn fans_out(&self) -> bool {
        P::FANS_OUT
    }

    fn produces(&self) -> bool {
        P::PRODUCES
    }

    fn quiet_members(&self) -> bool {
        P::QUIET_MEMBERS
    }

    fn has_deadlines(&self) -> bool {
        self.protocol.has_deadlines()
    }

    fn open(&mut self, id: ConnId, ctx: &mut Ctx) {
        let session = self.protocol.open(id, ctx);
        let i = slot(id);
        if self.by_slot.len() <= i {
            self.by_slot.resize_with(i + 1, || None);
        }
        self.by_slot[i] = Some(session);
    }

    #[inline]
    fn data(&mut self, id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step {
        let Some(session) = self.by_slot.get_mut(slot(id)).and_then(Option::as_mut) else {
            return Step::Continue;
        };
        self.protocol.data(session, id, input, ctx)
    }

    fn eof(&mut self, id: ConnId, ctx: &mut Ctx) -> Step {
        let Some(session) = self.by_slot.get_mut(slot(id)).and_then(Option::as_mut) else {
            return Step::Close;
        };
        self.protocol.eof(session, id, ctx)
    }

    fn producing(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|s| self.protocol.producing(s))
    }

    fn produce(&mut self, id: ConnId, ctx: &mut Ctx) -> Step {
        let Some(session) = self.by_slot.get_mut(slot(id)).and_then(Option::as_mut) else {
            return Step::Close;
        };
        self.protocol.produce(session, id, ctx)
    }

    #[inline]
    fn deadline(&self, id: ConnId) -> Option<Instant> {
        self.get(id).and_then(|s| self.protocol.deadline(s))
    }

    fn shutdown(&mut self, id: ConnId, ctx: &mut Ctx) -> Drain {
        let Some(session) = self.by_slot.get_mut(slot(id)).and_then(Option::as_mut) else {
            return Drain::Close;
        };
        self.protocol.shutdown(session, id, ctx)
    }

    fn closed(
        &mut self,
        id: ConnId,
        reason: CloseReason,
        summary: bool,
        ctx: &mut Ctx,
    ) -> Option<String> {
        let session = self.by_slot.get_mut(slot(id))?.take()?;
        let said = if summary {
            self.protocol.summary(&session)
        } else {
            None
        };
        self.protocol.closed(session, id, reason, ctx);
        said
    }

    fn answer(&mut self, id: ConnId, answer: Claim, ctx: &mut Ctx) -> Step {
        let Some(session) = self.by_slot.get_mut(slot(id)).and_then(Option::as_mut) else {
            return Step::Continue;
        };
        self.protocol.answer(session, id, answer, ctx)
    }

    fn remote(&mut self, message: Remote, ctx: &mut Ctx) {
        self.protocol.remote(message, ctx);
    }
}

impl<P: Protocol> Sessions<P> {
    /// True if connection `id` has a session now.
    #[cfg(test)]
    fn has_session(&self, id: ConnId) -> bool {
        self.get(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::echo::Echo;
    use crate::protocol::Limits;
    use mio::Token;

    #[test]
    fn a_session_lives_from_open_to_closed_and_is_found_by_slot() {
        let mut s = Sessions::new(Echo::new(None, None, Limits::lines(1024)));
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let id = Token((7 << 32) | 3);
        let now = Instant::now();
        assert_eq!(
            s.data(id, b"x", &mut Ctx::new(now, &mut out, &mut sends)),
            Step::Continue
        );
        assert!(!s.has_session(id), "no session before open");
        s.open(id, &mut Ctx::new(now, &mut out, &mut sends));
        assert!(s.has_session(id));
        let mut ctx = Ctx::for_input(now, b"hi", &mut out, &mut sends);
        assert_eq!(s.data(id, b"hi", &mut ctx), Step::Continue);
        assert!(ctx.reply_is_input(), "echo answers with the input");
        let mut ctx = Ctx::new(now, &mut out, &mut sends);
        s.closed(id, CloseReason::Done, true, &mut ctx);
        assert!(!s.has_session(id), "closed once");
        let mut ctx = Ctx::new(now, &mut out, &mut sends);
        assert_eq!(s.closed(id, CloseReason::Done, true, &mut ctx), None);
    }
}
