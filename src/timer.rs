//! Deadlines: one min-heap for every timer of a loop (each worker has its
//! own).
//!
//! Idle timeouts, the closing linger, the shutdown drain, the accept retry
//! after running out of descriptors, the periodic stats line and the rest
//! of the loop's keys (`event_loop/time.rs`, `TimerKey`) all live in one
//! [`Timers`]. The event loop asks it for the nearest deadline to compute
//! the poll timeout, and for the expired entries after each wakeup.
//!
//! The heap is pure: it never reads the clock. Every call that needs the time
//! takes `now`, so the tests below drive time by hand.
//!
//! # Resetting a deadline costs nothing
//!
//! An idle timeout moves every time a byte flows, which may be a million
//! times a second. Moving a heap entry each time would cost a log-n sift per
//! message. Instead the entry stays where it is and the connection records
//! its last activity (`connection.rs`). When the entry expires, the loop
//! compares it with the connection's real deadline; if that has moved later,
//! it schedules a new entry for the real deadline and ignores this one. A
//! connection with steady traffic thus costs one heap push per idle-timeout
//! period, not one per message, and no step ever scans all connections.
//! Cancelling is lazy the same way: an entry whose key no longer names a live
//! owner is dropped when it expires.
//!
//! # Stale entries are bounded
//!
//! Lazy cancelling alone would let stale entries pile up: a connection that
//! closes leaves its entry until its deadline, so a server taking 1,000
//! short connections a second with a 300 s idle timeout would hold 300,000
//! dead entries (12 MB) and never give the memory back. So the owner calls
//! [`Timers::compact`] whenever entries may have gone stale (the loop does it
//! after reaping closed connections): once the heap holds more than twice as
//! many entries as there are live ones (plus a little slack), it drops every
//! stale entry in one O(n) pass. Each pass at least halves the heap, so its
//! cost is paid for by the pushes that grew it, and the heap never holds
//! more than about twice the live entries (plus [`COMPACT_SLACK`]). Until
//! then a stale entry fires at its deadline, a wakeup that finds nothing
//! to do.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Entries the heap may hold beyond twice the live ones before
/// [`Timers::compact`] looks at it: keeps a small server from compacting
/// over and over for a handful of entries.
pub const COMPACT_SLACK: usize = 64;

