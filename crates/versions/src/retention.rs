//! Retention: which tags and manifests of a repository a policy lets go, and why.
//!
//! The model, as Harbor's "retain" rules: `keep_last`, `keep_semver` and `unpulled_for` each
//! *retain* some tags; a tag goes when at least one of these rules applies to it and none retains
//! it. `keep_tags` patterns and immutable tags are always kept. `keep_semver` applies to
//! semantic-version tags only, so with it alone `latest` stays.
//!
//! Manifests then follow from the tags: a manifest survives when a surviving tag points at it,
//! when a surviving index lists it, or when it is a referrer (signature, SBOM, attestation) of a
//! surviving subject; an untagged manifest that nothing lists survives unless
//! `untagged_older_than` says it is too old. Everything else goes, in an order where an index
//! goes before its children and a subject before its referrers, so a half-applied plan never
//! leaves an index with missing children or an image without its signatures.
//!
//! Cosign's tag scheme (`sha256-<hex>.sig`, `.att`, `.sbom`, and the referrers fallback tag
//! `sha256-<hex>`) names referrers too: such a tag follows its subject instead of the tag rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::semver::Version;
use oci::Glob;

/// A retention policy for the repositories it is configured for. Every field is optional; an
/// empty policy keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Retain the N most recently pushed tags.
    pub keep_last: Option<usize>,
    /// Retain the N highest semantic-version tags (per major version with `per_major`).
    pub keep_semver: Option<usize>,
    /// Count `keep_semver` within each major version.
    pub per_major: bool,
    /// Tags matching any of these globs ([`oci::Glob`]) are always kept.
    pub keep_tags: Vec<String>,
    /// Delete untagged manifests (that no index lists and that are no referrer) older than this
    /// many seconds.
    pub untagged_older_than: Option<u64>,
    /// Retain tags whose manifest was pulled (or, never pulled, the tag set) within this many
    /// seconds.
    pub unpulled_for: Option<u64>,
}

impl Policy {
    /// Whether any rule can delete a tag.
    pub fn has_tag_rules(&self) -> bool {
        self.keep_last.is_some() || self.keep_semver.is_some() || self.unpulled_for.is_some()
    }

    /// Whether the policy can delete anything at all.
    pub fn is_empty(&self) -> bool {
        !self.has_tag_rules() && self.untagged_older_than.is_none()
    }
}

/// A tag as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The tag.
    pub name: String,
    /// The manifest digest it points at.
    pub digest: String,
    /// When it was last set (unix seconds), if known.
    pub pushed: Option<u64>,
    /// The immutable-tag rule covering it, if any: such a tag is never deleted.
    pub frozen: Option<String>,
}

/// A manifest as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Its digest.
    pub digest: String,
    /// When it was first pushed (unix seconds), if known.
    pub pushed: Option<u64>,
    /// When it was last pulled (unix seconds), if ever (since pull tracking began).
    pub last_pull: Option<u64>,
    /// The manifest it refers to, when it is a referrer.
    pub subject: Option<String>,
    /// The manifests it lists, when it is an index.
    pub children: Vec<String>,
}

/// One repository's state: the planner's whole input besides the policy and the clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repo {
    /// Every tag.
    pub tags: Vec<Tag>,
    /// Every manifest.
    pub manifests: Vec<Manifest>,
}

/// Why something goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A tag that the policy's rules apply to and none retains; `failed` says how each failed.
    NotRetained {
        /// One line per rule that did not retain it.
        failed: Vec<String>,
    },
    /// Every tag of the manifest goes, and nothing else needs it.
    TagsRemoved {
        /// The tags that pointed at it.
        tags: Vec<String>,
    },
    /// A referrer (or a cosign-scheme tag) whose subject goes.
    SubjectDeleted {
        /// The subject's digest.
        subject: String,
    },
    /// A manifest listed only by indexes that go.
    ParentDeleted {
        /// The indexes that listed it.
        parents: Vec<String>,
    },
    /// An untagged manifest older than `untagged_older_than`.
    Untagged {
        /// Its age in seconds.
        age_seconds: u64,
        /// The policy's limit in seconds.
        limit_seconds: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotRetained { failed } => write!(f, "{}", failed.join("; ")),
            Reason::TagsRemoved { tags } => {
                write!(
                    f,
                    "its tags go ({}) and nothing else needs it",
                    tags.join(", ")
                )
            }
            Reason::SubjectDeleted { subject } => write!(f, "its subject {subject} goes"),
            Reason::ParentDeleted { parents } => {
                write!(f, "only listed by indexes that go ({})", parents.join(", "))
            }
            Reason::Untagged {
                age_seconds,
                limit_seconds,
            } => write!(
                f,
                "untagged for {} (limit {})",
                human_duration(*age_seconds),
                human_duration(*limit_seconds)
            ),
        }
    }
}

