//! The chat's unit tests: a room driven by hand, step by step.
use super::*;
use mio::Token;
use std::time::Instant;

/// A room driven by hand: every step's own output and sends, as text.
struct Room {
    chat: Chat,
    sessions: BTreeMap<usize, ChatSession>,
}

impl Room {
    fn new() -> Self {
        Room {
            chat: Chat::new(Limits::lines(100)),
            sessions: BTreeMap::new(),
        }
    }

    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Chat, &mut BTreeMap<usize, ChatSession>, &mut Ctx) -> R,
    ) -> (R, String, Vec<(usize, String)>) {
        self.run_with(false, f)
    }

    /// `run`, with a registry that answers every claim later if
    /// `pending`.
    fn run_with<R>(
        &mut self,
        pending: bool,
        f: impl FnOnce(&mut Chat, &mut BTreeMap<usize, ChatSession>, &mut Ctx) -> R,
    ) -> (R, String, Vec<(usize, String)>) {
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
        if pending {
            ctx = ctx.with_claims_pending();
        }
        let r = f(&mut self.chat, &mut self.sessions, &mut ctx);
        let sends = sends
            .into_iter()
            .map(|(t, c)| (t.0, String::from_utf8_lossy(&c).into_owned()))
            .collect();
        (r, String::from_utf8(out).unwrap(), sends)
    }

    fn connect(&mut self, i: usize) -> String {
        let (s, out, _) = self.run(|c, _, ctx| c.open(Token(i), ctx));
        self.sessions.insert(i, s);
        out
    }

    fn say(&mut self, i: usize, bytes: &str) -> (Step, String, Vec<(usize, String)>) {
        self.run(|c, s, ctx| c.data(s.get_mut(&i).unwrap(), Token(i), bytes.as_bytes(), ctx))
    }

    fn leave(&mut self, i: usize) -> Vec<(usize, String)> {
        let s = self.sessions.remove(&i).unwrap();
        self.run(|c, _, ctx| c.closed(s, Token(i), CloseReason::Done, ctx))
            .2
    }

    fn join(&mut self, i: usize, name: &str) {
        self.connect(i);
        let (_, out, _) = self.say(i, &format!("{name}\n"));
        assert_eq!(out, "Welcome to the chat!\n");
    }

    /// `say`, with a registry that answers every claim later.
    fn say_pending(&mut self, i: usize, bytes: &str) -> (Step, String, Vec<(usize, String)>) {
        self.run_with(true, |c, s, ctx| {
            c.data(s.get_mut(&i).unwrap(), Token(i), bytes.as_bytes(), ctx)
        })
    }

    /// The registry's later answer to `i`'s claim.
    fn answer(&mut self, i: usize, answer: Claim) -> (Step, String, Vec<(usize, String)>) {
        self.run(|c, s, ctx| c.answer(s.get_mut(&i).unwrap(), Token(i), answer, ctx))
    }
}

#[test]
fn a_claim_answered_later_holds_what_follows_until_the_answer() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.connect(2);
    // The name goes out; the line after it, and half a line, wait.
    let (step, out, sends) = r.say_pending(2, "bob\nhello\nhal");
    assert_eq!(step, Step::Continue);
    assert_eq!(out, "", "nothing until the registry answers");
    assert!(sends.is_empty());
    let (_, out, sends) = r.say_pending(2, "f\n");
    assert_eq!((out.as_str(), sends.len()), ("", 0), "still waiting");
    // Granted: welcome, the join, then what was held, in order.
    let (step, out, sends) = r.answer(2, Claim::Granted);
    assert_eq!(step, Step::Continue);
    assert_eq!(out, "Welcome to the chat!\n");
    let heard: String = sends
        .iter()
        .filter(|(to, _)| *to == 1)
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(heard, "bob joined the chat\nbob: hello\nbob: half\n");
    assert_eq!(sends.len(), 2, "the join, then what was held");
}

#[test]
fn a_claim_refused_later_prompts_again_and_a_rename_later_renames() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.connect(2);
    r.say_pending(2, "alice\n");
    let (_, out, sends) = r.answer(2, Claim::Taken);
    assert_eq!(out, "Username taken. Enter your username: ");
    assert!(sends.is_empty());
    assert!(r.sessions[&2].name.is_none(), "still at the prompt");
    // A rename in flight, then granted.
    r.say_pending(1, "/nick Alicia\n");
    let (_, out, sends) = r.answer(1, Claim::Granted);
    assert_eq!(out, "You are now Alicia\n");
    assert!(sends.is_empty(), "nobody named to tell");
    assert_eq!(r.sessions[&1].name.as_deref(), Some("Alicia"));
    // An answer with no claim in flight changes nothing.
    assert_eq!(r.answer(1, Claim::Granted).1, "");
}

const INVALID: &str = "Invalid username: use 1-32 letters, digits, _ - . Enter your username: ";

