//! The adversarial suite (issue 24): every known attack on monoloop, each
//! run against the real binary while a well-behaved client (a
//! [`bystander`]) is served beside it. A test asserts two things: that the
//! attack is contained (the attacker is closed, refused or held to its
//! limit, and nothing grows without bound), and that the bystander got
//! every answer within a bound while the attack ran.
//!
//! One file per surface:
//! - [`connections`]: connect floods past `--max-connections`, descriptor
//!   exhaustion under a lowered `RLIMIT_NOFILE`, churn across workers;
//! - [`tls`]: half ClientHellos, garbage records, floods of empty records
//!   and key updates, certificate reloads under load;
//! - [`files`]: the path-traversal corpus;
//! - [`chat`]: injection through names and lines;
//! - [`proxy`]: PROXY headers from untrusted peers, malformed headers split
//!   over many writes;
//! - [`metrics`]: slow and oversized requests to `--metrics`;
//! - [`redis`]: a Redis that answers garbage, answers slowly, or accepts
//!   and never answers.
//!
//! Attacks that earlier issues already turned into regression tests in
//! other files are listed in docs/security.md ("The adversarial suite")
//! beside these, so that the whole list is in one place.

#[path = "../common/mod.rs"]
mod common;

mod bystander;
mod fake_redis;

mod chat;
mod connections;
mod files;
mod metrics;
mod proxy;
mod redis;
mod tls;
