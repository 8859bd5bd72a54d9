//! The inventory: what a run (and a coverage request) covers. The account-regions, from the
//! request and the settings, each account entered once (`targets`); and in each, the CAs
//! listed, chosen, in scope and tagged (`cas`).

pub mod cas;
pub mod targets;
