//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>).

use std::collections::BTreeMap;

use oci::Digest;
use serde_json::{Value, json};

use super::{ImageInfo, SbomOptions, bom_refs};
use crate::inventory::{ImageInventory, Package};

/// SPDX identifiers may hold only letters, digits, `.` and `-`: everything else becomes `-`.
fn id_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The `SPDXID` of a package: `SPDXRef-Package-<kind>-<name>-<version>-<8 hex of its
/// bom-ref's SHA-256>`, with characters SPDX does not allow replaced by `-` (the hash keeps
/// two packages apart that differ only there, or by path).
pub fn spdx_id(p: &Package, bom_ref: &str) -> String {
    let h = Digest::sha256(bom_ref.as_bytes());
    format!(
        "SPDXRef-Package-{}-{}-{}-{}",
        p.kind.name(),
        id_chars(&p.name),
        id_chars(&p.version),
        &h.hex()[..8]
    )
}

/// An SPDX 2.3 document of the image: the image is a package of purpose `CONTAINER` (the
/// document `DESCRIBES` it, its manifest digest as a SHA256 checksum, its purl as an
/// external reference), the distribution a package of purpose `OPERATING-SYSTEM`, and each
/// package a package the image `CONTAINS`, with its purl (`PACKAGE-MANAGER`/`purl`), the file
/// and layer that listed it in `sourceInfo`, and its declared licences as `LicenseRef-`s
/// (the declared text, kept in `hasExtractedLicensingInfos`: it is not checked against the
/// SPDX license list, so never claimed as an SPDX identifier). `licenseConcluded` and
/// `copyrightText` are `NOASSERTION`; `downloadLocation` is `NOASSERTION` (an image holds no
/// download location).
///
/// The namespace is `https://spdx.org/spdxdocs/<name>-<uuid>` (the convention of SPDX's
/// own tools) with the document's UUID from `options`.
pub fn spdx(image: &ImageInfo, inventory: &ImageInventory, options: &SbomOptions) -> Value {
    let (tool, tool_version) = options.tool();
    let refs = bom_refs(inventory);
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = Vec::new();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];

    let mut img = json!({
        "SPDXID": image_id,
        "name": image.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    });
    if let Some(d) = &image.manifest_digest {
        img["versionInfo"] = json!(d);
        if let Some(hex) = d.strip_prefix("sha256:") {
            img["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hex}]);
        }
    }
    if let Some(p) = image.purl() {
        img["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p,
        }]);
    }
    let mut comment = Vec::new();
    if let Some(c) = &image.created {
        comment.push(format!("created {c}"));
    }
    if let (Some(os), Some(arch)) = (&image.os, &image.architecture) {
        comment.push(format!("platform {os}/{arch}"));
    }
    if !comment.is_empty() {
        img["comment"] = json!(comment.join("; "));
    }
    packages.push(img);

    if let Some(os) = &inventory.os {
        let id = format!("SPDXRef-OperatingSystem-{}", id_chars(&os.id));
        let mut p = json!({
            "SPDXID": id,
            "name": os.id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        });
        if let Some(v) = &os.version_id {
            p["versionInfo"] = json!(v);
        }
        if let Some(d) = &os.pretty_name {
            p["description"] = json!(d);
        }
        packages.push(p);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }

    // Declared licence text -> LicenseRef id, one per distinct text.
    let mut license_refs: BTreeMap<String, String> = BTreeMap::new();
    let mut license_ref = |text: &str| -> String {
        if let Some(id) = license_refs.get(text) {
            return id.clone();
        }
        let mut base = id_chars(text);
        base.truncate(48);
        let id = format!(
            "LicenseRef-{}-{}",
            base.trim_matches('-'),
            &Digest::sha256(text.as_bytes()).hex()[..8]
        );
        license_refs.insert(text.to_string(), id.clone());
        id
    };

    for (p, r) in inventory.packages.iter().zip(&refs) {
        let id = spdx_id(p, r);
        let declared: Vec<String> = p
            .licenses
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(&mut license_ref)
            .collect();
        let declared = if declared.is_empty() {
            "NOASSERTION".to_string()
        } else {
            declared.join(" AND ")
        };
        let mut source = format!("{} listed in {}", p.kind.name(), p.path);
        if !p.layer.is_empty() {
            source.push_str(&format!(" (layer {})", p.layer));
        }
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "sourceInfo": source,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(inventory.os.as_ref()),
            }],
        });
        if let Some(src) = &p.source_name {
            let v = p.source_version.as_deref().unwrap_or(&p.version);
            pkg["comment"] = json!(format!("source package {src} {v}"));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }

    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image.name,
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/{}-{}",
            id_chars(&image.name).trim_matches('-'),
            options.uuid()
        ),
        "creationInfo": {
            "created": options.timestamp(),
            "creators": [format!("Tool: {tool}-{tool_version}")],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !license_refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(
            license_refs
                .iter()
                .map(|(text, id)| json!({"licenseId": id, "extractedText": text, "name": text}))
                .collect(),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::id_chars;

    #[test]
    fn ids_keep_only_allowed_characters() {
        assert_eq!(id_chars("@babel/core_1+2:x"), "-babel-core-1-2-x");
        assert_eq!(id_chars("libc6.2-a"), "libc6.2-a");
    }
}
