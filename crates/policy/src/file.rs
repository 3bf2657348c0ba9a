//! The policy file: TOML, like Wharf's other configuration (`wharf.toml`, retention policies).
//!
//! ```toml
//! [pss]
//! level = "baseline"          # privileged | baseline | restricted
//! version = "latest"          # or "v1.N"
//! mode = "enforce"            # enforce | warn | audit | off
//!
//! [[pss.namespace]]           # first match wins; others get the level above
//! match = "kube-*"            # a name or a glob (* and ?)
//! level = "privileged"
//! # version = "v1.30"        # optional; the [pss] version otherwise
//!
//! [images]
//! allowed_registries = ["ghcr.io", "docker.io/library/*"]
//! registry = "enforce"        # mode of images.registry
//! latest = "warn"
//! untagged = "warn"
//! digest = "off"
//! invalid = "warn"
//!
//! [hygiene]
//! probes = "warn"
//! resources = "off"
//! run_as_non_root = "off"
//!
//! [drift]
//! mode = "warn"
//!
//! [exemptions]                # the admission webhook: no Pod Security checks for these
//! usernames = ["system:serviceaccount:kube-system:replicaset-controller"]
//! namespaces = ["kube-system"]
//! runtime_classes = ["kata"]
//!
//! [signatures]                # images.signature (the webhook only: needs the registry)
//! mode = "enforce"
//! [[signatures.key]]
//! name = "release"
//! path = "/etc/wharf/keys/release.pub"
//! [[signatures.require]]      # first match wins; images matching none need no signature
//! match = "ghcr.io/acme/*"    # an image pattern, as in allowed_registries
//! keys = ["release"]          # any one of these (empty or absent: any key above)
//!
//! [vulnerabilities]           # the webhook inside `wharf serve` (needs the scanner)
//! mode = "enforce"            # images.vulnerabilities
//! severity = "high"           # unignored findings at or above this
//! unscanned = "warn"          # images.unscanned: no scan result for the digest
//!
//! [mutate]                    # POST /admission/v1/mutate
//! pin = true                  # repo:tag -> repo:tag@digest (resolved by the webhook)
//! cache = "wharf.example.com" # rewrite these upstreams' images to Wharf's cache:
//! cache_upstreams = ["docker.io", "ghcr.io"]   # nginx -> wharf.example.com/docker.io/library/nginx
//! ```
//!
//! Every key is optional; an absent one keeps [`Policy::default`]'s value. Unknown keys are
//! errors (a misspelt rule must not silently turn it off).

use oci::Glob;
use serde::Deserialize;

use crate::rules::{Mode, NamespaceLevel, Policy};
use crate::{Level, Version};

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, an unknown key, or a value of the wrong kind (the message says where).
    #[error("invalid policy file: {0}")]
    Invalid(String),
}

/// A mode or `off`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Setting {
    Off,
    Audit,
    Warn,
    Enforce,
}

