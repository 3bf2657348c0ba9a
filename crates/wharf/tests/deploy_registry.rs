//! The registry's Kubernetes manifests (`deploy/registry`, a kustomize base, and its overlays
//! `registry-tls`, `registry-tls-cert-manager`, `registry-cache-only`, `mirror-config`), checked
//! offline with real tools: `kubectl kustomize` renders each one; `kubernetes-validate` (strict,
//! Kubernetes 1.31) validates every object whose schema it ships; the custom resources it has no
//! schema for (ServiceMonitor, PrometheusRule, Certificate) are checked here against what their
//! CRDs require (required fields, types, enums, known keys: no CRD schema is available
//! offline), and the alert rules with `promtool check rules` plus `promtool test rules` on
//! synthetic series for every alert; the metric names the rules use are read from a real
//! `wharf serve`'s /metrics; the shipped `wharf.toml` files start the real server; port names
//! agree between the StatefulSet, the Services, the probes, the NetworkPolicy and the
//! ServiceMonitor in every overlay; the TLS overlay's own arguments serve HTTPS (the probes'
//! paths over HTTPS, the first administrator through `https://localhost` as docs/kubernetes.md
//! shows); the registry's pod passes `wharf lint --pss restricted`,
//! and the mirror-config DaemonSet fails it for exactly the documented reasons. Missing tools
//! fail the tests: they never skip.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::kube::{kubernetes_validate, output, text, tool};
use support::{AUTH_BCRYPT, AUTH_PASSWORD, AUTH_USER, Http, free_port, signal, wait_timeout};

const KUBERNETES_VERSION: &str = "1.31.0";
const NAMESPACE: &str = "wharf-registry";
/// The registry's variants (the base and the overlays that keep its StatefulSet).
const REGISTRY_DIRS: [&str; 4] = [
    "registry",
    "registry-tls",
    "registry-tls-cert-manager",
    "registry-cache-only",
];
/// Kinds kubernetes-validate has no schema for: checked by hand below.
const CUSTOM_KINDS: [&str; 3] = ["ServiceMonitor", "PrometheusRule", "Certificate"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn deploy(dir: &str) -> PathBuf {
    repo().join("deploy").join(dir)
}

fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .env_remove("WHARF_LISTEN")
        .env_remove("WHARF_METRICS_LISTEN")
        .env("RUST_BACKTRACE", "0");
    c
}

/// `kubectl kustomize deploy/DIR`: the rendered YAML stream and its documents as JSON.
fn render(dir: &str) -> (String, Vec<Value>) {
    let out = output(tool("kubectl").arg("kustomize").arg(deploy(dir)), None);
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        text(&out)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = pin::to_json(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .map(|d| d.value)
        .collect();
    (yaml, docs)
}

fn objects<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        *m.entry(d["kind"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    m
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// kubernetes-validate --strict on these documents: every one passes, no warning.
fn assert_valid(what: &str, docs: &[&Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    // JSON documents are YAML documents.
    let stream: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect();
    std::fs::write(&file, stream.join("\n---\n")).unwrap();
    let out = output(
        Command::new(kubernetes_validate())
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file),
        None,
    );
    let log = text(&out);
    assert!(out.status.success(), "{what}: kubernetes-validate: {log}");
    let passed = log
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed,
        docs.len(),
        "{what}: not every object validated: {log}"
    );
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "{what}: {log}"
    );
    assert!(log.contains("against version 1.31"), "{what}: {log}");
}

#[test]
fn every_base_and_overlay_renders_and_validates_strictly() {
    let expect: [(&str, &[(&str, usize)]); 5] = [
        (
            "registry",
            &[
                ("ConfigMap", 1),
                ("Namespace", 1),
                ("NetworkPolicy", 1),
                ("PodDisruptionBudget", 1),
                ("PrometheusRule", 1),
                ("Service", 2),
                ("ServiceAccount", 1),
                ("ServiceMonitor", 1),
                ("StatefulSet", 1),
            ],
        ),
        (
            "registry-tls",
            &[
                ("ConfigMap", 1),
                ("Namespace", 1),
                ("NetworkPolicy", 1),
                ("PodDisruptionBudget", 1),
                ("PrometheusRule", 1),
                ("Service", 2),
                ("ServiceAccount", 1),
                ("ServiceMonitor", 1),
                ("StatefulSet", 1),
            ],
        ),
        (
            "registry-tls-cert-manager",
            &[
                ("Certificate", 1),
                ("ConfigMap", 1),
                ("Namespace", 1),
                ("NetworkPolicy", 1),
                ("PodDisruptionBudget", 1),
                ("PrometheusRule", 2),
                ("Service", 2),
                ("ServiceAccount", 1),
                ("ServiceMonitor", 1),
                ("StatefulSet", 1),
            ],
        ),
        (
            "registry-cache-only",
            &[
                ("ConfigMap", 1),
                ("Namespace", 1),
                ("NetworkPolicy", 1),
                ("PrometheusRule", 1),
                ("Service", 2),
                ("ServiceAccount", 1),
                ("ServiceMonitor", 1),
                ("StatefulSet", 1),
            ],
        ),
        (
            "mirror-config",
            &[
                ("ConfigMap", 1),
                ("DaemonSet", 1),
                ("Namespace", 1),
                ("ServiceAccount", 1),
            ],
        ),
    ];
    for (dir, want) in expect {
        let (_, docs) = render(dir);
        let want: BTreeMap<String, usize> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(kinds(&docs), want, "{dir}");
        let ns = if dir == "mirror-config" {
            "wharf-mirror-config"
        } else {
            NAMESPACE
        };
        for d in &docs {
            let kind = d["kind"].as_str().unwrap();
            if kind == "Namespace" {
                assert_eq!(d["metadata"]["name"], ns, "{dir}");
            } else {
                assert_eq!(d["metadata"]["namespace"], ns, "{dir}: {kind}");
            }
            assert_eq!(
                d["metadata"]["labels"]["app.kubernetes.io/part-of"], "wharf",
                "{dir}: {kind}"
            );
        }
        let known: Vec<&Value> = docs
            .iter()
            .filter(|d| !CUSTOM_KINDS.contains(&d["kind"].as_str().unwrap()))
            .collect();
        assert_valid(dir, &known);
    }
}

#[test]
fn the_validator_is_strict_and_can_fail() {
    let (_, docs) = render("registry");
    let mut sts = object(&docs, "StatefulSet", "wharf").clone();
    sts["spec"]["template"]["spec"]["enableServiceLink"] = json!(false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, serde_json::to_string(&sts).unwrap()).unwrap();
    let out = output(
        Command::new(kubernetes_validate())
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file),
        None,
    );
    assert!(
        !out.status.success(),
        "a misspelt field passed: {}",
        text(&out)
    );
    assert!(text(&out).contains("enableServiceLink"), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// The custom resources, against what their CRDs require
// ---------------------------------------------------------------------------------------------

/// Keys of `v` (an object) must be among `allowed`; `required` must be there.
fn keys(what: &str, v: &Value, allowed: &[&str], required: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in obj.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: unknown field {k:?} (allowed: {allowed:?})"
        );
    }
    for r in required {
        assert!(obj.contains_key(*r), "{what}: required field {r:?} missing");
    }
}

