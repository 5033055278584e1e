//! The visit: one connection served for one go. Read what is waiting (up
//! to three reads, one for a visit from `light`; over TLS, each
//! `Connection::read` may read the socket up to four times while no
//! plaintext comes), hand each to the protocol and send its answer at
//! once, write what is owed (within a share), let a producing protocol
//! generate more, then settle: the stage moves on, the interest is made to
//! match, the timer is armed. A connection with work
//! left goes to the back of the ready queue; one whose reads ended with
//! input still waiting, to its front for a few visits (`carry`). An event
//! that finds the turn's budget spent waits in `fresh`, or, for a
//! connection whose last visit was light, in `light`, served first next
//! turn (`serve_light`).
//!
//! Bytes are counted in one place (`Tally::count`, `report.rs`): the stats,
//! the access log and the turn's budget all learn from it, and a visit
//! returns what it moved.

use std::time::Instant;

use mio::Token;

use super::closing::{Origin, PeerEnd};
use super::output::{send_reply, send_staged};
use super::relay::RECHECK;
use super::time::TimerKey;
use super::{enqueue, step_ctx, Server};
use crate::connection::{ReadOutcome, Stage};
use crate::protocol::{CloseReason, Direct, Step};

/// Size of the one read buffer all connections share.
pub(super) const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads per visit to a connection before the others get their go (up to
/// 192 KiB, and the replies to them). Fewer, longer visits let a peer that
/// streams find more to do each time it wakes, and waking it (an interrupt
/// to its core, which the server's write pays for) was most of what a
/// streamed byte cost beyond its copies: with three reads a visit,
/// streaming at 100 connections cost about a seventh less server CPU per
/// MB than with one, and the interactive client's p99 beside 50 bulk
/// streams stayed under 0.5 ms in the full run (docs/benchmarks.md, "Issue
/// 23"). A turn ends once it has moved `TURN_BUDGET`, so it lasts at most
/// that plus one visit.
const READS_PER_VISIT: usize = 3;
/// Times a connection still holding input after its reads is put back at
/// the front of the ready queue (`Server::carry`) before it goes to the
/// back: a stream is read on, about a megabyte at a time, while turns stay
/// as short as before (`light`, the turn's events and `fresh` still come
/// first). Its peer then finds more to do each time it wakes, as a runtime
/// that runs a task until its socket would block lets it, and wakes less
/// often: in issue 23's probes, 50 bulk streams beside an interactive
/// client moved about 10% more on a quiet core and 20 to 25% more on a shared
/// one, at the same p99 (a higher p999 on a shared core), and streaming
/// at 100 connections cost about a tenth less CPU per MB
/// (docs/benchmarks.md, "Issue 23, continued"). The price: a connection
/// in the ready queue waits up to five visits for each one ahead of it,
/// not one.
const CARRY: u8 = 4;
/// Bytes one visit may send with `sendfile` (`sendfile.rs`), at most. A
/// byte sent that way costs about a third of the CPU of one read and
/// written (the files section of docs/benchmarks.md), so a visit may move
/// four times as many in about the same time; fewer, larger calls are what
/// bring the file server to the floor's CPU per GiB.
const DIRECT_PER_VISIT: usize = 1024 * 1024;
/// Pieces a producing protocol (the file server) may generate per visit:
/// a 64 KiB chunk read and written, or one `sendfile`.
const PRODUCE_PER_VISIT: usize = 1;
/// Bytes read and written in one turn, over all connections, before the
/// loop polls again: bounds how long any event waits for its turn.
pub(super) const TURN_BUDGET: usize = 256 * 1024;
/// Turns in a row the ready queue may wait while `fresh` takes the budget,
/// before its first connection goes ahead of `fresh` for one visit
/// (`Server::next_ready`): rare enough to leave a client that just spoke
/// its place, often enough that late events cannot starve a connection
/// with work left.
const READY_PATIENCE: u32 = 64;
/// Bytes a visit may move (both ways, and a TLS read's records' charge)
/// and leave the connection light (`Connection::light`): a few small
/// messages and their answers, not a stream's reads (64 KiB each).
const LIGHT_VISIT: usize = 4 * 1024;
/// The share of a turn's budget that those waiting in `light` may start
/// visits in, at its start, before its events: half, so that a crowd of
/// small talkers leaves the events and the streams the other half.
const LIGHT_SHARE: usize = TURN_BUDGET / 2;
/// Reads in a visit taken from `light`: one, so that a connection light
/// on its last visit and heavy now (a stream's first burst, or a client
/// that alternates to jump the queue) takes at most 64 KiB of input and
/// its reply ahead of the turn's events, and the share is passed by at
/// most that.
const LIGHT_READS: usize = 1;
/// The least a visit counts against the turn's budget, so that visits that
/// move few bytes (a handshake step, a held sender) still end a turn.
const VISIT_COST: usize = 128;

/// What a visit's reading leaves for its writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owed {
    /// Nothing the kernel may take now: no flush needed.
    Nothing,
    /// Perhaps something: flush (which looks).
    Maybe,
}

