//! A relay's room on this worker: what broadcast and chat both do with
//! it. Saying a batch of lines to everyone but the sender (one chunk,
//! shared by every receiver here and published to every other worker), and
//! delivering what arrives from other workers to the members here.

use std::time::Instant;

use super::{ConnId, Ctx, Remote, Shared};

/// Says `batch` to every connection in `members` but `from`, and to the
/// room on every other worker: one chunk, encoded once, counted once
/// against the sender's fan-out budget ([`Ctx::publish`]).
pub fn say(from: ConnId, batch: Vec<u8>, members: impl Iterator<Item = ConnId>, ctx: &mut Ctx) {
    if batch.is_empty() {
        return;
    }
    let chunk = ctx.publish(batch);
    for to in members.filter(|&m| m != from) {
        ctx.send(to, chunk.clone());
    }
}

/// Delivers what another worker sent: a room message to every connection
/// in `members` (each with the time it joined) that was in the room when
/// the message arrived here, a direct one to its connection if
/// `is_member` says it is still here.
pub fn arrived(
    message: Remote,
    members: impl Iterator<Item = (ConnId, Instant)>,
    is_member: impl Fn(ConnId) -> bool,
    ctx: &mut Ctx,
) {
    match message {
        Remote::Room { chunk, at } => {
            for (to, _) in members.filter(|&(_, joined)| joined <= at) {
                ctx.send(to, Shared::Cross(chunk.clone()));
            }
        }
        Remote::Direct { to, chunk } => {
            if is_member(to) {
                ctx.send(to, Shared::Cross(chunk));
            }
        }
    }
}
