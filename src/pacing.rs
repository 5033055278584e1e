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
//! - A receiver keeps up while all three of these hold:
//!   1. it makes progress: the kernel took some of its bytes within the
//!      last [`STALL`];
//!   2. it catches up within [`GRACE`] of falling behind: it drains a
//!      quarter of the limit in that time;
//!   3. it has grace left. Catching up does not start the grace afresh: a
//!      receiver has one grace of at most [`GRACE`], which holding senders
//!      back spends as time passes and which what it drains meanwhile pays
//!      back, a whole [`GRACE`] for every `high` bytes. That is the
//!      **minimum rate**, half the write limit per [`GRACE`] (256 KiB/s at
//!      the default 1 MiB): a receiver that drains at least that fast never
//!      runs out. While it holds nobody back, time refills its grace.
//!
//!   One that fails any of them is **dropped** from pacing: senders go on
//!   at full speed, its queue passes the limit, and the loop cuts it off as
//!   a slow consumer. A reader that stopped thus holds the room back for at
//!   most [`STALL`], once. Rule 3 is what bounds a reader that keeps
//!   falling behind and catching up just in time: each catch-up alone would
//!   earn it a new [`GRACE`], and it would set the room's pace for ever;
//!   draining at half the minimum rate, it is dropped after holding senders
//!   back for about twice [`GRACE`] in all.
//! - Within one turn, fan-out senders may produce at most half the write
//!   limit in all ([`Pacing::may_read`]), so that no receiver that was under
//!   `high` when the turn began can pass the limit before the loop looks at
//!   it again.
//!
//! Only protocols that fan out (`Protocol::FANS_OUT`) consult this; echo and
//! file never touch it, and while nobody is behind it costs two comparisons
//! per read ([`Pacing::may_read`]; with several workers the loop also
//! reads the other workers' holding flags, `worker_link.rs`). Time is passed in; the loop owns the one timer entry, due at
//! [`Pacing::next_check`].

use std::time::{Duration, Instant};

use mio::Token;

/// How long a receiver that is behind may go without the kernel taking any
/// of its bytes before it stops holding senders back.
pub const STALL: Duration = Duration::from_millis(250);
/// How long a receiver that is behind, but making progress, may take to
/// catch up before it stops holding senders back; also the most grace a
/// receiver can have (rule 3 of the module documentation).
pub const GRACE: Duration = Duration::from_secs(2);

/// What is left of one receiver's grace, as of `at` (rule 3). Holding
/// senders back spends it at the pace of time, what the receiver drains
/// meanwhile pays it back, and time refills it while the receiver holds
/// nobody back. Never more than [`GRACE`], never less than zero.
#[derive(Debug, Clone, Copy)]
struct Grace {
    left: Duration,
    at: Instant,
}

impl Grace {
    fn full(now: Instant) -> Self {
        Self {
            left: GRACE,
            at: now,
        }
    }

    /// Brings it to `now` for a receiver that held senders back since
    /// `at`, and earned `repaid` by draining meanwhile.
    fn spend(&mut self, now: Instant, repaid: Duration) {
        let held = now.saturating_duration_since(self.at);
        self.left = self
            .left
            .saturating_add(repaid)
            .saturating_sub(held)
            .min(GRACE);
        self.at = self.at.max(now);
    }

    /// Brings it to `now` for a receiver that held nobody back since `at`.
    fn refill(&mut self, now: Instant) {
        let rested = now.saturating_duration_since(self.at);
        self.left = self.left.saturating_add(rested).min(GRACE);
        self.at = self.at.max(now);
    }

    /// When it runs out, if the receiver holds senders back from `at` on
    /// and drains nothing.
    fn runs_out(&self) -> Instant {
        self.at + self.left
    }

    /// True if, holding nobody back, it is whole again by `now`: there is
    /// nothing left to remember.
    fn whole_by(&self, now: Instant) -> bool {
        self.at + (GRACE - self.left) <= now
    }
}

/// A receiver over `high`.
#[derive(Debug, Clone, Copy)]
struct Behind {
    token: Token,
    /// When it went over `high`.
    since: Instant,
    /// When the kernel last took some of its bytes.
    progress: Instant,
    /// What it owed when last observed. What it drained is measured as the
    /// fall of this between two observations; bytes queued for it in
    /// between (few: it holds the senders) count against it.
    owed: usize,
    /// Its grace, carried over from its earlier times behind.
    grace: Grace,
    /// It did not keep up: it holds nobody back any more.
    dropped: bool,
}

impl Behind {
    /// When it stops holding senders back, if it neither catches up nor
    /// makes progress nor drains before then.
    fn expires(&self) -> Instant {
        (self.since + GRACE)
            .min(self.progress + STALL)
            .min(self.grace.runs_out())
    }

