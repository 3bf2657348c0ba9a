//! A whole policy: the Pod Security Standards level per namespace, image rules, workload hygiene
//! and version drift, each rule with its mode; and the [`Finding`]s it makes of objects.
//!
//! Every finding names its rule (`pss.privileged`, `images.latest`, `hygiene.probes`, ...), the
//! object and container, a JSON pointer to the field at fault (for `file:line` messages) and
//! the reason.

use std::collections::BTreeMap;
use std::fmt;

use oci::Glob;
use oci::image_ref::ImageRef;
use serde::Serialize;
use serde_json::Value;

use crate::{
    ContainerKind, ContainerRef, Level, Target, Version, Violation, WorkloadLocation, containers,
    evaluate, workloads,
};

/// What a rule's decision does: `enforce` refuses (and makes `wharf lint` exit 1), `warn`
/// warns, `audit` only records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Recorded (logged, counted), nothing else.
    Audit,
    /// A warning to the user.
    Warn,
    /// Refused.
    Enforce,
}

impl Mode {
    /// `audit`, `warn` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule families (`wharf lint --only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Pod Security Standards checks (`pss.<check>`).
    Pss,
    /// Image rules (`images.*`).
    Images,
    /// Version drift across objects (`drift`).
    Drift,
    /// Workload hygiene (`hygiene.*`).
    Hygiene,
}

impl Category {
    /// `pss`, `images`, `drift` or `hygiene`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Pss => "pss",
            Category::Images => "images",
            Category::Drift => "drift",
            Category::Hygiene => "hygiene",
        }
    }
}

/// A namespace (by name or glob) with its own Pod Security level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLevel {
    /// The namespace name or pattern ([`oci::Glob`]: `*`, `?`).
    pub pattern: Glob,
    /// Its level.
    pub level: Level,
    /// Its version (the policy's default when `None`).
    pub version: Option<Version>,
}

/// The Pod Security part of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PssRules {
    /// The level for objects whose namespace no [`NamespaceLevel`] matches (or that name none).
    pub level: Level,
    /// The version.
    pub version: Version,
    /// The mode of every Pod Security finding; `None` turns the checks off.
    pub mode: Option<Mode>,
    /// Per-namespace levels, first match wins.
    pub namespaces: Vec<NamespaceLevel>,
}

impl PssRules {
    /// The level and version for objects in `namespace`.
    pub fn for_namespace(&self, namespace: Option<&str>) -> (Level, Version) {
        let found = namespace.and_then(|ns| self.namespaces.iter().find(|n| n.pattern.matches(ns)));
        match found {
            Some(n) => (n.level, n.version.unwrap_or(self.version)),
            None => (self.level, self.version),
        }
    }
}

/// Image rules. A `None` mode turns a rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRules {
    /// Allowed registries. A pattern without `/` matches the registry host (`ghcr.io`,
    /// `*.example.com`); one with `/` the full name `registry/repository`
    /// (`docker.io/library/*`). Names are normalised first: `nginx` is
    /// `docker.io/library/nginx`. Empty: any registry.
    pub allowed_registries: Vec<Glob>,
    /// Mode of `images.registry` (an image outside [`ImageRules::allowed_registries`]).
    pub registry: Option<Mode>,
    /// Mode of `images.latest`: the tag `latest` without a digest.
    pub latest: Option<Mode>,
    /// Mode of `images.untagged`: neither tag nor digest (runtimes pull `latest`).
    pub untagged: Option<Mode>,
    /// Mode of `images.digest`: no digest.
    pub digest: Option<Mode>,
    /// Mode of `images.invalid`: not a valid reference, or not a string.
    pub invalid: Option<Mode>,
}

/// Workload hygiene rules, off unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HygieneRules {
    /// `hygiene.probes`: every container (not init or ephemeral) has a liveness and a readiness
    /// probe.
    pub probes: Option<Mode>,
    /// `hygiene.resources`: every container and init container requests cpu and memory and
    /// limits memory.
    pub resources: Option<Mode>,
    /// `hygiene.runAsNonRoot`: every container runs with `runAsNonRoot: true` (its own or the
    /// pod's).
    pub run_as_non_root: Option<Mode>,
}

