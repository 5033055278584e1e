//! Fan-out pacing: in broadcast and chat, senders are slowed to the pace of
//! the receivers that keep up, and a receiver that does not keep up is cut
//! off without slowing anyone for long.
//!
//! A relay has two ways to fail a receiver. Without pacing, a sender faster
//! than everyone (26 MB of lines in 0.1 s) fills every receiver's queue past
//! `--write-limit` in a few turns, and all of them are cut as slow consumers
//! though every one was reading. With naive pacing (stop reading senders
//! while any receiver is behind), one receiver that stops reading stops the
//! whole room. The rules here sit between the two:
//!
//! - A receiver is **behind** when it owes more than half the write limit
//!   (`high`). While any receiver is behind and still *keeping up*, no
//!   fan-out sender is read: its bytes wait in the kernel, whose window
//!   pushes back on the sender. Reading resumes when every such receiver is
//!   back to a quarter of the limit (`low`).
//! - A receiver keeps up while it makes progress (the kernel took some of
//!   its bytes within the last [`STALL`]) and catches up within [`GRACE`]
//!   of falling behind: it must drain a quarter of the limit in that time.
//!   One that does not is **dropped** from pacing: senders go on at full
//!   speed, its queue passes the limit, and the loop cuts it off as a slow
//!   consumer. A reader that stopped thus holds the room back for at most
//!   [`STALL`], once.
//! - Within one turn, fan-out senders may produce at most half the write
//!   limit in all ([`Pacing::may_read`]), so that no receiver that was under
//!   `high` when the turn began can pass the limit before the loop looks at
//!   it again.
//!
//! Only protocols that fan out (`Protocol::FANS_OUT`) consult this; echo and
//! file never touch it, and while nobody is behind it costs one comparison
//! per read. Time is passed in; the loop owns the one timer entry, due at
//! [`Pacing::next_check`].

use std::time::{Duration, Instant};

use mio::Token;

/// How long a receiver that is behind may go without the kernel taking any
/// of its bytes before it stops holding senders back.
pub const STALL: Duration = Duration::from_millis(250);
/// How long a receiver that is behind, but making progress, may take to
/// catch up before it stops holding senders back.
pub const GRACE: Duration = Duration::from_secs(2);

/// A receiver over `high`.
#[derive(Debug, Clone, Copy)]
struct Behind {
    token: Token,
    /// When it went over `high`.
    since: Instant,
    /// When the kernel last took some of its bytes.
    progress: Instant,
    /// It did not keep up: it holds nobody back any more.
    dropped: bool,
}

impl Behind {
    /// When it stops holding senders back, if it neither catches up nor
    /// makes progress before then.
    fn expires(&self) -> Instant {
        (self.since + GRACE).min(self.progress + STALL)
    }
}

/// What [`Pacing::observe`] concluded about a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Under `high`, or behind but keeping up: keep it.
    Keeping,
    /// Behind and not keeping up: if it owes more than the limit, the loop
    /// cuts it off.
    Dropped,
    /// It caught up and nobody else holds senders back: the held senders
    /// may read again ([`Pacing::release`]).
    Released,
}

/// The pacing state of one loop. See the module documentation.
#[derive(Debug)]
pub struct Pacing {
    high: usize,
    low: usize,
    /// Fan-out bytes senders may produce per turn.
    budget: usize,
    /// Fan-out bytes produced this turn.
    spent: usize,
    /// Receivers over `high`, kept up or dropped. Usually empty.
    behind: Vec<Behind>,
    /// Senders not read because someone is behind.
    held: Vec<Token>,
}

impl Pacing {
    /// Pacing for connections that may owe at most `write_limit` bytes.
    pub fn new(write_limit: usize) -> Self {
        Self {
            high: write_limit / 2,
            low: write_limit / 4,
            budget: (write_limit / 2).max(1),
            spent: 0,
            behind: Vec::new(),
            held: Vec::new(),
        }
    }

    /// True if a fan-out sender may be read now: nobody who keeps up is
    /// behind, and this turn's budget is not spent. One comparison while
    /// nobody is behind.
    #[inline]
    pub fn may_read(&self) -> bool {
        self.spent < self.budget && (self.behind.is_empty() || !self.holding())
    }

    /// True if the turn's budget is spent (the sender reads next turn);
    /// false if someone is behind (the sender waits to be released).
    pub fn budget_spent(&self) -> bool {
        self.spent >= self.budget
    }

    /// True if a receiver that keeps up is behind.
    pub fn holding(&self) -> bool {
        self.behind.iter().any(|b| !b.dropped)
    }

    /// Counts `bytes` of fan-out a sender just produced.
    #[inline]
    pub fn spend(&mut self, bytes: usize) {
        self.spent += bytes;
    }

    /// A new turn: a fresh budget.
    #[inline]
    pub fn new_turn(&mut self) {
        self.spent = 0;
    }

    /// Remembers a sender that was not read because someone is behind.
    pub fn hold(&mut self, sender: Token) {
        self.held.push(sender);
    }

    /// True if any receiver is being watched: the loop then reports writes
    /// with [`observe`](Self::observe) on every flush, not only in delivery.
    #[inline]
    pub fn watching(&self) -> bool {
        !self.behind.is_empty()
    }

