//! `monoloop chat` over real sockets: names (unique whatever their case),
//! joins, messages, commands, leaving exactly once, sanitising, shutdown and
//! slow consumers.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Connects and takes a name; returns the stream after the welcome.
fn join(server: &Server, name: &str) -> TcpStream {
    let mut s = connect(server.addr);
    expect(&mut s, b"Enter your username: ");
    s.write_all(format!("{name}\n").as_bytes()).unwrap();
    expect(&mut s, b"Welcome to the chat!\n");
    s
}

fn say(s: &mut TcpStream, line: &str) {
    s.write_all(line.as_bytes()).unwrap();
}

/// Asserts nothing arrives within a short wait.
fn expect_silence(s: &mut TcpStream) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => panic!("connection closed"),
        Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&b[..n])),
        Err(_) => {}
    }
    s.set_read_timeout(Some(PATIENCE)).unwrap();
}

#[test]
fn three_users_join_talk_whisper_rename_and_leave() {
    let server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    let mut carol = join(&server, "carol");
    expect(&mut alice, b"carol joined the chat\n");
    expect(&mut bob, b"carol joined the chat\n");

    say(&mut alice, "hello everyone\n");
    expect(&mut bob, b"alice: hello everyone\n");
    expect(&mut carol, b"alice: hello everyone\n");

    say(&mut bob, "/msg carol just for you\n");
    expect(&mut carol, b"[private] bob: just for you\n");

    say(&mut carol, "/nick caroline\n");
    expect(&mut carol, b"You are now caroline\n");
    expect(&mut alice, b"carol is now caroline\n");
    expect(&mut bob, b"carol is now caroline\n");

    say(&mut alice, "/who\n");
    expect(&mut alice, b"Users online: alice, bob, caroline\n");

    say(&mut bob, "/quit\n");
    expect(&mut bob, b"Goodbye!\n");
    expect_eof(&mut bob);
    expect(&mut alice, b"bob left the chat\n");
    expect(&mut carol, b"bob left the chat\n");

    // Closing the socket without /quit is leaving too, announced once.
    drop(carol);
    expect(&mut alice, b"caroline left the chat\n");
    say(&mut alice, "/who\n");
    expect(&mut alice, b"Users online: alice\n");
    // Nobody saw their own line, and the private message went to one.
    expect_silence(&mut alice);
}

/// The reply to a bad name: the rule, then the prompt again, on one line.
const INVALID: &[u8] = b"Invalid username: use 1-32 letters, digits, _ - . Enter your username: ";

#[test]
fn bad_and_taken_names_prompt_again_and_crlf_works() {
    let server = Server::start(&["chat"]);
    let _alice = join(&server, "alice");
    let mut s = connect(server.addr);
    expect(&mut s, b"Enter your username: ");
    say(&mut s, "not valid!\r\n");
    expect(&mut s, INVALID);
    say(&mut s, "\n");
    expect(&mut s, INVALID);
    say(&mut s, &format!("{}\n", "x".repeat(33)));
    expect(&mut s, INVALID);
    say(&mut s, "alice\r\n");
    expect(&mut s, b"Username taken. Enter your username: ");
    say(&mut s, "bob\r\n");
    expect(&mut s, b"Welcome to the chat!\n");
}

#[test]
fn commands_report_their_errors() {
    let server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");
    say(&mut alice, "/msg nobody hi\n");
    expect(&mut alice, b"ERROR: no user named nobody\n");
    say(&mut alice, "/dance\n");
    expect(&mut alice, b"ERROR: unknown command /dance; try /help\n");
    say(&mut alice, "/help\n");
    let help = read_n(&mut alice, monoloop::protocol::chat::HELP.len());
    assert_eq!(help, monoloop::protocol::chat::HELP);
}

#[test]
fn terminal_escapes_and_bad_utf8_never_reach_other_users() {
    let server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    bob.write_all(b"\x1b[2J\x1b[Hclear\x07 \xff screen\x1b]0;pwned\x07\n")
        .unwrap();
    expect(&mut alice, "bob: clear \u{fffd} screen\n".as_bytes());
    // A line that is nothing but control is not relayed at all.
    bob.write_all(b"\x1b[31m\x1b[0m\n").unwrap();
    expect_silence(&mut alice);
}

