//! Online backups and restores of a data directory (docs/operations.md, "Backups").
//!
//! A backup is a directory:
//!
//! ```text
//! <backup>/
//!   meta.redb              a consistent copy of the metadata (one read snapshot)
//!   blobs/<alg>/<xx>/<hex> every blob that copy names, each verified against its digest
//!   wharf-backup.json      the manifest (BackupManifest), written last: format, time,
//!                          counts, sizes, the metadata copy's SHA-256
//! ```
//!
//! The same entries, in that order, travel as a tar stream from a server's
//! `POST /api/v1/backup` to the client, which unpacks them with [`unpack_tar`] into a
//! [`BackupDir`] (so a backup made through a server and one made on a data directory are the
//! same directory). [`restore`] verifies a backup and writes a fresh data directory from it.
//!
//! Consistency: the metadata copy is one read transaction
//! ([`MetaStore::backup_snapshot`](crate::MetaStore::backup_snapshot)); blobs are content
//! addressed and immutable, so a blob file copied later holds exactly what the snapshot named,
//! provided nothing deletes it in between: the caller keeps garbage collection (the only
//! deleter of blob files) paused from before the snapshot until the last blob is copied.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci::{Algorithm, Digest, Hasher};
use serde::{Deserialize, Serialize};

use crate::StoreError;
pub use crate::meta::redb::backup::SnapshotReader;

/// The backup format this version writes and reads.
pub const FORMAT: u32 = 1;
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "wharf-backup.json";
/// The metadata copy's file name (also its name in a data directory).
pub const META_FILE: &str = "meta.redb";
/// Blobs listed from the metadata copy per page (bounds memory).
pub const BLOB_PAGE: usize = 1024;
/// Largest manifest file read (it holds counts, not lists).
const MAX_MANIFEST: u64 = 1024 * 1024;
/// Copy buffer.
const BUF: usize = 256 * 1024;

/// What a metadata copy holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCounts {
    /// Repositories.
    pub repositories: u64,
    /// Manifests (tagged or not).
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Records (users, robots, groups, rules, audit events).
    pub records: u64,
    /// Blobs it names.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
}

/// A metadata snapshot written by [`MetaStore::backup_snapshot`](crate::MetaStore::backup_snapshot):
/// the file is deleted when this is dropped.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    counts: SnapshotCounts,
}

impl SnapshotFile {
    /// Takes charge of the file at `path` (deleted on drop).
    pub fn new(path: PathBuf, counts: SnapshotCounts) -> Self {
        SnapshotFile { path, counts }
    }