    /// A receiver that owes `owed` bytes after a flush that `wrote` some
    /// (or none). Returns where it stands.
    pub fn observe(&mut self, token: Token, owed: usize, wrote: bool, now: Instant) -> Standing {
        let found = self.behind.iter().position(|b| b.token == token);
        match found {
            None if owed > self.high => {
                self.behind.push(Behind {
                    token,
                    since: now,
                    progress: now,
                    dropped: false,
                });
                Standing::Keeping
            }
            None => Standing::Keeping,
            Some(i) if owed <= self.low => {
                self.behind.swap_remove(i);
                self.released()
            }
            Some(i) => {
                let b = &mut self.behind[i];
                if wrote {
                    b.progress = now;
                }
                if b.dropped {
                    Standing::Dropped
                } else {
                    Standing::Keeping
                }
            }
        }
    }

    /// The receiver is gone.
    pub fn forget(&mut self, token: Token) -> Standing {
        match self.behind.iter().position(|b| b.token == token) {
            Some(i) => {
                self.behind.swap_remove(i);
                self.released()
            }
            None => Standing::Keeping,
        }
    }

    /// `Released` if held senders may go now.
    fn released(&self) -> Standing {
        if !self.held.is_empty() && !self.holding() {
            Standing::Released
        } else {
            Standing::Keeping
        }
    }

    /// Drops the receivers whose time ran out by `now`. Returns `Released`
    /// if, after that, the held senders may go.
    pub fn expire(&mut self, now: Instant) -> Standing {
        for b in self.behind.iter_mut().filter(|b| !b.dropped) {
            if now >= b.expires() {
                b.dropped = true;
                log::debug!(
                    "conn #{}: not keeping up with the relay: no longer pacing senders",
                    b.token.0 >> 32
                );
            }
        }
        self.released()
    }

    /// When [`expire`](Self::expire) may next drop someone.
    pub fn next_check(&self) -> Option<Instant> {
        self.behind
            .iter()
            .filter(|b| !b.dropped)
            .map(Behind::expires)
            .min()
    }

    /// Takes the held senders, for the loop to serve again.
    pub fn release(&mut self) -> Vec<Token> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable();
        held.dedup();
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nobody_behind_costs_nothing_and_the_budget_is_per_turn() {
        let mut p = Pacing::new(LIMIT);
        assert!(p.may_read());
        p.spend(499);
        assert!(p.may_read());
        p.spend(1);
        assert!(!p.may_read());
        assert!(p.budget_spent());
        p.new_turn();
        assert!(p.may_read());
    }

    #[test]
    fn a_receiver_that_keeps_up_holds_senders_until_it_catches_up() {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        assert_eq!(p.observe(Token(1), 600, true, t0), Standing::Keeping);
        assert!(!p.may_read(), "over half the limit: senders wait");
        assert!(!p.budget_spent());
        p.hold(Token(7));
        p.hold(Token(7));
        // Draining, but not yet down to a quarter.
        assert_eq!(
            p.observe(Token(1), 400, true, t0 + ms(100)),
            Standing::Keeping
        );
        assert!(!p.may_read());
        assert_eq!(
            p.observe(Token(1), 250, true, t0 + ms(200)),
            Standing::Released
        );
        assert!(p.may_read());
        assert_eq!(p.release(), [Token(7)], "each held sender once");
        assert!(!p.watching());
    }

    #[test]
    fn a_receiver_that_stops_reading_holds_nobody_after_the_stall() {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        p.observe(Token(1), 600, false, t0);
        p.hold(Token(7));
        assert_eq!(p.next_check(), Some(t0 + STALL));
        assert_eq!(p.expire(t0 + STALL - ms(1)), Standing::Keeping);
        assert_eq!(p.expire(t0 + STALL), Standing::Released);
        assert!(p.may_read(), "the stalled receiver no longer counts");
        assert_eq!(p.release(), [Token(7)]);
        // It is still watched, and the loop cuts it once past the limit.
        assert_eq!(
            p.observe(Token(1), 1200, false, t0 + ms(300)),
            Standing::Dropped
        );
        assert_eq!(p.next_check(), None);
        assert_eq!(p.forget(Token(1)), Standing::Keeping);
        assert!(!p.watching());
    }

    #[test]
    fn a_receiver_too_slow_to_catch_up_is_dropped_after_the_grace() {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        p.observe(Token(1), 600, true, t0);
        // Trickles: progress every 100 ms, never down to a quarter.
        let mut t = t0;
        while t < t0 + GRACE - ms(100) {
            t += ms(100);
            p.observe(Token(1), 590, true, t);
            assert_eq!(p.expire(t), Standing::Keeping);
            assert!(!p.may_read());
        }
        p.hold(Token(9));
        assert_eq!(p.expire(t0 + GRACE), Standing::Released);
        assert!(p.may_read());
    }

    #[test]
    fn senders_wait_for_every_receiver_that_keeps_up() {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        p.observe(Token(1), 600, true, t0);
        p.observe(Token(2), 700, true, t0);
        p.hold(Token(9));
        assert_eq!(p.observe(Token(1), 0, true, t0 + ms(10)), Standing::Keeping);
        assert!(!p.may_read());
        assert_eq!(p.forget(Token(2)), Standing::Released);
        assert!(p.may_read());
    }
}
