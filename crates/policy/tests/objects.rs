//! Whole objects: the real objects `kubectl` generates (tests/fixtures, made by
//! tests/fixtures/generate.sh with kubectl v1.32.4), hand-written workload kinds, namespaces and
//! exemptions.

use std::path::Path;

use policy::{
    ContainerKind, Exemption, Exemptions, Level, LevelVersion, NamespacePolicy, Version,
    evaluate_object, workloads,
};
use serde_json::{Value, json};

use Level::{Baseline, Restricted};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The check ids found in `object`, sorted.
fn ids(level: Level, version: Version, object: &Value) -> Vec<&'static str> {
    let mut ids: Vec<_> = evaluate_object(level, version, object)
        .into_iter()
        .map(|(_, v)| v.check)
        .collect();
    ids.sort_unstable();
    ids
}

/// What a default kubectl workload violates at restricted.
const DEFAULT_RESTRICTED: [&str; 4] = [
    "allowPrivilegeEscalation",
    "capabilities_restricted",
    "runAsNonRoot",
    "seccompProfile_restricted",
];

#[test]
fn kubectl_version_is_recorded() {
    let v = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl-version.txt"),
    )
    .unwrap();
    assert!(v.starts_with("Client Version: v1.32"), "{v}");
}

#[test]
fn kubectl_default_workloads_pass_baseline_fail_restricted() {
    for (file, kind, spec_path, container) in [
        (
            "deployment.json",
            "Deployment",
            &["spec", "template", "spec"][..],
            "nginx",
        ),
        ("job.json", "Job", &["spec", "template", "spec"], "backup"),
        (
            "cronjob.json",
            "CronJob",
            &["spec", "jobTemplate", "spec", "template", "spec"],
            "nightly",
        ),
        ("pod.json", "Pod", &["spec"], "debug"),
    ] {
        let object = fixture(file);
        let found = workloads(&object);
        assert_eq!(found.len(), 1, "{file}");
        assert_eq!(found[0].location.kind, kind);
        assert_eq!(found[0].location.spec_path, spec_path);
        assert!(found[0].spec["containers"].is_array(), "{file}");
        assert!(
            evaluate_object(Baseline, Version::Latest, &object).is_empty(),
            "{file}"
        );
        assert_eq!(
            ids(Restricted, Version::Latest, &object),
            DEFAULT_RESTRICTED,
            "{file}"
        );
        // Before v1.19 none of the four existed but runAsNonRoot; v1.8 added
        // allowPrivilegeEscalation.
        assert_eq!(
            ids(Restricted, Version::V1(18), &object),
            ["allowPrivilegeEscalation", "runAsNonRoot"]
        );
        for (_, v) in evaluate_object(Restricted, Version::Latest, &object) {
            let c: Vec<_> = v.containers().collect();
            assert_eq!(c.len(), 1, "{v}");
            assert_eq!(
                (c[0].kind, c[0].index, c[0].name.as_str()),
                (ContainerKind::Regular, 0, container)
            );
        }
    }
}

#[test]
fn kubectl_deployment_messages() {
    let found = evaluate_object(Restricted, Version::Latest, &fixture("deployment.json"));
    let messages: Vec<String> = found.iter().map(|(_, v)| v.message()).collect();
    assert_eq!(
        messages,
        [
            r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false)"#,
            r#"runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true)"#,
            r#"seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            r#"unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"])"#,
        ]
    );
    assert_eq!(found[0].0.to_string(), "Deployment/web");
}

#[test]
fn kubectl_hardened_deployment_passes_restricted() {
    let object = fixture("hardened-deployment.json");
    assert_eq!(workloads(&object).len(), 1);
    for minor in [0, 19, 22, 23, 25, 35, 37] {
        assert!(
            evaluate_object(Restricted, Version::V1(minor), &object).is_empty(),
            "v1.{minor}"
        );
    }
}

#[test]
fn kubectl_privileged_pod() {
    let object = fixture("privileged-pod.json");
    assert_eq!(
        ids(Baseline, Version::Latest, &object),
        [
            "hostNamespaces",
            "hostPathVolumes",
            "hostPorts",
            "privileged"
        ]
    );
    let found = evaluate_object(Baseline, Version::Latest, &object);
    assert_eq!(
        found[0].1.message(),
        "host namespaces (hostNetwork=true, hostPID=true)"
    );
    assert!(evaluate_object(Level::Privileged, Version::Latest, &object).is_empty());
}

