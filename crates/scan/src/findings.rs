//! An image's findings: each advisory match with the installed package it was found in, and
//! whether an ignore rule suppresses it. What the matcher produces for an image, what the
//! registry stores per manifest, and what every report format prints.

use serde::{Deserialize, Serialize};
use vuln::Finding;

use crate::inventory::Package;

/// One finding in one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageFinding {
    /// The advisory matched (id, severity, fixed version...).
    #[serde(flatten)]
    pub finding: Finding,
    /// The installed package it matched (kind, name, version, file and layer).
    pub installed: Package,
    /// The reason an ignore rule gives, when one suppresses this finding: reports print it as
    /// suppressed and `--fail-on` does not count it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
}