/// Why something stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeptReason {
    /// An immutable tag: never deleted.
    Immutable {
        /// The rule.
        rule: String,
    },
    /// Matches a `keep_tags` pattern.
    KeepTags {
        /// The pattern.
        pattern: String,
    },
    /// Among the `keep_last` most recently pushed tags.
    KeepLast {
        /// 1 for the newest.
        rank: usize,
    },
    /// Among the `keep_semver` highest versions (of its major version with `per_major`).
    KeepSemver {
        /// 1 for the highest.
        rank: usize,
        /// The major version, with `per_major`.
        major: Option<u64>,
    },
    /// Pulled (or, never pulled, set) within `unpulled_for`.
    Used {
        /// Unix seconds of the last pull, or of the push when never pulled.
        last_used: u64,
        /// Whether `last_used` is a pull (else a push).
        pulled: bool,
    },
    /// `unpulled_for` cannot judge it: neither a pull nor a push time is known.
    AgeUnknown,
    /// No rule of the policy applies to this tag.
    NoRule,
    /// A cosign-scheme tag of a subject that stays.
    FollowsSubject {
        /// The subject's digest.
        subject: String,
    },
    /// A manifest whose tags go but that a surviving index or subject still needs.
    NeededBy {
        /// The index or subject that needs it.
        by: String,
    },
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptReason::Immutable { rule } => write!(f, "immutable ({rule})"),
            KeptReason::KeepTags { pattern } => write!(f, "matches keep_tags {pattern:?}"),
            KeptReason::KeepLast { rank } => write!(f, "pushed recently (#{rank} newest)"),
            KeptReason::KeepSemver { rank, major: None } => {
                write!(f, "semantic version #{rank} highest")
            }
            KeptReason::KeepSemver {
                rank,
                major: Some(m),
            } => write!(f, "semantic version #{rank} highest of major {m}"),
            KeptReason::Used {
                last_used,
                pulled: true,
            } => write!(f, "pulled recently (at {last_used})"),
            KeptReason::Used {
                last_used,
                pulled: false,
            } => write!(f, "never pulled but set recently (at {last_used})"),
            KeptReason::AgeUnknown => write!(f, "neither pull nor push time known"),
            KeptReason::NoRule => write!(f, "no rule applies"),
            KeptReason::FollowsSubject { subject } => write!(f, "its subject {subject} stays"),
            KeptReason::NeededBy { by } => write!(f, "still needed by {by}"),
        }
    }
}

/// A tag to delete (only if it still points at `digest` when the plan is carried out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDeletion {
    /// The tag.
    pub tag: String,
    /// The digest it pointed at when planned.
    pub digest: String,
    /// Why.
    pub reason: Reason,
}

/// A manifest to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDeletion {
    /// Its digest.
    pub digest: String,
    /// Why.
    pub reason: Reason,
}

/// Something the policy keeps, with why: every tag, and manifests that lose their tags but are
/// still needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The tag, or `None` for a manifest.
    pub tag: Option<String>,
    /// The digest.
    pub digest: String,
    /// Why it stays.
    pub reason: KeptReason,
}

/// What to delete, in order: first the tags, then the manifests (indexes before their
/// children, subjects before their referrers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Tags to delete.
    pub tags: Vec<TagDeletion>,
    /// Manifests to delete, in a safe order.
    pub manifests: Vec<ManifestDeletion>,
    /// What stays and why.
    pub kept: Vec<Kept>,
}