    /// Which rule it breaks by `now`, for the log; `None` if none.
    fn broken(&self, now: Instant) -> Option<&'static str> {
        if now >= self.progress + STALL {
            Some("no progress")
        } else if now >= self.since + GRACE {
            Some("did not catch up within the grace")
        } else if now >= self.grace.runs_out() {
            Some("drains below the minimum rate")
        } else {
            None
        }
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
    /// Bytes drained while holding senders back that pay back a whole
    /// [`GRACE`]: the minimum rate is this many bytes per [`GRACE`].
    repay: usize,
    /// Fan-out bytes senders may produce per turn.
    budget: usize,
    /// Fan-out bytes produced this turn.
    spent: usize,
    /// Receivers over `high`, kept up or dropped. Usually empty.
    behind: Vec<Behind>,
    /// Receivers that caught up with part of their grace spent, until time
    /// makes it whole again (or they leave). Usually empty.
    recovering: Vec<(Token, Grace)>,
    /// Senders not read because someone is behind.
    held: Vec<Token>,
}

impl Pacing {
    /// Pacing for connections that may owe at most `write_limit` bytes.
    pub fn new(write_limit: usize) -> Self {
        Self {
            high: write_limit / 2,
            low: write_limit / 4,
            repay: (write_limit / 2).max(1),
            budget: (write_limit / 2).max(1),
            spent: 0,
            behind: Vec::new(),
            recovering: Vec::new(),
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
                // Behind again: with what is left of its grace, refilled
                // for the time it held nobody back.
                self.recovering.retain(|(_, g)| !g.whole_by(now));
                let grace = match self.recovering.iter().position(|(t, _)| *t == token) {
                    Some(i) => {
                        let (_, mut grace) = self.recovering.swap_remove(i);
                        grace.refill(now);
                        grace
                    }
                    None => Grace::full(now),
                };
                self.behind.push(Behind {
                    token,
                    since: now,
                    progress: now,
                    owed,
                    grace,
                    dropped: false,
                });
                Standing::Keeping
            }
            None => Standing::Keeping,
            Some(i) if owed <= self.low => {
                let mut b = self.behind.swap_remove(i);
                self.settle(&mut b, owed, now);
                // The next time it falls behind, it goes on from here.
                self.recovering.retain(|(_, g)| !g.whole_by(now));
                if b.grace.left < GRACE {
                    self.recovering.push((token, b.grace));
                }
                self.released()
            }
            Some(i) => {
                let mut b = self.behind[i];
                self.settle(&mut b, owed, now);
                if wrote {
                    b.progress = now;
                }
                self.behind[i] = b;
                if b.dropped {
                    Standing::Dropped
                } else {
                    Standing::Keeping
                }
            }
        }
    }

    /// Brings a receiver's grace to `now`, when it owes `owed`: one that
    /// holds senders back spends it and is paid back for what it drained,
    /// a dropped one rests.
    fn settle(&self, b: &mut Behind, owed: usize, now: Instant) {
        if b.dropped {
            b.grace.refill(now);
        } else {
            let drained = b.owed.saturating_sub(owed);
            b.grace.spend(now, self.repaid(drained));
        }
        b.owed = owed;
    }

    /// The grace that draining `drained` bytes pays back: a whole
    /// [`GRACE`] for every `repay` bytes.
    fn repaid(&self, drained: usize) -> Duration {
        let nanos = GRACE.as_nanos() * drained as u128 / self.repay as u128;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The receiver is gone.
    pub fn forget(&mut self, token: Token) -> Standing {
        if let Some(i) = self.recovering.iter().position(|(t, _)| *t == token) {
            self.recovering.swap_remove(i);
        }
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
            if let Some(why) = b.broken(now) {
                // What it held them back for, up to now, is spent.
                b.grace.spend(now, Duration::ZERO);
                b.dropped = true;
                log::debug!(
                    "conn #{}: not keeping up with the relay ({why}): no longer pacing senders",
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

    // ----- rule 3: one grace, not a new one each time ---------------------

    /// One receiver that drains `per_tick` bytes every 100 ms, behind a
    /// sender that refills it past `high` the moment it is released (as a
    /// sender faster than everyone does). Returns how long it held the
    /// sender back before it was dropped, or `None` if it still held it
    /// after `within`.
    fn dropped_after(per_tick: usize, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        let refilled = LIMIT / 2 + 1;
        let mut owed = refilled;
        let mut t = t0;
        p.observe(Token(1), owed, true, t);
        p.hold(Token(9));
        while t < t0 + within {
            t += ms(100);
            owed -= per_tick.min(owed);
            if p.observe(Token(1), owed, true, t) == Standing::Released {
                assert_eq!(p.release(), [Token(9)]);
                // Caught up: the sender is read at once and it is behind
                // again.
                owed = refilled;
                assert_eq!(p.observe(Token(1), owed, false, t), Standing::Keeping);
                p.hold(Token(9));
            }
            if p.expire(t) == Standing::Released {
                assert!(!p.holding());
                assert_eq!(p.release(), [Token(9)]);
                return Some(t - t0);
            }
        }
        None
    }

    #[test]
    fn a_reader_that_only_just_catches_up_each_time_is_dropped_in_the_end() {
        // 140 B/s: from just over `high` to `low` in 1.8 s, within the
        // grace every time, but slower than the minimum rate (250 B/s for
        // a limit of 1000).
        let held = dropped_after(14, Duration::from_secs(60))
            .expect("a reader that only just catches up paced the relay for 60 s");
        // Its first catch-up is in time; its grace runs out in the third.
        assert!(held > GRACE, "dropped before its first catch-up: {held:?}");
        assert!(held <= 3 * GRACE, "{held:?}");
    }

    #[test]
    fn a_reader_at_the_minimum_rate_or_faster_is_never_dropped() {
        // 250 B/s is the minimum rate exactly: what it drains pays back
        // what holding costs, to the nanosecond.
        for per_tick in [25, 40, 100, 400] {
            assert_eq!(
                dropped_after(per_tick, Duration::from_secs(60)),
                None,
                "{per_tick} bytes per 100 ms"
            );
        }
    }

    #[test]
    fn a_reader_just_under_the_minimum_rate_runs_out_slowly() {
        // 240 B/s: it loses 4% of the time it holds the sender back, so its
        // 2 s last 50 s.
        let held = dropped_after(24, Duration::from_secs(60)).expect("never dropped");
        assert!(held >= Duration::from_secs(45), "{held:?}");
    }

    /// A receiver that fell just behind (501 of 1000), trickled (progress,
    /// but only a byte every 100 ms) for `slow`, then caught up in one
    /// write: returns the pacing and the time it caught up.
    fn after_a_slow_catch_up(slow: Duration) -> (Pacing, Instant) {
        let t0 = Instant::now();
        let mut p = Pacing::new(LIMIT);
        let mut owed = 501;
        p.observe(Token(1), owed, true, t0);
        let mut t = t0;
        while t < t0 + slow {
            t += ms(100);
            owed -= 1;
            assert_eq!(p.observe(Token(1), owed, true, t), Standing::Keeping);
            assert_eq!(p.expire(t), Standing::Keeping);
        }
        // The rest in one write: a quarter of the limit, which pays back
        // a whole second.
        assert_eq!(p.observe(Token(1), 250, true, t), Standing::Keeping);
        assert!(!p.watching());
        (p, t)
    }

    /// When a receiver that falls behind at `at` with its earlier grace,
    /// and then only trickles, is dropped (to the millisecond).
    fn trickling_from(p: &mut Pacing, at: Instant) -> Duration {
        p.observe(Token(1), 600, true, at);
        let mut t = at;
        loop {
            t += ms(1);
            p.observe(Token(1), 600, true, t);
            p.expire(t);
            if !p.holding() {
                return t - at;
            }
            assert!(t < at + 2 * GRACE, "never dropped");
        }
    }

    #[test]
    fn catching_up_slowly_leaves_less_grace_for_next_time() {
        // 1.9 s of holding; 251 bytes drained pay back 1.004 s: 1.104 s
        // left, and 1 ms more for the millisecond under `high`.
        let (mut p, t) = after_a_slow_catch_up(ms(1900));
        assert_eq!(trickling_from(&mut p, t + ms(1)), ms(1105));
    }

    #[test]
    fn time_holding_nobody_back_refills_the_grace() {
        let (mut p, t) = after_a_slow_catch_up(ms(1900));
        assert_eq!(trickling_from(&mut p, t + ms(800)), ms(1904));
        // Under `high` for as long as was missing: whole again, and the
        // limit of one episode is what drops it.
        let (mut p, t) = after_a_slow_catch_up(ms(1900));
        assert_eq!(trickling_from(&mut p, t + ms(896)), GRACE);
    }

    #[test]
    fn a_grace_is_remembered_only_until_it_is_whole_or_its_receiver_leaves() {
        let (mut p, t) = after_a_slow_catch_up(ms(1900));
        assert_eq!(p.recovering.len(), 1);
        // Someone else falling behind sweeps away what is whole.
        p.observe(Token(2), 600, true, t + ms(895));
        assert_eq!(p.recovering.len(), 1, "not yet whole");
        p.forget(Token(2));
        p.observe(Token(2), 600, true, t + ms(896));
        assert!(p.recovering.is_empty());
        let (mut p, _) = after_a_slow_catch_up(ms(1900));
        assert_eq!(p.forget(Token(1)), Standing::Keeping);
        assert!(p.recovering.is_empty());
    }
}
