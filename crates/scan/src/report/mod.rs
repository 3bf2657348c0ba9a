//! Scan reports: what an image's findings say, for people ([`table`]), for programs
//! ([`json`]), for code-scanning dashboards ([`sarif`], SARIF 2.1.0) and as a CycloneDX 1.6
//! BOM with `vulnerabilities` ([`cyclonedx_vex`]); and the `--fail-on` decision
//! ([`fail_on`]).
//!
//! Every format lists suppressed findings (those an ignore rule matched) as suppressed, with
//! the rule's reason, and none counts them towards [`fail_on`]. Findings are ordered the same
//! way everywhere: most severe first, then by advisory id, package name, version and path.
//!
//! # The JSON report (`wharf-scan-report/v1`)
//!
//! ```json
//! {
//!   "schema": "wharf-scan-report/v1",
//!   "image": {"name": "...", "manifest_digest": "sha256:...", "created": "...",
//!             "os": "linux", "architecture": "amd64"},
//!   "distribution": {"id": "debian", "version_id": "12", ...},      // or absent
//!   "warnings": ["database is 9 days old"],
//!   "summary": {"total": 3, "suppressed": 1,
//!               "by_severity": {"critical": 1, "high": 1, "medium": 0, "low": 0,
//!                               "negligible": 0, "unknown": 0}},    // unsuppressed only
//!   "findings": [{
//!     "id": "CVE-2023-4911", "aliases": [...], "severity": "high",
//!     "cvss": {"vector": "CVSS:3.1/...", "score": 7.8},             // or absent
//!     "ecosystem": "Debian:12", "summary": "...",
//!     "matched": {"name": "glibc", "version": "2.36-9+deb12u2"},    // what was compared
//!     "fixed": "2.36-9+deb12u3",                                    // or absent
//!     "package": {"kind": "deb", "name": "libc6", "version": "...", "purl": "pkg:deb/...",
//!                 "path": "/var/lib/dpkg/status", "layer": "sha256:...",
//!                 "source_name": "glibc", "source_version": "...", "arch": "amd64"},
//!     "suppressed": "reason"                                        // or absent
//!   }]
//! }
//! ```
//!
//! Fields are only ever added to this shape; a removal or a change of meaning would be a
//! `v2`.

mod sarif;
mod vex;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;
use vuln::{Cvss, Severity};

pub use sarif::sarif;
pub use vex::cyclonedx_vex;

use crate::findings::ImageFinding;
use crate::inventory::{ImageInventory, OsRelease};
use crate::sbom::{ImageInfo, SbomOptions};

/// The JSON report's `schema` value.
pub const JSON_SCHEMA: &str = "wharf-scan-report/v1";

/// What a report is made from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The image (name, digest, config metadata).
    pub image: &'a ImageInfo,
    /// What the image holds (for the CycloneDX report's components).
    pub inventory: &'a ImageInventory,
    /// The findings, suppressed ones included (marked by [`ImageFinding::suppressed`]).
    pub findings: &'a [ImageFinding],
    /// Warnings to print with the report (`database is 9 days old`).
    pub warnings: &'a [String],
}

/// A report format, as `--format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `table`: for people.
    Table,
    /// `json`: [`JSON_SCHEMA`].
    Json,
    /// `sarif`: SARIF 2.1.0.
    Sarif,
    /// `cyclonedx`: CycloneDX 1.6 with `vulnerabilities`.
    CycloneDx,
}

/// A format name that is not one of `table`, `json`, `sarif`, `cyclonedx`.
#[derive(Debug, thiserror::Error)]
#[error("unknown report format {0:?} (expected table, json, sarif or cyclonedx)")]
pub struct FormatError(pub String);

impl FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "sarif" => Ok(Format::Sarif),
            "cyclonedx" => Ok(Format::CycloneDx),
            _ => Err(FormatError(s.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::CycloneDx => "cyclonedx",
        })
    }
}