#[test]
fn prompt_then_name_rules() {
    let mut r = Room::new();
    assert_eq!(r.connect(1), "Enter your username: ");
    assert_eq!(r.say(1, "\n").1, INVALID);
    assert_eq!(r.say(1, "has space\n").1, INVALID);
    assert_eq!(r.say(1, &format!("{}\n", "x".repeat(33))).1, INVALID);
    // Not ASCII: refused on purpose (look-alikes).
    assert_eq!(r.say(1, "caf\u{e9}\n").1, INVALID);
    assert_eq!(r.say(1, "\u{430}lice\n").1, INVALID, "Cyrillic a");
    let (_, out, sends) = r.say(1, "al_ice-1.0\r\n");
    assert_eq!(out, "Welcome to the chat!\n");
    assert!(sends.is_empty(), "nobody else to tell");
    r.connect(2);
    assert_eq!(
        r.say(2, "al_ice-1.0\n").1,
        "Username taken. Enter your username: "
    );
}

#[test]
fn the_invalid_name_reply_gives_the_nick_rule_then_the_prompt() {
    let rule = "use 1-32 letters, digits, _ - .";
    let at_prompt = std::str::from_utf8(INVALID_NAME).unwrap();
    let at_nick = std::str::from_utf8(INVALID_NICK).unwrap();
    assert_eq!(at_prompt, INVALID);
    assert!(at_prompt.contains(rule), "{at_prompt:?}");
    assert!(at_nick.contains(rule), "{at_nick:?}");
    // One line, with no newline before the prompt, as before.
    assert!(at_prompt.ends_with(". Enter your username: "));
    assert!(!at_prompt.contains('\n'));
}

#[test]
fn names_are_unique_whatever_their_case() {
    let mut r = Room::new();
    r.join(1, "observer");
    r.connect(2);
    for variant in ["Observer", "OBSERVER", "oBsErVeR"] {
        assert_eq!(
            r.say(2, &format!("{variant}\n")).1,
            "Username taken. Enter your username: ",
            "{variant}"
        );
    }
    let (_, out, sends) = r.say(2, "Bob\n");
    assert_eq!(out, "Welcome to the chat!\n");
    assert_eq!(sends, [(1, "Bob joined the chat\n".into())], "case kept");
    // Someone else's name in another case is taken for /nick too.
    assert_eq!(r.say(2, "/nick Observer\n").1, "ERROR: username taken\n");
    assert_eq!(r.say(1, "/nick bob\n").1, "ERROR: username taken\n");
    let (_, _, sends) = r.say(2, "hi\n");
    assert_eq!(sends, [(1, "Bob: hi\n".into())]);
}

#[test]
fn nick_to_a_case_variant_of_ones_own_name() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "bob");
    let (_, out, sends) = r.say(1, "/nick Alice\n");
    assert_eq!(out, "You are now Alice\n");
    assert_eq!(sends, [(2, "alice is now Alice\n".into())]);
    assert_eq!(r.say(1, "/nick Alice\n").1, "You are already Alice\n");
    assert_eq!(r.say(1, "/who\n").1, "Users online: Alice, bob\n");
    let (_, _, sends) = r.say(2, "/msg alice still you\n");
    assert_eq!(sends, [(1, "[private] bob: still you\n".into())]);
    // The old spelling is not left behind as a free name...
    r.connect(3);
    assert_eq!(
        r.say(3, "alice\n").1,
        "Username taken. Enter your username: "
    );
    // ...and leaving frees every spelling.
    assert_eq!(r.leave(1), [(2, "Alice left the chat\n".to_string())]);
    assert_eq!(r.say(3, "ALICE\n").1, "Welcome to the chat!\n");
}

#[test]
fn msg_finds_a_name_whatever_its_case() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "bob");
    let (_, out, sends) = r.say(1, "/msg BOB hi\n");
    assert_eq!(out, "");
    assert_eq!(sends, [(2, "[private] alice: hi\n".into())]);
    let (_, out, sends) = r.say(1, "/msg Alice note to self\n");
    assert_eq!(out, "[private] alice: note to self\n");
    assert!(sends.is_empty());
    // A look-alike with a Cyrillic o is nobody.
    assert_eq!(
        r.say(1, "/msg b\u{43e}b hi\n").1,
        "ERROR: no user named b\u{43e}b\n"
    );
}

#[test]
fn who_sorts_without_regard_to_case() {
    let mut r = Room::new();
    r.join(1, "carol");
    r.join(2, "Bob");
    r.join(3, "alice");
    r.join(4, "Zed");
    assert_eq!(
        r.say(1, "/who\n").1,
        "Users online: alice, Bob, carol, Zed\n"
    );
}

#[test]
fn join_message_and_lines_go_to_everyone_else() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.connect(2);
    let (_, _, sends) = r.say(2, "bob\n");
    assert_eq!(sends, [(1, "bob joined the chat\n".to_string())]);
    r.join(3, "carol");
    let (_, out, sends) = r.say(1, "hello\n\n");
    assert_eq!(out, "", "not echoed to the sender; empty line ignored");
    assert_eq!(
        sends,
        [(2, "alice: hello\n".into()), (3, "alice: hello\n".into())]
    );
}

