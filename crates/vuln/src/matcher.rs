//! The matcher: an [`Index`] of advisories by (ecosystem with release, package name), and
//! [`Index::matches`], which turns one installed package into its [`Finding`]s.
//!
//! Keys. The ecosystem is OSV's full string (`Debian:12`, `Alpine:v3.20`, `PyPI`), so an OS
//! package is only ever compared with its own release's advisories: a backported fix in
//! `2.36-9+deb12u4` is judged by `Debian:12`'s entries, never by another release's "fixed in
//! 2.37". Names are compared as written, except PyPI's, which are PEP 503-normalised on both
//! sides (`Django`, `django`, `Flask_Login` ≡ `flask-login`), as OSV specifies.
//!
//! Work per lookup. Everything that can be done once is done when the index is built: every
//! range is checked and sorted ([`Range::new`]), explicit `versions` lists are sorted twice
//! (by string, for an exact hit by binary search, and in the ecosystem's order, for an
//! equal-but-differently-written version), fixed versions are sorted, severities and CVSS
//! scores are computed. A lookup is one or two hash probes with borrowed keys (PyPI names
//! that are not already normalised allocate their normalised form), one parse of the
//! installed version, and allocation-free comparisons; only findings allocate.
//!
//! Severity of an entry. A distribution's own rating for its package (Debian's urgency)
//! comes first when it says something (`unimportant` is negligible whatever the NVD vector
//! says: the distribution judged its build); otherwise the highest CVSS v3 base score of the
//! entry's and the advisory's vectors; otherwise the advisory's rating (GitHub's
//! `database_specific.severity`, also what a CVSS v4-only advisory gets, see [`crate::cvss`]);
//! otherwise unknown.
//!
//! Deduplication, per installed package:
//! - advisories that name each other in `aliases` (or share an alias, directly or through
//!   other advisories: alias groups are computed once, when the index is built) are one
//!   vulnerability: one finding, whose id is the group's CVE id when it has one (the others
//!   become aliases), with the highest severity, the lowest fix above the installed version;
//! - a Debian advisory (`DSA-`, `DLA-`, `DTSA-`) lists its CVEs in `related`. When every CVE
//!   it relates to was found for the package, it adds nothing: it is dropped and its id is
//!   added to those CVE findings' aliases. When some of its CVEs were not found (the CVE
//!   record is not in the database), the DSA finding is kept (with the found CVEs' findings
//!   still naming it), so nothing the DSA says is lost.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::advisory::{Advisory, Vector};
use crate::ecosystem::{Ecosystem, Parsed};
use crate::finding::{Cvss, Finding, Severity};
use crate::range::{Event, MatchError, Range, RangeKind};

/// PEP 503 normalisation (lower case, runs of `-`, `_`, `.` as one `-`); borrows when the
/// name is already normal.
pub fn pep503(name: &str) -> Cow<'_, str> {
    let normal = name
        .bytes()
        .all(|b| !b.is_ascii_uppercase() && b != b'_' && b != b'.')
        && !name.contains("--")
        && !name.starts_with('-')
        && !name.ends_with('-');
    if normal {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    Cow::Owned(out)
}

/// The name an advisory or a package is keyed by in `ecosystem`.
pub fn normalize_name<'a>(ecosystem: &str, name: &'a str) -> Cow<'a, str> {
    if ecosystem == "PyPI" {
        pep503(name)
    } else {
        Cow::Borrowed(name)
    }
}

/// An advisory entry that could not be indexed (a range or version its ordering rejects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildProblem {
    /// The advisory.
    pub id: String,
    /// The entry's ecosystem.
    pub ecosystem: String,
    /// The entry's package.
    pub package: String,
    /// What is wrong.
    pub error: String,
}

/// What building an index did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Advisories indexed (not withdrawn).
    pub advisories: usize,
    /// Affected entries indexed.
    pub entries: usize,
    /// Withdrawn advisories skipped.
    pub withdrawn: usize,
    /// Entries in ecosystems without a version ordering here (kept in the database, never
    /// matched), by ecosystem base name.
    pub unknown_ecosystems: HashMap<String, usize>,
    /// Entries skipped because a range did not check; an entry with at least one good range
    /// or a versions list is still indexed without the bad range.
    pub problems: Vec<BuildProblem>,
}

struct Meta {
    id: Box<str>,
    aliases: Vec<Box<str>>,
    /// CVE ids a Debian advisory (DSA/DLA/DTSA) relates to; empty for other advisories.
    debian_related: Vec<Box<str>>,
    summary: Box<str>,
    /// The alias group (see [`Index::build`]), set when the index is finished.
    group: u32,
    /// Its id and aliases without the group's primary id, sorted (set with `group`).
    others: Box<[Box<str>]>,
}

