//! Package inventories: what one layer holds ([`LayerInventory`], kept per layer digest so a
//! layer shared by a thousand images is analysed once) and what an image holds
//! ([`ImageInventory`], its layers combined in order with their whiteouts applied).
//!
//! A layer inventory records, per file an analyser read, what that file said (the packages a
//! dpkg `status` file lists, the OS a `/etc/os-release` names), plus the layer's whiteouts. An
//! upper layer's file at the same path replaces the lower one's findings (a later
//! `/var/lib/dpkg/status` lists every package again); a whiteout or an opaque directory hides
//! the lower layers' files below it. Combining is pure and cheap: no layer is read again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vuln::Ecosystem;

/// What kind of package a record is, by the database or file that listed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// A Debian or Ubuntu package (dpkg `status`, `status.d/`).
    Deb,
    /// An Alpine package (`lib/apk/db/installed`).
    Apk,
    /// An RPM package (the rpmdb).
    Rpm,
    /// A Python distribution (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`).
    Python,
    /// An npm package (`node_modules/**/package.json`, lockfiles).
    Npm,
    /// A Go module compiled into a binary (its build info), or `stdlib` at the toolchain's
    /// version.
    Go,
    /// A Rust crate compiled into a binary (cargo-auditable's `.dep-v0` section).
    Cargo,
    /// A Java archive (`pom.properties`, `MANIFEST.MF`); the name is `groupId:artifactId`.
    Maven,
}

impl PackageKind {
    /// The version ordering packages of this kind are compared in.
    pub fn ecosystem(self) -> Ecosystem {
        match self {
            PackageKind::Deb => Ecosystem::Dpkg,
            PackageKind::Apk => Ecosystem::Apk,
            PackageKind::Rpm => Ecosystem::Rpm,
            PackageKind::Python => Ecosystem::PyPI,
            PackageKind::Npm => Ecosystem::Npm,
            PackageKind::Go => Ecosystem::Go,
            PackageKind::Cargo => Ecosystem::Cargo,
            PackageKind::Maven => Ecosystem::Maven,
        }
    }

    /// Whether the distribution, not a language ecosystem, ships this kind (matched only
    /// against the same distribution release's advisories).
    pub fn is_os(self) -> bool {
        matches!(self, PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm)
    }

    /// The lower-case name (`deb`, `apk`, `rpm`, `python`, `npm`, `go`, `cargo`, `maven`).
    pub fn name(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Rpm => "rpm",
            PackageKind::Python => "python",
            PackageKind::Npm => "npm",
            PackageKind::Go => "go",
            PackageKind::Cargo => "cargo",
            PackageKind::Maven => "maven",
        }
    }
}

impl fmt::Display for PackageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One installed package, as its database or metadata file describes it.
///
/// Names are the ones advisories use: a Python distribution's name as written (matching
/// normalises it), an npm name with its `@scope/`, a Go module path (`stdlib` for the
/// toolchain), Maven's `groupId:artifactId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Which database or file format listed it.
    pub kind: PackageKind,
    /// The package name.
    pub name: String,
    /// The installed version, as the database writes it (dpkg's with its epoch, apk's with
    /// `-rN`, rpm's `[epoch:]version-release`).
    pub version: String,
    /// The source package an OS package was built from (dpkg `Source:`, apk origin, the
    /// rpm's source RPM name), when it differs from `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The source package's version, when the database gives one that differs from
    /// `version` (dpkg `Source: glibc (2.36-9+deb12u3)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// The architecture, when the database records one (`amd64`, `x86_64`, `noarch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Declared licences, as written (SPDX expressions where the metadata uses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// The file that listed it, absolute (`/var/lib/dpkg/status`, `/usr/bin/app`).
    pub path: String,
    /// The digest of the layer that file came from (filled in when layers are combined;
    /// empty inside a [`LayerInventory`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layer: String,
}

impl Package {
    /// The name advisories for this package are keyed by: the source package for OS
    /// packages (Debian's tracker and Alpine's secdb are per source package), the package's
    /// own name otherwise.
    pub fn match_name(&self) -> &str {
        match (self.kind.is_os(), &self.source_name) {
            (true, Some(src)) => src,
            _ => &self.name,
        }
    }

    /// The version compared against advisories: the source version for OS packages when the
    /// database gives one (a binNMU's `+b1` is not in the tracker), the package's otherwise.
    pub fn match_version(&self) -> &str {
        match (self.kind.is_os(), &self.source_version) {
            (true, Some(v)) => v,
            _ => &self.version,
        }
    }

