//! The Kubernetes manifests of the admission webhook (`deploy/admission`, a kustomize base),
//! checked offline with real tools: `kubectl kustomize` renders them, `kubernetes-validate`
//! (strict, Kubernetes 1.31 schemas, installed by scripts/install-test-deps.sh) validates every
//! object, the webhook configurations are asserted field by field, the policy is parsed by the
//! real `wharf lint`, and our own Deployment is linted at Pod Security `restricted` (so a
//! weakened securityContext fails here). Missing tools fail the tests: they never skip.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::kube::{kubernetes_validate, output, text, tool};

mod support;

/// `kubectl` on PATH, or a failure (never a skip).
fn kubectl() -> Command {
    tool("kubectl")
}

/// The Kubernetes version the objects are validated against.
const KUBERNETES_VERSION: &str = "1.31.0";
/// The webhook configurations' caBundle placeholder (deliberately not base64).
const CA_PLACEHOLDER: &str = "REPLACE_WITH_CA_BUNDLE_FROM_wharf_admission_certs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn base_dir() -> PathBuf {
    repo().join("deploy/admission")
}

fn wharf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
}

/// `kubectl kustomize DIR`: the rendered YAML stream.
fn kustomize(dir: &Path) -> String {
    let out = output(kubectl().arg("kustomize").arg(dir), None);
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every document of a YAML stream, as JSON (the pin crate's parser, as `wharf lint` uses).
fn documents(yaml: &str) -> Vec<Value> {
    pin::to_json(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn rendered() -> (String, Vec<Value>) {
    let yaml = kustomize(&base_dir());
    let docs = documents(&yaml);
    (yaml, docs)
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let one = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"));
    assert!(found.next().is_none(), "more than one {kind}");
    one
}

/// Runs kubernetes-validate (strict) on a YAML stream; (success, output).
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = output(
        Command::new(kubernetes_validate())
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file),
        None,
    );
    (out.status.success(), text(&out))
}

/// Asserts that every object of `yaml` validates strictly: one `passed` line per document,
/// no error, and no warning (an unknown kind is only a warning to kubernetes-validate).
fn assert_valid(yaml: &str) {
    let n = documents(yaml).len();
    let (ok, out) = validate(yaml);
    assert!(ok, "kubernetes-validate refused the manifests: {out}");
    let passed = out
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    assert_eq!(passed, n, "not every object was validated: {out}");
    assert!(
        !out.contains("WARN") && !out.contains("ERROR") && !out.contains("FATAL"),
        "{out}"
    );
    assert!(
        out.contains("against version 1.31"),
        "validated against the wrong version: {out}"
    );
}

#[test]
fn base_renders_and_every_object_validates_strictly() {
    let (yaml, docs) = rendered();
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ])
    );
    assert_eq!(docs.len(), kinds.len());
    assert_valid(&yaml);
    // Everything namespaced is in `wharf`.
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        let cluster_scoped = [
            "Namespace",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ]
        .contains(&kind);
        assert_eq!(
            d["metadata"].get("namespace").and_then(Value::as_str),
            (!cluster_scoped).then_some("wharf"),
            "{kind}"
        );
    }
}

#[test]
fn the_validator_is_strict_and_can_fail() {
    // The same objects with a misspelt field and a wrong type: refused, so a pass above means
    // something.
    let (yaml, _) = rendered();
    let misspelt = yaml.replacen("reinvocationPolicy:", "reinvocationPolicyy:", 1);
    assert_ne!(misspelt, yaml);
    let (ok, out) = validate(&misspelt);
    assert!(!ok, "an unknown field passed strict validation: {out}");
    assert!(out.contains("reinvocationPolicyy"), "{out}");
    let wrong_type = yaml.replacen("timeoutSeconds: 5", "timeoutSeconds: \"5\"", 1);
    assert_ne!(wrong_type, yaml);
    let (ok, out) = validate(&wrong_type);
    assert!(!ok, "a string timeoutSeconds passed: {out}");
}