    /// The same file with `counts`.
    pub fn with_counts(mut self, counts: SnapshotCounts) -> Self {
        self.counts = counts;
        self
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What it holds.
    pub fn counts(&self) -> SnapshotCounts {
        self.counts
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A file of a backup with its size and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Path in the backup (`/`-separated).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `wharf-backup.json`: what a backup holds, so a restore can verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Unix seconds when the metadata snapshot was taken.
    pub created: u64,
    /// Version of the Wharf that wrote it.
    pub wharf_version: String,
    /// The metadata copy.
    pub metadata: FileSum,
    /// What the metadata copy holds (its blobs are the backup's blobs).
    pub counts: SnapshotCounts,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Content does not match its digest or checksum.
    #[error("{what} is corrupt: expected {expected}, found {actual}")]
    Corrupt {
        /// The blob or file.
        what: String,
        /// What the backup says.
        expected: String,
        /// What the bytes are.
        actual: String,
    },
    /// Something the backup must hold is not there.
    #[error("{0}")]
    Missing(String),
    /// A restore's destination already holds something.
    #[error("{0} exists and is not empty: restore writes only into a new or empty directory")]
    NotEmpty(PathBuf),
    /// A backup directory or stream that is not a Wharf backup of a format this version reads.
    #[error("not a usable backup: {0}")]
    Invalid(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Result alias.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Where a blob lives, relative to a data directory or a backup: `blobs/<alg>/<xx>/<hex>`.
pub fn blob_rel_path(d: &Digest) -> String {
    let hex = d.hex();
    format!("blobs/{}/{}/{hex}", d.algorithm().as_str(), &hex[..2])
}

/// What an entry of a backup is, from its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `meta.redb`.
    Meta,
    /// `wharf-backup.json`.
    Manifest,
    /// A blob, by its path.
    Blob(Digest),
}

impl Entry {
    /// Classifies a path of a backup; anything else (including `..`, absolute paths, a blob
    /// path whose fan-out directory does not match) is refused.
    pub fn of(path: &str) -> Result<Entry> {
        let path = path.strip_prefix("./").unwrap_or(path);
        match path {
            META_FILE => return Ok(Entry::Meta),
            MANIFEST_FILE => return Ok(Entry::Manifest),
            _ => {}
        }
        let bad = || BackupError::Invalid(format!("unexpected entry {path:?}"));
        let parts: Vec<&str> = path.split('/').collect();
        let [b, alg, fan, hex] = parts[..] else {
            return Err(bad());
        };
        if b != "blobs" || hex.get(..2) != Some(fan) {
            return Err(bad());
        }
        let d = Digest::parse(&format!("{alg}:{hex}")).map_err(|_| bad())?;
        Ok(Entry::Blob(d))
    }
}

/// Checks that `dir` does not exist or is an empty directory.
pub fn check_fresh(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => match rd.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::NotEmpty(dir.to_owned())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(BackupError::NotEmpty(dir.to_owned()))
        }
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Copies `src` to a new file `dest` (through a temporary name, fsynced, renamed), feeding
/// `hasher`, calling `progress` with each chunk's length. At most `limit` bytes are accepted.
fn copy_into(
    src: &mut dyn Read,
    dest: &Path,
    hasher: &mut Hasher,
    limit: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    crate::private_dir(dir).map_err(io_at(dir))?;
    let tmp = dir.join(format!(
        ".tmp-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut out = create_private(&tmp)?;
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        let k = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_at(dest)(e));
            }
        };
        n += k as u64;
        if n > limit {
            let _ = std::fs::remove_file(&tmp);
            return Err(BackupError::Corrupt {
                what: dest.display().to_string(),
                expected: format!("{limit} bytes"),
                actual: "more".into(),
            });
        }
        hasher.update(&buf[..k]);
        out.write_all(&buf[..k]).map_err(io_at(&tmp))?;
        progress(k as u64);
    }
    out.sync_all().map_err(io_at(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, dest).map_err(io_at(dest))?;
    Ok(n)
}

fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))
}

fn hash_file(path: &Path, alg: Algorithm, progress: &mut dyn FnMut(u64)) -> Result<(Digest, u64)> {
    let mut f = File::open(path).map_err(io_at(path))?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        let k = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(path)(e)),
        };
        h.update(&buf[..k]);
        n += k as u64;
        progress(k as u64);
    }
    Ok((h.finish(), n))
}

fn check_blob(d: &Digest, size: u64, got: &Digest, n: u64) -> Result<()> {
    if got != d || n != size {
        return Err(BackupError::Corrupt {
            what: format!("blob {d}"),
            expected: format!("{size} bytes hashing to {d}"),
            actual: format!("{n} bytes hashing to {got}"),
        });
    }
    Ok(())
}

fn sync_tree(dir: &Path) {
    // Directory entries of new files: best effort per directory (a failure here is reported by
    // the files' own fsyncs on the next write, and a restore re-verifies everything).
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                sync_tree(&e.path());
            }
        }
    }
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A backup being written into a directory: entries are added, each verified as it is
/// written, and [`BackupDir::finish`] writes the manifest last. A directory without a manifest
/// is an incomplete backup and restore refuses it.
pub struct BackupDir {
    root: PathBuf,
    meta: Option<FileSum>,
    blobs: u64,
    blob_bytes: u64,
}

