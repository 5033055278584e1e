//! At the edge and behind a load balancer, over real sockets: the PROXY
//! protocol (v1 and v2), `--allow` / `--deny`, `--max-per-ip`, and a real
//! HAProxy in front where one is installed.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A version 2 header for a TCP over IPv4 client.
fn v2_tcp4(client: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(c) = client else {
        panic!("v4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    h.extend(((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend(c.ip().octets());
    h.extend([10, 0, 0, 1]);
    h.extend(c.port().to_be_bytes());
    h.extend(80u16.to_be_bytes());
    h.extend(tlvs);
    h
}

/// A version 2 LOCAL header (a balancer's health check).
fn v2_local() -> Vec<u8> {
    b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec()
}

/// A version 2 header: `ver_cmd` (0x21 PROXY, 0x20 LOCAL), `family` (its
/// address family and transport), then `block` (addresses, TLVs).
fn v2_header(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([ver_cmd, family]);
    h.extend((block.len() as u16).to_be_bytes());
    h.extend(block);
    h
}

/// An address block for `client` to 10.0.0.1:80 or [2001:db8::1]:80.
fn address_block(client: SocketAddr) -> Vec<u8> {
    let mut b = Vec::new();
    match client {
        SocketAddr::V4(c) => {
            b.extend(c.ip().octets());
            b.extend([10, 0, 0, 1]);
        }
        SocketAddr::V6(c) => {
            b.extend(c.ip().octets());
            b.extend(
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
        }
    }
    b.extend(client.port().to_be_bytes());
    b.extend(80u16.to_be_bytes());
    b
}

/// The access log line of the connection whose client was `peer`.
fn access_line(server: &mut Server, peer: &str) -> String {
    server.wait_for_log(&format!("peer={peer} "))
}

#[test]
fn proxy_headers_v1_and_v2_name_the_client_and_keep_the_data_after_them() {
    let mut server = Server::start(&["echo", "--proxy-protocol", "--access-log"]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n".to_vec(),
            "192.0.2.7:5555",
        ),
        (
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4444 80\r\n".to_vec(),
            "[2001:db8::7]:4444",
        ),
        (
            v2_tcp4(
                "198.51.100.9:7777".parse().unwrap(),
                &[0x04, 0, 3, b'a', b'b', b'c'],
            ),
            "198.51.100.9:7777",
        ),
    ];
    for (header, client) in cases {
        let mut s = connect(server.addr);
        // The header and the first data in one write.
        let mut first = header.clone();
        first.extend(b"hello");
        s.write_all(&first).unwrap();
        expect(&mut s, b"hello");
        s.write_all(b" again").unwrap();
        expect(&mut s, b" again");
        drop(s);
        let line = access_line(&mut server, client);
        assert!(line.contains("bytes_in=11 bytes_out=11"), "{line}");
    }
    // LOCAL and UNKNOWN: the balancer itself is the client.
    for header in [v2_local(), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut s = connect(server.addr);
        let me = s.local_addr().unwrap();
        s.write_all(&header).unwrap();
        s.write_all(b"ping").unwrap();
        expect(&mut s, b"ping");
        drop(s);
        access_line(&mut server, &me.to_string());
    }
}

#[test]
fn a_v2_header_for_udp_names_nobody_and_the_balancer_stands_for_the_client() {
    // The addresses in a UDP header are not a TCP client's: the server
    // goes by the real peer, for the log, the access log, allow and deny.
    // Denying the header's addresses shows which one was judged.
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--access-log",
        "--log-level",
        "debug",
        "--deny",
        "192.0.2.0/24",
        "--deny",
        "2001:db8::/32",
        "--stats-interval",
        "0.2",
    ]);
    for (family, named) in [(0x12, "192.0.2.7:5555"), (0x22, "[2001:db8::7]:4444")] {
        let mut s = connect(server.addr);
        let me = s.local_addr().unwrap();
        let mut first = v2_header(0x21, family, &address_block(named.parse().unwrap()));
        first.extend(b"udp?");
        s.write_all(&first).unwrap();
        expect(&mut s, b"udp?");
        drop(s);
        let line = access_line(&mut server, &me.to_string());
        assert!(line.contains("bytes_in=4 bytes_out=4"), "{line}");
        server.wait_for_log(&format!("PROXY header: client {me}"));
    }
    let line = server.wait_for_log_where("stats:", |l| {
        stat(l, "total") == 2 && stat(l, "active") == 0
    });
    assert!(
        !line.contains("denied") && !line.contains("proxy_errors"),
        "{line}"
    );
    for named in ["192.0.2.7", "2001:db8::7"] {
        assert!(server.log_lines(named).is_empty(), "{named} was logged");
    }
}

