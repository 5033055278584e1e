//! Chat injection (issue 24): what one user types, and what every other
//! user then receives. Escape sequences, bidi overrides, zero-width
//! characters, a CR in the middle of a line, lines dressed as the server's
//! own messages or as another user's, names dressed as others' (case
//! variants, look-alikes, invisible characters) at the prompt and by
//! `/nick`, `/msg` with injected bytes, lines past `--max-line`, and a
//! flood from one user; with one worker, and across two (the hub and the
//! shared names registry).
//!
//! The containment asserted: another user receives exactly the sanitised
//! form docs/protocols.md promises ("What is relayed"), always after the
//! sender's own name, so no line can pass for the server's or for another
//! user's; a refused name changes nothing anyone sees. Meanwhile a pair of
//! bystanders (one `/msg`s the other every 20 ms) keep being served within
//! a bound, and no line that reaches them claims to come from one of them
//! unless it did. (tests/chat.rs has the regression tests of issue 9's
//! spoofing, without bystanders or floods.)

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::bystander::Bystander;
use crate::common::*;

/// How long a bystander's `/msg` may take to arrive, on a loaded
/// two-core machine with a debug build, a flood beside it.
const BOUND: Duration = Duration::from_secs(2);
/// The rule, then the prompt again: the prompt's reply to a bad name.
const INVALID: &[u8] = b"Invalid username: use 1-32 letters, digits, _ - . Enter your username: ";
/// `/nick`'s reply to a bad name.
const INVALID_NICK: &[u8] = b"ERROR: invalid username: use 1-32 letters, digits, _ - .\n";
const TAKEN: &[u8] = b"Username taken. Enter your username: ";

