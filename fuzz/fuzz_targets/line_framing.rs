//! Line framing (`protocol/lines.rs`), for every line mode: the input's
//! first byte is `--max-line`, the rest the stream, fed whole and in
//! pieces.
//!
//! - the same bytes, cut anywhere, give the same lines, the same verdict
//!   (a line too long) and the same unfinished rest;
//! - every line handed over ends in LF and is at most `--max-line` bytes
//!   without its line ending; the lines and the rest are the input.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use monoloop::protocol::lines::{content, Lines, TooLong};
use monoloop::protocol::Step;
use monoloop_fuzz::cut;

/// The lines, the verdict and the rest, for `pieces` fed in turn.
fn frame(pieces: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Result<(), TooLong>, Option<Vec<u8>>) {
    let mut lines = Lines::default();
    let mut got = Vec::new();
    let now = Instant::now();
    for piece in pieces {
        let r = lines.feed(piece, max, now, |line| {
            assert!(line.ends_with(b"\n"));
            assert!(content(line).len() <= max, "a line over --max-line");
            got.push(line.to_vec());
            Step::Continue
        });
        if let Err(e) = r {
            return (got, Err(e), None);
        }
    }
    let rest = lines.take_rest();
    (got, Ok(()), rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&max, data)) = data.split_first() else {
        return;
    };
    let max = usize::from(max);
    let (payload, pieces) = cut(data);
    let once = frame(&[payload], max);
    let many = frame(&pieces, max);
    assert_eq!(once, many, "the same bytes in pieces framed otherwise");
    if let (lines, Ok(()), rest) = once {
        let mut all: Vec<u8> = lines.concat();
        all.extend(rest.unwrap_or_default());
        assert_eq!(all, payload, "lines and rest are not the input");
    }
});