#[test]
fn kubectl_list_finds_every_item() {
    let object = fixture("list.json");
    let found = workloads(&object);
    let kinds: Vec<_> = found
        .iter()
        .map(|w| (w.location.items.clone(), w.location.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (vec![0], "Deployment"),
            (vec![1], "Job"),
            (vec![2], "CronJob"),
            (vec![3], "Pod")
        ]
    );
    assert_eq!(
        evaluate_object(Restricted, Version::Latest, &object).len(),
        4 * DEFAULT_RESTRICTED.len()
    );
    assert_eq!(found[2].location.to_string(), "items[2] CronJob/nightly");
}

fn template(kind: &str, api_version: &str, path: &[&str]) -> Value {
    let pod = json!({
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    });
    // Wrap the pod template (metadata + spec) at path[..len-1].
    let mut object = pod;
    for key in path[..path.len() - 1].iter().rev() {
        object = json!({ *key: object });
    }
    let mut object = object.as_object().unwrap().clone();
    object.insert("kind".into(), json!(kind));
    object.insert("apiVersion".into(), json!(api_version));
    // The object's own metadata (for a Pod, also the pod's: keep its annotations).
    let meta = object.entry("metadata").or_insert_with(|| json!({}));
    meta["name"] = json!("w");
    meta["namespace"] = json!("team");
    Value::Object(object)
}

#[test]
fn every_workload_kind_uses_its_template_metadata() {
    let cases = [
        ("Pod", "v1", &["spec"][..]),
        ("PodTemplate", "v1", &["template", "spec"]),
        ("ReplicationController", "v1", &["spec", "template", "spec"]),
        ("Deployment", "apps/v1", &["spec", "template", "spec"]),
        ("StatefulSet", "apps/v1", &["spec", "template", "spec"]),
        ("DaemonSet", "apps/v1", &["spec", "template", "spec"]),
        ("ReplicaSet", "apps/v1", &["spec", "template", "spec"]),
        ("Job", "batch/v1", &["spec", "template", "spec"]),
        (
            "CronJob",
            "batch/v1",
            &["spec", "jobTemplate", "spec", "template", "spec"],
        ),
    ];
    for (kind, api, path) in cases {
        let object = template(kind, api, path);
        let found = evaluate_object(Baseline, Version::Latest, &object);
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        assert_eq!(found[0].1.check, "appArmorProfile", "{kind}");
        assert_eq!(found[0].0.namespace.as_deref(), Some("team"));
        assert_eq!(found[0].0.spec_path, path);
    }
    // The same kinds in another API group are not workloads.
    let crd = template(
        "Deployment",
        "example.com/v1",
        &["spec", "template", "spec"],
    );
    assert!(workloads(&crd).is_empty());
    assert!(workloads(&json!({"kind": "Service", "apiVersion": "v1", "spec": {}})).is_empty());
}

#[test]
fn pod_spec_containers_of_all_kinds() {
    let object = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
            "ephemeralContainers": [{"name": "e", "image": "x", "securityContext": {"privileged": true}}]
        }
    });
    let found = evaluate_object(Baseline, Version::Latest, &object);
    assert_eq!(found.len(), 1);
    let c: Vec<_> = found[0].1.containers().collect();
    assert_eq!(
        (c[0].kind, c[0].index, c[0].name.as_str()),
        (ContainerKind::Ephemeral, 0, "e")
    );
    assert_eq!(c[0].to_string(), r#"ephemeralContainers[0] "e""#);
    let restricted = evaluate_object(Restricted, Version::Latest, &object);
    let ape = restricted
        .iter()
        .find(|(_, v)| v.check == "allowPrivilegeEscalation")
        .unwrap();
    assert_eq!(
        ape.1.detail,
        r#"containers "i", "a", "b", "e" must set securityContext.allowPrivilegeEscalation=false"#
    );
}