/// A whole policy. [`Policy::default`] is `wharf lint`'s policy without `--policy`: Pod
/// Security `baseline` at `latest`, enforced; `images.latest`, `images.untagged`,
/// `images.invalid` and `drift` warn; the rest off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Pod Security Standards.
    pub pss: PssRules,
    /// Image rules.
    pub images: ImageRules,
    /// Workload hygiene.
    pub hygiene: HygieneRules,
    /// Mode of `drift`: one repository at different tags or digests across the objects.
    pub drift: Option<Mode>,
    /// Requests the Pod Security checks do not apply to (the admission webhook; `wharf lint`
    /// has no user and ignores them).
    pub exemptions: crate::Exemptions,
    /// `images.signature`: cosign signatures by trusted keys (needs [`crate::Facts`]).
    pub signatures: crate::SignatureRules,
    /// `images.vulnerabilities` and `images.unscanned` (need [`crate::Facts`]).
    pub vulnerabilities: crate::VulnerabilityRules,
    /// What the mutating webhook changes.
    pub mutate: crate::MutateRules,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            pss: PssRules {
                level: Level::Baseline,
                version: Version::Latest,
                mode: Some(Mode::Enforce),
                namespaces: Vec::new(),
            },
            images: ImageRules {
                allowed_registries: Vec::new(),
                registry: Some(Mode::Enforce),
                latest: Some(Mode::Warn),
                untagged: Some(Mode::Warn),
                digest: None,
                invalid: Some(Mode::Warn),
            },
            hygiene: HygieneRules::default(),
            drift: Some(Mode::Warn),
            exemptions: crate::Exemptions::default(),
            signatures: crate::SignatureRules::default(),
            vulnerabilities: crate::VulnerabilityRules::default(),
            mutate: crate::MutateRules::default(),
        }
    }
}

/// One decision: a rule that fired on an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule: `pss.<check>`, `images.registry|latest|untagged|digest|invalid`,
    /// `hygiene.probes|resources|runAsNonRoot`, `drift`.
    pub rule: String,
    /// Its family.
    pub category: Category,
    /// Its mode.
    pub mode: Mode,
    /// The object (`Deployment/web`, with `items[i] ` before it inside a List).
    pub object: String,
    /// The object's namespace, if it names one.
    pub namespace: Option<String>,
    /// The container at fault (`None` for a pod-level field).
    pub container: Option<ContainerRef>,
    /// JSON pointer (RFC 6901) from the object's document to the field at fault, or to the
    /// nearest thing to it (the container lacking a probe).
    pub pointer: String,
    /// Why, in words.
    pub reason: String,
}

/// The image of one container of an object, for [`Policy::drift`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The object.
    pub object: String,
    /// The container.
    pub container: ContainerRef,
    /// JSON pointer to the `image` field.
    pub pointer: String,
    /// The reference (only valid references take part in drift).
    pub reference: ImageRef,
}

/// Every valid image of `object`'s containers (init, regular, ephemeral, in that order).
pub fn image_uses(object: &Value) -> Vec<ImageUse> {
    let mut out = Vec::new();
    for w in workloads(object) {
        for (c, v) in containers(w.spec) {
            if let Some(r) = v
                .get("image")
                .and_then(Value::as_str)
                .and_then(|s| ImageRef::parse(s).ok())
            {
                out.push(ImageUse {
                    object: w.location.to_string(),
                    pointer: format!("{}/image", container_pointer(&w.location, &c)),
                    container: c,
                    reference: r,
                });
            }
        }
    }
    out
}

/// One repository used at several versions: every use, grouped by version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift<P> {
    /// `registry/repository` (`docker.io/library/nginx`).
    pub repository: String,
    /// The rule's mode.
    pub mode: Mode,
    /// Each version (`:tag`, `@digest`, `:tag@digest`; no tag is `:latest`) with its uses, in
    /// the order first seen.
    pub versions: Vec<(String, Vec<P>)>,
}

