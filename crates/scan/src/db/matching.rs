//! Joining an image inventory with an advisory index.

use std::collections::HashMap;

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
/// (installed package, vulnerability); binary packages built from one source share one
/// lookup. A version the ecosystem cannot parse is logged and skipped. Sorted by package,
/// then finding id. No finding is suppressed here: see [`apply_ignores`].
pub fn match_image(index: &Index, inv: &ImageInventory) -> Vec<ImageFinding> {
    let os_eco = inv.os.as_ref().and_then(|o| o.osv_ecosystem());
    let os_ordering = os_eco.as_deref().and_then(vuln::Ecosystem::from_osv);
    // (kind, name, version) → findings, so that libc6, libc-bin and locales (all glibc
    // 2.36-9+deb12u4) cost one lookup.
    let mut memo: HashMap<(PackageKind, &str, &str), Vec<Finding>> = HashMap::new();
    let mut out = Vec::new();
    for p in &inv.packages {
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
        let (name, version) = (p.match_name(), p.match_version());
        if !index.knows(eco, name) {
            continue;
        }
        let findings = memo.entry((p.kind, name, version)).or_insert_with(|| {
            match index.matches(eco, name, version) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(package = name, version, error = %e, "version not matched");
                    Vec::new()
                }
            }
        });
        out.extend(findings.iter().map(|f| ImageFinding {
            finding: f.clone(),
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