    /// The package URL (<https://github.com/package-url/purl-spec>), with the distribution
    /// as a qualifier for OS packages.
    pub fn purl(&self, os: Option<&OsRelease>) -> String {
        let mut qualifiers: Vec<(&str, String)> = Vec::new();
        let (ty, namespace, name) = match self.kind {
            PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm => {
                let ty = match self.kind {
                    PackageKind::Deb => "deb",
                    PackageKind::Apk => "apk",
                    _ => "rpm",
                };
                let vendor = os.map(|o| o.id.as_str()).filter(|s| !s.is_empty());
                let vendor = vendor.unwrap_or(match self.kind {
                    PackageKind::Deb => "debian",
                    PackageKind::Apk => "alpine",
                    _ => "redhat",
                });
                if let Some(arch) = &self.arch {
                    qualifiers.push(("arch", arch.clone()));
                }
                if let Some(os) = os {
                    let distro = match &os.version_id {
                        Some(v) => format!("{}-{}", os.id, v),
                        None => os.id.clone(),
                    };
                    qualifiers.push(("distro", distro));
                }
                // A binNMU (`bash 5.2.15-2+b13` from source `bash 5.2.15-2`) has no source
                // name of its own but a source version: upstream is then the package's name.
                let src = self
                    .source_name
                    .as_ref()
                    .or(self.source_version.as_ref().map(|_| &self.name));
                if let Some(src) = src {
                    let upstream = match &self.source_version {
                        Some(v) => format!("{src}@{v}"),
                        None => src.clone(),
                    };
                    qualifiers.push(("upstream", upstream));
                }
                (ty, Some(vendor.to_string()), self.name.clone())
            }
            PackageKind::Python => ("pypi", None, pep503(&self.name)),
            PackageKind::Npm => match self.name.strip_prefix('@').and_then(|n| n.split_once('/')) {
                Some((scope, name)) => ("npm", Some(format!("@{scope}")), name.to_string()),
                None => ("npm", None, self.name.clone()),
            },
            PackageKind::Go => match self.name.rsplit_once('/') {
                Some((ns, name)) => ("golang", Some(ns.to_string()), name.to_string()),
                None => ("golang", None, self.name.clone()),
            },
            PackageKind::Cargo => ("cargo", None, self.name.clone()),
            PackageKind::Maven => match self.name.split_once(':') {
                Some((group, artifact)) => ("maven", Some(group.to_string()), artifact.to_string()),
                None => ("maven", None, self.name.clone()),
            },
        };
        let mut out = format!("pkg:{ty}/");
        if let Some(ns) = namespace {
            for (i, seg) in ns.split('/').enumerate() {
                if i > 0 {
                    out.push('/');
                }
                out.push_str(&purl_escape(seg));
            }
            out.push('/');
        }
        out.push_str(&purl_escape(&name));
        out.push('@');
        out.push_str(&purl_escape(&self.version));
        for (i, (k, v)) in qualifiers.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            out.push_str(&purl_escape(v));
        }
        out
    }
}

/// PEP 503's normalised name (lower case, runs of `-`, `_` and `.` as one `-`): the matcher's
/// own normalisation, so purls and advisory lookups agree.
pub fn pep503(name: &str) -> String {
    vuln::matcher::pep503(name).into_owned()
}

/// Percent-encodes what a purl component may not hold as is (the spec keeps
/// `A-Za-z0-9.-_~` and, in versions and qualifier values, `:` and `+` are encoded).
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The distribution an image is built on, from `/etc/os-release` (or `/usr/lib/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine`, `rhel`, ...).
    pub id: String,
    /// `VERSION_ID` (`12`, `22.04`, `3.20.3`); absent on Debian testing and sid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// `PRETTY_NAME`, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// The OSV ecosystem this distribution release's advisories are filed under
    /// (`Debian:12`, `Ubuntu:22.04`, `Alpine:v3.20`), or `None` when the release cannot be
    /// told (Debian sid has no `VERSION_ID`) or the distribution has no advisories here.
    pub fn osv_ecosystem(&self) -> Option<String> {
        let v = self.version_id.as_deref()?;
        match self.id.as_str() {
            "debian" => Some(format!("Debian:{}", v.split('.').next().unwrap_or(v))),
            "ubuntu" => Some(format!("Ubuntu:{v}")),
            "alpine" => {
                let mut parts = v.split('.');
                let major = parts.next()?;
                let minor = parts.next()?;
                Some(format!("Alpine:v{major}.{minor}"))
            }
            _ => None,
        }
    }
}