/// The rules both webhooks must carry.
fn expected_rules() -> Value {
    let ops = json!(["CREATE", "UPDATE"]);
    json!([
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ops,
         "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"],
         "scope": "Namespaced"},
        {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ops,
         "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
         "scope": "Namespaced"},
        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ops,
         "resources": ["jobs", "cronjobs"], "scope": "Namespaced"},
    ])
}

/// Checks what the validating and mutating webhooks share; returns the webhook.
fn check_webhook<'a>(cfg: &'a Value, service: &Value, name: &str, path: &str) -> &'a Value {
    let hooks = cfg["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{cfg:#}");
    let w = &hooks[0];
    assert_eq!(w["name"], name);
    assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["timeoutSeconds"], 5);
    assert_eq!(w["matchPolicy"], "Equivalent");
    assert_eq!(w["rules"], expected_rules());
    // Every workload kind the engine evaluates, and the subresource that adds containers.
    let resources: BTreeSet<&str> = w["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in [
        "pods",
        "pods/ephemeralcontainers",
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
        "replicationcontrollers",
    ] {
        assert!(resources.contains(r), "{name}: no rule for {r}");
    }
    assert_eq!(
        w["namespaceSelector"],
        json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "wharf"],
        }]})
    );
    assert!(w.get("objectSelector").is_none());
    // The Service it calls is the one rendered, on its port, at the right path.
    let svc = &w["clientConfig"]["service"];
    assert_eq!(svc["name"], service["metadata"]["name"]);
    assert_eq!(svc["namespace"], service["metadata"]["namespace"]);
    assert_eq!(svc["path"], path);
    assert_eq!(svc["port"], service["spec"]["ports"][0]["port"]);
    assert!(w["clientConfig"].get("url").is_none());
    assert_eq!(w["clientConfig"]["caBundle"], CA_PLACEHOLDER);
    w
}

#[test]
fn webhook_configurations() {
    let (yaml, docs) = rendered();
    // docs/kubernetes.md's `sed` one-liner replaces the placeholder: it is in both webhooks,
    // as a plain scalar, and nowhere else.
    assert_eq!(
        yaml.matches(&format!("caBundle: {CA_PLACEHOLDER}\n"))
            .count(),
        2
    );
    assert_eq!(yaml.matches(CA_PLACEHOLDER).count(), 2);
    let service = object(&docs, "Service");
    let v = check_webhook(
        object(&docs, "ValidatingWebhookConfiguration"),
        service,
        "validate.admission.wharf.dev",
        "/admission/v1/validate",
    );
    assert_eq!(v["failurePolicy"], "Fail");
    assert!(v.get("reinvocationPolicy").is_none());
    let m = check_webhook(
        object(&docs, "MutatingWebhookConfiguration"),
        service,
        "mutate.admission.wharf.dev",
        "/admission/v1/mutate",
    );
    assert_eq!(m["failurePolicy"], "Ignore");
    assert_eq!(m["reinvocationPolicy"], "IfNeeded");
    // The placeholder is not base64 (the API server refuses it rather than accepting a bundle
    // that trusts nothing).
    use base64::Engine as _;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(CA_PLACEHOLDER)
            .is_err()
    );
}

