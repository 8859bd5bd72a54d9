//! Every integration test, in one binary against the local stack (`scripts/local-stack`): one
//! link of the AWS SDK crates instead of one per file. `scripts/test` runs the reliability
//! module on its own (its figures are measured at AWS's quota, so no other test may load the
//! emulator meanwhile), and the rest together.

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod alerts;
mod bad_input;
mod coverage;
mod crashes;
mod events;
mod evidence;
mod reliability;
mod reports;
mod scheduler;
mod scope;
mod work_items;
