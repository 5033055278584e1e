//! Line framing (`protocol/lines.rs`, `Lines::feed`), as the fuzz target
//! `line_framing` checks it, for every line mode:
//!
//! - the same bytes, cut anywhere, give the same lines, the same verdict (a
//!   line too long) and the same unfinished rest;
//! - `--max-line` is honoured both ways: the verdict is exactly what a
//!   plain reading of the bytes says (a line, without its LF and one CR
//!   before it, longer than the limit is refused, a line at the limit is
//!   not, and an unfinished one may hold one CR past it), every line
//!   handed over ends in LF, and the lines and the rest are the input.
//!
//! Inputs are lines of lengths around the limit, ending in LF, CRLF or
//! nothing, with stray CRs, plus raw bytes.

use std::time::Instant;

use monoloop::protocol::lines::{content, Lines, TooLong};
use monoloop::protocol::Step;
use proptest::prelude::*;

use super::{cases, cuts, pieces};

/// The lines, the verdict and the rest, for `pieces` fed in turn.
type Framed = (Vec<Vec<u8>>, Result<(), TooLong>, Option<Vec<u8>>);

fn frame(pieces: &[&[u8]], max: usize) -> Framed {
    let mut lines = Lines::default();
    let mut got = Vec::new();
    let now = Instant::now();
    for piece in pieces {
        let r = lines.feed(piece, max, now, |line| {
            assert!(line.ends_with(b"\n"), "a line without its LF: {line:?}");
            assert!(content(line).len() <= max, "a line over --max-line");
            got.push(line.to_vec());
            Step::Continue
        });
        if let Err(e) = r {
            return (got, Err(e), None);
        }
    }
    (got, Ok(()), lines.take_rest())
}

/// What the bytes say, read plainly: the lines up to the first one too
/// long, and then the verdict, or the rest.
fn expected(input: &[u8], max: usize) -> Framed {
    let mut lines = Vec::new();
    let mut rest = input;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (line, after) = rest.split_at(nl + 1);
        let body = line.strip_suffix(b"\n").unwrap();
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.len() > max {
            return (lines, Err(TooLong), None);
        }
        lines.push(line.to_vec());
        rest = after;
    }
    // An unfinished line may hold one byte past the limit if it is a CR:
    // the LF of its CRLF may be on its way.
    let over = rest.len() > max && !(rest.len() == max + 1 && rest.ends_with(b"\r"));
    if over {
        return (lines, Err(TooLong), None);
    }
    (lines, Ok(()), (!rest.is_empty()).then(|| rest.to_vec()))
}

/// One line of a length near `max`, perhaps with CRs inside, and its
/// ending.
fn line(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        0..=max + 2,
        Just(max),
        Just(max + 1),
        Just(max.saturating_sub(1)),
    ];
    let byte = prop_oneof![8 => b'a'..=b'z', 1 => Just(b'\r'), 1 => any::<u8>()];
    let ending = prop_oneof![
        Just(&b"\n"[..]),
        Just(&b"\r\n"[..]),
        Just(&b""[..]),
        Just(&b"\r"[..]),
        Just(&b"\r\r\n"[..]),
    ];
    let body = len.prop_flat_map(move |n| prop::collection::vec(byte.clone(), n));
    (body, ending).prop_map(|(mut l, end)| {
        l.extend_from_slice(end);
        l
    })
}

/// `--max-line` and a stream for it: lines around the limit, or bytes.
fn stream() -> impl Strategy<Value = (usize, Vec<u8>)> {
    prop_oneof![
        3 => (0usize..40).prop_flat_map(|max| {
            (Just(max), prop::collection::vec(line(max), 0..6).prop_map(|l| l.concat()))
        }),
        1 => (0usize..300, prop::collection::vec(any::<u8>(), 0..300)),
    ]
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn any_cut_frames_the_same_and_the_limit_holds((max, input) in stream(), cut in cuts()) {
        let once = frame(&[&input], max);
        let many = frame(&pieces(&input, &cut), max);
        prop_assert_eq!(&once, &many, "the same bytes in pieces framed otherwise");
        prop_assert_eq!(&once, &expected(&input, max), "not what the bytes say");
        if let (lines, Ok(()), rest) = once {
            let mut all = lines.concat();
            all.extend(rest.unwrap_or_default());
            prop_assert_eq!(all, input, "lines and rest are not the input");
        }
    }

    /// A byte at a time: the slowest client, and every cut at once.
    #[test]
    fn a_byte_at_a_time_frames_the_same((max, input) in stream()) {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(frame(&bytes, max), frame(&[&input], max));
    }
}
