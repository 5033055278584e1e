//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`, versions 1 and
//! 2): the header a load balancer sends first on each connection, naming
//! the client it accepted.
//!
//! This module owns one connection's header while it arrives: the bytes so
//! far ([`Header`]), and what they say once complete ([`Parsed`]). The
//! parsing itself is the `ppp` crate's, which does no I/O: it is handed the
//! bytes read so far and says "complete", "not yet" or "not a header". The
//! loop (`event_loop/entry.rs`) reads, feeds, and acts on the outcome:
//!
//! - a header may arrive in any number of pieces, but must be complete
//!   within `--handshake-timeout` of the connect;
//! - version 1 is at most 107 bytes and must end in CRLF (a bare LF is a bad
//!   header); version 2 is bounded by its length field, here at most
//!   [`MAX_HEADER`] bytes in all, and its TLVs are skipped;
//! - bytes after the header in the same read are the start of the client's
//!   stream ([`Parsed::rest`]): a greeting, a TLS ClientHello;
//! - `LOCAL` (v2) and `UNKNOWN` (v1), which balancers send for their health
//!   checks, name no client: the connection's own peer is used. A `LOCAL`
//!   header's family is ignored and its address block skipped, whatever
//!   its length (zero, as a health check sends it, or not), as the
//!   specification tells a receiver to: it is framed here, never parsed;
//! - a v2 `PROXY` header names a client only for TCP over IPv4 or IPv6; any
//!   other family or transport (UDP, UNIX, unspecified) is taken as
//!   `UNKNOWN`, its block skipped.
//!
//! Nothing is ever guessed: without `--proxy-protocol` a header is data,
//! and with it, a connection that does not start with one is closed.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, HeaderResult, PartialResult};

/// The longest header accepted: a v2 header's 16 fixed bytes plus room for
/// the TLVs that balancers send (AWS's, Azure's, GCP's are tens of bytes).
pub const MAX_HEADER: usize = 16 + 1024;

/// A header still arriving.
#[derive(Debug, Default)]
pub struct Header {
    bytes: Vec<u8>,
}

/// A complete header.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The client, as the balancer saw it; `None` for `LOCAL` / `UNKNOWN`
    /// (use the connection's own peer).
    pub client: Option<SocketAddr>,
    /// Bytes that came after the header: the client's first bytes.
    pub rest: Vec<u8>,
}

/// What the bytes so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not complete yet: read more.
    Partial,
    Done(Parsed),
    /// Not a PROXY header, or a broken one: close the connection.
    Bad(String),
}

impl Header {
    /// Adds `input` to what has arrived and says where that leaves it.
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        self.bytes.extend_from_slice(input);
        let progress = parse(&self.bytes);
        if progress == Progress::Partial && self.bytes.len() > MAX_HEADER {
            return Progress::Bad(format!("no complete header in {MAX_HEADER} bytes"));
        }
        progress
    }
}

/// The 12 bytes a version 2 header starts with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a version 1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included (the spec's 107).
const V1_MAX: usize = 107;
/// A version 2 header's 13th byte for the `LOCAL` command: version 2
/// (high four bits), command 0 (low four).
const V2_LOCAL: u8 = 0x20;

/// Where the header at the start of `bytes` ends, once that is known
/// (`Ok(Some(len))`); `Ok(None)` while more bytes could still make it one;
/// an error when they cannot. The framing is decided here, before `ppp`
/// sees the bytes: its version 1 parser can mistake a line cut short for a
/// bad one (a port half-arrived), so it is given only whole lines.
fn frame(bytes: &[u8]) -> Result<Option<usize>, String> {
    let n = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..n] == V2_SIGNATURE[..n] {
        if bytes.len() < 16 {
            return Ok(None);
        }
        let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if len > MAX_HEADER {
            return Err(format!(
                "a {len}-byte header is over the {MAX_HEADER}-byte bound"
            ));
        }
        return Ok((bytes.len() >= len).then_some(len));
    }
    let n = bytes.len().min(V1_PREFIX.len());
    if bytes[..n] == V1_PREFIX[..n] {
        return match bytes.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < V1_MAX => Ok(Some(lf + 1)),
            Some(_) => Err("a version 1 header longer than 107 bytes".into()),
            None if bytes.len() >= V1_MAX => Err("a version 1 header longer than 107 bytes".into()),
            None => Ok(None),
        };
    }
    Err("not a PROXY protocol header".into())
}

