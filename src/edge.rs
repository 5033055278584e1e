//! Who may connect: allow and deny lists of address ranges, and a limit on
//! concurrent connections per client address.
//!
//! - [`Cidr`]: an IPv4 or IPv6 range (`10.0.0.0/8`, `2001:db8::/32`, or a
//!   bare address, which is a /32 or /128). An IPv4-mapped IPv6 address
//!   (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4 client) is
//!   matched as the IPv4 address it carries.
//! - [`Policy`]: `--deny` ranges refuse; if any `--allow` range is given, an
//!   address in none of them is refused too.
//! - [`PerIp`]: `--max-per-ip`, the count of open connections per address,
//!   shared by every worker (a mutex, taken per connection, never per
//!   message).
//!
//! [`Gate`] puts them together for the loop (`event_loop/entry.rs`), which asks
//! at accept, or, behind a PROXY protocol header (`proxy.rs`), once the
//! header has named the client; of a client the connection limit turns
//! away, the loop asks only [`Gate::refuses`] (`event_loop/admission.rs`),
//! so that a denied one is told nothing. The loop has a gate only when one of these
//! options is given: without them, accepting costs what it always did.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use mio::Token;

use crate::proxy::{self, Progress};

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// True if `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// `ip`, with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// True if the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `ADDR` or `ADDR/BITS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            "expected an IP address or range, such as 10.0.0.0/8 or ::1".to_string()
        })?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `--allow` and `--deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Policy {
    /// True if no list was given: everyone may connect.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// True if `ip` may connect.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Open connections per client address, for `--max-per-ip`, shared by
/// every worker of a server.
#[derive(Debug, Clone)]
pub struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic while holding it aborts the process (panic=abort); in a
        // test build, take the map as it is.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A count for `--max-per-ip`, if it is on.
    pub fn shared(opts: &EdgeOptions) -> Option<PerIp> {
        (opts.max_per_ip > 0).then(|| PerIp::new(opts.max_per_ip))
    }

    /// Counts a new connection from `ip`; false (and nothing counted) if it
    /// already has the most it may.
    pub fn take(&self, ip: IpAddr) -> bool {
        let mut map = self.map();
        let n = map.entry(canonical(ip)).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` closed.
    pub fn free(&self, ip: IpAddr) {
        let mut map = self.map();
        let ip = canonical(ip);
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// The edge options, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeOptions {
    /// `--proxy-protocol`: every connection starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `--proxy-from`: the peers that may send one (empty: any).
    pub proxy_from: Vec<Cidr>,
    pub policy: Policy,
    /// `--max-per-ip`: 0 is no limit.
    pub max_per_ip: usize,
}

impl EdgeOptions {
    /// True if any edge option is on: the loop then needs a [`Gate`].
    pub fn any(&self) -> bool {
        self.proxy_protocol || !self.policy.is_open() || self.max_per_ip > 0
    }
}

/// What the gate says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Serve it.
    Go,
    /// Close it without a word: denied, or an untrusted PROXY peer.
    Refuse,
    /// Tell it `Too many connections from your address`, and close.
    TooMany,
    /// Read its PROXY header first.
    WaitHeader,
}

/// Where a PROXY header stands after the bytes just read.
#[derive(Debug)]
pub enum HeaderStep {
    Partial,
    /// Not a header, or a broken one.
    Bad(String),
    /// The header named `client` (or nobody: then the peer stands for the
    /// client); the gate has ruled (`entry`), and `rest` are the client's
    /// first bytes.
    Done {
        entry: Entry,
        client: SocketAddr,
        rest: Vec<u8>,
    },
}

/// Who may connect, for one loop: the options, and what it knows of its
/// connections' clients. See the module documentation.
#[derive(Debug)]
pub struct Gate {
    opts: EdgeOptions,
    per_ip: Option<PerIp>,
    /// PROXY headers still arriving.
    headers: HashMap<Token, proxy::Header>,
    /// The client a connection stands for, when a PROXY header named one.
    clients: HashMap<Token, SocketAddr>,
    /// Connections counted against `--max-per-ip`, and under which address.
    counted: HashMap<Token, IpAddr>,
}

