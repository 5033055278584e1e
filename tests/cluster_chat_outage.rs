//! `monoloop chat --cluster` (issue 22) when Redis or an instance goes
//! away: a new user is told the chat is unavailable within 5 s while the
//! users already in chat on; names are held again after Redis restarts
//! empty; a name taken elsewhere while its instance was cut off is lost
//! by its user there; and an instance killed with SIGKILL has its names
//! freed, and its users announced gone, within the lease. Each test is
//! skipped, and says so, where `redis-server` is not installed.

#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::redis::{Redis, Reply};
use common::*;
use monoloop::protocol::chat::{
    NAME_LOST, NAME_TAKEN, PROMPT, UNAVAILABLE, UNAVAILABLE_NICK, WELCOME,
};

/// How long a claim may wait for Redis (`cluster::CLAIM_WAIT`), and the
/// slack a loaded machine may add to it.
const CLAIM_WAIT: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_millis(1500);

#[test]
fn while_redis_is_down_a_new_user_is_turned_away_and_the_others_chat_on() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let mut a = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    let mut amy = chatter(&a, "amy");
    alice.expect("amy joined the chat\n");

    redis.stop();
    wait_link(&mut a, "down");
    // A newcomer gets the prompt as usual; its name waits for Redis, for
    // at most 5 s, then it is told and closed. Meanwhile alice's /nick
    // waits as long, and is refused the same way, keeping her name.
    let mut eve = a.client("eve");
    eve.expect(PROMPT);
    let started = Instant::now();
    eve.send("eve\n");
    alice.send("/nick alicia\n");
    // The users already in talk on, at once, while both wait.
    amy.send("still here\n");
    alice.expect("amy: still here\n");
    alice.expect(UNAVAILABLE_NICK);
    eve.expect(UNAVAILABLE);
    eve.expect_eof();
    let waited = started.elapsed();
    assert!(waited < CLAIM_WAIT + SLACK, "told after {waited:?}");
    alice.send("/who\n");
    alice.expect("Users online: alice, amy\n");
    alice.send("and you?\n");
    amy.expect("alice: and you?\n");
    quiet(&mut amy);

    // Redis returns (empty): a newcomer joins, alice's name is hers
    // again in Redis, and nobody else can take it.
    redis.start_again();
    wait_link(&mut a, "up");
    let mut dora = chatter(&a, "dora");
    alice.expect("dora joined the chat\n");
    amy.expect("dora joined the chat\n");
    let holder = redis.command(&["GET", "monoloop:chat:name:alice"]);
    assert!(
        holder.as_str().is_some(),
        "alice's name in Redis: {holder:?}"
    );
    dora.send("/nick ALICE\n");
    dora.expect("ERROR: username taken\n");
    alice.send("/nick alicia\n");
    alice.expect("You are now alicia\n");
    amy.expect("alice is now alicia\n");
    dora.expect("alice is now alicia\n");
}

#[test]
fn after_redis_restarts_empty_names_are_held_again_across_instances() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let url = redis.url();
    let mut a = instance("chat", &url, &[]);
    let mut b = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    b.wait_stats(&[("received", 1)]);
    let mut bob = chatter(&b, "bob");
    alice.expect("bob joined the chat\n");

    redis.start_again();
    a.wait_stats(&[("reconnects", 1)]);
    b.wait_stats(&[("reconnects", 1)]);
    // Each instance took its names again as its link came back.
    within("both names in Redis again", PATIENCE, || {
        ["alice", "bob"].iter().all(|n| {
            let key = format!("monoloop:chat:name:{n}");
            redis.command(&["GET", &key]).as_str().is_some()
        })
    });
    let mut c = b.client("c");
    c.expect(PROMPT);
    c.send("Alice\n");
    c.expect(NAME_TAKEN);
    c.send("carol\n");
    c.expect(WELCOME);
    alice.expect("carol joined the chat\n");
    bob.expect("carol joined the chat\n");
    for x in [&mut alice, &mut bob, &mut c] {
        x.send("/who\n");
        x.expect("Users online: alice, bob, carol\n");
    }
    alice.send("/msg carol welcome back\n");
    c.expect("[private] alice: welcome back\n");
    bob.send("hi all\n");
    alice.expect("bob: hi all\n");
    c.expect("bob: hi all\n");
}

/// The ids of Redis's clients but the one asking.
fn clients(redis: &Redis) -> Vec<String> {
    let list = redis.command(&["CLIENT", "LIST"]);
    list.as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.contains(" cmd=client|list "))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(str::to_string))
        .collect()
}

