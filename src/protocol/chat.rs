//! The line-based chat: a username prompt, join and leave messages, and a
//! handful of slash commands.
//!
//! ```text
//!   NAMING --invalid name--> "Invalid username: use 1-32 letters, digits,
//!                             _ - . Enter your username: " (one line)
//!          --name in use---> "Username taken. Enter your username: "
//!            (in any case)
//!          --good name-----> "Welcome to the chat!\n" to the user,
//!                            "NAME joined the chat\n" to everyone else -> CHATTING
//!   NAMING or CHATTING --name or /nick, the registry to answer later-->
//!            CLAIMING (what follows waits) --answer--> as above, then it
//!   CHATTING --line--------> "NAME: LINE\n" to everyone else
//!            --/who, /msg, /nick, /help, /quit--> see docs/protocols.md
//!   any state --line longer than --max-line--> "ERROR: line too long\n", close
//!   leaving (quit, EOF, reset, timeout, slow consumer), once named:
//!            "NAME left the chat\n" to everyone else, exactly once
//! ```
//!
//! Names are ASCII ([`valid_name`]) and unique without regard to case: the
//! room is keyed by the lowercase name ([`key`]) and keeps the case the user
//! chose for display, so `Observer` cannot join while `observer` is in,
//! `/msg BOB` reaches `bob`, and `/who` sorts `alice, Bob, carol`.
//!
//! What one user types never reaches another's terminal raw: control
//! characters, ANSI escape sequences, and the invisible characters that
//! reorder, hide or break a line (bidirectional controls, zero-width
//! characters, line and paragraph separators) are stripped and invalid UTF-8
//! is replaced before a line is relayed ([`sanitize`]). A name is never
//! stripped into shape: `/nick` refuses what the prompt refuses.

use std::collections::BTreeMap;
use std::time::Instant;

use super::lines::{content, Lines, TooLong, LINE_TOO_LONG};
use super::room;

/// What a user may be called, and what of what they say reaches others.
mod text;
use super::{
    earliest, Address, Claim, CloseReason, ConnId, Ctx, Drain, Limits, Protocol, Remote, Step,
};
use crate::hub::Holder;
use text::{as_typed, key};
pub use text::{sanitize, valid_name};

pub const PROMPT: &[u8] = b"Enter your username: ";
/// The name rule, then the prompt again, on one line: the same rule that
/// `/nick` gives ([`INVALID_NICK`]).
pub const INVALID_NAME: &[u8] =
    b"Invalid username: use 1-32 letters, digits, _ - . Enter your username: ";
/// What `/nick` says to a name that breaks the rule.
pub const INVALID_NICK: &[u8] = b"ERROR: invalid username: use 1-32 letters, digits, _ - .\n";
pub const NAME_TAKEN: &[u8] = b"Username taken. Enter your username: ";
pub const WELCOME: &[u8] = b"Welcome to the chat!\n";
pub const SHUTTING_DOWN: &[u8] = b"Server shutting down\n";
pub const GOODBYE: &[u8] = b"Goodbye!\n";
pub const HELP: &[u8] = b"Commands:\n\
  /who             list the users online\n\
  /msg NAME TEXT   send TEXT to NAME alone\n\
  /nick NEW        change your name to NEW\n\
  /quit            leave the chat\n\
  /help            this list\n";

/// Longest username, in bytes.
pub const MAX_NAME: usize = 32;

/// The chat room: who is in it, by name.
#[derive(Debug)]
pub struct Chat {
    room: Room,
    limits: Limits,
}

/// Who is in the room. `users` are this worker's, for delivery; with
/// several workers the loop's hub also holds every worker's names (its
/// registry, reached through `Ctx::registry`), which decide whether a name
/// is free, who `/who` lists and where a `/msg` goes, and carries what is
/// said to the other workers' users (`Ctx::publish`, `Ctx::direct`).
#[derive(Debug, Default)]
struct Room {
    users: Users,
}

impl Room {
    /// Takes the name `user.name` for `user.id`, unless someone (on any
    /// worker) holds it already, in any case. Renaming oneself to a case
    /// variant is allowed: `previous` is the key one held before.
    ///
    /// With several workers the registry answers (`Ctx::claim`), now in
    /// one process; a registry across machines may answer later
    /// (`Claim::Pending`), and the user is seated when it does
    /// (`Protocol::answer`). With one, the room is the registry.
    fn claim(&mut self, user: User, previous: Option<&str>, ctx: &mut Ctx) -> Claim {
        let wanted = key(&user.name);
        let holder = Holder {
            name: user.name.clone(),
            at: ctx.address(user.id),
        };
        let answer = match ctx.claim(wanted.clone(), holder, previous) {
            Some(answer) => answer,
            None if previous != Some(wanted.as_str()) && self.users.contains_key(&wanted) => {
                Claim::Taken
            }
            None => Claim::Granted,
        };
        if answer == Claim::Granted {
            self.seat(user, previous);
        }
        answer
    }

