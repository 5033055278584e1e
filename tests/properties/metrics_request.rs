//! The metrics endpoint's requests (`metrics/text.rs`, `answer`), as the
//! listener reads them (the request so far after every read, until there
//! is an answer), as the fuzz target `metrics_request` checks them:
//!
//! - an answer is a whole HTTP/1.1 response that closes the connection, its
//!   Content-Length the length of its body (none for a HEAD request);
//! - the request so far gets an answer once it is over 8 KiB;
//! - and, for requests made here: no answer before the header's blank line
//!   arrives, then the same answer however the request was cut, its status
//!   the one the method and path call for.
//!
//! Inputs are requests from parts (methods, paths with queries, headers,
//! CRLF or LF, a body or a second request after), mutated, and oversized.

use monoloop::metrics::{answer, Figures};
use proptest::prelude::*;

use super::{cases, cuts, mutate, mutation, pieces};

/// `MAX_REQUEST` in `metrics.rs`.
const MAX_REQUEST: usize = 8 * 1024;

/// Checks one response; its status code.
fn check(response: &[u8], head: bool) -> Result<u16, TestCaseError> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n");
    prop_assert!(end.is_some(), "a response without a blank line");
    let end = end.unwrap() + 4;
    let header = std::str::from_utf8(&response[..end]);
    prop_assert!(header.is_ok(), "a header that is not text");
    let header = header.unwrap();
    prop_assert!(header.starts_with("HTTP/1.1 "));
    prop_assert!(header.contains("\r\nConnection: close\r\n"));
    let length: Option<usize> = header
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok());
    prop_assert!(length.is_some(), "no Content-Length");
    let body = response.len() - end;
    prop_assert_eq!(
        body,
        if head { 0 } else { length.unwrap() },
        "Content-Length"
    );
    Ok(header[9..12].parse().unwrap())
}

/// The request so far after each piece, until an answer: that answer and
/// how many bytes had arrived.
fn served(pieces: &[&[u8]]) -> Result<Option<(Vec<u8>, usize)>, TestCaseError> {
    let mut request = Vec::new();
    for piece in pieces {
        request.extend_from_slice(piece);
        if let Some(response) = answer(&request, Figures::default) {
            let refused =
                response.starts_with(b"HTTP/1.1 400 ") || response.starts_with(b"HTTP/1.1 431 ");
            let start = request.iter().position(|b| !matches!(b, b'\r' | b'\n'));
            let head = request[start.unwrap_or(request.len())..].starts_with(b"HEAD ");
            check(&response, head && !refused)?;
            return Ok(Some((response, request.len())));
        }
        prop_assert!(request.len() <= MAX_REQUEST, "no answer past the limit");
    }
    Ok(None)
}

/// A request made of parts: the bytes, where its header ends, and the
/// status it calls for.
fn request() -> impl Strategy<Value = (Vec<u8>, usize, u16)> {
    let method = prop::sample::select(vec![
        ("GET", 0),
        ("HEAD", 0),
        ("POST", 405),
        ("DELETE", 405),
    ]);
    let path = prop::sample::select(vec![
        ("/metrics", 200),
        ("/healthz", 200),
        ("/metrics?x=1", 200),
        ("/", 404),
        ("/metricsx", 404),
        ("/a/b?c", 404),
    ]);
    let headers = prop::collection::vec(
        prop::sample::select(vec!["Host: x", "Accept: */*", "User-Agent: prop", "X-A: 1"]),
        0..4,
    );
    let after = prop::sample::select(vec!["", "GET /metrics HTTP/1.1\r\n\r\n", "body", "\r\n"]);
    (method, path, headers, any::<bool>(), after).prop_map(
        |((m, refused), (p, found), h, lf, after)| {
            let eol = if lf { "\n" } else { "\r\n" };
            let mut text = format!("{m} {p} HTTP/1.1{eol}");
            for line in h {
                text += line;
                text += eol;
            }
            text += eol;
            let end = text.len();
            text += after;
            let status = if refused != 0 { refused } else { found };
            (text.into_bytes(), end, status)
        },
    )
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn a_request_is_answered_once_whole_and_the_same_however_cut((req, end, status) in request(), cut in cuts()) {
        let whole = served(&[&req])?;
        prop_assert!(whole.is_some(), "a whole request got no answer");
        let (response, _) = whole.unwrap();
        prop_assert_eq!(check(&response, req.starts_with(b"HEAD "))?, status);
        // Cut anywhere: answered when the blank line has arrived, and
        // not before, with the same answer.
        let got = served(&pieces(&req, &cut))?;
        prop_assert!(got.is_some());
        let (again, at) = got.unwrap();
        prop_assert!(at >= end, "answered before the header ended");
        // The same answer; for /metrics, the same status (its process
        // figures, CPU time and memory, move between two answers).
        match req.windows(8).any(|w| w == b"/metrics") {
            true => prop_assert_eq!(check(&again, req.starts_with(b"HEAD "))?, status),
            false => prop_assert_eq!(&again, &response),
        }
        prop_assert_eq!(answer(&req[..end - 1], Figures::default), None);
    }

    #[test]
    fn a_mutated_request_is_answered_soundly(
        (req, _, _) in request(),
        m in prop::collection::vec(mutation(), 1..3),
        cut in cuts(),
    ) {
        let req = m.iter().fold(req, mutate);
        served(&pieces(&req, &cut))?;
    }

    #[test]
    fn a_request_over_the_limit_is_answered(
        (req, _, _) in request(),
        filler in prop::sample::select(vec![&b"X-Pad: aaaaaaaaaaaaaaaa\r\n"[..], b"a", b"\r\n\r"]),
        cut in cuts(),
    ) {
        // The request line, then header lines (or bytes) past 8 KiB.
        let line_end = req.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut big = req[..line_end].to_vec();
        while big.len() <= MAX_REQUEST {
            big.extend_from_slice(filler);
        }
        big.extend_from_slice(b"\r\n\r\n");
        let got = served(&pieces(&big, &cut))?;
        prop_assert!(got.is_some(), "no answer to {} bytes", big.len());
    }
}