impl BackupDir {
    /// Starts a backup in `root`, which must not exist or be empty (it is created, owner only).
    pub fn create(root: &Path) -> Result<Self> {
        check_fresh(root)?;
        crate::private_dir(root).map_err(io_at(root))?;
        Ok(BackupDir {
            root: root.to_owned(),
            meta: None,
            blobs: 0,
            blob_bytes: 0,
        })
    }

    /// Where it is written.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Blobs and bytes written so far.
    pub fn written(&self) -> (u64, u64) {
        (self.blobs, self.blob_bytes)
    }

    /// Writes the metadata copy from `src`.
    pub fn put_meta(&mut self, src: &mut dyn Read, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let mut h = Hasher::new(Algorithm::Sha256);
        let size = copy_into(src, &self.root.join(META_FILE), &mut h, u64::MAX, progress)?;
        self.meta = Some(FileSum {
            path: META_FILE.into(),
            size,
            sha256: h.finish().hex().to_owned(),
        });
        Ok(())
    }

    /// Writes blob `d` of `size` bytes from `src`, verifying its length and digest.
    pub fn put_blob(
        &mut self,
        d: &Digest,
        size: u64,
        src: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let dest = self.root.join(blob_rel_path(d));
        let mut h = Hasher::new(d.algorithm());
        let n = copy_into(src, &dest, &mut h, size, progress)?;
        if let Err(e) = check_blob(d, size, &h.finish(), n) {
            let _ = std::fs::remove_file(&dest);
            return Err(e);
        }
        self.blobs += 1;
        self.blob_bytes += n;
        Ok(())
    }

    /// Adds blob `d` from the file `src` by a hard link (same filesystem; the file is immutable
    /// once published, so the link is a copy that takes no space), verified by reading it.
    /// Returns `false`, having done nothing, when the link cannot be made (another
    /// filesystem): the caller copies instead.
    pub fn link_blob(
        &mut self,
        d: &Digest,
        size: u64,
        src: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<bool> {
        let dest = self.root.join(blob_rel_path(d));
        let dir = dest.parent().unwrap_or(Path::new("."));
        crate::private_dir(dir).map_err(io_at(dir))?;
        match std::fs::hard_link(src, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackupError::Missing(format!(
                    "blob {d} is named by the metadata but missing from the store ({})",
                    src.display()
                )));
            }
            Err(e) => return Err(io_at(&dest)(e)),
        }
        let (got, n) = hash_file(&dest, d.algorithm(), progress)?;
        if let Err(e) = check_blob(d, size, &got, n) {
            let _ = std::fs::remove_file(&dest);
            return Err(e);
        }
        self.blobs += 1;
        self.blob_bytes += n;
        Ok(true)
    }

    /// Writes the manifest of a backup made here: the metadata copy must be written, and every
    /// blob `counts` names.
    pub fn finish(
        self,
        created: u64,
        wharf_version: &str,
        counts: SnapshotCounts,
    ) -> Result<BackupManifest> {
        let metadata = self
            .meta
            .clone()
            .ok_or_else(|| BackupError::Missing("the backup has no metadata copy".into()))?;
        let m = BackupManifest {
            format: FORMAT,
            created,
            wharf_version: wharf_version.to_owned(),
            metadata,
            counts,
        };
        self.finish_as(m)
    }

    /// Checks what was written against manifest `m` (received from a server, last) and writes
    /// it.
    pub fn finish_as(self, m: BackupManifest) -> Result<BackupManifest> {
        if m.format != FORMAT {
            return Err(BackupError::Invalid(format!(
                "format {} (this version reads {FORMAT})",
                m.format
            )));
        }
        let meta = self
            .meta
            .as_ref()
            .ok_or_else(|| BackupError::Missing("the backup has no metadata copy".into()))?;
        if *meta != m.metadata {
            return Err(BackupError::Corrupt {
                what: META_FILE.into(),
                expected: format!("{} bytes, sha256 {}", m.metadata.size, m.metadata.sha256),
                actual: format!("{} bytes, sha256 {}", meta.size, meta.sha256),
            });
        }
        if (self.blobs, self.blob_bytes) != (m.counts.blobs, m.counts.blob_bytes) {
            return Err(BackupError::Missing(format!(
                "the backup should hold {} blobs ({} bytes) but holds {} ({} bytes)",
                m.counts.blobs, m.counts.blob_bytes, self.blobs, self.blob_bytes
            )));
        }
        let path = self.root.join(MANIFEST_FILE);
        let body = serde_json::to_vec_pretty(&m)
            .map_err(|e| BackupError::Invalid(format!("manifest: {e}")))?;
        let mut h = Hasher::new(Algorithm::Sha256);
        sync_tree(&self.root);
        copy_into(&mut &body[..], &path, &mut h, u64::MAX, &mut |_| {})?;
        if let Ok(f) = File::open(&self.root) {
            let _ = f.sync_all();
        }
        Ok(m)
    }
}

