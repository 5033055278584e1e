//! Attacks on the server's TLS, each while a TLS bystander is served: half
//! ClientHellos that hold every slot, garbage records before and after a
//! handshake, floods of empty records and of key updates after one, and
//! certificate reloads while many clients stream.
//!
//! The floods and the loop's bound. A record that carries no plaintext (an
//! empty one, a KeyUpdate) makes `Connection::read_tls` read on, at most
//! four socket reads per visit (`TLS_READS_PER_CALL`, src/connection/tls.rs),
//! and at most 64 records a read, each charged to the turn's budget
//! (src/tls/session.rs); then the connection goes back to the ready queue
//! (to its front a few times: `carry` in src/event_loop/visit.rs), behind
//! the turn's events. rustls itself
//! refuses a peer's 33rd empty record in a row, and its 33rd key update
//! with no application data between; so the worst a peer can do is 32 of
//! either, then one byte of data, for ever: that one is kept to its share,
//! the others are closed. Empty records are built here from the session's
//! extracted traffic keys (`enable_secret_extraction`), because rustls
//! never sends one; key updates come from rustls's `refresh_traffic_keys`
//! (a raw sender cannot make them: after a KeyUpdate the next keys come
//! from the traffic secret, which extraction does not give).
//!
//! Earlier tests of the same attacks, without a bystander:
//! tests/tls_server.rs (the handshake timeout on a silent client, plain
//! text on the port, clients that cannot write the log, handshake failures
//! said once a minute, half handshakes counted) and tests/tls_reload.rs
//! (one reload, a broken one, under workers).

#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::crypto::cipher::{MessageEncrypter, OutboundChunks, OutboundPlainMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::ServerName;
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite};

use crate::bystander::Bystander;
use crate::common::tls::*;
use crate::common::*;

/// How long the bystander may wait for any one answer while an attack runs.
const BOUND: Duration = Duration::from_secs(2);

/// A TLS bystander: one session, a line every 20 ms, each echoed in full.
fn tls_bystander(pki: &Pki, addr: std::net::SocketAddr) -> Bystander {
    let mut s = tls_connect(addr, client_config(pki, false, &[]));
    s.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The handshake, before the attack starts.
    s.write_all(b"hello\n").unwrap();
    tls_expect(&mut s, b"hello\n");
    Bystander::echo_over(s)
}

