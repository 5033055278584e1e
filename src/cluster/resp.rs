//! RESP2, the protocol Redis speaks: commands encoded, replies decoded,
//! with no I/O.
//!
//! This module owns the bytes of the Redis link and nothing else: the link
//! (`cluster/link.rs`) reads from its socket and [`Decoder::feed`]s what
//! it read, then asks [`Decoder::next`] for whole replies until it says
//! "not yet"; it writes what [`command`] appended. What a reply means (an
//! `XREAD`'s entries, a `SET NX`'s answer) is the link's.
//!
//! The wire format, as Redis's `networking.c` writes it: every reply
//! starts with a type byte and ends its first line in CRLF.
//!
//! | bytes                 | reply                         | [`Value`]  |
//! | --------------------- | ----------------------------- | ---------- |
//! | `+OK\r\n`             | simple string                 | `Simple`   |
//! | `-ERR no\r\n`         | error                         | `Error`    |
//! | `:42\r\n`             | integer                       | `Int`      |
//! | `$3\r\nabc\r\n`       | bulk string, length first     | `Bulk`     |
//! | `$-1\r\n`, `*-1\r\n`  | null bulk string, null array  | `Nil`      |
//! | `*2\r\n` + 2 replies  | array of any replies          | `Array`    |
//!
//! A command is an array of bulk strings (`*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n`).
//!
//! Two things make the decoder more than a recursive function over a
//! slice, and both are about a Redis (or anything listening on its port)
//! that answers garbage or answers slowly:
//!
//! - **Bounds.** A length is a promise from the peer, not a fact: a bulk
//!   string over [`MAX_BULK`], an array over [`MAX_ARRAY`] elements (and a
//!   reply whose arrays hold more than that in all: arrays of arrays each
//!   within the bound would otherwise add up to any number of values,
//!   each larger decoded than the few bytes it took to send),
//!   arrays nested deeper than [`MAX_DEPTH`] and a first line longer than
//!   [`MAX_LINE`] are [`Malformed`], and nothing is allocated up front
//!   from a length (an array's vector grows as its elements arrive).
//! - **Progress kept.** A big reply arrives in many reads. The decoder
//!   never parses it again from its start: an array's finished elements
//!   are kept (a stack of arrays under construction), the bytes a bulk
//!   string still needs are remembered so that smaller feeds are not even
//!   looked at, and a line still without its CRLF is not searched twice.
//!   So the work is linear in the bytes received, however they are cut.
//!
//! RESP3 (`HELLO 3`) is never asked for, so its types (`%`, `_`, `#`, ...)
//! are [`Malformed`] like any unknown type byte.

use std::fmt;

/// The longest bulk string accepted: Redis's own `proto-max-bulk-len`
/// default is 512 MiB, but nothing monoloop stores comes near this.
pub const MAX_BULK: usize = 64 << 20;

/// The most elements one array may have, and one reply's arrays in all
/// (an `XREAD` of 256 entries has a few thousand).
pub const MAX_ARRAY: usize = 1 << 20;

/// The deepest arrays may nest: an `XREAD` reply is 5 deep (streams, one
/// stream, its entries, one entry, its fields).
pub const MAX_DEPTH: usize = 8;

/// The longest first line (a simple string, an error, an integer, a
/// length), without its CRLF.
pub const MAX_LINE: usize = 64 << 10;

/// An array's vector is allocated for at most this many elements at
/// first, whatever its length says: a few bytes cannot make us reserve
/// megabytes.
const FIRST_CAPACITY: usize = 1024;

