//! An uncompressed tar archive indexed once (entry name → offset and size of its data), whose
//! entries are then read by seeking a fresh handle on the file: an oci-archive's blobs or a
//! docker-archive's layers are streamed straight out of the archive, never extracted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Result, SourceError};

/// Most entries indexed: OCI and Docker archives hold a few dozen; this bounds the index's
/// memory on a hostile archive.
const MAX_ENTRIES: usize = 100_000;

/// Longest chain of symbolic links followed (old `docker save` links duplicate layers).
const MAX_LINKS: usize = 8;

/// Where an entry's data is.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// An indexed tar archive.
#[derive(Debug)]
pub(super) struct TarIndex {
    path: PathBuf,
    files: HashMap<String, Span>,
    links: HashMap<String, String>,
}

/// `./a/b` and `a//b/` as `a/b`.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl TarIndex {
    /// Reads the archive's headers (seeking over the data) and indexes regular files and
    /// symbolic links. Compressed archives are refused.
    pub(super) fn open(path: &Path) -> Result<TarIndex> {
        let what = || path.display().to_string();
        let mut file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SourceError::NotFound(what()),
            _ => SourceError::io(format!("opening {}", what()), e),
        })?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| SourceError::io(what(), e))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(SourceError::CompressedArchive(what()));
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| SourceError::io(what(), e))?;
        let mut archive = tar::Archive::new(file);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| SourceError::malformed(what(), e))?;
        for (i, entry) in entries.enumerate() {
            if i >= MAX_ENTRIES {
                return Err(SourceError::malformed(
                    what(),
                    format!("more than {MAX_ENTRIES} entries"),
                ));
            }
            let entry = entry.map_err(|e| SourceError::malformed(what(), e))?;
            let name = {
                let p = entry
                    .path()
                    .map_err(|e| SourceError::malformed(what(), e))?;
                normalize(&p.to_string_lossy())
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let span = Span {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                files.insert(name, span);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(|e| SourceError::malformed(what(), e))?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{target}"))
                } else {
                    normalize(&target)
                };
                links.insert(name, resolved);
            }
        }
        if files.is_empty() {
            return Err(SourceError::malformed(
                what(),
                "not a tar archive, or an empty one",
            ));
        }
        tracing::debug!(archive = %what(), entries = files.len(), "indexed archive");
        Ok(TarIndex {
            path: path.to_path_buf(),
            files,
            links,
        })
    }

    /// The archive's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn span(&self, name: &str) -> Option<Span> {
        let mut name = normalize(name);
        for _ in 0..=MAX_LINKS {
            if let Some(s) = self.files.get(&name) {
                return Some(*s);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// The size of an entry, if the archive holds it.
    pub(super) fn size(&self, name: &str) -> Option<u64> {
        self.span(name).map(|s| s.size)
    }

    /// Opens an entry's data: a new handle on the archive, positioned at the entry.
    pub(super) fn open_entry(&self, name: &str) -> Result<Option<io::Take<File>>> {
        let Some(span) = self.span(name) else {
            return Ok(None);
        };
        let what = || format!("{} in {}", name, self.path.display());
        let mut f = File::open(&self.path).map_err(|e| SourceError::io(what(), e))?;
        f.seek(SeekFrom::Start(span.offset))
            .map_err(|e| SourceError::io(what(), e))?;
        Ok(Some(f.take(span.size)))
    }
}

/// Reads until `buf` is full or the end: the count read.
pub(super) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("./blobs//sha256/ab/"), "blobs/sha256/ab");
        assert_eq!(normalize("a/../../b"), "b");
    }
}
