//! The domain: the vocabulary every other folder shares, and the decisions that need no I/O.
//! Nothing here awaits, reads a clock or reads the environment.

pub mod alerts;
pub mod arn;
pub mod bucket;
pub mod code;
pub mod findings;
pub mod ids;
pub mod outcome;
pub mod report;
pub mod request;
pub mod scope;
pub mod time;
pub mod version;
pub mod window;
