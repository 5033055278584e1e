//! The cluster's own logic, without Redis: what a turn puts in the outbox
//! while the link is down, what a reader takes from a reply (each entry
//! once, its own instance's never), and a claim that Redis never answers.
//! Time is passed in. Redis is `127.0.0.1:1`, where nobody listens: the
//! links never come up, and a `tick` that tries them is refused.

use std::time::{Duration, Instant};

use mio::{Poll, Token};

use super::entry::{Body, Entry, Publisher};
use super::{url, Arrived, Cluster, Kind, Settings, Verdict, CLAIM_WAIT};

const ME: u64 = 0xaaaa;
const OTHER: u64 = 0xbbbb;

fn cluster(kind: Kind, outbox: usize, now: Instant) -> Cluster {
    let settings = Settings {
        url: url::parse("redis://127.0.0.1:1").unwrap(),
        prefix: "t".into(),
        outbox,
        tls: Default::default(),
    };
    Cluster::new(settings, kind, ME, 0, 1 << 20, now)
}

fn room(from: u64, seq: u64, text: &str) -> (String, Option<Entry>) {
    let entry = Entry {
        from: Publisher {
            instance: from,
            worker: 0,
        },
        seq,
        body: Body::Room(text.as_bytes().to_vec()),
    };
    (format!("1-{seq}"), Some(entry))
}

/// What arrived for the room, as text, one string per chunk.
fn heard(c: &mut Cluster) -> Vec<String> {
    c.take_arrived()
        .into_iter()
        .map(|a| match a {
            Arrived::Room { chunk, .. } => String::from_utf8_lossy(&chunk).into_owned(),
            Arrived::Direct { to, chunk } => {
                format!("to {}: {}", to.0, String::from_utf8_lossy(&chunk))
            }
        })
        .collect()
}

#[test]
fn a_turns_lines_are_one_entry_kept_while_down_and_what_does_not_fit_is_dropped() {
    let now = Instant::now();
    let poll = Poll::new().unwrap();
    let mut c = cluster(Kind::Broadcast, 100, now);
    c.publish(b"one\n");
    c.publish(b"two\n");
    c.flush(poll.registry(), now);
    assert_eq!(c.outbox.len(), 1, "one entry for the turn");
    assert_eq!(c.figures().outbox, 8);
    // A turn that does not fit is dropped whole and counted; one that
    // does still goes in after it: nothing is reordered.
    c.publish(&[b'x'; 99]);
    c.flush(poll.registry(), now);
    c.publish(b"three\n");
    c.flush(poll.registry(), now);
    let f = c.figures();
    assert_eq!((f.dropped, f.outbox, c.outbox.len()), (1, 14, 2));
    let seqs: Vec<u64> = c.outbox.iter().map(|(e, _)| e.seq).collect();
    assert_eq!(
        seqs,
        [1, 2],
        "numbered in order, the dropped turn unnumbered"
    );
}

#[test]
fn a_reader_takes_each_entry_once_and_never_its_own_instances() {
    let now = Instant::now();
    let mut c = cluster(Kind::Broadcast, 1 << 20, now);
    c.take(
        vec![
            room(OTHER, 1, "a\n"),
            room(ME, 1, "mine\n"),
            room(OTHER, 2, "b\n"),
        ],
        now,
    );
    assert_eq!(
        heard(&mut c),
        ["a\nb\n"],
        "one chunk per reply, own skipped"
    );
    // Sent again after a broken link: the numbers seen are dropped.
    c.take(vec![room(OTHER, 2, "b\n"), room(OTHER, 3, "c\n")], now);
    assert_eq!(heard(&mut c), ["c\n"]);
    assert_eq!(c.figures().received, 3);
    assert_eq!(c.last_id.as_deref(), Some("1-3"));
}

#[test]
fn a_private_message_keeps_its_place_among_the_room_lines() {
    let now = Instant::now();
    let mut c = cluster(Kind::Chat, 1 << 20, now);
    let direct = |to: u64, seq: u64| {
        let entry = Entry {
            from: Publisher {
                instance: OTHER,
                worker: 0,
            },
            seq,
            body: Body::Direct {
                to: Publisher {
                    instance: to,
                    worker: 0,
                },
                conn: 7,
                data: b"psst\n".to_vec(),
            },
        };
        (format!("2-{seq}"), Some(entry))
    };
    c.take(
        vec![
            room(OTHER, 1, "before\n"),
            direct(ME, 2),
            direct(0xcccc, 3),
            room(OTHER, 4, "after\n"),
        ],
        now,
    );
    assert_eq!(heard(&mut c), ["before\n", "to 7: psst\n", "after\n"]);
}

#[test]
fn a_claim_redis_never_answers_is_unavailable_after_five_seconds() {
    let now = Instant::now();
    let poll = Poll::new().unwrap();
    let mut c = cluster(Kind::Chat, 1 << 20, now);
    c.claim(Token(3), "alice".into(), "Alice".into(), None, now);
    assert!(c.take_answers().is_empty(), "waits for Redis");
    assert_eq!(c.next_deadline(), Some(now), "the first connect is due");
    c.tick(poll.registry(), now + CLAIM_WAIT - Duration::from_millis(1));
    assert!(c.take_answers().is_empty(), "not yet");
    c.tick(poll.registry(), now + CLAIM_WAIT);
    let answers = c.take_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0].conn, answers[0].answer),
        (Token(3), Verdict::Unavailable)
    );
    // Never sent, so nothing to give back: forgotten.
    assert!(c.claims.is_empty());
}
