//! The admission policy engine of Wharf: Kubernetes objects in, decisions out. Pure: no I/O, no
//! async; the webhook and `wharf lint` both call it.
//!
//! This first part is the [Pod Security Standards](https://kubernetes.io/docs/concepts/security/pod-security-standards/),
//! `baseline` and `restricted`, with every check of the upstream Pod Security Admission
//! (`k8s.io/pod-security-admission/policy`), versioned as it versions them: a policy version is
//! `v1.N` or `latest`, and each check runs as it stood in that version (see [`checks`] and the
//! crate README for the list).
//!
//! - [`evaluate`] checks one pod (its metadata and spec) at a [`Level`] and [`Version`].
//! - [`evaluate_object`] finds the pod specs of any workload object ([`workloads`]: Pod,
//!   Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController,
//!   PodTemplate, `*List`) and checks each.
//! - [`NamespacePolicy`] reads the `pod-security.kubernetes.io/*` labels of a namespace;
//!   [`Exemptions`] are the admission configuration's exempt users, runtime classes and
//!   namespaces.
//! - [`Policy`] is a whole policy (Pod Security level per namespace, image rules, workload
//!   hygiene, version drift, each rule `enforce`, `warn`, `audit` or off), read from TOML with
//!   [`Policy::from_toml`]; [`Policy::evaluate`] gives an object's [`Finding`]s and
//!   [`Policy::drift`] the [`Drift`]s across many objects ([`image_uses`]).
//!
//! Objects are `serde_json::Value`s as a client sends them (before API defaulting): a field that
//! is absent or `null` is unset, as a nil pointer is upstream.
//!
//! ```
//! use policy::{Level, Version};
//! let pod = serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
//!     "spec": {"hostNetwork": true, "containers": [{"name": "app", "image": "nginx"}]}
//! });
//! let found = policy::evaluate_object(Level::Baseline, Version::Latest, &pod);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].1.check, "hostNamespaces");
//! assert_eq!(found[0].1.message(), "host namespaces (hostNetwork=true)");
//! ```

pub mod admission;
mod facts;
mod file;
mod namespace;
mod pss;
mod rules;
mod workload;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use facts::{
    CacheRewrite, FactRequest, Facts, ImageFacts, KeyRef, MutateRules, Mutation, ScanFact,
    SignatureFact, SignatureRequirement, SignatureRules, VulnerabilityRules,
};
pub use file::PolicyError;
pub use namespace::{
    AUDIT_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LABEL, ENFORCE_VERSION_LABEL, Exemption, Exemptions,
    LabelError, LevelVersion, NamespacePolicy, WARN_LABEL, WARN_VERSION_LABEL,
};
pub use pss::{CheckInfo, LATEST_MINOR, Options, checks, evaluate_with};
pub use rules::{
    Category, Drift, Finding, HygieneRules, ImageRules, ImageUse, Mode, NamespaceLevel, Policy,
    PssRules, image_uses,
};
pub use vuln::Severity;
pub use workload::{
    ContainerKind, ContainerRef, Workload, WorkloadLocation, containers, workloads,
};

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrestricted: no check runs.
    Privileged,
    /// Prevents known privilege escalations; the baseline checks.
    Baseline,
    /// Hardening best practice: the baseline checks (less those a restricted check overrides)
    /// and the restricted checks.
    Restricted,
}

impl Level {
    /// The label value: `privileged`, `baseline` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level or version that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not `privileged`, `baseline` or `restricted` (case-sensitive, as upstream).
    #[error("invalid level {0:?}: must be one of privileged, baseline, restricted")]
    Level(String),
    /// Not `latest` or `v1.N`.
    #[error("invalid version {0:?}: must be \"latest\" or \"v1.x\"")]
    Version(String),
}

impl FromStr for Level {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(ParseError::Level(s.to_owned())),
        }
    }
}

/// A Pod Security Admission policy version: `latest` or `v1.N`.
///
/// Versions newer than the newest check revision this crate knows ([`LATEST_MINOR`]) evaluate
/// as that revision, as upstream clamps to its newest registered version; `latest` is always
/// the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The newest checks.
    Latest,
    /// `v1.N`, the checks as they stood in Kubernetes 1.N.
    V1(u32),
}

impl Version {
    /// The minor version the checks are selected by: `latest` and versions past
    /// [`LATEST_MINOR`] are [`LATEST_MINOR`].
    pub fn effective_minor(self) -> u32 {
        match self {
            Version::Latest => LATEST_MINOR,
            Version::V1(m) => m.min(LATEST_MINOR),
        }
    }

    /// Parses `latest` or `v1.N` (`N` without leading zeros, as upstream's
    /// `^v1\.([0-9]|[1-9][0-9]*)$`).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        s.parse()
    }
}

impl FromStr for Version {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let err = || ParseError::Version(s.to_owned());
        let minor = s.strip_prefix("v1.").ok_or_else(err)?;
        let valid = !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'));
        if !valid {
            return Err(err());
        }
        minor.parse().map(Version::V1).map_err(|_| err())
    }
}

/// Serialized as its label value (`v1.25`, `latest`).
impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parsed from its label value (`v1.25`, `latest`).
impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(m) => write!(f, "v1.{m}"),
        }
    }
}

/// What a violation is about: the pod (a pod-level field) or one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A pod-level field, as a path from the pod (`spec.hostNetwork`,
    /// `spec.securityContext.sysctls`, `spec.volumes["data"]`, `metadata.annotations[...]`).
    Pod(String),
    /// A container (of any of the three kinds).
    Container(ContainerRef),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pod(field) => f.write_str(field),
            Target::Container(c) => c.fmt(f),
        }
    }
}

/// One failed check, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The upstream check id (`hostNamespaces`, `privileged`, `runAsNonRoot`, ...).
    pub check: &'static str,
    /// The level the check belongs to (baseline checks also run at restricted).
    pub level: Level,
    /// Upstream's short reason (`host namespaces`, `allowPrivilegeEscalation != false`).
    pub reason: String,
    /// Upstream's detail (`hostNetwork=true`, `container "app" must set ...`); may be empty.
    pub detail: String,
    /// The pod-level fields and containers at fault, in pod order.
    pub targets: Vec<Target>,
}

impl Violation {
    /// `reason (detail)`, as Pod Security Admission words one check of a pod.
    pub fn message(&self) -> String {
        if self.detail.is_empty() {
            self.reason.clone()
        } else {
            format!("{} ({})", self.reason, self.detail)
        }
    }

    /// The containers at fault.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerRef> {
        self.targets.iter().filter_map(|t| match t {
            Target::Container(c) => Some(c),
            Target::Pod(_) => None,
        })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.message())
    }
}

/// Checks one pod (`metadata` and `spec`, each a JSON object; anything else counts as empty)
/// against `level` at `version`, with default [`Options`]. Violations come in check order
/// ([`checks`]); an empty list means allowed.
pub fn evaluate(
    level: Level,
    version: Version,
    pod_metadata: &Value,
    pod_spec: &Value,
) -> Vec<Violation> {
    evaluate_with(&Options::default(), level, version, pod_metadata, pod_spec)
}

/// Checks every pod spec of `object` ([`workloads`]): each violation with where its pod spec is.
/// Objects without a pod spec (a Service, a custom resource) give nothing.
pub fn evaluate_object(
    level: Level,
    version: Version,
    object: &Value,
) -> Vec<(WorkloadLocation, Violation)> {
    let mut out = Vec::new();
    for w in workloads(object) {
        for v in evaluate(level, version, w.metadata, w.spec) {
            out.push((w.location.clone(), v));
        }
    }
    out
}
