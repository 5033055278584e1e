//! `monoloop chat --cluster` (issue 22) over real sockets and a real
//! Redis: two instances are one chat. Joins, leaves, messages, `/who`
//! (everyone, sorted), `/msg` and `/nick` work across them as within one,
//! and a name is unique across the cluster: of two users taking it on two
//! instances at once, exactly one has it. Each test is skipped, and says
//! so, where `redis-server` is not installed.

#![cfg(feature = "cluster")]

mod common;

use std::thread;

use common::cluster::*;
use common::redis::Redis;
use common::*;
use monoloop::protocol::chat::{NAME_TAKEN, PROMPT, WELCOME};

#[test]
fn joins_messages_who_msg_and_leaves_cross_instances() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let a = instance("chat", &url, &[]);
    let mut b = instance("chat", &url, &[]);

    let mut alice = chatter(&a, "alice");
    // b has read alice's join before Bob comes: a line read after a user
    // joined is theirs to hear, whenever it was said elsewhere.
    b.wait_stats(&[("received", 1)]);
    let mut bob = chatter(&b, "Bob");
    alice.expect("Bob joined the chat\n");
    let mut carol = chatter(&a, "carol");
    alice.expect("carol joined the chat\n");
    bob.expect("carol joined the chat\n");
    let mut dave = chatter(&b, "dave");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect("dave joined the chat\n");
    }

    // A message reaches everyone else, on both instances.
    alice.send("hello everyone\n");
    for c in [&mut bob, &mut carol, &mut dave] {
        c.expect("alice: hello everyone\n");
    }
    dave.send("hi from b\n");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect("dave: hi from b\n");
    }

    // /who, from either side: everyone, sorted without regard to case.
    for c in [&mut alice, &mut bob] {
        c.send("/who\n");
        c.expect("Users online: alice, Bob, carol, dave\n");
    }

    // /msg across instances, found whatever the name's case; to one only.
    alice.send("/msg bob just for you\n");
    bob.expect("[private] alice: just for you\n");
    bob.send("/msg CAROL and for you\n");
    carol.expect("[private] Bob: and for you\n");
    dave.send("/msg nobody hi\n");
    dave.expect("ERROR: no user named nobody\n");

    // Leaving, by /quit and by closing, is heard once on both sides.
    bob.send("/quit\n");
    bob.expect("Goodbye!\n");
    bob.expect_eof();
    for c in [&mut alice, &mut carol, &mut dave] {
        c.expect("Bob left the chat\n");
    }
    drop(carol);
    alice.expect("carol left the chat\n");
    dave.expect("carol left the chat\n");
    dave.send("/who\n");
    dave.expect("Users online: alice, dave\n");
    alice.send("/who\n");
    alice.expect("Users online: alice, dave\n");
    quiet(&mut alice);
    quiet(&mut dave);
}

#[test]
fn a_name_held_on_one_instance_is_taken_on_the_other_in_any_case() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let a = instance("chat", &url, &[]);
    let mut b = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    b.wait_stats(&[("received", 1)]);

    let mut other = b.client("other");
    other.expect(PROMPT);
    for name in ["alice", "ALICE", "Alice"] {
        other.send(format!("{name}\n"));
        other.expect(NAME_TAKEN);
    }
    other.send("bob\n");
    other.expect(WELCOME);
    alice.expect("bob joined the chat\n");
    other.send("/nick Alice\n");
    other.expect("ERROR: username taken\n");
    // The name is in Redis, held by a's instance.
    let holder = redis.command(&["GET", "monoloop:chat:name:alice"]);
    assert!(holder.as_str().is_some(), "{holder:?}");
    quiet(&mut alice);
}

/// Reads a claim's answer at the prompt: true for the welcome, false for
/// "taken" (with the prompt again).
#[track_caller]
fn welcomed(c: &mut Client) -> bool {
    let got = c.read_n(WELCOME.len());
    if got == WELCOME {
        return true;
    }
    let rest = c.read_n(NAME_TAKEN.len() - WELCOME.len());
    assert_eq!([got, rest].concat(), NAME_TAKEN);
    false
}

