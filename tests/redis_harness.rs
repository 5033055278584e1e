//! The real Redis the cluster tests (issue 22) run against, tested itself
//! (`tests/common/redis.rs`): it starts on loopback with persistence off,
//! answers, stops for good, starts again empty on the same port, and keeps
//! a password it was given. Each test is skipped, and says so, where
//! `redis-server` is not installed.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::{Redis, Reply};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

#[test]
fn it_starts_on_loopback_and_answers_ping() {
    let Some(redis) = Redis::start() else { return };
    assert_eq!(redis.command(&["PING"]), Reply::Simple("PONG".into()));
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_ne!(redis.port(), 0);
    assert!(std::path::Path::new(&format!("/proc/{}", redis.pid())).exists());
    // The clock ticks are readable (a fresh server has spent few).
    assert!(redis.cpu_ticks() < 10_000);
}

#[test]
fn persistence_is_off_and_it_listens_on_loopback_only() {
    let Some(redis) = Redis::start() else { return };
    for (name, value) in [("save", ""), ("appendonly", "no"), ("bind", "127.0.0.1")] {
        assert_eq!(
            redis.command(&["CONFIG", "GET", name]),
            Reply::Array(Some(vec![bulk(name), bulk(value)])),
            "{name}"
        );
    }
}

#[test]
fn set_get_and_the_reply_kinds() {
    let Some(redis) = Redis::start() else { return };
    assert_eq!(redis.command(&["SET", "k", "v\r\n\0"]).as_str(), Some("OK"));
    let got = redis.command(&["GET", "k"]);
    assert_eq!(got.as_bytes(), Some(&b"v\r\n\0"[..]));
    assert!(redis.command(&["GET", "missing"]).is_nil());
    assert_eq!(redis.command(&["INCR", "n"]).as_int(), Some(1));
    assert_eq!(redis.command(&["INCR", "n"]).as_int(), Some(2));
    let wrong = redis.command(&["INCR", "k"]);
    assert!(wrong.as_error().unwrap().starts_with("ERR"), "{wrong:?}");
    // A stream, as the cluster uses: arrays within arrays.
    let id = redis.command(&["XADD", "s", "*", "line", "hello"]);
    let id = id.as_str().unwrap().to_string();
    let entries = redis.command(&["XRANGE", "s", "-", "+"]);
    assert_eq!(
        entries,
        Reply::Array(Some(vec![Reply::Array(Some(vec![
            bulk(&id),
            Reply::Array(Some(vec![bulk("line"), bulk("hello")])),
        ]))]))
    );
    // Several commands on one connection, answered in order.
    let replies = redis.commands(&[&["SET", "a", "1"], &["GET", "a"], &["DBSIZE"]]);
    assert_eq!(
        replies,
        [Reply::Simple("OK".into()), bulk("1"), Reply::Int(4)]
    );
}

#[test]
fn once_stopped_its_port_refuses() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let port = redis.port();
    redis.command(&["SET", "k", "v"]);
    redis.stop();
    assert!(!redis.running());
    let refused =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
            .map(|_| ())
            .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(redis.try_command(&["PING"]).is_err());
    // Again: nothing to do.
    redis.stop();
}

#[test]
fn started_again_it_is_empty_on_the_same_port() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (port, pid) = (redis.port(), redis.pid());
    redis.command(&["SET", "k", "v"]);
    // While a client holds a connection: the old server's end of it closes
    // first, and the new server binds the port all the same.
    let held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    redis.stop();
    redis.start_again();
    assert_eq!((redis.port(), redis.running()), (port, true));
    assert_ne!(redis.pid(), pid);
    assert!(redis.command(&["GET", "k"]).is_nil());
    assert_eq!(redis.command(&["DBSIZE"]).as_int(), Some(0));
    drop(held);
    // Without a stop first: start_again stops the running one itself.
    redis.command(&["SET", "k", "v"]);
    redis.start_again();
    assert_eq!(redis.command(&["DBSIZE"]).as_int(), Some(0));
}

#[test]
fn started_again_it_waits_for_a_port_someone_else_holds() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let port = redis.port();
    redis.stop();
    // Something else listens there for a while, accepting nothing: what
    // answers PING meanwhile is not taken for Redis.
    let squatter = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        drop(squatter);
    });
    let started = Instant::now();
    redis.start_again();
    assert!(started.elapsed() >= Duration::from_millis(600));
    release.join().unwrap();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["PING"]).as_str(), Some("PONG"));
}

#[test]
fn a_password_refuses_the_unauthenticated_and_survives_a_restart() {
    let Some(mut redis) = Redis::start_with(&["--requirepass", "s3cret"]) else {
        return;
    };
    for _ in 0..2 {
        let refused = redis.command(&["SET", "k", "v"]);
        assert!(
            refused.as_error().is_some_and(|e| e.starts_with("NOAUTH")),
            "{refused:?}"
        );
        let wrong = redis.commands(&[&["AUTH", "guess"], &["GET", "k"]]);
        assert!(wrong[0].as_error().is_some(), "{wrong:?}");
        assert!(wrong[1].as_error().is_some(), "{wrong:?}");
        let replies = redis.commands(&[&["AUTH", "s3cret"], &["SET", "k", "v"], &["GET", "k"]]);
        assert_eq!(
            replies,
            [
                Reply::Simple("OK".into()),
                Reply::Simple("OK".into()),
                bulk("v")
            ]
        );
        redis.start_again();
    }
}

#[test]
fn dropped_it_is_gone_with_its_directory() {
    let Some(redis) = Redis::start() else { return };
    let (pid, port) = (redis.pid(), redis.port());
    let dir = redis.dir().to_path_buf();
    assert!(redis.log().contains("Ready to accept connections"));
    assert!(dir.is_dir());
    drop(redis);
    // Waited for, so no longer even a zombie.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}
