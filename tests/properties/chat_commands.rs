//! Chat's command parser (`protocol/chat.rs`, `on_line`: `/msg`, `/nick`,
//! `/who`, ...), driven through the public `Protocol` API as the loop
//! drives it, with the room on one worker (no hub): the invariants of the
//! fuzz target for the chat commands, and more.
//!
//! - whatever a user types, cut into any reads: nothing panics, the typer
//!   and every other user receive the same bytes however it was cut, and
//!   nothing anyone receives holds a character `sanitize` must strip;
//! - against a model of the room (who is called what): every command's
//!   answer is the one the protocol's documentation gives, `/msg` reaches
//!   exactly its target (in any case) and no one else, `/nick` renames
//!   only to a free, valid name as typed, `/who` lists everyone sorted
//!   without regard to case, and a line reaches everyone but its sender.
//!
//! Commands are generated with extra spaces, case variants of names, names
//! that break the rule, and invisible characters inside them.

use std::collections::BTreeMap;
use std::time::Instant;

use mio::Token;
use monoloop::protocol::chat::{
    sanitize, valid_name, Chat, ChatSession, HELP, INVALID_NAME, INVALID_NICK, WELCOME,
};
use monoloop::protocol::{CloseReason, Ctx, Limits, Protocol, Step};
use proptest::prelude::*;

use super::chat_text::forbidden;
use super::{cases, cuts, pieces};

/// A room driven by hand: one `Chat` and its sessions, by number.
struct Room {
    chat: Chat,
    sessions: BTreeMap<usize, ChatSession>,
    /// What each connection received from others, in order.
    received: BTreeMap<usize, Vec<u8>>,
}

impl Room {
    fn new() -> Self {
        Room {
            chat: Chat::new(Limits::lines(200)),
            sessions: BTreeMap::new(),
            received: BTreeMap::new(),
        }
    }

    /// Runs one step; returns its step and what the stepping connection
    /// itself was sent; what others were sent goes to `received`.
    fn step(
        &mut self,
        f: impl FnOnce(&mut Chat, &mut BTreeMap<usize, ChatSession>, &mut Ctx) -> Step,
    ) -> (Step, Vec<u8>) {
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
        let step = f(&mut self.chat, &mut self.sessions, &mut ctx);
        for (to, chunk) in sends {
            let to = to.0;
            self.received
                .entry(to)
                .or_default()
                .extend_from_slice(&chunk);
        }
        (step, out)
    }

    fn connect(&mut self, i: usize) {
        let (mut out, mut sends) = (Vec::new(), Vec::new());
        let mut ctx = Ctx::new(Instant::now(), &mut out, &mut sends);
        let s = self.chat.open(Token(i), &mut ctx);
        self.sessions.insert(i, s);
    }

    fn say(&mut self, i: usize, bytes: &[u8]) -> (Step, Vec<u8>) {
        self.step(|c, s, ctx| c.data(s.get_mut(&i).unwrap(), Token(i), bytes, ctx))
    }

    fn join(&mut self, i: usize, name: &str) {
        self.connect(i);
        let (_, out) = self.say(i, format!("{name}\n").as_bytes());
        assert_eq!(out, WELCOME, "{name} could not join");
    }

    fn leave(&mut self, i: usize) {
        let s = self.sessions.remove(&i).unwrap();
        self.step(|c, _, ctx| {
            c.closed(s, Token(i), CloseReason::Done, ctx);
            Step::Close
        });
    }

    /// What everyone received, and forget it.
    fn take(&mut self) -> BTreeMap<usize, Vec<u8>> {
        std::mem::take(&mut self.received)
    }
}

/// Nothing to strip in what a user receives (its lines end in LF).
fn clean(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    match text.chars().find(|&c| c != '\n' && forbidden(c)) {
        Some(c) => Err(format!("{c:?} reached a user in {text:?}")),
        None => Ok(()),
    }
}

