//! What the engine needs to know about images that it cannot see in the object: the digest a tag
//! names, which trusted keys signed a digest, what the scanner found in it. The engine stays
//! pure: [`Policy::fact_requests`] says what to find out, the caller (the webhook) finds it out
//! with its own I/O, caches and deadlines, and hands the answers back as [`Facts`] to
//! [`Policy::evaluate_with`] and [`crate::admission::Request::mutate`].
//!
//! A fact the caller could not establish is an `Err` with the reason (registry unreachable,
//! deadline passed): the rule that needed it then fires with that reason, so an image is never
//! admitted because a lookup failed (unless the rule's mode is `warn` or `audit`).

use std::collections::{BTreeMap, HashMap};

use oci::Digest;
use oci::Glob;
use oci::image_ref::ImageRef;
use serde_json::Value;
use vuln::Severity;

use crate::rules::{Mode, Policy};
use crate::{containers, workloads};

/// A key a signature rule trusts: its name in the policy, and where the webhook reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Name used by `[[signatures.require]]` and in messages.
    pub name: String,
    /// Path of the PKIX PEM public key (cosign.pub), read by the webhook at start and on reload.
    pub path: String,
}

/// Images matching `pattern` need a signature verified by one of `keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRequirement {
    /// An image pattern, as in `images.allowed_registries` (no `/`: the registry host; with
    /// `/`: the full name `registry/repository`).
    pub pattern: Glob,
    /// Key names (from [`SignatureRules::keys`]); empty: any of them.
    pub keys: Vec<String>,
}

/// `images.signature`: cosign signatures by named trusted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureRules {
    /// The rule's mode; `None`: off.
    pub mode: Option<Mode>,
    /// Trusted keys.
    pub keys: Vec<KeyRef>,
    /// Which images need which keys; first match wins; an image matching none needs no
    /// signature.
    pub require: Vec<SignatureRequirement>,
}

/// `images.vulnerabilities` and `images.unscanned`: the scanner's verdict on each digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnerabilityRules {
    /// Mode of `images.vulnerabilities`: unignored findings at or above [`Self::severity`].
    pub mode: Option<Mode>,
    /// The lowest severity that counts.
    pub severity: Severity,
    /// Mode of `images.unscanned`: the scanner has no result for the digest (not scanned yet,
    /// scan failed, or the image is not in Wharf).
    pub unscanned: Option<Mode>,
}

impl Default for VulnerabilityRules {
    fn default() -> Self {
        VulnerabilityRules {
            mode: None,
            severity: Severity::High,
            unscanned: None,
        }
    }
}

/// Rewriting images to pull through Wharf's cache: `nginx:1.27` becomes
/// `HOST/docker.io/library/nginx:1.27` (the cache keeps each upstream under its host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRewrite {
    /// Wharf's host (and port, and path prefix if any) as the nodes reach it.
    pub host: String,
    /// Upstream registries to rewrite (host patterns: `docker.io`, `*.gcr.io`).
    pub upstreams: Vec<Glob>,
}

/// What the mutating webhook changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutateRules {
    /// Pin every image to the digest its tag names now (`repo:tag` -> `repo:tag@digest`).
    pub pin: bool,
    /// Rewrite images of these upstreams to Wharf's pull-through cache.
    pub cache: Option<CacheRewrite>,
}

/// What the caller must find out about one image (one per distinct image text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRequest {
    /// The image as written in the object (the key of [`Facts`]).
    pub image: String,
    /// Parsed.
    pub reference: ImageRef,
    /// Its digest is needed (it has none written, and a rule needs one).
    pub digest: bool,
    /// The keys whose signatures to check, by name (the requirement's, or every key).
    pub signature: Option<Vec<String>>,
    /// The scanner's verdict is needed.
    pub scan: bool,
}

/// Which trusted keys verified a signature of a digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureFact {
    /// Names of the keys with a verified signature (empty: none).
    pub verified_by: Vec<String>,
    /// Why the signatures found were refused (`tag sha256-....sig: signature does not verify`).
    pub rejected: Vec<String>,
}

/// The scanner's verdict on a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanFact {
    /// Scanned: unignored findings counted by severity, and the worst of them
    /// (`(severity, "CVE-2024-1 in openssl")`, most severe first, a few).
    Scanned {
        /// Unignored findings per severity.
        counts: BTreeMap<Severity, usize>,
        /// The worst findings, most severe first.
        worst: Vec<(Severity, String)>,
    },
    /// No result: why (`queued`, `scan failed: ...`, `not in the registry`).
    NotScanned(String),
}