/// Where an event stands: below everything (`introduced: "0"`), above everything
/// (`limit: "*"`), or a rank in its bucket's sorted version list.
#[derive(Clone, Copy)]
enum Bound {
    Zero,
    Infinity,
    Rank(u32),
}

#[derive(Clone, Copy)]
enum Ev {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

/// A range whose event versions are ranks in the bucket's version list: evaluating it is
/// integer comparisons only.
struct Ranked {
    semver: bool,
    has_limit: bool,
    events: Vec<(Ev, Bound)>,
}

/// Where the installed version falls in a sorted, deduplicated version list: `below` ranks
/// are lower than it, and rank `below` is equal to it when `equal`.
#[derive(Clone, Copy)]
struct Position {
    below: u32,
    equal: bool,
}

impl Position {
    /// The installed version against a bound.
    fn against(self, b: Bound) -> Ordering {
        match b {
            Bound::Zero => Ordering::Greater,
            Bound::Infinity => Ordering::Less,
            Bound::Rank(r) if r < self.below => Ordering::Greater,
            Bound::Rank(r) if r == self.below && self.equal => Ordering::Equal,
            Bound::Rank(_) => Ordering::Less,
        }
    }
}

impl Ranked {
    /// The OSV evaluation (as [`Range::affects`]) over ranks.
    fn affects(&self, pos: Position) -> bool {
        if self.has_limit
            && !self
                .events
                .iter()
                .any(|(k, b)| matches!(k, Ev::Limit) && pos.against(*b) == Ordering::Less)
        {
            return false;
        }
        let mut vulnerable = false;
        for (k, b) in &self.events {
            let o = pos.against(*b);
            match k {
                Ev::Introduced if o != Ordering::Less => vulnerable = true,
                Ev::Fixed if o != Ordering::Less => vulnerable = false,
                Ev::LastAffected if o == Ordering::Greater => vulnerable = false,
                _ => {}
            }
        }
        vulnerable
    }
}

/// Every entry of one (ecosystem, package), with the distinct versions their events and
/// fixes name, sorted once: a lookup places the installed version among them by binary
/// search (a handful of comparisons), then every range is integer comparisons.
#[derive(Default)]
struct Bucket {
    /// Distinct `ECOSYSTEM` event and fixed versions, in the ecosystem's order; versions
    /// equal in that order share a rank (`rank_of`).
    eco_versions: Vec<Box<str>>,
    eco_ranks: Vec<u32>,
    /// Distinct `SEMVER` event versions, in SemVer order.
    semver_versions: Vec<Box<str>>,
    semver_ranks: Vec<u32>,
    entries: Vec<Entry>,
}

/// The highest version an entry can affect, so that a bucket's entries sorted by it can be
/// cut off where the installed version is above every remaining one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cap {
    /// Only versions below this rank (its last event is a `fixed`).
    Below(u32),
    /// Versions up to this rank (its last event is a `last_affected`).
    UpTo(u32),
    /// No bound (an open range, a `SEMVER` range, or explicitly listed versions).
    Unbounded,
}

impl Cap {
    /// Orders caps by how high a version they can affect: by rank, `UpTo(r)` above
    /// `Below(r)`, `Unbounded` above all.
    fn key(self) -> (u8, u32, u8) {
        match self {
            Cap::Below(r) => (0, r, 0),
            Cap::UpTo(r) => (0, r, 1),
            Cap::Unbounded => (1, 0, 0),
        }
    }

    fn may_affect(self, pos: Position) -> bool {
        match self {
            Cap::Unbounded => true,
            Cap::Below(r) => pos.against(Bound::Rank(r)) == Ordering::Less,
            Cap::UpTo(r) => pos.against(Bound::Rank(r)) != Ordering::Greater,
        }
    }

