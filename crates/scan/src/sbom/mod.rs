//! SBOMs of an image: CycloneDX 1.6 JSON ([`cyclonedx`]) and SPDX 2.3 JSON ([`spdx`]), from
//! an [`ImageInventory`] and the image's metadata ([`ImageInfo`]).
//!
//! The JSON is written with `serde_json` (objects with sorted keys, so the output is
//! deterministic for one inventory) except the creation time and the document's UUID, which
//! [`SbomOptions`] can pin (tests, reproducible builds).
//!
//! Every package is one component / SPDX package, with its purl ([`Package::purl`]), the
//! file that listed it and the digest of the layer that file came from. The distribution
//! (from `os-release`) is its own component (CycloneDX `operating-system`, SPDX purpose
//! `OPERATING-SYSTEM`).

mod cyclonedx;
mod spdx;

use std::collections::HashMap;
use std::time::SystemTime;

use oci::time::UtcDateTime;

pub use cyclonedx::{CYCLONEDX_SPEC_VERSION, cyclonedx, cyclonedx_component};
pub use spdx::{spdx, spdx_id};

use crate::inventory::{ImageInventory, Package};
use crate::source::ImageMeta;

/// What an SBOM says about the image itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image's name as the user gave it (`registry.example/team/app:1.0`,
    /// `oci:./layout:v1`).
    pub name: String,
    /// The manifest digest (`sha256:...`), when known.
    pub manifest_digest: Option<String>,
    /// The repository the image is in (`registry.example/team/app`), for the image's purl;
    /// `None` for local sources.
    pub repository: Option<String>,
    /// The config's `created`.
    pub created: Option<String>,
    /// The config's `os`.
    pub os: Option<String>,
    /// The config's `architecture`.
    pub architecture: Option<String>,
}

impl ImageInfo {
    /// The image's information from its source metadata.
    pub fn from_meta(name: &str, repository: Option<&str>, meta: &ImageMeta) -> ImageInfo {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ImageInfo {
            name: name.to_string(),
            manifest_digest: Some(meta.manifest_digest.to_string()),
            repository: repository.map(str::to_string),
            created: meta.config.created.clone(),
            os: nonempty(&meta.config.os),
            architecture: nonempty(&meta.config.architecture),
        }
    }

    /// The image's information from the source it was opened from: the name as the user wrote
    /// it (a registry reference in its canonical form), the repository for registry sources.
    pub fn from_source(source: &crate::source::SourceRef, meta: &ImageMeta) -> ImageInfo {
        match source {
            crate::source::SourceRef::Registry(r) => {
                ImageInfo::from_meta(&r.canonical(), Some(&r.name()), meta)
            }
            local => ImageInfo::from_meta(&local.to_string(), None, meta),
        }
    }

    /// The image's purl (`pkg:oci/app@sha256%3A...?arch=amd64&repository_url=...`), when the
    /// manifest digest is known.
    pub fn purl(&self) -> Option<String> {
        let digest = self.manifest_digest.as_deref()?;
        let base = self.repository.as_deref().unwrap_or(&self.name);
        // The purl's name is the last path segment, lower case, without tag or digest.
        let last = base.rsplit('/').next().unwrap_or(base);
        let last = last
            .split(['@', ':'])
            .next()
            .unwrap_or(last)
            .to_ascii_lowercase();
        if last.is_empty() {
            return None;
        }
        let mut out = format!("pkg:oci/{}@{}", escape(&last), escape(digest));
        let mut q = Vec::new();
        if let Some(a) = &self.architecture {
            q.push(format!("arch={}", escape(a)));
        }
        if let Some(r) = &self.repository {
            q.push(format!("repository_url={}", escape(r)));
        }
        if !q.is_empty() {
            out.push('?');
            out.push_str(&q.join("&"));
        }
        Some(out)
    }
}

/// Percent-encodes all but `A-Za-z0-9.-_~` (and `/` in repository URLs is encoded too, as
/// purl qualifier values want).
fn escape(s: &str) -> String {
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

/// What an SBOM's volatile fields are: `None` takes the current time and a random UUID.
#[derive(Debug, Clone, Default)]
pub struct SbomOptions {
    /// The creation time, RFC 3339 (`2026-12-07T12:00:00Z`).
    pub timestamp: Option<String>,
    /// The document's UUID (CycloneDX `serialNumber`, SPDX namespace).
    pub uuid: Option<uuid::Uuid>,
    /// The tool named as the SBOM's author, with its version (`wharf`, `0.1.0`).
    pub tool: Option<(String, String)>,
}

impl SbomOptions {
    fn timestamp(&self) -> String {
        self.timestamp
            .clone()
            .unwrap_or_else(|| UtcDateTime::from_system(SystemTime::now()).rfc3339())
    }

    fn uuid(&self) -> uuid::Uuid {
        self.uuid.unwrap_or_else(uuid::Uuid::new_v4)
    }

    fn tool(&self) -> (String, String) {
        self.tool
            .clone()
            .unwrap_or_else(|| ("wharf".to_string(), env!("CARGO_PKG_VERSION").to_string()))
    }
}

/// The `bom-ref` of each package of an inventory, in the inventory's order: its purl and
/// the file that listed it (`pkg:deb/debian/libc6@...|/var/lib/dpkg/status`), with `|2`,
/// `|3`... appended when one file lists the same purl twice. Stable for one inventory; the
/// CycloneDX vulnerability report points its `affects` at these.
pub fn bom_refs(inventory: &ImageInventory) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    inventory
        .packages
        .iter()
        .map(|p| {
            let base = format!("{}|{}", p.purl(inventory.os.as_ref()), p.path);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}|{n}") }
        })
        .collect()
}

/// The bom-ref of `pkg` in `inventory` (the first package equal to it: findings for two
/// equal packages, which one file listed twice, both point at the first), or the bom-ref it
/// would have when the inventory does not hold it.
pub fn bom_ref_of(inventory: &ImageInventory, refs: &[String], pkg: &Package) -> String {
    inventory
        .packages
        .iter()
        .position(|p| p == pkg)
        .and_then(|i| refs.get(i).cloned())
        .unwrap_or_else(|| format!("{}|{}", pkg.purl(inventory.os.as_ref()), pkg.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_purls() {
        let i = ImageInfo {
            name: "localhost:5000/team/App:1".into(),
            manifest_digest: Some("sha256:abc".into()),
            repository: Some("localhost:5000/team/app".into()),
            architecture: Some("amd64".into()),
            ..Default::default()
        };
        assert_eq!(
            i.purl().unwrap(),
            "pkg:oci/app@sha256%3Aabc?arch=amd64&repository_url=localhost%3A5000%2Fteam%2Fapp"
        );
        let local = ImageInfo {
            name: "oci:/tmp/lay:v1".into(),
            manifest_digest: Some("sha256:abc".into()),
            ..Default::default()
        };
        assert_eq!(local.purl().unwrap(), "pkg:oci/lay@sha256%3Aabc");
        assert_eq!(ImageInfo::default().purl(), None);
    }
}