impl<P: fmt::Display> Drift<P> {
    /// `docker.io/x/api at 2 versions: :2.3.1 (a.yaml:18 ...), :2.2.0 (b.yaml:36 ...)`.
    pub fn reason(&self) -> String {
        let parts: Vec<String> = self
            .versions
            .iter()
            .map(|(v, places)| {
                let ps: Vec<String> = places.iter().map(ToString::to_string).collect();
                format!("{v} ({})", ps.join(", "))
            })
            .collect();
        format!(
            "{} at {} versions: {}",
            self.repository,
            self.versions.len(),
            parts.join("; ")
        )
    }
}

/// The version part of a reference for drift: what distinguishes two uses of a repository.
fn version_of(r: &ImageRef) -> String {
    match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => format!(":{t}@{d}"),
        (Some(t), None) => format!(":{t}"),
        (None, Some(d)) => format!("@{d}"),
        // What runtimes pull: the same as `:latest`.
        (None, None) => ":latest".to_owned(),
    }
}

impl Policy {
    /// The findings of one object: Pod Security, image and hygiene rules (not drift, which
    /// needs every object: [`Policy::drift`]; nor the signature and vulnerability rules, which
    /// need facts: [`Policy::evaluate_with`]). Objects without a pod spec give nothing.
    pub fn evaluate(&self, object: &Value) -> Vec<Finding> {
        self.evaluate_inner(object, None)
    }

    /// [`Policy::evaluate`] plus the rules that need facts about images (signatures, scan
    /// results), from `facts` (see [`Policy::fact_requests`]); a fact missing from `facts`
    /// fires its rule with the reason.
    pub fn evaluate_with(&self, object: &Value, facts: &crate::Facts) -> Vec<Finding> {
        self.evaluate_inner(object, Some(facts))
    }

    fn evaluate_inner(&self, object: &Value, facts: Option<&crate::Facts>) -> Vec<Finding> {
        let mut out = Vec::new();
        for w in workloads(object) {
            let loc = &w.location;
            let object_name = loc.to_string();
            let mut push = |rule: String,
                            category: Category,
                            mode: Mode,
                            container: Option<ContainerRef>,
                            pointer: String,
                            reason: String| {
                out.push(Finding {
                    rule,
                    category,
                    mode,
                    object: object_name.clone(),
                    namespace: loc.namespace.clone(),
                    container,
                    pointer,
                    reason,
                })
            };
            if let Some(mode) = self.pss.mode {
                let (level, version) = self.pss.for_namespace(loc.namespace.as_deref());
                for v in evaluate(level, version, w.metadata, w.spec) {
                    for t in &v.targets {
                        let (container, pointer) = match t {
                            Target::Container(c) => (
                                Some(c.clone()),
                                format!("{}{}", container_pointer(loc, c), check_field(v.check)),
                            ),
                            Target::Pod(field) => (None, pod_field_pointer(loc, w.spec, field)),
                        };
                        push(
                            format!("pss.{}", v.check),
                            Category::Pss,
                            mode,
                            container,
                            pointer,
                            pss_reason(&v, level, version),
                        );
                    }
                }
            }
            for (c, cv) in containers(w.spec) {
                let base = container_pointer(loc, &c);
                for (rule, mode, reason) in self.image_findings(cv.get("image"), facts) {
                    push(
                        format!("images.{rule}"),
                        Category::Images,
                        mode,
                        Some(c.clone()),
                        format!("{base}/image"),
                        reason,
                    );
                }
                for (rule, mode, field, reason) in self.hygiene_findings(&c, cv, w.spec) {
                    push(
                        format!("hygiene.{rule}"),
                        Category::Hygiene,
                        mode,
                        Some(c.clone()),
                        format!("{base}{field}"),
                        reason,
                    );
                }
            }
        }
        out
    }

