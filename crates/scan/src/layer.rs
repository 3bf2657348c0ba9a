//! The layer walker: reads one image layer (a tar stream, gzip- or zstd-compressed or plain)
//! once, front to back, and builds its [`LayerInventory`].
//!
//! Nothing is extracted to disk and the layer is never held whole: tar entries are streamed,
//! each regular file is offered to every analyser by its path, size and mode
//! ([`Analyzer::wants`]), and only the files some analyser asked for are read, by that analyser,
//! through a reader bounded by the entry's size. When two analysers want the same file, its
//! content is buffered once, up to [`SHARED_READ_CAP`] bytes, and handed to each; a larger file
//! goes to the first analyser only (the others are skipped with a warning).
//!
//! Paths are normalised (`./etc/x` and `etc/x` both become `/etc/x`); an entry whose path
//! climbs out of the root (`../../etc/passwd`) fails the layer. Whiteouts (`.wh.NAME`) and
//! opaque directories (`.wh..wh..opq`) are recorded, not applied: applying them is
//! [`ImageInventory::combine`](crate::ImageInventory::combine)'s job. A path written twice in
//! one layer keeps only its last entry's findings.
//!
//! Hard links: a link whose target was read earlier in the same layer by an analyser that also
//! wants the link's own path gets a copy of that analyser's finding (with the link's path); any
//! other hard link is skipped, since the target's bytes were streamed past and are not kept.
//!
//! Memory: besides the analysers' own (each caps what it reads), at most [`SHARED_READ_CAP`]
//! for a shared file and [`MAX_HEADER_BYTES`] of tar headers and extension records (GNU long
//! names, PAX) between two entries; and the decompressors' windows (gzip 32 KiB; zstd's as the
//! frame asks, at most 128 MiB by libzstd's default limit, a few MiB for real layers).
//!
//! Errors: an analyser's [`AnalyzeError::Malformed`] is logged (`tracing::warn`) and the file
//! skipped; reading the archive failing (truncated or corrupt compression, a broken tar header,
//! oversized extension records) fails the whole layer with a [`LayerError`]; so does an
//! analyser's [`AnalyzeError::Io`], and a read error an analyser swallowed.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Cursor, Read};
use std::rc::Rc;

use tar::EntryType;

use crate::analyze::{AnalyzeError, Analyzer, FileInfo, Found};
use crate::inventory::{FileFinding, LayerInventory};

/// The most bytes of one file buffered in memory so that several analysers can read it.
pub const SHARED_READ_CAP: u64 = 8 << 20;

/// The longest entry path accepted, in bytes (Linux's `PATH_MAX`).
const MAX_PATH_LEN: usize = 4096;

/// The most bytes the tar reader may consume between two entries: padding, headers and the
/// extension entries it keeps in memory (GNU long names and links, PAX records, GNU sparse
/// maps). Real ones take a few KiB; a 10 GB "long name" must not be read into memory.
pub const MAX_HEADER_BYTES: u64 = 4 << 20;

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, Docker's `tar.gzip`).
    Gzip,
    /// Zstandard (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

impl Compression {
    /// Tells the compression from the stream's first bytes (gzip `1f 8b`, zstd
    /// `28 b5 2f fd`); the media type decides only when the bytes are too few to tell
    /// (an empty or nearly empty stream). Anything else is taken as a plain tar stream.
    pub fn detect(head: &[u8], media_type: Option<&str>) -> Compression {
        const GZIP: [u8; 2] = [0x1f, 0x8b];
        const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        if head.starts_with(&GZIP) {
            return Compression::Gzip;
        }
        if head.starts_with(&ZSTD) {
            return Compression::Zstd;
        }
        if head.len() >= ZSTD.len() {
            return Compression::None;
        }
        let hinted = match media_type {
            Some(m) if m.ends_with("gzip") => Compression::Gzip,
            Some(m) if m.ends_with("zstd") => Compression::Zstd,
            _ => Compression::None,
        };
        // Too few bytes for the hinted format's magic: only a plain (empty) stream fits.
        if hinted != Compression::None && !head.is_empty() {
            return Compression::None;
        }
        hinted
    }
}