/// One scheduled deadline.
#[derive(Debug)]
struct Entry<K> {
    at: Instant,
    /// Insertion order, so that equal deadlines fire first-in, first-out and
    /// `K` need not be ordered.
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A set of deadlines, each carrying a key that says whose it is.
#[derive(Debug)]
pub struct Timers<K> {
    heap: BinaryHeap<Entry<K>>,
    seq: u64,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K> Timers<K> {
    /// No deadlines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a deadline `at` for `key`. The same key may be scheduled more
    /// than once; each entry fires on its own.
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            key,
        });
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// How long the loop may sleep: `None` (forever) when nothing is
    /// scheduled, zero when a deadline has passed. Rounded up to the next
    /// millisecond, epoll's resolution, so that a wakeup never comes a hair
    /// early and finds nothing due.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline().map(|at| {
            let left = at.saturating_duration_since(now);
            let ms = left.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(ms as u64)
        })
    }

    /// Removes and returns the earliest entry due at or before `now`, as
    /// `(deadline, key)`; `None` when nothing is due.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.key))
    }

    /// Drops the stale entries, if they may outnumber the live ones: when
    /// the heap holds more than `2 * live + COMPACT_SLACK` entries, keeps
    /// only those for which `is_live(deadline, &key)` is true. `live` is the
    /// most entries the owner can have live at once. Returns true if it
    /// compacted. The check is one comparison; the pass is O(n).
    pub fn compact(&mut self, live: usize, mut is_live: impl FnMut(Instant, &K) -> bool) -> bool {
        if self.heap.len() <= 2 * live + COMPACT_SLACK {
            return false;
        }
        self.heap.retain(|e| is_live(e.at, &e.key));
        if self.heap.capacity() > 4 * self.heap.len() + COMPACT_SLACK {
            // Give the memory of a burst back.
            self.heap.shrink_to(2 * self.heap.len() + COMPACT_SLACK);
        }
        true
    }

    /// Number of entries, live and stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn empty_timers_sleep_forever() {
        let t: Timers<u32> = Timers::new();
        assert_eq!(t.poll_timeout(Instant::now()), None);
        assert!(t.is_empty());
    }

    #[test]
    fn earliest_fires_first_whatever_the_insertion_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.schedule(t0 + secs(3), "c");
        t.schedule(t0 + secs(1), "a");
        t.schedule(t0 + secs(2), "b");
        assert_eq!(t.next_deadline(), Some(t0 + secs(1)));
        let now = t0 + secs(10);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_expired(now).map(|e| e.1)).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.schedule(t0 + secs(5), 1);
        assert_eq!(t.pop_expired(t0 + secs(4)), None);
        assert_eq!(t.pop_expired(t0 + secs(5)), Some((t0 + secs(5), 1)));
        assert!(t.is_empty());
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for k in 0..5 {
            t.schedule(t0, k);
        }
        let order: Vec<_> = std::iter::from_fn(|| t.pop_expired(t0).map(|e| e.1)).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn poll_timeout_rounds_up_to_the_millisecond() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.schedule(t0 + Duration::from_micros(1500), ());
        assert_eq!(t.poll_timeout(t0), Some(Duration::from_millis(2)));
        assert_eq!(t.poll_timeout(t0 + secs(1)), Some(Duration::ZERO));
    }

    /// Churn: connections that each schedule an idle entry and close at
    /// once. With compaction after each close, stale entries never outnumber
    /// the live ones (plus the slack), however many connections came and
    /// went; without it the heap would hold all 100,000.
    #[test]
    fn stale_entries_stay_bounded_by_the_live_ones() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let mut live = std::collections::HashSet::new();
        let mut peak = 0;
        for id in 0..100_000u64 {
            t.schedule(t0 + secs(300), id);
            live.insert(id);
            // A few long-lived connections stay; the rest close at once.
            if id % 1000 != 0 {
                live.remove(&id);
            }
            t.compact(live.len(), |_, k| live.contains(k));
            peak = peak.max(t.len());
            assert!(t.len() <= 2 * live.len() + COMPACT_SLACK + 1);
        }
        assert_eq!(live.len(), 100);
        assert!(peak <= 2 * 100 + COMPACT_SLACK + 1, "peak {peak}");
        // Nothing live was lost: every survivor still fires.
        let fired: std::collections::HashSet<_> =
            std::iter::from_fn(|| t.pop_expired(t0 + secs(300)).map(|e| e.1))
                .filter(|k| live.contains(k))
                .collect();
        assert_eq!(fired, live);
    }

    #[test]
    fn compact_does_nothing_while_the_heap_is_small() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for k in 0..COMPACT_SLACK {
            t.schedule(t0, k);
        }
        assert!(!t.compact(0, |_, _| false));
        assert_eq!(t.len(), COMPACT_SLACK);
        t.schedule(t0, 999);
        assert!(t.compact(0, |_, &k| k == 999));
        assert_eq!(t.len(), 1);
    }

    /// The lazy reset described in the module docs, played out by hand: an
    /// owner whose real deadline moved later re-arms when the old entry
    /// fires, and fires only at the real deadline.
    #[test]
    fn lazy_reset_rearms_instead_of_firing() {
        let t0 = Instant::now();
        let idle = secs(30);
        let mut last_activity = t0;
        let mut t = Timers::new();
        t.schedule(t0 + idle, "conn");
        // Activity at +20 s touches only the owner, not the heap.
        last_activity += secs(20);
        assert_eq!(t.len(), 1);
        let (_, key) = t.pop_expired(t0 + secs(30)).unwrap();
        let real = last_activity + idle;
        assert!(real > t0 + secs(30), "not due yet: re-arm");
        t.schedule(real, key);
        assert_eq!(t.pop_expired(t0 + secs(49)), None);
        assert_eq!(t.pop_expired(t0 + secs(50)).map(|e| e.1), Some("conn"));
    }
}
