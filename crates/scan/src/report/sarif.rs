//! SARIF 2.1.0 (<https://docs.oasis-open.org/sarif/sarif/v2.1.0/>).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vuln::Severity;

use super::{ReportInput, advisory_url, ordered, short_digest};

/// The SARIF `level` of a severity: critical and high are `error`, medium and unknown
/// `warning` (an unrated advisory is not hidden), low and negligible `note`.
pub fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium | Severity::Unknown => "warning",
        Severity::Low | Severity::Negligible => "note",
    }
}

/// GitHub code scanning's `security-severity` (a CVSS-like score as a string): the CVSS base
/// score when the advisory has one, otherwise a score inside the severity's band.
fn security_severity(s: Severity, score: Option<f64>) -> String {
    let v = score.unwrap_or(match s {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Negligible => 0.1,
        Severity::Unknown => 0.0,
    });
    format!("{v:.1}")
}

/// A file path as a URI reference: bytes outside RFC 3986's unreserved set and `/` are
/// percent-encoded.
fn path_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SARIF 2.1.0 log: one run whose driver is Wharf, one rule per advisory id (its summary,
/// its OSV page, a default level from its severity, `security-severity` and tags), and one
/// result per finding: level from the finding's severity, location = the file that listed
/// the package (`artifactLocation.uri`, the image path percent-encoded), the message saying
/// package, installed and fixed versions, properties `package`, `installed`, `fixed`,
/// `purl`, `layer`, `severity`. A suppressed finding carries a `suppressions` entry (kind
/// `external`: an ignore file, status `accepted`, the rule's reason as `justification`).
pub fn sarif(input: &ReportInput<'_>) -> Value {
    let ordered = ordered(input.findings);
    let os = input.inventory.os.as_ref();
    // One rule per advisory id, in id order; the most severe finding rates it.
    let mut rules: BTreeMap<&str, (Severity, Option<f64>, &str)> = BTreeMap::new();
    for f in &ordered {
        let e = rules.entry(f.finding.id.as_str()).or_insert((
            f.finding.severity,
            None,
            f.finding.summary.as_str(),
        ));
        e.0 = e.0.max(f.finding.severity);
        if let Some(c) = &f.finding.cvss {
            e.1 = Some(e.1.map_or(c.score, |s: f64| s.max(c.score)));
        }
        if e.2.is_empty() {
            e.2 = &f.finding.summary;
        }
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let rules_json: Vec<Value> = rules
        .iter()
        .map(|(id, (sev, score, summary))| {
            let text = if summary.is_empty() { *id } else { *summary };
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": text},
                "helpUri": advisory_url(id),
                "help": {"text": format!("{text}\n{}", advisory_url(id))},
                "defaultConfiguration": {"level": level(*sev)},
                "properties": {
                    "security-severity": security_severity(*sev, *score),
                    "tags": ["security", "vulnerability", sev.name()],
                },
            })
        })
        .collect();
    let results: Vec<Value> = ordered
        .iter()
        .map(|f| {
            let p = &f.installed;
            let fixed = f.finding.fixed.as_deref();
            let message = match fixed {
                Some(v) => format!(
                    "{} {} {} in {} {} (fixed in {v})",
                    f.finding.id, f.finding.severity, p.kind, p.name, p.version
                ),
                None => format!(
                    "{} {} {} in {} {} (no fixed version)",
                    f.finding.id, f.finding.severity, p.kind, p.name, p.version
                ),
            };
            let mut r = json!({
                "ruleId": f.finding.id,
                "ruleIndex": index[f.finding.id.as_str()],
                "level": level(f.finding.severity),
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": path_uri(&p.path)}},
                    "message": {"text": format!("layer {}", short_digest(&p.layer))},
                }],
                "properties": {
                    "package": p.name,
                    "installed": p.version,
                    "fixed": fixed,
                    "purl": p.purl(os),
                    "layer": p.layer,
                    "severity": f.finding.severity.name(),
                },
            });
            if let Some(reason) = &f.suppressed {
                r["suppressions"] = json!([{
                    "kind": "external",
                    "status": "accepted",
                    "justification": reason,
                }]);
            }
            r
        })
        .collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "wharf",
            "version": env!("CARGO_PKG_VERSION"),
            "informationUri": "https://osv.dev/",
            "rules": rules_json,
        }},
        "results": results,
        "properties": {"image": input.image.name},
    });
    if let Some(d) = &input.image.manifest_digest {
        run["properties"]["manifestDigest"] = json!(d);
    }
    if !input.warnings.is_empty() {
        run["invocations"] = json!([{
            "executionSuccessful": true,
            "toolExecutionNotifications": input.warnings.iter().map(|w| json!({
                "level": "warning",
                "message": {"text": w},
            })).collect::<Vec<_>>(),
        }]);
    }
    json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_uris() {
        assert_eq!(level(Severity::Critical), "error");
        assert_eq!(level(Severity::Unknown), "warning");
        assert_eq!(level(Severity::Negligible), "note");
        assert_eq!(path_uri("/usr/lib/a b/x+y"), "/usr/lib/a%20b/x%2By");
        assert_eq!(security_severity(Severity::High, Some(7.84)), "7.8");
    }
}