/// Everything the caller found out about one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// The digest the image's tag names (when it has no digest written).
    pub digest: Option<Result<Digest, String>>,
    /// The signatures of the digest.
    pub signature: Option<Result<SignatureFact, String>>,
    /// The scanner's verdict on the digest.
    pub scan: Option<Result<ScanFact, String>>,
}

/// Facts by image text as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The facts of each image.
    pub images: HashMap<String, ImageFacts>,
}

impl Facts {
    /// The facts of `image` (as written).
    pub fn get(&self, image: &str) -> Option<&ImageFacts> {
        self.images.get(image)
    }
}

/// Whether `pattern` matches `r`: a pattern with `/` matches the full name, one without the
/// registry host.
pub(crate) fn image_matches(pattern: &Glob, r: &ImageRef) -> bool {
    if pattern.as_str().contains('/') {
        pattern.matches(&r.name())
    } else {
        pattern.matches(r.registry())
    }
}

impl SignatureRules {
    /// The key names required for `r`, or `None` when it needs no signature.
    pub fn keys_for(&self, r: &ImageRef) -> Option<Vec<String>> {
        self.mode?;
        let req = self.require.iter().find(|q| image_matches(&q.pattern, r))?;
        Some(if req.keys.is_empty() {
            self.keys.iter().map(|k| k.name.clone()).collect()
        } else {
            req.keys.clone()
        })
    }
}

impl Policy {
    /// Whether any rule needs facts from outside the object (signatures, scan results,
    /// digests for mutation).
    pub fn needs_facts(&self) -> bool {
        self.signatures.mode.is_some()
            || self.vulnerabilities.mode.is_some()
            || self.vulnerabilities.unscanned.is_some()
    }

    /// What to find out before [`Policy::evaluate_with`] can decide `object`: one request per
    /// distinct valid image text that a signature or vulnerability rule applies to.
    pub fn fact_requests(&self, object: &Value) -> Vec<FactRequest> {
        let mut out: Vec<FactRequest> = Vec::new();
        if !self.needs_facts() {
            return out;
        }
        let scan = self.vulnerabilities.mode.is_some() || self.vulnerabilities.unscanned.is_some();
        for w in workloads(object) {
            for (_, c) in containers(w.spec) {
                let Some(text) = c.get("image").and_then(Value::as_str) else {
                    continue;
                };
                if out.iter().any(|r| r.image == text) {
                    continue;
                }
                let Ok(reference) = ImageRef::parse(text) else {
                    continue;
                };
                let signature = self.signatures.keys_for(&reference);
                if signature.is_none() && !scan {
                    continue;
                }
                out.push(FactRequest {
                    image: text.to_owned(),
                    digest: reference.digest().is_none(),
                    reference,
                    signature,
                    scan,
                });
            }
        }
        out
    }