    fn of(entry: &Entry) -> Cap {
        if !entry.listed_raw.is_empty() {
            return Cap::Unbounded;
        }
        let mut cap: Option<Cap> = None;
        for r in &entry.ranges {
            if r.semver {
                return Cap::Unbounded;
            }
            // Events are sorted: the range is bounded when its last introduced is followed
            // by a fixed or last_affected; the last of those is its cap.
            let mut open = false;
            let mut last_close = None;
            for (k, b) in &r.events {
                match (k, b) {
                    (Ev::Introduced, _) => open = true,
                    (Ev::Fixed, Bound::Rank(x)) => {
                        open = false;
                        last_close = Some(Cap::Below(*x));
                    }
                    (Ev::LastAffected, Bound::Rank(x)) => {
                        open = false;
                        last_close = Some(Cap::UpTo(*x));
                    }
                    (Ev::Limit, _) => {}
                    _ => return Cap::Unbounded,
                }
            }
            let c = match (open, last_close) {
                (false, Some(c)) => c,
                _ => return Cap::Unbounded,
            };
            cap = Some(cap.map_or(c, |x| if c.key() > x.key() { c } else { x }));
        }
        cap.unwrap_or(Cap::Unbounded)
    }
}

/// An entry before its bucket's ranks exist.
struct Pending {
    entry: Entry,
    ranges: Vec<Range>,
}

struct Entry {
    adv: u32,
    eco: Ecosystem,
    /// The highest version it can affect (entries are sorted by it, highest first).
    cap: Cap,
    name: Box<str>,
    ranges: Vec<Ranked>,
    /// Listed versions the ranges do not already cover, that parse, in the ecosystem's
    /// order (usually empty: OSV generates the lists from the ranges).
    listed: Vec<Box<str>>,
    /// The same, and those that do not parse, by string.
    listed_raw: Vec<Box<str>>,
    /// Fixed versions that parse, in the ecosystem's order, with their ranks.
    fixed: Vec<(u32, Box<str>)>,
    severity: Severity,
    cvss: Option<(Box<str>, f64)>,
}

fn cmp_in(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    crate::ecosystem::compare(eco, a, b).unwrap_or_else(|_| a.cmp(b))
}

impl Entry {
    fn affects(
        &self,
        eco_pos: Position,
        semver_pos: Option<Position>,
        parsed: &Parsed<'_>,
        version: &str,
    ) -> bool {
        let in_range = self.ranges.iter().any(|r| {
            if r.semver {
                semver_pos.is_some_and(|p| r.affects(p))
            } else {
                r.affects(eco_pos)
            }
        });
        if in_range {
            return true;
        }
        if self.listed_raw.is_empty() {
            return false;
        }
        if self
            .listed_raw
            .binary_search_by(|s| (**s).cmp(version))
            .is_ok()
        {
            return true;
        }
        self.listed
            .binary_search_by(|l| {
                Parsed::parse(self.eco, l)
                    .ok()
                    .and_then(|p| p.cmp_same(parsed))
                    .unwrap_or(Ordering::Less)
            })
            .is_ok()
    }

    /// The lowest fixed version above the installed one.
    fn fixed_above(&self, eco_pos: Position) -> Option<(u32, &str)> {
        self.fixed
            .iter()
            .find(|(r, _)| eco_pos.against(Bound::Rank(*r)) == Ordering::Less)
            .map(|(r, f)| (*r, &**f))
    }
}

fn semver_of(v: &str) -> Option<oci::semver::SemVer<'_>> {
    crate::range::semver_parse(v).ok()
}

/// Sorts and deduplicates `versions` with `cmp`, giving equal ones one rank.
fn rank_list(
    mut versions: Vec<Box<str>>,
    cmp: impl Fn(&str, &str) -> Ordering,
) -> (Vec<Box<str>>, Vec<u32>) {
    versions.sort_by(|a, b| cmp(a, b).then_with(|| a.cmp(b)));
    versions.dedup();
    let mut ranks = Vec::with_capacity(versions.len());
    let mut rank = 0u32;
    for i in 0..versions.len() {
        if i > 0 && cmp(&versions[i - 1], &versions[i]) != Ordering::Equal {
            rank += 1;
        }
        ranks.push(rank);
    }
    (versions, ranks)
}

fn rank_of(versions: &[Box<str>], ranks: &[u32], v: &str) -> Option<u32> {
    versions.iter().position(|x| **x == *v).map(|i| ranks[i])
}

/// Places a version in a ranked list by binary search with `cmp(listed)` (the listed
/// version against the installed one).
fn position(versions: &[Box<str>], ranks: &[u32], cmp: impl Fn(&str) -> Ordering) -> Position {
    // First index whose version is not below the installed one.
    let i = versions.partition_point(|v| cmp(v) == Ordering::Less);
    match versions.get(i) {
        None => Position {
            below: ranks.last().map_or(0, |r| r + 1),
            equal: false,
        },
        Some(v) => Position {
            below: ranks[i],
            equal: cmp(v) == Ordering::Equal,
        },
    }
}