/// What one file said: the packages it lists, or the OS it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFinding {
    /// The file's absolute path in the image (`/var/lib/dpkg/status`).
    pub path: String,
    /// The analyser that read it (`dpkg`, `os-release`, ...).
    pub analyzer: String,
    /// The packages it lists (empty is kept: an upper layer's empty database hides a lower
    /// layer's full one).
    #[serde(default)]
    pub packages: Vec<Package>,
    /// The OS release it names, for `os-release` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsRelease>,
}

/// What one layer holds, by its digest: the findings of every file an analyser read, and the
/// layer's whiteouts. Kept per layer so shared base layers are analysed once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInventory {
    /// The layer's (compressed) digest, as the manifest lists it.
    pub digest: String,
    /// One entry per file that an analyser read, in archive order (a path written twice in
    /// one layer keeps its last entry).
    #[serde(default)]
    pub files: Vec<FileFinding>,
    /// Absolute paths deleted by `.wh.NAME` entries (files or whole directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whiteouts: Vec<String>,
    /// Absolute paths of directories made opaque by `.wh..wh..opq`: everything the lower
    /// layers held under them is hidden.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque: Vec<String>,
}

/// What an image holds: its layers combined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInventory {
    /// The distribution, from the topmost `os-release` still visible (`/etc/os-release`
    /// preferred over `/usr/lib/os-release`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsRelease>,
    /// Every visible package, each with the layer and file that listed it, ordered by kind,
    /// name, version and path.
    pub packages: Vec<Package>,
}

impl ImageInventory {
    /// Combines layer inventories, lowest layer first, as a container runtime would stack
    /// the layers: each layer's whiteouts and opaque directories hide what the layers below
    /// hold, then its own files replace any lower file at the same path.
    pub fn combine<'a>(layers: impl IntoIterator<Item = &'a LayerInventory>) -> ImageInventory {
        // path -> (layer digest, finding)
        let mut visible: BTreeMap<&'a str, (&'a str, &'a FileFinding)> = BTreeMap::new();
        for layer in layers {
            for dir in &layer.opaque {
                remove_under(&mut visible, dir, false);
            }
            for gone in &layer.whiteouts {
                remove_under(&mut visible, gone, true);
            }
            for file in &layer.files {
                visible.insert(file.path.as_str(), (layer.digest.as_str(), file));
            }
        }
        let os = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| visible.get(p).and_then(|(_, f)| f.os.clone()));
        let mut packages: Vec<Package> = visible
            .values()
            .flat_map(|(layer, f)| {
                f.packages.iter().map(move |p| {
                    let mut p = p.clone();
                    p.layer = (*layer).to_string();
                    p
                })
            })
            .collect();
        packages.sort_by(|a, b| {
            (a.kind, &a.name, &a.version, &a.path).cmp(&(b.kind, &b.name, &b.version, &b.path))
        });
        ImageInventory { os, packages }
    }
}