/// Why a layer could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or decompressing the layer failed: a truncated or corrupt stream, a broken
    /// tar header, or the underlying reader's own error.
    #[error("layer {digest}: reading the archive: {source}")]
    Read {
        /// The layer's digest.
        digest: String,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// An entry's path leaves the root (`..` above `/`) or is unreasonably long: such a layer
    /// is refused, as a container runtime would refuse to unpack it.
    #[error("layer {digest}: entry path {path:?} is unsafe")]
    UnsafePath {
        /// The layer's digest.
        digest: String,
        /// The path as the archive writes it.
        path: String,
    },
}

/// Normalises a tar entry path to an absolute one: `./etc/x`, `etc/x` and `/etc//x/` all
/// become `/etc/x`; `.` components are dropped and `..` removes the previous component.
/// `None` when a `..` would climb above the root, or the path is longer than 4096 bytes.
/// The root itself is `/`.
pub fn normalize_path(raw: &str) -> Option<String> {
    if raw.len() > MAX_PATH_LEN {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(raw.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Reads one layer and says what it holds: the findings of every file the analysers read, its
/// whiteouts and its opaque directories.
///
/// `digest` is recorded as the inventory's digest (and used in errors); `media_type`, when
/// known, is only a hint for compression detection (the stream's magic bytes decide).
/// Memory stays bounded whatever the layer's size: entries are streamed and skipped unless an
/// analyser wants them, and at most [`SHARED_READ_CAP`] bytes of one file are buffered.
pub fn analyze_layer(
    digest: &str,
    media_type: Option<&str>,
    mut reader: impl Read,
    analyzers: &[Box<dyn Analyzer>],
) -> Result<LayerInventory, LayerError> {
    let read_err = |source: io::Error| LayerError::Read {
        digest: digest.to_string(),
        source,
    };
    // Peek at the magic bytes, then put them back in front of the stream.
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    let compression = Compression::detect(&head[..n], media_type);
    tracing::debug!(digest, ?compression, media_type, "reading layer");
    let stream = Cursor::new(head[..n].to_vec()).chain(reader);
    match compression {
        Compression::None => walk(digest, stream, analyzers),
        Compression::Gzip => walk(digest, flate2::read::MultiGzDecoder::new(stream), analyzers),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(stream).map_err(read_err)?;
            walk(digest, decoder, analyzers)
        }
    }
}

/// Walks a decompressed tar stream.
fn walk(
    digest: &str,
    stream: impl Read,
    analyzers: &[Box<dyn Analyzer>],
) -> Result<LayerInventory, LayerError> {
    let read_err = |source: io::Error| LayerError::Read {
        digest: digest.to_string(),
        source,
    };
    // `Some(n)`: counting the header bytes read since the last entry; `None`: inside an entry's
    // data, which is not limited.
    let budget = Rc::new(Cell::new(Some(0u64)));
    let mut archive = tar::Archive::new(Budget {
        inner: stream,
        used: budget.clone(),
    });
    let mut inv = LayerInventory {
        digest: digest.to_string(),
        ..Default::default()
    };
    // Findings by path (indices into `inv.files`), so that a later entry at the same path can
    // drop an earlier one's; `None` marks a dropped finding, removed at the end.
    let mut files: Vec<Option<FileFinding>> = Vec::new();
    let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();

    let entries = archive.entries().map_err(read_err)?;
    for entry in entries {
        let mut entry = entry.map_err(read_err)?;
        budget.set(None);
        read_entry(
            digest,
            &mut entry,
            analyzers,
            &mut inv,
            &mut files,
            &mut by_path,
        )?;
        // Consume what the analysers left of the entry's data (the tar reader would skip it
        // anyway), so that what the reader consumes next is headers only: bounded.
        io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
        budget.set(Some(0));
    }
    // Read to the end of the compressed stream, so that a gzip trailer's checksum is checked
    // and a truncation after the tar's end blocks is seen (only padding is left: cheap).
    let mut rest = archive.into_inner();
    rest.used.set(None);
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    inv.files = files.into_iter().flatten().collect();
    tracing::debug!(
        digest,
        files = inv.files.len(),
        whiteouts = inv.whiteouts.len(),
        opaque = inv.opaque.len(),
        "layer read"
    );
    Ok(inv)
}

/// One tar entry: a whiteout recorded, a regular file offered to the analysers, a hard link
/// resolved if cheap; anything else only replaces earlier findings at its path.
fn read_entry<R: Read>(
    digest: &str,
    entry: &mut tar::Entry<'_, R>,
    analyzers: &[Box<dyn Analyzer>],
    inv: &mut LayerInventory,
    files: &mut Vec<Option<FileFinding>>,
    by_path: &mut HashMap<String, Vec<usize>>,
) -> Result<(), LayerError> {
    let read_err = |source: io::Error| LayerError::Read {
        digest: digest.to_string(),
        source,
    };
    {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize_path(&raw) else {
            return Err(LayerError::UnsafePath {
                digest: digest.to_string(),
                path: raw,
            });
        };
        // Any entry at a path replaces what an earlier entry there said.
        if let Some(old) = by_path.remove(&path) {
            for i in old {
                files[i] = None;
            }
        }
        let (dir, name) = split_parent(&path);
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                inv.opaque.push(dir.to_string());
            } else if !hidden.is_empty() && !hidden.starts_with(".wh.") {
                // (`.wh..wh.plnk`, `.wh..wh.aufs`: AUFS's own bookkeeping, not whiteouts.)
                let gone = if dir == "/" {
                    format!("/{hidden}")
                } else {
                    format!("{dir}/{hidden}")
                };
                inv.whiteouts.push(gone);
            }
            return Ok(());
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0);
        let size = entry.size();
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Link => {
                link(entry, &path, size, mode, analyzers, files, by_path);
                return Ok(());
            }
            _ => return Ok(()),
        }
        let info = FileInfo {
            path: &path,
            size,
            mode,
        };
        let wanted: Vec<&dyn Analyzer> = analyzers
            .iter()
            .map(|a| a.as_ref())
            .filter(|a| a.wants(&info))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut results: Vec<(&'static str, Found)> = Vec::new();
        if wanted.len() == 1 || size > SHARED_READ_CAP {
            if wanted.len() > 1 {
                tracing::warn!(
                    digest,
                    path = %path,
                    size,
                    skipped = ?wanted[1..].iter().map(|a| a.name()).collect::<Vec<_>>(),
                    "file wanted by several analysers is too large to buffer; only the first reads it"
                );
            }
            let analyzer = wanted[0];
            let mut latch = Latch::new(entry);
            let out = analyzer.analyze(&info, &mut latch);
            if let Some(e) = latch.error.take() {
                return Err(read_err(e));
            }
            collect(digest, analyzer.name(), out, &mut results)?;
        } else {
            let mut buf = Vec::with_capacity(size as usize);
            (&mut *entry)
                .take(size)
                .read_to_end(&mut buf)
                .map_err(read_err)?;
            for analyzer in wanted {
                let out = analyzer.analyze(&info, &mut Cursor::new(&buf[..]));
                collect(digest, analyzer.name(), out, &mut results)?;
            }
        }
        for (name, found) in results {
            by_path.entry(path.clone()).or_default().push(files.len());
            files.push(Some(FileFinding {
                path: path.clone(),
                analyzer: name.to_string(),
                packages: found.packages,
                os: found.os,
            }));
        }
    }
    Ok(())
}