#[test]
fn a_v2_local_header_is_served_whatever_its_family_and_block() {
    // A health check: LOCAL, naming TCP over IPv4 but with no address
    // block at all; then one whose block (addresses and a TLV) must be
    // skipped by its length, and names nobody.
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--access-log",
        "--stats-interval",
        "0.2",
    ]);
    let mut block = address_block("192.0.2.7:5555".parse().unwrap());
    block.extend([0x04, 0, 2, b'h', b'c']);
    for header in [v2_header(0x20, 0x11, &[]), v2_header(0x20, 0x11, &block)] {
        let mut s = connect(server.addr);
        let me = s.local_addr().unwrap();
        s.write_all(&header).unwrap();
        s.write_all(b"ping").unwrap();
        expect(&mut s, b"ping");
        drop(s);
        let line = access_line(&mut server, &me.to_string());
        assert!(line.contains("bytes_in=4 bytes_out=4"), "{line}");
    }
    let line = server.wait_for_log_where("stats:", |l| {
        stat(l, "total") == 2 && stat(l, "active") == 0
    });
    assert!(!line.contains("proxy_errors"), "{line}");
    assert!(server.log_lines("192.0.2.7").is_empty());
    // The check itself: the header, then the close, and not a byte of its
    // own. A check, not a client (issue 21).
    let mut s = connect(server.addr);
    s.write_all(&v2_local()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = read_to_eof(&mut s);
    let line = server.wait_for_log("end=check");
    assert!(line.contains(" bytes_in=0 bytes_out=0 "), "{line}");
    server.wait_stats(&[("total", 2), ("checks", 1), ("active", 0)]);
}

#[test]
fn a_fin_that_came_with_the_header_is_not_lost() {
    // Header, data and FIN, all before the server reads: it must answer
    // and close, not wait for an edge that already came.
    let server = Server::start(&["echo", "--proxy-protocol", "--idle-timeout", "20"]);
    for _ in 0..10 {
        let mut s = connect(server.addr);
        s.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nbye")
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let started = Instant::now();
        let (said, _) = read_to_eof(&mut s);
        assert_eq!(said, b"bye");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the idle timeout"
        );
    }
}

#[test]
fn a_header_may_arrive_a_byte_at_a_time() {
    let server = Server::start(&["echo", "--proxy-protocol"]);
    let mut s = connect(server.addr);
    s.set_nodelay(true).unwrap();
    for b in b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n" {
        s.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    s.write_all(b"whole").unwrap();
    expect(&mut s, b"whole");
}