impl Gate {
    /// A gate for these options, sharing `per_ip` with the other workers;
    /// `None` if no edge option is on.
    pub fn new(opts: &EdgeOptions, per_ip: Option<PerIp>) -> Option<Gate> {
        opts.any().then(|| Gate {
            opts: opts.clone(),
            per_ip,
            headers: HashMap::new(),
            clients: HashMap::new(),
            counted: HashMap::new(),
        })
    }

    /// True if connections start with a PROXY header.
    pub fn proxy(&self) -> bool {
        self.opts.proxy_protocol
    }

    /// Replaces the `--max-per-ip` count with one shared by every worker.
    pub fn share_per_ip(&mut self, per_ip: Option<PerIp>) {
        if per_ip.is_some() {
            self.per_ip = per_ip;
        }
    }

    /// A connection was accepted from `peer`.
    pub fn at_accept(&mut self, token: Token, peer: SocketAddr) -> Entry {
        if self.refuses(peer) {
            return Entry::Refuse;
        }
        if self.opts.proxy_protocol {
            return Entry::WaitHeader;
        }
        self.admit(token, peer.ip())
    }

    /// True if a connection from `peer` is refused at accept, before a
    /// byte is read: a peer outside `--proxy-from`, or without
    /// `--proxy-protocol`, one `--allow` and `--deny` refuse. Counts
    /// nothing, so that the loop may ask it of a client it turns away at
    /// `--max-connections` (a denial wins: a denied peer is told nothing).
    pub fn refuses(&self, peer: SocketAddr) -> bool {
        if self.opts.proxy_protocol {
            let trusted = self.opts.proxy_from.is_empty()
                || self.opts.proxy_from.iter().any(|c| c.contains(peer.ip()));
            return !trusted;
        }
        !self.opts.policy.admits(peer.ip())
    }

    /// Applies allow, deny and the limit per address to `client`.
    fn admit(&mut self, token: Token, client: IpAddr) -> Entry {
        if !self.opts.policy.admits(client) {
            return Entry::Refuse;
        }
        if let Some(per_ip) = &self.per_ip {
            if !per_ip.take(client) {
                return Entry::TooMany;
            }
            self.counted.insert(token, client);
        }
        Entry::Go
    }

    /// Feeds bytes read from a connection still sending its PROXY header;
    /// `peer` is the connection's own peer (the balancer).
    pub fn header(&mut self, token: Token, input: &[u8], peer: SocketAddr) -> HeaderStep {
        let progress = self.headers.entry(token).or_default().feed(input);
        match progress {
            Progress::Partial => HeaderStep::Partial,
            Progress::Bad(why) => {
                self.headers.remove(&token);
                HeaderStep::Bad(why)
            }
            Progress::Done(parsed) => {
                self.headers.remove(&token);
                // LOCAL and UNKNOWN name nobody: the balancer stands for the
                // client, and must be allowed like one.
                let client = parsed.client.unwrap_or(peer);
                if parsed.client.is_some() {
                    self.clients.insert(token, client);
                }
                HeaderStep::Done {
                    entry: self.admit(token, client.ip()),
                    client,
                    rest: parsed.rest,
                }
            }
        }
    }

    /// True if some of the connection's PROXY header has arrived (a peer
    /// that closes before sending a byte is a health check, not an error).
    pub fn header_started(&self, token: Token) -> bool {
        self.headers.contains_key(&token)
    }

    /// The client a connection stands for, if a PROXY header named one.
    pub fn client(&self, token: Token) -> Option<SocketAddr> {
        self.clients.get(&token).copied()
    }