/// The ClientHello rustls sends first, as bytes.
fn real_client_hello(pki: &Pki) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(pki, false, &[]), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Two waves of half ClientHellos, as many as the free slots: while they
/// wait, a newcomer is told the server is full; each is closed by the
/// handshake timeout (3 s), counted as a TLS failure, and its slot serves
/// a real client afterwards. The bystander is served throughout, and the
/// log says each kind of trouble at most once.
#[test]
fn half_client_hellos_up_to_the_limit_are_closed_by_the_handshake_timeout() {
    const LIMIT: usize = 20;
    let pki = Pki::new("adv-halfhello");
    let mut server = tls_server(
        &pki,
        &["echo", "--max-connections", "20", "--stats-interval", "0.2"],
        &["--handshake-timeout", "3"],
    );
    let bystander = tls_bystander(&pki, server.addr);
    let hello = real_client_hello(&pki);
    let half = &hello[..hello.len() / 2];
    let mut told_full = 0;
    for wave in 0..2u64 {
        let started = Instant::now();
        let mut stalled: Vec<TcpStream> = (1..LIMIT)
            .map(|_| {
                let mut s = connect(server.addr);
                s.write_all(half).unwrap();
                s
            })
            .collect();
        let failures = (wave + 1) * (LIMIT as u64 - 1);
        server.wait_stats(&[("active", LIMIT as u64)]);
        // Every slot is taken: a newcomer is told so, through TLS. (Unless
        // the machine is so slow that the server came to it only after the
        // stalled ones were closed: then it is served, which it can tell
        // from its silence.)
        let mut late = tls_connect(server.addr, client_config(&pki, false, &[]));
        late.sock
            .set_read_timeout(Some(Duration::from_secs(4)))
            .unwrap();
        let mut first = [0u8; 64];
        match late.read(&mut first) {
            Ok(n) => {
                let mut said = first[..n].to_vec();
                said.extend(tls_read_to_end(&mut late).0);
                assert_eq!(said, b"Server is full. Try again later.\n", "wave {wave}");
                told_full += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                late.write_all(b"late\n").unwrap();
                tls_expect(&mut late, b"late\n");
                eprintln!("wave {wave}: the newcomer came after the stalled ones left");
            }
            Err(e) => panic!("wave {wave}: the newcomer's read failed: {e}"),
        }
        drop(late);
        for (i, s) in stalled.iter_mut().enumerate() {
            let (said, _) = read_to_eof(s);
            let took = started.elapsed();
            // At most an alert, never a ServerHello. Closed by the 3 s
            // handshake timeout, not before; the upper bound is loose, as
            // `took` counts from the wave's start and includes the
            // newcomer's wait on a loaded machine.
            assert!(said.is_empty() || said[0] == 21, "wave {wave}: {said:?}");
            assert!(
                took >= Duration::from_millis(2800) && took < Duration::from_secs(15),
                "wave {wave}: stalled client {i} was closed after {took:?}"
            );
        }
        let line = server.wait_stats(&[("active", 1), ("tls_failures", failures)]);
        eprintln!("wave {wave}: {line}");
        // The slots serve real clients again.
        let mut real: Vec<TlsStream> = (1..LIMIT)
            .map(|_| tls_connect(server.addr, client_config(&pki, false, &[])))
            .collect();
        for (i, s) in real.iter_mut().enumerate() {
            s.write_all(format!("real {i}\n").as_bytes()).unwrap();
            tls_expect(s, format!("real {i}\n").as_bytes());
        }
        // They leave before the next wave comes.
        drop(real);
        server.wait_stats_where("the real clients gone", |s| {
            s.get("active") == 1 && s.get("total") == (wave + 1) * 2 * (LIMIT as u64 - 1) + 1
        });
    }
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}, {told_full} of 2 newcomers told the server was full");
    let loud = server.loud_lines();
    let handshakes = loud.iter().filter(|l| l.contains("TLS handshake failed"));
    assert!(handshakes.count() <= 1, "{loud:#?}");
    let full = loud.iter().filter(|l| l.contains("server full"));
    assert!(full.count() <= 1, "{loud:#?}");
    assert!(loud.len() <= 2, "{loud:#?}");
}

/// A small xorshift generator: the same garbage every run.
struct Noise(u64);

impl Noise {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }

    /// A record header (`typ`, TLS 1.2, `len`) and `body` random bytes.
    fn record(&mut self, typ: u8, len: u16, body: usize) -> Vec<u8> {
        let mut r = vec![typ, 3, 3];
        r.extend(len.to_be_bytes());
        r.extend(self.bytes(body));
        r
    }
}

/// Garbage before a handshake (random bytes under a handshake header, a
/// content type that does not exist, a length past any record's, no
/// header at all) and after one (records that cannot decrypt, the unknown
/// type, the oversized length, a plaintext handshake record): every such
/// connection is closed, the bystander is served, nothing is left open,
/// and the log says no more than one handshake failure a minute.
#[test]
fn garbage_records_before_and_after_a_handshake_are_closed_quietly() {
    const EACH: usize = 25;
    let pki = Pki::new("adv-garbage");
    let mut server = tls_server(
        &pki,
        &["echo", "--stats-interval", "0.2", "--idle-timeout", "3"],
        &["--handshake-timeout", "3"],
    );
    let bystander = tls_bystander(&pki, server.addr);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    type Garbage = fn(&mut Noise) -> Vec<u8>;
    let kinds: [(&str, Garbage); 4] = [
        ("random handshake", |n| n.record(0x16, 200, 200)),
        ("unknown type", |n| n.record(0x42, 50, 50)),
        ("oversized", |n| n.record(0x17, 0xffff, 100)),
        ("no header", |n| n.bytes(300)),
    ];
    let after: [(&str, Garbage); 4] = [
        ("undecryptable", |n| n.record(0x17, 64, 64)),
        ("unknown type", |n| n.record(0x42, 50, 50)),
        ("oversized", |n| n.record(0x17, 0xffff, 100)),
        ("plain handshake", |n| n.record(0x16, 40, 40)),
    ];
    let mut victims: Vec<(String, TcpStream)> = Vec::new();
    for (what, make) in kinds {
        for _ in 0..EACH {
            let mut s = connect(server.addr);
            s.write_all(&make(&mut noise)).unwrap();
            victims.push((format!("before a handshake: {what}"), s));
        }
    }
    for (what, make) in after {
        for _ in 0..EACH {
            let mut good = tls_connect(server.addr, client_config(&pki, false, &[]));
            good.write_all(b"ok").unwrap();
            tls_expect(&mut good, b"ok");
            let mut sock = good.sock.try_clone().unwrap();
            // (The session is dropped without a close_notify.)
            drop(good);
            sock.write_all(&make(&mut noise)).unwrap();
            victims.push((format!("after a handshake: {what}"), sock));
        }
    }
    for (what, s) in &mut victims {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: not closed: {e} after {} bytes", rest.len()),
        }
    }
    // Every victim was accepted and has ended; the failed handshakes are
    // counted (the failures after one are the peer's errors, at debug).
    let line = server.wait_stats(&[("active", 1), ("total", 8 * EACH as u64 + 1)]);
    eprintln!("{line}");
    assert_eq!(line.get("tls_failures"), 4 * EACH as u64, "{line}");
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    let loud = server.loud_lines();
    assert!(loud.len() <= 1, "{loud:#?}");
    assert!(
        loud.iter().all(|l| l.contains("TLS handshake failed")),
        "{loud:#?}"
    );
}