#[test]
fn no_header_or_a_bad_one_closes_without_a_byte_and_counts() {
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--handshake-timeout",
        "1",
        "--stats-interval",
        "0.2",
    ]);
    let bad: Vec<Vec<u8>> = vec![
        b"hello, no header\n".to_vec(),
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c".to_vec(),
        format!("PROXY TCP4 {}\r\n", "1".repeat(120)).into_bytes(),
        b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\nbare LF".to_vec(),
    ];
    for b in &bad {
        let mut s = connect(server.addr);
        s.write_all(b).unwrap();
        let (said, _) = read_to_eof(&mut s);
        assert!(
            said.is_empty(),
            "{:?} got {said:?}",
            String::from_utf8_lossy(b)
        );
    }
    // A header that never completes: closed at --handshake-timeout.
    let mut slow = connect(server.addr);
    slow.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    let started = Instant::now();
    let (said, _) = read_to_eof(&mut slow);
    assert!(said.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A health check that connects and closes is nobody's error.
    for _ in 0..3 {
        let s = connect(server.addr);
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    // Then one client with a good header, served and gone: the only one
    // counted as accepted (`total`), since none of the others was let in.
    let mut good = connect(server.addr);
    good.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nbye")
        .unwrap();
    expect(&mut good, b"bye");
    drop(good);
    let line = server.wait_stats(&[("total", 1), ("active", 0)]);
    assert_eq!(line.get("proxy_errors"), 6, "{line}");
}

/// Issue 21: `end=proxy_error` says why in its access line's `error=`: a
/// bad header, one cut short by the client's FIN, one not whole in time.
#[test]
fn a_proxy_error_says_why_in_the_access_log() {
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--access-log",
        "--handshake-timeout",
        "0.5",
    ]);
    let mut bad = connect(server.addr);
    bad.write_all(b"hello, no header\n").unwrap();
    assert!(read_to_eof(&mut bad).0.is_empty());
    let line = server.wait_for_log("end=proxy_error");
    assert!(line.contains(" error=\"not a PROXY"), "{line}");
    let mut cut = connect(server.addr);
    cut.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut cut).0.is_empty());
    let line = server.wait_for_log_where("end=proxy_error", |l| l.contains("cut short"));
    assert!(
        line.ends_with(r#"error="the client closed with its PROXY header cut short""#),
        "{line}"
    );
    let mut slow = connect(server.addr);
    slow.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    assert!(read_to_eof(&mut slow).0.is_empty());
    let line = server.wait_for_log_where("end=proxy_error", |l| l.contains("in time"));
    assert!(
        line.ends_with(r#"error="no whole PROXY header in time (--handshake-timeout)""#),
        "{line}"
    );
    assert_eq!(server.log_lines("end=proxy_error").len(), 3);
}

#[test]
fn only_trusted_peers_may_send_a_header() {
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--proxy-from",
        "10.0.0.0/8",
        "--stats-interval",
        "0.2",
    ]);
    let mut s = connect(server.addr);
    s.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nhi")
        .unwrap();
    let (said, _) = read_to_eof(&mut s);
    assert!(said.is_empty());
    server.wait_stats(&[("denied", 1)]);
    let server = Server::start(&["echo", "--proxy-protocol", "--proxy-from", "127.0.0.0/8"]);
    let mut s = connect(server.addr);
    s.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nhi")
        .unwrap();
    expect(&mut s, b"hi");
}

#[test]
fn allow_and_deny_refuse_at_accept_quietly() {
    // Denied: closed before a byte, counted, and only a debug line.
    let mut server = Server::start(&["echo", "--deny", "127.0.0.0/8", "--stats-interval", "0.2"]);
    for _ in 0..20 {
        let mut s = connect(server.addr);
        let (said, _) = read_to_eof(&mut s);
        assert!(said.is_empty());
    }
    server.wait_stats(&[("denied", 20)]);
    assert!(
        server
            .log_lines("denied")
            .iter()
            .all(|l| l.contains("stats:")),
        "an info line per refusal"
    );
    // Not in any --allow.
    let server = Server::start(&["echo", "--allow", "10.0.0.0/8"]);
    let mut s = connect(server.addr);
    assert!(read_to_eof(&mut s).0.is_empty());
    // In one: served.
    let server = Server::start(&["echo", "--allow", "10.0.0.0/8", "--allow", "127.0.0.1"]);
    let mut s = connect(server.addr);
    s.write_all(b"in").unwrap();
    expect(&mut s, b"in");
}

#[test]
fn ipv6_and_mapped_addresses_are_matched() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip::skip("no IPv6 loopback (::1) here");
        return;
    }
    let server = Server::start(&["echo", "--listen", "[::1]:0", "--deny", "::1"]);
    let mut s = connect(server.addr);
    assert!(read_to_eof(&mut s).0.is_empty());
    // A dual-stack listener (`:PORT`, every address) sees 127.0.0.1 as
    // ::ffff:127.0.0.1: matched as IPv4.
    let server = Server::start(&["echo", "--listen", ":0", "--deny", "127.0.0.1"]);
    let port = server.addr.port();
    let mut s = connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert!(
        read_to_eof(&mut s).0.is_empty(),
        "mapped address not denied"
    );
    let mut s = connect(format!("[::1]:{port}").parse().unwrap());
    s.write_all(b"v6").unwrap();
    expect(&mut s, b"v6");
}

