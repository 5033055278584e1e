//! `monoloop broadcast --cluster` (issue 22) when Redis is not there:
//! stopped and started again empty mid-run, a reader cut off while the
//! stream goes on, absent at start (behind a password that is never
//! logged), and an outbox that fills up. Local delivery never waits; what
//! a connected instance said meanwhile arrives afterwards, in order, once;
//! the stats line, `/metrics` and `/healthz` say what happened. Each test
//! is skipped, and says so, where `redis-server` is not installed.

#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::cluster::*;
use common::redis::Redis;
use common::*;

#[test]
fn lines_said_while_redis_is_away_arrive_once_in_order_when_it_returns_empty() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let mut a = instance("broadcast", &url, &["--metrics", "127.0.0.1:0"]);
    let m = metrics_at(&mut a);
    let mut b = instance("broadcast", &url, &[]);
    let mut a1 = Member::join(&a, "a1");
    let mut a2 = Member::join(&a, "a2");
    let mut b1 = Member::join(&b, "b1");
    let mut b2 = Member::join(&b, "b2");
    a.wait_accepted(2);
    b.wait_accepted(2);
    a1.send("before\n");
    for x in [&mut a2, &mut b1, &mut b2] {
        x.expect("[Broadcast] before\n");
    }
    assert_eq!(healthz(m).split("\r\n\r\n").nth(1), Some("ok\n"));

    redis.stop();
    wait_link(&mut a, "down");
    wait_link(&mut b, "down");
    let health = healthz(m);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok; cluster link down: serving this instance's clients alone\n"));
    assert_eq!(sample(m, "monoloop_cluster_linked"), 0.0);

    // Each instance's own clients go on hearing each other at once.
    for line in numbered("", "a1", 0..100) {
        a1.send(line);
    }
    for line in numbered("", "b2", 0..50) {
        b2.send(line);
    }
    assert_eq!(a2.lines(100), numbered("[Broadcast] ", "a1", 0..100));
    assert_eq!(b1.lines(50), numbered("[Broadcast] ", "b2", 0..50));
    // Nothing crosses; what was said waits in each outbox.
    b1.silent(QUIET);
    let waiting = last_stats(&mut a);
    assert!(waiting.get("outbox") > 0, "{waiting}");
    assert!(sample(m, "monoloop_cluster_outbox_bytes") > 0.0);

    // Redis returns with nothing in it: each instance sends what waited,
    // and reads the other's from the stream.
    redis.start_again();
    assert_eq!(b1.lines(100), numbered("[Broadcast] ", "a1", 0..100));
    assert_eq!(b2.lines(100), numbered("[Broadcast] ", "a1", 0..100));
    assert_eq!(a1.lines(50), numbered("[Broadcast] ", "b2", 0..50));
    assert_eq!(a2.lines(50), numbered("[Broadcast] ", "b2", 0..50));
    // Once each: the next line any of them reads is one said now.
    b1.send("after\n");
    for x in [&mut a1, &mut a2, &mut b2] {
        x.expect("[Broadcast] after\n");
    }
    for x in [&mut a1, &mut a2, &mut b1, &mut b2] {
        x.silent(QUIET);
    }

    // The figures: one reconnect each, every line published once, and an
    // outbox empty again; the link is up, and healthy says so.
    a.wait_stats(&[
        ("reconnects", 1),
        ("published", 101),
        ("received", 51),
        ("outbox", 0),
    ]);
    b.wait_stats(&[
        ("reconnects", 1),
        ("published", 51),
        ("received", 101),
        ("outbox", 0),
    ]);
    assert_eq!(sample(m, "monoloop_cluster_reconnects_total"), 1.0);
    assert_eq!(sample(m, "monoloop_cluster_linked"), 1.0);
    assert_eq!(healthz(m).split("\r\n\r\n").nth(1), Some("ok\n"));
    // One warning for the outage and one line for its end, per instance.
    for s in [&a, &b] {
        let lost = s.log_lines("cluster: lost Redis at ");
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].contains(&format!("at {url} (")), "{}", lost[0]);
        assert_eq!(
            s.log_lines(" WARN ").len(),
            1,
            "{:?}",
            s.log_lines(" WARN ")
        );
        assert_eq!(s.log_lines("cluster: linked to ").len(), 2);
        assert_eq!(s.log_lines(" again after ").len(), 1);
    }
}