/// Renders a report in `format` (JSON formats pretty-printed, with a final newline).
/// `options` pins the CycloneDX report's timestamp and serial number.
pub fn render(format: Format, input: &ReportInput<'_>, options: &SbomOptions) -> String {
    let pretty = |v: Value| {
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    };
    match format {
        Format::Table => table(input),
        Format::Json => pretty(json(input)),
        Format::Sarif => pretty(sarif(input)),
        Format::CycloneDx => pretty(cyclonedx_vex(input, options)),
    }
}

/// Whether the scan fails `--fail-on threshold`: some unsuppressed finding is at least as
/// severe as `threshold`.
pub fn fail_on(threshold: Severity, findings: &[ImageFinding]) -> bool {
    findings
        .iter()
        .any(|f| f.suppressed.is_none() && f.finding.severity >= threshold)
}

/// Counts of findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Every finding, suppressed ones included.
    pub total: usize,
    /// The suppressed ones.
    pub suppressed: usize,
    /// Unsuppressed findings per severity (every severity present, zeros included).
    pub by_severity: BTreeMap<Severity, usize>,
}

impl Summary {
    /// Counts `findings`.
    pub fn of(findings: &[ImageFinding]) -> Summary {
        let mut by_severity: BTreeMap<Severity, usize> =
            Severity::ALL.iter().map(|s| (*s, 0)).collect();
        let mut suppressed = 0;
        for f in findings {
            if f.suppressed.is_some() {
                suppressed += 1;
            } else {
                *by_severity.entry(f.finding.severity).or_insert(0) += 1;
            }
        }
        Summary {
            total: findings.len(),
            suppressed,
            by_severity,
        }
    }

    /// One line: `3 findings: 1 critical, 1 high, 0 medium, 0 low, 0 negligible, 0 unknown
    /// (1 suppressed)`.
    pub fn line(&self) -> String {
        let open = self.total - self.suppressed;
        let counts: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|s| format!("{} {s}", self.by_severity.get(s).copied().unwrap_or(0)))
            .collect();
        format!(
            "{open} finding{}: {} ({} suppressed)",
            if open == 1 { "" } else { "s" },
            counts.join(", "),
            self.suppressed
        )
    }
}

/// The findings in report order: most severe first, then advisory id, package name, version,
/// path, layer, unsuppressed before suppressed.
pub fn ordered(findings: &[ImageFinding]) -> Vec<&ImageFinding> {
    let mut v: Vec<&ImageFinding> = findings.iter().collect();
    v.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then_with(|| a.finding.id.cmp(&b.finding.id))
            .then_with(|| a.installed.name.cmp(&b.installed.name))
            .then_with(|| a.installed.version.cmp(&b.installed.version))
            .then_with(|| a.installed.path.cmp(&b.installed.path))
            .then_with(|| a.installed.layer.cmp(&b.installed.layer))
            .then_with(|| a.suppressed.cmp(&b.suppressed))
    });
    v
}

/// The first 12 hex digits of a layer digest (`sha256:0123456789ab...` → `0123456789ab`).
pub fn short_digest(d: &str) -> &str {
    let hex = d.split_once(':').map(|(_, h)| h).unwrap_or(d);
    hex.get(..12).unwrap_or(hex)
}