impl Server {
    /// Records an event for a connection, then serves it.
    pub(super) fn connection_event(
        &mut self,
        token: Token,
        event: &mio::event::Event,
        now: Instant,
    ) {
        // Gone, or closed earlier in this batch: the event is stale.
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.stage(), Stage::Closed) {
            return;
        }
        conn.on_event(
            event.is_readable(),
            event.is_read_closed() || event.is_error(),
            event.is_writable(),
        );
        // Already waiting its turn: the event only refreshed what it may do.
        if conn.queued {
            return;
        }
        if self.spent >= TURN_BUDGET {
            // One that owes more than a light visit moves (a receiver a
            // relay filled) would write it all from `light`: heavy.
            let queue = if conn.light && conn.queue.len() <= LIGHT_VISIT {
                &mut self.light
            } else {
                &mut self.fresh
            };
            enqueue(queue, token, conn);
            return;
        }
        self.visit(token, now, READS_PER_VISIT);
    }

    /// Serves the heavy connections whose events an earlier turn had no
    /// budget for (`fresh`; the light ones were served first, from
    /// `light`), then the ready queue, one visit each (a connection
    /// with work left goes to the back of the ready queue, or to its front
    /// if `carry` says so), until both are empty or the turn's budget is
    /// spent; what is left waits for the next turn.
    pub(super) fn serve_ready(&mut self, now: Instant) {
        // Passed over again, unless `next_ready` takes from it this turn.
        if !self.ready.is_empty() {
            self.ready_passed_over += 1;
        }
        while self.spent < TURN_BUDGET {
            let Some(token) = self.next_ready() else {
                return;
            };
            self.visit_queued(token, now, READS_PER_VISIT);
        }
    }

    /// The start of a turn: the light connections whose events came after
    /// the last turn's budget was spent, one visit of one read each
    /// (`LIGHT_READS`), before this turn's events, while less than
    /// `LIGHT_SHARE` is spent. Without this, such a client waited in
    /// `fresh` for as many turns as the streams' events took the whole
    /// budget: beside 50 bulk streams, a few percent of an interactive
    /// client's round trips waited 0.5 to over 5 ms, which put its p99 past
    /// 0.5 ms in about one run in four (docs/benchmarks.md, "Issue 23,
    /// round four"). A connection that turns out heavy here is marked so
    /// for its next wait (`LIGHT_VISIT`). One that also has an event in
    /// this turn's batch (it kept sending) and was not queued again is
    /// visited again for it, and that visit usually finds nothing (an
    /// empty visit leaves the mark as it was): one read for nothing, the
    /// price of not remembering which connections `light` served.
    pub(super) fn serve_light(&mut self, now: Instant) {
        while self.spent < LIGHT_SHARE {
            let Some(token) = self.light.pop_front() else {
                return;
            };
            self.visit_queued(token, now, LIGHT_READS);
        }
    }

    /// A visit (of at most `reads` reads) to a connection taken from a
    /// queue, unless it closed while it waited.
    fn visit_queued(&mut self, token: Token, now: Instant, reads: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.queued = false;
        if !matches!(conn.stage(), Stage::Closed) {
            self.visit(token, now, reads);
        }
    }

    /// The next connection to visit: from `fresh` first, so that a client
    /// that just spoke waits only for the entries ahead of it there; but
    /// when the ready queue has waited `READY_PATIENCE` turns in a row, its
    /// first connection goes first.
    fn next_ready(&mut self) -> Option<Token> {
        if self.ready_passed_over >= READY_PATIENCE || self.fresh.is_empty() {
            if let Some(token) = self.ready.pop_front() {
                self.ready_passed_over = 0;
                return Some(token);
            }
        }
        self.fresh.pop_front()
    }

    /// One visit of at most `reads` reads: drives the connection and
    /// charges the turn for the bytes it moved (at least `VISIT_COST`).
    #[inline]
    pub(super) fn visit(&mut self, token: Token, now: Instant, reads: usize) {
        let moved = self.drive(token, now, reads);
        self.spent += moved.max(VISIT_COST);
    }

    /// Serves one connection for one visit: read what is waiting (up to
    /// `reads` reads), write what is owed (up to `WRITE_PER_VISIT`), let a
    /// producing protocol generate more, then settle its stage, interest
    /// and timer, and mark it light or not. A connection with work left is
    /// queued for another visit. Returns the bytes it moved, both ways.
    pub(super) fn drive(&mut self, token: Token, now: Instant, reads: usize) -> usize {
        // What moved since the last visit (a delivery, say) is not this
        // visit's.
        self.tally.take_moved();
        let wrote = match self.read_input(token, now, reads) {
            Owed::Maybe => self.flush(token, now),
            // The reply went out whole: nothing to flush, no lookup.
            Owed::Nothing => 0,
        };
        // A receiver that fell behind a relay: is it catching up?
        if self.fans_out && self.relay.pacing.watching() {
            self.judge_receiver(token, wrote > 0, now);
        }
        // One test of a flag for protocols that never produce (all but
        // file): the loop is compiled once for every protocol.
        if self.produces {
            self.produce(token, now);
        }
        // An empty visit (nothing had come, or a relay held the sender)
        // says nothing: the mark stays.
        let moved = self.tally.moving();
        self.settle_as(token, now, (moved > 0).then_some(moved <= LIGHT_VISIT));
        self.tally.take_moved()
    }

    /// True if the protocol has output to generate and the connection has
    /// sent everything it owed: the moment to generate the next piece.
    pub(super) fn wants_produce(&self, token: Token) -> bool {
        self.conns.get(token).is_some_and(|c| {
            c.accepts_output()
                && !c.write_blocked()
                && c.queue.is_empty()
                && self.protocol.producing(token)
        })
    }

    /// Lets a producing protocol generate output while the socket takes it,
    /// within a budget; each piece is written at once, so output is made
    /// only as fast as the peer reads it.
    pub(super) fn produce(&mut self, token: Token, now: Instant) {
        for _ in 0..PRODUCE_PER_VISIT {
            if !self.wants_produce(token) {
                return;
            }
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            // On plain TCP the socket is lent for sendfile (`sendfile.rs`).
            let mut direct = conn.direct(DIRECT_PER_VISIT);
            let mut ctx =
                step_ctx(now, &[], &mut self.staging, &mut self.relay).with_direct(direct.as_mut());
            let step = self.protocol.produce(token, &mut ctx);
            if let Some(direct) = direct {
                self.sent_direct(token, direct, now);
            }
            self.emit(token, now);
            if !self.after_step(token, step, Origin::Production, now) {
                return;
            }
        }
        // Budget spent and the socket still takes more: others first.
        if self.wants_produce(token) {
            self.enqueue(token);
        }
    }

    /// Accounts for what a producing step sent with `sendfile`, as `flush`
    /// does for a write: output counted, the connection told (its idle
    /// clock, a refusal that asks for WRITABLE), a failure closing it.
    pub(super) fn sent_direct(&mut self, token: Token, direct: Direct, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.sent_directly(direct.sent, direct.blocked, now);
        self.tally.count(token, 0, direct.sent);
        if let Some(e) = direct.failed {
            self.fail(token, &e);
        }
    }

    /// Reads until the socket is drained, reading pauses, or `reads` reads
    /// are done; hands each read to the protocol and sends its answer at
    /// once. Says whether the connection may have bytes to write now.
    pub(super) fn read_input(&mut self, token: Token, now: Instant, reads: usize) -> Owed {
        for _ in 0..reads {
            let Some(conn) = self.conns.get_mut(token) else {
                return Owed::Maybe;
            };
            if !conn.wants_read() {
                return Owed::Maybe;
            }
            if matches!(conn.stage(), Stage::Header { .. }) {
                // Its one read; what it leaves (the client's FIN after a
                // finished header, say) is queued below like any input.
                self.read_header(token, now);
                break;
            }
            // A relay reads its senders only as fast as its receivers keep
            // up (pacing.rs): the kernel holds the rest.
            if self.fans_out
                && conn.stage() == Stage::Open
                && (self.worker.as_ref().is_some_and(|w| w.others_holding())
                    || self.relay.hub.holding())
            {
                // A receiver on another worker is catching up, or Redis is
                // (`--cluster`): this sender waits too, and is looked at
                // again shortly.
                self.relay.held_elsewhere.push(token);
                if !self.relay.recheck_armed {
                    self.relay.recheck_armed = true;
                    self.timers.schedule(now + RECHECK, TimerKey::Recheck);
                }
                return Owed::Maybe;
            }
            if self.fans_out && conn.stage() == Stage::Open && !self.relay.pacing.may_read() {
                if self.relay.pacing.budget_spent() {
                    // Next turn: this turn has fanned out all it may, and
                    // queuing it now would only visit it again for nothing.
                    if !conn.queued {
                        conn.queued = true;
                        self.relay.deferred.push(token);
                    }
                } else {
                    self.relay.pacing.hold(token);
                }
                return Owed::Maybe;
            }
            // (Over TLS, the records' cost is charged to the turn too: a
            // read of many small ones costs far more than its plaintext.)
            let outcome = conn.read(&mut self.scratch, self.tally.work(), now);
            // Its first byte of its own (of a TLS handshake, too): a
            // client, not a health check. One test once it is known.
            if conn.unproven && (matches!(outcome, ReadOutcome::Data(_)) || conn.tls_heard()) {
                self.tally.client(conn);
            }
            // A TLS handshake that just finished: the protocol comes in
            // before the first plaintext it must see. (Only then is the
            // connection looked up again.)
            let conn = if matches!(conn.stage(), Stage::Handshake { .. }) && conn.handshake_done() {
                self.established(token, now);
                match self.conns.get_mut(token) {
                    Some(conn) => conn,
                    None => return Owed::Maybe,
                }
            } else {
                conn
            };
            match outcome {
                ReadOutcome::Data(n) => {
                    // Lingering (or turned away): the bytes are read only
                    // to be discarded. Only an open connection has a
                    // session.
                    if conn.stage() != Stage::Open {
                        self.tally.count(token, n, 0);
                        continue;
                    }
                    let input = &self.scratch[..n];
                    let mut ctx = step_ctx(now, input, &mut self.staging, &mut self.relay);
                    let step = self.protocol.data(token, input, &mut ctx);
                    let (fanned_out, as_is) = (ctx.fanned_out(), ctx.reply_is_input());
                    if self.fans_out {
                        self.relay.pacing.spend(fanned_out);
                    }
                    // The reply goes out at once (usually one write, no copy
                    // into the queue), through the borrow we already hold;
                    // an echo straight from the read buffer.
                    let (written, sent) = if as_is {
                        send_reply(conn, input, now)
                    } else {
                        send_staged(conn, &mut self.staging, now)
                    };
                    self.tally.count(token, n, written);
                    if let Err(e) = sent {
                        self.fail(token, &e);
                        return Owed::Maybe;
                    }
                    if step != Step::Continue {
                        self.after_step(token, step, Origin::Input, now);
                        return Owed::Maybe;
                    }
                    conn.apply_backpressure(self.opts.write_limit);
                    // The usual end of a turn's reading: a short read
                    // drained the socket (no second lookup to learn it),
                    // and the reply usually went out whole.
                    if !conn.wants_read() {
                        return if conn.can_write() {
                            Owed::Maybe
                        } else {
                            Owed::Nothing
                        };
                    }
                }
                // Still `wants_read` only when TLS yielded after a bounded
                // number of reads: queued below.
                ReadOutcome::Drained => break,
                ReadOutcome::Eof => {
                    self.end_of_input(token, now);
                    return Owed::Maybe;
                }
                ReadOutcome::Failed(e) => {
                    self.fail(token, &e);
                    return Owed::Maybe;
                }
                #[cfg(feature = "tls")]
                ReadOutcome::Refused(e) => {
                    self.refused(token, &e, now);
                    return Owed::Maybe;
                }
            }
        }
        // Reads spent with input still waiting: come back soon (`carry`).
        if self.conns.get(token).is_some_and(|c| c.wants_read()) {
            self.carry(token);
        }
        Owed::Maybe
    }

    /// A connection whose visit ended with input still waiting: at the
    /// front of the ready queue, so that its next visit comes next (after
    /// `light`, the turn's events and `fresh`), `CARRY` times since it last
    /// went to the back; then at the back, behind the others (`enqueue`
    /// starts its count again). Never while others wait in `fresh`, or while the ready
    /// queue is being passed over for them (`READY_PATIENCE`): then the
    /// ready queue's order is all that protects those who wait in it.
    pub(super) fn carry(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.queued {
            return;
        }
        if conn.carried >= CARRY || !self.fresh.is_empty() || self.ready_passed_over > 0 {
            enqueue(&mut self.ready, token, conn);
            return;
        }
        conn.carried += 1;
        conn.queued = true;
        self.ready.push_front(token);
    }

    /// The peer sent its FIN.
    pub(super) fn end_of_input(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.stage(), Stage::Handshake { .. }) {
            self.handshake_failed(token, "the client closed mid-handshake");
            return;
        }
        if conn.stage() != Stage::Open {
            // Lingering: the peer has seen our FIN and sent its own.
            self.close(token, CloseReason::Done);
            return;
        }
        // Gone without a word, before it could have read one of ours: a
        // health check. Nothing of ours can matter to it any more.
        if self.ends_as_check(token, PeerEnd::Fin) {
            self.close(token, CloseReason::Check);
            return;
        }
        let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
        let step = self.protocol.eof(token, &mut ctx);
        self.emit(token, now);
        if self.after_step(token, step, Origin::PeerEof, now) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.set_stage(Stage::HalfClosed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{echo_server_with as server_with, Server};
    use super::{CARRY, LIGHT_VISIT, SCRATCH_SIZE, TURN_BUDGET};
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// Takes the ready queue's first connection, as `serve_ready` does
    /// before a visit.
    fn take(server: &mut Server) -> mio::Token {
        let token = server.next_ready().expect("a connection is ready");
        server.conns.get_mut(token).unwrap().queued = false;
        token
    }

    /// A stream whose reads keep ending with input waiting is served
    /// `CARRY + 1` visits in a row, then waits behind the others; then it
    /// may be carried again. Each connection is in the queue once.
    #[test]
    fn a_stream_is_carried_a_few_visits_then_waits_its_turn() {
        let (mut server, _clients, t) = server_with(3);
        let (a, b, c) = (t[0], t[1], t[2]);
        server.enqueue(a);
        server.enqueue(b);
        server.enqueue(c);
        let mut order = Vec::new();
        for _ in 0..8 {
            let token = take(&mut server);
            order.push(token);
            server.carry(token);
            assert_eq!(server.ready.len(), 3, "queued once each");
        }
        let visits = CARRY as usize + 1;
        assert!(order[..visits].iter().all(|&x| x == a), "{order:?}");
        assert_eq!(order[visits], b, "{order:?}");
        assert_eq!(order[visits + 1], b, "b is carried in its turn: {order:?}");
        assert_eq!(server.ready.back(), Some(&a), "a waits behind them");
    }

    /// While others wait in `fresh`, or the ready queue is passed over for
    /// them, nobody is carried: the ready queue keeps its order.
    #[test]
    fn nobody_is_carried_past_those_waiting_in_fresh() {
        let (mut server, _clients, t) = server_with(3);
        let (a, b, c) = (t[0], t[1], t[2]);
        server.enqueue(b);
        let conn = server.conns.get_mut(c).unwrap();
        super::super::enqueue(&mut server.fresh, c, conn);
        server.carry(a);
        assert_eq!(server.ready.iter().copied().collect::<Vec<_>>(), [b, a]);
        let token = take(&mut server);
        assert_eq!(token, c, "fresh first");
        server.ready_passed_over = 1;
        server.carry(c);
        assert_eq!(server.ready.iter().copied().collect::<Vec<_>>(), [b, a, c]);
    }

    /// Polls until every connection in `tokens` has had its event
    /// recorded (dispatched through `connection_event`), or 5 s pass.
    fn dispatch_events(server: &mut Server, tokens: &[mio::Token]) {
        let mut events = mio::Events::with_capacity(64);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tokens.iter().all(|t| seen.contains(t)) && Instant::now() < deadline {
            server
                .poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for event in events.iter() {
                seen.push(event.token());
                server.connection_event(event.token(), event, Instant::now());
            }
        }
        assert!(
            tokens.iter().all(|t| seen.contains(t)),
            "events for {tokens:?}"
        );
    }

    /// Reads what the server echoed to `client`: `n` bytes, within 5 s.
    fn echoed(client: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        let mut echo = vec![0u8; n];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut echo).unwrap();
        echo
    }

    /// A visit marks a connection light or heavy by what it moved; when
    /// the budget is spent, a light one waits in `light`, a heavy one in
    /// `fresh`; `light` is served first next turn, and its visit answers
    /// the message.
    #[test]
    fn a_light_connection_past_the_budget_is_served_first_next_turn() {
        let (mut server, mut clients, t) = server_with(2);
        let (talker, stream) = (t[0], t[1]);
        // Both new, so both light; one visit each, with budget left.
        clients[0].write_all(b"hello\n").unwrap();
        clients[1].write_all(&[b'x'; 8192]).unwrap();
        dispatch_events(&mut server, &[talker, stream]);
        assert_eq!(echoed(&mut clients[1], 8192).len(), 8192);
        assert_eq!(echoed(&mut clients[0], 6), b"hello\n");
        assert!(server.conns.get(talker).unwrap().light, "6 bytes each way");
        assert!(!server.conns.get(stream).unwrap().light, "8 KiB each way");
        // The budget spent: where each waits.
        server.spent = TURN_BUDGET;
        clients[0].write_all(b"ping\n").unwrap();
        clients[1].write_all(&[b'y'; 8192]).unwrap();
        dispatch_events(&mut server, &[talker, stream]);
        assert_eq!(server.light.iter().copied().collect::<Vec<_>>(), [talker]);
        assert_eq!(server.fresh.iter().copied().collect::<Vec<_>>(), [stream]);
        // The next turn.
        server.spent = 0;
        server.serve_light(Instant::now());
        assert!(server.light.is_empty());
        assert_eq!(server.fresh.len(), 1, "a heavy one waits for the events");
        assert_eq!(echoed(&mut clients[0], 5), b"ping\n");
        server.serve_ready(Instant::now());
        assert!(server.fresh.is_empty());
        assert_eq!(echoed(&mut clients[1], 8192), vec![b'y'; 8192]);
    }

    /// A connection light on its last visit that now sends a burst is
    /// read once from `light`: at most 64 KiB in and its echo out, ahead
    /// of the turn's events; then it is heavy. (How much of the burst the
    /// kernel had let through by then varies; what one read took is
    /// checked, whatever it was.)
    #[test]
    fn a_visit_from_light_reads_once() {
        let (mut server, mut clients, t) = server_with(1);
        let burst = vec![b'z'; 150 * 1024];
        clients[0].set_nonblocking(true).unwrap();
        let sent = clients[0].write(&burst).unwrap();
        clients[0].set_nonblocking(false).unwrap();
        assert!(sent > LIGHT_VISIT, "the kernel took {sent} bytes");
        server.spent = TURN_BUDGET;
        dispatch_events(&mut server, &t);
        assert_eq!(server.light.len(), 1, "new, so light");
        server.spent = 0;
        server.serve_light(Instant::now());
        let took = server.spent / 2;
        assert!(took > 0 && took <= SCRATCH_SIZE, "one read took {took}");
        assert!(!server.conns.get(t[0]).unwrap().light, "heavy now");
        assert_eq!(echoed(&mut clients[0], took).len(), took);
    }

    /// The mark is a visit's to set: settling a connection outside one (a
    /// delivery, a timer) leaves it as it was.
    #[test]
    fn only_a_visit_marks_a_connection() {
        let (mut server, _clients, t) = server_with(1);
        server.conns.get_mut(t[0]).unwrap().light = false;
        server.tally.count(t[0], 0, 10);
        server.settle(t[0], Instant::now());
        assert!(!server.conns.get(t[0]).unwrap().light, "still heavy");
    }
}
