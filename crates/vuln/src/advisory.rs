//! The normalised advisory model every feed is mapped to ([`Advisory`], [`AffectedPackage`]),
//! and the OSV JSON reader ([`parse_osv`]). The Debian tracker and Alpine secdb readers are in
//! [`crate::tracker`] and [`crate::secdb`].
//!
//! The model is plain data (serde), so a database can store it and an [`crate::Index`] can be
//! rebuilt from it; ranges are kept as OSV events and checked when the index is built.
//!
//! OSV specifics:
//! - every `affected[]` entry is kept, whatever its ecosystem: an ecosystem this crate has no
//!   ordering for is stored but never matched;
//! - `GIT` ranges are dropped (they need the repository); the entry's `versions` list is kept
//!   and matched;
//! - `severity[]` vectors are kept by type (`CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`), as are
//!   those of an entry's own `severity[]`;
//! - GitHub's `database_specific.severity` (`LOW`, `MODERATE`, `HIGH`, `CRITICAL`) becomes the
//!   advisory's rating, Debian's `ecosystem_specific.urgency` the entry's rating;
//! - a record with `withdrawn` set is kept with that date and never matched.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::finding::Severity;

/// One advisory, whatever feed it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// Its id (`CVE-2023-4911`, `DSA-5514-1`, `GHSA-...`, `PYSEC-...`, `GO-...`).
    pub id: String,
    /// Ids of the same vulnerability elsewhere (OSV `aliases`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ids of related vulnerabilities (OSV `related`: a DSA's CVEs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// One line: the OSV `summary`, or the first line of `details` (at most 200 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// When it was published (RFC 3339, as the feed writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// When it was last modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// When it was withdrawn: a withdrawn advisory is never matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Severity vectors (CVSS and others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vectors: Vec<Vector>,
    /// The advisory's own rating (GitHub's `database_specific.severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Severity>,
    /// The packages it affects.
    #[serde(default)]
    pub affected: Vec<AffectedPackage>,
}

/// A severity vector and the scheme it is written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vector {
    /// OSV's `severity[].type` (`CVSS_V3`, `CVSS_V4`, `CVSS_V2`, `Ubuntu`).
    pub kind: String,
    /// The vector (`CVSS:3.1/AV:N/...`).
    pub vector: String,
}

/// One affected package of an advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    /// The full OSV ecosystem string, release included (`Debian:12`, `Alpine:v3.20`, `PyPI`).
    pub ecosystem: String,
    /// The package name as the advisory writes it (Debian and Alpine: the source package).
    pub name: String,
    /// Evaluable ranges (`ECOSYSTEM`, `SEMVER`; `GIT` ranges are not kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<RangeSpec>,
    /// Explicitly listed affected versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// The entry's own rating (Debian's urgency), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Severity>,
    /// The entry's own severity vectors (OSV 1.5's `affected[].severity`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vectors: Vec<Vector>,
    /// Every `fixed` version of the ranges, for reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

/// A range as OSV writes it: its ordering and its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSpec {
    /// `ECOSYSTEM` or `SEMVER`.
    pub kind: String,
    /// The events, in the feed's order.
    pub events: Vec<EventSpec>,
}

/// One OSV range event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSpec {
    /// `introduced`.
    Introduced(String),
    /// `fixed`.
    Fixed(String),
    /// `last_affected`.
    LastAffected(String),
    /// `limit`.
    Limit(String),
}

impl EventSpec {
    /// The event for the range evaluator.
    pub fn to_event(&self) -> crate::Event {
        match self {
            EventSpec::Introduced(v) => crate::Event::Introduced(v.clone()),
            EventSpec::Fixed(v) => crate::Event::Fixed(v.clone()),
            EventSpec::LastAffected(v) => crate::Event::LastAffected(v.clone()),
            EventSpec::Limit(v) => crate::Event::Limit(v.clone()),
        }
    }
}

/// A feed file that cannot be read as its format: which file, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {field}: {message}")]
pub struct ParseError {
    /// The file (or URL, or archive member) the caller named.
    pub origin: String,
    /// Where in it (`affected[2].ranges[0].type`, `(json)` for a syntax error).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(origin: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError {
            origin: origin.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn json(origin: &str, e: &serde_json::Error) -> Self {
        ParseError::new(origin, "(json)", e.to_string())
    }
}

/// Serde helper: a `null` where a list is expected is an empty list.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct RawOsv {
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    aliases: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    related: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    severity: Vec<RawSeverity>,
    #[serde(default, deserialize_with = "null_default")]
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default, deserialize_with = "null_default")]
    ranges: Vec<RawRange>,
    #[serde(default, deserialize_with = "null_default")]
    versions: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "null_default")]
    events: Vec<Value>,
}

/// Debian's urgency (tracker and OSV `ecosystem_specific.urgency`) as a severity:
/// `unimportant` is negligible, `low`/`medium`/`high` are themselves, `not yet assigned` and
/// `end-of-life` say nothing (unknown). A trailing `*` or `**` (the tracker's mark for a
/// guessed urgency) is ignored.
pub fn debian_urgency(u: &str) -> Option<Severity> {
    match u.trim_end_matches('*').trim() {
        "unimportant" => Some(Severity::Negligible),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "not yet assigned" | "end-of-life" | "" => Some(Severity::Unknown),
        _ => None,
    }
}

