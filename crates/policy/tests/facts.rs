//! The rules that need facts about images (signatures, scan results, digests) and the mutating
//! webhook's JSONPatch, on reviews wrapped around real `kubectl` objects; the patch is applied
//! with an independent RFC 6902 implementation (json-patch), as the API server applies it, and
//! the result is validated again.

use std::collections::BTreeMap;

use oci::Digest;
use policy::admission::Request;
use policy::{Facts, ImageFacts, Mode, Policy, ScanFact, Severity, SignatureFact};
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// The hardened deployment (restricted-clean) with its containers' images replaced.
fn review_with_images(images: &[&str]) -> Value {
    let mut rv = fixture("review-hardened-deployment.json");
    let spec = &mut rv["request"]["object"]["spec"]["template"]["spec"];
    let first = spec["containers"][0].clone();
    spec["containers"] = Value::Array(
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let mut c = first.clone();
                c["name"] = json!(format!("c{i}"));
                c["image"] = json!(img);
                c
            })
            .collect(),
    );
    rv
}

const SIGNED_POLICY: &str = r#"
[pss]
level = "restricted"
[images]
digest = "enforce"
[signatures]
mode = "enforce"
[[signatures.key]]
name = "release"
path = "/keys/release.pub"
[[signatures.key]]
name = "ci"
path = "/keys/ci.pub"
[[signatures.require]]
match = "ghcr.io/acme/*"
keys = ["release"]
[[signatures.require]]
match = "registry.example.com"
[vulnerabilities]
mode = "enforce"
severity = "high"
unscanned = "warn"
"#;

fn scanned(counts: &[(Severity, usize)], worst: &[(Severity, &str)]) -> ScanFact {
    ScanFact::Scanned {
        counts: counts.iter().copied().collect::<BTreeMap<_, _>>(),
        worst: worst.iter().map(|(s, w)| (*s, w.to_string())).collect(),
    }
}

#[test]
fn fact_requests_name_each_image_once_with_its_keys() {
    let p = Policy::from_toml(SIGNED_POLICY).unwrap();
    let rv = review_with_images(&[
        "ghcr.io/acme/api:2.1",
        "ghcr.io/acme/api:2.1",
        &format!("registry.example.com/tools/jq@{D1}"),
        "docker.io/library/nginx:1.27",
        "NOT A REFERENCE",
    ]);
    let req = Request::parse(&rv).unwrap();
    let asks = req.fact_requests(&p);
    let summary: Vec<(&str, bool, Option<Vec<String>>, bool)> = asks
        .iter()
        .map(|a| (a.image.as_str(), a.digest, a.signature.clone(), a.scan))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "ghcr.io/acme/api:2.1",
                true,
                Some(vec!["release".to_owned()]),
                true
            ),
            (
                &format!("registry.example.com/tools/jq@{D1}")[..],
                false,
                Some(vec!["release".to_owned(), "ci".to_owned()]),
                true
            ),
            ("docker.io/library/nginx:1.27", true, None, true),
        ]
    );
    // Without fact rules nothing is asked.
    assert!(
        Request::parse(&rv)
            .unwrap()
            .fact_requests(&Policy::default())
            .is_empty()
    );
}

