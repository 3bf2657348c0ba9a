//! What a match produces: a [`Finding`] (one advisory against one installed package) and its
//! [`Severity`]. Shared by the matcher, the stored results and every report format.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad a finding is, ordered from least to most severe, so `--fail-on high` is
/// `severity >= Severity::High`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No severity given and no vector to score (Debian's "not yet assigned").
    #[default]
    Unknown,
    /// Rated as not worth fixing by the distribution (Debian's "unimportant").
    Negligible,
    /// CVSS 0.1-3.9, or the advisory's own "low".
    Low,
    /// CVSS 4.0-6.9, or "medium" / "moderate".
    Medium,
    /// CVSS 7.0-8.9, or "high" / "important".
    High,
    /// CVSS 9.0-10.0, or "critical".
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name (`unknown`, `negligible`, `low`, `medium`, `high`, `critical`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The CVSS v3 qualitative rating of a base score (0.0 counts as unknown).
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A severity name that is not one of [`Severity::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?} (expected unknown, negligible, low, medium, high or critical)")]
pub struct SeverityError(pub String);

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|v| v.name() == lower)
            .ok_or_else(|| SeverityError(s.to_string()))
    }
}

/// One advisory matched against one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory's id (`CVE-2023-4911`, `GHSA-...`, `PYSEC-...`, `DSA-5514-1`).
    pub id: String,
    /// Other ids of the same vulnerability (a GHSA's CVE, a DSA's CVEs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The OSV ecosystem it was matched in, release included (`Debian:12`, `Alpine:v3.20`,
    /// `PyPI`).
    pub ecosystem: String,
    /// The package name the advisory names (for OS packages, the source package).
    pub package: String,
    /// The installed version that was compared (for OS packages, the source version).
    pub version: String,
    /// The first fixed version above the installed one, if the advisory knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The severity: scored from the advisory's CVSS vector when it has one, otherwise its
    /// own rating.
    pub severity: Severity,
    /// The CVSS vector the severity was scored from, with its base score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Cvss>,
    /// One line saying what the vulnerability is.
    #[serde(default)]
    pub summary: String,
}

/// A CVSS vector and its base score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// The vector as the advisory gives it (`CVSS:3.1/AV:N/...`).
    pub vector: String,
    /// Its base score, 0.0-10.0.
    pub score: f64,
}