#[test]
fn case_variants_and_invisible_characters_never_reach_other_users() {
    let server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");

    // Nobody else can be Alice, nor use a Unicode look-alike of her name.
    let mut impostor = connect(server.addr);
    expect(&mut impostor, b"Enter your username: ");
    say(&mut impostor, "Alice\n");
    expect(&mut impostor, b"Username taken. Enter your username: ");
    say(&mut impostor, "\u{430}lice\n"); // Cyrillic a
    expect(&mut impostor, INVALID);
    say(&mut impostor, "Bob\n");
    expect(&mut impostor, b"Welcome to the chat!\n");
    expect(&mut alice, b"Bob joined the chat\n");
    say(&mut impostor, "/nick ALICE\n");
    expect(&mut impostor, b"ERROR: username taken\n");

    // A line dressed up to look like alice's on the next line, with an
    // override, a zero-width space and a line separator, arrives without
    // them; so does a private message, found whatever the name's case.
    let mut mallory = join(&server, "mallory");
    expect(&mut alice, b"mallory joined the chat\n");
    expect(&mut impostor, b"mallory joined the chat\n");
    say(
        &mut mallory,
        "ok\u{2028}Bob:\u{200b} \u{202e}\u{2066}hi\u{2069}\u{feff}\u{200f}\n",
    );
    expect(&mut alice, b"mallory: okBob: hi\n");
    expect(&mut impostor, b"mallory: okBob: hi\n");
    say(&mut mallory, "/msg ALICE \u{2029}\u{200d}psst\u{202a}\n");
    expect(&mut alice, b"[private] mallory: psst\n");

    // Display case is kept; /who sorts without regard to it.
    say(&mut alice, "/who\n");
    expect(&mut alice, b"Users online: alice, Bob, mallory\n");
    expect_silence(&mut alice);
    expect_silence(&mut impostor);
}

/// What `/nick` says to a name that breaks the rule: the prompt's words.
const INVALID_NICK: &[u8] = b"ERROR: invalid username: use 1-32 letters, digits, _ - .\n";

#[test]
fn nick_refuses_what_the_prompt_refuses_rather_than_stripping_it() {
    // The prompt refuses a name with a bidi override, a zero-width space
    // or an escape; /nick must not strip them and rename to what is left.
    let rule = "nvalid username: use 1-32 letters, digits, _ - .";
    assert!(String::from_utf8_lossy(INVALID).contains(rule));
    assert!(String::from_utf8_lossy(INVALID_NICK).contains(rule));
    let server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    let dressed = [
        "mal\u{202e}lory",
        "mal\u{200b}lory",
        "mal\u{1b}lory",
        "mal\u{1b}[0mlory",
    ];
    for name in dressed {
        // As a first name, at the prompt: refused.
        let mut s = connect(server.addr);
        expect(&mut s, b"Enter your username: ");
        say(&mut s, &format!("{name}\n"));
        expect(&mut s, INVALID);
        drop(s);
        // As a new name, by /nick: refused the same way.
        say(&mut alice, &format!("/nick {name}\n"));
        expect(&mut alice, INVALID_NICK);
    }
    // Alice is still alice; nobody was told otherwise, and the name that
    // stripping would have left is free.
    say(&mut alice, "/who\n");
    expect(&mut alice, b"Users online: alice, bob\n");
    let _mallory = join(&server, "mallory");
    expect(&mut alice, b"mallory joined the chat\n");
    expect(&mut bob, b"mallory joined the chat\n");
    // A plain name still goes through, CRLF and all.
    say(&mut alice, "/nick alicia\r\n");
    expect(&mut alice, b"You are now alicia\n");
    expect(&mut bob, b"alice is now alicia\n");
    expect_silence(&mut bob);
}

#[test]
fn idle_timeout_and_reset_each_announce_the_leave_once() {
    let server = Server::start(&["chat", "--idle-timeout", "1"]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    // Bob stops reading, and alice says more than his buffers hold: with
    // bytes outstanding, his silence is idleness (a member who reads
    // everything stays: members_who_only_read_stay_past_the_idle_timeout).
    socket2::SockRef::from(&bob)
        .set_recv_buffer_size(4096)
        .unwrap();
    let line = format!("{}\n", "z".repeat(1000));
    for _ in 0..300 {
        say(&mut alice, &line);
    }
    // Keep alice active while bob idles out.
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        say(&mut alice, "/who\n");
        let line = read_until_newline(&mut alice);
        if line == "bob left the chat\n" {
            // What bob was owed, then the reason, then the end.
            let (said, _) = read_to_eof(&mut bob);
            assert!(said.ends_with(b"Connection timeout\n"));
            return_after_reset(&server, &mut alice);
            return;
        }
        assert!(line.starts_with("Users online"), "{line:?}");
    }
    panic!("bob never timed out");
}