/// Issue 21: the access log writes an IPv4 client of a dual-stack listener
/// (`:PORT`) as IPv4 (`127.0.0.1:PORT`, not `[::ffff:127.0.0.1]:PORT`), as
/// allow and deny already match it; and so an IPv4-mapped client a PROXY
/// header names.
#[test]
fn the_access_log_writes_mapped_addresses_as_ipv4() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip::skip("no IPv6 loopback (::1) here");
        return;
    }
    let mut server = Server::start(&["echo", "--listen", ":0", "--access-log"]);
    let port = server.addr.port();
    let mut s = connect(format!("127.0.0.1:{port}").parse().unwrap());
    let me = s.local_addr().unwrap();
    s.write_all(b"v4").unwrap();
    expect(&mut s, b"v4");
    drop(s);
    let line = server.wait_for_log("access conn=");
    assert!(line.contains(&format!(" peer={me} ")), "{line}");
    let mut server = Server::start(&["echo", "--listen", ":0", "--proxy-protocol", "--access-log"]);
    let mut s = connect(format!("[::1]:{}", server.addr.port()).parse().unwrap());
    s.write_all(b"PROXY TCP6 ::ffff:192.0.2.7 ::1 5555 80\r\nhi")
        .unwrap();
    expect(&mut s, b"hi");
    drop(s);
    let line = server.wait_for_log("access conn=");
    assert!(line.contains(" peer=192.0.2.7:5555 "), "{line}");
}

#[test]
fn the_limit_per_address_counts_the_client_behind_the_header() {
    let mut server = Server::start(&[
        "echo",
        "--max-per-ip",
        "2",
        "--workers",
        "3",
        "--stats-interval",
        "0.2",
    ]);
    let mut kept: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = connect(server.addr);
            s.write_all(format!("{i}").as_bytes()).unwrap();
            expect(&mut s, format!("{i}").as_bytes());
            s
        })
        .collect();
    // Whichever worker takes it, the third from 127.0.0.1 is one too many.
    let mut third = connect(server.addr);
    let (said, _) = read_to_eof(&mut third);
    assert_eq!(
        said,
        b"Too many connections from your address. Try again later.\n"
    );
    server.wait_stats(&[("per_ip_rejected", 1)]);
    drop(kept.pop());
    // The server has counted the close, and with it the address's slot
    // (only after the refusal was active 1).
    server.wait_stats(&[("active", 1), ("per_ip_rejected", 1)]);
    let mut again = connect(server.addr);
    again.write_all(b"ok").unwrap();
    expect(&mut again, b"ok");

    // Behind a balancer, the header's address is what is counted.
    let server = Server::start(&["echo", "--proxy-protocol", "--max-per-ip", "1"]);
    let mut a = connect(server.addr);
    a.write_all(b"PROXY TCP4 192.0.2.1 10.0.0.1 1 80\r\na")
        .unwrap();
    expect(&mut a, b"a");
    let mut b = connect(server.addr);
    b.write_all(b"PROXY TCP4 192.0.2.2 10.0.0.1 1 80\r\nb")
        .unwrap();
    expect(&mut b, b"b");
    let mut c = connect(server.addr);
    c.write_all(b"PROXY TCP4 192.0.2.1 10.0.0.1 2 80\r\nc")
        .unwrap();
    let (said, _) = read_to_eof(&mut c);
    assert_eq!(
        said,
        b"Too many connections from your address. Try again later.\n"
    );
}

