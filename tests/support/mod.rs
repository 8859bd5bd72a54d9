//! Test harness, shared by `tests/integration/` and `examples/` (each includes it with
//! `#[path]`): each test gets its own AWS account in the local stack (moto keeps separate
//! state per account), its own ledger table, bucket and CAs, so tests run in parallel against
//! one stack without sharing anything (zero2prod's `spawn_app`, for this service).
//!
//! - `stack`: the local stack itself: its settings, its control API, accounts made through STS;
//! - `world`: one test's account, ledger table and report bucket;
//! - `members`: member accounts of a test's organisation;
//! - `lambda`: the function called in-process: requests, invocations, the handler's context;
//! - `runtime_api`: a minimal Lambda Runtime API, for the function binary run as a process.
#![allow(dead_code, unused_imports)]

pub mod lambda;
pub mod members;
pub mod runtime_api;
pub mod stack;
pub mod world;

pub use lambda::*;
pub use members::*;
pub use stack::*;
pub use world::*;