impl Plan {
    /// Whether the plan deletes nothing.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.manifests.is_empty()
    }
}

/// `30d`, `12h`, `90m` or `45s`: the largest unit that divides the duration.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The subject a cosign-scheme tag names: `sha256-<64 hex>` optionally followed by `.sig`,
/// `.att`, `.sbom` (or any other lowercase suffix), as `sha256:<hex>`.
pub fn cosign_subject(tag: &str) -> Option<String> {
    let (alg, rest) = tag.split_once('-')?;
    let hex_len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    let hex = rest.get(..hex_len)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let suffix = &rest[hex_len..];
    let ok = suffix.is_empty()
        || suffix
            .strip_prefix('.')
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase()));
    ok.then(|| format!("{alg}:{hex}"))
}

/// Plans what `policy` deletes from `repo` at time `now` (unix seconds). Pure and deterministic.
pub fn plan(policy: &Policy, repo: &Repo, now: u64) -> Plan {
    let mut out = Plan::default();
    if policy.is_empty() {
        return out;
    }
    let manifests: BTreeMap<&str, &Manifest> = repo
        .manifests
        .iter()
        .map(|m| (m.digest.as_str(), m))
        .collect();

    // Cosign-scheme tags whose subject is here follow it; every other tag is ordinary (an
    // immutable one too: it stays whatever happens to its subject).
    let mut followers: Vec<(&Tag, String)> = Vec::new();
    let mut ordinary: Vec<&Tag> = Vec::new();
    for t in &repo.tags {
        match cosign_subject(&t.name) {
            Some(s)
                if manifests.contains_key(s.as_str()) && s != t.digest && t.frozen.is_none() =>
            {
                followers.push((t, s))
            }
            _ => ordinary.push(t),
        }
    }
    ordinary.sort_by(|a, b| a.name.cmp(&b.name));
    // Compiled once per plan, not once per tag.
    let keep_tags: Vec<Glob> = policy.keep_tags.iter().map(|p| Glob::new(p)).collect();

    let last_rank = policy.keep_last.map(|n| {
        let mut by_push = ordinary.clone();
        by_push.sort_by(|a, b| {
            b.pushed
                .unwrap_or(0)
                .cmp(&a.pushed.unwrap_or(0))
                .then_with(|| a.pushed.is_none().cmp(&b.pushed.is_none()))
                .then_with(|| a.name.cmp(&b.name))
        });
        by_push
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i + 1))
            .collect::<HashMap<&str, usize>>()
    });
    let semver_rank = policy.keep_semver.map(|n| {
        let mut groups: BTreeMap<Option<u64>, Vec<(Version, &str)>> = BTreeMap::new();
        for t in &ordinary {
            if let Some(v) = Version::parse(&t.name) {
                let g = policy.per_major.then_some(v.major);
                groups.entry(g).or_default().push((v, t.name.as_str()));
            }
        }
        let mut ranks: HashMap<&str, (usize, Option<u64>)> = HashMap::new();
        for (g, mut vs) in groups {
            vs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            for (i, (_, name)) in vs.into_iter().take(n).enumerate() {
                ranks.insert(name, (i + 1, g));
            }
        }
        ranks
    });

    // Ordinary tags.
    let mut surviving_tags: BTreeSet<&str> = BTreeSet::new();
    for t in &ordinary {
        let kept = |reason| Kept {
            tag: Some(t.name.clone()),
            digest: t.digest.clone(),
            reason,
        };
        if let Some(rule) = &t.frozen {
            out.kept
                .push(kept(KeptReason::Immutable { rule: rule.clone() }));
            surviving_tags.insert(&t.name);
            continue;
        }
        if let Some(p) = keep_tags.iter().find(|p| p.matches(&t.name)) {
            out.kept.push(kept(KeptReason::KeepTags {
                pattern: p.as_str().to_owned(),
            }));
            surviving_tags.insert(&t.name);
            continue;
        }
        let mut retained: Option<KeptReason> = None;
        let mut failed = Vec::new();
        if let (Some(n), Some(ranks)) = (policy.keep_last, &last_rank) {
            match ranks.get(t.name.as_str()) {
                Some(&rank) => retained = retained.or(Some(KeptReason::KeepLast { rank })),
                None => failed.push(format!("not among the {n} most recently pushed tags")),
            }
        }
        if let (Some(n), Some(ranks)) = (policy.keep_semver, &semver_rank)
            && let Some(v) = Version::parse(&t.name)
        {
            match ranks.get(t.name.as_str()) {
                Some(&(rank, major)) => {
                    retained = retained.or(Some(KeptReason::KeepSemver { rank, major }))
                }
                None if policy.per_major => failed.push(format!(
                    "not among the {n} highest semantic versions of major {}",
                    v.major
                )),
                None => failed.push(format!("not among the {n} highest semantic versions")),
            }
        }
        if let Some(limit) = policy.unpulled_for {
            let pull = manifests.get(t.digest.as_str()).and_then(|m| m.last_pull);
            match (pull, t.pushed) {
                (None, None) => retained = retained.or(Some(KeptReason::AgeUnknown)),
                (Some(p), _) if now.saturating_sub(p) < limit => {
                    retained = retained.or(Some(KeptReason::Used {
                        last_used: p,
                        pulled: true,
                    }))
                }
                (None, Some(p)) if now.saturating_sub(p) < limit => {
                    retained = retained.or(Some(KeptReason::Used {
                        last_used: p,
                        pulled: false,
                    }))
                }
                (Some(p), _) => failed.push(format!(
                    "not pulled for {} (last pull {} ago, limit {})",
                    human_duration(limit),
                    human_duration(now.saturating_sub(p)),
                    human_duration(limit)
                )),
                (None, Some(p)) => failed.push(format!(
                    "never pulled in the {} since it was set (limit {})",
                    human_duration(now.saturating_sub(p)),
                    human_duration(limit)
                )),
            }
        }
        match (retained, failed.is_empty()) {
            (Some(r), _) => {
                out.kept.push(kept(r));
                surviving_tags.insert(&t.name);
            }
            (None, true) => {
                out.kept.push(kept(KeptReason::NoRule));
                surviving_tags.insert(&t.name);
            }
            (None, false) => out.tags.push(TagDeletion {
                tag: t.name.clone(),
                digest: t.digest.clone(),
                reason: Reason::NotRetained { failed },
            }),
        }
    }

    // The manifest graph: index -> children, subject -> referrers (by field or cosign tag).
    let mut ordinary_tags_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in &ordinary {
        ordinary_tags_of
            .entry(t.digest.as_str())
            .or_default()
            .push(&t.name);
    }
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut subject_of: HashMap<&str, &str> = HashMap::new();
    let mut content_edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in manifests.values() {
        for c in &m.children {
            if let Some((c, _)) = manifests.get_key_value(c.as_str()) {
                parents.entry(c).or_default().push(&m.digest);
                content_edges.entry(&m.digest).or_default().push(c);
            }
        }
        if let Some(s) = &m.subject
            && let Some((s, _)) = manifests.get_key_value(s.as_str())
            && *s != m.digest
        {
            subject_of.insert(&m.digest, s);
            content_edges.entry(s).or_default().push(&m.digest);
        }
    }
    let mut edges = content_edges.clone();
    for (t, s) in &followers {
        if let (Some((s, _)), Some((d, _))) = (
            manifests.get_key_value(s.as_str()),
            manifests.get_key_value(t.digest.as_str()),
        ) {
            subject_of.entry(d).or_insert(s);
            edges.entry(s).or_default().push(d);
        }
    }

    // Roots: manifests that survive on their own.
    let mut roots: Vec<&str> = Vec::new();
    for (&d, m) in &manifests {
        let root = match ordinary_tags_of.get(d) {
            Some(tags) => tags.iter().any(|t| surviving_tags.contains(t)),
            None if parents.contains_key(d) || subject_of.contains_key(d) => false,
            None => match (policy.untagged_older_than, m.pushed) {
                (Some(limit), Some(p)) => now.saturating_sub(p) < limit,
                _ => true,
            },
        };
        if root {
            roots.push(d);
        }
    }
    let mut alive: BTreeSet<&str> = BTreeSet::new();
    let mut stack = roots.clone();
    while let Some(d) = stack.pop() {
        if alive.insert(d) {
            stack.extend(edges.get(d).into_iter().flatten().copied());
        }
    }
    let doomed: BTreeSet<&str> = manifests
        .keys()
        .copied()
        .filter(|d| !alive.contains(d))
        .collect();

    // Cosign-scheme tags go with their subject.
    for (t, s) in &followers {
        if doomed.contains(s.as_str()) {
            out.tags.push(TagDeletion {
                tag: t.name.clone(),
                digest: t.digest.clone(),
                reason: Reason::SubjectDeleted { subject: s.clone() },
            });
        } else {
            out.kept.push(Kept {
                tag: Some(t.name.clone()),
                digest: t.digest.clone(),
                reason: KeptReason::FollowsSubject { subject: s.clone() },
            });
        }
    }

    // Manifests that lose every tag but are still needed.
    let roots: BTreeSet<&str> = roots.into_iter().collect();
    for &d in &alive {
        if roots.contains(d) || !ordinary_tags_of.contains_key(d) {
            continue;
        }
        let by = parents
            .get(d)
            .into_iter()
            .flatten()
            .copied()
            .chain(subject_of.get(d).copied())
            .find(|p| alive.contains(p))
            .unwrap_or("a surviving manifest");
        out.kept.push(Kept {
            tag: None,
            digest: d.to_owned(),
            reason: KeptReason::NeededBy { by: by.to_owned() },
        });
    }

    // Doomed manifests in order: parents and subjects first. Cosign-scheme tags are a naming
    // convention, so their edges could form a cycle with the content-addressed ones (which
    // cannot); should they, the order keeps to the content-addressed edges alone.
    let mut order = topological(&doomed, |d| edges.get(d).map(Vec::as_slice).unwrap_or(&[]));
    if order.len() < doomed.len() {
        order = topological(&doomed, |d| {
            content_edges.get(d).map(Vec::as_slice).unwrap_or(&[])
        });
    }
    // Only corrupt data (a manifest listing itself through others) could leave any out.
    let placed: BTreeSet<&str> = order.iter().copied().collect();
    order.extend(doomed.iter().copied().filter(|d| !placed.contains(d)));
    for d in order {
        let m = manifests[d];
        let reason = if let Some(tags) = ordinary_tags_of.get(d) {
            Reason::TagsRemoved {
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            }
        } else if let Some(s) = subject_of.get(d) {
            Reason::SubjectDeleted {
                subject: (*s).to_owned(),
            }
        } else if let Some(ps) = parents.get(d) {
            Reason::ParentDeleted {
                parents: ps.iter().map(|p| (*p).to_owned()).collect(),
            }
        } else {
            Reason::Untagged {
                age_seconds: now.saturating_sub(m.pushed.unwrap_or(now)),
                limit_seconds: policy.untagged_older_than.unwrap_or(0),
            }
        };
        out.manifests.push(ManifestDeletion {
            digest: d.to_owned(),
            reason,
        });
    }
    out
}

/// `nodes` in an order where every node comes after those with an edge to it (Kahn's algorithm,
/// ties by digest); nodes on a cycle are left out.
fn topological<'a>(nodes: &BTreeSet<&'a str>, next: impl Fn(&str) -> &[&'a str]) -> Vec<&'a str> {
    let mut indegree: HashMap<&str, usize> = nodes.iter().map(|&d| (d, 0)).collect();
    for &d in nodes {
        for &n in next(d) {
            if let Some(c) = indegree.get_mut(n) {
                *c += 1;
            }
        }
    }
    let mut ready: BTreeSet<&str> = nodes.iter().copied().filter(|d| indegree[d] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(d) = ready.pop_first() {
        order.push(d);
        for &n in next(d) {
            if let Some(c) = indegree.get_mut(n) {
                *c -= 1;
                if *c == 0 {
                    ready.insert(n);
                }
            }
        }
    }
    order
}
