//! The cluster link: broadcast and chat across machines, through Redis
//! (`--cluster URL`, issue 22). This module will hold the link itself, one
//! Redis connection driven by the same loop as the clients, with its own
//! states and reconnect timer; for now it holds the two parts that need no
//! I/O: [`resp`], the protocol Redis speaks, and [`url`], where Redis is.

pub mod resp;
pub mod url;
