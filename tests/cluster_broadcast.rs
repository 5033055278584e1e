//! `monoloop broadcast --cluster` (issue 22) over real sockets and a real
//! Redis: two and three instances behave as one relay. A line from a
//! client on any instance reaches every other client of every instance
//! exactly once, in the order sent, with the prefix; its sender never
//! hears it; with `--workers 2` it is published once and delivered once
//! to each client. Each test is skipped, and says so, where
//! `redis-server` is not installed.

#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeMap;
use std::thread;

use common::cluster::*;
use common::redis::Redis;
use common::*;

#[test]
fn two_instances_relay_each_line_to_every_other_client_once_in_order() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut a = instance("broadcast", &url, &[]);
    let mut b = instance("broadcast", &url, &[]);
    let mut a1 = Member::join(&a, "a1");
    let mut a2 = Member::join(&a, "a2");
    let mut b1 = Member::join(&b, "b1");
    let mut b2 = Member::join(&b, "b2");
    a.wait_accepted(2);
    b.wait_accepted(2);

    // 300 lines in 7-byte pieces: lines cross turns, and entries, in bits.
    for line in numbered("", "a1", 0..300) {
        for piece in line.as_bytes().chunks(7) {
            a1.send(piece);
        }
    }
    let want = numbered("[Broadcast] ", "a1", 0..300);
    assert_eq!(a2.lines(300), want, "a2, on the sender's instance");
    assert_eq!(b1.lines(300), want, "b1, on the other instance");
    assert_eq!(b2.lines(300), want, "b2, on the other instance");

    // The other way: b1's line reaches both of a's clients and b2, and
    // the next thing a1 reads is it, not one of its own lines.
    b1.send("from b1\r\n");
    for m in [&mut a1, &mut a2, &mut b2] {
        m.expect("[Broadcast] from b1\n");
    }
    for m in [&mut a1, &mut a2, &mut b1, &mut b2] {
        m.silent(QUIET);
    }

    // Published once each, received once each: by the figures, and in
    // the stream itself.
    a.wait_stats(&[("published", 300), ("received", 1), ("cluster_dropped", 0)]);
    b.wait_stats(&[("published", 1), ("received", 300), ("cluster_dropped", 0)]);
    let mut stored = numbered("[Broadcast] ", "a1", 0..300);
    stored.push("[Broadcast] from b1\n".into());
    assert_eq!(stream_lines(&redis, "monoloop:broadcast"), stored);
}

#[test]
fn three_instances_with_a_sender_on_each_keep_each_senders_order() {
    const LINES: usize = 300;
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let prefix = ["--prefix", "<< "];
    let mut servers: Vec<Server> = (0..3)
        .map(|_| instance("broadcast", &url, &prefix))
        .collect();
    // On each instance: a sender and a listener.
    let mut senders: Vec<Member> = (0..3)
        .map(|i| Member::join(&servers[i], &format!("s{i}")))
        .collect();
    let mut listeners: Vec<Member> = (0..3)
        .map(|i| Member::join(&servers[i], &format!("l{i}")))
        .collect();
    for s in &mut servers {
        s.wait_accepted(2);
    }

    // The three talk at once.
    let talking: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                for line in numbered("", &format!("s{i}"), 0..LINES) {
                    s.send(line);
                }
                s
            })
        })
        .collect();
    let mut senders: Vec<Member> = talking.into_iter().map(|t| t.join().unwrap()).collect();

    // Each listener hears all 900, each sender's in its order; each sender
    // hears the other two's 600 and none of its own.
    let check = |m: &mut Member, from: &[usize]| {
        let mut next: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..from.len() * LINES {
            let line = m.line();
            let rest = line
                .strip_prefix("<< ")
                .unwrap_or_else(|| panic!("{}: no prefix: {line:?}", m.name));
            let (tag, n) = rest.trim_end().split_once('-').unwrap();
            let k: usize = tag[1..].parse().unwrap();
            assert!(from.contains(&k), "{}: heard {line:?}", m.name);
            let expected = next.entry(tag.to_string()).or_default();
            assert_eq!(
                n.parse::<usize>().unwrap(),
                *expected,
                "{}: {line:?}",
                m.name
            );
            *expected += 1;
        }
        assert!(next.values().all(|&n| n == LINES), "{}: {next:?}", m.name);
    };
    for l in &mut listeners {
        check(l, &[0, 1, 2]);
    }
    for (i, s) in senders.iter_mut().enumerate() {
        let others: Vec<usize> = (0..3).filter(|&k| k != i).collect();
        check(s, &others);
    }
    for m in listeners.iter_mut().chain(senders.iter_mut()) {
        m.silent(QUIET);
    }
    for s in &mut servers {
        s.wait_stats(&[("published", LINES as u64), ("received", 2 * LINES as u64)]);
    }
}