/// One reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a status (not binary-safe; invalid UTF-8 is replaced).
    Simple(String),
    /// `-ERR ...`: Redis refused the command; the text is its message
    /// (invalid UTF-8 is replaced).
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc`: binary-safe bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: the null bulk string (`GET` of a missing key) or the
    /// null array (`XREAD` whose `BLOCK` timed out).
    Nil,
    /// `*N`: N replies of any type.
    Array(Vec<Value>),
}

/// Appends one command, an array of bulk strings, to `out`:
/// `command(out, &[b"GET", b"key"])` appends `*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `kind`, `n` in decimal and CRLF, without allocating.
fn header(out: &mut Vec<u8>, kind: u8, mut n: usize) {
    out.push(kind);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// What was wrong with the bytes, in words for a log line. The link drops
/// its connection: there is no finding the next reply in a broken stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply from Redis: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Replies from bytes that arrive in pieces: [`feed`](Self::feed) what
/// was read, then call [`next`](Self::next) until it returns `Ok(None)`.
///
/// Once `next` has returned [`Malformed`], it returns the same error
/// forever: the stream cannot be trusted past that point.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes fed; those before `start` are consumed (part of a value
    /// returned or kept in `stack`).
    buf: Vec<u8>,
    start: usize,
    /// Arrays under construction, the innermost last.
    stack: Vec<Frame>,
    /// Bytes of the reply under way already consumed (into `stack`).
    pending: usize,
    /// Elements of the reply under way already put in its arrays.
    elements: usize,
    /// Do not look again until at least this many bytes follow `start`:
    /// what the element at `start` was last found to need.
    wanted: usize,
    /// How far past `start` (the type byte) a first line has already been
    /// searched for its LF, without finding it.
    searched: usize,
    /// The error, once there was one.
    broken: Option<Malformed>,
    /// Bytes examined, for the test that the work stays linear.
    #[cfg(test)]
    examined: usize,
}

/// An array under construction: the elements so far, and how many more.
#[derive(Debug)]
struct Frame {
    items: Vec<Value>,
    left: usize,
}

/// An element's first line.
struct Line<'a> {
    /// The type byte: `+`, `-`, `:`, `$` or `*`.
    kind: u8,
    /// The rest of the line, without its CRLF.
    text: &'a [u8],
    /// Where the line ends, just past its LF, counted from `start`.
    after: usize,
}

/// What one element at `start` turned out to be.
enum Element {
    /// A whole value (a scalar, `Nil`, or an empty array).
    Value(Value),
    /// The header of an array of this many elements, which follow.
    Open(usize),
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the link.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Drop what was consumed once it is at least half the buffer, so
        // that each byte is moved at most once more on average.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned in a whole reply: those of the
    /// reply under way (already decoded into its arrays, or not) and
    /// those after it. The link can bound this.
    pub fn buffered(&self) -> usize {
        self.pending + self.buf.len() - self.start
    }