    /// Seats `user` under its name, in place of `previous` (the key it had).
    fn seat(&mut self, user: User, previous: Option<&str>) {
        let wanted = key(&user.name);
        let mut user = user;
        if let Some(old) = previous.and_then(|old| self.users.remove(old)) {
            // A new name, the same user: in the room since they joined.
            user.joined = old.joined;
        }
        self.users.insert(wanted, user);
    }

    /// Gives up `name` (its owner left).
    fn release(&mut self, name: &str, id: ConnId, ctx: &Ctx) {
        let k = key(name);
        self.users.remove(&k);
        if let Some(mut registry) = ctx.registry() {
            registry.release(&k, ctx.address(id));
        }
    }

    /// Every name in the room, sorted without regard to case.
    fn who(&self, ctx: &Ctx) -> Vec<String> {
        match ctx.registry() {
            Some(registry) => registry.names().map(str::to_string).collect(),
            None => self.users.values().map(|u| u.name.clone()).collect(),
        }
    }

    /// Where the user called `name` (in any case) is.
    fn find(&self, name: &str, ctx: &Ctx) -> Option<Address> {
        let k = key(name);
        match ctx.registry() {
            Some(registry) => registry.get(&k).map(|h| h.at),
            None => self.users.get(&k).map(|u| ctx.address(u.id)),
        }
    }

    /// Shares one encoded chunk with every user but `except`, on every
    /// worker.
    fn tell_others(&mut self, except: ConnId, chunk: Vec<u8>, ctx: &mut Ctx) {
        room::say(except, chunk, self.users.values().map(|u| u.id), ctx);
    }
}

/// Everyone past the prompt, keyed by [`key`] of their name, so that two
/// names differing only in case cannot both be in, and the map's order is
/// the case-insensitive order `/who` prints.
type Users = BTreeMap<String, User>;

/// One named user, as [`Users`] holds them.
#[derive(Debug)]
struct User {
    /// The name as its owner typed it: how everyone else sees it.
    name: String,
    id: ConnId,
    /// When the user joined: what arrived from other workers before is
    /// not theirs to hear.
    joined: Instant,
}

/// One connection's state: its unfinished line, and its name once chosen.
#[derive(Debug, Default)]
pub struct ChatSession {
    lines: Lines,
    /// `None` while the user is at the username prompt.
    name: Option<String>,
    /// When the username prompt was last sent: the answer is due within
    /// `--request-timeout` of it.
    prompted: Option<Instant>,
    /// CLAIMING: a claim on a name waits for the registry's answer
    /// (`Protocol::answer`); what the user sends meanwhile waits in `held`,
    /// in order. Never so in one process, whose registry answers at once.
    claiming: Option<InFlight>,
    held: Vec<u8>,
}

/// A claim on a name waiting for the registry's answer.
#[derive(Debug)]
enum InFlight {
    /// At the prompt: the name chosen.
    Join(String),
    /// `/nick`: from the name held to the one asked for.
    Rename { from: String, to: String },
}

impl Chat {
    /// A room, on one worker of however many.
    pub fn new(limits: Limits) -> Self {
        Self {
            room: Room::default(),
            limits,
        }
    }
}

/// What one read from a user says to everyone else, gathered so that it
/// travels as one shared chunk. Sent before anything that must not overtake
/// it (a private message), and at the end of the read.
#[derive(Default)]
struct Public(Vec<u8>);

impl Public {
    fn say(&mut self, message: std::fmt::Arguments) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = self.0.write_fmt(message);
    }

    fn send(&mut self, room: &mut Room, from: ConnId, ctx: &mut Ctx) {
        room.tell_others(from, std::mem::take(&mut self.0), ctx);
    }
}

/// What `/nick` says to a name someone else holds.
const NAME_TAKEN_NICK: &[u8] = b"ERROR: username taken\n";

/// The user chose `chosen` at the prompt, and has it: welcome, and tell
/// the room.
fn joined(name: &mut Option<String>, public: &mut Public, chosen: String, ctx: &mut Ctx) {
    ctx.write(WELCOME);
    public.say(format_args!("{chosen} joined the chat\n"));
    *name = Some(chosen);
}