    /// The connection is gone: its count and records go too.
    pub fn forget(&mut self, token: Token) {
        self.headers.remove(&token);
        self.clients.remove(&token);
        if let Some(ip) = self.counted.remove(&token) {
            if let Some(per_ip) = &self.per_ip {
                per_ip.free(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("192.168.1.128/25").contains(ip("192.168.1.200")));
        assert!(!cidr("192.168.1.128/25").contains(ip("192.168.1.100")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(cidr("::1").contains(ip("::1")));
        // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")));
        assert!(!cidr("::/0").contains(ip("127.0.0.1")), "v6 ranges are v6");
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0 to 32"));
        assert!("::/129".parse::<Cidr>().unwrap_err().contains("0 to 128"));
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
    }

    #[test]
    fn deny_wins_and_allow_closes_the_rest() {
        let p = Policy {
            allow: vec![cidr("127.0.0.0/8")],
            deny: vec![cidr("127.0.0.66")],
        };
        assert!(p.admits(ip("127.0.0.1")));
        assert!(!p.admits(ip("127.0.0.66")));
        assert!(!p.admits(ip("10.0.0.1")), "not in any --allow");
        assert!(p.admits(ip("::ffff:127.0.0.9")));
        let deny_only = Policy {
            allow: vec![],
            deny: vec![cidr("10.0.0.0/8")],
        };
        assert!(deny_only.admits(ip("192.0.2.1")));
        assert!(Policy::default().is_open());
    }

    #[test]
    fn the_limit_per_address_counts_open_connections() {
        let per = PerIp::new(2);
        let other = per.clone();
        assert!(per.take(ip("192.0.2.1")));
        assert!(other.take(ip("::ffff:192.0.2.1")), "the same address");
        assert!(!per.take(ip("192.0.2.1")));
        assert!(per.take(ip("192.0.2.2")), "another address");
        other.free(ip("192.0.2.1"));
        assert!(per.take(ip("192.0.2.1")));
    }

    #[test]
    fn the_gate_rules_at_accept_or_after_the_header() {
        let opts = EdgeOptions {
            proxy_protocol: true,
            proxy_from: vec![cidr("127.0.0.1")],
            policy: Policy {
                allow: vec![],
                deny: vec![cidr("192.0.2.66")],
            },
            max_per_ip: 1,
        };
        let mut gate = Gate::new(&opts, Some(PerIp::new(1))).unwrap();
        let lb: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        assert!(gate.refuses(stranger) && !gate.refuses(lb));
        assert_eq!(gate.at_accept(Token(1), stranger), Entry::Refuse);
        assert_eq!(gate.at_accept(Token(1), lb), Entry::WaitHeader);
        assert!(matches!(
            gate.header(Token(1), b"PROXY TCP4 192.0.2.", lb),
            HeaderStep::Partial
        ));
        assert!(gate.header_started(Token(1)));
        match gate.header(Token(1), b"7 10.0.0.1 5 80\r\nhi", lb) {
            HeaderStep::Done {
                entry,
                client,
                rest,
            } => {
                assert_eq!(entry, Entry::Go);
                assert_eq!(client, "192.0.2.7:5".parse().unwrap());
                assert_eq!(rest, b"hi");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gate.client(Token(1)), Some("192.0.2.7:5".parse().unwrap()));
        // The same client again: over the limit of one.
        gate.at_accept(Token(2), lb);
        let step = gate.header(Token(2), b"PROXY TCP4 192.0.2.7 10.0.0.1 6 80\r\n", lb);
        assert!(matches!(
            step,
            HeaderStep::Done {
                entry: Entry::TooMany,
                ..
            }
        ));
        // A denied client, named by the header.
        let step = gate.header(Token(3), b"PROXY TCP4 192.0.2.66 10.0.0.1 6 80\r\n", lb);
        assert!(matches!(
            step,
            HeaderStep::Done {
                entry: Entry::Refuse,
                ..
            }
        ));
        // Once the first closes, the client may come again.
        gate.forget(Token(1));
        let step = gate.header(Token(4), b"PROXY TCP4 192.0.2.7 10.0.0.1 7 80\r\n", lb);
        assert!(matches!(
            step,
            HeaderStep::Done {
                entry: Entry::Go,
                ..
            }
        ));
        assert!(Gate::new(&EdgeOptions::default(), None).is_none());
    }
}