    /// The findings of the signature and vulnerability rules for one valid image, from `facts`.
    pub(crate) fn fact_findings(
        &self,
        text: &str,
        r: &ImageRef,
        facts: &Facts,
    ) -> Vec<(&'static str, Mode, String)> {
        let mut out = Vec::new();
        let keys = self.signatures.keys_for(r);
        let v = &self.vulnerabilities;
        let scan_rules = v.mode.is_some() || v.unscanned.is_some();
        if keys.is_none() && !scan_rules {
            return out;
        }
        let f = facts.get(text);
        // The digest the rules judge: the written one, else the one the tag names now.
        let digest: Result<Digest, String> = match (r.digest(), f.and_then(|f| f.digest.clone())) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(d)) => d,
            (None, None) => Err("its digest was not looked up".to_owned()),
        };
        if let (Some(keys), Some(mode)) = (&keys, self.signatures.mode) {
            let reason = match (&digest, f.and_then(|f| f.signature.as_ref())) {
                (Err(e), _) => Some(format!(
                    "image {text:?} needs a signature by {} but could not be resolved: {e}",
                    keys.join(" or ")
                )),
                (Ok(d), None) => Some(format!(
                    "image {text:?} ({d}): its signatures were not checked"
                )),
                (Ok(d), Some(Err(e))) => Some(format!(
                    "image {text:?} ({d}): signatures could not be checked: {e}"
                )),
                (Ok(d), Some(Ok(s))) if !s.verified_by.iter().any(|k| keys.contains(k)) => {
                    let why = if s.rejected.is_empty() {
                        "it has no signature".to_owned()
                    } else {
                        s.rejected.join("; ")
                    };
                    Some(format!(
                        "image {text:?} ({d}) has no signature verified by {}: {why}",
                        keys.join(" or ")
                    ))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                out.push(("signature", mode, reason));
            }
        }
        if scan_rules {
            let scan = match (&digest, f.and_then(|f| f.scan.as_ref())) {
                (Err(e), _) => Err(format!("could not be resolved: {e}")),
                (Ok(_), None) => Err("its scan result was not looked up".to_owned()),
                (Ok(_), Some(Err(e))) => Err(format!("its scan result is unavailable: {e}")),
                (Ok(_), Some(Ok(ScanFact::NotScanned(why)))) => Err(format!("not scanned: {why}")),
                (Ok(_), Some(Ok(s @ ScanFact::Scanned { .. }))) => Ok(s),
            };
            match scan {
                Err(why) => {
                    if let Some(m) = v.unscanned {
                        out.push(("unscanned", m, format!("image {text:?} {why}")));
                    }
                }
                Ok(ScanFact::Scanned { counts, worst }) => {
                    let over: usize = counts
                        .iter()
                        .filter(|(s, _)| **s >= v.severity)
                        .map(|(_, n)| n)
                        .sum();
                    if let Some(m) = v.mode
                        && over > 0
                    {
                        let named: Vec<String> = worst
                            .iter()
                            .filter(|(s, _)| *s >= v.severity)
                            .take(3)
                            .map(|(s, what)| format!("{what} ({s})"))
                            .collect();
                        let more = if over > named.len() {
                            format!(" and {} more", over - named.len())
                        } else {
                            String::new()
                        };
                        out.push((
                            "vulnerabilities",
                            m,
                            format!(
                                "image {text:?} has {over} unignored finding{} at {} or above: {}{more}",
                                if over == 1 { "" } else { "s" },
                                v.severity,
                                named.join(", ")
                            ),
                        ));
                    }
                }
                Ok(ScanFact::NotScanned(_)) => unreachable!("mapped to Err above"),
            }
        }
        out
    }

    /// The images the mutating webhook rewrites or pins in `object`.
    pub fn mutations(&self, object: &Value) -> Vec<Mutation> {
        let m = &self.mutate;
        let mut out = Vec::new();
        if !m.pin && m.cache.is_none() {
            return out;
        }
        for w in workloads(object) {
            for (c, cv) in containers(w.spec) {
                let Some(text) = cv.get("image").and_then(Value::as_str) else {
                    continue;
                };
                let Ok(r) = ImageRef::parse(text) else {
                    continue;
                };
                let target = match &m.cache {
                    Some(cache)
                        if cache.upstreams.iter().any(|g| g.matches(r.registry()))
                            && r.registry() != cache.host =>
                    {
                        let mut t = format!("{}/{}/{}", cache.host, r.registry(), r.repository());
                        if let Some(tag) = r.tag() {
                            t.push(':');
                            t.push_str(tag);
                        }
                        if let Some(d) = r.digest() {
                            t.push('@');
                            t.push_str(&d.to_string());
                        }
                        t
                    }
                    _ => text.to_owned(),
                };
                let Ok(target_ref) = ImageRef::parse(&target) else {
                    continue;
                };
                let resolve = m.pin && target_ref.digest().is_none();
                if target == text && !resolve {
                    continue;
                }
                out.push(Mutation {
                    pointer: format!("{}/image", crate::rules::container_pointer(&w.location, &c)),
                    container: c,
                    from: text.to_owned(),
                    to: target,
                    to_reference: target_ref,
                    resolve,
                });
            }
        }
        out
    }
}

/// One image the mutating webhook changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// JSON pointer to the `image` field (the JSONPatch `path`).
    pub pointer: String,
    /// The container.
    pub container: crate::ContainerRef,
    /// The image as written.
    pub from: String,
    /// The image after the cache rewrite (before pinning).
    pub to: String,
    /// [`Mutation::to`], parsed.
    pub to_reference: ImageRef,
    /// Whether [`Mutation::to`] is to be pinned to its digest (a [`Facts`] entry for it).
    pub resolve: bool,
}

impl Mutation {
    /// The final image text given the facts: [`Mutation::to`] pinned when its digest is known.
    pub fn result(&self, facts: &Facts) -> Result<String, String> {
        if !self.resolve {
            return Ok(self.to.clone());
        }
        match facts.get(&self.to).and_then(|f| f.digest.as_ref()) {
            Some(Ok(d)) => Ok(self.to_reference.pinned_text(d)),
            Some(Err(e)) => Err(e.clone()),
            None => Err("its digest was not looked up".to_owned()),
        }
    }
}
