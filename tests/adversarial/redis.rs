//! A Redis that answers garbage, answers slowly, or accepts and never
//! answers (`--cluster`, issue 24). The peer is a fake: a listener of the
//! test's own ([`Fake`]) that first plays Redis well enough for the link
//! to come up, then misbehaves as a [`Script`] says, to the greeting of
//! every new connection, to the commands on the ones already linked, or
//! to both.
//!
//! Every case runs the same way ([`attack`]): an instance links to the
//! fake, a bystander pair (two broadcast clients, or two chat users) talks
//! through it, the script turns bad for [`ATTACK`], and the test asserts
//! that
//! - the bystander gets every line within [`SERVED`] throughout;
//! - the link is reported down within the documented bound, 5 s, plus
//!   slack: the log says it is lost, and a stats line (`cluster=down`) or
//!   `/healthz` shows it (a link that greets well and then breaks is down
//!   only between attempts, which `/healthz`, asked every 20 ms, sees);
//! - the log says so about once per outage, not once per retry (warning
//!   lines counted);
//! - the server does not spin (its CPU ticks over the attack), and its
//!   memory does not grow by what a reply announces (its RSS);
//! - reconnect attempts keep to the backoff, 100 ms doubling to 5 s (the
//!   fake counts its connections);
//!
//! and, once the fake plays Redis again, that the link comes back. Chat
//! adds a join while Redis is silent, which is told "Chat is unavailable
//! right now" after about 5 s while the users in the room chat on. The
//! last test swaps a real `redis-server` in behind the same address (the
//! fake relays to it) after a Redis that never answered.

#![cfg(feature = "cluster")]

use std::thread;
use std::time::{Duration, Instant};

use crate::bystander::Bystander;
use crate::common::cluster::{chatter, healthz, metrics_at, unlinked, wait_link};
use crate::common::{Server, Stats};
use crate::fake_redis::{Fake, Reply, Script};
use monoloop::protocol::chat::{PROMPT, UNAVAILABLE};

/// The slowest answer a bystander may get while Redis misbehaves.
const SERVED: Duration = Duration::from_secs(2);
/// How long a connect, a greeting or a reply may take before the link
/// is dropped (`link::CONNECT_TIMEOUT`, `link::REPLY_TIMEOUT`), and the
/// slack a loaded machine adds to it.
const BOUND: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_secs(3);
/// How long each attack runs.
const ATTACK: Duration = Duration::from_secs(10);
/// The most CPU the server may use over an attack, in clock ticks (1/100
/// s): a fifth of the attack's length, or half where the fake floods each
/// attempt (decoding a million small elements, in a debug build, takes a
/// quarter). A loop in a spin with the fake takes half or more.
const CPU: u64 = ATTACK.as_secs() * 100 / 5;
const CPU_FLOODED: u64 = ATTACK.as_secs() * 100 / 2;
/// How much the server's resident memory may grow over an attack: a reply
/// may hold a million elements in all (`resp::MAX_ARRAY`), some 64 MiB
/// decoded, but nothing that a reply only announces (a bulk string of
/// 2^40 bytes, a billion elements) may show, nor may replies add up.
const RSS_KIB: u64 = 96 << 10;

/// Which mode, and who talks through the instance.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Broadcast,
    Chat,
}

/// What an attack left to look at, after its common assertions.
struct After {
    server: Server,
    /// Kept to the end: the server stays linked to it.
    fake: Fake,
}