    fn image_findings(
        &self,
        image: Option<&Value>,
        facts: Option<&crate::Facts>,
    ) -> Vec<(&'static str, Mode, String)> {
        let r = &self.images;
        let mut out = Vec::new();
        let text = match image {
            Some(Value::String(s)) => s,
            Some(Value::Null) | None => {
                if let Some(m) = r.invalid {
                    out.push(("invalid", m, "the container has no image".to_owned()));
                }
                return out;
            }
            Some(_) => {
                if let Some(m) = r.invalid {
                    out.push(("invalid", m, "the image is not a string".to_owned()));
                }
                return out;
            }
        };
        let reference = match ImageRef::parse(text) {
            Ok(x) => x,
            Err(e) => {
                if let Some(m) = r.invalid {
                    out.push(("invalid", m, format!("image {text:?}: {e}")));
                }
                return out;
            }
        };
        if let Some(m) = r.registry
            && !r.allowed_registries.is_empty()
            && !r
                .allowed_registries
                .iter()
                .any(|g| crate::facts::image_matches(g, &reference))
        {
            let allowed: Vec<&str> = r.allowed_registries.iter().map(Glob::as_str).collect();
            out.push((
                "registry",
                m,
                format!(
                    "image {text:?} ({}) is not from an allowed registry ({})",
                    reference.name(),
                    allowed.join(", ")
                ),
            ));
        }
        let pinned = reference.digest().is_some();
        if let Some(m) = r.latest
            && !pinned
            && reference.tag() == Some("latest")
        {
            out.push((
                "latest",
                m,
                format!("image {text:?} uses the moving tag \"latest\""),
            ));
        }
        if let Some(m) = r.untagged
            && !pinned
            && reference.tag().is_none()
        {
            out.push((
                "untagged",
                m,
                format!("image {text:?} has no tag or digest (runtimes pull \"latest\")"),
            ));
        }
        if let Some(m) = r.digest
            && !pinned
        {
            out.push((
                "digest",
                m,
                format!("image {text:?} is not pinned to a digest (wharf pin does that)"),
            ));
        }
        if let Some(facts) = facts {
            out.extend(self.fact_findings(text, &reference, facts));
        }
        out
    }

    fn hygiene_findings(
        &self,
        c: &ContainerRef,
        v: &Value,
        spec: &Value,
    ) -> Vec<(&'static str, Mode, &'static str, String)> {
        let h = &self.hygiene;
        let set = |v: &Value, path: &[&str]| {
            path.iter()
                .try_fold(v, |v, k| v.get(k))
                .is_some_and(|x| !x.is_null())
        };
        let mut out = Vec::new();
        if let Some(m) = h.probes
            && c.kind == ContainerKind::Regular
        {
            let missing: Vec<&str> = ["livenessProbe", "readinessProbe"]
                .into_iter()
                .filter(|p| !set(v, &[p]))
                .collect();
            if !missing.is_empty() {
                out.push((
                    "probes",
                    m,
                    "",
                    format!("container {:?} has no {}", c.name, missing.join(" and no ")),
                ));
            }
        }
        if let Some(m) = h.resources
            && c.kind != ContainerKind::Ephemeral
        {
            let missing: Vec<&str> = [
                ("requests.cpu", ["requests", "cpu"]),
                ("requests.memory", ["requests", "memory"]),
                ("limits.memory", ["limits", "memory"]),
            ]
            .into_iter()
            .filter(|(_, p)| !set(v, &["resources", p[0], p[1]]))
            .map(|(n, _)| n)
            .collect();
            if !missing.is_empty() {
                out.push((
                    "resources",
                    m,
                    "/resources",
                    format!(
                        "container {:?} does not set resources.{}",
                        c.name,
                        missing.join(", resources.")
                    ),
                ));
            }
        }
        if let Some(m) = h.run_as_non_root {
            let own = v.pointer("/securityContext/runAsNonRoot");
            let pod = spec.pointer("/securityContext/runAsNonRoot");
            let effective = match own {
                Some(Value::Bool(b)) => Some(*b),
                _ => pod.and_then(Value::as_bool),
            };
            if effective != Some(true) {
                out.push((
                    "runAsNonRoot",
                    m,
                    "/securityContext/runAsNonRoot",
                    format!(
                        "container {:?} must set securityContext.runAsNonRoot=true (or the pod must)",
                        c.name
                    ),
                ));
            }
        }
        out
    }

