//! CycloneDX 1.6 and SPDX 2.3 SBOMs, checked by the formats' own validators
//! (cyclonedx-python-lib's strict JSON schema validator, SPDX's pyspdxtools), installed by
//! scripts/install-test-deps.sh. Each validator is first shown to reject a broken document,
//! so a pass means something.

mod sbom_support;

use std::collections::HashSet;
use std::process::Command;

use sbom_support::{inventory, validate_cyclonedx, venv};
use scan::sbom::{ImageInfo, SbomOptions, bom_refs, cyclonedx, spdx};

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
        uuid: Some(uuid::Uuid::from_u128(
            0x1234_5678_9abc_4def_8123_4567_89ab_cdef,
        )),
        tool: None,
    }
}

fn pyspdxtools(file: &std::path::Path) -> (bool, String) {
    let tool = venv().join("bin/pyspdxtools");
    assert!(
        tool.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        tool.display()
    );
    let out = Command::new(tool).arg("-i").arg(file).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // pyspdxtools prints validation messages and exits non-zero on an invalid document.
    (
        out.status.success() && !text.contains("ValidationMessage"),
        text,
    )
}

#[test]
fn cyclonedx_is_valid_1_6_and_says_what_the_inventory_holds() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let bom = cyclonedx(&image(), &inv, &options());
    let file = dir.path().join("bom.cdx.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bom).unwrap()).unwrap();
    let (ok, msg) = validate_cyclonedx(&file);
    assert!(ok, "CycloneDX validator: {msg}");

    // The validator does reject: a component without a name, an unknown type.
    let mut broken = bom.clone();
    broken["components"][1]
        .as_object_mut()
        .unwrap()
        .remove("name");
    broken["components"][2]["type"] = "package".into();
    let bad = dir.path().join("broken.cdx.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(
        !validate_cyclonedx(&bad).0,
        "the validator accepted a broken BOM"
    );

    assert_eq!(bom["metadata"]["component"]["type"], "container");
    assert_eq!(
        bom["metadata"]["component"]["purl"],
        "pkg:oci/app@sha256%3A9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08?arch=amd64&repository_url=127.0.0.1%3A5000%2Fteam%2Fapp"
    );
    assert_eq!(
        bom["serialNumber"],
        "urn:uuid:12345678-9abc-4def-8123-456789abcdef"
    );
    let comps = bom["components"].as_array().unwrap();
    // The OS, then one component per package (the lockfile's duplicate lodash included).
    assert_eq!(comps.len(), 1 + inv.packages.len());
    assert_eq!(comps[0]["type"], "operating-system");
    assert_eq!(comps[0]["version"], "12");
    let refs: HashSet<&str> = comps
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), comps.len(), "bom-refs must be unique");
    let libc = comps.iter().find(|c| c["name"] == "libc6").unwrap();
    assert_eq!(
        libc["purl"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u2?arch=amd64&distro=debian-12&upstream=glibc"
    );
    let prop = |c: &serde_json::Value, k: &str| {
        c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == k)
            .map(|p| p["value"].as_str().unwrap().to_string())
    };
    assert_eq!(prop(libc, "wharf:package:layer").unwrap(), sbom_support::L1);
    assert_eq!(
        prop(libc, "wharf:package:path").unwrap(),
        "/var/lib/dpkg/status"
    );
    assert_eq!(prop(libc, "wharf:package:source-name").unwrap(), "glibc");
    assert_eq!(libc["licenses"][0]["license"]["name"], "GPL-2+");
    let rustls = comps.iter().find(|c| c["name"] == "rustls").unwrap();
    assert_eq!(
        rustls["licenses"][0]["expression"],
        "Apache-2.0 OR ISC OR MIT"
    );
    let babel = comps.iter().find(|c| c["name"] == "traverse").unwrap();
    assert_eq!(babel["group"], "@babel");
    assert_eq!(babel["purl"], "pkg:npm/%40babel/traverse@7.22.5");
    let log4j = comps.iter().find(|c| c["name"] == "log4j-core").unwrap();
    assert_eq!(log4j["group"], "org.apache.logging.log4j");
    // bom_refs is what the components carry, in inventory order.
    let want = bom_refs(&inv);
    let got: Vec<&str> = comps[1..]
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);

    // Deterministic for the same inputs; only the volatile fields move otherwise.
    assert_eq!(bom, cyclonedx(&image(), &inv, &options()));
    let mut fresh = cyclonedx(&image(), &inv, &SbomOptions::default());
    assert_ne!(fresh["serialNumber"], bom["serialNumber"]);
    fresh["serialNumber"] = bom["serialNumber"].clone();
    fresh["metadata"]["timestamp"] = bom["metadata"]["timestamp"].clone();
    assert_eq!(fresh, bom);
}

