//! OSV affected ranges (<https://ossf.github.io/osv-schema/>, "Evaluation"): `introduced`,
//! `fixed`, `last_affected` and `limit` events over an `ECOSYSTEM` or `SEMVER` ordering, and
//! explicit `versions` lists.
//!
//! A range is checked and sorted once, when built ([`Range::new`]): every event version must
//! parse in its ordering, so a bad advisory is an error at import, not a silent miss at match
//! time. Then [`Range::affects`] walks the sorted events as the schema's pseudocode does: an
//! `introduced` at or below the version turns it vulnerable, a `fixed` at or below turns it
//! back, a `last_affected` strictly below turns it back; and with `limit` events the version
//! must be below one of them. `introduced: "0"` sorts before everything, `limit: "*"` after.
//!
//! `SEMVER` ranges order by SemVer 2.0.0 precedence whatever the package's ecosystem (an
//! optional `v` is accepted, as Go writes it); `ECOSYSTEM` ranges by the package's
//! ecosystem. `GIT` ranges need the repository's history and are refused here: OSV records
//! carry the affected `versions` list for them.

use std::cmp::Ordering;

use crate::ecosystem::{Ecosystem, Parsed, VersionError, compare};
use oci::semver::{self, SemVer};

/// The `type` of an OSV range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// `ECOSYSTEM`: the package ecosystem's own ordering.
    Ecosystem,
    /// `SEMVER`: SemVer 2.0.0 precedence.
    Semver,
    /// `GIT`: commit hashes (not evaluable without the repository).
    Git,
}

impl RangeKind {
    /// Reads OSV's `type` string (`ECOSYSTEM`, `SEMVER`, `GIT`).
    pub fn from_osv(s: &str) -> Option<RangeKind> {
        match s {
            "ECOSYSTEM" => Some(RangeKind::Ecosystem),
            "SEMVER" => Some(RangeKind::Semver),
            "GIT" => Some(RangeKind::Git),
            _ => None,
        }
    }
}

/// One event of an OSV range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `introduced`: this version and later are affected (`"0"`: from the very first).
    Introduced(String),
    /// `fixed`: this version and later are not.
    Fixed(String),
    /// `last_affected`: versions after this one are not.
    LastAffected(String),
    /// `limit`: only versions below some limit are in the range (`"*"`: no limit).
    Limit(String),
}

impl Event {
    /// The event's version string (`"0"` and `"*"` included).
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }

    /// The special values that are not versions: `introduced: "0"` and `limit: "*"`.
    fn bound(&self) -> Option<Ordering> {
        match self {
            Event::Introduced(v) if v == "0" => Some(Ordering::Less),
            Event::Limit(v) if v.contains('*') => Some(Ordering::Greater),
            _ => None,
        }
    }
}

/// Why a range cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// An event's version does not parse in the range's ordering.
    #[error("range event {event:?}: {source}")]
    Version {
        /// The event.
        event: Event,
        /// Why its version is bad.
        source: VersionError,
    },
    /// An event's version is not SemVer in a `SEMVER` range.
    #[error("range event {event:?}: {source}")]
    Semver {
        /// The event.
        event: Event,
        /// Why its version is bad.
        source: semver::ParseError,
    },
    /// The schema requires at least one `introduced`.
    #[error("range has no introduced event")]
    NoIntroduced,
    /// `GIT` ranges need the repository; use the record's `versions` list.
    #[error("GIT ranges cannot be evaluated without the repository")]
    Git,
}

/// Why a version cannot be checked against a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// Not a version of the range's ecosystem.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// Not SemVer, for a `SEMVER` range.
    #[error("not a semantic version: {0}")]
    Semver(#[from] semver::ParseError),
}

/// A checked, sorted OSV range.
#[derive(Debug, Clone)]
pub struct Range {
    eco: Ecosystem,
    kind: RangeKind,
    events: Vec<Event>,
    has_limit: bool,
}

/// A version in a `SEMVER` range: [`oci::semver`], Wharf's one SemVer 2.0.0, after an
/// optional leading `v`. The `v` is the only leniency, and it differs from the core because
/// advisories and Go build info write it (`v1.20.1`) while the SemVer grammar has no prefix;
/// the matcher parses installed versions with this same function, so both sides agree.
pub(crate) fn semver_parse(v: &str) -> Result<SemVer<'_>, semver::ParseError> {
    SemVer::parse(v.strip_prefix('v').unwrap_or(v))
}

impl Range {
    /// Checks every event's version in the ordering (`kind`, and `eco` for `ECOSYSTEM`) and
    /// sorts the events.
    pub fn new(
        eco: Ecosystem,
        kind: RangeKind,
        mut events: Vec<Event>,
    ) -> Result<Range, RangeError> {
        if kind == RangeKind::Git {
            return Err(RangeError::Git);
        }
        if !events.iter().any(|e| matches!(e, Event::Introduced(_))) {
            return Err(RangeError::NoIntroduced);
        }
        for e in &events {
            if e.bound().is_some() {
                continue;
            }
            match kind {
                RangeKind::Semver => {
                    semver_parse(e.version()).map_err(|source| RangeError::Semver {
                        event: e.clone(),
                        source,
                    })?;
                }
                _ => {
                    crate::ecosystem::validate(eco, e.version()).map_err(|source| {
                        RangeError::Version {
                            event: e.clone(),
                            source,
                        }
                    })?;
                }
            }
        }
        let range = Range {
            eco,
            kind,
            events: Vec::new(),
            has_limit: false,
        };
        // Every version was checked above, so comparisons cannot fail here; the fallback
        // keeps the sort total regardless.
        events.sort_by(|a, b| range.cmp_events(a, b));
        let has_limit = events.iter().any(|e| matches!(e, Event::Limit(_)));
        Ok(Range {
            events,
            has_limit,
            ..range
        })
    }