/// Parses a header at the start of `bytes`.
fn parse(bytes: &[u8]) -> Progress {
    let framed = match frame(bytes) {
        Ok(None) => return Progress::Partial,
        Ok(Some(len)) => len,
        Err(why) => return Progress::Bad(why),
    };
    if bytes[..framed].ends_with(b"\n") && bytes[0] == b'P' && !bytes[..framed].ends_with(b"\r\n") {
        return Progress::Bad("a version 1 header must end in CRLF".into());
    }
    // LOCAL: the family and the block are to be ignored, so they are not
    // handed to `ppp`, which would hold the family against the block's
    // length (a TCP family with no addresses is what some health checks
    // send).
    if bytes.starts_with(V2_SIGNATURE) && bytes[12] == V2_LOCAL {
        return Progress::Done(Parsed {
            client: None,
            rest: bytes[framed..].to_vec(),
        });
    }
    let result = HeaderResult::parse(&bytes[..framed]);
    if result.is_incomplete() {
        return Progress::Bad("a header cut short".into());
    }
    let (client, len) = match result {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            };
            (client, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.protocol, h.addresses) {
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                // UDP, a UNIX socket, or a transport or family unspecified
                // names no TCP client: UNKNOWN. (LOCAL never gets here.)
                _ => None,
            };
            (client, h.len())
        }
        HeaderResult::V1(Err(e)) => return Progress::Bad(format!("bad PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => return Progress::Bad(format!("bad PROXY header: {e}")),
    };
    debug_assert_eq!(len, framed, "ppp and the framing disagree");
    Progress::Done(Parsed {
        client,
        rest: bytes[framed..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(command);
        h.push(family);
        h.extend(((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend(addresses);
        h.extend(tlvs);
        h
    }

    fn done(p: Progress) -> Parsed {
        match p {
            Progress::Done(p) => p,
            other => panic!("expected a header, got {other:?}"),
        }
    }

    #[test]
    fn version_1_tcp4_tcp6_and_unknown() {
        let p = done(Header::default().feed(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nhello"));
        assert_eq!(p.client, Some("192.0.2.7:5555".parse().unwrap()));
        assert_eq!(p.rest, b"hello");
        let p = done(Header::default().feed(b"PROXY TCP6 2001:db8::7 ::1 4444 443\r\n"));
        assert_eq!(p.client, Some("[2001:db8::7]:4444".parse().unwrap()));
        assert!(p.rest.is_empty());
        let p = done(Header::default().feed(b"PROXY UNKNOWN\r\n"));
        assert_eq!(p.client, None);
    }

    #[test]
    fn version_2_with_tlvs_local_and_ipv6() {
        let mut addrs = vec![198, 51, 100, 9, 10, 0, 0, 1];
        addrs.extend(7777u16.to_be_bytes());
        addrs.extend(80u16.to_be_bytes());
        let tlvs = [0x04, 0, 3, b'a', b'b', b'c', 0x01, 0, 2, b'h', b'2'];
        let mut bytes = v2(0x21, 0x11, &addrs, &tlvs);
        bytes.extend(b"after");
        let p = done(Header::default().feed(&bytes));
        assert_eq!(p.client, Some("198.51.100.9:7777".parse().unwrap()));
        assert_eq!(p.rest, b"after");
        let p = done(Header::default().feed(&v2(0x20, 0x00, &[], &[])));
        assert_eq!(p.client, None, "LOCAL: a health check");
        let mut a6 = vec![0x20, 0x01, 0x0d, 0xb8];
        a6.extend([0; 11]);
        a6.push(9);
        a6.extend([0; 15]);
        a6.push(1);
        a6.extend(1234u16.to_be_bytes());
        a6.extend(443u16.to_be_bytes());
        let p = done(Header::default().feed(&v2(0x21, 0x21, &a6, &[])));
        assert_eq!(p.client, Some("[2001:db8::9]:1234".parse().unwrap()));
    }

    /// An IPv4 address block: `src:sport` to 10.0.0.1:80.
    fn block4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend([10, 0, 0, 1]);
        a.extend(sport.to_be_bytes());
        a.extend(80u16.to_be_bytes());
        a
    }

    #[test]
    fn version_2_over_udp_or_an_unspecified_transport_names_nobody() {
        // UDP over IPv4 (0x12) and over IPv6 (0x22), and IPv4 with no
        // transport named (0x10): no TCP client, so UNKNOWN, as the
        // documentation says; the block is still skipped whole.
        let mut a6 = vec![0x20, 0x01, 0x0d, 0xb8];
        a6.extend([0; 12]);
        a6.extend([0; 16]);
        a6.extend(5353u16.to_be_bytes());
        a6.extend(53u16.to_be_bytes());
        for (family, addrs) in [
            (0x12, block4([192, 0, 2, 7], 5555)),
            (0x22, a6),
            (0x10, block4([192, 0, 2, 7], 5555)),
        ] {
            let mut bytes = v2(0x21, family, &addrs, &[0x04, 0, 1, b'x']);
            bytes.extend(b"after");
            let p = done(Header::default().feed(&bytes));
            assert_eq!(p.client, None, "family {family:#04x}");
            assert_eq!(p.rest, b"after", "family {family:#04x}");
        }
    }

    #[test]
    fn version_2_local_ignores_its_family_and_skips_its_block() {
        // A health check that names TCP over IPv4 but sends no addresses:
        // the family is ignored, not held against the length.
        let mut bytes = v2(0x20, 0x11, &[], &[]);
        bytes.extend(b"ping");
        let p = done(Header::default().feed(&bytes));
        assert_eq!(p.client, None);
        assert_eq!(p.rest, b"ping");
        // One that does send a block (and TLVs): skipped to the byte, and
        // the addresses in it name nobody.
        for (family, block) in [
            (0x11, block4([192, 0, 2, 7], 5555)),
            (0x21, vec![7; 5]),
            (0x00, vec![1, 2, 3]),
            (0x31, vec![0; 216]),
            // Not even a family version 2 defines: ignored all the same,
            // as HAProxy's own receiver does for LOCAL.
            (0x45, vec![]),
        ] {
            let mut bytes = v2(0x20, family, &block, &[0x04, 0, 1, b'x']);
            bytes.extend(b"ping");
            let p = done(Header::default().feed(&bytes));
            assert_eq!(p.client, None, "family {family:#04x}");
            assert_eq!(p.rest, b"ping", "family {family:#04x}");
        }
        // The PROXY command with the same empty block is still refused: it
        // promised addresses and sent none.
        assert!(matches!(
            Header::default().feed(&v2(0x21, 0x11, &[], &[])),
            Progress::Bad(_)
        ));
    }

    #[test]
    fn a_header_may_arrive_a_byte_at_a_time() {
        for whole in [b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nX".to_vec(), {
            let mut b = v2(0x21, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], &[]);
            b.push(b'X');
            b
        }] {
            let mut h = Header::default();
            let mut last = Progress::Partial;
            for (i, b) in whole.iter().enumerate() {
                last = h.feed(&[*b]);
                if i + 1 < whole.len() - 1 {
                    assert_eq!(last, Progress::Partial, "byte {i}");
                }
                if matches!(last, Progress::Done(_)) {
                    break;
                }
            }
            assert!(matches!(last, Progress::Done(_)), "{last:?}");
        }
    }

    #[test]
    fn bad_headers_are_refused_not_waited_for() {
        for bad in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"hello",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\nrest",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\0",
        ] {
            let p = Header::default().feed(bad);
            assert!(
                matches!(p, Progress::Bad(_)),
                "{:?}: {p:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An over-long version 1 line.
        let long = format!("PROXY TCP4 {} ", "1".repeat(200));
        assert!(matches!(
            Header::default().feed(long.as_bytes()),
            Progress::Bad(_)
        ));
        // A version 2 header that claims more than the bound.
        let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        huge.extend(60000u16.to_be_bytes());
        // Refused as soon as its length field is in, not after 60 KB.
        assert!(matches!(Header::default().feed(&huge), Progress::Bad(_)));
    }
}
