//! YAML input through the pin crate's `to_json`: the shared examples decode to exactly the
//! objects `kubectl create --dry-run=client -o json` made of them (tests/fixtures/example-*.json;
//! kubectl adds `metadata.namespace: default`, removed here), and the policy's findings point at
//! the right lines.

use std::path::{Path, PathBuf};

use policy::Policy;
use serde_json::Value;

fn examples() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

fn kubectl(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| {
            let mut v = v.unwrap();
            v["metadata"].as_object_mut().unwrap().remove("namespace");
            v
        })
        .collect()
}

#[test]
fn examples_decode_as_kubectl_decodes_them() {
    for name in ["drift-and-latest", "my-app-deployment", "privileged-pod"] {
        let yaml = std::fs::read(examples().join(format!("{name}.yaml"))).unwrap();
        let docs = pin::to_json(&yaml).unwrap();
        let ours: Vec<Value> = docs.iter().map(|d| d.value.clone()).collect();
        assert_eq!(ours, kubectl(&format!("example-{name}.json")), "{name}");
    }
}

#[test]
fn findings_point_at_lines() {
    let yaml = std::fs::read(examples().join("privileged-pod.yaml")).unwrap();
    let docs = pin::to_json(&yaml).unwrap();
    assert_eq!(docs[0].line, 3);
    let got: Vec<(String, usize)> = Policy::default()
        .evaluate(&docs[0].value)
        .into_iter()
        .map(|f| (f.rule, docs[0].line_of(&f.pointer)))
        .collect();
    assert_eq!(
        got,
        [
            ("pss.hostNamespaces".to_owned(), 8),
            ("pss.privileged".to_owned(), 17),
            ("pss.capabilities_baseline".to_owned(), 18),
            ("pss.hostPathVolumes".to_owned(), 10),
        ]
    );
}