#[test]
fn namespace_service_deployment_and_budget() {
    let (_, docs) = rendered();
    let ns = object(&docs, "Namespace");
    assert_eq!(ns["metadata"]["name"], "wharf");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let dep = object(&docs, "Deployment");
    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "selector {k}");
    }
    let pod = &spec["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"];
    assert!(
        anti.get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );
    let pref = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(pref["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        pref["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    let sa = object(&docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);

    // The restricted securityContext, field by field (readOnlyRootFilesystem is no Pod
    // Security check, so the lint below cannot catch its loss).
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert!(pod.get("initContainers").is_none());
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc.get("privileged").is_none_or(|p| p == false));

    // `wharf admission` with the mounted policy and TLS pair, on 0.0.0.0:8443.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "admission");
    let flag = |f: &str| {
        let i = args
            .iter()
            .position(|a| *a == f)
            .unwrap_or_else(|| panic!("no {f}"));
        args[i + 1]
    };
    assert_eq!(flag("--listen"), "0.0.0.0:8443");
    assert!(
        c["image"].as_str().unwrap().ends_with("/wharf:0.1.0"),
        "{}",
        c["image"]
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "https", "containerPort": 8443, "protocol": "TCP"}])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let g = &c[probe]["httpGet"];
        assert_eq!(g["path"], "/healthz", "{probe}");
        assert_eq!(g["scheme"], "HTTPS", "{probe}");
        assert_eq!(g["port"], "https", "{probe}");
    }
    let res = &c["resources"];
    for r in [
        &res["requests"]["cpu"],
        &res["requests"]["memory"],
        &res["limits"]["memory"],
    ] {
        assert!(r.is_string(), "{res}");
    }

    // The volumes behind --policy and --tls-cert/--tls-key.
    let mount_of = |file: &str| -> String {
        let m = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{file} is on no mounted volume"));
        assert_eq!(m["readOnly"], true);
        assert!(
            m.get("subPath").is_none(),
            "subPath mounts are never updated"
        );
        m["name"].as_str().unwrap().to_owned()
    };
    let volume = |name: &str| -> &Value {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
    };
    let policy_vol = volume(&mount_of(flag("--policy")));
    let cm = object(&docs, "ConfigMap");
    assert_eq!(policy_vol["configMap"]["name"], cm["metadata"]["name"]);
    assert!(
        cm["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("wharf-admission-policy-"),
        "the generated name carries the content hash"
    );
    let file_name = Path::new(flag("--policy"))
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        cm["data"][file_name].as_str().unwrap(),
        std::fs::read_to_string(base_dir().join("policy.toml")).unwrap()
    );
    let tls_cert = mount_of(flag("--tls-cert"));
    assert_eq!(tls_cert, mount_of(flag("--tls-key")));
    assert_eq!(
        volume(&tls_cert)["secret"]["secretName"],
        "wharf-admission-tls"
    );
    assert_eq!(
        Path::new(flag("--tls-cert")).file_name().unwrap(),
        "tls.crt",
        "the kubernetes.io/tls Secret's keys"
    );
    assert_eq!(Path::new(flag("--tls-key")).file_name().unwrap(), "tls.key");

    // The Service: 443 to the container's https port, selecting these pods.
    let svc = object(&docs, "Service");
    assert_eq!(svc["metadata"]["name"], "wharf-admission");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}])
    );
    assert_eq!(svc["spec"]["selector"], spec["selector"]["matchLabels"]);

    let pdb = object(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);
}

