//! The metrics endpoint's requests (`metrics/text.rs`, `answer`), as the
//! listener reads them: the request so far after every read, until there
//! is an answer.
//!
//! - never panics; an answer is a whole HTTP/1.1 response that closes the
//!   connection, its Content-Length the length of its body (but for a
//!   HEAD request, whose answer has none);
//! - the request so far gets an answer once it is over 8 KiB: a client
//!   cannot keep the listener reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monoloop::metrics::{answer, Figures};
use monoloop_fuzz::cut;

/// `MAX_REQUEST` in `metrics.rs`.
const MAX_REQUEST: usize = 8 * 1024;

fn check(response: &[u8], head: bool) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response has a blank line")
        + 4;
    let header = std::str::from_utf8(&response[..end]).expect("an ASCII header");
    assert!(header.starts_with("HTTP/1.1 "));
    assert!(header.contains("\r\nConnection: close\r\n"));
    let length: usize = header
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    let body = response.len() - end;
    assert_eq!(body, if head { 0 } else { length }, "Content-Length");
}

fuzz_target!(|data: &[u8]| {
    let (_, pieces) = cut(data);
    let mut request = Vec::new();
    for piece in &pieces {
        request.extend_from_slice(piece);
        // The figures are the default ones: what is asked, not counted.
        if let Some(response) = answer(&request, Figures::default) {
            // A request refused as malformed (400) or too large (431) is
            // no HEAD request, whatever it starts with: its answer has a
            // body, as nginx's does.
            let refused =
                response.starts_with(b"HTTP/1.1 400 ") || response.starts_with(b"HTTP/1.1 431 ");
            // Empty lines before the request line are skipped, as RFC 9112
            // (section 2.2) allows and httparse does.
            let start = request.iter().position(|b| !matches!(b, b'\r' | b'\n'));
            let head = request[start.unwrap_or(request.len())..].starts_with(b"HEAD ");
            check(&response, head && !refused);
            return;
        }
        assert!(request.len() <= MAX_REQUEST, "no answer past the limit");
    }
});
