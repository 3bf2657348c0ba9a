//! A namespace's Pod Security policy (its `pod-security.kubernetes.io/*` labels) and the
//! admission configuration's exemptions.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Level, ParseError, Version};

/// Label: the level pods are refused at.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Label: the version of the enforce level.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// Label: the level that adds audit annotations.
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
/// Label: the version of the audit level.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// Label: the level that returns warnings to the client.
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
/// Label: the version of the warn level.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A level at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The policy version.
    pub version: Version,
}

impl LevelVersion {
    /// `privileged` at `latest`: the built-in admission's default when nothing is configured.
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
}

/// The three modes of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamespacePolicy {
    /// Violations refuse the pod.
    pub enforce: LevelVersion,
    /// Violations are recorded in the audit log.
    pub audit: LevelVersion,
    /// Violations are returned to the client as warnings.
    pub warn: LevelVersion,
}

impl Default for NamespacePolicy {
    /// All three `privileged` at `latest`, the defaults of an unconfigured admission.
    fn default() -> Self {
        NamespacePolicy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

/// A `pod-security.kubernetes.io/*` label whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}: {error}")]
pub struct LabelError {
    /// The label key.
    pub label: &'static str,
    /// What is wrong with its value.
    pub error: ParseError,
}

impl NamespacePolicy {
    /// Resolves `labels` (key, value pairs) over `defaults` as upstream's `PolicyToEvaluate`: a
    /// label that is absent keeps the default; an invalid value is reported and replaced, a level
    /// by `restricted` for enforce (fail closed) and `privileged` for audit and warn (fail open),
    /// a version by `latest`. Labels other than the six are ignored. A valid policy is always
    /// returned, with the errors.
    pub fn from_labels<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        defaults: NamespacePolicy,
    ) -> (NamespacePolicy, Vec<LabelError>) {
        let mut p = defaults;
        let mut errors = Vec::new();
        for (key, value) in labels {
            let (slot, is_version, fail_open, label) = match key {
                ENFORCE_LABEL => (&mut p.enforce, false, false, ENFORCE_LABEL),
                ENFORCE_VERSION_LABEL => (&mut p.enforce, true, false, ENFORCE_VERSION_LABEL),
                AUDIT_LABEL => (&mut p.audit, false, true, AUDIT_LABEL),
                AUDIT_VERSION_LABEL => (&mut p.audit, true, true, AUDIT_VERSION_LABEL),
                WARN_LABEL => (&mut p.warn, false, true, WARN_LABEL),
                WARN_VERSION_LABEL => (&mut p.warn, true, true, WARN_VERSION_LABEL),
                _ => continue,
            };
            if is_version {
                slot.version = value.parse().unwrap_or_else(|error| {
                    errors.push(LabelError { label, error });
                    Version::Latest
                });
            } else {
                slot.level = value.parse().unwrap_or_else(|error| {
                    errors.push(LabelError { label, error });
                    if fail_open {
                        Level::Privileged
                    } else {
                        Level::Restricted
                    }
                });
            }
        }
        (p, errors)
    }

    /// [`NamespacePolicy::from_labels`] on a Namespace object's `metadata.labels` (label values
    /// that are not strings count as invalid).
    pub fn from_namespace(
        namespace: &Value,
        defaults: NamespacePolicy,
    ) -> (NamespacePolicy, Vec<LabelError>) {
        let Some(labels) = namespace
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
        else {
            return (defaults, Vec::new());
        };
        let pairs = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("\u{0}")));
        Self::from_labels(pairs, defaults)
    }
}

/// Why a request is exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exemption {
    /// The requesting user is exempt.
    Username,
    /// The pod's `runtimeClassName` is exempt.
    RuntimeClass,
    /// The namespace is exempt.
    Namespace,
}

/// Requests no Pod Security check applies to, as the admission configuration's `exemptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Exemptions {
    /// Authenticated usernames (exact).
    pub usernames: BTreeSet<String>,
    /// Runtime class names (exact).
    pub runtime_classes: BTreeSet<String>,
    /// Namespace names (exact).
    pub namespaces: BTreeSet<String>,
}

impl Exemptions {
    /// The first exemption that applies to a request in `namespace` by `username` for a pod
    /// with `runtime_class` (its `spec.runtimeClassName`), checked namespace, then user, then
    /// runtime class; `None` when the checks apply.
    pub fn check(
        &self,
        namespace: &str,
        username: Option<&str>,
        runtime_class: Option<&str>,
    ) -> Option<Exemption> {
        if self.namespaces.contains(namespace) {
            Some(Exemption::Namespace)
        } else if username.is_some_and(|u| self.usernames.contains(u)) {
            Some(Exemption::Username)
        } else if runtime_class.is_some_and(|r| self.runtime_classes.contains(r)) {
            Some(Exemption::RuntimeClass)
        } else {
            None
        }
    }

    /// [`Exemptions::check`] with the runtime class read from a pod spec.
    pub fn check_pod(
        &self,
        namespace: &str,
        username: Option<&str>,
        pod_spec: &Value,
    ) -> Option<Exemption> {
        let rc = pod_spec.get("runtimeClassName").and_then(Value::as_str);
        self.check(namespace, username, rc)
    }
}