/// The user `me` is now called `new`: say so, to them and to the room.
fn renamed(name: &mut Option<String>, public: &mut Public, me: &str, new: &str, ctx: &mut Ctx) {
    ctx.write(format!("You are now {new}\n").as_bytes());
    public.say(format_args!("{me} is now {new}\n"));
    *name = Some(new.to_string());
}

/// One complete line from `id`.
fn on_line(
    room: &mut Room,
    name: &mut Option<String>,
    claiming: &mut Option<InFlight>,
    public: &mut Public,
    id: ConnId,
    line: &[u8],
    ctx: &mut Ctx,
) -> Step {
    let line = content(line);
    let Some(me) = name.clone() else {
        // At the username prompt.
        if !valid_name(line) {
            ctx.write(INVALID_NAME);
        } else {
            let chosen = String::from_utf8_lossy(line).into_owned();
            let user = User {
                name: chosen.clone(),
                id,
                joined: ctx.now,
            };
            match room.claim(user, None, ctx) {
                Claim::Granted => joined(name, public, chosen, ctx),
                // In use, in this case or another.
                Claim::Taken => ctx.write(NAME_TAKEN),
                Claim::Pending => *claiming = Some(InFlight::Join(chosen)),
            }
        }
        return Step::Continue;
    };
    let text = sanitize(line);
    if text.trim().is_empty() {
        return Step::Continue;
    }
    let Some(command) = text.strip_prefix('/') else {
        public.say(format_args!("{me}: {text}\n"));
        return Step::Continue;
    };
    let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    match verb {
        "who" => {
            // In key order: sorted without regard to case.
            let names = room.who(ctx);
            ctx.write(format!("Users online: {}\n", names.join(", ")).as_bytes());
        }
        "msg" => match rest.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => {
                match room.find(to, ctx) {
                    Some(target) => {
                        let message = format!("[private] {me}: {}\n", text.trim());
                        if target == ctx.address(id) {
                            ctx.write(message.as_bytes());
                        } else {
                            // Whatever this user said before goes first.
                            public.send(room, id, ctx);
                            ctx.direct(target, message.into_bytes());
                        }
                    }
                    None => ctx.write(format!("ERROR: no user named {to}\n").as_bytes()),
                }
            }
            _ => ctx.write(b"ERROR: usage: /msg NAME TEXT\n"),
        },
        "nick" => {
            if rest.is_empty() {
                ctx.write(b"ERROR: usage: /nick NEW\n");
            } else if !valid_name(rest.as_bytes()) || !as_typed(line, &text) {
                // Judged as typed, as at the prompt: not renamed to what
                // stripping an override, a zero-width space or an escape left.
                ctx.write(INVALID_NICK);
            } else if rest == me {
                ctx.write(format!("You are already {me}\n").as_bytes());
            } else {
                let user = User {
                    name: rest.to_string(),
                    id,
                    joined: ctx.now,
                };
                match room.claim(user, Some(&key(&me)), ctx) {
                    Claim::Granted => renamed(name, public, &me, rest, ctx),
                    // Taken by someone else; a case variant of one's own
                    // name (alice -> Alice) is free, and only changes the
                    // display.
                    Claim::Taken => ctx.write(NAME_TAKEN_NICK),
                    Claim::Pending => {
                        *claiming = Some(InFlight::Rename {
                            from: me.clone(),
                            to: rest.to_string(),
                        });
                    }
                }
            }
        }
        "quit" => {
            ctx.write(GOODBYE);
            return Step::Close;
        }
        "help" => ctx.write(HELP),
        other => ctx.write(format!("ERROR: unknown command /{other}; try /help\n").as_bytes()),
    }
    Step::Continue
}

impl Protocol for Chat {
    type Session = ChatSession;
    const FANS_OUT: bool = true;
    /// A member may only read: silence is not idleness in a room.
    const QUIET_MEMBERS: bool = true;

    fn open(&mut self, _id: ConnId, ctx: &mut Ctx) -> ChatSession {
        ctx.write(PROMPT);
        ChatSession {
            prompted: Some(ctx.now),
            ..ChatSession::default()
        }
    }