/// One chat user: a line reader and a writer on one connection.
struct Chatter {
    name: String,
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Chatter {
    /// Connects and stays at the prompt.
    fn connect(addr: SocketAddr, name: &str) -> Chatter {
        let w = connect(addr);
        w.set_nodelay(true).unwrap();
        let mut c = Chatter {
            name: name.to_string(),
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        c.expect(b"Enter your username: ");
        c
    }

    /// Connects and takes `name`.
    fn join(addr: SocketAddr, name: &str) -> Chatter {
        let mut c = Chatter::connect(addr, name);
        c.say(format!("{name}\n"));
        c.expect(b"Welcome to the chat!\n");
        c
    }

    fn say(&mut self, bytes: impl AsRef<[u8]>) {
        self.w.write_all(bytes.as_ref()).unwrap();
    }

    #[track_caller]
    fn expect(&mut self, expected: &[u8]) {
        let step = format!("{} expects {}", self.name, client::shown(expected));
        let reader = client::Reader::of(&self.w, &step);
        client::expect_exactly(&mut self.r, expected, &reader);
    }

    /// Asserts that nothing arrives for 300 ms.
    #[track_caller]
    fn silence(&mut self) {
        self.w
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 256];
        let got = self.r.read(&mut buf);
        self.w.set_read_timeout(Some(PATIENCE)).unwrap();
        match got {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("{}: the server closed", self.name),
            Ok(n) => panic!("{} got {}", self.name, client::shown(&buf[..n])),
            Err(e) => panic!("{}: {e}", self.name),
        }
    }
}

/// Two users, `by-a` and `by-b`: every 20 ms `by-a` sends `by-b` a private
/// message, which must arrive whole, in order, and be the only line `by-b`
/// receives that claims to be from `by-a`. Everything else `by-b` gets
/// (joins, leaves, a flood) is read past, so that it cannot hold the
/// probe up.
fn chatters(addr: SocketAddr) -> (Bystander, Chatter) {
    let mut a = Chatter::join(addr, "by-a");
    let b = Chatter::join(addr, "by-b");
    a.expect(b"by-b joined the chat\n");
    b.w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut n = 0u64;
    let mut r = b.r;
    let mut w = a.w.try_clone().unwrap();
    let bystander = Bystander::start(Duration::from_millis(20), move || {
        n += 1;
        w.write_all(format!("/msg by-b probe {n}\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let expected = format!("[private] by-a: probe {n}\n");
        let mut line = String::new();
        for _ in 0..1_000_000 {
            line.clear();
            r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            if line.is_empty() {
                return Err("the server closed".into());
            }
            if line == expected {
                return Ok(());
            }
            let claims = ["by-a:", "by-a ", "by-b ", "[private] by-a:"];
            if claims.iter().any(|c| line.starts_with(c)) {
                return Err(format!("waiting for {expected:?}, got {line:?}"));
            }
        }
        Err(format!("{expected:?} never came"))
    });
    (bystander, a)
}

#[test]
fn injected_lines_reach_others_only_sanitised_and_under_their_senders_name() {
    injection(&[]);
}

/// The same across two workers: lines, private messages and renames cross
/// the hub, and names are claimed in the workers' shared registry.
#[test]
fn injection_across_workers_is_contained_the_same_way() {
    injection(&["--workers", "2"]);
}

fn injection(extra: &[&str]) {
    let server = Server::start(&[&["chat", "--max-line", "512"], extra].concat());
    let addr = server.addr;
    let mut observer = Chatter::join(addr, "observer");
    let (bystander, _by_a) = chatters(addr);
    observer.expect(b"by-a joined the chat\n");
    observer.expect(b"by-b joined the chat\n");
    let mut mallory = Chatter::join(addr, "mallory");
    observer.expect(b"mallory joined the chat\n");

    // (what mallory types, what everyone else must receive)
    let cases: Vec<(&[u8], &str)> = vec![
        (b"\x1b[2J\x1b[Hclear", "clear"),
        (
            b"\x1b]0;title\x07x\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\",
            "xlink",
        ),
        (b"\x1bPdcs\x1b\\ok\x1b7\x1bc", "ok"),
        ("\u{9b}31mred".as_bytes(), "red"),
        (b"a\rbob: forged", "abob: forged"),
        (b"\rbob: forged", "bob: forged"),
        (b"\r\rbob joined the chat", "bob joined the chat"),
        ("hi\u{2028}bob: forged".as_bytes(), "hibob: forged"),
        ("hi\u{2029}* bob joined".as_bytes(), "hi* bob joined"),
        ("\u{202e}dlrow\u{202c}".as_bytes(), "dlrow"),
        (
            "\u{2066}x\u{2069}\u{200e}\u{200f}\u{061c}\u{202a}\u{202b}\u{202d}\u{2067}\u{2068}"
                .as_bytes(),
            "x",
        ),
        (
            "b\u{200b}o\u{200c}b\u{200d}\u{2060}\u{feff}\u{180e}\u{2061}\u{2064}".as_bytes(),
            "bob",
        ),
        (b"bob joined the chat", "bob joined the chat"),
        (b"* bob joined", "* bob joined"),
        (b"[private] bob: psst", "[private] bob: psst"),
        (b"\rby-a: it is me", "by-a: it is me"),
        (b"Users online: bob", "Users online: bob"),
        (b"bob\x08\x08\x08alice: hi", "bobalice: hi"),
        (b"\x00\x01\x7f\xc2\x85z", "z"),
        (b"\xff\xfe", "\u{fffd}\u{fffd}"),
        (b"tab\there", "tab\there"),
        (b"\x1b[31m", ""),
        ("\u{202e}\u{200b}\u{2028}".as_bytes(), ""),
        (b"\x1b", ""),
    ];
    // Again and again for a second at least, so that the bystanders are
    // probed many times while it goes on, however the machine is loaded.
    let started = Instant::now();
    let rounds = (0..100).take_while(|&r| r == 0 || started.elapsed() < Duration::from_secs(1));
    for (typed, relayed) in rounds.flat_map(|_| &cases) {
        mallory.say([*typed, b"\n"].concat());
        if relayed.is_empty() {
            // Nothing left: nothing is relayed. The next line shows it.
            mallory.say("after\n");
            observer.expect(b"mallory: after\n");
        } else {
            observer.expect(format!("mallory: {relayed}\n").as_bytes());
        }
    }
    // The same, privately: the text after `/msg NAME` is sanitised as a
    // line is, and the line says who sent it.
    mallory.say(b"/msg observer \x1b[2Jhi\xe2\x80\xae\rbob: x\n");
    observer.expect(b"[private] mallory: hibob: x\n");
    mallory.say("/msg OBSERVER [private] by-a: trust me\u{2028}\n");
    observer.expect(b"[private] mallory: [private] by-a: trust me\n");
    mallory.say("/msg observer\u{200b} \x1b[0m\n");
    mallory.expect(b"ERROR: usage: /msg NAME TEXT\n");
    mallory.say("/msg ob\u{202e}server hi\n");
    observer.expect(b"[private] mallory: hi\n");

    // /nick with injected bytes: refused as the prompt would, the name
    // kept, nobody told anything.
    for bad in [
        &b"/nick bob\rx"[..],
        "/nick mal\u{202e}lory2".as_bytes(),
        "/nick mal\u{200b}lory2".as_bytes(),
        b"/nick al\x1bice",
        b"/nick \x1b[2Jeve",
        b"/nick eve\x00",
        "/nick eve\u{2028}".as_bytes(),
        "/nick \u{ff4f}bserver".as_bytes(),
        "/nick \u{43e}bserver".as_bytes(),
        b"/nick observer:",
        b"/nick [server]",
        b"/nick *",
    ] {
        mallory.say([bad, b"\n"].concat());
        mallory.expect(INVALID_NICK);
    }
    for taken in ["Observer", "OBSERVER", "By-A", "BY-b"] {
        mallory.say(format!("/nick {taken}\n"));
        mallory.expect(b"ERROR: username taken\n");
    }

    // Names at the prompt dressed as someone else's: refused, re-prompted,
    // and nobody hears of them.
    let mut impostor = Chatter::connect(addr, "impostor");
    for (name, reply) in [
        (&b"Observer"[..], TAKEN),
        (b"OBSERVER\r", TAKEN),
        (b"by-A", TAKEN),
        ("obs\u{200b}erver".as_bytes(), INVALID),
        ("\u{43e}bserver".as_bytes(), INVALID),
        ("\u{202e}revresbo".as_bytes(), INVALID),
        (b"observer ", INVALID),
        (b" observer", INVALID),
        (b"observer\x1b[0m", INVALID),
        (b"obs\rerver", INVALID),
        (b"bob joined the chat", INVALID),
        (b"mallory:", INVALID),
        (b"[private]", INVALID),
        (b"*", INVALID),
        (b"", INVALID),
    ] {
        impostor.say([name, b"\n"].concat());
        impostor.expect(reply);
    }
    impostor.say(&[b'x'; 33][..]);
    impostor.say(b"\n");
    impostor.expect(INVALID);
    // A name past --max-line: the line refused, the connection closed.
    impostor.say([&[b'o'; 600][..], b"\n"].concat());
    impostor.expect(b"ERROR: line too long\n");

    // A line past --max-line: refused, the sender closed, and not a byte
    // of it relayed.
    let mut long = Chatter::join(addr, "long");
    observer.expect(b"long joined the chat\n");
    long.say([&b"/msg observer "[..], &[b'y'; 600], b"\n"].concat());
    long.expect(b"ERROR: line too long\n");
    observer.expect(b"long left the chat\n");

    // Nobody's name changed, and the observer heard nothing more.
    observer.say("/who\n");
    observer.expect(b"Users online: by-a, by-b, mallory, observer\n");
    observer.silence();
    mallory.expect(b"long joined the chat\nlong left the chat\n");
    mallory.say("/who\n");
    mallory.expect(b"Users online: by-a, by-b, mallory, observer\n");

    let seen = bystander.finish(BOUND);
    assert!(seen.answered >= 5, "too few probes to judge: {seen:?}");
    // Nothing a user did reached the log above debug.
    let loud: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
}

/// One user floods the room with 4 MB of lines as fast as it can write:
/// every reading user gets every line, whole and in order, the sender
/// is slowed to the readers' pace instead of anyone being cut, and the
/// bystanders' private messages still arrive within the bound.
#[test]
fn a_flood_from_one_user_reaches_every_reader_whole_and_bystanders_are_served() {
    const LINES: usize = 40_000;
    let mut server = Server::start(&["chat", "--stats-interval", "0.2"]);
    let addr = server.addr;
    let mut reader = Chatter::join(addr, "reader");
    let (bystander, _by_a) = chatters(addr);
    reader.expect(b"by-a joined the chat\n");
    reader.expect(b"by-b joined the chat\n");
    let mut flooder = Chatter::join(addr, "flooder");
    reader.expect(b"flooder joined the chat\n");
    let started = Instant::now();
    let mut w = flooder.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut chunk = Vec::new();
        for i in 0..LINES {
            chunk.extend(format!("flood {i:06} {}\n", "z".repeat(86)).as_bytes());
            if chunk.len() >= 64 * 1024 || i + 1 == LINES {
                w.write_all(&chunk).unwrap();
                chunk.clear();
            }
        }
    });
    reader
        .w
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    for i in 0..LINES {
        line.clear();
        reader.r.read_line(&mut line).unwrap();
        let expected = format!("flooder: flood {i:06} {}\n", "z".repeat(86));
        assert!(line == expected, "line {i}: {line:?}");
    }
    writer.join().unwrap();
    let took = started.elapsed();
    // Nobody was cut as a slow consumer: the flooder was paced.
    flooder.say("/who\n");
    let mut who = String::new();
    for _ in 0..LINES {
        who.clear();
        flooder.r.read_line(&mut who).unwrap();
        if who.starts_with("Users online") {
            break;
        }
    }
    assert_eq!(who, "Users online: by-a, by-b, flooder, reader\n");
    let seen = bystander.finish(BOUND);
    assert!(seen.answered >= 3, "too few probes to judge: {seen:?}");
    let stats = server.wait_stats_where("the flood counted", |s| {
        s.get("bytes_in") > (LINES * 100) as u64
    });
    assert_eq!(stats.get("slow_consumers"), 0, "{stats} after {took:?}");
}
