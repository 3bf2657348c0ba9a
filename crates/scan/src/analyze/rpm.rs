//! rpm's database in its SQLite form (`rpmdb.sqlite`, rpm 4.16 and later: Fedora 33+,
//! RHEL 9, openSUSE), at `/var/lib/rpm/rpmdb.sqlite` or `/usr/lib/sysimage/rpm/rpmdb.sqlite`.
//! Each row of its `Packages` table holds one package's header blob, parsed here
//! ([`parse_header`]) for NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM and LICENSE.
//!
//! SQLite needs a file: the entry is copied to a temporary file (at most 256 MiB), opened
//! read-only and immutable, and deleted afterwards. The older BerkeleyDB (`Packages`) and ndb
//! (`Packages.db`) formats are not read.

use std::io::{Read, Write};

use super::{AnalyzeError, Analyzer, FileInfo, Found};
use crate::inventory::{Package, PackageKind};

/// Where rpm keeps its SQLite database.
const PATHS: [&str; 2] = [
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
];
/// The largest database copied out (real ones are tens of MiB).
pub const MAX_DB_SIZE: u64 = 256 << 20;
/// The largest header blob parsed (rpm's own limit for a header's data is 256 MiB; real
/// headers are well under 1 MiB).
const MAX_HEADER: usize = 64 << 20;

/// Header tags read.
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

/// Header value types.
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Reads rpm's SQLite database.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpmAnalyzer;

impl Analyzer for RpmAnalyzer {
    fn name(&self) -> &'static str {
        "rpm"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        PATHS.contains(&file.path) && file.size <= MAX_DB_SIZE
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let malformed = |reason: String| AnalyzeError::Malformed {
            path: file.path.to_string(),
            reason,
        };
        let io = |source: std::io::Error| AnalyzeError::Io {
            path: file.path.to_string(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix("wharf-rpmdb-")
            .tempfile()
            .map_err(|e| malformed(format!("creating a temporary file: {e}")))?;
        let copied =
            std::io::copy(&mut content.take(MAX_DB_SIZE + 1), tmp.as_file_mut()).map_err(io)?;
        if copied > MAX_DB_SIZE {
            return Err(malformed("larger than 256 MiB".to_string()));
        }
        tmp.as_file_mut()
            .flush()
            .map_err(|e| malformed(format!("writing a temporary file: {e}")))?;
        let packages = read_db(tmp.path(), file.path).map_err(malformed)?;
        Ok(Some(Found { packages, os: None }))
    }
}

/// Reads every package header of an rpmdb.sqlite file.
fn read_db(db: &std::path::Path, path: &str) -> Result<Vec<Package>, String> {
    use rusqlite::{Connection, OpenFlags};
    let uri = format!("file:{}?immutable=1", db.display());
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening the SQLite database: {e}"))?;
    let mut stmt = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(|e| format!("not an rpm database: {e}"))?;
    let mut rows = stmt
        .query([])
        .map_err(|e| format!("reading Packages: {e}"))?;
    let mut packages = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("reading Packages: {e}"))? {
        let hnum: i64 = row.get(0).map_err(|e| format!("reading Packages: {e}"))?;
        let blob = row
            .get_ref(1)
            .map_err(|e| format!("reading Packages: {e}"))?
            .as_blob()
            .map_err(|e| format!("package {hnum}: {e}"))?;
        let header = parse_header(blob).map_err(|e| format!("package {hnum}: {e}"))?;
        if let Some(p) = header.into_package(path) {
            packages.push(p);
        }
    }
    Ok(packages)
}

/// The fields of one rpm header this analyser reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RpmHeader {
    /// NAME.
    pub name: Option<String>,
    /// VERSION.
    pub version: Option<String>,
    /// RELEASE.
    pub release: Option<String>,
    /// EPOCH.
    pub epoch: Option<u32>,
    /// ARCH.
    pub arch: Option<String>,
    /// SOURCERPM (`glibc-2.34-100.el9.src.rpm`).
    pub source_rpm: Option<String>,
    /// LICENSE.
    pub license: Option<String>,
}

impl RpmHeader {
    /// The package it describes; `None` for rpm's `gpg-pubkey` pseudo-packages (imported
    /// signing keys, not software) and headers without a name or version.
    fn into_package(self, path: &str) -> Option<Package> {
        let name = self.name.filter(|n| !n.is_empty())?;
        if name == "gpg-pubkey" {
            return None;
        }
        let vr = match (&self.version, &self.release) {
            (Some(v), Some(r)) if !r.is_empty() => format!("{v}-{r}"),
            (Some(v), _) => v.clone(),
            (None, _) => return None,
        };
        let with_epoch = |vr: &str| match self.epoch {
            Some(e) => format!("{e}:{vr}"),
            None => vr.to_string(),
        };
        let version = with_epoch(&vr);
        let (mut source_name, mut source_version) = (None, None);
        if let Some((src, src_vr)) = self.source_rpm.as_deref().and_then(split_source_rpm) {
            if src != name {
                source_name = Some(src.to_string());
            }
            if src_vr != vr {
                source_version = Some(with_epoch(src_vr));
            }
        }
        Some(Package {
            kind: PackageKind::Rpm,
            name,
            version,
            source_name,
            source_version,
            arch: self.arch.filter(|a| !a.is_empty()),
            licenses: self.license.filter(|l| !l.is_empty()).into_iter().collect(),
            path: path.to_string(),
            layer: String::new(),
        })
    }
}

