//! The audit report's file format, as the API names it (`AuditReportResponseFormat`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Audit report file format, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportFormat {
    #[default]
    Json,
    Csv,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv => "CSV",
        }
    }
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "JSON" => Ok(Self::Json),
            "CSV" => Ok(Self::Csv),
            _ => Err("must be JSON or CSV".into()),
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
