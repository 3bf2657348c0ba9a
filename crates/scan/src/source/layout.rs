//! Local sources: an OCI image layout directory (`index.json` + `blobs/<alg>/<hex>`), the same
//! layout as a tar (`oci-archive:`), and a docker-archive (see `docker_archive.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use oci::{Descriptor, Digest, ManifestKind};

use super::archive::TarIndex;
use super::{
    BlobReader, ImageMeta, LayoutSelect, MAX_CONFIG_BYTES, MAX_INDEX_DEPTH, MAX_MANIFEST_BYTES,
    OpenOptions, Platform, Result, SourceError, SourceRef, choose_from_index, parse_manifest,
    read_capped, verify,
};

/// The annotation an OCI layout's `index.json` names tags with.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where a local image's files are.
#[derive(Debug)]
enum Store {
    /// A layout directory.
    Dir(PathBuf),
    /// A tar archive; `names` maps blob digests to entry names (docker-archives), otherwise
    /// blobs are at `blobs/<alg>/<hex>`.
    Tar {
        index: TarIndex,
        names: HashMap<Digest, String>,
    },
}

impl Store {
    /// Opens a file of the layout by its name relative to the root; `None` when absent.
    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + Send>>> {
        match self {
            Store::Dir(root) => {
                if name.split('/').any(|p| p == ".." || p.is_empty()) {
                    return Err(SourceError::malformed(
                        root.display().to_string(),
                        format!("bad file name {name:?}"),
                    ));
                }
                let path = root.join(name);
                match File::open(&path) {
                    Ok(f) => Ok(Some(Box::new(f))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SourceError::io(path.display().to_string(), e)),
                }
            }
            Store::Tar { index, .. } => Ok(index
                .open_entry(name)?
                .map(|r| Box::new(r) as Box<dyn Read + Send>)),
        }
    }

    fn blob_name(&self, digest: &Digest) -> String {
        match self {
            Store::Tar { names, .. } if !names.is_empty() => {
                names.get(digest).cloned().unwrap_or_else(|| {
                    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
                })
            }
            _ => format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex()),
        }
    }

    fn where_(&self) -> String {
        match self {
            Store::Dir(p) => p.display().to_string(),
            Store::Tar { index, .. } => index.path().display().to_string(),
        }
    }

    /// Reads a whole small file (capped).
    fn read_file(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let what = format!("{name} in {}", self.where_());
        let r = self
            .open(name)?
            .ok_or_else(|| SourceError::NotFound(what.clone()))?;
        read_capped(r, limit, &what)
    }

    /// Reads a whole small blob (capped) and verifies its digest.
    fn read_blob(&self, digest: &Digest, limit: u64, what: &str) -> Result<Vec<u8>> {
        let name = self.blob_name(digest);
        let r = self.open(&name)?.ok_or_else(|| {
            SourceError::NotFound(format!("{what} {digest} in {}", self.where_()))
        })?;
        let bytes = read_capped(r, limit, &format!("{what} {digest}"))?;
        verify(&format!("{what} {digest}"), &bytes, digest)?;
        Ok(bytes)
    }
}

/// An image read from local files: an OCI layout directory, an oci-archive or a
/// docker-archive. Synchronous; blobs are streamed from the files.
#[derive(Debug)]
pub struct LocalImage {
    meta: ImageMeta,
    store: Store,
}

impl LocalImage {
    /// Opens a local source and resolves it to one image manifest.
    ///
    /// - `oci:` and `oci-archive:`: the entry of `index.json` the tag (its
    ///   `org.opencontainers.image.ref.name`) or digest names, or its only entry; an index is
    ///   resolved by platform. An oci-archive is indexed once (plain tar only: a compressed
    ///   archive is [`SourceError::CompressedArchive`]) and its blobs read by seeking.
    /// - `docker-archive:`: `manifest.json`'s entry (the only one, or the one whose `RepoTags`
    ///   holds the tag). The config digest is the SHA-256 of the config bytes. Layer digests:
    ///   a layer stored as `blobs/sha256/<hex>` (Docker 25+) or named `<hex>.tar` (skopeo) is
    ///   named by that hex; an uncompressed layer otherwise (`<id>/layer.tar` of older `docker
    ///   save`) has its config `rootfs.diff_ids` entry as its digest; failing both, the layer is
    ///   hashed once while opening. Every digest is verified while the layer streams. There is
    ///   no manifest in a docker-archive: [`ImageMeta::manifest_digest`] is the digest of the
    ///   Docker v2 manifest derived from `manifest.json` (config and layers as stored),
    ///   deterministic for the same archive.
    ///
    /// A registry source is refused here (see [`super::RegistryImage`]).
    pub fn open(source: &SourceRef, options: &OpenOptions) -> Result<LocalImage> {
        match source {
            SourceRef::OciDir { path, select } => {
                if !path.is_dir() {
                    return Err(SourceError::NotFound(format!(
                        "OCI layout directory {}",
                        path.display()
                    )));
                }
                let store = Store::Dir(path.clone());
                let meta = resolve_layout(&store, select, options)?;
                Ok(LocalImage { meta, store })
            }
            SourceRef::OciArchive { path, select } => {
                let index = TarIndex::open(path)?;
                let store = Store::Tar {
                    index,
                    names: HashMap::new(),
                };
                let meta = resolve_layout(&store, select, options)?;
                Ok(LocalImage { meta, store })
            }
            SourceRef::DockerArchive { path, tag } => {
                let index = TarIndex::open(path)?;
                let (meta, names) = super::docker_archive::resolve(&index, tag.as_deref())?;
                check_platform(&meta, options)?;
                Ok(LocalImage {
                    meta,
                    store: Store::Tar { index, names },
                })
            }
            SourceRef::Registry(r) => Err(SourceError::Selection(format!(
                "{r} is in a registry: open it with RegistryImage"
            ))),
        }
    }