#[test]
fn a_name_taken_elsewhere_while_its_instance_was_cut_off_is_lost_there() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let mut a = instance("chat", &url, &[]);
    let mut links_of_a = Vec::new();
    within("a's two links", PATIENCE, || {
        links_of_a = clients(&redis);
        links_of_a.len() == 2
    });
    let mut b = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    let mut amy = chatter(&a, "amy");
    alice.expect("amy joined the chat\n");
    b.wait_stats(&[("received", 2)]);
    let mut bob = chatter(&b, "bob");
    alice.expect("bob joined the chat\n");
    amy.expect("bob joined the chat\n");

    // a is cut off from Redis for longer than a lease: its links are cut
    // and kept out (maxclients: b's two and this one), and its names'
    // keys go as expiry would take them.
    let mut admin = Admin::connect(&redis);
    let mut cut = vec!["CONFIG SET maxclients 3".to_string()];
    cut.extend(links_of_a.iter().map(|id| format!("CLIENT KILL ID {id}")));
    cut.push("DEL monoloop:chat:name:alice monoloop:chat:name:amy".into());
    let cut: Vec<&str> = cut.iter().map(String::as_str).collect();
    assert_eq!(admin.run(&cut), ["+OK", ":1", ":1", ":2"]);
    wait_link(&mut a, "down");

    // Meanwhile someone on b takes alice's name.
    let mut other = b.client("other");
    other.expect(PROMPT);
    other.send("Alice\n");
    other.expect(WELCOME);
    bob.expect("Alice joined the chat\n");

    // a's links come back: its refresh finds alice's name held by b, and
    // its alice is told and closed; amy keeps hers.
    assert_eq!(admin.run(&["CONFIG SET maxclients 10000"]), ["+OK"]);
    // Told, and closed (she may first hear b's Alice join, caught up
    // from the stream before the refresh's answer came).
    let (said, _) = alice.read_to_eof();
    let said = String::from_utf8(said).unwrap();
    let lost = std::str::from_utf8(NAME_LOST).unwrap();
    assert!(
        said == lost || said == format!("Alice joined the chat\n{lost}"),
        "{said:?}"
    );
    // amy hears her alice leave, and, caught up from the stream, b's
    // Alice join: in either order, the two links being two sockets.
    let (left, joined) = ("alice left the chat\n", "Alice joined the chat\n");
    let heard = String::from_utf8(amy.read_n(left.len() + joined.len())).unwrap();
    assert!(
        heard == format!("{left}{joined}") || heard == format!("{joined}{left}"),
        "{heard:?}"
    );
    wait_link(&mut a, "up");
    let holder = redis.command(&["GET", "monoloop:chat:name:alice"]);
    let amys = redis.command(&["GET", "monoloop:chat:name:amy"]);
    assert!(amys.as_str().is_some(), "amy's name is a's again: {amys:?}");
    assert_ne!(holder, amys, "alice's name is b's, not a's");
    // One Alice in the cluster, on b; b's users did not hear her leave.
    for x in [&mut amy, &mut bob, &mut other] {
        x.send("/who\n");
        x.expect("Users online: Alice, amy, bob\n");
    }
    amy.send("/msg alice hello?\n");
    other.expect("[private] amy: hello?\n");
    quiet(&mut bob);
    quiet(&mut other);
    assert_eq!(last_stats(&mut a).get("reconnects"), 1);
}

#[test]
fn a_killed_instances_names_are_freed_and_its_users_gone_within_the_lease() {
    // The lease (cluster/roster.rs): a name not refreshed for this long is
    // free again, and its holder's users are announced gone.
    const LEASE: Duration = Duration::from_secs(30);
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    // bob_again waits at the name prompt through the whole lease: a's
    // prompt deadline (30 s by default, the lease's length) must outlast it.
    let a = instance("chat", &url, &["--request-timeout", "90"]);
    let mut b = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    b.wait_stats(&[("received", 1)]);
    let bob = chatter(&b, "bob");
    alice.expect("bob joined the chat\n");
    let zoe = chatter(&b, "zoe");
    alice.expect("zoe joined the chat\n");

    b.signal(libc::SIGKILL);
    let killed = Instant::now();
    b.wait_exit(Duration::from_secs(5));
    drop((bob, zoe));
    // Not at once: for all anyone knows b is only slow.
    let mut bob_again = a.client("bob again");
    bob_again.expect(PROMPT);
    bob_again.send("bob\n");
    bob_again.expect(NAME_TAKEN);

    // Within the lease: alice hears both leave (in either order), and
    // the names are free to take.
    alice.read_timeout(LEASE + Duration::from_secs(10));
    let mut heard = vec![String::from_utf8(alice.read_n(18)).unwrap()];
    heard.push(String::from_utf8(alice.read_n(18)).unwrap());
    alice.read_timeout(PATIENCE);
    heard.sort();
    assert_eq!(heard, ["bob left the chat\n", "zoe left the chat\n"]);
    let announced = killed.elapsed();
    let free = within("bob's name free", LEASE + Duration::from_secs(10), || {
        redis.command(&["EXISTS", "monoloop:chat:name:bob"]) == Reply::Int(0)
    }) + announced;
    eprintln!("gone announced after {announced:?}, free after {free:?}");
    // The lease runs from the last refresh, at or before the kill.
    let bound = LEASE + Duration::from_secs(5);
    assert!(announced <= bound, "{announced:?}");
    assert!(free <= bound, "{free:?}");
    bob_again.send("bob\n");
    bob_again.expect(WELCOME);
    alice.expect("bob joined the chat\n");
    alice.send("/who\n");
    alice.expect("Users online: alice, bob\n");
}