/// A session whose keys the test holds: it writes records rustls would
/// never send (empty ones) straight to the socket.
struct RawSender {
    sock: TcpStream,
    encrypter: Box<dyn MessageEncrypter>,
    seq: u64,
}

impl RawSender {
    /// Finishes a handshake with an echo, then takes the session's keys.
    fn connect(pki: &Pki, addr: std::net::SocketAddr) -> RawSender {
        let mut config = (*client_config(pki, false, &[])).clone();
        config.enable_secret_extraction = true;
        let mut s = tls_connect(addr, Arc::new(config));
        s.write_all(b"keys\n").unwrap();
        tls_expect(&mut s, b"keys\n");
        let Some(SupportedCipherSuite::Tls13(suite)) = s.conn.negotiated_cipher_suite() else {
            panic!("not TLS 1.3");
        };
        let rustls::StreamOwned { conn, sock } = s;
        let (seq, secrets) = conn.dangerous_extract_secrets().unwrap().tx;
        let (key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
            _ => panic!("a cipher suite this test does not know"),
        };
        RawSender {
            sock,
            encrypter: suite.aead_alg.encrypter(key, iv),
            seq,
        }
    }

    /// One application-data record holding `payload` (empty or not).
    fn record(&mut self, payload: &[u8]) -> Vec<u8> {
        let plain = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(payload),
        };
        let sealed = self.encrypter.encrypt(plain, self.seq).unwrap();
        self.seq += 1;
        sealed.encode()
    }
}

/// Reads and discards whatever `sock` receives until it ends (or 20 s);
/// counts the bytes.
fn drain(mut sock: TcpStream, into: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = sock.read(&mut buf) {
            into.fetch_add(n as u64, Ordering::SeqCst);
        }
    })
}