impl Bucket {
    fn finish(pending: Vec<Pending>) -> Bucket {
        let Some(first) = pending.first() else {
            return Bucket::default();
        };
        let eco = first.entry.eco;
        let mut eco_list: Vec<Box<str>> = Vec::new();
        let mut sem_list: Vec<Box<str>> = Vec::new();
        for p in &pending {
            for r in &p.ranges {
                let semver = r.kind() == RangeKind::Semver;
                for e in r.events() {
                    let v = e.version();
                    if (matches!(e, Event::Introduced(_)) && v == "0")
                        || (matches!(e, Event::Limit(_)) && v.contains('*'))
                    {
                        continue;
                    }
                    if semver {
                        sem_list.push(v.into());
                    } else {
                        eco_list.push(v.into());
                    }
                }
            }
            eco_list.extend(p.entry.fixed.iter().map(|(_, f)| f.clone()));
        }
        let (eco_versions, eco_ranks) = rank_list(eco_list, |a, b| cmp_in(eco, a, b));
        let (semver_versions, semver_ranks) =
            rank_list(sem_list, |a, b| match (semver_of(a), semver_of(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.cmp(b),
            });
        let mut entries = Vec::with_capacity(pending.len());
        for p in pending {
            let mut entry = p.entry;
            entry.ranges = p
                .ranges
                .iter()
                .map(|r| {
                    let semver = r.kind() == RangeKind::Semver;
                    let (vs, rs) = if semver {
                        (&semver_versions, &semver_ranks)
                    } else {
                        (&eco_versions, &eco_ranks)
                    };
                    let events = r
                        .events()
                        .iter()
                        .map(|e| {
                            let kind = match e {
                                Event::Introduced(_) => Ev::Introduced,
                                Event::Fixed(_) => Ev::Fixed,
                                Event::LastAffected(_) => Ev::LastAffected,
                                Event::Limit(_) => Ev::Limit,
                            };
                            let v = e.version();
                            let bound = if matches!(kind, Ev::Introduced) && v == "0" {
                                Bound::Zero
                            } else if matches!(kind, Ev::Limit) && v.contains('*') {
                                Bound::Infinity
                            } else {
                                // Every event version was put in the list above.
                                Bound::Rank(rank_of(vs, rs, v).unwrap_or(0))
                            };
                            (kind, bound)
                        })
                        .collect::<Vec<_>>();
                    Ranked {
                        semver,
                        has_limit: events.iter().any(|(k, _)| matches!(k, Ev::Limit)),
                        events,
                    }
                })
                .collect();
            for (rank, f) in entry.fixed.iter_mut() {
                *rank = rank_of(&eco_versions, &eco_ranks, f).unwrap_or(0);
            }
            entry.cap = Cap::of(&entry);
            entries.push(entry);
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.cap.key()));
        Bucket {
            eco_versions,
            eco_ranks,
            semver_versions,
            semver_ranks,
            entries,
        }
    }
}

/// Advisories indexed for matching.
#[derive(Default)]
pub struct Index {
    metas: Vec<Meta>,
    by_eco: HashMap<Box<str>, HashMap<Box<str>, Bucket>>,
    /// Entries being added, per (ecosystem, key), until [`Index::finish`] ranks them.
    pending: HashMap<(Box<str>, Box<str>), Vec<Pending>>,
    /// Per alias group: the id its findings are reported under.
    group_primary: Vec<Box<str>>,
    /// Per Debian advisory (by meta index): the groups of the CVEs it relates to
    /// (`u32::MAX` for a CVE no advisory in the index names).
    related_groups: Vec<Box<[u32]>>,
    stats: IndexStats,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("stats", &self.stats).finish()
    }
}

fn best_cvss<'a>(vectors: impl Iterator<Item = &'a Vector>) -> Option<(Box<str>, f64)> {
    let mut best: Option<(Box<str>, f64)> = None;
    for v in vectors {
        if v.kind != "CVSS_V3" {
            continue;
        }
        if let Ok(score) = crate::cvss::base_score_v3(&v.vector)
            && best.as_ref().is_none_or(|(_, s)| score > *s)
        {
            best = Some((v.vector.as_str().into(), score));
        }
    }
    best
}

fn is_debian_advisory(id: &str) -> bool {
    id.starts_with("DSA-") || id.starts_with("DLA-") || id.starts_with("DTSA-")
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        parent[i as usize] = parent[parent[i as usize] as usize];
        i = parent[i as usize];
    }
    i
}