    /// The next whole reply; `Ok(None)` if more bytes are needed first.
    // Not an `Iterator`: "not yet" and "malformed" are not the end of a
    // sequence, and a caller must tell them apart.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Value>, Malformed> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        match self.decode() {
            Err(e) => {
                self.broken = Some(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    /// [`next`](Self::next), without the stickiness of its errors.
    fn decode(&mut self) -> Result<Option<Value>, Malformed> {
        loop {
            if self.buf.len() - self.start < self.wanted {
                return Ok(None);
            }
            let mut value = match self.element()? {
                None => return Ok(None),
                Some(Element::Value(v)) => v,
                Some(Element::Open(n)) => {
                    if self.stack.len() == MAX_DEPTH {
                        return Err(Malformed(format!("arrays nested deeper than {MAX_DEPTH}")));
                    }
                    self.stack.push(Frame {
                        items: Vec::with_capacity(n.min(FIRST_CAPACITY)),
                        left: n,
                    });
                    continue;
                }
            };
            // Put the value in its array; an array it completes is a
            // value for the one around it, and so on out.
            loop {
                let Some(frame) = self.stack.last_mut() else {
                    self.pending = 0;
                    self.elements = 0;
                    return Ok(Some(value));
                };
                self.elements += 1;
                if self.elements > MAX_ARRAY {
                    return Err(Malformed(format!(
                        "a reply of more than {MAX_ARRAY} elements in all"
                    )));
                }
                frame.items.push(value);
                frame.left -= 1;
                if frame.left > 0 {
                    break;
                }
                let done = self.stack.pop().map(|f| f.items).unwrap_or_default();
                value = Value::Array(done);
            }
        }
    }

    /// Decodes the element at `start` and consumes its bytes; `None` (and
    /// `wanted` set) if they have not all arrived.
    fn element(&mut self) -> Result<Option<Element>, Malformed> {
        let Some(Line { kind, text, after }) = self.first_line()? else {
            return Ok(None);
        };
        let element = match kind {
            b'+' => Element::Value(Value::Simple(lossy(text))),
            b'-' => Element::Value(Value::Error(lossy(text))),
            b':' => Element::Value(Value::Int(integer(text)?)),
            b'$' => match length(text, MAX_BULK, "bulk string")? {
                None => Element::Value(Value::Nil),
                Some(n) => {
                    // The header, the bytes, the CRLF after them.
                    let whole = after + n + 2;
                    let avail = &self.buf[self.start..];
                    if avail.len() < whole {
                        self.wanted = whole;
                        return Ok(None);
                    }
                    if &avail[after + n..whole] != b"\r\n" {
                        return Err(Malformed(format!(
                            "a bulk string of {n} bytes is not followed by CRLF"
                        )));
                    }
                    let bytes = avail[after..after + n].to_vec();
                    self.count(n);
                    self.consume(whole);
                    return Ok(Some(Element::Value(Value::Bulk(bytes))));
                }
            },
            b'*' => match length(text, MAX_ARRAY, "array")? {
                None => Element::Value(Value::Nil),
                Some(0) => Element::Value(Value::Array(Vec::new())),
                Some(n) => Element::Open(n),
            },
            _ => unreachable!("first_line refuses other type bytes"),
        };
        self.consume(after);
        Ok(Some(element))
    }

    /// The first line of the element at `start`; `None` if its LF has not
    /// arrived.
    fn first_line(&mut self) -> Result<Option<Line<'_>>, Malformed> {
        let avail = &self.buf[self.start..];
        let Some(&kind) = avail.first() else {
            self.wanted = 1;
            return Ok(None);
        };
        if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(Malformed(format!(
                "unknown reply type {:?} (byte {kind:#04x}); monoloop speaks RESP2",
                char::from(kind)
            )));
        }
        // Search only what was not searched before.
        let from = 1 + self.searched;
        let found = avail[from..].iter().position(|&b| b == b'\n');
        #[cfg(test)]
        {
            self.examined += found.map_or(avail.len() - from, |i| i + 1);
        }
        let Some(i) = found.map(|i| from + i) else {
            self.searched = avail.len() - 1;
            if self.searched > MAX_LINE + 1 {
                return Err(Malformed(format!("a line longer than {MAX_LINE} bytes")));
            }
            self.wanted = avail.len() + 1;
            return Ok(None);
        };
        // `avail[i]` is the LF; the line is between the type byte and CR.
        // Its length is judged first, as it is while the LF has not come:
        // the same bytes get the same refusal however they arrive.
        if i > MAX_LINE + 2 {
            return Err(Malformed(format!("a line longer than {MAX_LINE} bytes")));
        }
        if i < 2 || avail[i - 1] != b'\r' {
            return Err(Malformed("a line ends in LF without CR".into()));
        }
        Ok(Some(Line {
            kind,
            text: &avail[1..i - 1],
            after: i + 1,
        }))
    }

    /// Marks `n` bytes at `start` as consumed: the next element starts
    /// after them, and nothing is known yet about what it needs.
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.wanted = 0;
        self.searched = 0;
        self.pending += n;
        // Nothing left: start the buffer over without moving a byte.
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    #[cfg(test)]
    fn count(&mut self, n: usize) {
        self.examined += n;
    }

    #[cfg(not(test))]
    fn count(&mut self, _n: usize) {}
}

/// A status or error line as text.
fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// A signed decimal integer: `-` perhaps, then digits, nothing else.
fn integer(line: &[u8]) -> Result<i64, Malformed> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    let text = std::str::from_utf8(line).ok();
    match text {
        Some(text) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => text
            .parse()
            .map_err(|_| Malformed(format!("integer {text} is out of range"))),
        _ => Err(Malformed(format!(
            "expected an integer, got {:?}",
            lossy(&line[..line.len().min(40)])
        ))),
    }
}