#[test]
fn spdx_is_valid_2_3_with_purls_and_relationships() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory();
    let doc = spdx(&image(), &inv, &options());
    let file = dir.path().join("sbom.spdx.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let (ok, msg) = pyspdxtools(&file);
    assert!(ok, "pyspdxtools: {msg}");

    // The validator does reject: an SPDXID with a character SPDX forbids, a CONTAINS to
    // nothing.
    let mut broken = doc.clone();
    broken["packages"][2]["SPDXID"] = "SPDXRef-Package-deb-libc6_2.36".into();
    broken["relationships"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-nothing"}));
    let bad = dir.path().join("broken.spdx.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(
        !pyspdxtools(&bad).0,
        "pyspdxtools accepted a broken document"
    );

    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(
        doc["documentNamespace"],
        "https://spdx.org/spdxdocs/127.0.0.1-5000-team-app-1.0-12345678-9abc-4def-8123-456789abcdef"
    );
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 2 + inv.packages.len());
    let ids: HashSet<&str> = packages
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), packages.len(), "SPDXIDs must be unique");
    for id in &ids {
        assert!(
            id.strip_prefix("SPDXRef-")
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
    }
    let rel = doc["relationships"].as_array().unwrap();
    assert_eq!(
        rel.iter()
            .filter(|r| r["relationshipType"] == "DESCRIBES")
            .count(),
        1
    );
    assert_eq!(
        rel.iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count(),
        1 + inv.packages.len()
    );
    let purls: Vec<&str> = packages
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    for p in &inv.packages {
        let purl = p.purl(inv.os.as_ref());
        assert!(purls.contains(&purl.as_str()), "{purl}");
    }
    // Declared licences survive as LicenseRefs with their text.
    let extracted = doc["hasExtractedLicensingInfos"].as_array().unwrap();
    assert!(extracted.iter().any(|e| e["extractedText"] == "GPL-2+"));
    let libc = packages.iter().find(|p| p["name"] == "libc6").unwrap();
    assert!(libc["licenseDeclared"].as_str().unwrap().contains(" AND "));
    assert!(
        libc["sourceInfo"]
            .as_str()
            .unwrap()
            .contains(sbom_support::L1)
    );
    assert_eq!(doc, spdx(&image(), &inv, &options()));
}

#[test]
fn an_empty_inventory_is_still_a_valid_sbom() {
    let dir = tempfile::tempdir().unwrap();
    let inv = scan::ImageInventory::default();
    let info = ImageInfo {
        name: "oci:/tmp/x:v1".into(),
        ..Default::default()
    };
    let f1 = dir.path().join("e.cdx.json");
    std::fs::write(
        &f1,
        serde_json::to_vec(&cyclonedx(&info, &inv, &options())).unwrap(),
    )
    .unwrap();
    let (ok, msg) = validate_cyclonedx(&f1);
    assert!(ok, "{msg}");
    let f2 = dir.path().join("e.spdx.json");
    std::fs::write(
        &f2,
        serde_json::to_vec(&spdx(&info, &inv, &options())).unwrap(),
    )
    .unwrap();
    let (ok, msg) = pyspdxtools(&f2);
    assert!(ok, "{msg}");
}