/// A hard link: copies the findings of its target (read earlier in this layer) for each
/// analyser that read the target and also wants the link's path.
fn link(
    entry: &mut tar::Entry<'_, impl Read>,
    path: &str,
    size: u64,
    mode: u32,
    analyzers: &[Box<dyn Analyzer>],
    files: &mut Vec<Option<FileFinding>>,
    by_path: &mut HashMap<String, Vec<usize>>,
) {
    let target = match entry.link_name_bytes() {
        Some(t) => normalize_path(&String::from_utf8_lossy(&t)),
        None => None,
    };
    let Some(target) = target else { return };
    let Some(indices) = by_path.get(&target).cloned() else {
        return;
    };
    for i in indices {
        let Some(found) = files[i].clone() else {
            continue;
        };
        let info = FileInfo { path, size, mode };
        let wants = analyzers
            .iter()
            .any(|a| a.name() == found.analyzer && a.wants(&info));
        if !wants {
            continue;
        }
        let mut copy = found;
        copy.path = path.to_string();
        for p in &mut copy.packages {
            p.path = path.to_string();
        }
        by_path
            .entry(path.to_string())
            .or_default()
            .push(files.len());
        files.push(Some(copy));
    }
}

/// Sorts an analyser's answer: a finding is kept, a malformed file is warned about, an I/O
/// error fails the layer.
fn collect(
    digest: &str,
    name: &'static str,
    out: Result<Option<Found>, AnalyzeError>,
    results: &mut Vec<(&'static str, Found)>,
) -> Result<(), LayerError> {
    match out {
        Ok(Some(found)) => results.push((name, found)),
        Ok(None) => {}
        Err(AnalyzeError::Malformed { path, reason }) => {
            tracing::warn!(digest, analyzer = name, path = %path, %reason, "skipping malformed file");
        }
        Err(AnalyzeError::Io { source, .. }) => {
            return Err(LayerError::Read {
                digest: digest.to_string(),
                source,
            });
        }
    }
    Ok(())
}

/// `/a/b/c` → (`/a/b`, `c`); `/c` → (`/`, `c`).
fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// The tar reader's input, counting the bytes consumed between the end of one entry's data and
/// the next entry (padding, headers, extension records): more than [`MAX_HEADER_BYTES`] is an
/// error. The walker switches counting off while an entry's data is read.
struct Budget<R> {
    inner: R,
    used: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(used) = self.used.get() else {
            return Ok(n);
        };
        let used = used + n as u64;
        self.used.set(Some(used));
        if used > MAX_HEADER_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than {MAX_HEADER_BYTES} bytes of tar headers and extension records \
                     (GNU long names, PAX records) before one entry"
                ),
            ));
        }
        Ok(n)
    }
}