    fn data(&mut self, s: &mut ChatSession, id: ConnId, input: &[u8], ctx: &mut Ctx) -> Step {
        if s.claiming.is_some() {
            // CLAIMING: what follows waits for the answer, in order, and
            // no more than a line's worth of it.
            s.held.extend_from_slice(input);
            if s.held.len() > self.limits.max_line {
                ctx.write(LINE_TOO_LONG);
                return Step::Close;
            }
            return Step::Continue;
        }
        let ChatSession {
            lines,
            name,
            prompted,
            claiming,
            held,
        } = s;
        let room = &mut self.room;
        let mut public = Public::default();
        let now = ctx.now;
        let fed = lines.feed(input, self.limits.max_line, now, |line| {
            if claiming.is_some() {
                // Said after a claim went out: it waits for the answer.
                held.extend_from_slice(line);
                return Step::Continue;
            }
            let step = on_line(room, name, claiming, &mut public, id, line, ctx);
            // A line at the prompt that did not name the user was answered
            // with the prompt again: its clock starts over.
            *prompted = name.is_none().then_some(now);
            step
        });
        if claiming.is_some() {
            // The unfinished line waits with the rest, after them.
            if let Some(rest) = lines.take_rest() {
                held.extend_from_slice(&rest);
            }
        }
        public.send(room, id, ctx);
        match fed {
            Ok(step) => step,
            Err(TooLong) => {
                ctx.write(LINE_TOO_LONG);
                Step::Close
            }
        }
    }

    fn eof(&mut self, s: &mut ChatSession, id: ConnId, ctx: &mut Ctx) -> Step {
        if let Some(rest) = s.lines.take_rest() {
            let mut public = Public::default();
            let room = &mut self.room;
            on_line(
                room,
                &mut s.name,
                &mut s.claiming,
                &mut public,
                id,
                &rest,
                ctx,
            );
            public.send(room, id, ctx);
        }
        Step::Close
    }

    /// The registry answered a claim in flight (CLAIMING): the user joins
    /// or is renamed, or hears that the name is taken, and what they sent
    /// meanwhile is read now, in order.
    fn answer(&mut self, s: &mut ChatSession, id: ConnId, answer: Claim, ctx: &mut Ctx) -> Step {
        let Some(in_flight) = s.claiming.take() else {
            return Step::Continue;
        };
        let mut public = Public::default();
        let granted = answer == Claim::Granted;
        match in_flight {
            InFlight::Join(chosen) => {
                if granted {
                    let user = User {
                        name: chosen.clone(),
                        id,
                        joined: ctx.now,
                    };
                    self.room.seat(user, None);
                    joined(&mut s.name, &mut public, chosen, ctx);
                } else {
                    ctx.write(NAME_TAKEN);
                }
                s.prompted = s.name.is_none().then_some(ctx.now);
            }
            InFlight::Rename { from, to } => {
                if granted {
                    let user = User {
                        name: to.clone(),
                        id,
                        joined: ctx.now,
                    };
                    self.room.seat(user, Some(&key(&from)));
                    renamed(&mut s.name, &mut public, &from, &to, ctx);
                } else {
                    ctx.write(NAME_TAKEN_NICK);
                }
            }
        }
        public.send(&mut self.room, id, ctx);
        let held = std::mem::take(&mut s.held);
        if held.is_empty() {
            return Step::Continue;
        }
        self.data(s, id, &held, ctx)
    }

    fn shutdown(&mut self, _s: &mut ChatSession, _id: ConnId, ctx: &mut Ctx) -> Drain {
        ctx.write(SHUTTING_DOWN);
        Drain::Close
    }

    /// `user=NAME` once named (the access log's field for this mode).
    fn summary(&self, s: &ChatSession) -> Option<String> {
        s.name.as_ref().map(|name| format!("user={name}"))
    }

    /// At the prompt: the name is due within `--request-timeout` of the
    /// last prompt. Always: a line is due within the idle timeout of its
    /// first byte.
    fn deadline(&self, s: &ChatSession) -> Option<Instant> {
        let prompt = match (&s.name, s.prompted) {
            (None, Some(at)) => self.limits.request_timeout.map(|d| at + d),
            _ => None,
        };
        earliest(prompt, s.lines.deadline(self.limits.line_timeout))
    }

    fn closed(&mut self, s: ChatSession, id: ConnId, _why: CloseReason, ctx: &mut Ctx) {
        if let Some(name) = s.name {
            self.room.release(&name, id, ctx);
            let left = format!("{name} left the chat\n").into_bytes();
            self.room.tell_others(id, left, ctx);
        }
    }

    /// What users on other workers said (lines, joins, leaves, renames),
    /// for every user here; private messages for one user here.
    fn remote(&mut self, message: Remote, ctx: &mut Ctx) {
        let users = &self.room.users;
        let here = |id| users.values().any(|u| u.id == id);
        room::arrived(message, users.values().map(|u| (u.id, u.joined)), here, ctx);
    }
}

#[cfg(test)]
mod tests {
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
}