#[test]
fn signature_and_scan_rules_decide_from_the_facts() {
    let p = Policy::from_toml(SIGNED_POLICY).unwrap();
    let api = format!("ghcr.io/acme/api:2.1@{D1}");
    let jq = format!("registry.example.com/tools/jq@{D2}");
    let rv = review_with_images(&[&api, &jq]);
    let mut facts = Facts::default();
    facts.images.insert(
        api.clone(),
        ImageFacts {
            digest: None,
            signature: Some(Ok(SignatureFact {
                verified_by: vec!["release".into()],
                rejected: vec![],
            })),
            scan: Some(Ok(scanned(&[(Severity::Medium, 4)], &[]))),
        },
    );
    facts.images.insert(
        jq.clone(),
        ImageFacts {
            digest: None,
            signature: Some(Ok(SignatureFact {
                verified_by: vec!["ci".into()],
                rejected: vec![],
            })),
            scan: Some(Ok(scanned(&[], &[]))),
        },
    );
    let out = Request::parse(&rv).unwrap().validate(&p, Some(&facts));
    assert!(out.decision.allowed, "{:#?}", out.decision.findings);
    assert!(out.decision.findings.is_empty());

    // Signed by the wrong key: refused, naming the key wanted and the rejected signature.
    facts.images.get_mut(&api).unwrap().signature = Some(Ok(SignatureFact {
        verified_by: vec!["ci".into()],
        rejected: vec!["tag sha256-1111.sig: signature does not verify with release".into()],
    }));
    // A critical finding in jq.
    facts.images.get_mut(&jq).unwrap().scan = Some(Ok(scanned(
        &[
            (Severity::Critical, 1),
            (Severity::High, 2),
            (Severity::Low, 9),
        ],
        &[
            (Severity::Critical, "CVE-2024-1 in libjq1 1.6"),
            (Severity::High, "CVE-2024-2 in libonig5 6.9"),
            (Severity::High, "CVE-2024-3 in libc6 2.36"),
            (Severity::Low, "CVE-2024-4 in tar 1.34"),
        ],
    )));
    let out = Request::parse(&rv).unwrap().validate(&p, Some(&facts));
    assert!(!out.decision.allowed);
    let msg = out.response["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains(&format!(
            "[images.signature] container \"c0\": image \"{api}\" ({D1}) has no signature verified by release: tag sha256-1111.sig: signature does not verify with release"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "[images.vulnerabilities] container \"c1\": image \"{jq}\" has 3 unignored findings at high or above: CVE-2024-1 in libjq1 1.6 (critical), CVE-2024-2 in libonig5 6.9 (high), CVE-2024-3 in libc6 2.36 (high)"
        )),
        "{msg}"
    );
    assert!(!msg.contains("CVE-2024-4"), "{msg}");

    // Facts that could not be established fail closed (enforce) or warn (unscanned: warn).
    facts.images.get_mut(&api).unwrap().signature =
        Some(Err("registry ghcr.io: deadline of 2 s passed".into()));
    facts.images.get_mut(&jq).unwrap().scan = Some(Ok(ScanFact::NotScanned("queued".into())));
    let out = Request::parse(&rv).unwrap().validate(&p, Some(&facts));
    assert!(!out.decision.allowed);
    let rules: Vec<(&str, Mode)> = out
        .decision
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.mode))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("images.signature", Mode::Enforce),
            ("images.unscanned", Mode::Warn)
        ]
    );
    assert!(
        out.decision.findings[0]
            .reason
            .ends_with("signatures could not be checked: registry ghcr.io: deadline of 2 s passed")
    );
    let warning = out.response["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with(
            "[images.unscanned] container \"c1\": image \"registry.example.com/tools/jq@sha256:2222"
        ),
        "{warning}"
    );
    assert!(
        warning.len() < policy::admission::MAX_WARNING_LEN,
        "{warning}"
    );

    // No facts at all for an image: its rules fire (never allowed by omission).
    let out = Request::parse(&rv)
        .unwrap()
        .validate(&p, Some(&Facts::default()));
    assert!(!out.decision.allowed);
    assert!(
        out.decision.findings[0]
            .reason
            .contains("its signatures were not checked")
    );
    // Without facts (wharf lint), the fact rules do not run.
    let out = Request::parse(&rv).unwrap().validate(&p, None);
    assert!(out.decision.allowed, "{:#?}", out.decision.findings);
}