/// The table for people: warnings, then one row per unsuppressed finding (ID, SEVERITY,
/// PACKAGE, INSTALLED, FIXED, LAYER), then the suppressed ones with their reasons, then the
/// summary line.
pub fn table(input: &ReportInput<'_>) -> String {
    let mut out = String::new();
    for w in input.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    let ordered = ordered(input.findings);
    let row = |f: &ImageFinding| -> Vec<String> {
        vec![
            f.finding.id.clone(),
            f.finding.severity.to_string().to_uppercase(),
            f.installed.name.clone(),
            f.installed.version.clone(),
            f.finding.fixed.clone().unwrap_or_default(),
            short_digest(&f.installed.layer).to_string(),
        ]
    };
    let open: Vec<Vec<String>> = ordered
        .iter()
        .filter(|f| f.suppressed.is_none())
        .map(|f| row(f))
        .collect();
    let suppressed: Vec<Vec<String>> = ordered
        .iter()
        .filter_map(|f| {
            f.suppressed.as_ref().map(|reason| {
                let mut r = row(f);
                r.push(reason.clone());
                r
            })
        })
        .collect();
    let head = ["ID", "SEVERITY", "PACKAGE", "INSTALLED", "FIXED", "LAYER"];
    out.push_str(&format!("{}\n", input.image.name));
    if open.is_empty() {
        out.push_str("No unsuppressed findings.\n");
    } else {
        write_table(&mut out, &head, &open);
    }
    if !suppressed.is_empty() {
        out.push_str("\nSuppressed:\n");
        let mut head_s: Vec<&str> = head.to_vec();
        head_s.push("REASON");
        write_table(&mut out, &head_s, &suppressed);
    }
    out.push('\n');
    out.push_str(&Summary::of(input.findings).line());
    out.push('\n');
    out
}

/// Aligned columns, two spaces apart; the last column is not padded.
fn write_table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = widths[i] - c.chars().count() + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    image: JsonImage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution: Option<&'a OsRelease>,
    warnings: &'a [String],
    summary: Summary,
    findings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    architecture: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonMatched<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct JsonPackage<'a> {
    kind: &'static str,
    name: &'a str,
    version: &'a str,
    purl: String,
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    layer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    aliases: &'a [String],
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    cvss: Option<&'a Cvss>,
    ecosystem: &'a str,
    summary: &'a str,
    matched: JsonMatched<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<&'a str>,
    package: JsonPackage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<&'a str>,
}

/// The JSON report (shape in the module documentation).
pub fn json(input: &ReportInput<'_>) -> Value {
    let os = input.inventory.os.as_ref();
    let findings = ordered(input.findings)
        .into_iter()
        .map(|f| {
            let p = &f.installed;
            JsonFinding {
                id: &f.finding.id,
                aliases: &f.finding.aliases,
                severity: f.finding.severity,
                cvss: f.finding.cvss.as_ref(),
                ecosystem: &f.finding.ecosystem,
                summary: &f.finding.summary,
                matched: JsonMatched {
                    name: &f.finding.package,
                    version: &f.finding.version,
                },
                fixed: f.finding.fixed.as_deref(),
                package: JsonPackage {
                    kind: p.kind.name(),
                    name: &p.name,
                    version: &p.version,
                    purl: p.purl(os),
                    path: &p.path,
                    layer: &p.layer,
                    source_name: p.source_name.as_deref(),
                    source_version: p.source_version.as_deref(),
                    arch: p.arch.as_deref(),
                },
                suppressed: f.suppressed.as_deref(),
            }
        })
        .collect();
    let report = JsonReport {
        schema: JSON_SCHEMA,
        image: JsonImage {
            name: &input.image.name,
            manifest_digest: input.image.manifest_digest.as_deref(),
            created: input.image.created.as_deref(),
            os: input.image.os.as_deref(),
            architecture: input.image.architecture.as_deref(),
        },
        distribution: os,
        warnings: input.warnings,
        summary: Summary::of(input.findings),
        findings,
    };
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// Where an advisory is described: its OSV page (OSV carries CVE, GHSA, PYSEC, DSA, ...).
pub(crate) fn advisory_url(id: &str) -> String {
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        .collect();
    format!("https://osv.dev/vulnerability/{safe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_digests_and_formats() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(short_digest(""), "");
        assert_eq!(short_digest("sha256:abc"), "abc");
        assert_eq!("SARIF".parse::<Format>().unwrap(), Format::Sarif);
        assert!("xml".parse::<Format>().is_err());
    }
}