    /// Version drift across `uses` (from every object linted together): each repository
    /// (normalised `registry/repository`) used at more than one tag or digest, naming every use
    /// by `place(use)` (a file and line, say). `None` when the rule is off.
    pub fn drift<P: Clone>(&self, uses: &[(ImageUse, P)]) -> Vec<Drift<P>> {
        let Some(mode) = self.drift else {
            return Vec::new();
        };
        let mut by_repo: BTreeMap<String, Vec<(String, Vec<P>)>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (u, place) in uses {
            let repo = u.reference.name();
            let version = version_of(&u.reference);
            let versions = by_repo.entry(repo.clone()).or_insert_with(|| {
                order.push(repo.clone());
                Vec::new()
            });
            match versions.iter_mut().find(|(v, _)| *v == version) {
                Some((_, ps)) => ps.push(place.clone()),
                None => versions.push((version, vec![place.clone()])),
            }
        }
        order
            .into_iter()
            .filter_map(|repo| {
                let versions = by_repo.remove(&repo)?;
                (versions.len() > 1).then_some(Drift {
                    repository: repo,
                    mode,
                    versions,
                })
            })
            .collect()
    }
}

fn pss_reason(v: &Violation, level: Level, version: Version) -> String {
    format!("{} (Pod Security {level}:{version})", v.message())
}

/// JSON pointer from the document to the object (inside Lists).
fn object_pointer(loc: &WorkloadLocation) -> String {
    loc.items.iter().map(|i| format!("/items/{i}")).collect()
}

/// JSON pointer from the document to the pod spec.
fn spec_pointer(loc: &WorkloadLocation) -> String {
    let mut p = object_pointer(loc);
    for s in loc.spec_path {
        p.push('/');
        p.push_str(s);
    }
    p
}

/// JSON pointer from the document to a container.
pub(crate) fn container_pointer(loc: &WorkloadLocation, c: &ContainerRef) -> String {
    format!("{}/{}/{}", spec_pointer(loc), c.kind.field(), c.index)
}

/// The container field a Pod Security check is about (from the container's pointer).
fn check_field(check: &str) -> &'static str {
    match check {
        "privileged" => "/securityContext/privileged",
        "capabilities_baseline" | "capabilities_restricted" => "/securityContext/capabilities",
        "hostPorts" => "/ports",
        "appArmorProfile" => "/securityContext/appArmorProfile",
        "seLinuxOptions" => "/securityContext/seLinuxOptions",
        "procMount" | "procMount_restricted" => "/securityContext/procMount",
        "seccompProfile_baseline" | "seccompProfile_restricted" => {
            "/securityContext/seccompProfile"
        }
        "windowsHostProcess" => "/securityContext/windowsOptions/hostProcess",
        "allowPrivilegeEscalation" => "/securityContext/allowPrivilegeEscalation",
        "runAsNonRoot" => "/securityContext/runAsNonRoot",
        "runAsUser" => "/securityContext/runAsUser",
        _ => "",
    }
}