#[test]
fn nested_lists_are_bounded() {
    let mut object =
        json!({"apiVersion": "v1", "kind": "Pod", "spec": {"hostIPC": true, "containers": []}});
    for _ in 0..20 {
        object = json!({"apiVersion": "v1", "kind": "List", "items": [object]});
    }
    assert!(workloads(&object).is_empty());
    let mut shallow =
        json!({"apiVersion": "v1", "kind": "Pod", "spec": {"hostIPC": true, "containers": []}});
    for _ in 0..3 {
        shallow = json!({"apiVersion": "v1", "kind": "PodList", "items": [shallow]});
    }
    let found = evaluate_object(Baseline, Version::Latest, &shallow);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.items, [0, 0, 0]);
}

fn namespace(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": labels}})
}

#[test]
fn namespace_labels() {
    let ns = namespace(json!({
        "kubernetes.io/metadata.name": "team",
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.25",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest"
    }));
    let (p, errors) = NamespacePolicy::from_namespace(&ns, NamespacePolicy::default());
    assert!(errors.is_empty());
    assert_eq!(
        p.enforce,
        LevelVersion {
            level: Baseline,
            version: Version::V1(25)
        }
    );
    assert_eq!(
        p.warn,
        LevelVersion {
            level: Restricted,
            version: Version::Latest
        }
    );
    assert_eq!(
        p.audit,
        LevelVersion {
            level: Restricted,
            version: Version::Latest
        }
    );
}

#[test]
fn namespace_labels_default_and_fail_as_upstream() {
    // No labels: the defaults.
    let defaults = NamespacePolicy {
        enforce: LevelVersion {
            level: Baseline,
            version: Version::V1(30),
        },
        ..NamespacePolicy::default()
    };
    let (p, errors) = NamespacePolicy::from_namespace(&namespace(json!({})), defaults);
    assert_eq!((p, errors.len()), (defaults, 0));
    // Invalid: enforce fails closed (restricted), warn and audit fail open (privileged),
    // versions become latest.
    let ns = namespace(json!({
        "pod-security.kubernetes.io/enforce": "Baseline",
        "pod-security.kubernetes.io/enforce-version": "1.25",
        "pod-security.kubernetes.io/warn": "strict",
        "pod-security.kubernetes.io/audit": "",
        "pod-security.kubernetes.io/audit-version": "v1.025"
    }));
    let (p, errors) = NamespacePolicy::from_namespace(&ns, defaults);
    assert_eq!(
        p.enforce,
        LevelVersion {
            level: Restricted,
            version: Version::Latest
        }
    );
    assert_eq!(p.warn.level, Level::Privileged);
    assert_eq!(
        p.audit,
        LevelVersion {
            level: Level::Privileged,
            version: Version::Latest
        }
    );
    let mut labels: Vec<_> = errors.iter().map(|e| e.label).collect();
    labels.sort_unstable();
    assert_eq!(
        labels,
        [
            "pod-security.kubernetes.io/audit",
            "pod-security.kubernetes.io/audit-version",
            "pod-security.kubernetes.io/enforce",
            "pod-security.kubernetes.io/enforce-version",
            "pod-security.kubernetes.io/warn"
        ]
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("label pod-security.kubernetes.io/")
    );
}

#[test]
fn exemptions() {
    let ex = Exemptions {
        usernames: ["system:serviceaccount:kube-system:replicaset-controller".to_owned()].into(),
        runtime_classes: ["kata".to_owned()].into(),
        namespaces: ["kube-system".to_owned()].into(),
    };
    assert_eq!(
        ex.check("kube-system", None, None),
        Some(Exemption::Namespace)
    );
    assert_eq!(
        ex.check(
            "team",
            Some("system:serviceaccount:kube-system:replicaset-controller"),
            None
        ),
        Some(Exemption::Username)
    );
    assert_eq!(
        ex.check("team", Some("alice"), Some("kata")),
        Some(Exemption::RuntimeClass)
    );
    assert_eq!(ex.check("team", Some("alice"), Some("runc")), None);
    assert_eq!(ex.check("kube-system-2", None, None), None);
    let spec = json!({"runtimeClassName": "kata", "containers": []});
    assert_eq!(
        ex.check_pod("team", None, &spec),
        Some(Exemption::RuntimeClass)
    );
    assert_eq!(
        Exemptions::default().check("kube-system", Some("x"), Some("kata")),
        None
    );
}

