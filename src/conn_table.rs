//! The connection table: a `Slab` whose tokens cannot be mistaken for a
//! previous tenant of the same slot.
//!
//! mio reports readiness by [`Token`], and the natural token is the slab key.
//! But a slab reuses a freed key at once, so a key alone cannot tell "the
//! connection in slot 3" from "the connection that was in slot 3 a moment
//! ago": an event or a timer meant for the old one would act on the new one.
//! The loop already defers removal to a safe point at the end of each turn
//! (`event_loop/closing.rs`, `reap`), which keeps a slot from being reused inside one batch of
//! events, but timers outlive a turn. So every token here carries both:
//!
//! ```text
//!   token = generation << 32 | slab key
//! ```
//!
//! `generation` is a counter bumped at every insert (it doubles as the
//! connection's number in the logs). [`ConnTable::get_mut`] finds the slot by
//! key and then checks the whole token; a stale token finds nothing. With
//! several workers each table counts in steps of the number of workers,
//! from an offset of its own ([`ConnTable::number_from`]), so that a
//! connection's number is unique in the process without anything shared.
//! Tokens with all 32 low bits set are never handed out: [`reserved`] makes
//! them for the listeners, the signal pipe, the hub's waker and the
//! metrics listener and clients (`tokens.rs` maps them all).

use mio::Token;
use slab::Slab;

const KEY_BITS: u32 = 32;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;

// The token packs two 32-bit halves into a usize.
const _: () = assert!(usize::BITS >= 64, "monoloop needs a 64-bit target");

/// The `n`th token that no connection can have (its key bits are all set).
pub const fn reserved(n: usize) -> Token {
    Token((n << KEY_BITS) | KEY_MASK)
}

/// True if `token` is one of the [`reserved`] ones, not a connection's.
#[inline]
pub const fn is_reserved(token: Token) -> bool {
    token.0 & KEY_MASK == KEY_MASK
}

/// The slot a connection's token names: its slab key. Stable for the
/// connection's life; reused after it (the token's generation tells the
/// tenants apart). Other per-connection tables (`protocol/seam.rs`) are
/// indexed by it.
#[inline]
pub const fn slot(token: Token) -> usize {
    token.0 & KEY_MASK
}

/// Something stored in the table remembers the token it was given.
pub trait Tokened {
    fn token(&self) -> Token;
}

/// A slab of `T`, addressed by generation-checked tokens.
#[derive(Debug)]
pub struct ConnTable<T> {
    slab: Slab<T>,
    /// The last number given (0 before the first).
    generation: u32,
    /// How far apart the numbers are: 1, or with several workers, their
    /// number.
    step: u32,
}

impl<T: Tokened> ConnTable<T> {
    pub fn new() -> Self {
        Self {
            slab: Slab::new(),
            generation: 0,
            step: 1,
        }
    }

    /// Numbers the connections from now on `first`, `first + step`,
    /// `first + 2 step`, ...: worker W of N takes `number_from(W + 1, N)`,
    /// so that no two workers give one number (until the count wraps, past
    /// four billion connections), and no atomic is shared for it.
    pub fn number_from(&mut self, first: u32, step: u32) {
        self.step = step.max(1);
        self.generation = first.wrapping_sub(self.step);
    }

    /// The token the next insert will be given; `make` builds the value with
    /// it, so the value can know its own token.
    pub fn insert_with(&mut self, make: impl FnOnce(Token, u32) -> T) -> Token {
        self.generation = self.generation.wrapping_add(self.step);
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        assert!(key < KEY_MASK, "connection table full");
        let token = Token(((self.generation as usize) << KEY_BITS) | key);
        entry.insert(make(token, self.generation));
        token
    }

    /// The live value for `token`, or `None` if that connection is gone,
    /// even if its slot now holds another.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slab
            .get_mut(token.0 & KEY_MASK)
            .filter(|v| v.token() == token)
    }

    /// Shared access, with the same check as [`get_mut`](Self::get_mut).
    pub fn get(&self, token: Token) -> Option<&T> {
        self.slab
            .get(token.0 & KEY_MASK)
            .filter(|v| v.token() == token)
    }

    /// Removes and returns the value for `token`, if it is still there.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.get(token)?;
        Some(self.slab.remove(token.0 & KEY_MASK))
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every live token, for walks that may change the table: collect first,
    /// then act.
    pub fn tokens(&self) -> Vec<Token> {
        self.slab.iter().map(|(_, v)| v.token()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slab.iter().map(|(_, v)| v)
    }
}

impl<T: Tokened> Default for ConnTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Token, &'static str);
    impl Tokened for Item {
        fn token(&self) -> Token {
            self.0
        }
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_token() {
        let mut t = ConnTable::new();
        let old = t.insert_with(|tok, _| Item(tok, "old"));
        t.remove(old).unwrap();
        let new = t.insert_with(|tok, _| Item(tok, "new"));
        // Same slot, different tenant.
        assert_eq!(old.0 & KEY_MASK, new.0 & KEY_MASK);
        assert_ne!(old, new);
        assert!(
            t.get_mut(old).is_none(),
            "stale token reached the new tenant"
        );
        assert!(t.remove(old).is_none());
        assert_eq!(t.get(new).unwrap().1, "new");
    }

    #[test]
    fn generations_count_inserts() {
        let mut t: ConnTable<Item> = ConnTable::new();
        let mut gens = Vec::new();
        for _ in 0..3 {
            t.insert_with(|tok, g| {
                gens.push(g);
                Item(tok, "x")
            });
        }
        assert_eq!(gens, [1, 2, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.tokens().len(), 3);
    }

    #[test]
    fn a_workers_table_numbers_from_its_offset_in_steps() {
        let mut t: ConnTable<Item> = ConnTable::new();
        // Worker 1 of 3.
        t.number_from(2, 3);
        let numbers: Vec<usize> = (0..3)
            .map(|_| t.insert_with(|tok, _| Item(tok, "x")).0 >> KEY_BITS)
            .collect();
        assert_eq!(numbers, [2, 5, 8]);
    }

    #[test]
    fn reserved_tokens_never_match() {
        let mut t = ConnTable::new();
        t.insert_with(|tok, _| Item(tok, "x"));
        assert!(t.get(reserved(0)).is_none());
        assert!(t.get(reserved(1)).is_none());
        assert_ne!(reserved(0), reserved(1));
    }
}
