//! Between connections: what protocols send from one connection to others
//! (delivery), whether a receiver keeps up (judging, pacing), and what
//! arrives from other workers (the hub).
//!
//! Only relays (broadcast and chat: `Protocol::FANS_OUT`) use any of it;
//! for echo and file the loop never enters this file but for an empty
//! `deliver`.

use std::time::{Duration, Instant};

use mio::Token;

use super::time::TimerKey;
use std::collections::VecDeque;

use super::{enqueue, peer_name, step_ctx, Server};
use crate::conn_table::ConnTable;
use crate::connection::Connection;
use crate::hub::Hub;
use crate::logging::{held_note, Throttle, Verdict};
use crate::pacing::{Pacing, Standing};
use crate::protocol::{CloseReason, Shared};
use crate::worker_link::Worker;

/// With several workers, how soon a sender held by another worker's
/// receivers is looked at again.
pub(super) const RECHECK: Duration = Duration::from_millis(5);
/// How often a peer-triggered line (a slow consumer) may be logged when
/// there is no stats interval to go by.
const THROTTLE_DEFAULT: Duration = Duration::from_secs(10);

/// The loop's state between connections.
#[derive(Debug)]
pub(super) struct Relay {
    /// What protocols sent to other connections this turn.
    pub(super) sends: Vec<(Token, Shared)>,
    /// Relay senders to read next turn, once a fresh fan-out budget is
    /// there (flagged `queued`, so each is here once).
    pub(super) deferred: Vec<Token>,
    /// Senders paced to the receivers that keep up.
    pub(super) pacing: Pacing,
    /// When the pacing timer is armed for; other entries are stale.
    pub(super) pacing_due: Option<Instant>,
    /// With several workers: whether this worker last told the others it
    /// holds senders back; the senders held because another worker does,
    /// and whether the timer to look at them again is armed.
    holding_posted: bool,
    pub(super) held_elsewhere: Vec<Token>,
    pub(super) recheck_armed: bool,
    /// When the cluster link's timer entry is armed for; others are stale.
    #[cfg(feature = "cluster")]
    pub(super) cluster_due: Option<Instant>,
    /// The slow-consumer line, throttled: any number of clients can
    /// trigger it at once.
    slow_log: Throttle,
    /// What relays say beyond this worker, and hear from the others
    /// (`hub.rs`), and other instances (`--cluster`); `Hub::local()` with
    /// one worker and no cluster.
    pub(super) hub: Hub,
}

impl Relay {
    pub(super) fn new(write_limit: usize) -> Self {
        Self {
            sends: Vec::new(),
            deferred: Vec::new(),
            pacing: Pacing::new(write_limit),
            pacing_due: None,
            holding_posted: false,
            held_elsewhere: Vec::new(),
            recheck_armed: false,
            #[cfg(feature = "cluster")]
            cluster_due: None,
            slow_log: Throttle::default(),
            hub: Hub::local(),
        }
    }
}

impl Relay {
    /// With several workers: tells the others whether this worker's
    /// receivers hold senders back, when that changed.
    fn post_holding(&mut self, worker: Option<&Worker>) {
        let holding = self.pacing.holding();
        if holding != self.holding_posted {
            self.holding_posted = holding;
            if let Some(worker) = worker {
                worker.set_holding(holding);
            }
        }
    }

    /// Every receiver that keeps up has caught up: the senders held back
    /// go to the back of the ready queue.
    fn release_senders(&mut self, conns: &mut ConnTable<Connection>, ready: &mut VecDeque<Token>) {
        for token in self.pacing.release() {
            if let Some(conn) = conns.get_mut(token) {
                enqueue(ready, token, conn);
            }
        }
    }

    /// Connection `token` is gone: it neither holds senders back nor is
    /// held any more. If it was the last receiver holding them, the
    /// senders are released.
    pub(super) fn forget(
        &mut self,
        token: Token,
        conns: &mut ConnTable<Connection>,
        ready: &mut VecDeque<Token>,
        worker: Option<&Worker>,
    ) {
        if self.pacing.forget(token) == Standing::Released {
            self.release_senders(conns, ready);
        }
        self.post_holding(worker);
    }
}

impl Server {
    /// A new turn for relays: a fresh fan-out budget, and the senders that
    /// waited for it are read again.
    pub(super) fn next_relay_turn(&mut self) {
        self.relay.pacing.new_turn();
        self.ready.extend(self.relay.deferred.drain(..));
    }