/// The 512-byte ustar header of a regular file entry `path` of `size` bytes (mode 0600).
pub fn tar_header(path: &str, size: u64) -> Result<[u8; 512]> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| BackupError::Invalid(format!("{path}: {e}")))?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    h.set_cksum();
    Ok(*h.as_bytes())
}

/// Zero bytes that pad an entry of `size` bytes to the tar block size.
pub fn tar_padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// The end of a tar archive (two zero blocks).
pub const TAR_END: [u8; 1024] = [0; 1024];

/// Unpacks a backup's tar stream (as `POST /api/v1/backup` sends it) into `dir`, verifying
/// each entry, and writes the manifest, which must come last. A stream that ends before its
/// manifest (the server failed, or a blob did not match its digest there) is refused.
pub fn unpack_tar(
    src: impl Read,
    mut dir: BackupDir,
    progress: &mut dyn FnMut(u64),
) -> Result<BackupManifest> {
    let mut ar = tar::Archive::new(src);
    let bad = |e: io::Error| BackupError::Invalid(format!("backup stream: {e}"));
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BackupError::Invalid(
                "backup stream: not a regular file".into(),
            ));
        }
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let size = entry.size();
        match Entry::of(&path)? {
            Entry::Meta => dir.put_meta(&mut entry, progress)?,
            Entry::Blob(d) => dir.put_blob(&d, size, &mut entry, progress)?,
            Entry::Manifest => {
                if size > MAX_MANIFEST {
                    return Err(BackupError::Invalid("manifest too large".into()));
                }
                let mut body = Vec::new();
                entry.read_to_end(&mut body).map_err(bad)?;
                let m: BackupManifest = serde_json::from_slice(&body)
                    .map_err(|e| BackupError::Invalid(format!("manifest: {e}")))?;
                return dir.finish_as(m);
            }
        }
    }
    Err(BackupError::Missing(
        "the backup stream ended before its manifest: the backup is incomplete (see the server's log)"
            .into(),
    ))
}

/// Reads and checks a backup's manifest.
pub fn read_manifest(backup: &Path) -> Result<BackupManifest> {
    let path = backup.join(MANIFEST_FILE);
    let f = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BackupError::Invalid(format!(
            "{} has no {MANIFEST_FILE}: not a backup, or an incomplete one",
            backup.display()
        )),
        _ => io_at(&path)(e),
    })?;
    let mut body = Vec::new();
    f.take(MAX_MANIFEST)
        .read_to_end(&mut body)
        .map_err(io_at(&path))?;
    let m: BackupManifest = serde_json::from_slice(&body)
        .map_err(|e| BackupError::Invalid(format!("{}: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "format {} (this version reads {FORMAT})",
            m.format
        )));
    }
    Ok(m)
}