#[test]
fn a_tag_is_judged_by_the_digest_it_resolves_to() {
    let p = Policy::from_toml(SIGNED_POLICY).unwrap();
    let rv = review_with_images(&["ghcr.io/acme/api:2.1"]);
    let mut facts = Facts::default();
    facts.images.insert(
        "ghcr.io/acme/api:2.1".into(),
        ImageFacts {
            digest: Some(Err("manifest unknown".into())),
            signature: None,
            scan: None,
        },
    );
    let out = Request::parse(&rv).unwrap().validate(&p, Some(&facts));
    let reasons: Vec<&str> = out
        .decision
        .findings
        .iter()
        .map(|f| f.reason.as_str())
        .collect();
    assert!(
        reasons.contains(
            &"image \"ghcr.io/acme/api:2.1\" needs a signature by release but could not be resolved: manifest unknown"
        ),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(
            &"image \"ghcr.io/acme/api:2.1\" is not pinned to a digest (wharf pin does that)"
        ),
        "{reasons:?}"
    );
}

const MUTATE_POLICY: &str = r#"
[images]
digest = "enforce"
[mutate]
pin = true
cache = "wharf.example.com:5000"
cache_upstreams = ["docker.io", "*.gcr.io"]
"#;

/// Applies the response's JSONPatch to the request's object, as the API server does.
fn apply(review: &Value, response: &Value) -> Value {
    use base64::Engine as _;
    let r = &response["response"];
    let mut object = review["request"]["object"].clone();
    if let Some(p) = r.get("patch") {
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[test]
fn mutation_pins_and_rewrites_then_the_result_validates() {
    let p = Policy::from_toml(MUTATE_POLICY).unwrap();
    let rv = review_with_images(&[
        "nginx:1.27",
        "gcr.io/distroless/static:nonroot",
        "eu.gcr.io/acme/tool:3",
        &format!("ghcr.io/acme/api@{D2}"),
        "ghcr.io/acme/web:1",
    ]);
    // Before: the digest rule refuses the unpinned images.
    assert!(
        !Request::parse(&rv)
            .unwrap()
            .validate(&p, None)
            .decision
            .allowed
    );

    let req = Request::parse(&rv).unwrap();
    let ms = req.mutations(&p);
    let targets: Vec<(&str, bool)> = ms.iter().map(|m| (m.to.as_str(), m.resolve)).collect();
    assert_eq!(
        targets,
        vec![
            ("wharf.example.com:5000/docker.io/library/nginx:1.27", true),
            ("gcr.io/distroless/static:nonroot", true),
            ("wharf.example.com:5000/eu.gcr.io/acme/tool:3", true),
            ("ghcr.io/acme/web:1", true),
        ]
    );
    let mut facts = Facts::default();
    for (i, m) in ms.iter().enumerate() {
        let d = if i == 3 {
            Err("ghcr.io: 503 Service Unavailable".to_owned())
        } else {
            Ok(digest(D1))
        };
        facts.images.insert(
            m.to.clone(),
            ImageFacts {
                digest: Some(d),
                ..ImageFacts::default()
            },
        );
    }
    let out = req.mutate(&p, &facts);
    let resp = &out.response["response"];
    assert_eq!(resp["allowed"], true);
    assert_eq!(out.changed.len(), 3);
    assert_eq!(out.unpinned, 1);
    assert_eq!(
        resp["warnings"][0],
        "[mutate] container \"c4\": image \"ghcr.io/acme/web:1\" not pinned: ghcr.io: 503 Service Unavailable"
    );
    let patched = apply(&rv, &out.response);
    let images: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        vec![
            format!("wharf.example.com:5000/docker.io/library/nginx:1.27@{D1}").as_str(),
            &format!("gcr.io/distroless/static:nonroot@{D1}"),
            &format!("wharf.example.com:5000/eu.gcr.io/acme/tool:3@{D1}"),
            &format!("ghcr.io/acme/api@{D2}"),
            "ghcr.io/acme/web:1",
        ]
    );
    // The patched object validates except for the image that could not be pinned.
    let mut again = rv.clone();
    again["request"]["object"] = patched.clone();
    let v = Request::parse(&again).unwrap().validate(&p, None);
    let at: Vec<&str> = v
        .decision
        .findings
        .iter()
        .map(|f| f.pointer.as_str())
        .collect();
    assert_eq!(at, vec!["/spec/template/spec/containers/4/image"]);

    // Mutating the mutated object again (reinvocation) changes nothing but the unpinned one.
    let again_req = Request::parse(&again).unwrap();
    let ms2 = again_req.mutations(&p);
    assert_eq!(ms2.len(), 1, "{ms2:?}");
    assert_eq!(ms2[0].from, "ghcr.io/acme/web:1");
}

#[test]
fn updates_pin_only_changed_images_and_ephemeral_debug_only_its_container() {
    let p = Policy::from_toml(MUTATE_POLICY).unwrap();
    let mut rv = review_with_images(&["ghcr.io/acme/web:1", "ghcr.io/acme/api:2"]);
    rv["request"]["operation"] = json!("UPDATE");
    let mut old = rv["request"]["object"].clone();
    old["spec"]["template"]["spec"]["containers"][1]["image"] = json!("ghcr.io/acme/api:1");
    rv["request"]["oldObject"] = old;
    let ms = Request::parse(&rv).unwrap().mutations(&p);
    let from: Vec<&str> = ms.iter().map(|m| m.from.as_str()).collect();
    assert_eq!(from, vec!["ghcr.io/acme/api:2"]);

    let mut pod = fixture("review-privileged-pod.json");
    pod["request"]["operation"] = json!("UPDATE");
    pod["request"]["subResource"] = json!("ephemeralcontainers");
    pod["request"]["oldObject"] = pod["request"]["object"].clone();
    pod["request"]["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox:1.36"}]);
    let ms = Request::parse(&pod).unwrap().mutations(&p);
    let to: Vec<&str> = ms.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(
        to,
        vec!["wharf.example.com:5000/docker.io/library/busybox:1.36"]
    );
    assert_eq!(ms[0].pointer, "/spec/ephemeralContainers/0/image");
}