#[test]
fn with_two_workers_a_line_is_published_once_and_delivered_once_to_each() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut a = instance(
        "broadcast",
        &url,
        &["--workers", "2", "--metrics", "127.0.0.1:0"],
    );
    let m = metrics_at(&mut a);
    // Both workers' links are up, not only the first one's.
    within("both workers linked", PATIENCE, || {
        sample(m, "monoloop_cluster_linked") == 2.0
    });
    let mut b = instance("broadcast", &url, &[]);
    let mut far = Member::join(&b, "far");
    b.wait_accepted(1);
    // Clients on a until each worker serves at least two.
    let mut near = Vec::new();
    loop {
        near.push(Member::join(&a, &format!("near{}", near.len())));
        a.wait_accepted(near.len());
        let seen = a.workers_of();
        let on = |w: &str| seen.iter().filter(|s| *s == w).count();
        if on("0") >= 2 && on("1") >= 2 {
            break;
        }
        assert!(
            near.len() < 40,
            "40 clients, and one worker has fewer than 2: {seen:?}"
        );
    }

    // From the other instance: each of a's clients, on either worker,
    // hears each line once.
    for line in numbered("", "far", 0..50) {
        far.send(line);
    }
    let want = numbered("[Broadcast] ", "far", 0..50);
    for m in &mut near {
        assert_eq!(m.lines(50), want, "{}", m.name);
    }
    // From a's first client: a's other clients (both workers) and b's.
    let (first, rest) = near.split_first_mut().unwrap();
    for line in numbered("", "near", 0..50) {
        first.send(line);
    }
    let want = numbered("[Broadcast] ", "near", 0..50);
    for m in rest.iter_mut().chain([&mut far]) {
        assert_eq!(m.lines(50), want, "{}", m.name);
    }
    far.send("last\n");
    for m in near.iter_mut() {
        m.expect("[Broadcast] last\n");
        m.silent(QUIET);
    }
    far.silent(QUIET);

    // Published once however many workers: fifty lines of a's in the
    // stream, and fifty by the figures; a took b's fifty (and "last")
    // once, as one instance, though both its workers read the stream.
    let stored = stream_lines(&redis, "monoloop:broadcast");
    let mine = stored.iter().filter(|l| l.contains("near-")).count();
    assert_eq!(mine, 50, "{stored:?}");
    let stats = a.wait_stats(&[("published", 50)]);
    assert_eq!(stats.get("received"), 51, "{stats}");
    assert_eq!(
        sample(m, "monoloop_cluster_lines_total{direction=\"published\"}"),
        50.0
    );
}

#[test]
fn a_new_instance_hears_what_follows_not_what_went_before() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut a = instance("broadcast", &url, &[]);
    let mut a1 = Member::join(&a, "a1");
    let mut a2 = Member::join(&a, "a2");
    a.wait_accepted(2);
    a1.send("before b\n");
    a2.expect("[Broadcast] before b\n");
    a.wait_stats(&[("published", 1)]);

    let mut b = instance("broadcast", &url, &[]);
    let mut b1 = Member::join(&b, "b1");
    b.wait_accepted(1);
    a1.send("after b\n");
    a2.expect("[Broadcast] after b\n");
    // b's client hears the line after, and nothing from the stream's past.
    b1.expect("[Broadcast] after b\n");
    b1.silent(QUIET);
}

#[test]
fn clusters_with_different_prefixes_share_a_redis_and_not_their_lines() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut red = instance("broadcast", &url, &["--cluster-prefix", "red"]);
    let mut red2 = instance("broadcast", &url, &["--cluster-prefix", "red"]);
    let mut blue = instance("broadcast", &url, &["--cluster-prefix", "blue"]);
    let mut r1 = Member::join(&red, "r1");
    let mut r2 = Member::join(&red2, "r2");
    let mut b1 = Member::join(&blue, "b1");
    for s in [&mut red, &mut red2, &mut blue] {
        s.wait_accepted(1);
    }
    r1.send("for red\n");
    r2.expect("[Broadcast] for red\n");
    b1.silent(QUIET);
    assert_eq!(
        stream_lines(&redis, "red:broadcast"),
        ["[Broadcast] for red\n"]
    );
    assert!(stream_lines(&redis, "blue:broadcast").is_empty());
    assert!(stream_lines(&redis, "monoloop:broadcast").is_empty());
}
