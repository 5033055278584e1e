//! The cluster link, as the loop drives it (`--cluster`): when its sockets
//! are served, when its one timer entry fires, and how what it brings
//! reaches the protocol. What the link does is `cluster.rs`'s; this file
//! only decides when.
//!
//! After anything the link did (an event, a deadline), the loop takes
//! what it brought: other instances' lines, handed to the protocol as the
//! other workers' are (`Protocol::remote`), and the answers to chat's name
//! claims (`Protocol::answer`), each a step for its connection like a
//! read. Then the link's one timer entry is armed for its next deadline.

use std::time::Instant;

use mio::Token;

use super::closing::Origin;
use super::time::TimerKey;
use super::{step_ctx, Server};
use crate::connection::Stage;
use crate::hub::Claim;

impl Server {
    /// One of the link's sockets is ready, or its resolver answered.
    pub(super) fn cluster_event(&mut self, token: Token, now: Instant) {
        let registry = self.poll.registry();
        if let Some(cluster) = self.relay.hub.cluster() {
            cluster.event(token, registry, now);
        }
        self.cluster_after(now);
    }

    /// The link's timer entry fired (`at`): stale unless it is the one
    /// armed.
    pub(super) fn cluster_timer(&mut self, at: Instant, now: Instant) {
        if self.relay.cluster_due != Some(at) {
            return;
        }
        self.relay.cluster_due = None;
        let registry = self.poll.registry();
        if let Some(cluster) = self.relay.hub.cluster() {
            cluster.tick(registry, now);
        }
        self.cluster_after(now);
    }

    /// Hands what the link brought to the protocol, and arms its timer.
    pub(super) fn cluster_after(&mut self, now: Instant) {
        if self.relay.hub.cluster_ref().is_none() {
            return;
        }
        for message in self.relay.hub.arrived() {
            let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
            self.protocol.remote(message, &mut ctx);
        }
        self.staging.clear();
        for (token, answer) in self.relay.hub.answers() {
            self.answered(token, answer, now);
        }
        self.arm_cluster(now);
    }

    /// Arms the link's one timer entry for its next deadline, if that is
    /// earlier than the entry armed (a later one re-arms when it fires).
    pub(super) fn arm_cluster(&mut self, now: Instant) {
        let Some(next) = self.relay.hub.cluster_ref().and_then(|c| c.next_deadline()) else {
            return;
        };
        // Never in the past: a deadline the link failed to move must not
        // fire again in the same pass of the timers, for ever; at worst it
        // is looked at once a millisecond.
        let next = next.max(now + std::time::Duration::from_millis(1));
        if self.relay.cluster_due.is_none_or(|due| next < due) {
            self.relay.cluster_due = Some(next);
            self.timers.schedule(next, TimerKey::Cluster);
        }
    }

    /// The registry answered connection `token`'s claim on a name: the
    /// protocol's step, then what it wrote goes out, as after a read.
    fn answered(&mut self, token: Token, answer: Claim, now: Instant) {
        let open = self
            .conns
            .get(token)
            .is_some_and(|c| matches!(c.stage(), Stage::Open | Stage::HalfClosed));
        if !open {
            return;
        }
        let mut ctx = step_ctx(now, &[], &mut self.staging, &mut self.relay);
        let step = self.protocol.answer(token, answer, &mut ctx);
        let fanned_out = ctx.fanned_out();
        self.relay.pacing.spend(fanned_out);
        self.emit(token, now);
        self.after_step(token, step, Origin::Input, now);
        self.settle(token, now);
    }
}
