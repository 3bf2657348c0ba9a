//! CycloneDX 1.6 with `vulnerabilities`: the image's SBOM ([`crate::sbom::cyclonedx`]) and one
//! vulnerability per finding, pointing at the affected component's bom-ref.

use serde_json::{Value, json};
use vuln::Severity;

use super::{ReportInput, advisory_url, ordered};
use crate::sbom::{SbomOptions, bom_ref_of, bom_refs, cyclonedx, cyclonedx_component};

/// CycloneDX's severity names (`info` for negligible: rated not worth fixing).
fn cdx_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Negligible => "info",
        Severity::Unknown => "unknown",
    }
}

/// CycloneDX's scoring method for a CVSS vector, from its prefix.
fn method(vector: &str) -> &'static str {
    if vector.starts_with("CVSS:4.0/") {
        "CVSSv4"
    } else if vector.starts_with("CVSS:3.1/") {
        "CVSSv31"
    } else if vector.starts_with("CVSS:3.0/") {
        "CVSSv3"
    } else if vector.contains("AV:") && vector.contains("Au:") {
        "CVSSv2"
    } else {
        "other"
    }
}

/// A CycloneDX 1.6 BOM of the image with a `vulnerabilities` entry per finding: `id`, the
/// advisory's OSV page as `source`, `ratings` (the severity, with the CVSS vector, score and
/// method when the advisory has one), `description` (its summary), `recommendation` (the
/// fixed version), `affects` (the component's bom-ref, the installed version `affected`) and
/// properties `wharf:fixed-version`, `wharf:ecosystem`, `wharf:matched-package`. The
/// report's warnings (a stale database) are `metadata.properties` named `wharf:warning`.
///
/// Suppressed findings carry an `analysis`: an ignore rule accepts a finding, it proves
/// nothing about it, so the state is not `not_affected` or `false_positive` (claims the
/// scanner cannot make) but `exploitable` (the spec's "may be directly or indirectly
/// exploitable": what any unrefuted match is) with response `will_not_fix` (the rule's
/// decision not to act) and the rule's reason as `detail`; plus a `wharf:suppressed`
/// property with the reason. Unsuppressed findings carry no `analysis` (none was done).
pub fn cyclonedx_vex(input: &ReportInput<'_>, options: &SbomOptions) -> Value {
    let mut bom = cyclonedx(input.image, input.inventory, options);
    let refs = bom_refs(input.inventory);
    let os = input.inventory.os.as_ref();
    let mut extra: Vec<Value> = Vec::new();
    let mut extra_refs: Vec<String> = Vec::new();
    let mut vulns = Vec::new();
    for (i, f) in ordered(input.findings).into_iter().enumerate() {
        let p = &f.installed;
        let r = bom_ref_of(input.inventory, &refs, p);
        if !refs.contains(&r) && !extra_refs.contains(&r) {
            // A finding for a package the inventory does not list: give it a component.
            extra.push(cyclonedx_component(p, os, &r));
            extra_refs.push(r.clone());
        }
        let mut rating = json!({
            "source": {"name": "OSV", "url": advisory_url(&f.finding.id)},
            "severity": cdx_severity(f.finding.severity),
        });
        if let Some(c) = &f.finding.cvss {
            rating["score"] = json!(c.score);
            rating["method"] = json!(method(&c.vector));
            rating["vector"] = json!(c.vector);
        }
        let mut props = vec![
            json!({"name": "wharf:ecosystem", "value": f.finding.ecosystem}),
            json!({"name": "wharf:matched-package",
                   "value": format!("{} {}", f.finding.package, f.finding.version)}),
        ];
        if let Some(v) = &f.finding.fixed {
            props.push(json!({"name": "wharf:fixed-version", "value": v}));
        }
        let mut v = json!({
            "bom-ref": format!("vuln-{}:{}", i + 1, f.finding.id),
            "id": f.finding.id,
            "source": {"name": "OSV", "url": advisory_url(&f.finding.id)},
            "ratings": [rating],
            "affects": [{
                "ref": r,
                "versions": [{"version": p.version, "status": "affected"}],
            }],
        });
        if !f.finding.summary.is_empty() {
            v["description"] = json!(f.finding.summary);
        }
        if let Some(fixed) = &f.finding.fixed {
            v["recommendation"] = json!(format!("Upgrade {} to {fixed} or later", p.name));
        }
        if !f.finding.aliases.is_empty() {
            v["references"] = Value::Array(
                f.finding
                    .aliases
                    .iter()
                    .map(|a| json!({"id": a, "source": {"name": "OSV", "url": advisory_url(a)}}))
                    .collect(),
            );
        }
        if let Some(reason) = &f.suppressed {
            v["analysis"] = json!({
                "state": "exploitable",
                "response": ["will_not_fix"],
                "detail": format!("suppressed by an ignore rule: {reason}"),
            });
            props.push(json!({"name": "wharf:suppressed", "value": reason}));
        }
        v["properties"] = Value::Array(props);
        vulns.push(v);
    }
    if let Some(components) = bom["components"].as_array_mut() {
        components.extend(extra);
    }
    bom["vulnerabilities"] = Value::Array(vulns);
    if !input.warnings.is_empty() {
        bom["metadata"]["properties"] = Value::Array(
            input
                .warnings
                .iter()
                .map(|w| json!({"name": "wharf:warning", "value": w}))
                .collect(),
        );
    }
    bom
}

#[cfg(test)]
mod tests {
    use super::method;

    #[test]
    fn methods_from_vectors() {
        assert_eq!(method("CVSS:3.1/AV:N/AC:L"), "CVSSv31");
        assert_eq!(method("CVSS:3.0/AV:N"), "CVSSv3");
        assert_eq!(method("CVSS:4.0/AV:N"), "CVSSv4");
        assert_eq!(method("AV:N/AC:L/Au:N/C:P/I:P/A:P"), "CVSSv2");
    }
}