/// A bulk string's or an array's length: `None` for -1 (null), else a
/// count from 0 to `max`.
fn length(line: &[u8], max: usize, what: &str) -> Result<Option<usize>, Malformed> {
    match integer(line)? {
        -1 => Ok(None),
        n if n < -1 => Err(Malformed(format!("{what} of length {n}"))),
        n if n as u64 > max as u64 => Err(Malformed(format!(
            "{what} of length {n}, over the limit of {max}"
        ))),
        n => Ok(Some(n as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::*;

    /// Every reply in `bytes`, fed at once.
    fn all(bytes: &[u8]) -> Result<Vec<Value>, Malformed> {
        let mut d = Decoder::new();
        d.feed(bytes);
        let mut out = Vec::new();
        while let Some(v) = d.next()? {
            out.push(v);
        }
        assert_eq!(d.buffered(), 0, "bytes left over");
        Ok(out)
    }

    /// Every reply in `bytes`, fed in pieces cut at `cuts`.
    fn in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Value> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&bytes.len()]) {
            d.feed(&bytes[from..to]);
            from = to;
            while let Some(v) = d.next().unwrap() {
                out.push(v);
            }
        }
        assert_eq!(d.buffered(), 0, "bytes left over");
        out
    }

    /// `Err`'s words, for a reply that must be refused.
    fn refused(bytes: &[u8]) -> String {
        match all(bytes) {
            Err(Malformed(why)) => why,
            Ok(v) => panic!("{bytes:?} was accepted as {v:?}"),
        }
    }

    /// An `XREAD` reply: one stream with two entries, the second with
    /// two fields.
    const XREAD: &[u8] = b"*1\r\n*2\r\n$15\r\nmonoloop:chat:x\r\n\
        *2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nt\r\n$2\r\nhi\r\n\
        *2\r\n$3\r\n2-0\r\n*4\r\n$1\r\nt\r\n$0\r\n\r\n$1\r\nn\r\n$4\r\na\r\nb\r\n";

    fn xread_value() -> Value {
        let bulk = |s: &[u8]| Bulk(s.to_vec());
        Array(vec![Array(vec![
            bulk(b"monoloop:chat:x"),
            Array(vec![
                Array(vec![bulk(b"1-0"), Array(vec![bulk(b"t"), bulk(b"hi")])]),
                Array(vec![
                    bulk(b"2-0"),
                    Array(vec![bulk(b"t"), bulk(b""), bulk(b"n"), bulk(b"a\r\nb")]),
                ]),
            ]),
        ])])
    }

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"GET", b"key"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
        out.clear();
        command(&mut out, &[b"SET", b"", &[0, b'\r', b'\n', 255]]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\0\r\n\xff\r\n");
        // Appended, and decodable by our own decoder.
        let big = vec![b'x'; 1234];
        command(&mut out, &[b"ECHO", &big]);
        let v = all(&out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], Array(vec![Bulk(b"ECHO".to_vec()), Bulk(big)]));
        out.clear();
        command(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn every_type_decodes() {
        let cases: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Simple("OK".into())),
            (b"+\r\n", Simple("".into())),
            (
                b"-ERR unknown command\r\n",
                Error("ERR unknown command".into()),
            ),
            (b":0\r\n", Int(0)),
            (b":-42\r\n", Int(-42)),
            (b":9223372036854775807\r\n", Int(i64::MAX)),
            (b":-9223372036854775808\r\n", Int(i64::MIN)),
            (b"$3\r\nabc\r\n", Bulk(b"abc".to_vec())),
            (b"$0\r\n\r\n", Bulk(Vec::new())),
            (b"$4\r\n\r\n\0\xff\r\n", Bulk(b"\r\n\0\xff".to_vec())),
            (b"$-1\r\n", Nil),
            (b"*-1\r\n", Nil),
            (b"*0\r\n", Array(vec![])),
            (
                b"*3\r\n:1\r\n+a\r\n$-1\r\n",
                Array(vec![Int(1), Simple("a".into()), Nil]),
            ),
            (
                b"*2\r\n*0\r\n-E\r\n",
                Array(vec![Array(vec![]), Error("E".into())]),
            ),
            (XREAD, xread_value()),
        ];
        for (bytes, value) in cases {
            assert_eq!(all(bytes), Ok(vec![value.clone()]), "{bytes:?}");
        }
        // Several replies in one read come out one by one, in order.
        let mut d = Decoder::new();
        d.feed(b"+OK\r\n:1\r\n$-1\r\n*1\r\n+x");
        assert_eq!(d.next(), Ok(Some(Simple("OK".into()))));
        assert_eq!(d.next(), Ok(Some(Int(1))));
        assert_eq!(d.next(), Ok(Some(Nil)));
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.buffered(), 6);
        d.feed(b"\r\n");
        assert_eq!(d.next(), Ok(Some(Array(vec![Simple("x".into())]))));
        assert_eq!((d.next(), d.buffered()), (Ok(None), 0));
    }

    #[test]
    fn a_reply_cut_anywhere_decodes_the_same() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"+OK\r\n-ERR x\r\n:-7\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n*0\r\n");
        stream.extend_from_slice(XREAD);
        let whole = all(&stream).unwrap();
        assert_eq!(whole.len(), 8);
        // Cut once at every position, and in two at every pair of them.
        for i in 0..=stream.len() {
            assert_eq!(in_pieces(&stream, &[i]), whole, "cut at {i}");
        }
        for i in 0..=XREAD.len() {
            for j in i..=XREAD.len() {
                assert_eq!(in_pieces(XREAD, &[i, j]), [xread_value()], "{i} {j}");
            }
        }
        // And byte by byte.
        let cuts: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(in_pieces(&stream, &cuts), whole);
    }

    #[test]
    fn buffered_counts_the_reply_under_way() {
        let mut d = Decoder::new();
        d.feed(&XREAD[..40]);
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.buffered(), 40);
        d.feed(&XREAD[40..]);
        assert_eq!(d.buffered(), XREAD.len());
        assert_eq!(d.next(), Ok(Some(xread_value())));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn lengths_over_the_limits_are_malformed() {
        let too_big = format!("${}\r\n", MAX_BULK + 1);
        assert!(refused(too_big.as_bytes()).contains("over the limit"));
        let huge = b"$99999999999999999999999\r\n";
        assert!(refused(huge).contains("out of range"));
        let too_long = format!("*{}\r\n", MAX_ARRAY + 1);
        assert!(refused(too_long.as_bytes()).contains("over the limit"));
        assert!(refused(b"$-2\r\n").contains("length -2"));
        assert!(refused(b"*-5\r\n").contains("length -5"));
        // At the limits, a header alone is fine: it waits for the rest, and
        // reserves nothing for it.
        let mut d = Decoder::new();
        d.feed(format!("${MAX_BULK}\r\n").as_bytes());
        d.feed(format!("*{MAX_ARRAY}\r\n").as_bytes());
        assert_eq!(d.next(), Ok(None));
        assert!(d.buf.capacity() < 1 << 16);
        let mut d = Decoder::new();
        d.feed(format!("*{MAX_ARRAY}\r\n:1\r\n").as_bytes());
        assert_eq!(d.next(), Ok(None));
        assert!(d.stack[0].items.capacity() <= FIRST_CAPACITY);
    }

    #[test]
    fn a_reply_of_more_elements_in_all_than_one_array_may_hold_is_malformed() {
        // Two arrays, each at the limit, in one: each is within it, the
        // whole is not, and is refused once its elements pass it, not at
        // its end (which a peer need never send).
        let mut bytes = b"*2\r\n".to_vec();
        for _ in 0..2 {
            bytes.extend_from_slice(format!("*{MAX_ARRAY}\r\n").as_bytes());
            bytes.extend_from_slice(&b":1\r\n".repeat(MAX_ARRAY));
        }
        let mut d = Decoder::new();
        d.feed(&bytes[..bytes.len() - 4]);
        let why = d.next().unwrap_err().0;
        assert!(why.contains("elements in all"), "{why}");
        // At the limit in all, a reply is whole; and the count starts
        // again with the next reply.
        let mut one = format!("*1\r\n*{}\r\n", MAX_ARRAY - 1).into_bytes();
        one.extend_from_slice(&b":1\r\n".repeat(MAX_ARRAY - 1));
        let mut d = Decoder::new();
        for _ in 0..2 {
            d.feed(&one);
            assert!(matches!(d.next(), Ok(Some(Array(_)))));
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_malformed() {
        let nested = |depth: usize| {
            let mut bytes = b"*1\r\n".repeat(depth);
            bytes.extend_from_slice(b":1\r\n");
            bytes
        };
        let mut value = Int(1);
        for _ in 0..MAX_DEPTH {
            value = Array(vec![value]);
        }
        assert_eq!(all(&nested(MAX_DEPTH)), Ok(vec![value]));
        assert_eq!(
            refused(&nested(MAX_DEPTH + 1)),
            format!("arrays nested deeper than {MAX_DEPTH}")
        );
        // Found as soon as the header arrives, not after the rest.
        let mut d = Decoder::new();
        d.feed(&b"*1\r\n".repeat(MAX_DEPTH + 1));
        assert!(d.next().is_err());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_malformed() {
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        long.extend_from_slice(b"\r\n");
        assert_eq!(all(&long).unwrap().len(), 1);
        long.insert(1, b'a');
        let why = format!("a line longer than {MAX_LINE} bytes");
        assert_eq!(refused(&long), why);
        // Without its CRLF, refused once it is too long, not kept forever.
        let mut d = Decoder::new();
        d.feed(b":");
        let mut fed = 0;
        let e = loop {
            d.feed(&[b'1'; 1000]);
            fed += 1000;
            match d.next() {
                Ok(None) => assert!(fed <= MAX_LINE + 1000),
                Ok(Some(v)) => panic!("{v:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.0, why);
    }

    /// Found by the property tests (tests/properties/resp_pieces.rs): a
    /// line too long that ends in a bare LF was "too long" when its LF
    /// came in a later read, "LF without CR" when in the same one.
    #[test]
    fn a_long_line_is_refused_in_the_same_words_however_it_arrives() {
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 2));
        long.push(b'\n');
        let why = format!("a line longer than {MAX_LINE} bytes");
        assert_eq!(refused(&long), why, "whole");
        let mut d = Decoder::new();
        d.feed(&long[..long.len() - 1]);
        assert_eq!(d.next(), Err(Malformed(why.clone())), "all but its LF");
        let mut d = Decoder::new();
        d.feed(&long[..MAX_LINE]);
        assert_eq!(d.next(), Ok(None));
        d.feed(&long[MAX_LINE..]);
        assert_eq!(d.next(), Err(Malformed(why)), "its LF with the last bytes");
    }

    #[test]
    fn garbage_is_malformed_and_stays_so() {
        for (bytes, words) in [
            (&b"%1\r\n"[..], "unknown reply type '%'"),
            (b"_\r\n", "unknown reply type '_'"),
            (b"HTTP/1.1 400 Bad Request\r\n", "unknown reply type 'H'"),
            (b"\0", "byte 0x00"),
            (b":12a\r\n", "expected an integer"),
            (b":\r\n", "expected an integer"),
            (b":+1\r\n", "expected an integer"),
            (b"$ 3\r\nabc\r\n", "expected an integer"),
            (b"+OK\n", "LF without CR"),
            (b"$3\r\nabcd\r\n", "not followed by CRLF"),
            (b"*2\r\n:1\r\n!x\r\n", "unknown reply type '!'"),
        ] {
            let why = refused(bytes);
            assert!(why.contains(words), "{bytes:?}: {why}");
        }
        // The type byte alone is enough to know.
        let mut d = Decoder::new();
        d.feed(b"%");
        let e = d.next().unwrap_err();
        assert!(e.to_string().starts_with("malformed reply from Redis: "));
        d.feed(b"+OK\r\n");
        assert_eq!(d.next(), Err(e));
    }

    #[test]
    fn a_big_reply_in_small_pieces_is_not_parsed_again_from_its_start() {
        // A bulk string of 1 MiB, then an array of 20000 small elements,
        // each fed 7 bytes at a time.
        let mut stream = Vec::new();
        command(&mut stream, &[&vec![b'x'; 1 << 20]]);
        let items: Vec<Vec<u8>> = (0..20_000).map(|i| format!("{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = items.iter().map(|i| &i[..]).collect();
        command(&mut stream, &refs);
        let cuts: Vec<usize> = (7..stream.len()).step_by(7).collect();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&stream.len()]) {
            d.feed(&stream[from..to]);
            from = to;
            while let Some(v) = d.next().unwrap() {
                out.push(v);
            }
        }
        assert_eq!(out.len(), 2);
        // Each byte looked at about once: a parser that started over on
        // each feed would look at tens of thousands of times more.
        assert!(
            d.examined <= 2 * stream.len(),
            "{} bytes examined for {}",
            d.examined,
            stream.len()
        );
    }
}