/// The Prometheus Operator's `Duration` pattern (monitoring.coreos.com/v1).
fn is_prom_duration(s: &str) -> bool {
    // ^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$
    if s == "0" {
        return true;
    }
    let mut rest = s;
    let mut any = false;
    for unit in ["y", "w", "d", "h", "ms", "m", "s"] {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(unit) {
            let after = &rest[digits + unit.len()..];
            // "m" must not eat the "m" of "ms".
            if unit == "m" && after.starts_with('s') {
                continue;
            }
            rest = after;
            any = true;
        }
    }
    any && rest.is_empty()
}

/// A Go duration as cert-manager parses them (`2160h`, `30m`, `1h30m`).
fn is_go_duration(s: &str) -> bool {
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else { return false };
        rest = &rest[unit.len()..];
        any = true;
    }
    any
}

fn check_metadata(what: &str, d: &Value) {
    keys(
        what,
        d,
        &["apiVersion", "kind", "metadata", "spec"],
        &["apiVersion", "kind", "metadata", "spec"],
    );
    keys(
        &format!("{what}.metadata"),
        &d["metadata"],
        &["name", "namespace", "labels", "annotations"],
        &["name", "namespace"],
    );
}

fn check_service_monitor(d: &Value) {
    assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
    check_metadata("ServiceMonitor", d);
    let spec = &d["spec"];
    keys(
        "ServiceMonitor.spec",
        spec,
        &[
            "selector",
            "endpoints",
            "namespaceSelector",
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "sampleLimit",
        ],
        &["selector"],
    );
    keys(
        "ServiceMonitor.spec.selector",
        &spec["selector"],
        &["matchLabels", "matchExpressions"],
        &[],
    );
    let endpoints = spec["endpoints"].as_array().expect("endpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        keys(
            "ServiceMonitor endpoint",
            e,
            &[
                "port",
                "targetPort",
                "path",
                "scheme",
                "interval",
                "scrapeTimeout",
                "honorLabels",
                "tlsConfig",
                "relabelings",
                "metricRelabelings",
            ],
            &[],
        );
        assert!(
            e["port"].is_string(),
            "endpoint port is a Service port name"
        );
        assert!(["http", "https"].contains(&e["scheme"].as_str().unwrap()));
        for k in ["interval", "scrapeTimeout"] {
            let v = e[k].as_str().unwrap();
            assert!(is_prom_duration(v), "{k} {v:?} is no Duration");
        }
        assert!(e["path"].as_str().unwrap().starts_with('/'));
    }
}

/// The rules of a PrometheusRule, structure checked; returns its groups.
fn check_prometheus_rule(d: &Value) -> &Value {
    assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
    check_metadata("PrometheusRule", d);
    keys("PrometheusRule.spec", &d["spec"], &["groups"], &["groups"]);
    let groups = &d["spec"]["groups"];
    let mut names = BTreeSet::new();
    for g in groups.as_array().unwrap() {
        keys(
            "rule group",
            g,
            &[
                "name",
                "rules",
                "interval",
                "limit",
                "partial_response_strategy",
            ],
            &["name", "rules"],
        );
        assert!(
            names.insert(g["name"].as_str().unwrap()),
            "group names are unique"
        );
        for r in g["rules"].as_array().unwrap() {
            keys(
                "rule",
                r,
                &[
                    "alert",
                    "record",
                    "expr",
                    "for",
                    "keep_firing_for",
                    "labels",
                    "annotations",
                ],
                &["expr"],
            );
            assert!(
                r["alert"].is_string() ^ r["record"].is_string(),
                "alert or record: {r}"
            );
            assert!(r["expr"].is_string(), "expr is a string (IntOrString): {r}");
            if let Some(f) = r.get("for") {
                assert!(is_prom_duration(f.as_str().unwrap()), "for: {f}");
            }
            for m in ["labels", "annotations"] {
                for (k, v) in r[m].as_object().unwrap() {
                    assert!(v.is_string(), "{m}.{k} must be a string: {r}");
                }
            }
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()),
                "{r}"
            );
            assert!(r["annotations"]["summary"].is_string(), "{r}");
        }
    }
    groups
}