/// Runs `script` against an instance of `mode` linked to a fake Redis,
/// with a bystander pair talking through it; asserts what the module docs
/// say, and that the link comes back once the fake plays Redis again.
/// `during` runs once the link is down (a chat join, say). `warnings` is
/// the most warning lines the attack may log; `down_within`, how soon the
/// link must be reported down (`None`: it may stay up).
fn attack(
    what: &str,
    mode: Mode,
    url_of: impl Fn(&Fake) -> String,
    script: Script,
    down_within: Option<Duration>,
    warnings: usize,
    during: impl FnOnce(&mut Server),
) -> After {
    let fake = Fake::start();
    let kind = match mode {
        Mode::Broadcast => "broadcast",
        Mode::Chat => "chat",
    };
    let mut server = unlinked(kind, &url_of(&fake), &["--metrics", "127.0.0.1:0"]);
    server.wait_for_log("cluster: linked to ");
    let metrics = metrics_at(&mut server);
    let bystander = match mode {
        Mode::Broadcast => {
            let say = crate::common::connect(server.addr);
            let hear = crate::common::connect(server.addr);
            server.wait_accepted(2);
            Bystander::relay(say, hear, |l| format!("[Broadcast] {l}"))
        }
        Mode::Chat => {
            let mut alice = chatter(&server, "alice");
            let mut bob = chatter(&server, "bob");
            alice.expect("bob joined the chat\n");
            let say = alice.stream().try_clone().unwrap();
            let hear = bob.stream().try_clone().unwrap();
            Bystander::relay(say, hear, |l| format!("alice: {l}"))
        }
    };
    // Lines go through Redis before the attack: the link carries them.
    server.wait_stats_where("published lines", |s| s.get("published") > 0);

    let cpu = server.cpu_ticks();
    let rss = server.rss_kib();
    let warned = server.log_lines(" WARN ").len();
    let accepted = fake.accepted();
    let started = Instant::now();
    fake.play(script.clone());

    // Reported down: the log says the link is lost within the bound; and
    // the stats line or /healthz shows it down while the attack lasts (a
    // link that greets well and then fails is down only between its
    // attempts: a stats line every 0.2 s may miss that, /healthz, asked
    // every 20 ms, does not).
    let lines_before = server.log().len();
    let mut down = None;
    if let Some(within) = down_within {
        down = Some(
            said_lost(&server, lines_before, within + SLACK)
                .unwrap_or_else(|| panic!("{what}: the log never said the link was lost")),
        );
    }
    let mut shown_down = down_within.is_none();
    let mut during = Some(during);
    while !shown_down || started.elapsed() < ATTACK {
        shown_down = shown_down
            || healthz(metrics).contains("cluster link down")
            || server.log()[lines_before..]
                .iter()
                .any(|l| l.contains("stats:") && l.contains(" cluster=down "));
        if shown_down {
            if let Some(during) = during.take() {
                during(&mut server);
            }
        }
        assert!(
            started.elapsed() < ATTACK + SLACK,
            "{what}: neither a stats line nor /healthz showed the link down"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let lasted = started.elapsed();
    let served = bystander.finish(SERVED);

    let ticks = server.cpu_ticks() - cpu;
    let grown = server.rss_kib().saturating_sub(rss);
    let attempts = fake.accepted() - accepted;
    let warned: Vec<String> = server.log_lines(" WARN ").split_off(warned);
    let stats = last(&mut server);
    eprintln!(
        "{what}: down after {down:.1?}; over {lasted:.1?}: {ticks} CPU ticks, RSS +{grown} KiB, \
         {attempts} connects, {} warnings; bystander {served:?}; {stats}",
        warned.len()
    );
    let flooded = matches!(script.greeting, Reply::Flood { .. })
        || matches!(script.work, Reply::Flood { .. });
    let cpu = if flooded { CPU_FLOODED } else { CPU };
    assert!(
        ticks <= cpu,
        "{what}: {ticks} CPU ticks over {lasted:?}: a spin?"
    );
    assert!(
        grown <= RSS_KIB,
        "{what}: resident memory grew by {grown} KiB over the attack"
    );
    let most = most_attempts(lasted);
    assert!(
        attempts <= most,
        "{what}: {attempts} connects in {lasted:?}, over the backoff's {most}"
    );
    assert!(
        warned.len() <= warnings,
        "{what}: {} warning lines (at most {warnings}):\n  {}",
        warned.len(),
        warned.join("\n  ")
    );

    // Redis plays fair again: the link comes back.
    fake.play(Script::HONEST);
    wait_link(&mut server, "up");
    After { server, fake }
}

/// How long after it was asked the log said (after its first `from`
/// lines) that the link is lost, looking for at most `within`.
fn said_lost(server: &Server, from: usize, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let said = server.log()[from..].iter().any(|l| {
            l.contains("cluster: lost Redis") || l.contains("cluster: cannot reach Redis")
        });
        if said {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The last stats line.
fn last(server: &mut Server) -> Stats {
    Stats(server.log_lines("stats:").pop().expect("a stats line"))
}

/// The most connects two links (the writer and the reader) may make in
/// `period` if each waits, between failures, at least half the backoff
/// (its jitter's least): 50 ms doubling to 2.5 s. One more each for a
/// link that failed just before it.
fn most_attempts(period: Duration) -> usize {
    let mut waited = Duration::ZERO;
    let mut n = 1;
    let mut wait = Duration::from_millis(50);
    while waited < period {
        waited += wait;
        wait = (wait * 2).min(Duration::from_millis(2500));
        n += 1;
    }
    2 * (n + 1)
}

/// Pseudo-random bytes that do not start like a reply.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = vec![0x07];
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn url(fake: &Fake) -> String {
    fake.url()
}

/// Garbage: one attack per kind, each to every command (the greeting of
/// every new connection, and what the links already up send).
fn garbage(what: &str, script: Script) {
    attack(what, Mode::Broadcast, url, script, Some(BOUND), 2, |_| {});
}

#[test]
fn random_bytes() {
    garbage("random_bytes", Script::always(Reply::Bytes(noise(4096))));
}

#[test]
fn a_type_byte_that_is_not_resp2() {
    // A RESP3 map, which is never asked for.
    garbage(
        "a_type_byte_that_is_not_resp2",
        Script::always(Reply::Bytes(b"%1\r\n+a\r\n+b\r\n".to_vec())),
    );
}

#[test]
fn a_bulk_string_of_2_to_the_40_bytes_is_not_allocated() {
    garbage(
        "a_bulk_string_of_2_to_the_40_bytes_is_not_allocated",
        Script::always(Reply::Flood {
            head: b"$1099511627776\r\n".to_vec(),
            unit: vec![b'x'; 4096],
            total: 8 << 20,
        }),
    );
}

#[test]
fn arrays_within_every_bound_that_add_up_to_a_flood() {
    // Each array within 1 Mi elements, 2 deep: 32 MiB of small integers,
    // which would be 256 MiB of decoded values if the reply were kept.
    let mut unit = b"*1024\r\n".to_vec();
    unit.extend_from_slice(&b":1\r\n".repeat(1024));
    garbage(
        "arrays_within_every_bound_that_add_up_to_a_flood",
        Script::always(Reply::Flood {
            head: b"*1048576\r\n".to_vec(),
            unit,
            total: 32 << 20,
        }),
    );
}

#[test]
fn arrays_nested_deeper_than_the_bound() {
    let mut deep = b"*1\r\n".repeat(9);
    deep.extend_from_slice(b":1\r\n");
    garbage(
        "arrays_nested_deeper_than_the_bound",
        Script::always(Reply::Bytes(deep)),
    );
}

#[test]
fn an_endless_line_without_crlf() {
    garbage(
        "an_endless_line_without_crlf",
        Script::always(Reply::Flood {
            head: b"+".to_vec(),
            unit: vec![b'a'; 4096],
            total: 4 << 20,
        }),
    );
}

#[test]
fn an_array_of_a_billion_elements() {
    garbage(
        "an_array_of_a_billion_elements",
        Script::always(Reply::Flood {
            head: b"*1000000000\r\n".to_vec(),
            unit: b":1\r\n".repeat(1024),
            total: 8 << 20,
        }),
    );
}

#[test]
fn an_error_to_the_ping() {
    garbage(
        "an_error_to_the_ping",
        Script::always(Reply::Bytes(b"-ERR go away\r\n".to_vec())),
    );
}

#[test]
fn an_error_to_auth() {
    let with_password = |f: &Fake| format!("redis://:s3cret@{}", f.addr);
    attack(
        "an_error_to_auth",
        Mode::Broadcast,
        with_password,
        Script::always(Reply::Bytes(b"-WRONGPASS invalid password\r\n".to_vec())),
        Some(BOUND),
        // The outage, and the first entry refused.
        2,
        |_| {},
    );
}

#[test]
fn an_integer_where_xread_expects_an_array() {
    attack(
        "an_integer_where_xread_expects_an_array",
        Mode::Broadcast,
        url,
        Script::after_greeting(Reply::Bytes(b":42\r\n".to_vec()), Some("XREAD")),
        Some(BOUND),
        1,
        |_| {},
    );
}

#[test]
fn an_error_to_every_xadd() {
    // Redis out of memory (`maxmemory` with `noeviction`) refuses every
    // write and answers everything else: the link stays up, the lines
    // are dropped and counted, and the log says so once, not per entry.
    let after = attack(
        "an_error_to_every_xadd",
        Mode::Broadcast,
        url,
        Script::after_greeting(
            Reply::Bytes(b"-OOM command not allowed when used memory > 'maxmemory'\r\n".to_vec()),
            Some("XADD"),
        ),
        None,
        1,
        |_| {},
    );
    let mut server = after.server;
    server.wait_stats_where("lines dropped", |s| s.get("cluster_dropped") > 0);
}

#[test]
fn a_blocking_read_answered_at_once_with_nothing() {
    // A Redis (or a proxy before it) that ignores BLOCK: each XREAD comes
    // back empty at once. The link is up, and must not spin; nor may it
    // stop reading: the reader asks again a second later (`read.rs`).
    let after = attack(
        "a_blocking_read_answered_at_once_with_nothing",
        Mode::Broadcast,
        url,
        Script::after_greeting(Reply::Bytes(b"*-1\r\n".to_vec()), Some("XREAD")),
        None,
        0,
        |_| {},
    );
    let xreads = after.fake.xreads();
    assert!(
        xreads >= 5,
        "{xreads} XREADs over a {ATTACK:?} attack: the reader stopped asking"
    );
    let unanswered = after.server.log_lines("did not answer");
    assert!(unanswered.is_empty(), "{unanswered:?}");
}

#[test]
fn a_reply_to_a_command_never_sent() {
    attack(
        "a_reply_to_a_command_never_sent",
        Mode::Broadcast,
        url,
        Script::after_greeting(Reply::Bytes(b"+OK\r\n+OK\r\n".to_vec()), Some("XADD")),
        Some(BOUND),
        1,
        |_| {},
    );
}

#[test]
fn a_byte_every_500_ms_after_a_good_greeting() {
    attack(
        "a_byte_every_500_ms_after_a_good_greeting",
        Mode::Broadcast,
        url,
        Script::after_greeting(Reply::Trickle, None),
        Some(BOUND),
        1,
        |_| {},
    );
}

#[test]
fn every_answer_6_s_late() {
    attack(
        "every_answer_6_s_late",
        Mode::Broadcast,
        url,
        Script::always(Reply::After(Duration::from_secs(6))),
        Some(BOUND),
        1,
        |_| {},
    );
}

#[test]
fn accepts_and_never_answers() {
    attack(
        "accepts_and_never_answers",
        Mode::Broadcast,
        url,
        Script::always(Reply::Nothing),
        Some(BOUND),
        1,
        |_| {},
    );
}

#[test]
fn accepts_and_closes_at_once() {
    attack(
        "accepts_and_closes_at_once",
        Mode::Broadcast,
        url,
        Script::always(Reply::Close),
        Some(BOUND),
        1,
        |_| {},
    );
}

/// A join while Redis is silent: told the chat is unavailable after
/// about 5 s (the claim's bound), while the users in the room chat on
/// (the bystander).
fn a_join_is_turned_away(server: &mut Server) {
    let mut eve = server.client("eve");
    eve.expect(PROMPT);
    let started = Instant::now();
    eve.send("eve\n");
    eve.expect(UNAVAILABLE);
    eve.expect_eof();
    let waited = started.elapsed();
    assert!(
        waited >= BOUND - Duration::from_millis(500) && waited < BOUND + SLACK,
        "eve was told after {waited:?}"
    );
}

#[test]
fn chat_with_a_redis_that_never_answers() {
    let after = attack(
        "chat_with_a_redis_that_never_answers",
        Mode::Chat,
        url,
        Script::always(Reply::Nothing),
        Some(BOUND),
        1,
        a_join_is_turned_away,
    );
    // Linked again: newcomers' names are granted.
    let mut carol = chatter(&after.server, "carol");
    chatter(&after.server, "dave");
    carol.expect("dave joined the chat\n");
}

#[test]
fn chat_with_a_redis_that_answers_each_command_6_s_late() {
    attack(
        "chat_with_a_redis_that_answers_each_command_6_s_late",
        Mode::Chat,
        url,
        Script::always(Reply::After(Duration::from_secs(6))),
        Some(BOUND),
        1,
        a_join_is_turned_away,
    );
}

#[test]
fn chat_with_a_redis_that_answers_claims_with_garbage() {
    attack(
        "chat_with_a_redis_that_answers_claims_with_garbage",
        Mode::Chat,
        url,
        Script::always(Reply::Bytes(noise(512))),
        Some(BOUND),
        1,
        a_join_is_turned_away,
    );
}

#[test]
fn after_a_redis_that_never_answered_the_link_recovers_onto_a_real_one() {
    let Some(redis) = crate::common::redis::Redis::start() else {
        return;
    };
    // From the start, Redis accepts and never answers: the instance
    // cannot reach it, says so once, and serves its own clients.
    let fake = Fake::start();
    fake.play(Script::always(Reply::Nothing));
    let mut server = unlinked("broadcast", &fake.url(), &[]);
    let say = crate::common::connect(server.addr);
    let hear = crate::common::connect(server.addr);
    server.wait_accepted(2);
    let bystander = Bystander::relay(say, hear, |l| format!("[Broadcast] {l}"));
    let warning = server.wait_for_log("cluster: cannot reach Redis");
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("did not answer within 5 s"), "{warning}");
    wait_link(&mut server, "down");

    // The same address now leads to a real Redis: the silent connections
    // time out, the next attempts link, and lines reach the real stream,
    // where an instance linked to Redis directly hears them.
    fake.play(Script::always(Reply::Relay(redis.port())));
    let linked = Instant::now();
    wait_link(&mut server, "up");
    let took = linked.elapsed();
    assert!(took < BOUND * 2 + SLACK, "linked after {took:?}");
    let other = crate::common::cluster::instance("broadcast", &redis.url(), &[]);
    let mut listener = crate::common::cluster::Member::join(&other, "listener");
    let line = listener.line();
    assert!(
        line.starts_with("[Broadcast] bystander "),
        "heard from the recovered instance: {line:?}"
    );
    bystander.finish(SERVED);
    assert_eq!(
        server.log_lines(" WARN ").len(),
        1,
        "{:?}",
        server.log_lines(" WARN ")
    );
    let stored = crate::common::cluster::stream_lines(&redis, "monoloop:broadcast");
    assert!(!stored.is_empty(), "nothing in the real stream");
}
