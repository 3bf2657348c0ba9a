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
//! - advisories that name each other in `aliases` (or share an alias) are one vulnerability:
//!   one finding, whose id is the CVE id when one is among them (the others become aliases),
//!   with the highest severity, the lowest fix above the installed version;
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
use crate::range::{MatchError, Range, RangeKind};

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
}

struct Entry {
    adv: u32,
    eco: Ecosystem,
    name: Box<str>,
    ranges: Vec<Range>,
    /// Listed versions that parse, in the ecosystem's order.
    listed: Vec<Box<str>>,
    /// Every listed version, by string.
    listed_raw: Vec<Box<str>>,
    /// Fixed versions that parse, in the ecosystem's order.
    fixed: Vec<Box<str>>,
    severity: Severity,
    cvss: Option<(Box<str>, f64)>,
}

fn cmp_in(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    crate::ecosystem::compare(eco, a, b).unwrap_or_else(|_| a.cmp(b))
}

impl Entry {
    fn affects(&self, parsed: &Parsed<'_>, version: &str) -> bool {
        if self
            .ranges
            .iter()
            .any(|r| r.affects(version).unwrap_or(false))
        {
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
    fn fixed_above(&self, parsed: &Parsed<'_>) -> Option<&str> {
        self.fixed
            .iter()
            .find(|f| {
                Parsed::parse(self.eco, f)
                    .ok()
                    .and_then(|p| p.cmp_same(parsed))
                    == Some(Ordering::Greater)
            })
            .map(|f| &**f)
    }
}

/// Advisories indexed for matching.
#[derive(Default)]
pub struct Index {
    metas: Vec<Meta>,
    by_eco: HashMap<Box<str>, HashMap<Box<str>, Vec<Entry>>>,
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

impl Index {
    /// Indexes advisories (withdrawn ones are skipped; see [`Index::stats`]).
    pub fn build(advisories: impl IntoIterator<Item = Advisory>) -> Index {
        let mut index = Index::default();
        for adv in advisories {
            index.add(adv);
        }
        index
    }

    /// Adds one advisory.
    pub fn add(&mut self, adv: Advisory) {
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
                    // Only GIT-less unknown kinds: nothing evaluable.
                    self.stats.problems.push(BuildProblem {
                        id: adv.id.clone(),
                        ecosystem: a.ecosystem.clone(),
                        package: a.name.clone(),
                        error: "no evaluable range and no versions".into(),
                    });
                }
                continue;
            }
            let mut listed: Vec<Box<str>> = a
                .versions
                .iter()
                .filter(|v| crate::ecosystem::validate(eco, v).is_ok())
                .map(|v| v.as_str().into())
                .collect();
            listed.sort_by(|x, y| cmp_in(eco, x, y));
            let mut listed_raw: Vec<Box<str>> =
                a.versions.iter().map(|v| v.as_str().into()).collect();
            listed_raw.sort();
            listed_raw.dedup();
            let mut fixed: Vec<Box<str>> = a
                .fixed
                .iter()
                .filter(|v| crate::ecosystem::validate(eco, v).is_ok())
                .map(|v| v.as_str().into())
                .collect();
            fixed.sort_by(|x, y| cmp_in(eco, x, y));
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
                name: a.name.as_str().into(),
                ranges,
                listed,
                listed_raw,
                fixed,
                severity,
                cvss,
            };
            let key: Box<str> = normalize_name(&a.ecosystem, &a.name).into();
            self.by_eco
                .entry(a.ecosystem.as_str().into())
                .or_default()
                .entry(key)
                .or_default()
                .push(entry);
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

    fn entries(&self, ecosystem: &str, name: &str) -> Option<&[Entry]> {
        let m = self.by_eco.get(ecosystem)?;
        let key = normalize_name(ecosystem, name);
        m.get(&*key).map(|v| v.as_slice())
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
        let Some(entries) = self.entries(ecosystem, name) else {
            return Ok(Vec::new());
        };
        let eco = entries[0].eco;
        let parsed = Parsed::parse(eco, version)?;
        let hits: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.affects(&parsed, version))
            .collect();
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.findings(ecosystem, version, eco, &parsed, &hits))
    }

    fn findings(
        &self,
        ecosystem: &str,
        version: &str,
        eco: Ecosystem,
        parsed: &Parsed<'_>,
        hits: &[&Entry],
    ) -> Vec<Finding> {
        let n = hits.len();
        // Union-find over hits sharing an id or alias.
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut ids: Vec<(&str, usize)> = Vec::new();
        for (i, h) in hits.iter().enumerate() {
            let m = &self.metas[h.adv as usize];
            ids.push((&m.id, i));
            ids.extend(m.aliases.iter().map(|a| (&**a, i)));
        }
        ids.sort_unstable();
        for w in ids.windows(2) {
            if w[0].0 == w[1].0 {
                let (a, b) = (find(&mut parent, w[0].1), find(&mut parent, w[1].1));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
        let roots: Vec<usize> = (0..n).map(|i| find(&mut parent, i)).collect();
        // Debian advisories: fold into the CVE findings they relate to.
        let mut extra: Vec<Vec<&str>> = vec![Vec::new(); n];
        let mut dropped = vec![false; n];
        for (i, h) in hits.iter().enumerate() {
            let m = &self.metas[h.adv as usize];
            if m.debian_related.is_empty() || roots[i] != i {
                continue;
            }
            let group_has_cve = (0..n)
                .filter(|&j| roots[j] == i)
                .any(|j| self.metas[hits[j].adv as usize].id.starts_with("CVE-"));
            if group_has_cve {
                continue;
            }
            let mut all = true;
            for cve in &m.debian_related {
                match ids.binary_search_by(|(s, _)| (*s).cmp(&**cve)) {
                    Ok(k) => {
                        let target = roots[ids[k].1];
                        if target != i {
                            extra[target].push(&m.id);
                        }
                    }
                    Err(_) => all = false,
                }
            }
            if all {
                dropped[i] = true;
            }
        }
        let mut out = Vec::new();
        for root in 0..n {
            if roots[root] != root || dropped[root] {
                continue;
            }
            let members: Vec<&Entry> = (0..n)
                .filter(|&j| roots[j] == root)
                .map(|j| hits[j])
                .collect();
            let mut all_ids: Vec<&str> = Vec::new();
            for e in &members {
                let m = &self.metas[e.adv as usize];
                all_ids.push(&m.id);
                all_ids.extend(m.aliases.iter().map(|a| &**a));
            }
            let primary: &str = all_ids
                .iter()
                .filter(|s| s.starts_with("CVE-"))
                .min()
                .copied()
                .unwrap_or(&self.metas[members[0].adv as usize].id);
            all_ids.extend(extra[root].iter().copied());
            all_ids.sort_unstable();
            all_ids.dedup();
            let aliases = all_ids
                .iter()
                .filter(|s| **s != primary)
                .map(|s| s.to_string())
                .collect();
            let severity = members.iter().map(|e| e.severity).max().unwrap_or_default();
            let cvss = members
                .iter()
                .filter_map(|e| e.cvss.as_ref())
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(v, s)| Cvss {
                    vector: v.to_string(),
                    score: *s,
                });
            let fixed = members
                .iter()
                .filter_map(|e| e.fixed_above(parsed))
                .min_by(|a, b| cmp_in(eco, a, b))
                .map(str::to_string);
            let summary = members
                .iter()
                .map(|e| &self.metas[e.adv as usize])
                .find(|m| &*m.id == primary && !m.summary.is_empty())
                .or_else(|| {
                    members
                        .iter()
                        .map(|e| &self.metas[e.adv as usize])
                        .find(|m| !m.summary.is_empty())
                })
                .map(|m| m.summary.to_string())
                .unwrap_or_default();
            out.push(Finding {
                id: primary.to_string(),
                aliases,
                ecosystem: ecosystem.to_string(),
                package: members[0].name.to_string(),
                version: version.to_string(),
                fixed,
                severity,
                cvss,
                summary,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
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