    /// Other workers sent messages (the hub's waker): the protocol delivers
    /// each, as it arrives now, to this worker's connections (queued for
    /// `deliver`, like local sends).
    pub(super) fn remote(&mut self, now: Instant) {
        for message in self.relay.hub.take() {
            let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
            self.protocol.remote(message, &mut ctx);
        }
        // Nothing is being served: no connection's own output here.
        self.staging.clear();
    }

    /// Queues what protocols sent to other connections, then flushes each
    /// receiver once: many messages to one peer become one `writev` of up
    /// to 64 chunks, repeated only while the socket takes more (up to
    /// `WRITE_PER_VISIT`, `output.rs`).
    ///
    /// A receiver still owing more than `--write-limit` after that write is
    /// not reading; it is disconnected as a slow consumer (the policy of
    /// Redis's pub/sub output buffer limit), so that it can neither stall
    /// the sender nor grow the server's memory. Its departure may itself
    /// send (a chat "left" line), hence the outer loop. Then what the turn
    /// said to other workers leaves (`Hub::flush`).
    pub(super) fn deliver(&mut self, now: Instant) {
        while !self.relay.sends.is_empty() {
            let mut receivers = Vec::new();
            for (to, chunk) in std::mem::take(&mut self.relay.sends) {
                if let Some(conn) = self.conns.get_mut(to) {
                    if conn.accepts_output() {
                        conn.queue.push_shared(chunk);
                        // A member sent the room's lines is being served,
                        // however it leaves: a client, not a health check
                        // (`ends_as_check`), even if it never says a word.
                        self.tally.client(conn);
                        receivers.push(to);
                    }
                }
            }
            receivers.sort_unstable();
            receivers.dedup();
            for token in receivers {
                let wrote = self.flush(token, now);
                self.judge_receiver(token, wrote > 0, now);
                self.settle(token, now);
            }
        }
        // What this turn said to other workers (and instances) leaves now,
        // once.
        self.relay.hub.flush(self.poll.registry(), now);
    }

    /// After a receiver's flush: is it keeping up? One that owes more than
    /// `--write-limit` and is not keeping up (pacing.rs: it stopped reading,
    /// or cannot catch up) is disconnected as a slow consumer, the policy of
    /// Redis's pub/sub output buffer limit; one that keeps up holds the
    /// senders back instead, up to twice the limit.
    pub(super) fn judge_receiver(&mut self, token: Token, wrote: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.accepts_output() {
            return;
        }
        let owed = conn.queue.len();
        let limit = self.opts.write_limit;
        let standing = if self.fans_out {
            self.relay.pacing.observe(token, owed, wrote, now)
        } else {
            Standing::Dropped
        };
        let cut = owed > limit && (standing == Standing::Dropped || owed > 2 * limit);
        if cut {
            self.tally.stats.slow_consumers += 1;
            // Many clients can stop reading at once: one line per interval,
            // the rest counted in the stats.
            let every = self.opts.stats_interval.unwrap_or(THROTTLE_DEFAULT);
            if let Verdict::Log { held } = self.relay.slow_log.check(now, every) {
                log::info!(
                    "conn #{} {}: slow consumer, {} bytes unread: disconnecting{}",
                    conn.number(),
                    peer_name(self.gate.as_ref(), token, conn),
                    owed,
                    held_note(held)
                );
            }
            self.close(token, CloseReason::SlowConsumer);
        } else if standing == Standing::Released {
            self.release_senders();
        }
        self.arm_pacing();
        self.post_holding();
    }

    /// With several workers: tells the others whether this worker's
    /// receivers hold senders back, when that changed.
    pub(super) fn post_holding(&mut self) {
        self.relay.post_holding(self.worker.as_ref());
    }

    /// Every receiver that keeps up has caught up: the senders held back
    /// are read again, next turn.
    pub(super) fn release_senders(&mut self) {
        self.relay.release_senders(&mut self.conns, &mut self.ready);
    }

    /// Arms the pacing timer for the next moment a receiver may stop
    /// holding senders back, if that is earlier than the one armed.
    pub(super) fn arm_pacing(&mut self) {
        if let Some(next) = self.relay.pacing.next_check() {
            if self.relay.pacing_due.is_none_or(|due| next < due) {
                self.relay.pacing_due = Some(next);
                self.timers.schedule(next, TimerKey::Pacing);
            }
        }
    }
}