/// Issue 21: in a quiet room every member who only reads was cut with
/// `Connection timeout` at each idle timeout. Silence both ways is no sign
/// of trouble in a room: a member who has everything it was sent stays,
/// however long nobody speaks, and can still talk; the name prompt keeps
/// its own deadline.
#[test]
fn members_who_only_read_stay_past_the_idle_timeout() {
    let server = Server::start(&["chat", "--idle-timeout", "0.5", "--request-timeout", "2"]);
    let mut alice = join(&server, "alice");
    let mut bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    say(&mut alice, "hi bob\n");
    expect(&mut bob, b"alice: hi bob\n");
    // Carol never gives her name.
    let mut carol = connect(server.addr);
    let prompted = std::time::Instant::now();
    expect(&mut carol, b"Enter your username: ");
    // Nobody says anything for three idle timeouts.
    std::thread::sleep(Duration::from_millis(1500));
    say(&mut alice, "/who\n");
    expect(&mut alice, b"Users online: alice, bob\n");
    say(&mut bob, "still here\n");
    expect(&mut alice, b"bob: still here\n");
    expect_silence(&mut bob);
    // The prompt's deadline is its own: carol goes at 2 s, not at 0.5.
    let (said, _) = read_to_eof(&mut carol);
    let waited = prompted.elapsed();
    assert_eq!(said, b"Connection timeout\n");
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5),
        "carol was closed after {waited:?}"
    );
    expect_silence(&mut alice);
}

fn return_after_reset(server: &Server, alice: &mut TcpStream) {
    // Drain alice's pending /who reply, if any, then a reset leaves once.
    let carol = join(server, "carol");
    loop {
        let line = read_until_newline(alice);
        if line == "carol joined the chat\n" {
            break;
        }
    }
    socket2::SockRef::from(&carol)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(carol);
    expect(alice, b"carol left the chat\n");
    expect_silence(alice);
}

fn read_until_newline(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    while !out.ends_with(b"\n") {
        out.extend(read_n(s, 1));
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn shutdown_tells_every_client() {
    let mut server = Server::start(&["chat"]);
    let mut alice = join(&server, "alice");
    let mut newcomer = connect(server.addr);
    expect(&mut newcomer, b"Enter your username: ");
    server.signal(libc::SIGTERM);
    let (rest, _) = read_to_eof(&mut alice);
    assert_eq!(rest, b"Server shutting down\n");
    let (rest, _) = read_to_eof(&mut newcomer);
    assert_eq!(rest, b"Server shutting down\n");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_user_who_never_reads_is_dropped_and_announced() {
    use std::io::BufRead;
    let mut server = Server::start(&["chat", "--write-limit", "262144"]);
    let mut alice = join(&server, "alice");
    let sleepy = join(&server, "sleepy");
    socket2::SockRef::from(&sleepy)
        .set_recv_buffer_size(4096)
        .unwrap();
    expect(&mut alice, b"sleepy joined the chat\n");
    let bob = join(&server, "bob");
    expect(&mut alice, b"bob joined the chat\n");
    // Alice says 10 MB; bob reads it all; sleepy reads nothing, fills the
    // kernel's buffers and then passes the write limit.
    const LINES: usize = 10_000;
    let line = format!("{}\n", "y".repeat(1000));
    let expected = format!("alice: {line}");
    let reader = std::thread::spawn(move || {
        let mut bob = std::io::BufReader::new(bob);
        let (mut relayed, mut left_seen) = (0, false);
        while relayed < LINES {
            let mut got = String::new();
            bob.read_line(&mut got).unwrap();
            if got == "sleepy left the chat\n" {
                left_seen = true;
            } else {
                assert_eq!(got, expected);
                relayed += 1;
            }
        }
        left_seen
    });
    for i in 0..LINES {
        alice.write_all(line.as_bytes()).unwrap();
        // Pace a little, so that a busy test machine cannot make bob look
        // like a slow consumer too.
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(reader.join().unwrap(), "bob never heard sleepy leave");
    let logged = server.wait_for_log("slow consumer");
    assert_eq!(server.log_lines("slow consumer").len(), 1, "{logged}");
    drop(sleepy);
}
