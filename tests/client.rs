//! `monoloop client HOST:PORT` against the real servers and against
//! misbehaving listeners: round trips in every mode, standard input as a
//! pipe or a file, and each failure as one line with exit 1.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Starts the client on `addr` with piped stdio.
fn client(addr: &str, extra: &[&str]) -> Child {
    binary()
        .arg("client")
        .arg(addr)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the child with a deadline, collecting its output (none on
/// stdout if the test took it to read itself).
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + PATIENCE;
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut stdout) = stdout {
            stdout.read_to_end(&mut v).unwrap();
        }
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("client did not exit within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs the client with `input` on a pipe, then closes the pipe.
fn run_with_input(addr: &str, input: &[u8]) -> Output {
    let mut child = client(addr, &[]);
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = finish(child);
    feeder.join().unwrap();
    out
}

#[test]
fn echo_round_trip_through_a_pipe() {
    let server = Server::start(&["echo"]);
    let mut input = vec![0u8; 2_000_000];
    fill_pattern(&mut input, 0);
    let out = run_with_input(&server.addr.to_string(), &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn echo_round_trip_from_a_regular_file() {
    let server = Server::start(&["echo"]);
    let path = std::env::temp_dir().join(format!("monoloop-client-in-{}", std::process::id()));
    let mut input = vec![0u8; 1_000_000];
    fill_pattern(&mut input, 7);
    std::fs::write(&path, &input).unwrap();
    let child = binary()
        .arg("client")
        .arg(server.addr.to_string())
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == input);
}

#[test]
fn client_with_no_input_still_prints_until_the_server_closes() {
    let server = Server::start(&["echo", "--greeting", "hi there"]);
    let child = binary()
        .arg("client")
        .arg(server.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hi there\n");
}

#[test]
fn chat_through_the_client() {
    let server = Server::start(&["chat"]);
    let mut bob = connect(server.addr);
    expect(&mut bob, b"Enter your username: ");
    bob.write_all(b"bob\n").unwrap();
    expect(&mut bob, b"Welcome to the chat!\n");
    let out = run_with_input(&server.addr.to_string(), b"alice\nhello bob\n/quit\n");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Enter your username: Welcome to the chat!\nGoodbye!\n"
    );
    expect(
        &mut bob,
        b"alice joined the chat\nalice: hello bob\nalice left the chat\n",
    );
}

#[test]
fn broadcast_through_the_client() {
    let mut server = Server::start(&["broadcast", "--log-level", "debug"]);
    let mut listener = connect(server.addr);
    server.wait_accepted(1);
    let out = run_with_input(&server.addr.to_string(), b"from the client\n");
    assert!(out.status.success());
    expect(&mut listener, b"[Broadcast] from the client\n");
}

#[test]
fn file_through_the_client() {
    let dir = std::env::temp_dir().join(format!("monoloop-client-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut content = vec![0u8; 500_000];
    fill_pattern(&mut content, 3);
    std::fs::write(dir.join("notes.txt"), &content).unwrap();
    let server = Server::start(&["file", "--root", &dir.to_string_lossy()]);
    let out = run_with_input(&server.addr.to_string(), b"notes.txt\n");
    assert!(out.status.success());
    assert!(out.stdout == content);
    let out = run_with_input(&server.addr.to_string(), b"../etc/passwd\n");
    assert_eq!(out.stdout, b"ERROR: File not found\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Asserts a failed run: exit 1 and exactly one line on stderr with `text`.
fn assert_fails_with(out: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(text), "{stderr}");
}

#[test]
fn refused_connection_is_one_line_and_exit_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let out = run_with_input(&target, b"");
    assert_fails_with(&out, &format!("connection to {target} refused"));
}

#[test]
fn reset_by_the_server_is_one_line_and_exit_1() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().to_string();
    let rude = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_millis(100));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    });
    let mut child = client(&target, &[]);
    let _stdin = child.stdin.take(); // keep input open: only the reset ends it
    let out = finish(child);
    rude.join().unwrap();
    assert_fails_with(&out, "connection reset by");
}

#[test]
fn bad_host_is_one_line_and_exit_1() {
    let out = run_with_input("no such host!:80", b"");
    assert_fails_with(&out, "cannot resolve");
}

#[test]
fn timeout_zero_means_no_limit_and_connects() {
    // `--timeout 0` used to time out at once; like every other 0, it means
    // no limit.
    let server = Server::start(&["echo"]);
    let mut child = client(&server.addr.to_string(), &["--timeout", "0"]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"no hurry\n")
        .unwrap();
    let out = finish(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"no hurry\n");
}

#[test]
fn timeout_zero_waits_for_a_connect_that_hangs() {
    let (_listener, addr, _fillers) = hung_listener();
    let mut child = client(&addr.to_string(), &["--timeout", "0"]);
    let _stdin = child.stdin.take();
    // Longer than the 1 s that `--timeout 1` allows (see below); the
    // kernel itself would try for about two minutes.
    thread::sleep(Duration::from_millis(1500));
    let still_trying = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = finish(child);
    assert!(
        still_trying,
        "gave up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A listener with a backlog of 0 that never accepts, its queue filled:
/// the kernel drops further SYNs, so connects to it hang. Keep all three
/// alive while they are needed.
fn hung_listener() -> (
    socket2::Socket,
    std::net::SocketAddr,
    Vec<std::net::TcpStream>,
) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    (socket, addr, fillers)
}

#[test]
fn connect_timeout_is_honoured() {
    let (_listener, addr, _fillers) = hung_listener();
    let started = Instant::now();
    let mut child = client(&addr.to_string(), &["--timeout", "1"]);
    let _stdin = child.stdin.take();
    let out = finish(child);
    let took = started.elapsed();
    assert_fails_with(&out, "timed out connecting");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Issue 21: a download that a server's shutdown cuts short is an error
/// (the server resets it), never a clean exit with part of the file: a
/// user downloads a 50 MiB file into a slow pipe, the server gets SIGTERM
/// with a 1 s drain, and the client says the connection was reset.
#[test]
fn a_download_cut_by_the_drain_timeout_exits_1() {
    const SIZE: usize = 50 << 20;
    let dir = std::env::temp_dir().join(format!("monoloop-client-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut content = vec![0u8; SIZE];
    fill_pattern(&mut content, 0);
    std::fs::write(dir.join("big.bin"), &content).unwrap();
    let mut server = Server::start(&[
        "file",
        "--root",
        &dir.to_string_lossy(),
        "--drain-timeout",
        "1",
    ]);
    let mut child = client(&server.addr.to_string(), &[]);
    child.stdin.take().unwrap().write_all(b"big.bin\n").unwrap();
    // Read the first MiB, then stop reading for longer than the drain.
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0u8; 1 << 20];
    stdout.read_exact(&mut head).unwrap();
    server.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(1500));
    let reader = thread::spawn(move || {
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        rest
    });
    let out = finish(child);
    let rest = reader.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_fails_with(&out, "connection reset by");
    let got = head.len() + rest.len();
    assert!(got < SIZE, "all {got} bytes came");
    assert!(head.iter().chain(&rest).eq(content[..got].iter()));
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

/// Issue 21: a server that closes the connection for a timeout
/// (`Connection timeout`, then its FIN) is an error, not a clean end: an
/// idle echo client, and a chat user who never gave a name. The line is
/// still printed. A stream that merely ends with those bytes after our
/// own input ended (the server echoing them back) is a clean end.
#[test]
fn a_server_timeout_is_an_error_not_a_clean_end() {
    for (args, said) in [
        (
            &["echo", "--idle-timeout", "0.5"][..],
            "Connection timeout\n",
        ),
        (
            &["chat", "--request-timeout", "0.5"],
            "Enter your username: Connection timeout\n",
        ),
    ] {
        let server = Server::start(args);
        let mut child = client(&server.addr.to_string(), &[]);
        let _stdin = child.stdin.take(); // input stays open: the server ends it
        let out = finish(child);
        assert_fails_with(&out, "the server closed the connection after a timeout");
        assert_eq!(String::from_utf8_lossy(&out.stdout), said, "{args:?}");
    }
    let server = Server::start(&["echo"]);
    let out = run_with_input(&server.addr.to_string(), b"Connection timeout\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"Connection timeout\n");
}