#[test]
fn policy_file_mistakes_in_the_new_sections_are_errors() {
    for (bad, want) in [
        (
            "[signatures]\nmode = \"enforce\"\n[[signatures.require]]\nmatch = \"ghcr.io\"\n",
            "no [[signatures.key]]",
        ),
        (
            "[signatures]\nmode = \"enforce\"\n[[signatures.key]]\nname = \"a\"\npath = \"/a\"\n",
            "no [[signatures.require]]",
        ),
        (
            "[[signatures.key]]\nname = \"a\"\npath = \"/a\"\n[[signatures.require]]\nmatch = \"x.io\"\nkeys = [\"b\"]\n",
            "no [[signatures.key]] is named \"b\"",
        ),
        (
            "[[signatures.key]]\nname = \"a\"\npath = \"/a\"\n[[signatures.key]]\nname = \"a\"\npath = \"/b\"\n",
            "named twice",
        ),
        ("[vulnerabilities]\nseverity = \"severe\"\n", "severe"),
        (
            "[mutate]\ncache = \"wharf.example.com\"\n",
            "cache_upstreams",
        ),
        (
            "[mutate]\ncache_upstreams = [\"docker.io\"]\n",
            "needs mutate.cache",
        ),
        (
            "[mutate]\ncache = \"wharf\"\ncache_upstreams = [\"docker.io\"]\n",
            "not a registry host",
        ),
        (
            "[mutate]\ncache = \"wharf.io\"\ncache_upstreams = [\"docker.io/library\"]\n",
            "not a registry host pattern",
        ),
        ("[mutate]\npin = \"yes\"\n", "invalid"),
    ] {
        let e = Policy::from_toml(bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
    let p = Policy::from_toml(SIGNED_POLICY).unwrap();
    assert_eq!(p.vulnerabilities.severity, Severity::High);
    assert_eq!(p.signatures.keys.len(), 2);
    assert!(p.needs_facts());
    assert!(!Policy::default().needs_facts());
}
