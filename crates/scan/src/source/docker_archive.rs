//! docker-archive: what `docker save` and `skopeo copy ... docker-archive:FILE` write. A tar
//! holding `manifest.json` (`[{"Config": "...", "RepoTags": [...], "Layers": [...]}]`), the
//! config JSON and the layers as tar entries, named by path:
//!
//! - skopeo: `<config-hex>.json`, layers `<diffid-hex>.tar` (uncompressed, so the diff ID is
//!   also the digest of the bytes);
//! - `docker save` before 25: `<hex>.json`, `<v1-id>/layer.tar` (uncompressed; the id is no
//!   digest);
//! - `docker save` 25+: an OCI layout too, `manifest.json` pointing into `blobs/sha256/<hex>`.

use std::collections::HashMap;
use std::io::Read;

use oci::{Digest, Hasher};
use serde::Deserialize;

use super::archive::{TarIndex, read_up_to};
use super::{ImageMeta, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Result, SourceError, read_capped};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A 64-hex SHA-256 named by an entry name: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>.tar`.
fn hex_name(name: &str) -> Option<Digest> {
    let base = name.strip_prefix("blobs/sha256/").or_else(|| {
        name.strip_suffix(".tar")
            .or_else(|| name.strip_suffix(".json"))
            .filter(|b| !b.contains('/'))
    })?;
    Digest::parse(&format!("sha256:{base}")).ok()
}

fn same_tag(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (oci::ImageRef::parse(a), oci::ImageRef::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Reads `manifest.json`, chooses the image and works out its config and layer digests.
/// Returns the image's metadata and the entry name of each blob.
pub(super) fn resolve(
    index: &TarIndex,
    tag: Option<&str>,
) -> Result<(ImageMeta, HashMap<Digest, String>)> {
    let where_ = index.path().display().to_string();
    let mf_what = format!("manifest.json in {where_}");
    let r = index
        .open_entry("manifest.json")?
        .ok_or_else(|| SourceError::NotFound(mf_what.clone()))?;
    let bytes = read_capped(r, MAX_MANIFEST_BYTES, &mf_what)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|e| SourceError::malformed(&mf_what, e))?;
    let entry = match tag {
        Some(t) => entries
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|rt| same_tag(rt, t)))
            .ok_or_else(|| SourceError::NotFound(format!("image {t:?} in {where_}")))?,
        None => match entries.as_slice() {
            [one] => one,
            [] => return Err(SourceError::Selection(format!("{where_} holds no image"))),
            many => {
                let tags: Vec<&str> = many
                    .iter()
                    .flat_map(|e| e.repo_tags.iter().flatten().map(String::as_str))
                    .collect();
                return Err(SourceError::Selection(format!(
                    "{where_} holds {} images: name one (tags: {})",
                    many.len(),
                    tags.join(", ")
                )));
            }
        },
    };

    let cfg_what = format!("config {} in {where_}", entry.config);
    let r = index
        .open_entry(&entry.config)?
        .ok_or_else(|| SourceError::NotFound(cfg_what.clone()))?;
    let config_bytes = read_capped(r, MAX_CONFIG_BYTES, &cfg_what)?;
    let config_digest = Digest::sha256(&config_bytes);
    if let Some(named) = hex_name(&entry.config)
        && named != config_digest
    {
        return Err(SourceError::DigestMismatch {
            what: cfg_what,
            expected: named,
            actual: config_digest,
        });
    }
    let config = super::ImageConfig::parse(&config_bytes)?;
    if !config.diff_ids.is_empty() && config.diff_ids.len() != entry.layers.len() {
        return Err(SourceError::malformed(
            &cfg_what,
            format!(
                "{} diff_ids for {} layers",
                config.diff_ids.len(),
                entry.layers.len()
            ),
        ));
    }

    let mut names = HashMap::new();
    let mut layers_json = Vec::new();
    for (i, name) in entry.layers.iter().enumerate() {
        let what = format!("layer {name} in {where_}");
        let size = index
            .size(name)
            .ok_or_else(|| SourceError::NotFound(what.clone()))?;
        let mut magic = [0u8; 4];
        let n = {
            let mut r = index
                .open_entry(name)?
                .ok_or_else(|| SourceError::NotFound(what.clone()))?;
            read_up_to(&mut r, &mut magic).map_err(|e| SourceError::io(&what, e))?
        };
        let media_type = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            LAYER_GZIP
        } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            LAYER_ZSTD
        } else {
            LAYER_TAR
        };
        let digest = match (hex_name(name), config.diff_ids.get(i)) {
            (Some(d), _) => d,
            (None, Some(diff_id)) if media_type == LAYER_TAR => diff_id.clone(),
            _ => {
                // Neither name nor config says: hash it once (streaming).
                let mut r = index
                    .open_entry(name)?
                    .ok_or_else(|| SourceError::NotFound(what.clone()))?;
                let mut h = Hasher::new(oci::Algorithm::Sha256);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let k = r.read(&mut buf).map_err(|e| SourceError::io(&what, e))?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                }
                h.finish()
            }
        };
        names.insert(digest.clone(), name.clone());
        layers_json.push(serde_json::json!({
            "mediaType": media_type,
            "size": size,
            "digest": digest.to_string(),
        }));
    }
    names.insert(config_digest.clone(), entry.config.clone());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::media_types::DOCKER_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "size": config_bytes.len(),
            "digest": config_digest.to_string(),
        },
        "layers": layers_json,
    });
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| SourceError::malformed(&mf_what, e))?;
    let parsed = super::parse_manifest(None, &manifest_bytes, &mf_what)?;
    let manifest_digest = Digest::sha256(&manifest_bytes);
    let meta = ImageMeta::new(manifest_digest, &parsed, manifest_bytes, None, config_bytes)?;
    Ok((meta, names))
}

#[cfg(test)]
mod tests {
    use super::hex_name;

    #[test]
    fn digests_come_from_names_that_carry_them() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for n in [
            format!("blobs/sha256/{hex}"),
            format!("{hex}.tar"),
            format!("{hex}.json"),
        ] {
            assert_eq!(hex_name(&n).unwrap().hex(), hex, "{n}");
        }
        assert!(hex_name(&format!("{hex}/layer.tar")).is_none());
        assert!(hex_name("abc.tar").is_none());
    }
}
