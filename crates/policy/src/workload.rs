//! Where Kubernetes objects keep their pods: the pod spec and pod metadata of each workload kind
//! (the paths are the pin crate's [`pin::pod_spec_path`], one table for Wharf), and the
//! containers of a pod spec.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// How deep `List` objects may nest (real lists are flat; this bounds recursion on hostile
/// input).
const MAX_LIST_DEPTH: usize = 8;

/// Where a pod spec was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadLocation {
    /// Indices into `items` of the enclosing `List` objects, outermost first (empty for a
    /// top-level object).
    pub items: Vec<usize>,
    /// The object's `kind`.
    pub kind: String,
    /// `metadata.name` (or `metadata.generateName`), empty when neither is set.
    pub name: String,
    /// `metadata.namespace`, if set.
    pub namespace: Option<String>,
    /// The path from the object to the pod spec (`spec.template.spec`).
    pub spec_path: &'static [&'static str],
}

impl fmt::Display for WorkloadLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.items {
            write!(f, "items[{i}] ")?;
        }
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One pod spec of an object, with the metadata of its pod (the pod's own for a Pod, the
/// template's for the others; `Value::Null` when absent).
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// Where it is.
    pub location: WorkloadLocation,
    /// The pod's metadata (annotations matter to some checks).
    pub metadata: &'a Value,
    /// The pod spec.
    pub spec: &'a Value,
}

/// Every pod spec of `object`, in document order: one for a workload, one per workload item of
/// a `List` or `*List` kind (recursively), none for other kinds. Kinds are matched with their
/// API group (`apps/v1` Deployment yes, `example.com/v1` Deployment no), as in the pin crate.
pub fn workloads(object: &Value) -> Vec<Workload<'_>> {
    let mut out = Vec::new();
    collect(object, &mut Vec::new(), &mut out);
    out
}

fn collect<'a>(object: &'a Value, items: &mut Vec<usize>, out: &mut Vec<Workload<'a>>) {
    let Some(kind) = object.get("kind").and_then(Value::as_str) else {
        return;
    };
    let group = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g));
    if kind.ends_with("List") {
        if items.len() < MAX_LIST_DEPTH
            && let Some(list) = object.get("items").and_then(Value::as_array)
        {
            for (i, item) in list.iter().enumerate() {
                items.push(i);
                collect(item, items, out);
                items.pop();
            }
        }
        return;
    }
    let Some(path) = pin::pod_spec_path(group, kind) else {
        return;
    };
    let Some(spec) = at(object, path).filter(|s| s.is_object()) else {
        return;
    };
    // The pod's metadata sits next to its spec: `metadata` of a Pod, `template.metadata` of
    // the others.
    let parent = &path[..path.len() - 1];
    let metadata = at(object, parent)
        .and_then(|p| p.get("metadata"))
        .unwrap_or(&Value::Null);
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    out.push(Workload {
        location: WorkloadLocation {
            items: items.clone(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace,
            spec_path: path,
        },
        metadata,
        spec,
    });
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The three container lists of a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ContainerKind {
    // Serialized as the pod spec field.
    #[serde(rename = "initContainers")]
    /// `spec.initContainers` (native sidecars included: Pod Security treats them alike).
    Init,
    /// `spec.containers`.
    #[serde(rename = "containers")]
    Regular,
    /// `spec.ephemeralContainers`.
    #[serde(rename = "ephemeralContainers")]
    Ephemeral,
}

impl ContainerKind {
    /// The pod spec field: `initContainers`, `containers` or `ephemeralContainers`.
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainers",
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

/// A container of a pod: its list, index in it and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ContainerRef {
    /// Which list.
    pub kind: ContainerKind,
    /// Index in that list.
    pub index: usize,
    /// `name` (empty if missing).
    pub name: String,
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {:?}", self.kind.field(), self.index, self.name)
    }
}

/// The containers of a pod spec in the order Pod Security Admission visits them: init
/// containers, containers, ephemeral containers. Entries that are not objects are skipped.
pub fn containers(spec: &Value) -> Vec<(ContainerRef, &Value)> {
    let mut out = Vec::new();
    for kind in [
        ContainerKind::Init,
        ContainerKind::Regular,
        ContainerKind::Ephemeral,
    ] {
        let Some(list) = spec.get(kind.field()).and_then(Value::as_array) else {
            continue;
        };
        for (index, c) in list.iter().enumerate().filter(|(_, c)| c.is_object()) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            out.push((ContainerRef { kind, index, name }, c));
        }
    }
    out
}