/// True once `sock` has been closed by the server (EOF or reset), waiting
/// at most `within`.
fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + within;
    while Instant::now() < until {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

/// How long the bystander may wait for one answer while a flood that the
/// server took `took` to read ran: a quarter of `took`, or [`FLOOD_FLOOR`]
/// if that is longer. A server that read the flood in one go, or in one
/// turn (a turn lasts until it has moved its budget, and a flood of tiny
/// records once moved almost none: the defect this catches), would keep
/// the bystander waiting for nearly all of `took`; one that keeps it to
/// its share answers the bystander after a visit or two to the flood (a
/// visit takes at most a few hundred records, each charged to the turn as
/// 512 bytes). Relative, because a visit's cost depends on the build and
/// on the machine's load, and so does `took`; each flood is sized to take
/// the unoptimised build about a second on an idle machine, where the
/// bystander's slowest answer is a few milliseconds (empty records) to
/// some 15 ms (key updates).
fn flood_bound(took: Duration) -> Duration {
    FLOOD_FLOOR.max(took / 4)
}

/// The least [`flood_bound`] allows: a loaded machine's scheduling
/// delays, far below a flood's time.
const FLOOD_FLOOR: Duration = Duration::from_millis(150);

/// Empty records after a handshake. Forty in a row: closed (rustls allows
/// 32). Thirty-two, then one byte, 12,000 times, as fast as the socket
/// takes them: the connection is kept, and served (its bytes come back),
/// but only its share: the bystander is answered within the bound all the
/// while.
#[test]
fn a_flood_of_empty_records_is_closed_or_kept_to_its_share() {
    // About 8 MiB: a second of the unoptimised server's work.
    const BATCHES: u64 = 12_000;
    let pki = Pki::new("adv-empty");
    let mut server = tls_server(&pki, &["echo", "--stats-interval", "0.2"], &[]);

    let mut rude = RawSender::connect(&pki, server.addr);
    let forty: Vec<u8> = (0..40).flat_map(|_| rude.record(&[])).collect();
    rude.sock.write_all(&forty).unwrap();
    assert!(
        closed_within(&mut rude.sock, Duration::from_secs(5)),
        "forty empty records in a row were accepted"
    );

    // The flood is sealed before it starts, so that the test's own
    // encryption (unoptimised, in this process) does not compete with the
    // bystander for the CPU while it runs: the server's cost is what is
    // measured.
    let mut sly = RawSender::connect(&pki, server.addr);
    let mut flood = Vec::new();
    for _ in 0..BATCHES {
        for _ in 0..32 {
            flood.extend(sly.record(&[]));
        }
        flood.extend(sly.record(b"."));
    }
    let echoed = Arc::new(AtomicU64::new(0));
    let drainer = drain(sly.sock.try_clone().unwrap(), echoed.clone());
    let bystander = tls_bystander(&pki, server.addr);
    let started = Instant::now();
    for (k, piece) in flood.chunks(1 << 16).enumerate() {
        sly.sock
            .write_all(piece)
            .unwrap_or_else(|e| panic!("the flood was cut after {k} pieces of 64 KiB: {e}"));
    }
    // Every byte of it was read: the sly sender is served, not cut.
    let line = server.wait_stats_where("every byte of the flood read", |s| {
        s.get("bytes_in") >= BATCHES + 2 * 5 + 6
    });
    let took = started.elapsed();
    eprintln!(
        "{BATCHES} batches of 32 empty records and a byte ({} KiB) taken in {took:?}",
        flood.len() / 1024,
    );
    eprintln!("{line}");
    let seen = bystander.finish(flood_bound(took));
    eprintln!("bystander: {seen:?}");
    eventually("the sly sender's bytes echoed", || {
        echoed.load(Ordering::SeqCst) >= BATCHES
    });
    sly.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drainer.join().unwrap();
    assert!(server.loud_lines().is_empty(), "{:#?}", server.loud_lines());
}

/// Key updates after a handshake, from rustls's client. Forty with no data
/// between: closed (rustls allows 32). Thirty-two, then a byte, 2,000 times,
/// written as fast as the socket takes them (the server's answers read and
/// thrown away): kept, its bytes read and echoed, and the bystander is
/// answered within the bound all the while.
#[test]
fn a_flood_of_key_updates_is_closed_or_kept_to_its_share() {
    const BATCHES: u64 = 2_000;
    let pki = Pki::new("adv-keyupdate");
    let mut server = tls_server(&pki, &["echo", "--stats-interval", "0.2"], &[]);

    let mut rude = tls_connect(server.addr, client_config(&pki, false, &[]));
    rude.write_all(b"hi").unwrap();
    tls_expect(&mut rude, b"hi");
    for _ in 0..40 {
        rude.conn.refresh_traffic_keys().unwrap();
    }
    rude.flush().unwrap();
    let mut sock = rude.sock.try_clone().unwrap();
    assert!(
        closed_within(&mut sock, Duration::from_secs(5)),
        "forty key updates in a row were accepted"
    );

    // Made before the flood starts (as the empty records are), so that the
    // test's own key derivations do not compete with the bystander.
    let mut sly = tls_connect(server.addr, client_config(&pki, false, &[]));
    sly.write_all(b"hi").unwrap();
    tls_expect(&mut sly, b"hi");
    let rustls::StreamOwned { mut conn, mut sock } = sly;
    let mut flood = Vec::new();
    for _ in 0..BATCHES {
        for _ in 0..32 {
            conn.refresh_traffic_keys().unwrap();
        }
        conn.writer().write_all(b".").unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut flood).unwrap();
        }
    }
    let echoed = Arc::new(AtomicU64::new(0));
    let drainer = drain(sock.try_clone().unwrap(), echoed.clone());
    let bystander = tls_bystander(&pki, server.addr);
    let started = Instant::now();
    for (k, piece) in flood.chunks(1 << 16).enumerate() {
        sock.write_all(piece)
            .unwrap_or_else(|e| panic!("the flood was cut after {k} pieces of 64 KiB: {e}"));
    }
    let line = server.wait_stats_where("every byte of the flood read", |s| {
        s.get("bytes_in") >= BATCHES + 2 + 2 + 6
    });
    let took = started.elapsed();
    eprintln!(
        "{} key updates ({} KiB) taken in {took:?}",
        BATCHES * 32,
        flood.len() / 1024,
    );
    eprintln!("{line}");
    let seen = bystander.finish(flood_bound(took));
    eprintln!("bystander: {seen:?}");
    eventually("the sly sender's bytes echoed", || {
        echoed.load(Ordering::SeqCst) > 0
    });
    sock.shutdown(std::net::Shutdown::Both).unwrap();
    drainer.join().unwrap();
    assert!(server.loud_lines().is_empty(), "{:#?}", server.loud_lines());
}

