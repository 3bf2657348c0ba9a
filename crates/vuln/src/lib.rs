//! Vulnerability matching as pure logic (no I/O, no async): objects in, answers out, so that a
//! rescan is a join of stored inventories against advisories, never a re-read of images. This
//! is the groundwork of issue 12's scanner.
//!
//! What it holds today:
//!
//! - Each package ecosystem's own version ordering, one module each, each with a typed parse
//!   error and checked against the real tool or the upstream project's own test data
//!   (`tests/`):
//!   [`dpkg`] (Debian, Ubuntu), [`rpm`], [`apk`] (Alpine), [`pep440`] (PyPI), [`npm`],
//!   [`golang`] (Go modules), [`cargo`] (crates.io), [`maven`]; the SemVer 2.0.0 core the npm,
//!   Go and Cargo orderings and `SEMVER` ranges share is [`oci::semver`], the one semantic
//!   version of Wharf (tags use it too), and these modules only add what each tool accepts
//!   around it.
//! - [`Ecosystem`] names an ordering (from OSV's ecosystem strings) and [`compare`] orders two
//!   version strings in it.
//! - [`Range`] and [`Affected`]: OSV's `introduced` / `fixed` / `last_affected` / `limit`
//!   ranges and explicit `versions` lists, evaluated as the OSV schema specifies.
//!
//! - Advisories: the normalised model ([`advisory`]) and its readers: OSV JSON
//!   ([`advisory::parse_osv`]), the Debian security tracker's JSON ([`tracker`]), Alpine's
//!   secdb ([`secdb`]); CVSS v3 base scores ([`cvss`]).
//! - Matching: [`Index`] ([`matcher`]) turns (ecosystem, package, version) into
//!   [`Finding`]s; [`IgnoreRules`] ([`ignore`]) suppresses accepted ones.
//!
//! Comparisons are allocation-free (parsing borrows from the input) except Maven's, whose
//! parse builds its nested item lists.

pub mod advisory;
pub mod apk;
pub mod cargo;
pub mod cvss;
pub mod dpkg;
pub mod ecosystem;
pub mod finding;
pub mod golang;
pub mod ignore;
pub mod matcher;
pub mod maven;
pub mod npm;
pub mod pep440;
pub mod range;
pub mod rpm;
pub mod secdb;
pub mod tracker;

pub use advisory::{Advisory, AffectedPackage, ParseError, parse_osv};
pub use ecosystem::{Ecosystem, Parsed, VersionError, compare, validate};
pub use finding::{Cvss, Finding, Severity, SeverityError};
pub use ignore::{IgnoreError, IgnoreRule, IgnoreRules};
pub use matcher::{Index, IndexStats};
pub use range::{Affected, Event, MatchError, Range, RangeError, RangeKind};
pub use secdb::parse_secdb;
pub use tracker::{parse_tracker, parse_tracker_each};
