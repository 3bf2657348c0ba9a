//! Arbitrary JSON never panics the engine: shapes that look like pods, with every field any type.

use policy::{Level, Version, evaluate, evaluate_object};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys the checks read, so random objects reach the code paths.
const KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "items",
    "metadata",
    "annotations",
    "spec",
    "template",
    "jobTemplate",
    "containers",
    "initContainers",
    "ephemeralContainers",
    "securityContext",
    "name",
    "privileged",
    "capabilities",
    "add",
    "drop",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "volumes",
    "hostPath",
    "ports",
    "hostPort",
    "appArmorProfile",
    "type",
    "seLinuxOptions",
    "user",
    "role",
    "procMount",
    "seccompProfile",
    "sysctls",
    "windowsOptions",
    "hostProcess",
    "livenessProbe",
    "httpGet",
    "tcpSocket",
    "host",
    "lifecycle",
    "preStop",
    "runAsNonRoot",
    "runAsUser",
    "os",
    "hostUsers",
    "allowPrivilegeEscalation",
    "Pod",
    "Deployment",
    "List",
    "apps/v1",
    "v1",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(KEYS).prop_map(|s| json!(s)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 200, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics(meta in value(), spec in value(), minor in 0u32..50) {
        for level in [Level::Baseline, Level::Restricted] {
            for version in [Version::Latest, Version::V1(minor)] {
                let _ = evaluate(level, version, &meta, &spec);
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
                let _ = evaluate_object(level, version, &pod);
                let _ = evaluate_object(level, version, &spec);
            }
        }
    }
}
