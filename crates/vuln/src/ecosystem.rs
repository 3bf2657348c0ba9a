//! The version orderings by name: [`Ecosystem`] (from OSV's ecosystem strings) and
//! [`compare`], which parses two version strings in a named ecosystem and orders them.

use std::cmp::Ordering;
use std::fmt;

use crate::{apk, cargo, dpkg, golang, maven, npm, pep440, rpm};

/// A package ecosystem, by the version ordering it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Debian and Ubuntu packages: dpkg order.
    Dpkg,
    /// RPM-based distributions (Red Hat, AlmaLinux, Rocky, SUSE, openSUSE, Mageia, openEuler,
    /// Photon OS): rpm order.
    Rpm,
    /// Alpine packages: apk order.
    Apk,
    /// Python packages: PEP 440.
    PyPI,
    /// npm packages: node-semver.
    Npm,
    /// Go modules: `golang.org/x/mod/semver`.
    Go,
    /// Rust crates: SemVer 2.0.0.
    Cargo,
    /// Maven artifacts: `ComparableVersion`.
    Maven,
}

impl Ecosystem {
    /// Every ecosystem.
    pub const ALL: [Ecosystem; 8] = [
        Ecosystem::Dpkg,
        Ecosystem::Rpm,
        Ecosystem::Apk,
        Ecosystem::PyPI,
        Ecosystem::Npm,
        Ecosystem::Go,
        Ecosystem::Cargo,
        Ecosystem::Maven,
    ];

    /// The ordering of an OSV `affected[].package.ecosystem` string (a release suffix such as
    /// `Debian:12` or `Alpine:v3.20` is ignored; it scopes the package, not the ordering), or
    /// `None` for an ecosystem this crate has no ordering for.
    pub fn from_osv(name: &str) -> Option<Ecosystem> {
        let base = name.split_once(':').map_or(name, |(b, _)| b);
        Some(match base {
            "Debian" | "Ubuntu" => Ecosystem::Dpkg,
            "Red Hat" | "AlmaLinux" | "Rocky Linux" | "SUSE" | "openSUSE" | "Mageia"
            | "openEuler" | "Photon OS" => Ecosystem::Rpm,
            "Alpine" => Ecosystem::Apk,
            "PyPI" => Ecosystem::PyPI,
            "npm" => Ecosystem::Npm,
            "Go" => Ecosystem::Go,
            "crates.io" => Ecosystem::Cargo,
            "Maven" => Ecosystem::Maven,
            _ => return None,
        })
    }

    /// A short lower-case name (`dpkg`, `rpm`, `apk`, `pypi`, `npm`, `go`, `cargo`, `maven`).
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Dpkg => "dpkg",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Apk => "apk",
            Ecosystem::PyPI => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Maven => "maven",
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A version string that its ecosystem does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// dpkg.
    #[error("dpkg version: {0}")]
    Dpkg(#[from] dpkg::ParseError),
    /// rpm.
    #[error("rpm version: {0}")]
    Rpm(#[from] rpm::ParseError),
    /// apk.
    #[error("apk version: {0}")]
    Apk(#[from] apk::ParseError),
    /// PEP 440.
    #[error("PyPI version: {0}")]
    Pep440(#[from] pep440::ParseError),
    /// npm.
    #[error("npm version: {0}")]
    Npm(#[from] npm::ParseError),
    /// Go.
    #[error("Go version: {0}")]
    Go(#[from] golang::ParseError),
    /// Cargo.
    #[error("Cargo version: {0}")]
    Cargo(#[from] cargo::ParseError),
    /// Maven.
    #[error("Maven version: {0}")]
    Maven(#[from] maven::ParseError),
}

/// A version parsed in its ecosystem, so that one installed version can be compared with
/// many advisory bounds without parsing it again.
#[derive(Debug, Clone)]
pub enum Parsed<'a> {
    /// dpkg.
    Dpkg(dpkg::Version<'a>),
    /// rpm.
    Rpm(rpm::Evr<'a>),
    /// apk.
    Apk(apk::Version<'a>),
    /// PEP 440.
    PyPI(pep440::Version<'a>),
    /// npm, Go and Cargo, each parsed by its own rules.
    Semver(oci::semver::SemVer<'a>),
    /// Maven.
    Maven(maven::Version),
}

impl<'a> Parsed<'a> {
    /// Parses `s` as a version of `eco`.
    pub fn parse(eco: Ecosystem, s: &'a str) -> Result<Parsed<'a>, VersionError> {
        Ok(match eco {
            Ecosystem::Dpkg => Parsed::Dpkg(dpkg::Version::parse(s)?),
            Ecosystem::Rpm => Parsed::Rpm(rpm::Evr::parse(s)?),
            Ecosystem::Apk => Parsed::Apk(apk::Version::parse(s)?),
            Ecosystem::PyPI => Parsed::PyPI(pep440::Version::parse(s)?),
            Ecosystem::Npm => Parsed::Semver(npm::parse(s)?),
            Ecosystem::Go => Parsed::Semver(golang::parse(s)?),
            Ecosystem::Cargo => Parsed::Semver(cargo::parse(s)?),
            Ecosystem::Maven => Parsed::Maven(maven::Version::parse(s)?),
        })
    }

    /// Orders two versions parsed in the same ecosystem; `None` across ecosystems.
    pub fn cmp_same(&self, other: &Parsed<'_>) -> Option<Ordering> {
        Some(match (self, other) {
            (Parsed::Dpkg(a), Parsed::Dpkg(b)) => a.cmp(b),
            (Parsed::Rpm(a), Parsed::Rpm(b)) => a.cmp(b),
            (Parsed::Apk(a), Parsed::Apk(b)) => a.cmp(b),
            (Parsed::PyPI(a), Parsed::PyPI(b)) => a.cmp(b),
            (Parsed::Semver(a), Parsed::Semver(b)) => a.cmp(b),
            (Parsed::Maven(a), Parsed::Maven(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// Parses `a` and `b` as versions of `eco` and orders them by that ecosystem's rules.
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (a, b) = (Parsed::parse(eco, a)?, Parsed::parse(eco, b)?);
    Ok(a.cmp_same(&b).unwrap_or(Ordering::Equal))
}

/// Checks that `v` is a version of `eco`.
pub fn validate(eco: Ecosystem, v: &str) -> Result<(), VersionError> {
    Parsed::parse(eco, v).map(|_| ())
}