/// A pod-level target (`spec.hostNetwork`, `spec.volumes["host"]`,
/// `metadata.annotations["k"]`) as a JSON pointer from the document.
fn pod_field_pointer(loc: &WorkloadLocation, spec: &Value, field: &str) -> String {
    let (path, key) = match field.split_once('[') {
        Some((p, k)) => (
            p,
            serde_json::from_str::<String>(k.trim_end_matches(']')).ok(),
        ),
        None => (field, None),
    };
    let mut parts = path.split('.');
    let mut p = match parts.next() {
        Some("metadata") => {
            let spec = spec_pointer(loc);
            let parent = spec.rsplit_once('/').map_or("", |(a, _)| a).to_owned();
            parent + "/metadata"
        }
        _ => spec_pointer(loc),
    };
    let mut last = "";
    for s in parts {
        p.push('/');
        p.push_str(s);
        last = s;
    }
    if let Some(k) = key {
        if last == "volumes" {
            // By name: the index of the volume.
            if let Some(i) = spec
                .get("volumes")
                .and_then(Value::as_array)
                .and_then(|vs| {
                    vs.iter()
                        .position(|v| v.get("name").and_then(Value::as_str) == Some(&k))
                })
            {
                p.push_str(&format!("/{i}"));
            }
        } else {
            p.push('/');
            p.push_str(&pin::pointer_token(&k));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn rules(f: &[Finding]) -> Vec<(&str, Mode, &str)> {
        f.iter()
            .map(|x| (x.rule.as_str(), x.mode, x.pointer.as_str()))
            .collect()
    }

    #[test]
    fn image_rules() {
        let mut p = Policy::default();
        p.images.digest = Some(Mode::Audit);
        p.images.allowed_registries = vec![Glob::new("ghcr.io"), Glob::new("docker.io/library/*")];
        let o = deploy(json!([
            {"name": "a", "image": "nginx"},
            {"name": "b", "image": "nginx:latest"},
            {"name": "c", "image": "ghcr.io/x/y:1@sha256:0123456789012345678901234567890123456789012345678901234567890123"},
            {"name": "d", "image": "quay.io/x/y:1"},
            {"name": "e", "image": "Bad Image"},
            {"name": "f", "image": "nginx:latest@sha256:0123456789012345678901234567890123456789012345678901234567890123"},
            {"name": "g", "image": "my-registry/app:1"},
        ]));
        let f = p.evaluate(&o);
        let c = "/spec/template/spec/containers";
        assert_eq!(
            rules(&f),
            vec![
                ("images.untagged", Mode::Warn, &*format!("{c}/0/image")),
                ("images.digest", Mode::Audit, &*format!("{c}/0/image")),
                ("images.latest", Mode::Warn, &*format!("{c}/1/image")),
                ("images.digest", Mode::Audit, &*format!("{c}/1/image")),
                ("images.registry", Mode::Enforce, &*format!("{c}/3/image")),
                ("images.digest", Mode::Audit, &*format!("{c}/3/image")),
                ("images.invalid", Mode::Warn, &*format!("{c}/4/image")),
                ("images.registry", Mode::Enforce, &*format!("{c}/6/image")),
                ("images.digest", Mode::Audit, &*format!("{c}/6/image")),
            ]
        );
        assert_eq!(f[4].container.as_ref().unwrap().name, "d");
        assert!(
            f[4].reason.contains("quay.io/x/y")
                && f[4].reason.contains("ghcr.io, docker.io/library/*"),
            "{}",
            f[4].reason
        );
        assert!(
            f[7].reason.contains("docker.io/my-registry/app"),
            "{}",
            f[7].reason
        );
        assert!(f[2].reason.contains("\"latest\""), "{}", f[2].reason);
    }

    #[test]
    fn pss_findings_name_rule_container_and_field() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "dev"},
            "spec": {"hostNetwork": true, "volumes": [{"name": "a", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}],
                     "containers": [{"name": "c", "image": "x:1", "securityContext": {"privileged": true}}]}});
        let mut p = Policy::default();
        let f = p.evaluate(&pod);
        assert_eq!(
            rules(&f),
            vec![
                ("pss.hostNamespaces", Mode::Enforce, "/spec/hostNetwork"),
                (
                    "pss.privileged",
                    Mode::Enforce,
                    "/spec/containers/0/securityContext/privileged"
                ),
                ("pss.hostPathVolumes", Mode::Enforce, "/spec/volumes/1"),
            ]
        );
        assert!(f[1].reason.contains("privileged") && f[1].reason.contains("baseline:latest"));
        // A namespace pattern lowers the level.
        p.pss.namespaces.push(NamespaceLevel {
            pattern: Glob::new("d*"),
            level: Level::Privileged,
            version: None,
        });
        assert!(p.evaluate(&pod).is_empty());
        p.pss.mode = None;
        p.pss.namespaces.clear();
        assert!(p.evaluate(&pod).is_empty());
    }

    #[test]
    fn pointers_inside_lists_and_annotations() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
             "spec": {"template": {
                "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
                "spec": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
                         "containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}}}
        ]});
        let f = Policy::default().evaluate(&list);
        assert_eq!(
            rules(&f),
            vec![
                (
                    "pss.hostPorts",
                    Mode::Enforce,
                    "/items/1/spec/template/spec/containers/0/ports"
                ),
                (
                    "pss.appArmorProfile",
                    Mode::Enforce,
                    "/items/1/spec/template/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1c"
                ),
                (
                    "pss.sysctls",
                    Mode::Enforce,
                    "/items/1/spec/template/spec/securityContext/sysctls"
                ),
            ]
        );
        assert_eq!(f[0].object, "items[1] Deployment/d");
        for x in &f {
            assert!(list.pointer(&x.pointer).is_some(), "{}", x.pointer);
        }
    }

    #[test]
    fn hygiene_rules() {
        let p = Policy {
            hygiene: HygieneRules {
                probes: Some(Mode::Warn),
                resources: Some(Mode::Enforce),
                run_as_non_root: Some(Mode::Audit),
            },
            ..Policy::default()
        };
        let good = json!({"name": "ok", "image": "x:1",
            "livenessProbe": {"tcpSocket": {"port": 1}}, "readinessProbe": {"tcpSocket": {"port": 1}},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
            "securityContext": {"runAsNonRoot": true}});
        assert!(p.evaluate(&deploy(json!([good]))).is_empty());
        let bad = json!({"name": "bad", "image": "x:1", "livenessProbe": {"tcpSocket": {"port": 1}},
            "resources": {"requests": {"cpu": "1"}}, "securityContext": {"runAsNonRoot": false}});
        let f = p.evaluate(&deploy(json!([bad])));
        assert_eq!(
            f.iter().map(|x| x.rule.as_str()).collect::<Vec<_>>(),
            [
                "hygiene.probes",
                "hygiene.resources",
                "hygiene.runAsNonRoot"
            ]
        );
        assert_eq!(f[0].reason, "container \"bad\" has no readinessProbe");
        assert_eq!(
            f[1].reason,
            "container \"bad\" does not set resources.requests.memory, resources.limits.memory"
        );
        // The pod's runAsNonRoot counts for containers that do not set their own; init
        // containers need no probes.
        let o = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "securityContext": {"runAsNonRoot": true},
            "initContainers": [{"name": "i", "image": "x:1",
               "resources": {"requests": {"cpu": "1", "memory": "1"}, "limits": {"memory": "1"}}}]}});
        assert!(p.evaluate(&o).is_empty());
    }

    #[test]
    fn drift_names_every_place() {
        let a = deploy(
            json!([{"name": "api", "image": "my-registry/platform/api:2.3.1"},
                              {"name": "side", "image": "nginx"}]),
        );
        let b = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init", "image": "docker.io/my-registry/platform/api:2.2.0"}],
            "containers": [{"name": "side", "image": "docker.io/library/nginx:1.25"},
                           {"name": "api", "image": "my-registry/platform/api:2.3.1"},
                           {"name": "ok", "image": "busybox:1"}]}});
        let mut uses = Vec::new();
        for (file, o) in [("a.yaml", &a), ("b.yaml", &b)] {
            for u in image_uses(o) {
                let place = format!("{file} {} {}", u.object, u.container);
                uses.push((u, place));
            }
        }
        let d = Policy::default().drift(&uses);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].repository, "docker.io/my-registry/platform/api");
        assert_eq!(d[0].versions.len(), 2);
        assert_eq!(d[0].versions[0].0, ":2.3.1");
        assert_eq!(d[0].versions[0].1.len(), 2);
        assert_eq!(
            d[0].versions[1].1,
            ["b.yaml Pod/p initContainers[0] \"init\""]
        );
        assert_eq!(d[1].repository, "docker.io/library/nginx");
        assert_eq!(
            d[1].reason(),
            "docker.io/library/nginx at 2 versions: :latest (a.yaml Deployment/web containers[1] \"side\"); :1.25 (b.yaml Pod/p containers[0] \"side\")"
        );
        let off = Policy {
            drift: None,
            ..Policy::default()
        };
        assert!(off.drift(&uses).is_empty());
    }
}