    /// The range's events, sorted.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The range's ordering.
    pub fn kind(&self) -> RangeKind {
        self.kind
    }

    fn cmp_versions(&self, a: &str, b: &str) -> Result<Ordering, MatchError> {
        match self.kind {
            RangeKind::Semver => Ok(semver_parse(a)?.cmp(&semver_parse(b)?)),
            _ => Ok(compare(self.eco, a, b)?),
        }
    }

    fn cmp_events(&self, a: &Event, b: &Event) -> Ordering {
        match (a.bound(), b.bound()) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(x), None) => x,
            (None, Some(y)) => y.reverse(),
            (None, None) => self
                .cmp_versions(a.version(), b.version())
                .unwrap_or(Ordering::Equal),
        }
    }

    /// Where the (parsed) queried version stands against an event (`Greater`: it is newer).
    fn against(&self, version: &Queried<'_>, e: &Event) -> Result<Ordering, MatchError> {
        if let Some(b) = e.bound() {
            return Ok(b.reverse());
        }
        Ok(match version {
            Queried::Semver(v) => v.cmp(&semver_parse(e.version())?),
            Queried::Eco(v) => v
                .cmp_same(&Parsed::parse(self.eco, e.version())?)
                .unwrap_or(Ordering::Equal),
            Queried::EcoRef(v) => v
                .cmp_same(&Parsed::parse(self.eco, e.version())?)
                .unwrap_or(Ordering::Equal),
        })
    }

    /// True when `version` lies in the range (the schema's `IncludedInRanges` for one range).
    /// The version is parsed once; a bad one is an error even when no event needs it.
    pub fn affects(&self, version: &str) -> Result<bool, MatchError> {
        let version = match self.kind {
            RangeKind::Semver => Queried::Semver(semver_parse(version)?),
            _ => Queried::Eco(Parsed::parse(self.eco, version)?),
        };
        self.affects_queried(version)
    }

    /// [`Range::affects`] for a version already parsed in the range's ecosystem (`parsed`
    /// must be `version` parsed with that ecosystem), so that a matcher checking one installed
    /// version against many ranges parses it once. `SEMVER` ranges still parse `version` as
    /// SemVer.
    pub fn affects_parsed(&self, version: &str, parsed: &Parsed<'_>) -> Result<bool, MatchError> {
        let version = match self.kind {
            RangeKind::Semver => Queried::Semver(semver_parse(version)?),
            _ => Queried::EcoRef(parsed),
        };
        self.affects_queried(version)
    }

    fn affects_queried(&self, version: Queried<'_>) -> Result<bool, MatchError> {
        if self.has_limit {
            let mut below_any = false;
            for e in &self.events {
                if matches!(e, Event::Limit(_)) && self.against(&version, e)? == Ordering::Less {
                    below_any = true;
                    break;
                }
            }
            if !below_any {
                return Ok(false);
            }
        }
        let mut vulnerable = false;
        for e in &self.events {
            let o = self.against(&version, e)?;
            match e {
                Event::Introduced(_) if o != Ordering::Less => vulnerable = true,
                Event::Fixed(_) if o != Ordering::Less => vulnerable = false,
                Event::LastAffected(_) if o == Ordering::Greater => vulnerable = false,
                _ => {}
            }
        }
        Ok(vulnerable)
    }
}

/// The queried version, parsed in the range's ordering.
enum Queried<'a> {
    Semver(SemVer<'a>),
    Eco(Parsed<'a>),
    /// Parsed by the caller.
    EcoRef(&'a Parsed<'a>),
}

/// One `affected[]` entry's matching part: its ranges and its explicit versions.
#[derive(Debug, Clone)]
pub struct Affected {
    eco: Ecosystem,
    ranges: Vec<Range>,
    versions: Vec<String>,
}

impl Affected {
    /// The ranges (already checked) and the explicit `versions` list of one package.
    pub fn new(eco: Ecosystem, ranges: Vec<Range>, versions: Vec<String>) -> Affected {
        Affected {
            eco,
            ranges,
            versions,
        }
    }

    /// The schema's `IncludedInVersions || IncludedInRanges`. A listed version matches when it
    /// is equal in the ecosystem's ordering (so `1.0` lists `1.0.0` in PyPI), or, if it does
    /// not parse, when it is the same string.
    pub fn affects(&self, version: &str) -> Result<bool, MatchError> {
        crate::ecosystem::validate(self.eco, version)?;
        for listed in &self.versions {
            let same = match compare(self.eco, version, listed) {
                Ok(o) => o == Ordering::Equal,
                Err(_) => listed == version,
            };
            if same {
                return Ok(true);
            }
        }
        for r in &self.ranges {
            if r.affects(version)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
