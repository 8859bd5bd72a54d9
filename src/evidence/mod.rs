//! Evidence an auditor reads: the coverage of a period and its manifest, and what each audit
//! report says.

pub mod contents;
pub mod coverage;