/// One streaming client: writes 16 KiB of the pattern at a time and reads
/// it back, until `stop`; returns the bytes echoed, every one checked.
fn stream_echo(mut s: TlsStream, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        let mut got = vec![0u8; 16384];
        let mut off = 0u64;
        while !stop.load(Ordering::SeqCst) {
            fill_pattern(&mut buf, off);
            s.write_all(&buf)
                .unwrap_or_else(|e| panic!("write at {off}: {e}"));
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("read at {off}: {e}"));
            assert!(got == buf, "bytes at {off} differ");
            off += buf.len() as u64;
        }
        off
    })
}

/// Five reloads (the certificate rewritten between each, one and then the
/// other) while 16 TLS clients stream echo data: every byte comes back
/// exact, no client is dropped, each reload is logged once, and a new
/// handshake gets the certificate of the last.
#[test]
fn certificate_reloads_under_load_drop_no_client_and_log_once_each() {
    const CLIENTS: usize = 16;
    const RELOADS: usize = 5;
    let pki = Pki::new("adv-reload");
    let (live, live_key) = pki.live_files();
    let mut server = Server::start(&[
        "echo",
        "--tls-cert",
        &live,
        "--tls-key",
        &live_key,
        "--stats-interval",
        "0.2",
    ]);
    let bystander = tls_bystander(&pki, server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let s = tls_connect(server.addr, client_config(&pki, false, &[]));
            stream_echo(s, stop.clone())
        })
        .collect();
    server.wait_stats(&[("active", CLIENTS as u64 + 1)]);
    for i in 1..=RELOADS {
        let name = if i % 2 == 1 { "server2" } else { "server" };
        std::fs::copy(pki.path(&format!("{name}.pem")), &live).unwrap();
        std::fs::copy(pki.path(&format!("{name}-key.pem")), &live_key).unwrap();
        server.signal(libc::SIGHUP);
        eventually("the reload's line", || {
            server.log_lines("TLS reloaded").len() == i
        });
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for (i, t) in streams.into_iter().enumerate() {
        let echoed = t
            .join()
            .unwrap_or_else(|_| panic!("streaming client {i} failed"));
        assert!(echoed > 0, "client {i} echoed nothing");
    }
    let seen = bystander.finish(BOUND);
    eprintln!("bystander: {seen:?}");
    // Nobody was dropped: every connection ended as its client left.
    let line = server.wait_stats(&[("active", 0), ("total", CLIENTS as u64 + 1)]);
    assert_eq!(line.get("timed_out"), 0, "{line}");
    assert_eq!(line.get("tls_failures"), 0, "{line}");
    let mut fresh = tls_connect(server.addr, client_config(&pki, false, &[]));
    fresh.write_all(b"new").unwrap();
    tls_expect(&mut fresh, b"new");
    let presented = fresh.conn.peer_certificates().unwrap()[0].to_vec();
    let want = rustls::pki_types::CertificateDer::pem_file_iter(pki.path("server2.pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(presented, want.to_vec(), "the last reload's certificate");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(server.log_lines("TLS reloaded").len(), RELOADS);
    let loud = server.loud_lines();
    assert!(loud.iter().all(|l| l.contains("TLS reloaded")), "{loud:#?}");
}
