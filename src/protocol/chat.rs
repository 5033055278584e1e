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
    earliest, Address, Claim, CloseReason, ConnId, Ctx, Drain, Limits, Protocol, Remote, Shared,
    Step,
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
/// Said to a new user when the chat cannot claim a name (`--cluster`,
/// Redis unreachable) within 5 s; the connection then closes.
pub const UNAVAILABLE: &[u8] = b"Chat is unavailable right now. Try again later.\n";
/// What `/nick` says when the chat cannot claim the name in time.
pub const UNAVAILABLE_NICK: &[u8] = b"ERROR: chat is unavailable right now; try again later\n";
/// Said to a user whose name another instance took while this one was
/// cut off from Redis for longer than the name's lease; then a close.
pub const NAME_LOST: &[u8] =
    b"Your name was taken on another server while this one was cut off. Please reconnect.\n";
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
    fn release(&mut self, name: &str, id: ConnId, ctx: &mut Ctx) {
        let k = key(name);
        if self.users.get(&k).is_some_and(|u| u.id == id) {
            self.users.remove(&k);
        }
        ctx.release(&k, id);
    }

    /// Every name in the room, on every worker and instance, sorted
    /// without regard to case.
    fn who(&self, ctx: &mut Ctx) -> Vec<String> {
        // Filled by `extend` (`insert`), not `collect`: collecting sorts
        // first, and would bring a stable sort's code into the binary.
        let mut all = BTreeMap::new();
        all.extend(ctx.elsewhere());
        match ctx.registry() {
            Some(registry) => all.extend(registry.names().map(|n| (key(n), n.to_string()))),
            None => all.extend(self.users.iter().map(|(k, u)| (k.clone(), u.name.clone()))),
        }
        all.into_values().collect()
    }

    /// Where the user called `name` (in any case) is.
    fn find(&self, name: &str, ctx: &mut Ctx) -> Option<Address> {
        let k = key(name);
        let here = match ctx.registry() {
            Some(registry) => registry.get(&k).map(|h| h.at),
            None => self.users.get(&k).map(|u| ctx.address(u.id)),
        };
        here.or_else(|| ctx.find_elsewhere(&k))
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
                // Only ever an answer given later (`Protocol::answer`).
                Claim::Unavailable | Claim::Lost => {}
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
                    Claim::Unavailable | Claim::Lost => {}
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
        if answer == Claim::Lost {
            // Not this user's to keep: it leaves. Its leaving is told to
            // the users of this worker only: everywhere else the name's
            // new holder is still in.
            if let Some(name) = s.name.take() {
                self.room.users.remove(&key(&name));
                let left = Shared::from(format!("{name} left the chat\n").into_bytes());
                for user in self.room.users.values().filter(|u| u.id != id) {
                    ctx.send(user.id, left.clone());
                }
            }
            ctx.write(NAME_LOST);
            return Step::Close;
        }
        let Some(in_flight) = s.claiming.take() else {
            return Step::Continue;
        };
        if answer == Claim::Unavailable {
            return match in_flight {
                InFlight::Join(_) => {
                    ctx.write(UNAVAILABLE);
                    Step::Close
                }
                InFlight::Rename { .. } => {
                    ctx.write(UNAVAILABLE_NICK);
                    let held = std::mem::take(&mut s.held);
                    if held.is_empty() {
                        Step::Continue
                    } else {
                        self.data(s, id, &held, ctx)
                    }
                }
            };
        }
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
        // A claim in flight is given up: a name granted after the user
        // left must not stay held for nobody.
        match &s.claiming {
            Some(InFlight::Join(wanted)) | Some(InFlight::Rename { to: wanted, .. }) => {
                ctx.release(&key(wanted), id);
            }
            None => {}
        }
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
mod tests;