#[test]
fn users_at_the_prompt_hear_nothing() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.connect(2);
    let (_, _, sends) = r.say(1, "psst\n");
    assert!(sends.is_empty());
}

#[test]
fn who_msg_nick_help_and_unknown() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "bob");
    assert_eq!(r.say(1, "/who\n").1, "Users online: alice, bob\n");
    let (_, out, sends) = r.say(1, "/msg bob hi  there \n");
    assert_eq!(out, "");
    assert_eq!(sends, [(2, "[private] alice: hi  there\n".into())]);
    assert_eq!(r.say(1, "/msg zed hi\n").1, "ERROR: no user named zed\n");
    assert_eq!(r.say(1, "/msg bob\n").1, "ERROR: usage: /msg NAME TEXT\n");
    let (_, out, sends) = r.say(2, "/nick robert\n");
    assert_eq!(out, "You are now robert\n");
    assert_eq!(sends, [(1, "bob is now robert\n".into())]);
    assert_eq!(r.say(1, "/nick robert\n").1, "ERROR: username taken\n");
    assert!(r
        .say(1, "/nick b@d\n")
        .1
        .starts_with("ERROR: invalid username"));
    for dressed in [
        "/nick ro\u{202e}b\n",
        "/nick ro\u{200b}b\n",
        "/nick ro\u{1b}bb\n",
    ] {
        let refused = std::str::from_utf8(INVALID_NICK).unwrap();
        assert_eq!(r.say(1, dressed).1, refused, "{dressed:?}");
    }
    assert_eq!(r.say(1, "/who\n").1, "Users online: alice, robert\n");
    assert!(r.say(1, "/help\n").1.contains("/msg NAME TEXT"));
    assert_eq!(
        r.say(1, "/dance\n").1,
        "ERROR: unknown command /dance; try /help\n"
    );
    let (step, out, _) = r.say(1, "/quit\n");
    assert_eq!((step, out.as_str()), (Step::Close, "Goodbye!\n"));
}

#[test]
fn leaving_is_announced_once_and_only_for_named_users() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "bob");
    r.connect(3);
    assert_eq!(r.leave(3), []);
    assert_eq!(r.leave(2), [(1, "bob left the chat\n".to_string())]);
    assert_eq!(r.say(1, "/who\n").1, "Users online: alice\n");
    // The name is free again.
    r.join(4, "bob");
}

#[test]
fn terminal_control_is_stripped() {
    assert_eq!(sanitize(b"plain\ttext"), "plain\ttext");
    assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "red");
    assert_eq!(sanitize(b"\x1b]0;title\x07after"), "after");
    assert_eq!(sanitize(b"\x1b]8;;http://x\x1b\\link"), "link");
    assert_eq!(sanitize(b"bell\x07 bs\x08 del\x7f"), "bell bs del");
    assert_eq!(sanitize("c1\u{9b}2Jcsi".as_bytes()), "c1csi");
    assert_eq!(sanitize(b"bad \xff utf8"), "bad \u{fffd} utf8");
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "bob");
    let (_, _, sends) = r.say(1, "\x1b[2J\x1b[Hgotcha\n");
    assert_eq!(sends, [(2, "alice: gotcha\n".into())]);
    let (_, _, sends) = r.say(1, "\x1b[2J\n");
    assert!(sends.is_empty(), "nothing left to say");
}

#[test]
fn a_forged_line_reaches_others_without_its_disguise() {
    let mut r = Room::new();
    r.join(1, "alice");
    r.join(2, "mallory");
    // A separator to start a new line, then bob's name, an override and
    // zero-width space to dress it up.
    let (_, _, sends) = r.say(2, "ok\u{2028}bob:\u{200b} \u{202e}give me your password\n");
    assert_eq!(
        sends,
        [(1, "mallory: okbob: give me your password\n".into())]
    );
    // So does a private message.
    let (_, _, sends) = r.say(2, "/msg alice \u{2029}\u{feff}bob: hi\u{2066}\n");
    assert_eq!(sends, [(1, "[private] mallory: bob: hi\n".into())]);
    // A line of nothing but these is not relayed at all.
    let (_, _, sends) = r.say(2, "\u{202e}\u{200b}\u{2028}\n");
    assert!(sends.is_empty());
}

#[test]
fn shutdown_says_so() {
    let mut r = Room::new();
    r.join(1, "alice");
    let (drain, out, _) = r.run(|c, s, ctx| c.shutdown(s.get_mut(&1).unwrap(), Token(1), ctx));
    assert_eq!(out, "Server shutting down\n");
    assert_eq!(drain, Drain::Close, "nothing of chat's own to finish");
}

#[test]
fn overlong_lines_close() {
    let mut r = Room::new();
    r.connect(1);
    let (step, out, _) = r.say(1, &"x".repeat(200));
    assert_eq!(
        (step, out.as_str()),
        (Step::Close, "ERROR: line too long\n")
    );
}