/// Lines a user might type: commands with odd spacing and arguments, and
/// hostile bytes.
fn typed() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "/msg",
            "/nick",
            "/who",
            "/help",
            "/quit",
            "/MSG",
            "/",
            "//",
            "/msg ",
            "bob",
            "BOB",
            "alice",
            "Carol",
            "x",
            " ",
            "  ",
            "\t",
            "\r",
            "\n",
            "\r\n",
            "hi",
            "é",
            "\u{202e}",
            "\u{200b}",
            "\x1b[31m",
            "\x1b]0;t\x07",
            "\u{2028}",
            "\u{85}",
            "\x00",
            "\x7f",
            "..",
            "a-b.c_d",
            "0123456789012345678901234567890123",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(word, 0..16).prop_map(|w| w.concat())
}

fn three_users() -> Room {
    let mut room = Room::new();
    room.join(0, "alice");
    room.join(1, "Bob");
    room.join(2, "carol");
    room.take();
    room
}

/// `input` from alice, in `pieces`; what everyone was sent, alice's own
/// output under her number, and how the last read ended.
fn typed_by_alice(input: &[&[u8]]) -> (BTreeMap<usize, Vec<u8>>, Step) {
    let mut room = three_users();
    let mut own = Vec::new();
    let mut last = Step::Continue;
    for piece in input {
        let (step, out) = room.say(0, piece);
        own.extend(out);
        last = step;
        if step != Step::Continue {
            break;
        }
    }
    let mut got = room.take();
    got.insert(0, own);
    (got, last)
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn what_anyone_types_reaches_everyone_the_same_and_clean(input in typed(), cut in cuts()) {
        let once = typed_by_alice(&[&input]);
        let many = typed_by_alice(&pieces(&input, &cut));
        prop_assert_eq!(&once, &many, "the same bytes in pieces were answered otherwise");
        for bytes in once.0.values() {
            if let Err(e) = clean(bytes) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

/// A name that follows the rule, 1 to 8 characters.
fn good_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(b"abcdeABCDE019_-.".to_vec()), 1..8)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

/// One user's command, its arguments chosen against the room's names by
/// index (resolved when it runs, against the model).
#[derive(Debug, Clone)]
enum Op {
    /// A line for the room.
    Say(usize, String),
    /// `/msg` to user `target`'s name (in another case if `upper`), or to
    /// `other` if `target` is out of range; `pad` spaces around.
    Msg {
        from: usize,
        target: usize,
        upper: bool,
        other: String,
        text: String,
        pad: usize,
    },
    /// `/nick` to a user's name (any case), a new name, a name with an
    /// invisible character in it, or one that breaks the rule.
    Nick {
        from: usize,
        target: usize,
        upper: bool,
        fresh: String,
        kind: u8,
    },
    Who(usize),
    Help(usize),
    Unknown(usize, String),
    /// A new connection answers the prompt with `name`, or with a user's
    /// name in another case if `variant` names one.
    Join {
        name: String,
        variant: Option<(usize, bool)>,
    },
    /// `/quit`, then the connection closes.
    Quit(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..6;
    let text = prop::collection::vec(
        prop::sample::select(vec!["hi", "there", "é", "\u{200b}", "x"]),
        1..4,
    )
    .prop_map(|w| w.join(" "));
    prop_oneof![
        (who.clone(), text.clone()).prop_map(|(u, t)| Op::Say(u, t)),
        (
            who.clone(),
            0usize..8,
            any::<bool>(),
            good_name(),
            text,
            1usize..3
        )
            .prop_map(|(from, target, upper, other, text, pad)| Op::Msg {
                from,
                target,
                upper,
                other,
                text,
                pad
            }),
        (who.clone(), 0usize..6, any::<bool>(), good_name(), 0u8..5).prop_map(
            |(from, target, upper, fresh, kind)| Op::Nick {
                from,
                target,
                upper,
                fresh,
                kind
            }
        ),
        who.clone().prop_map(Op::Who),
        who.clone().prop_map(Op::Help),
        (
            who,
            prop::sample::select(vec!["whom", "ms", "nickname", "WHO", "quitx"])
        )
            .prop_map(|(u, v)| Op::Unknown(u, v.to_string())),
        (
            prop_oneof![
                good_name(),
                Just("a b".to_string()),
                Just("".to_string()),
                Just("mal\u{202e}lory".to_string()),
                Just("x".repeat(33)),
            ],
            prop::option::weighted(0.3, (0usize..6, any::<bool>())),
        )
            .prop_map(|(name, variant)| Op::Join { name, variant }),
        (0usize..6).prop_map(Op::Quit),
    ]
}

/// The lowercase key a name is unique under.
fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn flip(name: &str, upper: bool) -> String {
    if upper {
        name.to_ascii_uppercase()
    } else {
        name.to_ascii_lowercase()
    }
}

proptest! {
    #![proptest_config(cases(150))]

    #[test]
    fn commands_do_what_the_documentation_says(
        first in prop::collection::vec(good_name(), 2..5),
        more in prop::collection::vec(op(), 1..25),
    ) {
        // A room with a few users in it first, then anything.
        let join = |name: &String| Op::Join { name: name.clone(), variant: None };
        let ops: Vec<Op> = first.iter().map(join).chain(more).collect();
        let mut room = Room::new();
        // The model: connection number -> name, for those named.
        let mut names: BTreeMap<usize, String> = BTreeMap::new();
        let mut next = 0;
        for op in &ops {
            let members: Vec<usize> = names.keys().copied().collect();
            let pick = |i: usize| members.get(i % members.len().max(1)).copied();
            // (who types, the line, what they expect, what the others expect)
            let mut to_others: BTreeMap<usize, String> = BTreeMap::new();
            let (me, line, own): (usize, String, String) = match op {
                Op::Join { name, variant } => {
                    let name = match variant.and_then(|(t, upper)| Some((pick(t)?, upper))) {
                        Some((t, upper)) => flip(&names[&t], upper),
                        None => name.clone(),
                    };
                    let name = &name;
                    let me = next;
                    next += 1;
                    room.connect(me);
                    let taken = names.values().any(|n| key(n) == key(name));
                    let own = if !valid_name(name.as_bytes()) {
                        String::from_utf8(INVALID_NAME.to_vec()).unwrap()
                    } else if taken {
                        "Username taken. Enter your username: ".to_string()
                    } else {
                        tell_all_but(&names, me, format!("{name} joined the chat\n"), &mut to_others);
                        names.insert(me, name.clone());
                        String::from_utf8(WELCOME.to_vec()).unwrap()
                    };
                    let (_, out) = room.say(me, format!("{name}\n").as_bytes());
                    prop_assert_eq!(String::from_utf8_lossy(&out), own, "joining as {:?}", name);
                    if !names.contains_key(&me) {
                        // Left at the prompt: gone without a word.
                        room.leave(me);
                    }
                    prop_assert_eq!(strings(room.take()), to_others);
                    continue;
                }
                Op::Quit(u) => {
                    let Some(me) = pick(*u) else { continue };
                    let (step, out) = room.say(me, b"/quit\n");
                    prop_assert_eq!(step, Step::Close);
                    prop_assert_eq!(&out[..], b"Goodbye!\n");
                    room.leave(me);
                    let name = names.remove(&me).unwrap();
                    tell_all_but(&names, me, format!("{name} left the chat\n"), &mut to_others);
                    prop_assert_eq!(strings(room.take()), to_others);
                    continue;
                }
                Op::Say(u, text) => {
                    let Some(me) = pick(*u) else { continue };
                    let shown = sanitize(text.as_bytes());
                    if !shown.trim().is_empty() {
                        tell_all_but(&names, me, format!("{}: {shown}\n", names[&me]), &mut to_others);
                    }
                    (me, text.clone(), String::new())
                }
                Op::Msg { from, target, upper, other, text, pad } => {
                    let Some(me) = pick(*from) else { continue };
                    let to = match pick(*target).filter(|_| *target < members.len()) {
                        Some(t) => flip(&names[&t], *upper),
                        None => other.clone(),
                    };
                    let sp = " ".repeat(*pad);
                    let line = format!("/msg{sp}{to}{sp}{text}");
                    let shown = sanitize(text.as_bytes());
                    let said = shown.trim();
                    let holder = names.iter().find(|(_, n)| key(n) == key(&to)).map(|(&u, _)| u);
                    let own = if said.is_empty() {
                        "ERROR: usage: /msg NAME TEXT\n".to_string()
                    } else {
                        match holder {
                            None => format!("ERROR: no user named {to}\n"),
                            Some(t) if t == me => format!("[private] {}: {said}\n", names[&me]),
                            Some(t) => {
                                to_others.insert(t, format!("[private] {}: {said}\n", names[&me]));
                                String::new()
                            }
                        }
                    };
                    (me, line, own)
                }
                Op::Nick { from, target, upper, fresh, kind } => {
                    let Some(me) = pick(*from) else { continue };
                    let wanted = match kind {
                        0 => flip(&names[&pick(*target).unwrap()], *upper),
                        1 => fresh.clone(),
                        2 => format!("{fresh}\u{200b}"),
                        3 => format!("{fresh} x"),
                        _ => names[&me].clone(),
                    };
                    let line = format!("/nick  {wanted} ");
                    let holder = names.iter().find(|(_, n)| key(n) == key(&wanted)).map(|(&u, _)| u);
                    let own = if !valid_name(wanted.as_bytes()) {
                        String::from_utf8(INVALID_NICK.to_vec()).unwrap()
                    } else if wanted == names[&me] {
                        format!("You are already {wanted}\n")
                    } else if holder.is_some_and(|h| h != me) {
                        "ERROR: username taken\n".to_string()
                    } else {
                        let old = names.insert(me, wanted.clone()).unwrap();
                        tell_all_but(&names, me, format!("{old} is now {wanted}\n"), &mut to_others);
                        format!("You are now {wanted}\n")
                    };
                    (me, line, own)
                }
                Op::Who(u) => {
                    let Some(me) = pick(*u) else { continue };
                    let mut all: Vec<&String> = names.values().collect();
                    all.sort_by_key(|n| key(n));
                    let list: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
                    (me, "/who".to_string(), format!("Users online: {}\n", list.join(", ")))
                }
                Op::Help(u) => {
                    let Some(me) = pick(*u) else { continue };
                    (me, "/help".into(), String::from_utf8(HELP.to_vec()).unwrap())
                }
                Op::Unknown(u, verb) => {
                    let Some(me) = pick(*u) else { continue };
                    (me, format!("/{verb} x"), format!("ERROR: unknown command /{verb}; try /help\n"))
                }
            };
            let (step, out) = room.say(me, format!("{line}\r\n").as_bytes());
            prop_assert_eq!(step, Step::Continue);
            prop_assert_eq!(String::from_utf8_lossy(&out), own, "{:?} answered otherwise", line);
            prop_assert_eq!(strings(room.take()), to_others, "{:?} reached others otherwise", line);
        }
    }
}

/// What everyone named but `me` is to receive: `what`.
fn tell_all_but(
    names: &BTreeMap<usize, String>,
    me: usize,
    what: String,
    to: &mut BTreeMap<usize, String>,
) {
    for &u in names.keys().filter(|&&u| u != me) {
        to.insert(u, what.clone());
    }
}

fn strings(m: BTreeMap<usize, Vec<u8>>) -> BTreeMap<usize, String> {
    m.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}