fn check_certificate(d: &Value) {
    assert_eq!(d["apiVersion"], "cert-manager.io/v1");
    check_metadata("Certificate", d);
    let spec = &d["spec"];
    keys(
        "Certificate.spec",
        spec,
        &[
            "secretName",
            "secretTemplate",
            "issuerRef",
            "commonName",
            "dnsNames",
            "ipAddresses",
            "uris",
            "emailAddresses",
            "duration",
            "renewBefore",
            "usages",
            "privateKey",
            "isCA",
            "subject",
            "revisionHistoryLimit",
        ],
        &["secretName", "issuerRef"],
    );
    keys(
        "Certificate.spec.issuerRef",
        &spec["issuerRef"],
        &["name", "kind", "group"],
        &["name"],
    );
    for k in ["duration", "renewBefore"] {
        assert!(is_go_duration(spec[k].as_str().unwrap()), "{k}");
    }
    keys(
        "Certificate.spec.privateKey",
        &spec["privateKey"],
        &["algorithm", "size", "encoding", "rotationPolicy"],
        &[],
    );
    assert!(
        ["RSA", "ECDSA", "Ed25519"].contains(&spec["privateKey"]["algorithm"].as_str().unwrap())
    );
    assert!(spec["privateKey"]["size"].is_u64());
    assert!(["Never", "Always"].contains(&spec["privateKey"]["rotationPolicy"].as_str().unwrap()));
    // cert-manager's KeyUsage enum.
    let usages = [
        "signing",
        "digital signature",
        "content commitment",
        "key encipherment",
        "key agreement",
        "data encipherment",
        "cert sign",
        "crl sign",
        "encipher only",
        "decipher only",
        "any",
        "server auth",
        "client auth",
        "code signing",
        "email protection",
        "s/mime",
        "ipsec end system",
        "ipsec tunnel",
        "ipsec user",
        "timestamping",
        "ocsp signing",
        "microsoft sgc",
        "netscape sgc",
    ];
    for u in strs(&spec["usages"]) {
        assert!(usages.contains(&u), "usage {u:?}");
    }
    for ip in strs(&spec["ipAddresses"]) {
        ip.parse::<std::net::IpAddr>().unwrap();
    }
    let _ = strs(&spec["dnsNames"]);
}