/// A reader that remembers the first error of the reader below it: an analyser may turn a
/// read error into "malformed", but a failing archive must fail the layer.
struct Latch<'r, R> {
    inner: &'r mut R,
    error: Option<io::Error>,
}

impl<'r, R: Read> Latch<'r, R> {
    fn new(inner: &'r mut R) -> Self {
        Latch { inner, error: None }
    }
}

impl<R: Read> Read for Latch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                if self.error.is_none() {
                    self.error = Some(e);
                }
                Err(copy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_escapes_refused() {
        assert_eq!(
            normalize_path("./etc/os-release").unwrap(),
            "/etc/os-release"
        );
        assert_eq!(normalize_path("etc//x/").unwrap(), "/etc/x");
        assert_eq!(normalize_path("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize_path("./").unwrap(), "/");
        assert_eq!(normalize_path("../etc/passwd"), None);
        assert_eq!(normalize_path("a/../../b"), None);
        assert_eq!(normalize_path(&"a/".repeat(3000)), None);
    }

    #[test]
    fn compression_is_told_by_magic_first() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8, 0], None),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd], Some("x+gzip")),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(b"etc/", Some("application/vnd.oci.image.layer.v1.tar+gzip")),
            Compression::None
        );
        assert_eq!(
            Compression::detect(b"", Some("x.tar+zstd")),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"", None), Compression::None);
    }

    #[test]
    fn parents_split() {
        assert_eq!(split_parent("/a/b/.wh.c"), ("/a/b", ".wh.c"));
        assert_eq!(split_parent("/.wh.c"), ("/", ".wh.c"));
    }
}