    /// The image's manifest, config and layers.
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// Opens a blob of the image (a layer, the config) as a stream, verified against the
    /// descriptor's digest and size at the end of the stream.
    pub fn open_blob(&self, d: &Descriptor) -> Result<BlobReader<Box<dyn Read + Send>>> {
        let name = self.store.blob_name(&d.digest);
        let r = self.store.open(&name)?.ok_or_else(|| {
            SourceError::NotFound(format!("blob {} in {}", d.digest, self.store.where_()))
        })?;
        let size = (d.size >= 0).then_some(d.size as u64);
        Ok(BlobReader::new(
            r,
            &d.digest,
            size,
            format!("blob {}", d.digest),
        ))
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

/// Resolves an OCI layout (directory or archive) to one image.
fn resolve_layout(
    store: &Store,
    select: &LayoutSelect,
    options: &OpenOptions,
) -> Result<ImageMeta> {
    let where_ = store.where_();
    // `oci-layout` names the layout version; a missing one means this is no layout at all.
    let marker = store.read_file("oci-layout", 4096)?;
    let marker: OciLayoutFile = serde_json::from_slice(&marker)
        .map_err(|e| SourceError::malformed(format!("oci-layout in {where_}"), e))?;
    if !marker.image_layout_version.starts_with("1.") {
        return Err(SourceError::malformed(
            format!("oci-layout in {where_}"),
            format!(
                "unsupported imageLayoutVersion {}",
                marker.image_layout_version
            ),
        ));
    }
    let index_bytes = store.read_file("index.json", MAX_MANIFEST_BYTES)?;
    let index = parse_manifest(
        Some(oci::media_types::OCI_INDEX),
        &index_bytes,
        &format!("index.json in {where_}"),
    )?;
    let platform = options.platform.clone().unwrap_or_default();
    let entry: Descriptor = match select {
        LayoutSelect::Digest(d) => match index.manifests.iter().find(|m| &m.digest == d) {
            Some(m) => m.clone(),
            None => {
                // skopeo reads any manifest blob by digest, listed or not.
                let bytes = store.read_blob(d, MAX_MANIFEST_BYTES, "manifest")?;
                let m = parse_manifest(None, &bytes, &format!("manifest {d}"))?;
                super::descriptor(&m.media_type, d, bytes.len() as u64)
            }
        },
        LayoutSelect::Tag(t) => {
            let tagged: Vec<Descriptor> = index
                .manifests
                .iter()
                .filter(|m| ref_name(m) == Some(t.as_str()))
                .cloned()
                .collect();
            match tagged.len() {
                0 => {
                    return Err(SourceError::NotFound(format!("tag {t:?} in {where_}")));
                }
                1 => tagged[0].clone(),
                _ => pick_platform(tagged, &platform, &where_)?,
            }
        }
        LayoutSelect::Only => match index.manifests.len() {
            0 => return Err(SourceError::Selection(format!("{where_} holds no image"))),
            1 => index.manifests[0].clone(),
            _ if index.manifests.iter().all(|m| m.platform.is_some()) => {
                pick_platform(index.manifests.clone(), &platform, &where_)?
            }
            _ => {
                let tags: Vec<&str> = index.manifests.iter().filter_map(ref_name).collect();
                return Err(SourceError::Selection(format!(
                    "{where_} holds {} images: name one (tags: {})",
                    index.manifests.len(),
                    tags.join(", ")
                )));
            }
        },
    };
    walk_to_image(store, entry, options)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
}

fn pick_platform(entries: Vec<Descriptor>, platform: &Platform, what: &str) -> Result<Descriptor> {
    let synthetic = oci::Manifest {
        media_type: oci::media_types::OCI_INDEX.into(),
        kind: ManifestKind::Index,
        config: None,
        layers: vec![],
        manifests: entries,
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    choose_from_index(&synthetic, platform, what)
}

/// Follows indexes from `entry` down to one image manifest, then reads its config.
fn walk_to_image(store: &Store, mut entry: Descriptor, options: &OpenOptions) -> Result<ImageMeta> {
    let platform = options.platform.clone().unwrap_or_default();
    let mut index_digest = None;
    for _ in 0..MAX_INDEX_DEPTH {
        let what = format!("manifest {}", entry.digest);
        let bytes = store.read_blob(&entry.digest, MAX_MANIFEST_BYTES, "manifest")?;
        let m = parse_manifest(None, &bytes, &what)?;
        match m.kind {
            ManifestKind::Index => {
                index_digest = Some(entry.digest.clone());
                entry = choose_from_index(&m, &platform, &what)?;
            }
            ManifestKind::Image => {
                let config_d = m
                    .config
                    .clone()
                    .ok_or_else(|| SourceError::malformed(&what, "no config"))?;
                let config = store.read_blob(&config_d.digest, MAX_CONFIG_BYTES, "config")?;
                let meta = ImageMeta::new(entry.digest.clone(), &m, bytes, index_digest, config)?;
                check_platform(&meta, options)?;
                return Ok(meta);
            }
        }
    }
    Err(SourceError::malformed(
        store.where_(),
        format!("indexes nest deeper than {MAX_INDEX_DEPTH}"),
    ))
}

/// An explicitly requested platform must be the image's, even when no index chose it.
pub(super) fn check_platform(meta: &ImageMeta, options: &OpenOptions) -> Result<()> {
    if let Some(want) = &options.platform {
        let have = meta.platform();
        if !want.accepts(&have) {
            return Err(SourceError::NoPlatform {
                wanted: want.to_string(),
                available: have.to_string(),
            });
        }
    }
    Ok(())
}
