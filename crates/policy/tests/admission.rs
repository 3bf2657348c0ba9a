//! AdmissionReview handling, on reviews wrapped around real `kubectl` objects
//! (tests/fixtures/review-*.json, made by generate.sh and wrap-review.py).

use policy::admission::{MAX_WARNING_LEN, ReviewError, Skip, review};
use policy::{Exemption, Mode, Policy};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn policy() -> Policy {
    let path = format!(
        "{}/tests/fixtures/admission-policy.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    Policy::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn response(r: &Value) -> &Value {
    &r["response"]
}

#[test]
fn privileged_pod_is_denied_naming_rules_containers_and_reasons() {
    let rv = fixture("review-privileged-pod.json");
    let out = review(&policy(), &rv).unwrap();
    let resp = response(&out.response);
    assert_eq!(out.response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out.response["kind"], "AdmissionReview");
    assert_eq!(resp["uid"], rv["request"]["uid"]);
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with("violates Wharf policy: "), "{msg}");
    for want in [
        "[pss.privileged] container \"rooted\": privileged (container \"rooted\" must not set securityContext.privileged=true) (Pod Security baseline:latest)",
        "[pss.hostNamespaces] Pod/rooted: host namespaces (hostNetwork=true, hostPID=true)",
        "[pss.hostPathVolumes] Pod/rooted: hostPath volumes (volume \"host\")",
        "[pss.hostPorts] container \"rooted\": hostPort",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    let d = &out.decision;
    assert!(!d.allowed);
    assert_eq!((d.kind.as_str(), d.name.as_str()), ("Pod", "rooted"));
    assert_eq!(d.namespace.as_deref(), Some("apps"));
    assert_eq!(d.username.as_deref(), Some("kubernetes-admin"));
    assert!(d.rules().contains(&"pss.privileged"));
    // alpine:3.20 is an allowed, pinned-by-tag image: no image finding.
    assert!(!d.rules().iter().any(|r| r.starts_with("images.")));
}

#[test]
fn compliant_deployment_is_allowed_and_audit_findings_are_only_annotated() {
    let out = review(&policy(), &fixture("review-hardened-deployment.json")).unwrap();
    let resp = response(&out.response);
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("status").is_none());
    assert!(resp.get("warnings").is_none(), "{resp}");
    // No probes: hygiene.probes is at audit in the test policy.
    assert_eq!(out.decision.with_mode(Mode::Audit).count(), 1);
    let ann = resp["auditAnnotations"]["audit-violations"]
        .as_str()
        .unwrap();
    assert!(
        ann.contains("[hygiene.probes] container \"nginx\""),
        "{ann}"
    );
}

#[test]
fn latest_image_is_allowed_with_a_warning() {
    let out = review(&policy(), &fixture("review-deployment-latest.json")).unwrap();
    let resp = response(&out.response);
    assert_eq!(resp["allowed"], true);
    let w = resp["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let w = w[0].as_str().unwrap();
    assert!(
        w.starts_with("[images.latest] container \"nginx\": image \"nginx:latest\""),
        "{w}"
    );
    assert!(w.len() < MAX_WARNING_LEN, "{w}");
}

#[test]
fn job_and_cronjob_are_allowed() {
    for f in ["review-job.json", "review-cronjob.json"] {
        let out = review(&policy(), &fixture(f)).unwrap();
        assert_eq!(response(&out.response)["allowed"], true, "{f}");
        assert!(
            out.decision
                .findings
                .iter()
                .all(|x| x.rule == "hygiene.probes"),
            "{f}: {:?}",
            out.decision.findings
        );
    }
}

#[test]
fn namespace_level_comes_from_the_policy() {
    // kubectl's default deployment passes baseline but not restricted (restricted-*).
    let rv = fixture("review-deployment-restricted-ns.json");
    let out = review(&policy(), &rv).unwrap();
    let msg = response(&out.response)["status"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("(Pod Security restricted:latest)"), "{msg}");
    assert!(
        msg.contains("[pss.runAsNonRoot] container \"nginx\""),
        "{msg}"
    );
    // The request's namespace decides, even when the object does not carry one.
    let mut rv2 = fixture("review-deployment-restricted-ns.json");
    rv2["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    assert_eq!(
        response(&review(&policy(), &rv2).unwrap().response)["allowed"],
        false
    );
    let mut rv3 = rv.clone();
    rv3["request"]["namespace"] = json!("apps");
    rv3["request"]["object"]["metadata"]["namespace"] = json!("apps");
    assert_eq!(
        response(&review(&policy(), &rv3).unwrap().response)["allowed"],
        true
    );
}

#[test]
fn exemptions_lift_pod_security_only() {
    let mut rv = fixture("review-privileged-pod.json");
    rv["request"]["namespace"] = json!("kube-system");
    let out = review(&policy(), &rv).unwrap();
    assert_eq!(response(&out.response)["allowed"], true);
    assert_eq!(out.decision.exempt, Some(Exemption::Namespace));

    let mut rv = fixture("review-privileged-pod.json");
    rv["request"]["userInfo"]["username"] =
        json!("system:serviceaccount:kube-system:node-debugger");
    // An image outside the allowed registries is still refused.
    rv["request"]["object"]["spec"]["containers"][0]["image"] = json!("quay.io/evil/tool:1");
    let out = review(&policy(), &rv).unwrap();
    assert_eq!(out.decision.exempt, Some(Exemption::Username));
    assert_eq!(
        out.decision.rules(),
        vec!["images.registry", "hygiene.probes"]
    );
    let msg = response(&out.response)["status"]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.starts_with("violates Wharf policy: [images.registry] container \"rooted\":"),
        "{msg}"
    );
}