/// Runs `wharf lint ARGS` with `stdin`; (exit code, stdout, stderr).
fn lint(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let out = output(wharf().arg("lint").args(args), stdin);
    (
        out.status.code().expect("wharf lint was killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pod the policy must refuse (privileged, `:latest`), and one it must let through.
const BAD_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: apps\nspec:\n  containers:\n    - name: c\n      image: docker.io/library/busybox:latest\n      securityContext:\n        privileged: true\n";
const GOOD_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: good\n  namespace: apps\nspec:\n  containers:\n    - name: c\n      image: docker.io/library/busybox:1.36\n";

#[test]
fn the_shipped_policy_parses_and_enforces() {
    // The policy as deployed: the ConfigMap's copy, which is the file's.
    let (_, docs) = rendered();
    let cm = object(&docs, "ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, cm["data"]["policy.toml"].as_str().unwrap()).unwrap();
    let p = policy.to_str().unwrap();

    let (code, out, err) = lint(&["--policy", p, "-"], Some(GOOD_POD.as_bytes()));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = lint(&["--policy", p, "-"], Some(BAD_POD.as_bytes()));
    assert_eq!(code, 1, "{out}{err}");
    for rule in ["[pss.privileged]", "[images.latest]"] {
        assert!(out.contains(rule), "{rule} missing: {out}");
        assert!(
            out.lines()
                .any(|l| l.contains(rule) && l.ends_with("(enforce)")),
            "{rule} is not enforced: {out}"
        );
    }

    // A policy that does not parse is exit 2: the passes above did parse it.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!(
            "{}\n[images]\nlatset = \"warn\"\n",
            cm["data"]["policy.toml"]
                .as_str()
                .unwrap()
                .replace("[images]", "[images_]")
        ),
    )
    .unwrap();
    let (code, out, err) = lint(
        &["--policy", broken.to_str().unwrap(), "-"],
        Some(GOOD_POD.as_bytes()),
    );
    assert_eq!(code, 2, "{out}{err}");
}

/// The rendered Deployment as JSON for `wharf lint -`.
fn deployment_json(docs: &[Value]) -> Value {
    object(docs, "Deployment").clone()
}

fn lint_restricted(dep: &Value) -> (i32, String, String) {
    lint(
        &["--pss", "restricted", "--only", "pss", "-"],
        Some(serde_json::to_vec_pretty(dep).unwrap().as_slice()),
    )
}

#[test]
fn our_own_deployment_passes_pod_security_restricted() {
    let (yaml, docs) = rendered();
    // The whole rendered stream, as YAML, with the shipped policy at restricted: nothing at
    // enforce.
    let (code, out, err) = lint(
        &[
            "--policy",
            base_dir().join("policy.toml").to_str().unwrap(),
            "--pss",
            "restricted",
            "-",
        ],
        Some(yaml.as_bytes()),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("[pss."), "{out}");
    assert!(!out.contains("[hygiene."), "{out}");
    assert!(err.contains("1 file(s), 8 document(s): 0 enforce"), "{err}");
    // Only the Deployment, as JSON: no finding at all.
    let dep = deployment_json(&docs);
    let (code, out, err) = lint_restricted(&dep);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

#[test]
fn a_weakened_security_context_fails_restricted() {
    let (_, docs) = rendered();
    let dep = deployment_json(&docs);
    type Weaken = fn(&mut Value);
    let cases: [(&str, &str, Weaken); 6] = [
        (
            "allowPrivilegeEscalation",
            "pss.allowPrivilegeEscalation",
            |d| {
                d["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation");
            },
        ),
        ("capabilities", "pss.capabilities_restricted", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"] =
                json!({"drop": ["NET_RAW"]});
        }),
        ("runAsNonRoot", "pss.runAsNonRoot", |d| {
            d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("runAsNonRoot");
        }),
        ("seccompProfile", "pss.seccompProfile_restricted", |d| {
            d["spec"]["template"]["spec"]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("seccompProfile");
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("seccompProfile");
        }),
        ("runAsUser 0", "pss.runAsUser", |d| {
            d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = json!(0);
        }),
        ("a hostPath volume", "pss.restrictedVolumes", |d| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "host", "hostPath": {"path": "/"}}));
        }),
    ];
    for (what, rule, weaken) in cases {
        let mut d = dep.clone();
        weaken(&mut d);
        let (code, out, err) = lint_restricted(&d);
        assert_eq!(code, 1, "weakening {what} passed restricted: {out}{err}");
        assert!(
            out.contains(&format!("[{rule}]")),
            "weakening {what}: expected [{rule}]: {out}"
        );
    }
}

/// `to` relative to `from` (both absolute, canonical): kustomize takes no absolute bases.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    rel
}

