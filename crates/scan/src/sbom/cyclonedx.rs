//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>).

use serde_json::{Value, json};

use super::{ImageInfo, SbomOptions, bom_refs};
use crate::inventory::{ImageInventory, OsRelease, Package, PackageKind};

/// The specification version written.
pub const CYCLONEDX_SPEC_VERSION: &str = "1.6";

/// The bom-ref of the image (the BOM's subject).
pub(crate) const IMAGE_REF: &str = "image";

/// A CycloneDX 1.6 BOM of the image: `metadata.component` is the image (type `container`,
/// with its purl and properties `wharf:image:*`); `components` are the distribution (type
/// `operating-system`) and one `library` per package with its purl, a `bom-ref` from
/// [`super::bom_refs`], `licenses` (by name, as the package declares them; a single SPDX
/// expression with `AND`/`OR`/`WITH` as an `expression`) and properties `wharf:package:kind`,
/// `wharf:package:path`, `wharf:package:layer` (the layer digest), `wharf:package:source-name`,
/// `wharf:package:source-version`, `wharf:package:arch` where known.
pub fn cyclonedx(image: &ImageInfo, inventory: &ImageInventory, options: &SbomOptions) -> Value {
    let (tool, tool_version) = options.tool();
    let refs = bom_refs(inventory);
    let mut components: Vec<Value> = Vec::new();
    if let Some(os) = &inventory.os {
        components.push(os_component(os));
    }
    for (p, r) in inventory.packages.iter().zip(&refs) {
        components.push(cyclonedx_component(p, inventory.os.as_ref(), r));
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": CYCLONEDX_SPEC_VERSION,
        "serialNumber": format!("urn:uuid:{}", options.uuid()),
        "version": 1,
        "metadata": {
            "timestamp": options.timestamp(),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": tool,
                    "version": tool_version,
                }]
            },
            "component": image_component(image),
        },
        "components": components,
    })
}

fn props(pairs: &[(&str, Option<&str>)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.filter(|v| !v.is_empty())
                    .map(|v| json!({"name": k, "value": v}))
            })
            .collect(),
    )
}

fn image_component(image: &ImageInfo) -> Value {
    let mut c = json!({
        "type": "container",
        "bom-ref": IMAGE_REF,
        "name": image.name,
        "properties": props(&[
            ("wharf:image:manifest-digest", image.manifest_digest.as_deref()),
            ("wharf:image:created", image.created.as_deref()),
            ("wharf:image:os", image.os.as_deref()),
            ("wharf:image:architecture", image.architecture.as_deref()),
        ]),
    });
    if let Some(d) = &image.manifest_digest {
        c["version"] = json!(d);
    }
    if let Some(p) = image.purl() {
        c["purl"] = json!(p);
    }
    c
}

fn os_component(os: &OsRelease) -> Value {
    let mut c = json!({
        "type": "operating-system",
        "bom-ref": format!("os:{}@{}", os.id, os.version_id.as_deref().unwrap_or("")),
        "name": os.id,
    });
    if let Some(v) = &os.version_id {
        c["version"] = json!(v);
    }
    if let Some(p) = &os.pretty_name {
        c["description"] = json!(p);
    }
    c
}

/// CycloneDX `licenses` for a package's declared licences: one SPDX expression as an
/// `expression`, otherwise each by `name` (the declared text is not checked against the SPDX
/// list, so it is never claimed as an `id`).
fn licenses(list: &[String]) -> Option<Value> {
    let list: Vec<&str> = list
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    match list.as_slice() {
        [] => None,
        [one]
            if [" AND ", " OR ", " WITH "]
                .iter()
                .any(|op| one.contains(op))
                && one
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " .-+:()".contains(c)) =>
        {
            Some(json!([{"expression": one}]))
        }
        many => Some(Value::Array(
            many.iter()
                .map(|n| json!({"license": {"name": n}}))
                .collect(),
        )),
    }
}

/// One package as a CycloneDX component, with the given bom-ref.
pub fn cyclonedx_component(p: &Package, os: Option<&OsRelease>, bom_ref: &str) -> Value {
    let (group, name) = match p.kind {
        PackageKind::Maven => match p.name.split_once(':') {
            Some((g, a)) => (Some(g), a),
            None => (None, p.name.as_str()),
        },
        PackageKind::Npm if p.name.starts_with('@') => match p.name.split_once('/') {
            Some((g, n)) => (Some(g), n),
            None => (None, p.name.as_str()),
        },
        _ => (None, p.name.as_str()),
    };
    let mut c = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": name,
        "version": p.version,
        "purl": p.purl(os),
        "properties": props(&[
            ("wharf:package:kind", Some(p.kind.name())),
            ("wharf:package:path", Some(&p.path)),
            ("wharf:package:layer", Some(&p.layer)),
            ("wharf:package:source-name", p.source_name.as_deref()),
            ("wharf:package:source-version", p.source_version.as_deref()),
            ("wharf:package:arch", p.arch.as_deref()),
        ]),
    });
    if let Some(g) = group {
        c["group"] = json!(g);
    }
    if let Some(l) = licenses(&p.licenses) {
        c["licenses"] = l;
    }
    c
}