#[test]
fn custom_resources_have_the_structure_their_crds_require() {
    for dir in REGISTRY_DIRS {
        let (_, docs) = render(dir);
        for sm in objects(&docs, "ServiceMonitor") {
            check_service_monitor(sm);
        }
        for pr in objects(&docs, "PrometheusRule") {
            check_prometheus_rule(pr);
        }
        for c in objects(&docs, "Certificate") {
            check_certificate(c);
        }
    }
    // The checks can fail.
    let (_, docs) = render("registry-tls-cert-manager");
    let mut bad = object(&docs, "Certificate", "wharf-tls").clone();
    bad["spec"]["usages"] = json!(["server authentication"]);
    assert!(std::panic::catch_unwind(|| check_certificate(&bad)).is_err());
    let mut bad = object(&docs, "ServiceMonitor", "wharf").clone();
    bad["spec"]["endpoints"][0]["interval"] = json!("30 seconds");
    assert!(std::panic::catch_unwind(|| check_service_monitor(&bad)).is_err());
    assert!(!is_prom_duration("1h30") && is_prom_duration("1h30m") && is_prom_duration("500ms"));

    // The Certificate feeds the Secret the TLS overlay mounts, for the Service's names.
    let cert = object(&docs, "Certificate", "wharf-tls");
    let sts = object(&docs, "StatefulSet", "wharf");
    let tls_volume = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(
        tls_volume["secret"]["secretName"],
        cert["spec"]["secretName"]
    );
    let names = strs(&cert["spec"]["dnsNames"]);
    for n in [
        "wharf",
        "wharf.wharf-registry.svc",
        "wharf.wharf-registry.svc.cluster.local",
        "localhost",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Alert rules: promtool, and the metric names a real server exports
// ---------------------------------------------------------------------------------------------

/// One `promtool test rules` case: input series, when to evaluate, which alert, and the
/// label sets expected to fire (empty: must not fire).
struct AlertCase {
    series: &'static [(&'static str, &'static str)],
    eval: &'static str,
    alert: &'static str,
    fires: &'static [&'static [(&'static str, &'static str)]],
}

const POD: &str = r#"job="wharf-headless", namespace="wharf-registry", pod="wharf-0""#;

fn alert_cases() -> Vec<AlertCase> {
    const POD_LABELS: &[(&str, &str)] = &[
        ("job", "wharf-headless"),
        ("namespace", "wharf-registry"),
        ("pod", "wharf-0"),
        ("severity", "critical"),
    ];
    vec![
        AlertCase {
            series: &[(r#"up{JOB}"#, "0x10")],
            eval: "6m",
            alert: "WharfDown",
            fires: &[POD_LABELS],
        },
        AlertCase {
            series: &[(r#"up{JOB}"#, "1x10")],
            eval: "10m",
            alert: "WharfDown",
            fires: &[],
        },
        AlertCase {
            series: &[
                (
                    r#"wharf_http_requests_total{JOB, route="manifest", method="GET", status="200"}"#,
                    "0+100x30",
                ),
                (
                    r#"wharf_http_requests_total{JOB, route="manifest", method="GET", status="503"}"#,
                    "0+10x30",
                ),
            ],
            eval: "20m",
            alert: "WharfHighErrorRate",
            fires: &[&[
                ("namespace", "wharf-registry"),
                ("pod", "wharf-0"),
                ("severity", "warning"),
            ]],
        },
        AlertCase {
            series: &[
                (
                    r#"wharf_http_requests_total{JOB, route="manifest", method="GET", status="200"}"#,
                    "0+100x30",
                ),
                (
                    r#"wharf_http_requests_total{JOB, route="manifest", method="GET", status="503"}"#,
                    "0+1x30",
                ),
            ],
            eval: "20m",
            alert: "WharfHighErrorRate",
            fires: &[],
        },
        AlertCase {
            series: &[
                (
                    r#"wharf_cache_upstream_errors_total{JOB, upstream="docker.io", kind="unreachable"}"#,
                    "0+6x30",
                ),
                // Missing images are the clients' business, not an outage.
                (
                    r#"wharf_cache_upstream_errors_total{JOB, upstream="ghcr.io", kind="not_found"}"#,
                    "0+60x30",
                ),
            ],
            eval: "20m",
            alert: "WharfUpstreamDown",
            fires: &[&[
                ("namespace", "wharf-registry"),
                ("pod", "wharf-0"),
                ("upstream", "docker.io"),
                ("severity", "warning"),
            ]],
        },
        AlertCase {
            series: &[(
                r#"wharf_cache_upstream_errors_total{JOB, upstream="docker.io", kind="rate_limited"}"#,
                "0+1x40",
            )],
            eval: "35m",
            alert: "WharfUpstreamRateLimited",
            fires: &[&[
                ("namespace", "wharf-registry"),
                ("pod", "wharf-0"),
                ("upstream", "docker.io"),
                ("severity", "warning"),
            ]],
        },
        AlertCase {
            series: &[
                (r#"wharf_storage_available_bytes{JOB}"#, "5x20"),
                (r#"wharf_storage_capacity_bytes{JOB}"#, "100x20"),
                // Another job's series are none of these rules' business.
                (
                    r#"wharf_storage_available_bytes{job="other", namespace="wharf-registry", pod="other-0"}"#,
                    "1x20",
                ),
                (
                    r#"wharf_storage_capacity_bytes{job="other", namespace="wharf-registry", pod="other-0"}"#,
                    "100x20",
                ),
            ],
            eval: "10m",
            alert: "WharfVolumeAlmostFull",
            fires: &[POD_LABELS],
        },
        AlertCase {
            // 39% free, shrinking by 0.1% a minute: empty within 4 days.
            series: &[
                (r#"wharf_storage_available_bytes{JOB}"#, "390-0.1x180"),
                (r#"wharf_storage_capacity_bytes{JOB}"#, "1000x180"),
            ],
            eval: "150m",
            alert: "WharfVolumeFillingUp",
            fires: &[&[
                ("job", "wharf-headless"),
                ("namespace", "wharf-registry"),
                ("pod", "wharf-0"),
                ("severity", "warning"),
            ]],
        },
        AlertCase {
            // 30% free and not growing: nothing to predict.
            series: &[
                (r#"wharf_storage_available_bytes{JOB}"#, "300x180"),
                (r#"wharf_storage_capacity_bytes{JOB}"#, "1000x180"),
            ],
            eval: "150m",
            alert: "WharfVolumeFillingUp",
            fires: &[],
        },
        AlertCase {
            // Expires 10 days after t=2h (time() is seconds since the test's start).
            series: &[(
                r#"wharf_tls_certificate_expiry_timestamp_seconds{JOB}"#,
                "871200x150",
            )],
            eval: "2h",
            alert: "WharfCertificateExpiringSoon",
            fires: &[&[
                ("job", "wharf-headless"),
                ("namespace", "wharf-registry"),
                ("pod", "wharf-0"),
                ("severity", "warning"),
            ]],
        },
        AlertCase {
            // 60 days left: fine.
            series: &[(
                r#"wharf_tls_certificate_expiry_timestamp_seconds{JOB}"#,
                "5184000x150",
            )],
            eval: "2h",
            alert: "WharfCertificateExpiringSoon",
            fires: &[],
        },
        AlertCase {
            // Any namespace the overlay was applied to.
            series: &[(
                r#"certmanager_certificate_ready_status{namespace="tenant-registry", name="wharf-tls", condition="False"}"#,
                "1x30",
            )],
            eval: "20m",
            alert: "WharfCertificateNotReady",
            fires: &[&[
                ("namespace", "tenant-registry"),
                ("name", "wharf-tls"),
                ("condition", "False"),
                ("severity", "warning"),
            ]],
        },
    ]
}

/// Every PrometheusRule of the cert-manager overlay (a superset of the others), as one rule
/// file's `groups`.
fn all_rule_groups() -> Vec<Value> {
    let (_, docs) = render("registry-tls-cert-manager");
    let mut groups = Vec::new();
    for pr in objects(&docs, "PrometheusRule") {
        groups.extend(
            check_prometheus_rule(pr)
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    groups
}

#[test]
fn alert_rules_pass_promtool_and_fire_on_synthetic_series() {
    let groups = all_rule_groups();
    let dir = tempfile::tempdir().unwrap();
    // `check rules` on the rules as shipped: PromQL and the annotation templates parse.
    let shipped = dir.path().join("shipped.yaml");
    std::fs::write(&shipped, json!({"groups": groups}).to_string()).unwrap();
    let out = output(
        tool("promtool").args(["check", "rules"]).arg(&shipped),
        None,
    );
    assert!(out.status.success(), "promtool check rules: {}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 8 rules found"),
        "{}",
        text(&out)
    );

    // `test rules` on the same rules without annotations (promtool would compare every
    // rendered annotation; the labels are what routes an alert).
    let mut bare = groups.clone();
    for g in &mut bare {
        for r in g["rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        json!({"groups": bare}).to_string(),
    )
    .unwrap();
    let cases = alert_cases();
    let tests: Vec<Value> = cases
        .iter()
        .map(|c| {
            let series: Vec<Value> = c
                .series
                .iter()
                .map(|(s, v)| json!({"series": s.replace("JOB", POD), "values": v}))
                .collect();
            let exp: Vec<Value> = c
                .fires
                .iter()
                .map(|labels| {
                    let m: serde_json::Map<String, Value> = labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                    json!({"exp_labels": m})
                })
                .collect();
            json!({
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": c.eval, "alertname": c.alert, "exp_alerts": exp}],
            })
        })
        .collect();
    let test_file = dir.path().join("tests.yaml");
    std::fs::write(
        &test_file,
        json!({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
            .to_string(),
    )
    .unwrap();
    let out = output(
        tool("promtool")
            .current_dir(dir.path())
            .args(["test", "rules"])
            .arg(&test_file),
        None,
    );
    assert!(out.status.success(), "promtool test rules: {}", text(&out));
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));

    // Every alert has a case where it fires.
    let alerts: BTreeSet<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let firing: BTreeSet<&str> = cases
        .iter()
        .filter(|c| !c.fires.is_empty())
        .map(|c| c.alert)
        .collect();
    assert_eq!(alerts, firing, "an alert without a firing test case");

    // And the harness can fail: a case expecting the wrong labels is refused.
    let mut wrong = tests[0].clone();
    wrong["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["severity"] = json!("info");
    std::fs::write(
        &test_file,
        json!({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [wrong]})
            .to_string(),
    )
    .unwrap();
    let out = output(
        tool("promtool")
            .current_dir(dir.path())
            .args(["test", "rules"])
            .arg(&test_file),
        None,
    );
    assert!(!out.status.success(), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// The shipped wharf.toml files, with the real server
// ---------------------------------------------------------------------------------------------

/// `wharf serve --config FILE` on loopback ports and a temp data dir (flags override the file's
/// listen addresses and data directory); killed on drop.
struct Served {
    child: std::process::Child,
    http: Http,
    metrics: Http,
    log: PathBuf,
    port: u16,
}

impl Served {
    fn start(config: &Path, data: &Path) -> Served {
        let args = [
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ];
        Served::start_args(&args, data, false)
    }

    /// `wharf ARGS --listen .. --metrics-listen .. --data-dir DATA`, DATA made first and empty
    /// as a freshly mounted volume is (the manifests' `serve` has no `--init`); ready when `/readyz` on
    /// the registry port answers 200 (with `tls`, when the metrics port's `/healthz` does: the
    /// test's HTTP client speaks no TLS).
    fn start_args(args: &[String], data: &Path, tls: bool) -> Served {
        let (port, mport) = (free_port(), free_port());
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut child = wharf()
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{mport}"))
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let http = Http::new(([127, 0, 0, 1], port).into());
        let metrics = Http::new(([127, 0, 0, 1], mport).into());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let probe = if tls {
                metrics.get("/healthz")
            } else {
                http.get("/readyz")
            };
            if let Ok(r) = probe
                && r.status == 200
            {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "wharf {args:?} exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            assert!(Instant::now() < deadline, "not ready in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Served {
            child,
            http,
            metrics,
            log,
            port,
        }
    }

    /// SIGTERM; the server must exit 0 within 30 s.
    fn stop(mut self) {
        signal(self.child.id(), "TERM");
        let st = wait_timeout(&mut self.child, Duration::from_secs(30)).expect("stopped");
        assert!(
            st.success(),
            "{st}: {}",
            std::fs::read_to_string(&self.log).unwrap()
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `wharf.toml` of the rendered ConfigMap of `dir`.
fn shipped_config(dir: &str) -> String {
    let (_, docs) = render(dir);
    let cms = objects(&docs, "ConfigMap");
    assert_eq!(cms.len(), 1);
    cms[0]["data"]["wharf.toml"].as_str().unwrap().to_owned()
}

fn parse_toml(s: &str) -> toml::Table {
    s.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("wharf.toml: {e}"))
}

#[test]
fn the_registry_config_starts_the_real_server_with_and_without_htpasswd() {
    let cfg = shipped_config("registry");
    assert_eq!(
        cfg,
        std::fs::read_to_string(deploy("registry/wharf.toml")).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, &cfg).unwrap();
    let s = Served::start(&file, &dir.path().join("data"));
    // Open until the first identity exists (auth mode auto).
    s.http.get("/v2/").unwrap().expect(200);
    let m = s.metrics.get("/metrics").unwrap().expect(200);
    assert!(m.text().contains("wharf_http_requests"), "{}", m.text());
    s.stop();

    // The Secret path: the commented htpasswd line, switched on, with a real bcrypt entry in
    // the file the Secret would provide.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("htpasswd"),
        format!("{AUTH_USER}:{AUTH_BCRYPT}\n"),
    )
    .unwrap();
    let line = "# htpasswd = \"/etc/wharf/secrets/htpasswd\"";
    assert!(cfg.contains(line), "the documented htpasswd line");
    let with_htpasswd = cfg.replace(
        line,
        &format!("htpasswd = \"{}\"", secrets.join("htpasswd").display()),
    );
    std::fs::write(&file, with_htpasswd).unwrap();
    let s = Served::start(&file, &dir.path().join("data2"));
    s.http.get("/v2/").unwrap().expect(401);
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    s.http
        .request(
            "GET",
            "/v2/",
            &[("Authorization", &format!("Basic {basic}"))],
            &[],
        )
        .unwrap()
        .expect(200);
    s.stop();
}

#[test]
fn the_cache_only_config_serves_anonymous_pulls_and_refuses_pushes() {
    let cfg = shipped_config("registry-cache-only");
    assert_eq!(
        cfg,
        std::fs::read_to_string(deploy("registry-cache-only/wharf.toml")).unwrap()
    );
    // The DaemonSet's copy is the same file (its upstream list is what it writes).
    assert_eq!(
        std::fs::read_to_string(deploy("mirror-config/wharf.toml")).unwrap(),
        cfg,
        "cp deploy/registry-cache-only/wharf.toml deploy/mirror-config/wharf.toml"
    );
    let table = parse_toml(&cfg);
    assert_eq!(table["auth"]["mode"].as_str(), Some("on"));
    let upstreams: Vec<&str> = table["cache"]["upstream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        upstreams,
        ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]
    );
    let anonymous: Vec<String> = table["auth"]["anonymous_pull"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = upstreams.iter().map(|u| format!("{u}/*")).collect();
    assert_eq!(anonymous, expected, "every cached upstream, nothing else");

    // Point docker.io at a closed loopback port (the test reaches no other address): the
    // failure feeds the metrics the alert rules use.
    let closed = free_port();
    let local = cfg.replacen(
        "host = \"docker.io\"\n",
        &format!("host = \"docker.io\"\nurl = \"http://127.0.0.1:{closed}\"\n"),
        1,
    );
    assert_ne!(local, cfg);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, &local).unwrap();
    let s = Served::start(&file, &dir.path().join("data"));

    // No pushes: no identity exists, so an upload is refused whoever asks.
    let r = s
        .http
        .request("POST", "/v2/team/app/blobs/uploads/", &[], &[])
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.dump());
    let t = s
        .http
        .get("/token?service=wharf&scope=repository:team/app:pull,push")
        .unwrap()
        .expect(200)
        .json();
    let claims = jwt_claims(t["token"].as_str().unwrap());
    for a in claims["access"].as_array().unwrap() {
        assert_eq!(a["actions"], json!([]), "no push, no pull: {claims}");
    }
    // Anonymous pulls of the cache: a token with pull on docker.io/*.
    let t = s
        .http
        .get("/token?service=wharf&scope=repository:docker.io/library/alpine:pull,push")
        .unwrap()
        .expect(200)
        .json();
    let claims = jwt_claims(t["token"].as_str().unwrap());
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "docker.io/library/alpine", "actions": ["pull"]}]),
        "{claims}"
    );
    let r = s
        .http
        .request(
            "GET",
            "/v2/docker.io/library/alpine/manifests/3.20",
            &[(
                "Authorization",
                &format!("Bearer {}", t["token"].as_str().unwrap()),
            )],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 503, "the upstream is down: {}", r.dump());

    // Every wharf_* metric the alert rules name is one the server exports.
    let metrics = s.metrics.get("/metrics").unwrap().expect(200).text();
    assert!(
        metrics.contains(
            r#"wharf_cache_upstream_errors_total{upstream="docker.io",kind="unreachable"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"503\""), "{metrics}");
    let mut named = BTreeSet::new();
    for g in all_rule_groups() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("wharf_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                named.insert(name);
            }
        }
    }
    assert_eq!(
        named,
        BTreeSet::from([
            "wharf_cache_upstream_errors_total".to_owned(),
            "wharf_http_requests_total".to_owned(),
            "wharf_storage_available_bytes".to_owned(),
            "wharf_storage_capacity_bytes".to_owned(),
            "wharf_tls_certificate_expiry_timestamp_seconds".to_owned(),
        ])
    );
    // The certificate's series exists only with TLS (the TLS overlay's test checks it).
    for name in named
        .iter()
        .filter(|n| *n != "wharf_tls_certificate_expiry_timestamp_seconds")
    {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "{name} is not exported:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("wharf_tls_certificate_expiry_timestamp_seconds"),
        "no TLS, no certificate series:\n{metrics}"
    );
    s.stop();
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Ports, probes, volumes, security
// ---------------------------------------------------------------------------------------------

fn port_names(ports: &Value) -> BTreeMap<String, u64> {
    ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().or(p["port"].as_u64()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn port_names_agree_in_every_overlay() {
    for dir in REGISTRY_DIRS {
        let (_, docs) = render(dir);
        let sts = object(&docs, "StatefulSet", "wharf");
        let pod = &sts["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let container_ports = port_names(&c["ports"]);
        assert_eq!(
            container_ports,
            BTreeMap::from([("metrics".to_owned(), 5001), ("registry".to_owned(), 5000)]),
            "{dir}"
        );
        // The ports the config file listens on are the container ports.
        let cfg = parse_toml(&shipped_config(dir));
        assert_eq!(
            cfg["server"]["listen"].as_str(),
            Some("0.0.0.0:5000"),
            "{dir}"
        );
        assert_eq!(
            cfg["metrics"]["listen"].as_str(),
            Some("0.0.0.0:5001"),
            "{dir}"
        );
        assert_eq!(
            cfg["storage"]["data_dir"].as_str(),
            Some("/var/lib/wharf"),
            "{dir}"
        );

        let tls = dir.starts_with("registry-tls");
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let g = &c[probe]["httpGet"];
            assert_eq!(g["port"], "registry", "{dir} {probe}");
            assert_eq!(
                g["scheme"],
                if tls { "HTTPS" } else { "HTTP" },
                "{dir} {probe}"
            );
            assert_eq!(
                g["path"],
                if probe == "readinessProbe" {
                    "/readyz"
                } else {
                    "/healthz"
                },
                "{dir} {probe}"
            );
        }
        let args = strs(&c["args"]);
        assert_eq!(
            args.contains(&"--tls-cert"),
            tls,
            "{dir}: TLS flags only in the TLS overlays: {args:?}"
        );

        // Both Services select the pod and target container ports by name.
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        for svc in objects(&docs, "Service") {
            let name = svc["metadata"]["name"].as_str().unwrap();
            for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
                assert_eq!(&pod_labels[k], v, "{dir}: Service {name} selector {k}");
            }
            for p in svc["spec"]["ports"].as_array().unwrap() {
                let target = p["targetPort"].as_str().unwrap_or_else(|| {
                    panic!("{dir}: Service {name} targets a port by number: {p}")
                });
                assert!(
                    container_ports.contains_key(target),
                    "{dir}: Service {name} targetPort {target} is no container port {container_ports:?}"
                );
                assert_eq!(p["name"], target, "{dir}: Service {name}: same name");
            }
        }
        let svc = object(&docs, "Service", "wharf");
        assert_eq!(
            port_names(&svc["spec"]["ports"]),
            BTreeMap::from([("registry".to_owned(), 5000)]),
            "{dir}: the registry Service never exposes metrics"
        );
        let headless = object(&docs, "Service", "wharf-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(sts["spec"]["serviceName"], "wharf-headless");

        // The ServiceMonitor scrapes a port of the Service it selects.
        let sm = object(&docs, "ServiceMonitor", "wharf");
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&headless["metadata"]["labels"][k], v, "{dir}: {k}");
        }
        assert_ne!(
            svc["metadata"]["labels"]["app.kubernetes.io/component"],
            headless["metadata"]["labels"]["app.kubernetes.io/component"],
            "{dir}: the ServiceMonitor must not select the registry Service"
        );
        let headless_ports = port_names(&headless["spec"]["ports"]);
        for e in sm["spec"]["endpoints"].as_array().unwrap() {
            assert!(
                headless_ports.contains_key(e["port"].as_str().unwrap()),
                "{dir}: {e}"
            );
            assert_eq!(
                e["scheme"], "http",
                "{dir}: the metrics listener is plain HTTP"
            );
        }

        // The NetworkPolicy names container ports, metrics from the monitoring namespace only.
        let np = object(&docs, "NetworkPolicy", "wharf");
        for (k, v) in np["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(&pod_labels[k], v, "{dir}");
        }
        for rule in np["spec"]["ingress"].as_array().unwrap() {
            for p in rule["ports"].as_array().unwrap() {
                let name = p["port"].as_str().unwrap();
                assert!(container_ports.contains_key(name), "{dir}: {name}");
                if name == "metrics" {
                    assert_eq!(
                        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                        "monitoring",
                        "{dir}"
                    );
                } else {
                    assert!(rule.get("from").is_none(), "{dir}: pulls from anywhere");
                }
            }
        }
    }
}

#[test]
fn statefulset_volumes_secrets_and_budget() {
    for dir in REGISTRY_DIRS {
        let (_, docs) = render(dir);
        let sts = object(&docs, "StatefulSet", "wharf");
        assert_eq!(sts["spec"]["replicas"], 1, "{dir}");
        let pod = &sts["spec"]["template"]["spec"];
        assert_eq!(pod["enableServiceLinks"], false, "{dir}: WHARF_* variables");
        assert_eq!(pod["automountServiceAccountToken"], false, "{dir}");
        let c = &pod["containers"][0];
        assert!(
            c["image"]
                .as_str()
                .unwrap()
                .starts_with("registry.example.com/wharf:"),
            "{dir}"
        );
        let args = strs(&c["args"]);
        assert_eq!(
            &args[..3],
            ["serve", "--config", "/etc/wharf/config/wharf.toml"]
        );
        // Grace period beyond the server's own shutdown grace.
        let cfg = parse_toml(&shipped_config(dir));
        assert!(
            pod["terminationGracePeriodSeconds"].as_i64().unwrap()
                > cfg["server"]["shutdown_grace_seconds"]
                    .as_integer()
                    .unwrap(),
            "{dir}"
        );
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        let cm = objects(&docs, "ConfigMap")[0];
        assert_eq!(
            volumes["config"]["configMap"]["name"],
            cm["metadata"]["name"]
        );
        assert!(
            cm["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("wharf-config-"),
            "{dir}: hashed name"
        );
        assert_eq!(volumes["secrets"]["secret"]["secretName"], "wharf-secrets");
        assert_eq!(volumes["secrets"]["secret"]["optional"], true);
        assert_eq!(volumes["secrets"]["secret"]["defaultMode"], 0o440);
        assert!(volumes["tmp"]["emptyDir"].is_object());
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(
                m.get("subPath").is_none(),
                "{dir}: subPath mounts never update"
            );
            if m["name"] != "data" && m["name"] != "tmp" {
                assert_eq!(m["readOnly"], true, "{dir}: {m}");
            }
        }
        let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(mounts["data"], "/var/lib/wharf");
        assert_eq!(mounts["config"], "/etc/wharf/config");
        assert_eq!(mounts["secrets"], "/etc/wharf/secrets");
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(claim["metadata"]["name"], "data");
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
            "Retain"
        );
        // The disk alerts watch Wharf's own statvfs of the data volume, by job only: no claim
        // name or namespace to keep in step with the manifests.
        let rules = shipped_rules_text(&docs);
        assert!(
            rules.contains("wharf_storage_available_bytes{job=\"wharf-headless\"}"),
            "{dir}"
        );
        assert!(
            !rules.contains("persistentvolumeclaim") && !rules.contains("namespace=\""),
            "{dir}: {rules}"
        );

        let pdbs = objects(&docs, "PodDisruptionBudget");
        if dir == "registry-cache-only" {
            assert!(pdbs.is_empty(), "the cache may be evicted: nodes fall back");
        } else {
            assert_eq!(pdbs.len(), 1, "{dir}");
            assert_eq!(pdbs[0]["spec"]["maxUnavailable"], 0, "{dir}");
            assert_eq!(
                pdbs[0]["spec"]["selector"], sts["spec"]["selector"],
                "{dir}"
            );
        }
        let ns = object(&docs, "Namespace", NAMESPACE);
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
    }
}

fn shipped_rules_text(docs: &[Value]) -> String {
    objects(docs, "PrometheusRule")
        .iter()
        .flat_map(|r| r["spec"]["groups"].as_array().unwrap())
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// `wharf lint ARGS -` on one object; (exit code, stdout, stderr).
fn lint(args: &[&str], object: &Value) -> (i32, String, String) {
    let out = output(
        wharf().arg("lint").args(args).arg("-"),
        Some(serde_json::to_vec_pretty(object).unwrap().as_slice()),
    );
    (
        out.status.code().expect("wharf lint was killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rule ids of `wharf lint` findings (`[pss.x]`).
fn findings(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| {
            let start = l.find("[pss.")?;
            let end = l[start..].find(']')?;
            Some(l[start + 1..start + end].to_owned())
        })
        .collect()
}

#[test]
fn registry_pods_pass_restricted_and_mirror_config_fails_only_as_documented() {
    for dir in REGISTRY_DIRS {
        let (_, docs) = render(dir);
        let sts = object(&docs, "StatefulSet", "wharf");
        let (code, out, err) = lint(&["--pss", "restricted", "--only", "pss"], sts);
        assert_eq!((code, out.as_str()), (0, ""), "{dir}: {err}");
        // readOnlyRootFilesystem is no Pod Security check: asserted here.
        let c = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"], true,
            "{dir}"
        );
        assert_eq!(
            c["securityContext"]["capabilities"],
            json!({"drop": ["ALL"]})
        );
        let psc = &sts["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(psc["runAsUser"], 65532);
        assert_eq!(psc["runAsNonRoot"], true);
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    }
    // The lint can fail: without seccomp, restricted refuses the StatefulSet.
    let (_, docs) = render("registry");
    let mut weak = object(&docs, "StatefulSet", "wharf").clone();
    weak["spec"]["template"]["spec"]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("seccompProfile");
    weak["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("seccompProfile");
    let (code, out, _) = lint(&["--pss", "restricted", "--only", "pss"], &weak);
    assert_eq!(code, 1, "{out}");
    assert!(
        findings(&out).contains("pss.seccompProfile_restricted"),
        "{out}"
    );

    // mirror-config: root and a hostPath, nothing else; in a namespace of its own at
    // `privileged`.
    let (_, docs) = render("mirror-config");
    let ds = object(&docs, "DaemonSet", "wharf-mirror-config");
    let (code, out, _) = lint(&["--pss", "baseline", "--only", "pss"], ds);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&out),
        BTreeSet::from(["pss.hostPathVolumes".to_owned()]),
        "{out}"
    );
    let (code, out, _) = lint(&["--pss", "restricted", "--only", "pss"], ds);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&out),
        BTreeSet::from([
            "pss.restrictedVolumes".to_owned(),
            "pss.runAsNonRoot".to_owned(),
            "pss.runAsUser".to_owned(),
        ]),
        "{out}"
    );
    let ns = object(&docs, "Namespace", "wharf-mirror-config");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    for c in pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_array().unwrap())
    {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}");
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}), "{c}");
        assert!(sc.get("privileged").is_none(), "{c}");
    }
}

/// What the DaemonSet's init container runs, run here on the ConfigMap's own data: one
/// hosts.toml per upstream under the mounted certs.d path, Wharf as the mirror.
#[test]
fn mirror_config_writes_hosts_toml_for_every_upstream() {
    let (_, docs) = render("mirror-config");
    let ds = object(&docs, "DaemonSet", "wharf-mirror-config");
    let pod = &ds["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    let cm = objects(&docs, "ConfigMap")[0];
    let url = cm["data"]["url"].as_str().unwrap();
    let env = &init["env"][0];
    assert_eq!(env["name"], "WHARF_MIRROR_URL");
    assert_eq!(
        env["valueFrom"]["configMapKeyRef"]["name"],
        cm["metadata"]["name"]
    );
    let key = env["valueFrom"]["configMapKeyRef"]["key"].as_str().unwrap();
    assert_eq!(cm["data"][key], url);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The pod's file system: the ConfigMap at its mount path, certs.d at its mount path.
    let mounts: BTreeMap<&str, &str> = init["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let config_dir = root.join(mounts["config"].trim_start_matches('/'));
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("wharf.toml"),
        cm["data"]["wharf.toml"].as_str().unwrap(),
    )
    .unwrap();
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(
        volumes["containerd-certs-d"]["hostPath"]["path"],
        "/etc/containerd/certs.d"
    );
    assert_eq!(
        volumes["config"]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    let certs_d = mounts["containerd-certs-d"];
    // The container's arguments, with $(VAR) expanded as the kubelet does and absolute paths
    // moved under the temp root.
    let args: Vec<String> = strs(&init["args"])
        .iter()
        .map(|a| a.replace("$(WHARF_MIRROR_URL)", url))
        .map(|a| {
            if a.starts_with('/') {
                root.join(a.trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned()
            } else {
                a
            }
        })
        .collect();
    assert_eq!(&args[..2], ["mirror", "config"]);
    let out = output(wharf().args(&args), None);
    assert!(out.status.success(), "{}", text(&out));
    let written = root.join(certs_d.trim_start_matches('/'));
    for host in ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"] {
        let hosts_toml = std::fs::read_to_string(written.join(host).join("hosts.toml"))
            .unwrap_or_else(|e| panic!("{host}/hosts.toml: {e}: {}", text(&out)));
        assert!(
            hosts_toml.contains(&format!("[host.\"{url}\"]")),
            "{hosts_toml}"
        );
        assert!(hosts_toml.contains("server = \"https://"), "{hosts_toml}");
        let parsed = parse_toml(&hosts_toml);
        assert!(parsed.contains_key("host"), "{hosts_toml}");
    }
}

/// The TLS overlay's container, run here on its own arguments and files: the ConfigMap's
/// wharf.toml at its mount path, a serving certificate for the names the cert-manager overlay
/// asks for at the tls Secret's mount path. It serves HTTPS on the registry port (the probes'
/// paths answer 200 over HTTPS), and the first administrator is created the way
/// docs/kubernetes.md shows for TLS: a local CLI trusting the CA (`SSL_CERT_FILE`) through
/// `https://localhost:PORT`, as `kubectl port-forward` reaches the pod's loopback.
#[test]
fn the_tls_overlay_serves_https_and_the_first_admin_comes_through_localhost() {
    let (_, docs) = render("registry-tls-cert-manager");
    let sts = object(&docs, "StatefulSet", "wharf");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let cert = object(&docs, "Certificate", "wharf-tls");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();

    // A CA and a serving certificate with the Certificate's names and addresses.
    let certs = root.join("certs");
    let mut certs_cmd = wharf();
    certs_cmd.args(["admission", "certs", "--out"]).arg(&certs);
    for n in strs(&cert["spec"]["dnsNames"]) {
        certs_cmd.args(["--dns", n]);
    }
    for ip in strs(&cert["spec"]["ipAddresses"]) {
        certs_cmd.args(["--ip", ip]);
    }
    let out = output(&mut certs_cmd, None);
    assert!(out.status.success(), "{}", text(&out));

    // The pod's files, under `root`.
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(at(mounts["config"])).unwrap();
    std::fs::write(
        at(mounts["config"]).join("wharf.toml"),
        shipped_config("registry-tls-cert-manager"),
    )
    .unwrap();
    std::fs::create_dir_all(at(mounts["tls"])).unwrap();
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::copy(certs.join(f), at(mounts["tls"]).join(f)).unwrap();
    }
    let args: Vec<String> = strs(&c["args"])
        .iter()
        .map(|a| {
            if a.starts_with('/') {
                at(a).to_string_lossy().into_owned()
            } else {
                a.to_string()
            }
        })
        .collect();
    let s = Served::start_args(&args, &root.join("data"), true);
    let ca = certs.join("ca.crt");
    let curl = |path: &str| -> String {
        let out = output(
            tool("curl")
                .args(["--silent", "--show-error", "--cacert"])
                .arg(&ca)
                .args(["-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("https://localhost:{}{path}", s.port)),
            None,
        );
        assert!(out.status.success(), "curl {path}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let g = &c[probe]["httpGet"];
        assert_eq!(g["scheme"], "HTTPS");
        assert_eq!(curl(g["path"].as_str().unwrap()), "200", "{probe}");
    }
    // Plain HTTP on the registry port is not served.
    assert_eq!(s.http.get("/readyz").unwrap().status, 400);
    // Metrics stay plain HTTP (the ServiceMonitor's scheme), and name the served certificate's
    // expiry (what WharfCertificateExpiringSoon watches): in the future, within the 10 years
    // `wharf admission certs` issues for at most.
    let metrics = s.metrics.get("/metrics").unwrap().expect(200).text();
    let expiry: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wharf_tls_certificate_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no certificate expiry series:\n{metrics}"))
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 86400.0 && expiry < now + 10.0 * 366.0 * 86400.0,
        "expiry {expiry}, now {now}"
    );

    let add = |ssl_cert_file: Option<&Path>| -> Output {
        let mut cmd = wharf();
        cmd.args(["user", "add", "root", "--admin", "--server"])
            .arg(format!("https://localhost:{}", s.port))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(f) = ssl_cert_file {
            cmd.env("SSL_CERT_FILE", f);
        }
        output(&mut cmd, Some(b"a-long-password\n"))
    };
    // Without the CA the CLI refuses the certificate; with it, the administrator is created.
    let refused = add(None);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{}",
        text(&refused)
    );
    let added = add(Some(&ca));
    assert!(added.status.success(), "{}", text(&added));
    assert_eq!(curl("/v2/"), "401", "access control is on");
    s.stop();
}