#[test]
fn of_two_users_taking_one_name_on_two_instances_at_once_one_has_it() {
    const ROUNDS: usize = 20;
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let a = instance("chat", &url, &[]);
    let mut b = instance("chat", &url, &[]);
    // One user watching on each instance: once both have heard a round's
    // join and leave, both instances have read them, and the next round's
    // users, who join after, do not hear them.
    let mut watch_a = chatter(&a, "watch_a");
    b.wait_stats(&[("received", 1)]);
    let mut watch_b = chatter(&b, "watch_b");
    watch_a.expect("watch_b joined the chat\n");
    let mut winners = [0; 2];
    for round in 0..ROUNDS {
        let name = format!("zed{round}");
        let mut on_a = a.client("on a");
        let mut on_b = b.client("on b");
        on_a.expect(PROMPT);
        on_b.expect(PROMPT);
        // As close together as two threads can send.
        let line = format!("{name}\n");
        let (la, lb) = (line.clone(), line);
        let sa = thread::spawn(move || {
            on_a.send(la);
            on_a
        });
        let sb = thread::spawn(move || {
            on_b.send(lb);
            on_b
        });
        let (mut on_a, mut on_b) = (sa.join().unwrap(), sb.join().unwrap());
        let (wa, wb) = (welcomed(&mut on_a), welcomed(&mut on_b));
        assert!(wa ^ wb, "round {round}: {name}: a {wa}, b {wb}");
        winners[usize::from(wb)] += 1;
        // The loser is at the prompt again; the name stays taken for it.
        let (winner, loser) = if wa {
            (&mut on_a, &mut on_b)
        } else {
            (&mut on_b, &mut on_a)
        };
        loser.send(format!("{}\n", name.to_uppercase()));
        loser.expect(NAME_TAKEN);
        winner.send("/quit\n");
        winner.expect("Goodbye!\n");
        winner.expect_eof();
        let heard = format!("{name} joined the chat\n{name} left the chat\n");
        watch_a.expect(&heard);
        watch_b.expect(&heard);
    }
    quiet(&mut watch_a);
    quiet(&mut watch_b);
    eprintln!(
        "of {ROUNDS} races, a won {} and b {}",
        winners[0], winners[1]
    );
}

#[test]
fn nick_is_heard_across_instances_and_frees_the_old_name() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let a = instance("chat", &url, &[]);
    let mut b = instance("chat", &url, &[]);
    let mut alice = chatter(&a, "alice");
    b.wait_stats(&[("received", 1)]);
    let mut bob = chatter(&b, "bob");
    alice.expect("bob joined the chat\n");

    bob.send("/nick robert\n");
    bob.expect("You are now robert\n");
    alice.expect("bob is now robert\n");
    alice.send("/who\n");
    alice.expect("Users online: alice, robert\n");
    alice.send("/msg robert still you?\n");
    bob.expect("[private] alice: still you?\n");
    alice.send("/msg bob anyone?\n");
    alice.expect("ERROR: no user named bob\n");

    // A name held on the other instance cannot be taken by /nick...
    bob.send("/nick ALICE\n");
    bob.expect("ERROR: username taken\n");
    alice.send("/nick Robert\n");
    alice.expect("ERROR: username taken\n");
    // ...the old one is free on either, and the new one is not.
    let mut late = a.client("late");
    late.expect(PROMPT);
    late.send("robert\n");
    late.expect(NAME_TAKEN);
    late.send("bob\n");
    late.expect(WELCOME);
    alice.expect("bob joined the chat\n");
    bob.expect("bob joined the chat\n");

    // A case variant of one's own name is a rename, heard across.
    bob.send("/nick Robert\n");
    bob.expect("You are now Robert\n");
    alice.expect("robert is now Robert\n");
    late.expect("robert is now Robert\n");
    late.send("/who\n");
    late.expect("Users online: alice, bob, Robert\n");
    quiet(&mut alice);
    quiet(&mut bob);
}