/// The ids of the clients blocked in `XREAD`, from `CLIENT LIST`.
fn readers(redis: &Redis) -> Vec<String> {
    let list = redis.command(&["CLIENT", "LIST"]);
    list.as_str()
        .unwrap()
        .lines()
        .filter(|l| l.contains(" cmd=xread "))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(str::to_string))
        .collect()
}

#[test]
fn an_instance_whose_reader_was_cut_off_catches_up_from_the_stream() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut a = instance("broadcast", &url, &[]);
    let mut a1 = Member::join(&a, "a1");
    a.wait_accepted(1);
    let mut readers_of_a = Vec::new();
    within("a's reader in XREAD", PATIENCE, || {
        readers_of_a = readers(&redis);
        readers_of_a.len() == 1
    });
    let mut b = instance("broadcast", &url, &[]);
    let mut b1 = Member::join(&b, "b1");
    b.wait_accepted(1);
    let mut reader_of_b = String::new();
    within("b's reader in XREAD", PATIENCE, || {
        let all = readers(&redis);
        match all.iter().find(|r| !readers_of_a.contains(r)) {
            Some(r) => reader_of_b = r.clone(),
            None => return false,
        }
        true
    });
    a1.send("before the gap\n");
    b1.expect("[Broadcast] before the gap\n");

    // Redis takes no new connection (the four it has: a's two, b's
    // writer, this one), and b's reader is cut: b cannot read, a goes on
    // writing to the stream.
    let mut admin = Admin::connect(&redis);
    let said = admin.run(&[
        "CONFIG SET maxclients 4",
        &format!("CLIENT KILL ID {reader_of_b}"),
    ]);
    assert_eq!(said, ["+OK", ":1"]);
    wait_link(&mut b, "down");
    for line in numbered("", "gap", 0..50) {
        a1.send(line);
    }
    a.wait_stats(&[("published", 51)]);
    b1.silent(QUIET);
    assert!(last_stats(&mut b).0.contains(" cluster=down "));

    // Redis takes connections again: b's reader returns, and reads what
    // it missed from where it stopped.
    assert_eq!(admin.run(&["CONFIG SET maxclients 10000"]), ["+OK"]);
    assert_eq!(b1.lines(50), numbered("[Broadcast] ", "gap", 0..50));
    a1.send("after the gap\n");
    b1.expect("[Broadcast] after the gap\n");
    b1.silent(QUIET);
    let stats = b.wait_stats(&[("received", 52)]);
    assert_eq!(stats.get("reconnects"), 1, "{stats}");
    assert_eq!(last_stats(&mut a).get("reconnects"), 0);
}