/// The objects of a fixture holding a stream of JSON documents (`kubectl create -f` of a
/// multi-document file prints one per object).
fn fixture_stream(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn shared_example_privileged_pod() {
    // /work/shared/examples/privileged-pod.yaml as kubectl decodes it.
    let objects = fixture_stream("example-privileged-pod.json");
    assert_eq!(objects.len(), 1);
    let messages: Vec<String> = evaluate_object(Baseline, Version::Latest, &objects[0])
        .into_iter()
        .map(|(l, v)| format!("{l}: {v}"))
        .collect();
    assert_eq!(
        messages,
        [
            "Pod/node-debugger: hostNamespaces: host namespaces (hostNetwork=true)",
            r#"Pod/node-debugger: privileged: privileged (container "shell" must not set securityContext.privileged=true)"#,
            r#"Pod/node-debugger: capabilities_baseline: non-default capabilities (container "shell" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
            r#"Pod/node-debugger: hostPathVolumes: hostPath volumes (volume "host")"#,
        ]
    );
    assert_eq!(
        ids(Restricted, Version::Latest, &objects[0]),
        [
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "hostNamespaces",
            "privileged",
            "restrictedVolumes",
            "runAsNonRoot",
            "seccompProfile_restricted"
        ]
    );
}

#[test]
fn shared_examples_deployments() {
    let app = fixture_stream("example-my-app-deployment.json");
    assert_eq!(app.len(), 1);
    assert!(evaluate_object(Baseline, Version::Latest, &app[0]).is_empty());
    assert_eq!(
        ids(Restricted, Version::Latest, &app[0]),
        DEFAULT_RESTRICTED
    );

    let drift = fixture_stream("example-drift-and-latest.json");
    let kinds: Vec<String> = drift
        .iter()
        .flat_map(workloads)
        .map(|w| w.location.to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "Deployment/billing",
            "StatefulSet/ledger",
            "CronJob/nightly-report"
        ]
    );
    for object in &drift {
        assert!(evaluate_object(Baseline, Version::Latest, object).is_empty());
        assert_eq!(ids(Restricted, Version::Latest, object), DEFAULT_RESTRICTED);
    }
    // The init container and the sidecar are named.
    let billing = evaluate_object(Restricted, Version::Latest, &drift[0]);
    assert_eq!(
        billing[0].1.detail,
        r#"containers "migrate", "api" must set securityContext.allowPrivilegeEscalation=false"#
    );
    let ledger = evaluate_object(Restricted, Version::Latest, &drift[1]);
    assert_eq!(
        ledger[0].1.detail,
        r#"containers "api", "sidecar" must set securityContext.allowPrivilegeEscalation=false"#
    );
}

#[test]
fn serde_forms() {
    let found = evaluate_object(Restricted, Version::V1(30), &fixture("pod.json"));
    let (location, violation) = &found[0];
    assert_eq!(
        serde_json::to_value(location).unwrap(),
        json!({"items": [], "kind": "Pod", "name": "debug", "namespace": null, "spec_path": ["spec"]})
    );
    assert_eq!(
        serde_json::to_value(violation).unwrap(),
        json!({
            "check": "allowPrivilegeEscalation",
            "level": "restricted",
            "reason": "allowPrivilegeEscalation != false",
            "detail": "container \"debug\" must set securityContext.allowPrivilegeEscalation=false",
            "targets": [{"container": {"kind": "containers", "index": 0, "name": "debug"}}]
        })
    );
    let p: NamespacePolicy = serde_json::from_value(json!({
        "enforce": {"level": "baseline", "version": "v1.30"},
        "audit": {"level": "restricted", "version": "latest"},
        "warn": {"level": "restricted", "version": "latest"}
    }))
    .unwrap();
    assert_eq!(
        p.enforce,
        LevelVersion {
            level: Baseline,
            version: Version::V1(30)
        }
    );
    assert!(serde_json::from_value::<Version>(json!("v1.030")).is_err());
    assert!(serde_json::from_value::<Level>(json!("Baseline")).is_err());
    let ex: Exemptions = serde_json::from_value(json!({"runtimeClasses": ["kata"]})).unwrap();
    assert_eq!(
        ex.check("x", None, Some("kata")),
        Some(Exemption::RuntimeClass)
    );
}