impl Index {
    /// Indexes advisories (withdrawn ones are skipped; see [`Index::stats`]).
    ///
    /// Advisories that share an id or alias, directly or through others, form one alias
    /// group: one vulnerability, reported once per package under the group's CVE id (the
    /// lowest, when there are several), or else under the lowest advisory id.
    pub fn build(advisories: impl IntoIterator<Item = Advisory>) -> Index {
        let mut index = Index::default();
        for adv in advisories {
            index.add(adv);
        }
        index.finish();
        index
    }

    fn finish(&mut self) {
        for ((eco, key), pending) in std::mem::take(&mut self.pending) {
            self.by_eco
                .entry(eco)
                .or_default()
                .insert(key, Bucket::finish(pending));
        }
        let n = self.metas.len() as u32;
        let mut parent: Vec<u32> = (0..n).collect();
        let mut owner: HashMap<&str, u32> = HashMap::new();
        for (i, m) in self.metas.iter().enumerate() {
            for id in std::iter::once(&m.id).chain(m.aliases.iter()) {
                match owner.get(&**id) {
                    Some(&j) => {
                        let (a, b) = (find(&mut parent, i as u32), find(&mut parent, j));
                        if a != b {
                            parent[a.max(b) as usize] = a.min(b);
                        }
                    }
                    None => {
                        owner.insert(id, i as u32);
                    }
                }
            }
        }
        // Dense group numbers, and each group's primary id.
        let mut dense: HashMap<u32, u32> = HashMap::new();
        let mut primary: Vec<Option<&str>> = Vec::new();
        let mut fallback: Vec<&str> = Vec::new();
        let mut groups = Vec::with_capacity(n as usize);
        for i in 0..n {
            let root = find(&mut parent, i);
            let next = dense.len() as u32;
            let g = *dense.entry(root).or_insert(next);
            if g as usize == primary.len() {
                primary.push(None);
                fallback.push(&self.metas[i as usize].id);
            }
            let m = &self.metas[i as usize];
            for id in std::iter::once(&m.id).chain(m.aliases.iter()) {
                if id.starts_with("CVE-") && primary[g as usize].is_none_or(|p| **id < *p) {
                    primary[g as usize] = Some(id);
                }
            }
            if *m.id < *fallback[g as usize] {
                fallback[g as usize] = &m.id;
            }
            groups.push(g);
        }
        // Renumber groups in the order of their primary ids, so that findings collected in
        // group order come out sorted by id.
        let mut order: Vec<(&str, u32)> = primary
            .iter()
            .zip(&fallback)
            .enumerate()
            .map(|(g, (p, f))| (p.unwrap_or(f), g as u32))
            .collect();
        order.sort_unstable();
        let mut renumber = vec![0u32; order.len()];
        for (new, (_, old)) in order.iter().enumerate() {
            renumber[*old as usize] = new as u32;
        }
        for g in groups.iter_mut() {
            *g = renumber[*g as usize];
        }
        let group_primary: Vec<Box<str>> = order.iter().map(|(p, _)| (*p).into()).collect();
        // Each advisory's other names, without its group's primary id, sorted: a finding
        // from one advisory needs no further work.
        let others: Vec<Box<[Box<str>]>> = self
            .metas
            .iter()
            .zip(&groups)
            .map(|(m, g)| {
                let primary = &*group_primary[*g as usize];
                let mut v: Vec<Box<str>> = std::iter::once(&m.id)
                    .chain(m.aliases.iter())
                    .filter(|a| ***a != *primary)
                    .cloned()
                    .collect();
                v.sort_unstable();
                v.dedup();
                v.into_boxed_slice()
            })
            .collect();
        let related_groups: Vec<Box<[u32]>> = self
            .metas
            .iter()
            .map(|m| {
                m.debian_related
                    .iter()
                    .map(|cve| owner.get(&**cve).map_or(u32::MAX, |&j| groups[j as usize]))
                    .collect()
            })
            .collect();
        for ((m, g), o) in self.metas.iter_mut().zip(groups).zip(others) {
            m.group = g;
            m.others = o;
        }
        self.group_primary = group_primary;
        self.related_groups = related_groups;
    }

