//! Reading feed sources: format detection, content hashes, and streaming each source's
//! advisories to a sink.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DbError, MAX_RECORD_BYTES};

/// A feed's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedKind {
    /// A directory of OSV JSON records (searched recursively).
    OsvDir,
    /// A zip of OSV JSON records (osv.dev's `all.zip`).
    OsvZip,
    /// One OSV JSON record.
    OsvJson,
    /// The Debian security tracker's JSON.
    DebianTracker,
    /// An Alpine secdb JSON file.
    AlpineSecdb,
}

/// How much of a JSON file is looked at to tell the formats apart.
const SNIFF_BYTES: usize = 64 << 10;

/// Tells a source's format from its content.
pub(crate) fn detect(path: &Path) -> Result<FeedKind, DbError> {
    let meta = std::fs::metadata(path).map_err(|e| DbError::io(path, e))?;
    if meta.is_dir() {
        return Ok(FeedKind::OsvDir);
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)
        .map_err(|e| DbError::io(path, e))?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| DbError::io(path, e))?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(FeedKind::OsvZip);
    }
    let unknown = || DbError::UnknownFormat {
        origin: path.display().to_string(),
    };
    let key = first_key(&head).ok_or_else(unknown)?;
    match key.as_str() {
        "id" | "schema_version" | "modified" | "published" | "withdrawn" | "aliases"
        | "related" | "summary" | "details" | "severity" | "affected" | "references"
        | "credits" | "database_specific" | "upstream" => Ok(FeedKind::OsvJson),
        "distroversion" | "reponame" | "urlprefix" | "apkurl" | "archs" | "packages" => {
            Ok(FeedKind::AlpineSecdb)
        }
        // The tracker's keys are source package names, each an object of CVE ids.
        _ if String::from_utf8_lossy(&head).contains("\"releases\"") => Ok(FeedKind::DebianTracker),
        _ => Err(unknown()),
    }
}

/// The first key of a JSON object at the start of `head` (after optional whitespace and a
/// UTF-8 byte order mark).
fn first_key(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head)
        .or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]))
        .ok()?;
    let rest = text.trim_start_matches('\u{feff}').trim_start();
    let rest = rest.strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut key = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(key),
            '\\' => key.push(chars.next()?),
            c => key.push(c),
        }
    }
    None
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DbError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DbError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| DbError::io(dir, e))?;
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| DbError::io(&p, e))?;
        if ft.is_dir() {
            json_files(&p, out)?;
        } else if ft.is_file() && p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

fn sorted_json_files(dir: &Path) -> Result<Vec<PathBuf>, DbError> {
    let mut files = Vec::new();
    json_files(dir, &mut files)?;
    files.sort();
    Ok(files)
}

fn hash_reader(path: &Path, mut r: impl Read, h: &mut Sha256) -> Result<(), DbError> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf).map_err(|e| DbError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// SHA-256 of a file, hex.
pub(crate) fn hash_file(path: &Path) -> Result<String, DbError> {
    let mut h = Sha256::new();
    let f = File::open(path).map_err(|e| DbError::io(path, e))?;
    hash_reader(path, f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The content hash of a source: a file's SHA-256; for a directory, SHA-256 over each JSON
/// file's relative path, a NUL, its own SHA-256, in path order.
pub(crate) fn hash_source(path: &Path, kind: FeedKind) -> Result<String, DbError> {
    if kind != FeedKind::OsvDir {
        return hash_file(path);
    }
    let mut h = Sha256::new();
    for f in sorted_json_files(path)? {
        let rel = f.strip_prefix(path).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(hash_file(&f)?.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

fn read_capped(origin: &str, r: impl Read, hint: u64) -> Result<Vec<u8>, DbError> {
    if hint > MAX_RECORD_BYTES {
        return Err(DbError::TooLarge {
            origin: origin.to_string(),
            limit: MAX_RECORD_BYTES,
        });
    }
    let mut buf = Vec::with_capacity(hint as usize);
    r.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| DbError::io(origin, e))?;
    if buf.len() as u64 > MAX_RECORD_BYTES {
        return Err(DbError::TooLarge {
            origin: origin.to_string(),
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(buf)
}

/// Reads every advisory of a source into `sink`, one at a time where the format allows.
pub(crate) fn read_source(
    path: &Path,
    kind: FeedKind,
    sink: &mut dyn FnMut(vuln::Advisory) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let origin = path.display().to_string();
    match kind {
        FeedKind::OsvDir => {
            for f in sorted_json_files(path)? {
                let name = f.display().to_string();
                let file = File::open(&f).map_err(|e| DbError::io(&f, e))?;
                let len = file.metadata().map_err(|e| DbError::io(&f, e))?.len();
                let bytes = read_capped(&name, file, len)?;
                sink(vuln::parse_osv(&name, &bytes)?)?;
            }
        }
        FeedKind::OsvJson => {
            let file = File::open(path).map_err(|e| DbError::io(path, e))?;
            let len = file.metadata().map_err(|e| DbError::io(path, e))?.len();
            let bytes = read_capped(&origin, file, len)?;
            sink(vuln::parse_osv(&origin, &bytes)?)?;
        }
        FeedKind::OsvZip => {
            let file = File::open(path).map_err(|e| DbError::io(path, e))?;
            let zip_err = |e: zip::result::ZipError| DbError::Zip {
                origin: origin.clone(),
                message: e.to_string(),
            };
            let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
            for i in 0..archive.len() {
                let member = archive.by_index(i).map_err(zip_err)?;
                let member_name = member.name().map_err(zip_err)?.into_owned();
                if !member.is_file() || !member_name.ends_with(".json") {
                    continue;
                }
                let name = format!("{origin}!{member_name}");
                let size = member.size();
                let bytes = read_capped(&name, member, size)?;
                sink(vuln::parse_osv(&name, &bytes)?)?;
            }
        }
        FeedKind::DebianTracker => {
            let file = File::open(path).map_err(|e| DbError::io(path, e))?;
            // Streamed: each source package's advisories are stored before the next is read.
            let mut failed: Option<DbError> = None;
            vuln::parse_tracker_each(&origin, BufReader::new(file), |adv| {
                if failed.is_none()
                    && let Err(e) = sink(adv)
                {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        FeedKind::AlpineSecdb => {
            let file = File::open(path).map_err(|e| DbError::io(path, e))?;
            for adv in vuln::parse_secdb(&origin, BufReader::new(file))? {
                sink(adv)?;
            }
        }
    }
    Ok(())
}
