//! Go module versions, as `golang.org/x/mod/semver` reads and orders them: SemVer 2.0.0 with
//! a `v` prefix, plus the shorthands `vMAJOR` and `vMAJOR.MINOR` (meaning `.0`, and allowed
//! without pre-release or build only). Build metadata, such as `+incompatible`, does not take
//! part in the ordering. Pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`) are
//! pre-releases and order by their timestamp through plain SemVer rules;
//! [`is_pseudo_version`] recognises them as `golang.org/x/mod/module` does.
//!
//! The `v` is optional here, because OSV's Go records write versions without it
//! (`"fixed": "1.20.1"`) while modules and build info write it.

use std::cmp::Ordering;

use oci::semver::{self, SemVer, is_number};

/// Why a string is not a Go module version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not (v)SemVer 2.0.0 nor a `vMAJOR[.MINOR]` shorthand.
    #[error(transparent)]
    Syntax(#[from] semver::ParseError),
}

/// Parses a Go module version (`v` optional).
pub fn parse(s: &str) -> Result<SemVer<'_>, ParseError> {
    let t = s.strip_prefix('v').unwrap_or(s);
    // The shorthands: digits, or digits.digits, nothing else.
    let mut parts = t.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(major), None, _) if is_number(major) => {
            return Ok(SemVer {
                major,
                minor: "",
                patch: "",
                pre: "",
                build: "",
            });
        }
        (Some(major), Some(minor), None) if is_number(major) && is_number(minor) => {
            return Ok(SemVer {
                major,
                minor,
                patch: "",
                pre: "",
                build: "",
            });
        }
        _ => {}
    }
    Ok(SemVer::parse(t)?)
}

/// Parses both and compares them as `semver.Compare` does.
pub fn compare(a: &str, b: &str) -> Result<Ordering, ParseError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

/// True for a pseudo-version: `golang.org/x/mod/module.IsPseudoVersion`, which is
/// `vX.0.0-yyyymmddhhmmss-rev`, `vX.Y.Z-pre.0.yyyymmddhhmmss-rev` or
/// `vX.Y.Z-0.yyyymmddhhmmss-rev` (a 14-digit UTC time and an alphanumeric revision), with
/// optional build metadata. The `v` is required, as there.
pub fn is_pseudo_version(v: &str) -> bool {
    if v.matches('-').count() < 2 || !v.starts_with('v') {
        return false;
    }
    let Ok(sv) = SemVer::parse(&v[1..]) else {
        return false;
    };
    // The pre-release ends with `<time>-<rev>` where the part before is `0` or ends in `.0`
    // (or, for vX.0.0, the time is the whole first part).
    let Some((head, rev)) = sv.pre.rsplit_once('-') else {
        return false;
    };
    if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (before, time) = match head.rsplit_once('.') {
        Some((b, t)) => (Some(b), t),
        None => (None, head),
    };
    if time.len() != 14 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match before {
        // vX.0.0-yyyymmddhhmmss-rev
        None => sv.minor == "0" && sv.patch == "0",
        // vX.Y.Z-0.yyyymmddhhmmss-rev or vX.Y.Z-pre.0.yyyymmddhhmmss-rev
        Some(b) => b == "0" || b.ends_with(".0"),
    }
}