/// Removes `path`'s entries below `dir` (and `dir` itself when `itself`): what a whiteout of
/// `dir` or an opaque `dir` hides.
fn remove_under<V>(map: &mut BTreeMap<&str, V>, dir: &str, itself: bool) {
    let dir = dir.trim_end_matches('/');
    let prefix = format!("{dir}/");
    let doomed: Vec<&str> = map
        .range(dir..)
        .take_while(|(k, _)| k.starts_with(dir))
        .map(|(k, _)| *k)
        .filter(|k| (itself && *k == dir) || k.starts_with(&prefix))
        .collect();
    for k in doomed {
        map.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(kind: PackageKind, name: &str, version: &str, path: &str) -> Package {
        Package {
            kind,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            arch: None,
            licenses: vec![],
            path: path.into(),
            layer: String::new(),
        }
    }

    fn file(path: &str, packages: Vec<Package>) -> FileFinding {
        FileFinding {
            path: path.into(),
            analyzer: "test".into(),
            packages,
            os: None,
        }
    }

    #[test]
    fn an_upper_database_replaces_the_lower_one_and_whiteouts_hide_files() {
        let base = LayerInventory {
            digest: "sha256:a".into(),
            files: vec![
                file(
                    "/var/lib/dpkg/status",
                    vec![pkg(
                        PackageKind::Deb,
                        "libc6",
                        "2.36-9+deb12u2",
                        "/var/lib/dpkg/status",
                    )],
                ),
                file(
                    "/app/lib/python3.11/site-packages/requests-2.19.0.dist-info/METADATA",
                    vec![pkg(PackageKind::Python, "requests", "2.19.0", "/app/x")],
                ),
                file(
                    "/opt/tool/package.json",
                    vec![pkg(
                        PackageKind::Npm,
                        "tool",
                        "1.0.0",
                        "/opt/tool/package.json",
                    )],
                ),
            ],
            ..Default::default()
        };
        let upgrade = LayerInventory {
            digest: "sha256:b".into(),
            files: vec![file(
                "/var/lib/dpkg/status",
                vec![pkg(
                    PackageKind::Deb,
                    "libc6",
                    "2.36-9+deb12u3",
                    "/var/lib/dpkg/status",
                )],
            )],
            whiteouts: vec!["/app/lib/python3.11/site-packages/requests-2.19.0.dist-info".into()],
            opaque: vec!["/opt".into()],
        };
        let inv = ImageInventory::combine([&base, &upgrade]);
        assert_eq!(inv.packages.len(), 1, "{:?}", inv.packages);
        assert_eq!(inv.packages[0].version, "2.36-9+deb12u3");
        assert_eq!(inv.packages[0].layer, "sha256:b");
        // Without the upper layer, the base's three are there, each with its layer.
        let inv = ImageInventory::combine([&base]);
        assert_eq!(inv.packages.len(), 3);
        assert!(inv.packages.iter().all(|p| p.layer == "sha256:a"));
    }

    #[test]
    fn a_whiteout_hides_only_its_own_path_and_what_is_below_it() {
        let base = LayerInventory {
            digest: "sha256:a".into(),
            files: vec![
                file(
                    "/usr/bin/app",
                    vec![pkg(PackageKind::Go, "stdlib", "1.21.0", "/usr/bin/app")],
                ),
                file(
                    "/usr/bin/app2",
                    vec![pkg(PackageKind::Go, "stdlib", "1.22.0", "/usr/bin/app2")],
                ),
            ],
            ..Default::default()
        };
        let upper = LayerInventory {
            digest: "sha256:b".into(),
            whiteouts: vec!["/usr/bin/app".into()],
            ..Default::default()
        };
        let inv = ImageInventory::combine([&base, &upper]);
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].path, "/usr/bin/app2");
    }

    #[test]
    fn os_release_prefers_etc_and_follows_the_top_layer() {
        let os = |id: &str, v: &str| OsRelease {
            id: id.into(),
            version_id: Some(v.into()),
            codename: None,
            pretty_name: None,
        };
        let l = LayerInventory {
            digest: "sha256:a".into(),
            files: vec![
                FileFinding {
                    path: "/usr/lib/os-release".into(),
                    analyzer: "os-release".into(),
                    packages: vec![],
                    os: Some(os("debian", "11")),
                },
                FileFinding {
                    path: "/etc/os-release".into(),
                    analyzer: "os-release".into(),
                    packages: vec![],
                    os: Some(os("debian", "12")),
                },
            ],
            ..Default::default()
        };
        let inv = ImageInventory::combine([&l]);
        assert_eq!(
            inv.os.as_ref().unwrap().osv_ecosystem().as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            os("alpine", "3.20.3").osv_ecosystem().as_deref(),
            Some("Alpine:v3.20")
        );
        assert_eq!(
            os("ubuntu", "22.04").osv_ecosystem().as_deref(),
            Some("Ubuntu:22.04")
        );
    }

    #[test]
    fn purls_follow_the_spec() {
        let mut p = pkg(
            PackageKind::Deb,
            "libc6",
            "2.36-9+deb12u3",
            "/var/lib/dpkg/status",
        );
        p.arch = Some("amd64".into());
        p.source_name = Some("glibc".into());
        let os = OsRelease {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: None,
            pretty_name: None,
        };
        assert_eq!(
            p.purl(Some(&os)),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(
            pkg(PackageKind::Npm, "@babel/core", "7.0.0", "").purl(None),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            pkg(PackageKind::Python, "Flask_Login", "0.6.0", "").purl(None),
            "pkg:pypi/flask-login@0.6.0"
        );
        assert_eq!(
            pkg(PackageKind::Go, "golang.org/x/net", "v0.17.0", "").purl(None),
            "pkg:golang/golang.org/x/net@v0.17.0"
        );
        assert_eq!(
            pkg(
                PackageKind::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.14.1",
                ""
            )
            .purl(None),
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
        );
    }
}
