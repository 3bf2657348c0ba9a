//! Where Kubernetes objects keep their images: the pod spec of each workload kind, and in it the
//! `image` of every container, init container and ephemeral container.

use std::collections::HashSet;

use crate::yaml::{NodeId, Tree};

/// How deep `List` objects may nest (a guard against alias cycles; real lists are flat).
const MAX_LIST_DEPTH: usize = 8;

/// The container lists of a pod spec.
pub const CONTAINER_FIELDS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Path from an object to its pod spec, for the kinds that have one. `group` is the API group
/// (`""` for the core group), or `None` when the object has no `apiVersion`.
///
/// A kind with a known name in another group (a custom resource called `Deployment`, say) is not
/// a workload and is left alone.
pub fn pod_spec_path(group: Option<&str>, kind: &str) -> Option<&'static [&'static str]> {
    let in_group = |groups: &[&str]| group.is_none_or(|g| groups.contains(&g));
    match kind {
        "Pod" if in_group(&[""]) => Some(&["spec"]),
        "PodTemplate" if in_group(&[""]) => Some(&["template", "spec"]),
        "ReplicationController" if in_group(&[""]) => Some(&["spec", "template", "spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
            if in_group(&["apps", "extensions"]) =>
        {
            Some(&["spec", "template", "spec"])
        }
        "Job" if in_group(&["batch"]) => Some(&["spec", "template", "spec"]),
        "CronJob" if in_group(&["batch"]) => {
            Some(&["spec", "jobTemplate", "spec", "template", "spec"])
        }
        _ => None,
    }
}

/// An `image` field found in the tree.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The value node of the `image` key.
    pub node: NodeId,
    /// `Kind/name` of the object.
    pub object: String,
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub field: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container's `name`, if it has one.
    pub container: Option<String>,
}

/// Every image field of every workload in the stream, in document order, each node once (an
/// anchored container reused through aliases is one site).
pub(crate) fn find_sites(tree: &Tree) -> Vec<Site> {
    let mut f = Finder {
        tree,
        seen_objects: HashSet::new(),
        seen_images: HashSet::new(),
        sites: Vec::new(),
    };
    for &doc in &tree.docs {
        f.object(doc, 0);
    }
    f.sites
}

struct Finder<'t> {
    tree: &'t Tree,
    seen_objects: HashSet<NodeId>,
    seen_images: HashSet<NodeId>,
    sites: Vec<Site>,
}

impl Finder<'_> {
    fn object(&mut self, node: NodeId, depth: usize) {
        let t = self.tree;
        if !t.is_map(node) || !self.seen_objects.insert(node) {
            return;
        }
        let Some(kind) = t.get_str(node, "kind") else {
            return;
        };
        let group = t
            .get_str(node, "apiVersion")
            .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g));
        if kind.ends_with("List") && depth < MAX_LIST_DEPTH {
            if let Some(items) = t.get(node, "items") {
                for &item in t.items(items) {
                    self.object(item, depth + 1);
                }
            }
            return;
        }
        let Some(path) = pod_spec_path(group, kind) else {
            return;
        };
        let Some(spec) = t.path(node, path) else {
            return;
        };
        let name = t
            .path(node, &["metadata", "name"])
            .and_then(|n| t.str(n))
            .or_else(|| {
                t.path(node, &["metadata", "generateName"])
                    .and_then(|n| t.str(n))
            })
            .unwrap_or("");
        let object = format!("{kind}/{name}");
        for field in CONTAINER_FIELDS {
            let Some(list) = t.get(spec, field) else {
                continue;
            };
            for (index, &c) in t.items(list).iter().enumerate() {
                let container = t.get_str(c, "name").map(str::to_owned);
                for image in t.get_all(c, "image") {
                    if self.seen_images.insert(image) {
                        self.sites.push(Site {
                            node: image,
                            object: object.clone(),
                            field,
                            index,
                            container: container.clone(),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_groups() {
        assert!(pod_spec_path(Some(""), "Pod").is_some());
        assert!(pod_spec_path(None, "Deployment").is_some());
        assert!(pod_spec_path(Some("apps"), "Deployment").is_some());
        assert!(pod_spec_path(Some("extensions"), "DaemonSet").is_some());
        assert!(pod_spec_path(Some("example.com"), "Deployment").is_none());
        assert!(pod_spec_path(Some("apps"), "Pod").is_none());
        assert_eq!(
            pod_spec_path(Some("batch"), "CronJob"),
            Some(&["spec", "jobTemplate", "spec", "template", "spec"][..])
        );
        assert!(pod_spec_path(Some(""), "Service").is_none());
    }
}