    fn add(&mut self, adv: Advisory) {
        if adv.withdrawn.is_some() {
            self.stats.withdrawn += 1;
            return;
        }
        let adv_id = self.metas.len() as u32;
        let adv_cvss = best_cvss(adv.vectors.iter());
        let mut added = 0usize;
        for a in &adv.affected {
            let Some(eco) = Ecosystem::from_osv(&a.ecosystem) else {
                let base = a.ecosystem.split(':').next().unwrap_or("").to_string();
                *self.stats.unknown_ecosystems.entry(base).or_default() += 1;
                continue;
            };
            let mut ranges = Vec::with_capacity(a.ranges.len());
            let mut bad = false;
            for r in &a.ranges {
                let kind = match RangeKind::from_osv(&r.kind) {
                    Some(k) => k,
                    None => continue,
                };
                let events = r.events.iter().map(|e| e.to_event()).collect();
                match Range::new(eco, kind, events) {
                    Ok(range) => ranges.push(range),
                    Err(e) => {
                        bad = true;
                        self.stats.problems.push(BuildProblem {
                            id: adv.id.clone(),
                            ecosystem: a.ecosystem.clone(),
                            package: a.name.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            if ranges.is_empty() && a.versions.is_empty() {
                if !bad && !a.ranges.is_empty() {
                    self.stats.problems.push(BuildProblem {
                        id: adv.id.clone(),
                        ecosystem: a.ecosystem.clone(),
                        package: a.name.clone(),
                        error: "no evaluable range and no versions".into(),
                    });
                }
                continue;
            }
            // Keep only the listed versions the ranges do not already cover.
            let mut listed: Vec<Box<str>> = Vec::new();
            let mut listed_raw: Vec<Box<str>> = Vec::new();
            for v in &a.versions {
                match Parsed::parse(eco, v) {
                    Ok(p) => {
                        let covered = ranges
                            .iter()
                            .any(|r| r.affects_parsed(v, &p).unwrap_or(false));
                        if !covered {
                            listed.push(v.as_str().into());
                            listed_raw.push(v.as_str().into());
                        }
                    }
                    Err(_) => listed_raw.push(v.as_str().into()),
                }
            }
            listed.sort_by(|x, y| cmp_in(eco, x, y));
            listed_raw.sort();
            listed_raw.dedup();
            let mut fixed: Vec<(u32, Box<str>)> = a
                .fixed
                .iter()
                .filter(|v| crate::ecosystem::validate(eco, v).is_ok())
                .map(|v| (0, v.as_str().into()))
                .collect();
            fixed.sort_by(|x, y| cmp_in(eco, &x.1, &y.1));
            fixed.dedup();
            let cvss = match best_cvss(a.vectors.iter()) {
                Some(e) if adv_cvss.as_ref().is_none_or(|(_, s)| e.1 >= *s) => Some(e),
                _ => adv_cvss.clone(),
            };
            let severity = a
                .rating
                .filter(|r| *r != Severity::Unknown)
                .or_else(|| {
                    cvss.as_ref()
                        .map(|(_, s)| Severity::from_score(*s))
                        .filter(|s| *s != Severity::Unknown)
                })
                .or(adv.rating)
                .unwrap_or(Severity::Unknown);
            let entry = Entry {
                adv: adv_id,
                eco,
                cap: Cap::Unbounded,
                name: a.name.as_str().into(),
                ranges: Vec::new(),
                listed,
                listed_raw,
                fixed,
                severity,
                cvss,
            };
            let key: Box<str> = normalize_name(&a.ecosystem, &a.name).into();
            self.pending
                .entry((a.ecosystem.as_str().into(), key))
                .or_default()
                .push(Pending { entry, ranges });
            added += 1;
        }
        self.stats.entries += added;
        self.stats.advisories += 1;
        let debian_related = if is_debian_advisory(&adv.id) {
            adv.related
                .iter()
                .filter(|r| r.starts_with("CVE-"))
                .map(|r| r.as_str().into())
                .collect()
        } else {
            Vec::new()
        };
        self.metas.push(Meta {
            id: adv.id.into(),
            aliases: adv.aliases.into_iter().map(Into::into).collect(),
            debian_related,
            summary: adv.summary.into(),
            group: 0,
            others: Box::default(),
        });
    }

    /// What building the index did: counts, skipped entries and problems.
    pub fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// The ecosystems (full strings) the index has entries for.
    pub fn ecosystems(&self) -> impl Iterator<Item = &str> {
        self.by_eco.keys().map(|k| &**k)
    }

    /// Whether any advisory names this package (cheap: hash probes only).
    pub fn knows(&self, ecosystem: &str, name: &str) -> bool {
        self.entries(ecosystem, name).is_some()
    }

    fn entries(&self, ecosystem: &str, name: &str) -> Option<&Bucket> {
        let m = self.by_eco.get(ecosystem)?;
        let key = normalize_name(ecosystem, name);
        m.get(&*key).filter(|b| !b.entries.is_empty())
    }

    /// The findings for one installed package: `ecosystem` is OSV's full string (an OS
    /// package's own release: `Debian:12`), `name` the package (the source package for OS
    /// packages), `version` the installed version. Sorted by id. An installed version its
    /// ecosystem cannot parse is an error (when some advisory names the package).
    pub fn matches(
        &self,
        ecosystem: &str,
        name: &str,
        version: &str,
    ) -> Result<Vec<Finding>, MatchError> {
        let Some(bucket) = self.entries(ecosystem, name) else {
            return Ok(Vec::new());
        };
        let eco = bucket.entries[0].eco;
        let parsed = Parsed::parse(eco, version)?;
        let eco_pos = position(&bucket.eco_versions, &bucket.eco_ranks, |v| {
            Parsed::parse(eco, v)
                .ok()
                .and_then(|p| p.cmp_same(&parsed))
                .unwrap_or(Ordering::Less)
        });
        let semver_pos = if bucket.semver_versions.is_empty() {
            None
        } else {
            semver_of(version).map(|installed| {
                position(&bucket.semver_versions, &bucket.semver_ranks, |v| {
                    semver_of(v).map_or(Ordering::Less, |x| x.cmp(&installed))
                })
            })
        };
        let mut hits: Vec<(u32, &Entry)> = bucket
            .entries
            .iter()
            .take_while(|e| e.cap.may_affect(eco_pos))
            .filter(|e| e.affects(eco_pos, semver_pos, &parsed, version))
            .map(|e| (self.metas[e.adv as usize].group, e))
            .collect();
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        hits.sort_by_key(|(g, _)| *g);
        Ok(self.findings(ecosystem, version, eco_pos, &hits))
    }

    /// The ids of the advisories (before grouping and folding) with an entry that affects
    /// this package version: what [`Index::matches`] reports, unmerged, for explanations and
    /// checks.
    pub fn affected_ids(
        &self,
        ecosystem: &str,
        name: &str,
        version: &str,
    ) -> Result<Vec<&str>, MatchError> {
        let Some(bucket) = self.entries(ecosystem, name) else {
            return Ok(Vec::new());
        };
        let eco = bucket.entries[0].eco;
        let parsed = Parsed::parse(eco, version)?;
        let eco_pos = position(&bucket.eco_versions, &bucket.eco_ranks, |v| {
            Parsed::parse(eco, v)
                .ok()
                .and_then(|p| p.cmp_same(&parsed))
                .unwrap_or(Ordering::Less)
        });
        let semver_pos = semver_of(version).map(|installed| {
            position(&bucket.semver_versions, &bucket.semver_ranks, |v| {
                semver_of(v).map_or(Ordering::Less, |x| x.cmp(&installed))
            })
        });
        let mut ids: Vec<&str> = bucket
            .entries
            .iter()
            .take_while(|e| e.cap.may_affect(eco_pos))
            .filter(|e| e.affects(eco_pos, semver_pos, &parsed, version))
            .map(|e| &*self.metas[e.adv as usize].id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// One finding per alias group among `hits` (sorted by group), Debian advisories folded
    /// into the CVE findings they relate to.
    fn findings(
        &self,
        ecosystem: &str,
        version: &str,
        eco_pos: Position,
        hits: &[(u32, &Entry)],
    ) -> Vec<Finding> {
        let has_group = |g: u32| hits.binary_search_by_key(&g, |(h, _)| *h).is_ok();
        // Debian advisory ids to add to other groups' aliases, and groups to drop.
        let mut extra: Vec<(u32, &str)> = Vec::new();
        let mut dropped: Vec<u32> = Vec::new();
        for (g, e) in hits {
            let related = &self.related_groups[e.adv as usize];
            if related.is_empty() {
                continue;
            }
            if self.group_primary[*g as usize].starts_with("CVE-") {
                continue;
            }
            let mut all = true;
            for &rg in related {
                if rg != u32::MAX && rg != *g && has_group(rg) {
                    extra.push((rg, &self.metas[e.adv as usize].id));
                } else {
                    all = false;
                }
            }
            if all {
                dropped.push(*g);
            }
        }
        let mut out = Vec::new();
        for members in hits.chunk_by(|a, b| a.0 == b.0) {
            let g = members[0].0;
            if dropped.contains(&g) {
                continue;
            }
            let primary: &str = &self.group_primary[g as usize];
            let mut extras = extra.iter().filter(|(t, _)| *t == g).map(|(_, id)| *id);
            let aliases: Vec<String> = if members.len() == 1 && !extra.iter().any(|(t, _)| *t == g)
            {
                let m = &self.metas[members[0].1.adv as usize];
                m.others.iter().map(|a| String::from(&**a)).collect()
            } else {
                let mut all: Vec<&str> = members
                    .iter()
                    .flat_map(|(_, e)| self.metas[e.adv as usize].others.iter().map(|a| &**a))
                    .collect();
                all.extend(&mut extras);
                all.retain(|a| *a != primary);
                all.sort_unstable();
                all.dedup();
                all.into_iter().map(str::to_string).collect()
            };
            let severity = members
                .iter()
                .map(|(_, e)| e.severity)
                .max()
                .unwrap_or_default();
            let cvss = members
                .iter()
                .filter_map(|(_, e)| e.cvss.as_ref())
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(v, s)| Cvss {
                    vector: String::from(&**v),
                    score: *s,
                });
            let fixed = members
                .iter()
                .filter_map(|(_, e)| e.fixed_above(eco_pos))
                .min_by_key(|(rank, _)| *rank)
                .map(|(_, f)| String::from(f));
            let metas = || members.iter().map(|(_, e)| &self.metas[e.adv as usize]);
            let summary = metas()
                .find(|m| *m.id == *primary && !m.summary.is_empty())
                .or_else(|| metas().find(|m| !m.summary.is_empty()))
                .map(|m| String::from(&*m.summary))
                .unwrap_or_default();
            out.push(Finding {
                id: primary.to_string(),
                aliases,
                ecosystem: ecosystem.to_string(),
                package: String::from(&*members[0].1.name),
                version: version.to_string(),
                fixed,
                severity,
                cvss,
                summary,
            });
        }
        // Groups are numbered in primary-id order: `out` is sorted by id already.
        debug_assert!(out.windows(2).all(|w| w[0].id <= w[1].id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::parse_osv;

    fn adv(json: &str) -> Advisory {
        parse_osv("t", json.as_bytes()).unwrap()
    }

    #[test]
    fn aliases_merge_and_dsa_folds_into_its_cves() {
        let idx = Index::build([
            adv(
                r#"{"id":"CVE-1","affected":[{"package":{"ecosystem":"Debian:12","name":"p"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2-1"}]}],
                "ecosystem_specific":{"urgency":"unimportant"}}]}"#,
            ),
            adv(
                r#"{"id":"DSA-1-1","related":["CVE-1"],"affected":[{"package":{"ecosystem":"Debian:12","name":"p"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1-1"}]}]}]}"#,
            ),
            adv(
                r#"{"id":"DSA-2-1","related":["CVE-1","CVE-9"],"affected":[{"package":{"ecosystem":"Debian:12","name":"p"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.3-1"}]}]}]}"#,
            ),
            adv(
                r#"{"id":"GHSA-a","aliases":["CVE-5"],"database_specific":{"severity":"HIGH"},
                "affected":[{"package":{"ecosystem":"PyPI","name":"Foo_Bar"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0"}]}]}]}"#,
            ),
            adv(
                r#"{"id":"PYSEC-b","aliases":["CVE-5"],"affected":[{"package":{"ecosystem":"PyPI","name":"foo-bar"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.5"}]}]}]}"#,
            ),
        ]);
        let f = idx.matches("Debian:12", "p", "1.0-1").unwrap();
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-1", "DSA-2-1"]);
        assert_eq!(f[0].aliases, ["DSA-1-1", "DSA-2-1"]);
        assert_eq!(f[0].severity, Severity::Negligible);
        assert!(idx.matches("Debian:11", "p", "1.0-1").unwrap().is_empty());
        let f = idx.matches("PyPI", "FOO.bar", "1.0").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "CVE-5");
        assert_eq!(f[0].aliases, ["GHSA-a", "PYSEC-b"]);
        assert_eq!(f[0].fixed.as_deref(), Some("1.5"));
        assert_eq!(f[0].severity, Severity::High);
        let f = idx.matches("PyPI", "foo-bar", "1.7").unwrap();
        assert_eq!(f[0].fixed.as_deref(), Some("2.0"));
        assert!(idx.matches("PyPI", "foo-bar", "2.0").unwrap().is_empty());
        assert!(idx.matches("PyPI", "foo-bar", "not a version!").is_err());
    }

    #[test]
    fn pep503_borrows_normal_names() {
        assert!(matches!(pep503("requests"), Cow::Borrowed(_)));
        assert_eq!(pep503("Flask_Login"), "flask-login");
        assert_eq!(pep503("zope.interface"), "zope-interface");
        assert_eq!(pep503("a--b"), "a-b");
    }
}
