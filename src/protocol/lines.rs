//! Cutting a byte stream into lines, for every line-based protocol.
//!
//! [`Lines`] keeps only the unfinished tail of the stream between reads, and
//! only while there is one: an idle connection's `Lines` owns no heap. A line
//! is everything up to and including an LF; [`content`] strips the LF and a
//! CR just before it, so that telnet and `nc -C` (CRLF) work like `nc` (LF).
//! A line longer than the limit, counted without its line ending, is an
//! error however it arrives: whole, or a byte at a time.
//!
//! [`Lines`] also remembers when the unfinished line began, so that a
//! protocol can give it a deadline ([`Lines::deadline`]): a client that
//! trickles a byte now and then, never a newline, keeps the idle timer
//! from firing but not this one.

use std::time::{Duration, Instant};

use super::Step;

/// The reply to a line longer than `--max-line`, before the connection
/// closes. Every line mode sends it.
pub const LINE_TOO_LONG: &[u8] = b"ERROR: line too long\n";

/// The unfinished line of one connection, if any. One pointer wide: an
/// idle connection's `Lines` is 8 bytes and owns no heap.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Option<Box<Partial>>,
}

/// An unfinished line and when its first byte arrived.
#[derive(Debug)]
struct Partial {
    bytes: Vec<u8>,
    since: Instant,
}

/// A line passed the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl Lines {
    /// Calls `each` with every complete line in `input` (the LF included),
    /// keeping the unfinished rest. Stops early, dropping the rest of the
    /// input, if `each` returns [`Step::Close`], and returns that step.
    /// Fails if a line is longer than `max` bytes before its line ending.
    /// `now` is when `input` arrived: it starts the clock of an unfinished
    /// line.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        now: Instant,
        mut each: impl FnMut(&[u8]) -> Step,
    ) -> Result<Step, TooLong> {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            let (line, rest) = input.split_at(nl + 1);
            input = rest;
            let step = match self.pending.take() {
                None => {
                    if content(line).len() > max {
                        return Err(TooLong);
                    }
                    each(line)
                }
                Some(partial) => {
                    let mut whole = partial.bytes;
                    whole.extend_from_slice(line);
                    if content(&whole).len() > max {
                        return Err(TooLong);
                    }
                    each(&whole)
                }
            };
            if step == Step::Close {
                return Ok(Step::Close);
            }
        }
        if input.is_empty() {
            return Ok(Step::Continue);
        }
        // A CR at the very end may belong to a CRLF still on its way.
        let held = self.pending.as_ref().map_or(0, |p| p.bytes.len());
        let pending = held + input.len();
        if pending > max && !(pending == max + 1 && input.last() == Some(&b'\r')) {
            self.pending = None;
            return Err(TooLong);
        }
        self.pending
            .get_or_insert_with(|| {
                Box::new(Partial {
                    bytes: Vec::new(),
                    since: now,
                })
            })
            .bytes
            .extend_from_slice(input);
        Ok(Step::Continue)
    }

    /// Takes the unfinished line, if any (at end of input).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        self.pending.take().map(|p| p.bytes)
    }

    /// True if no unfinished line is held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    /// When the unfinished line must be complete: `within` after its first
    /// byte arrived. `None` when no line is unfinished or there is no limit.
    pub fn deadline(&self, within: Option<Duration>) -> Option<Instant> {
        Some(self.pending.as_ref()?.since + within?)
    }
}

/// A line without its LF, and without a CR just before the LF.
pub fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(l: &mut Lines, input: &[u8], max: usize) -> (Result<Step, TooLong>, Vec<String>) {
        let mut got = Vec::new();
        let r = l.feed(input, max, Instant::now(), |line| {
            got.push(String::from_utf8_lossy(line).into_owned());
            Step::Continue
        });
        (r, got)
    }

    #[test]
    fn whole_lines_pass_through_with_their_endings() {
        let mut l = Lines::default();
        let (r, got) = collect(&mut l, b"a\nbb\r\nccc", 10);
        assert_eq!(r, Ok(Step::Continue));
        assert_eq!(got, ["a\n", "bb\r\n"]);
        assert!(!l.is_empty());
        let (_, got) = collect(&mut l, b"c\n", 10);
        assert_eq!(got, ["cccc\n"]);
        assert!(l.is_empty());
        assert!(l.pending.is_none(), "no buffer held between lines");
        assert_eq!(std::mem::size_of::<Lines>(), 8);
    }

    #[test]
    fn content_drops_lf_and_one_cr() {
        assert_eq!(content(b"hi\r\n"), b"hi");
        assert_eq!(content(b"hi\n"), b"hi");
        assert_eq!(content(b"hi\r\r\n"), b"hi\r");
        assert_eq!(content(b"hi"), b"hi");
    }

    #[test]
    fn the_limit_holds_whole_or_in_pieces() {
        let mut l = Lines::default();
        assert_eq!(collect(&mut l, b"12345\r\n", 5).0, Ok(Step::Continue));
        assert_eq!(collect(&mut l, b"123456\n", 5).0, Err(TooLong));
        let mut l = Lines::default();
        assert_eq!(collect(&mut l, b"123", 5).0, Ok(Step::Continue));
        assert_eq!(collect(&mut l, b"45\r", 5).0, Ok(Step::Continue));
        assert_eq!(collect(&mut l, b"\n", 5).1, ["12345\r\n"]);
        assert_eq!(collect(&mut l, b"123", 5).0, Ok(Step::Continue));
        assert_eq!(collect(&mut l, b"456", 5).0, Err(TooLong));
        assert!(l.is_empty());
    }

    #[test]
    fn close_stops_at_that_line() {
        let mut l = Lines::default();
        let mut seen = 0;
        let r = l.feed(b"a\nb\nc\n", 10, Instant::now(), |_| {
            seen += 1;
            if seen == 2 {
                Step::Close
            } else {
                Step::Continue
            }
        });
        assert_eq!(r, Ok(Step::Close));
        assert_eq!(seen, 2);
    }

    #[test]
    fn an_unfinished_line_has_a_deadline_from_its_first_byte() {
        let t0 = Instant::now();
        let within = Some(Duration::from_secs(30));
        let mut l = Lines::default();
        assert_eq!(l.deadline(within), None, "nothing pending");
        l.feed(b"a", 100, t0, |_| Step::Continue).unwrap();
        // More bytes of the same line do not move it: trickling buys nothing.
        l.feed(b"b", 100, t0 + Duration::from_secs(20), |_| Step::Continue)
            .unwrap();
        assert_eq!(l.deadline(within), Some(t0 + Duration::from_secs(30)));
        assert_eq!(l.deadline(None), None, "no limit");
        // The line completes and the next one starts its own clock.
        let t1 = t0 + Duration::from_secs(25);
        l.feed(b"c\nd", 100, t1, |_| Step::Continue).unwrap();
        assert_eq!(l.deadline(within), Some(t1 + Duration::from_secs(30)));
        l.feed(b"\n", 100, t1, |_| Step::Continue).unwrap();
        assert_eq!(l.deadline(within), None);
    }

    #[test]
    fn rest_is_handed_over_at_eof() {
        let mut l = Lines::default();
        assert_eq!(collect(&mut l, b"x\nunfinished", 100).0, Ok(Step::Continue));
        assert_eq!(l.take_rest().as_deref(), Some(&b"unfinished"[..]));
        assert_eq!(l.take_rest(), None);
    }
}