/// `glibc-2.34-100.el9.src.rpm` → (`glibc`, `2.34-100.el9`); `None` when it is not
/// `NAME-VERSION-RELEASE.{src,nosrc}.rpm`.
pub fn split_source_rpm(srpm: &str) -> Option<(&str, &str)> {
    let base = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let release_dash = base.rfind('-')?;
    let version_dash = base[..release_dash].rfind('-')?;
    let name = &base[..version_dash];
    let vr = &base[version_dash + 1..];
    (!name.is_empty() && !vr.starts_with('-')).then_some((name, vr))
}

/// Parses an rpm header blob as rpmdb stores it: big-endian index count `il` and data size
/// `dl`, `il` 16-byte index entries (tag, type, offset, count), then `dl` bytes of data.
/// Every offset and length is checked; a string must end with a NUL inside the data.
pub fn parse_header(blob: &[u8]) -> Result<RpmHeader, String> {
    if blob.len() > MAX_HEADER {
        return Err(format!("header of {} bytes is too large", blob.len()));
    }
    let be32 = |at: usize| -> Option<u32> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let il = be32(0).ok_or("header shorter than 8 bytes")? as usize;
    let dl = be32(4).ok_or("header shorter than 8 bytes")? as usize;
    let index_end = il
        .checked_mul(16)
        .and_then(|n| n.checked_add(8))
        .ok_or("index size overflows")?;
    let total = index_end.checked_add(dl).ok_or("data size overflows")?;
    if total > blob.len() {
        return Err(format!(
            "header says {il} entries and {dl} data bytes but holds {} bytes",
            blob.len()
        ));
    }
    let data = &blob[index_end..total];
    let string_at = |offset: usize| -> Result<String, String> {
        let rest = data.get(offset..).ok_or("string offset past the data")?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("string without a terminating NUL")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let mut h = RpmHeader::default();
    for i in 0..il {
        let at = 8 + i * 16;
        let (Some(tag), Some(ty), Some(offset), Some(count)) =
            (be32(at), be32(at + 4), be32(at + 8), be32(at + 12))
        else {
            return Err("truncated index".to_string());
        };
        let offset = offset as usize;
        let slot = match tag {
            TAG_NAME => &mut h.name,
            TAG_VERSION => &mut h.version,
            TAG_RELEASE => &mut h.release,
            TAG_ARCH => &mut h.arch,
            TAG_SOURCERPM => &mut h.source_rpm,
            TAG_LICENSE => &mut h.license,
            TAG_EPOCH => {
                if ty != TYPE_INT32 || count < 1 {
                    return Err(format!("EPOCH has type {ty} and count {count}"));
                }
                let b = data
                    .get(offset..offset + 4)
                    .ok_or("EPOCH offset past the data")?;
                h.epoch = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                continue;
            }
            _ => continue,
        };
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(format!("tag {tag} has type {ty}, not a string"));
        }
        *slot = Some(string_at(offset).map_err(|e| format!("tag {tag}: {e}"))?);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header blob from (tag, type, value) entries.
    fn blob(entries: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, value) in entries {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    #[test]
    fn a_header_gives_a_package() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, s("openssl-libs")),
            (TAG_VERSION, TYPE_STRING, s("3.0.7")),
            (TAG_RELEASE, TYPE_STRING, s("27.el9")),
            (TAG_EPOCH, TYPE_INT32, 1u32.to_be_bytes().to_vec()),
            (TAG_ARCH, TYPE_STRING, s("x86_64")),
            (TAG_LICENSE, TYPE_STRING, s("ASL 2.0")),
            (
                TAG_SOURCERPM,
                TYPE_STRING,
                s("openssl-3.0.7-27.el9.src.rpm"),
            ),
        ]);
        let p = parse_header(&b).unwrap().into_package("/x").unwrap();
        assert_eq!(p.name, "openssl-libs");
        assert_eq!(p.version, "1:3.0.7-27.el9");
        assert_eq!(p.source_name.as_deref(), Some("openssl"));
        assert_eq!(p.source_version, None);
        assert_eq!(p.licenses, vec!["ASL 2.0".to_string()]);
        assert_eq!(
            split_source_rpm("python3.11-pip-22.3.1-4.el9.src.rpm"),
            Some(("python3.11-pip", "22.3.1-4.el9"))
        );
        assert_eq!(split_source_rpm("nonsense.rpm"), None);
        assert_eq!(split_source_rpm("x-1.src.rpm"), None);
    }

    #[test]
    fn broken_headers_are_errors() {
        assert!(parse_header(&[0, 0]).is_err());
        assert!(parse_header(&[0, 0, 0, 9, 0, 0, 0, 0]).is_err());
        assert!(parse_header(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut b = blob(&[(TAG_NAME, TYPE_STRING, b"no-nul".to_vec())]);
        assert!(parse_header(&b).is_err());
        // An offset pointing past the data.
        b = blob(&[(TAG_NAME, TYPE_STRING, s("x"))]);
        b[8 + 8..8 + 12].copy_from_slice(&100u32.to_be_bytes());
        assert!(parse_header(&b).is_err());
        b = blob(&[(TAG_EPOCH, TYPE_STRING, s("x"))]);
        assert!(parse_header(&b).is_err());
    }
}