#[test]
fn redis_absent_at_start_is_one_warning_without_the_password_then_joined() {
    const PASSWORD: &str = "s3cret-Pa55";
    let Some(mut redis) = Redis::start_with(&["--requirepass", PASSWORD]) else {
        return;
    };
    let port = redis.port();
    redis.stop();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let shown = format!("redis://:***@127.0.0.1:{port}");

    // The instance starts without Redis, and serves its own clients.
    let mut a = unlinked("broadcast", &url, &["--metrics", "127.0.0.1:0"]);
    let m = metrics_at(&mut a);
    let warning = a.wait_for_log("cluster: cannot reach Redis at ");
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains(&format!("at {shown} (")), "{warning}");
    let mut a1 = Member::join(&a, "a1");
    let mut a2 = Member::join(&a, "a2");
    a.wait_accepted(2);
    a1.send("alone\n");
    a2.expect("[Broadcast] alone\n");
    let health = healthz(m);
    assert!(health.ends_with("ok; cluster link down: serving this instance's clients alone\n"));
    // Retries (several by now, from 100 ms apart) are not warned of again.
    let down = wait_link(&mut a, "down");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        a.log_lines(" WARN ").len(),
        1,
        "{:?}",
        a.log_lines(" WARN ")
    );
    assert_eq!(down.get("reconnects"), 0, "{down}");

    // Redis appears on its port: the instance joins, and so does another.
    redis.start_again();
    a.wait_for_log("cluster: linked to ");
    wait_link(&mut a, "up");
    let mut b = instance("broadcast", &url, &[]);
    let mut b1 = Member::join(&b, "b1");
    b.wait_accepted(1);
    a1.send("joined\n");
    a2.expect("[Broadcast] joined\n");
    b1.expect("[Broadcast] joined\n");
    b1.send("welcome\n");
    a1.expect("[Broadcast] welcome\n");
    a2.expect("[Broadcast] welcome\n");
    assert_eq!(healthz(m).split("\r\n\r\n").nth(1), Some("ok\n"));

    // The password is in no line of either log, nor of the metrics.
    for (who, log) in [("a", a.log()), ("b", b.log())] {
        let leaked: Vec<&String> = log.iter().filter(|l| l.contains(PASSWORD)).collect();
        assert!(leaked.is_empty(), "{who} logged the password: {leaked:?}");
    }
    assert!(!metrics::get(m, "/metrics").contains(PASSWORD));
    assert!(a.log_lines(&shown).len() >= 2, "{:?}", a.log());
}

#[test]
fn a_full_outbox_drops_later_lines_counts_them_and_says_so_once() {
    // Each line with its prefix is 1012 bytes: 64 fit in 64 KiB.
    const LINES: usize = 200;
    const FIT: usize = 64;
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let args = ["--cluster-outbox", "64K", "--metrics", "127.0.0.1:0"];
    let mut a = instance("broadcast", &url, &args);
    let m = metrics_at(&mut a);
    let mut b = instance("broadcast", &url, &[]);
    let mut a1 = Member::join(&a, "a1");
    let mut a2 = Member::join(&a, "a2");
    let mut b1 = Member::join(&b, "b1");
    a.wait_accepted(2);
    b.wait_accepted(1);

    redis.stop();
    wait_link(&mut a, "down");
    // One line per turn: the next is sent once the last was relayed here,
    // so each is an entry of its own, and the first 64 fill the outbox.
    let line = |i: usize| format!("o-{i:04}-{}\n", "x".repeat(992));
    assert_eq!(line(0).len() + "[Broadcast] ".len(), 1012);
    for i in 0..LINES {
        a1.send(line(i));
        a2.expect(&format!("[Broadcast] {}", line(i)));
    }
    let full = a.wait_stats(&[("cluster_dropped", (LINES - FIT) as u64)]);
    assert_eq!(full.get("outbox"), (FIT * 1012) as u64, "{full}");
    assert_eq!(
        sample(m, "monoloop_cluster_dropped_lines_total"),
        (LINES - FIT) as f64
    );
    let said = a.log_lines("the outbox is full");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(" WARN ") && said[0].contains("65536 bytes"),
        "{}",
        said[0]
    );

    // Redis returns: b's client hears the 64 that fit, in order, and
    // nothing of the rest; the count stays.
    redis.start_again();
    for i in 0..FIT {
        b1.expect(&format!("[Broadcast] {}", line(i)));
    }
    a1.send("after\n");
    b1.expect("[Broadcast] after\n");
    a2.expect("[Broadcast] after\n");
    b1.silent(QUIET);
    let stats = a.wait_stats(&[("published", FIT as u64 + 1), ("outbox", 0)]);
    assert_eq!(
        stats.get("cluster_dropped"),
        (LINES - FIT) as u64,
        "{stats}"
    );
    assert_eq!(a.log_lines("the outbox is full").len(), 1);
    let back = a.wait_for_log(" again after ");
    assert!(
        back.contains(&format!("{} lines dropped", LINES - FIT)),
        "{back}"
    );
}
