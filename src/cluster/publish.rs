//! What this worker publishes: the turn's lines become numbered entries
//! in the outbox, which the writer sends to Redis (`XADD`) and keeps until
//! Redis acknowledges each, so that a broken link sends them again, in
//! order; what does not fit in `--cluster-outbox` is dropped and counted.

use std::time::Instant;

use mio::{Registry, Token};

use super::entry::{Body, Entry, Publisher};
use super::link::Happened;
use super::{lines, resp, Cluster, Kind, Write, KEEP};

impl Cluster {
    /// Lines this turn says to the room: added to the turn's one entry.
    pub fn publish(&mut self, chunk: &[u8]) {
        self.said_while_held |= self.holding();
        match self.turn.last_mut() {
            Some(Body::Room(data)) => data.extend_from_slice(chunk),
            _ => self.turn.push(Body::Room(chunk.to_vec())),
        }
    }

    /// A private message for a connection on another instance (`node`
    /// from the roster); false if that instance is unknown.
    pub fn direct(&mut self, node: u32, worker: u32, conn: Token, chunk: &[u8]) -> bool {
        let Some(instance) = self.roster.instance(node) else {
            return false;
        };
        self.said_while_held |= self.holding();
        self.turn.push(Body::Direct {
            to: Publisher { instance, worker },
            conn: conn.0 as u64,
            data: chunk.to_vec(),
        });
        true
    }

    /// The end of a turn: what it said becomes numbered entries in the
    /// outbox (or is dropped, counted, if the outbox is full), sent at once
    /// when the writer is up.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        for body in std::mem::take(&mut self.turn) {
            let size = match &body {
                Body::Room(d) | Body::Direct { data: d, .. } => d.len(),
                _ => 64,
            };
            if self.outbox_bytes + size > self.opts.outbox {
                self.drop_lines(&body);
                continue;
            }
            self.seq += 1;
            let entry = Entry {
                from: self.me,
                seq: self.seq,
                body,
            };
            self.outbox_bytes += size;
            self.outbox.push_back((entry, size));
        }
        self.send_outbox(now);
        self.write(registry, now);
        // Only what was said while local senders were held can say that
        // Redis is slow: a turn read before the hold (up to a turn's
        // budget) may alone be larger than twice a small `--write-limit`.
        let held = std::mem::take(&mut self.said_while_held);
        if held && self.writer.is_ready() && self.outbox_bytes > self.allowance {
            self.figures.slow += 1;
            let why = format!(
                "Redis is not keeping up: {} bytes not acknowledged, over twice --write-limit",
                self.outbox_bytes
            );
            let failed = self.writer.fail(why, now);
            self.handle_writer(failed, now);
        }
    }

    pub(super) fn drop_lines(&mut self, body: &Body) {
        if let Body::Room(d) | Body::Direct { data: d, .. } = body {
            self.figures.dropped += lines(d);
        }
        if !std::mem::replace(&mut self.dropping_said, true) {
            log::warn!(
                "cluster: the outbox is full ({} bytes, --cluster-outbox): this instance's \
                 lines are dropped until Redis takes them",
                self.opts.outbox
            );
        }
    }

    /// Sends every outbox entry not yet sent on this link.
    /// Sends outbox entries not yet sent on this link, oldest first, while
    /// less than `--write-limit` of them awaits Redis's acknowledgement:
    /// a window, so that what the writer owes stays bounded however much
    /// an outage left waiting.
    pub(super) fn send_outbox(&mut self, now: Instant) {
        if !self.writer.is_ready() {
            return;
        }
        let mut cmd = Vec::new();
        for (entry, size) in self.outbox.iter().skip(self.in_flight) {
            if self.in_flight > 0 && self.in_flight_bytes >= self.write_limit {
                break;
            }
            cmd.clear();
            entry.xadd(&self.stream, KEEP, &mut cmd);
            self.writer.send(&cmd, Write::Xadd, now);
            self.in_flight += 1;
            self.in_flight_bytes += size;
        }
    }

    /// Writes what the writer owes. (A link up whose outbox grew past its
    /// allowance, twice `--write-limit`, while local senders were held is
    /// not keeping up: [`flush`](Self::flush) drops it, counted, and it
    /// connects again.)
    pub(super) fn write(&mut self, registry: &Registry, now: Instant) {
        if let Err(e) = self.writer.flush(registry) {
            let failed = self.writer.fail(e.to_string(), now);
            self.handle_writer(failed, now);
        }
    }

    pub(super) fn handle_writer(&mut self, happened: Happened<Write>, now: Instant) {
        match happened {
            Happened::Up => {
                // Everything not acknowledged goes again, in order; the
                // claims waiting are sent; names are refreshed (taken
                // again if they expired meanwhile) and this publisher
                // says it is here.
                self.in_flight = 0;
                self.in_flight_bytes = 0;
                self.allowance = self.outbox_bytes.max(2 * self.write_limit);
                self.send_outbox(now);
                self.resend_claims(now);
                if self.kind == Kind::Chat {
                    self.turn.push(Body::Hello);
                    self.refresh(now);
                }
                self.link_changed(None, now);
            }
            Happened::Reply(Write::Xadd, value) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if let Some((entry, size)) = self.outbox.pop_front() {
                    self.outbox_bytes -= size;
                    self.in_flight_bytes = self.in_flight_bytes.saturating_sub(size);
                    self.allowance = self
                        .allowance
                        .min(self.outbox_bytes.max(2 * self.write_limit));
                    let n = match &entry.body {
                        Body::Room(d) | Body::Direct { data: d, .. } => lines(d),
                        _ => 0,
                    };
                    match value {
                        resp::Value::Error(e) => {
                            self.figures.dropped += n;
                            // Once until Redis takes one again: a Redis
                            // out of memory refuses every turn's entry.
                            if std::mem::replace(&mut self.refusing_said, true) {
                                log::debug!("cluster: Redis refused an entry ({e})");
                            } else {
                                log::warn!(
                                    "cluster: Redis refused an entry ({e}): {n} lines dropped, \
                                     and the lines of every entry it refuses until it takes \
                                     one again (counted in cluster_dropped)"
                                );
                            }
                        }
                        _ => {
                            self.refusing_said = false;
                            self.figures.published += n;
                        }
                    }
                }
                // The window slides.
                self.send_outbox(now);
            }
            Happened::Reply(Write::Claim(id), value) => self.claim_answered(id, &value, now),
            Happened::Reply(Write::Refresh, value) => self.refreshed(value),
            Happened::Reply(Write::Release, _) => {}
            Happened::Failed(why, _owed) => {
                // What was owed is resent when the link is back: the
                // outbox from its oldest entry, the claims not answered.
                self.in_flight = 0;
                self.in_flight_bytes = 0;
                for c in &mut self.claims {
                    c.sent = false;
                }
                self.link_changed(Some(&why), now);
            }
        }
    }
}