/// What a restore wrote.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: BackupManifest,
    /// Blobs written.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
}

/// Verifies the backup in `from` and writes a data directory `to` from it (which must not
/// exist or be empty): the metadata copy's checksum, its counts against the manifest, and every
/// blob it names (present, of its size, hashing to its digest). Blobs are written first and the
/// metadata last, so a restore cut short leaves no `meta.redb`; on any failure what was written
/// is removed. `progress` gets the bytes read (about twice the backup's size: the metadata is
/// hashed before it is copied).
pub fn restore(from: &Path, to: &Path, progress: &mut dyn FnMut(u64)) -> Result<RestoreReport> {
    check_fresh(to)?;
    let manifest = read_manifest(from)?;
    let meta_src = from.join(META_FILE);
    let (sum, n) = hash_file(&meta_src, Algorithm::Sha256, &mut |_| {})?;
    if sum.hex() != manifest.metadata.sha256 || n != manifest.metadata.size {
        return Err(BackupError::Corrupt {
            what: meta_src.display().to_string(),
            expected: format!(
                "{} bytes, sha256 {}",
                manifest.metadata.size, manifest.metadata.sha256
            ),
            actual: format!("{n} bytes, sha256 {}", sum.hex()),
        });
    }
    let snap = SnapshotReader::open(&meta_src)?;
    let counts = snap.counts()?;
    if counts != manifest.counts {
        return Err(BackupError::Corrupt {
            what: meta_src.display().to_string(),
            expected: format!("{:?}", manifest.counts),
            actual: format!("{counts:?}"),
        });
    }
    let existed = to.exists();
    let r = write_restore(from, to, &snap, &manifest.metadata.sha256, progress);
    drop(snap);
    match r {
        Ok((blobs, blob_bytes)) => Ok(RestoreReport {
            manifest,
            blobs,
            blob_bytes,
        }),
        Err(e) => {
            // `to` was new or empty: put it back as it was.
            if existed {
                if let Ok(rd) = std::fs::read_dir(to) {
                    for e in rd.flatten() {
                        let _ = std::fs::remove_dir_all(e.path())
                            .or_else(|_| std::fs::remove_file(e.path()));
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(to);
            }
            Err(e)
        }
    }
}

fn write_restore(
    from: &Path,
    to: &Path,
    snap: &SnapshotReader,
    expected_meta: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64)> {
    crate::private_dir(to).map_err(io_at(to))?;
    for d in ["blobs", "uploads"] {
        crate::private_dir(&to.join(d)).map_err(io_at(to))?;
    }
    let (mut blobs, mut bytes) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let page = snap.blobs(after.as_deref(), BLOB_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.to_string());
        for (d, size) in page {
            let rel = blob_rel_path(&d);
            let src = from.join(&rel);
            let mut f = File::open(&src).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => BackupError::Missing(format!(
                    "blob {d} is named by the backup's metadata but missing from the backup ({})",
                    src.display()
                )),
                _ => io_at(&src)(e),
            })?;
            let mut h = Hasher::new(d.algorithm());
            let dest = to.join(&rel);
            let n = copy_into(&mut f, &dest, &mut h, size, progress)?;
            check_blob(&d, size, &h.finish(), n)?;
            blobs += 1;
            bytes += n;
        }
    }
    let src = from.join(META_FILE);
    let mut meta = File::open(&src).map_err(io_at(&src))?;
    let mut h = Hasher::new(Algorithm::Sha256);
    copy_into(&mut meta, &to.join(META_FILE), &mut h, u64::MAX, progress)?;
    let got = h.finish();
    if got.hex() != expected_meta {
        return Err(BackupError::Corrupt {
            what: src.display().to_string(),
            expected: format!("sha256 {expected_meta}"),
            actual: format!("sha256 {} (changed during the restore)", got.hex()),
        });
    }
    sync_tree(to);
    Ok((blobs, bytes))
}

#[cfg(test)]
mod tests;