#[test]
fn bad_edge_arguments_exit_2() {
    for (args, needle) in [
        (vec!["echo", "--allow", "10.0.0.0/33"], "--allow"),
        (vec!["echo", "--deny", "nonsense"], "--deny"),
        (
            vec!["echo", "--proxy-from", "10.0.0.0/8"],
            "needs --proxy-protocol",
        ),
        (vec!["echo", "--max-per-ip", "-1"], "--max-per-ip"),
    ] {
        let out = binary().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A real HAProxy in front of `backend`, started from a configuration
/// written for the test; `None` (with one line saying why) where haproxy is
/// not installed.
struct Haproxy {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Haproxy {
    fn start(backend: SocketAddr, send_proxy: &str) -> Option<Haproxy> {
        if !skip::have("haproxy", "-v", "haproxy") {
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("monoloop-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 100\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend in\n  bind 127.0.0.1:{port}\n  default_backend out\n\
                 backend out\n  server m {backend} {send_proxy}\n"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let ha = Haproxy { child, port, dir };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            thread::sleep(Duration::from_millis(20));
        }
        Some(ha)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn behind_a_real_haproxy_the_log_names_the_real_client() {
    for send_proxy in ["send-proxy", "send-proxy-v2"] {
        let mut server = Server::start(&["echo", "--proxy-protocol", "--access-log"]);
        let Some(ha) = Haproxy::start(server.addr, send_proxy) else {
            return;
        };
        // Connect from a loopback address other than the balancer's own.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.3:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket
            .connect(&SocketAddr::from(([127, 0, 0, 1], ha.port)).into())
            .unwrap();
        let mut s: TcpStream = socket.into();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(b"through haproxy").unwrap();
        // Half-close, as `nc -N` does: the FIN crosses HAProxy too, and the
        // server answers and closes rather than waiting for a timeout.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let started = Instant::now();
        let (got, _) = read_to_eof(&mut s);
        assert_eq!(got, b"through haproxy");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{send_proxy}: no close"
        );
        drop(s);
        let line = access_line(&mut server, &me.to_string());
        assert!(line.contains("peer=127.0.0.3:"), "{send_proxy}: {line}");
    }
}

/// Issue 21: HAProxy's health checks as docs/deploy/haproxy.cfg sets them
/// up (a connect, a PROXY v2 LOCAL header with `check-send-proxy`, then a
/// reset) are logged `end=check` and counted in `checks`, never as
/// clients: over a stretch of checks every 100 ms and no client, `total`
/// does not move. So on a mode that speaks first (chat's prompt goes out
/// as soon as the header is read): the check resets the connection
/// without reading it. (A plain `check`, without `check-send-proxy`,
/// never reaches the server: HAProxy resets it before its handshake's
/// last ACK.)
#[test]
fn a_real_haproxys_health_checks_are_checks_not_clients() {
    for mode in ["echo", "chat"] {
        let args = [
            mode,
            "--proxy-protocol",
            "--access-log",
            "--stats-interval",
            "0.1",
        ];
        let mut server = Server::start(&args);
        let server_line = "send-proxy-v2 check check-send-proxy inter 100ms";
        let Some(_ha) = Haproxy::start(server.addr, server_line) else {
            return;
        };
        // `Haproxy::start` connected through the balancer once, to see it
        // listen: a client of its own, which may have read chat's prompt.
        // From a baseline taken after it, checks alone.
        let base = server.wait_stats_where("checks >= 2", |s| s.get("checks") >= 2);
        let (total, checks) = (base.get("total"), base.get("checks"));
        let line = server.wait_stats_where("5 more checks", |s| s.get("checks") >= checks + 5);
        assert_eq!(line.get("total"), total, "{mode}: {line}");
        let lines = server.log_lines("access conn=");
        let clients: Vec<_> = lines.iter().filter(|l| !l.contains(" end=check")).collect();
        assert!(clients.len() as u64 <= total, "{mode}: {clients:#?}");
    }
}

/// A client the limit turned away is counted there (`rejected`), never as
/// a health check too, however it goes: here a balancer's check that
/// arrives while the server is full, its header then a reset.
#[test]
fn a_check_turned_away_by_a_full_server_is_a_rejection_only() {
    let mut server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--max-connections",
        "1",
        "--stats-interval",
        "0.1",
    ]);
    let mut kept = connect(server.addr);
    kept.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nin")
        .unwrap();
    expect(&mut kept, b"in");
    for _ in 0..5 {
        let check = connect(server.addr);
        (&check).write_all(&v2_local()).unwrap();
        socket2::SockRef::from(&check)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(check);
    }
    let line = server.wait_stats(&[("rejected", 5)]);
    assert_eq!(line.get("checks"), 0, "{line}");
    assert_eq!(line.get("total"), 1, "{line}");
}

#[test]
fn the_idle_timeout_starts_when_the_header_is_done() {
    // The header's deadline (8 s) must not stand in for the idle one (1 s).
    let server = Server::start(&[
        "echo",
        "--proxy-protocol",
        "--idle-timeout",
        "1",
        "--handshake-timeout",
        "8",
    ]);
    let mut s = connect(server.addr);
    s.write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n")
        .unwrap();
    let started = Instant::now();
    let (said, _) = read_to_eof(&mut s);
    assert_eq!(said, b"Connection timeout\n");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}
