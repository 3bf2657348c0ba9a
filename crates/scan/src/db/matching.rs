//! Joining an image inventory with an advisory index.

use vuln::{Finding, IgnoreRules, Index};

use crate::findings::ImageFinding;
use crate::inventory::{ImageInventory, PackageKind};

/// The OSV ecosystem a language package's advisories are filed under.
fn language_ecosystem(kind: PackageKind) -> Option<&'static str> {
    Some(match kind {
        PackageKind::Python => "PyPI",
        PackageKind::Npm => "npm",
        PackageKind::Go => "Go",
        PackageKind::Cargo => "crates.io",
        PackageKind::Maven => "Maven",
        PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm => return None,
    })
}

/// Matches every package of an image against `index`: OS packages by their source package
/// and source version in the image's own release (`OsRelease::osv_ecosystem`; none when the
/// release is unknown, or when the package's kind is not the distribution's, such as a dpkg
/// database in an Alpine image), language packages in their ecosystem. One finding per
/// (installed package, vulnerability); binary packages built from one source version share
/// one lookup. A version the ecosystem cannot parse is logged and skipped. Sorted by package,
/// then finding id. No finding is suppressed here: see [`apply_ignores`].
pub fn match_image(index: &Index, inv: &ImageInventory) -> Vec<ImageFinding> {
    let os_eco = inv.os.as_ref().and_then(|o| o.osv_ecosystem());
    let os_ordering = os_eco.as_deref().and_then(vuln::Ecosystem::from_osv);
    // (ecosystem, name, version, package index) of every package some advisory names,
    // sorted so that binary packages of one source version (libc6, libc-bin, locales: all
    // glibc 2.36-9+deb12u4) are adjacent and cost one lookup.
    let mut keys: Vec<(&str, &str, &str, usize)> = Vec::new();
    for (i, p) in inv.packages.iter().enumerate() {
        let eco = if p.kind.is_os() {
            match (&os_eco, os_ordering) {
                (Some(e), Some(o)) if o == p.kind.ecosystem() => e.as_str(),
                _ => continue,
            }
        } else {
            match language_ecosystem(p.kind) {
                Some(e) => e,
                None => continue,
            }
        };
        let name = p.match_name();
        if index.knows(eco, name) {
            keys.push((eco, name, p.match_version(), i));
        }
    }
    keys.sort_unstable();
    let mut slots: Vec<Vec<Finding>> = vec![Vec::new(); inv.packages.len()];
    let mut total = 0;
    for group in keys.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
        let (eco, name, version, _) = group[0];
        let findings = match index.matches(eco, name, version) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(package = name, version, error = %e, "version not matched");
                continue;
            }
        };
        if findings.is_empty() {
            continue;
        }
        total += findings.len() * group.len();
        let (last, rest) = group.split_last().unwrap_or((&group[0], &[]));
        for k in rest {
            slots[k.3] = findings.clone();
        }
        slots[last.3] = findings;
    }
    let mut out = Vec::with_capacity(total);
    for (p, findings) in inv.packages.iter().zip(slots) {
        out.extend(findings.into_iter().map(|finding| ImageFinding {
            finding,
            installed: p.clone(),
            suppressed: None,
        }));
    }
    out
}

/// Marks the findings an ignore file suppresses for `image` (a name the rules' `image` globs
/// are matched against, such as `library/debian:12`) on `today` (`YYYY-MM-DD`). Returns how
/// many are suppressed. A rule's `package` may name the advisory's package (the source
/// package, `glibc`) or the installed one (`libc6`).
pub fn apply_ignores(
    findings: &mut [ImageFinding],
    rules: &IgnoreRules,
    image: &str,
    today: &str,
) -> usize {
    let mut n = 0;
    for f in findings {
        f.suppressed = rules
            .suppresses_installed(&f.finding, &f.installed.name, image, today)
            .map(str::to_string);
        n += usize::from(f.suppressed.is_some());
    }
    n
}