/// GitHub's `database_specific.severity` (`LOW`, `MODERATE`, `HIGH`, `CRITICAL`).
pub fn ghsa_rating(s: &str) -> Option<Severity> {
    match s.to_ascii_uppercase().as_str() {
        "LOW" => Some(Severity::Low),
        "MODERATE" | "MEDIUM" => Some(Severity::Medium),
        "HIGH" => Some(Severity::High),
        "CRITICAL" => Some(Severity::Critical),
        _ => None,
    }
}

/// The first line of `text`, at most 200 characters.
pub(crate) fn one_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Reads one OSV record (<https://ossf.github.io/osv-schema/>). `origin` names the file in
/// errors.
pub fn parse_osv(origin: &str, json: &[u8]) -> Result<Advisory, ParseError> {
    let raw: RawOsv = serde_json::from_slice(json).map_err(|e| ParseError::json(origin, &e))?;
    if raw.id.trim().is_empty() {
        return Err(ParseError::new(origin, "id", "empty"));
    }
    let summary = raw
        .summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(raw.details.as_deref())
        .map(one_line)
        .unwrap_or_default();
    let rating = raw
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(Value::as_str)
        .and_then(ghsa_rating);
    let vectors = raw
        .severity
        .into_iter()
        .map(|s| Vector {
            kind: s.kind,
            vector: s.score,
        })
        .collect();
    let mut affected = Vec::with_capacity(raw.affected.len());
    for (ai, a) in raw.affected.into_iter().enumerate() {
        let Some(pkg) = a.package else {
            // An entry without a package names only commits; nothing to match by name.
            continue;
        };
        let mut ranges = Vec::new();
        let mut fixed = Vec::new();
        for (ri, r) in a.ranges.into_iter().enumerate() {
            match r.kind.as_str() {
                "GIT" => continue,
                "ECOSYSTEM" | "SEMVER" => {}
                other => {
                    return Err(ParseError::new(
                        origin,
                        format!("affected[{ai}].ranges[{ri}].type"),
                        format!("unknown range type {other:?}"),
                    ));
                }
            }
            let mut events = Vec::with_capacity(r.events.len());
            for (ei, e) in r.events.into_iter().enumerate() {
                let event: EventSpec = serde_json::from_value(e).map_err(|err| {
                    ParseError::new(
                        origin,
                        format!("affected[{ai}].ranges[{ri}].events[{ei}]"),
                        err.to_string(),
                    )
                })?;
                if let EventSpec::Fixed(v) = &event {
                    fixed.push(v.clone());
                }
                events.push(event);
            }
            ranges.push(RangeSpec {
                kind: r.kind,
                events,
            });
        }
        let spec = a.ecosystem_specific.as_ref();
        let entry_rating = spec
            .and_then(|s| s.get("urgency"))
            .and_then(Value::as_str)
            .and_then(debian_urgency)
            .or_else(|| {
                spec.and_then(|s| s.get("severity"))
                    .and_then(Value::as_str)
                    .and_then(ghsa_rating)
            });
        affected.push(AffectedPackage {
            ecosystem: pkg.ecosystem,
            name: pkg.name,
            ranges,
            versions: a.versions,
            rating: entry_rating,
            vectors: a
                .severity
                .into_iter()
                .map(|s| Vector {
                    kind: s.kind,
                    vector: s.score,
                })
                .collect(),
            fixed,
        });
    }
    Ok(Advisory {
        id: raw.id,
        aliases: raw.aliases,
        related: raw.related,
        summary,
        published: raw.published,
        modified: raw.modified,
        withdrawn: raw.withdrawn,
        vectors,
        rating,
        affected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osv_record_maps_to_the_model() {
        let json = br#"{"id":"GHSA-x","aliases":["CVE-1"],"summary":"s",
          "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
          "affected":[{"package":{"ecosystem":"PyPI","name":"Django"},
            "ranges":[{"type":"GIT","repo":"r","events":[{"introduced":"abc"}]},
                      {"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2"}]}],
            "versions":["1.0"]}],
          "database_specific":{"severity":"MODERATE"}}"#;
        let a = parse_osv("f.json", json).unwrap();
        assert_eq!(a.rating, Some(Severity::Medium));
        assert_eq!(a.affected[0].ranges.len(), 1);
        assert_eq!(a.affected[0].fixed, vec!["1.2"]);
        assert_eq!(a.affected[0].versions, vec!["1.0"]);
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse_osv(
            "x.json",
            br#"{"id":"A","affected":[{"package":{"ecosystem":"PyPI","name":"a"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"bogus":"1"}]}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.origin, "x.json");
        assert_eq!(e.field, "affected[0].ranges[0].events[0]");
        let e = parse_osv("y.json", b"{\"id\": 3}").unwrap_err();
        assert_eq!(e.field, "(json)");
        let e = parse_osv("z.json", b"{\"id\": \"\"}").unwrap_err();
        assert_eq!(e.field, "id");
    }
}