impl Setting {
    fn mode(self) -> Option<Mode> {
        match self {
            Setting::Off => None,
            Setting::Audit => Some(Mode::Audit),
            Setting::Warn => Some(Mode::Warn),
            Setting::Enforce => Some(Mode::Enforce),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pss: RawPss,
    #[serde(default)]
    images: RawImages,
    #[serde(default)]
    hygiene: RawHygiene,
    #[serde(default)]
    drift: RawDrift,
    #[serde(default)]
    exemptions: RawExemptions,
    #[serde(default)]
    signatures: RawSignatures,
    #[serde(default)]
    vulnerabilities: RawVulnerabilities,
    #[serde(default)]
    mutate: RawMutate,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    mode: Option<Setting>,
    #[serde(default)]
    key: Vec<RawKey>,
    #[serde(default)]
    require: Vec<RawRequire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVulnerabilities {
    mode: Option<Setting>,
    severity: Option<String>,
    unscanned: Option<Setting>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMutate {
    pin: Option<bool>,
    cache: Option<String>,
    cache_upstreams: Option<Vec<String>>,
}

fn pattern_ok(g: &str) -> bool {
    !g.is_empty() && !g.contains(char::is_whitespace)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExemptions {
    #[serde(default)]
    usernames: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    runtime_classes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPss {
    level: Option<Level>,
    version: Option<Version>,
    mode: Option<Setting>,
    #[serde(default)]
    namespace: Vec<RawNamespace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    #[serde(rename = "match")]
    pattern: String,
    level: Level,
    version: Option<Version>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImages {
    allowed_registries: Option<Vec<String>>,
    registry: Option<Setting>,
    latest: Option<Setting>,
    untagged: Option<Setting>,
    digest: Option<Setting>,
    invalid: Option<Setting>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHygiene {
    probes: Option<Setting>,
    resources: Option<Setting>,
    run_as_non_root: Option<Setting>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    mode: Option<Setting>,
}

impl Policy {
    /// Reads a policy file (see the module documentation for the format).
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let mut p = Policy::default();
        let set = |slot: &mut Option<Mode>, s: Option<Setting>| {
            if let Some(s) = s {
                *slot = s.mode();
            }
        };
        if let Some(l) = raw.pss.level {
            p.pss.level = l;
        }
        if let Some(v) = raw.pss.version {
            p.pss.version = v;
        }
        set(&mut p.pss.mode, raw.pss.mode);
        for n in raw.pss.namespace {
            if n.pattern.is_empty() {
                return Err(PolicyError::Invalid(
                    "[[pss.namespace]]: match must not be empty".into(),
                ));
            }
            p.pss.namespaces.push(NamespaceLevel {
                pattern: Glob::new(&n.pattern),
                level: n.level,
                version: n.version,
            });
        }
        if let Some(r) = raw.images.allowed_registries {
            if let Some(bad) = r
                .iter()
                .find(|g| g.is_empty() || g.contains(char::is_whitespace))
            {
                return Err(PolicyError::Invalid(format!(
                    "images.allowed_registries: {bad:?} is not a registry pattern"
                )));
            }
            p.images.allowed_registries = r.iter().map(|g| Glob::new(g)).collect();
        }
        set(&mut p.images.registry, raw.images.registry);
        set(&mut p.images.latest, raw.images.latest);
        set(&mut p.images.untagged, raw.images.untagged);
        set(&mut p.images.digest, raw.images.digest);
        set(&mut p.images.invalid, raw.images.invalid);
        set(&mut p.hygiene.probes, raw.hygiene.probes);
        set(&mut p.hygiene.resources, raw.hygiene.resources);
        set(&mut p.hygiene.run_as_non_root, raw.hygiene.run_as_non_root);
        set(&mut p.drift, raw.drift.mode);
        p.exemptions.usernames = raw.exemptions.usernames.into_iter().collect();
        p.exemptions.namespaces = raw.exemptions.namespaces.into_iter().collect();
        p.exemptions.runtime_classes = raw.exemptions.runtime_classes.into_iter().collect();
        read_signatures(&mut p, raw.signatures)?;
        let v = raw.vulnerabilities;
        set(&mut p.vulnerabilities.mode, v.mode);
        set(&mut p.vulnerabilities.unscanned, v.unscanned);
        if let Some(s) = v.severity {
            p.vulnerabilities.severity = s
                .parse()
                .map_err(|e| PolicyError::Invalid(format!("vulnerabilities.severity: {e}")))?;
        }
        let m = raw.mutate;
        p.mutate.pin = m.pin.unwrap_or(false);
        match (m.cache, m.cache_upstreams) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(PolicyError::Invalid(
                    "mutate.cache_upstreams needs mutate.cache (Wharf's host)".into(),
                ));
            }
            (Some(_), None) => {
                return Err(PolicyError::Invalid(
                    "mutate.cache needs mutate.cache_upstreams: the upstreams Wharf's cache serves"
                        .into(),
                ));
            }
            (Some(host), Some(ups)) => {
                let host = host.trim_end_matches('/').to_owned();
                // The host must read as a registry in a reference (a `.`, a `:` or
                // `localhost`), or the rewritten image would name a Docker Hub repository.
                let first = host
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let reads_as_registry =
                    oci::image_ref::ImageRef::parse(&format!("{host}/docker.io/library/x:1"))
                        .is_ok_and(|r| r.registry() == first);
                if !reads_as_registry {
                    return Err(PolicyError::Invalid(format!(
                        "mutate.cache: {host:?} is not a registry host (host[:port][/path])"
                    )));
                }
                if let Some(bad) = ups.iter().find(|g| !pattern_ok(g) || g.contains('/')) {
                    return Err(PolicyError::Invalid(format!(
                        "mutate.cache_upstreams: {bad:?} is not a registry host pattern"
                    )));
                }
                p.mutate.cache = Some(crate::CacheRewrite {
                    host,
                    upstreams: ups.iter().map(|g| Glob::new(g)).collect(),
                });
            }
        }
        Ok(p)
    }
}

fn read_signatures(p: &mut Policy, raw: RawSignatures) -> Result<(), PolicyError> {
    let bad = |m: String| Err(PolicyError::Invalid(m));
    for k in &raw.key {
        if k.name.is_empty() || k.path.is_empty() {
            return bad("[[signatures.key]]: name and path must not be empty".into());
        }
        if raw.key.iter().filter(|o| o.name == k.name).count() > 1 {
            return bad(format!("[[signatures.key]]: {:?} is named twice", k.name));
        }
    }
    for r in &raw.require {
        if !pattern_ok(&r.pattern) {
            return bad(format!(
                "[[signatures.require]]: match {:?} is not an image pattern",
                r.pattern
            ));
        }
        if let Some(k) = r
            .keys
            .iter()
            .find(|k| !raw.key.iter().any(|d| &d.name == *k))
        {
            return bad(format!(
                "[[signatures.require]] {:?}: no [[signatures.key]] is named {k:?}",
                r.pattern
            ));
        }
    }
    let mode = raw.mode.and_then(Setting::mode);
    if mode.is_some() {
        if raw.key.is_empty() {
            return bad("[signatures] has a mode but no [[signatures.key]]".into());
        }
        if raw.require.is_empty() {
            return bad(
                "[signatures] has a mode but no [[signatures.require]] saying which images need one"
                    .into(),
            );
        }
    }
    p.signatures = crate::SignatureRules {
        mode,
        keys: raw
            .key
            .into_iter()
            .map(|k| crate::KeyRef {
                name: k.name,
                path: k.path,
            })
            .collect(),
        require: raw
            .require
            .into_iter()
            .map(|r| crate::SignatureRequirement {
                pattern: Glob::new(&r.pattern),
                keys: r.keys,
            })
            .collect(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
    }

    #[test]
    fn full_file() {
        let p = Policy::from_toml(
            r#"
[pss]
level = "restricted"
version = "v1.25"
mode = "warn"
[[pss.namespace]]
match = "kube-*"
level = "privileged"
[[pss.namespace]]
match = "legacy"
level = "baseline"
version = "v1.20"
[images]
allowed_registries = ["ghcr.io", "docker.io/library/*"]
registry = "audit"
latest = "enforce"
untagged = "off"
digest = "warn"
[hygiene]
probes = "warn"
run_as_non_root = "enforce"
[drift]
mode = "off"
[exemptions]
namespaces = ["kube-system"]
runtime_classes = ["kata"]
"#,
        )
        .unwrap();
        assert_eq!(p.pss.level, Level::Restricted);
        assert_eq!(p.pss.version, Version::V1(25));
        assert_eq!(p.pss.mode, Some(Mode::Warn));
        assert_eq!(
            p.pss.for_namespace(Some("kube-system")),
            (Level::Privileged, Version::V1(25))
        );
        assert_eq!(
            p.pss.for_namespace(Some("legacy")),
            (Level::Baseline, Version::V1(20))
        );
        assert_eq!(
            p.pss.for_namespace(Some("app")),
            (Level::Restricted, Version::V1(25))
        );
        assert_eq!(
            p.pss.for_namespace(None),
            (Level::Restricted, Version::V1(25))
        );
        assert_eq!(p.images.allowed_registries.len(), 2);
        assert_eq!(p.images.registry, Some(Mode::Audit));
        assert_eq!(p.images.latest, Some(Mode::Enforce));
        assert_eq!(p.images.untagged, None);
        assert_eq!(p.images.digest, Some(Mode::Warn));
        assert_eq!(p.images.invalid, Some(Mode::Warn));
        assert_eq!(p.hygiene.probes, Some(Mode::Warn));
        assert_eq!(p.hygiene.resources, None);
        assert_eq!(p.hygiene.run_as_non_root, Some(Mode::Enforce));
        assert_eq!(p.drift, None);
        assert!(p.exemptions.namespaces.contains("kube-system"));
        assert!(p.exemptions.runtime_classes.contains("kata"));
        assert!(p.exemptions.usernames.is_empty());
    }

    #[test]
    fn mistakes_are_errors() {
        for (bad, want) in [
            ("[pss]\nlevel = \"strict\"\n", "strict"),
            ("[pss]\nversion = \"1.25\"\n", "1.25"),
            ("[images]\nlatest = \"block\"\n", "block"),
            ("[images]\nlatset = \"warn\"\n", "latset"),
            ("[hygine]\nprobes = \"warn\"\n", "hygine"),
            (
                "[[pss.namespace]]\nmatch = \"\"\nlevel = \"baseline\"\n",
                "empty",
            ),
            ("[images]\nallowed_registries = [\"a b\"]\n", "a b"),
            ("[pss\n", "invalid"),
            ("[exemptions]\nusers = [\"a\"]\n", "users"),
        ] {
            let e = Policy::from_toml(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