/// The kustomize overlay docs/kubernetes.md shows for the caBundle, around real certificates
/// from `wharf admission certs`: both webhooks carry the CA it printed, the helper Secret is
/// not emitted, and everything still validates.
#[test]
fn ca_bundle_overlay_with_real_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let certs = root.join("wharf-admission-certs");
    let out = output(
        wharf()
            .args(["admission", "certs", "--out"])
            .arg(&certs)
            .args(["--dns", "wharf-admission.wharf.svc"]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    use base64::Engine as _;
    let ca_pem = std::fs::read(certs.join("ca.crt")).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&printed)
            .unwrap(),
        ca_pem
    );

    let base = relative(&root, &base_dir());
    std::fs::write(
        root.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {}
secretGenerator:
  - name: wharf-admission-ca
    files:
      - caBundle=wharf-admission-certs/ca.crt
    options:
      disableNameSuffixHash: true
      annotations:
        config.kubernetes.io/local-config: \"true\"
replacements:
  - source:
      kind: Secret
      name: wharf-admission-ca
      fieldPath: data.caBundle
    targets:
      - select:
          kind: ValidatingWebhookConfiguration
        fieldPaths:
          - webhooks.*.clientConfig.caBundle
      - select:
          kind: MutatingWebhookConfiguration
        fieldPaths:
          - webhooks.*.clientConfig.caBundle
",
            base.display()
        ),
    )
    .unwrap();
    let yaml = kustomize(&root);
    let docs = documents(&yaml);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "the CA helper Secret must stay local"
    );
    assert!(!yaml.contains(CA_PLACEHOLDER));
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let bundle: String = object(&docs, kind)["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(bundle, printed, "{kind}");
    }
    assert_eq!(docs.len(), 8);
    assert_valid(&yaml);
}

/// `deploy/admission-warn`, the first rollout: the base with every enforced rule at warn and
/// the validating webhook at `failurePolicy: Ignore`, and nothing else changed.
#[test]
fn warn_rollout_overlay() {
    let base_policy = std::fs::read_to_string(base_dir().join("policy.toml")).unwrap();
    let warn_dir = repo().join("deploy/admission-warn");
    let warn_policy = std::fs::read_to_string(warn_dir.join("policy.toml")).unwrap();
    assert!(base_policy.contains("= \"enforce\""));
    assert_eq!(
        warn_policy,
        base_policy.replace("= \"enforce\"", "= \"warn\""),
        "deploy/admission-warn/policy.toml must be deploy/admission/policy.toml at warn: \
         sed 's/= \"enforce\"/= \"warn\"/' deploy/admission/policy.toml > deploy/admission-warn/policy.toml"
    );

    let yaml = kustomize(&warn_dir);
    assert_valid(&yaml);
    let docs = documents(&yaml);
    let (_, base_docs) = rendered();
    assert_eq!(docs.len(), base_docs.len());
    let v = object(&docs, "ValidatingWebhookConfiguration");
    assert_eq!(v["webhooks"][0]["failurePolicy"], "Ignore");
    // Apart from that, the policy (and so the ConfigMap's hashed name): the same objects.
    let mut v_base = object(&base_docs, "ValidatingWebhookConfiguration").clone();
    v_base["webhooks"][0]["failurePolicy"] = json!("Ignore");
    assert_eq!(v, &v_base);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(object(&docs, kind), object(&base_docs, kind), "{kind}");
    }
    let cm = object(&docs, "ConfigMap");
    assert_eq!(cm["data"]["policy.toml"], warn_policy.as_str());
    let dep = object(&docs, "Deployment");
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    let mut dep_base = object(&base_docs, "Deployment").clone();
    dep_base["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] =
        cm["metadata"]["name"].clone();
    assert_eq!(dep, &dep_base);

    // At warn, what the base refuses is reported and let through.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, &warn_policy).unwrap();
    let (code, out, err) = lint(
        &["--policy", policy.to_str().unwrap(), "-"],
        Some(BAD_POD.as_bytes()),
    );
    assert_eq!(code, 0, "{out}{err}");
    for rule in ["[pss.privileged]", "[images.latest]"] {
        assert!(
            out.lines()
                .any(|l| l.contains(rule) && l.ends_with("(warn)")),
            "{rule} is not a warning: {out}"
        );
    }
    assert!(!out.contains("(enforce)"), "{out}");
}