#[test]
fn deletes_subresources_and_unchanged_updates_are_not_evaluated() {
    let rv = fixture("review-privileged-pod.json");
    let mut del = rv.clone();
    del["request"]["operation"] = json!("DELETE");
    del["request"]["oldObject"] = del["request"]["object"].take();
    let out = review(&policy(), &del).unwrap();
    assert_eq!(response(&out.response)["allowed"], true);
    assert_eq!(out.decision.skipped, Some(Skip::Operation));

    let mut status = rv.clone();
    status["request"]["operation"] = json!("UPDATE");
    status["request"]["subResource"] = json!("status");
    assert_eq!(
        review(&policy(), &status).unwrap().decision.skipped,
        Some(Skip::Subresource)
    );

    let mut relabel = rv.clone();
    relabel["request"]["operation"] = json!("UPDATE");
    relabel["request"]["oldObject"] = relabel["request"]["object"].clone();
    relabel["request"]["object"]["metadata"]["labels"]["team"] = json!("x");
    let out = review(&policy(), &relabel).unwrap();
    assert_eq!(out.decision.skipped, Some(Skip::UnchangedPods));
    assert!(out.decision.allowed);

    // An update that changes the pod spec is evaluated.
    let mut edit = relabel.clone();
    edit["request"]["oldObject"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        json!(false);
    let out = review(&policy(), &edit).unwrap();
    assert_eq!(out.decision.skipped, None);
    assert!(!out.decision.allowed);

    // Ephemeral containers are checked.
    let mut eph = rv.clone();
    eph["request"]["operation"] = json!("UPDATE");
    eph["request"]["subResource"] = json!("ephemeralcontainers");
    assert!(!review(&policy(), &eph).unwrap().decision.allowed);
}

#[test]
fn warnings_are_short_and_messages_bounded() {
    let mut rv = fixture("review-deployment-latest.json");
    let long = |i| format!("docker.io/library/{}{i}:latest", "n".repeat(200));
    let c = rv["request"]["object"]["spec"]["template"]["spec"]["containers"][0].clone();
    let mut cs = Vec::new();
    for i in 0..50 {
        let mut c = c.clone();
        c["name"] = json!(format!("c{i}"));
        c["image"] = json!(long(i));
        cs.push(c);
    }
    rv["request"]["object"]["spec"]["template"]["spec"]["containers"] = json!(cs);
    let out = review(&policy(), &rv).unwrap();
    let w = response(&out.response)["warnings"].as_array().unwrap();
    assert!(w.len() <= 32);
    assert!(
        w.iter()
            .all(|w| w.as_str().unwrap().len() < MAX_WARNING_LEN)
    );
    assert!(w[0].as_str().unwrap().ends_with("..."));
    assert_eq!(w.last().unwrap(), "and 19 more warnings");
}

#[test]
fn malformed_reviews_are_errors() {
    let good = fixture("review-job.json");
    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2]), "not a JSON object"),
        (
            {
                let mut r = good.clone();
                r["apiVersion"] = json!("admission.k8s.io/v1beta1");
                r
            },
            "apiVersion",
        ),
        (
            {
                let mut r = good.clone();
                r["kind"] = json!("Pod");
                r
            },
            "kind",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            "request",
        ),
        (
            {
                let mut r = good.clone();
                r["request"].as_object_mut().unwrap().remove("uid");
                r
            },
            "uid",
        ),
        (
            {
                let mut r = good.clone();
                r["request"]["operation"] = json!("PATCH");
                r
            },
            "operation",
        ),
        (
            {
                let mut r = good.clone();
                r["request"]["object"] = Value::Null;
                r
            },
            "object",
        ),
        (
            {
                let mut r = good.clone();
                r["request"]["object"] = json!("x");
                r
            },
            "object",
        ),
    ];
    for (bad, want) in cases {
        let e: ReviewError = review(&policy(), &bad).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

#[test]
fn one_check_failing_in_several_containers_is_one_part() {
    // Two privileged containers: upstream's one violation names both; so does the message.
    let mut rv = fixture("review-privileged-pod.json");
    let mut c = rv["request"]["object"]["spec"]["containers"][0].clone();
    c["name"] = json!("second");
    c["ports"] = json!([]);
    rv["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(c);
    let out = review(&policy(), &rv).unwrap();
    let msg = response(&out.response)["status"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(msg.matches("[pss.privileged]").count(), 1, "{msg}");
    assert!(
        msg.contains(
            "[pss.privileged] containers \"rooted\", \"second\": privileged (containers \"rooted\", \"second\" must not set securityContext.privileged=true)"
        ),
        "{msg}"
    );
}
