//! The tool's version, as `Cargo.toml` gives it (semver): on every answer, on the coverage
//! manifest (its JSON head and both objects' metadata) and in the SDK's user agent, so that
//! evidence says which release made it.

use serde::{Serialize, Serializer};

/// `Cargo.toml`'s `version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version as a field of an answer: serialised as `VERSION`, nothing to fill in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolVersion;

impl Serialize for ToolVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(VERSION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_cargos_and_semver() {
        assert_eq!(serde_json::to_value(ToolVersion).unwrap(), VERSION);
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "{VERSION}");
        assert!(parts.iter().all(|p| p.parse::<u64>().is_ok()), "{VERSION}");
    }
}
