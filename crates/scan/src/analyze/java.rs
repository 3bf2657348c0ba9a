//! Java archives: `*.jar`, `*.war`, `*.ear` (zip files).
//!
//! An archive's artifacts are read from every `META-INF/maven/GROUP/ARTIFACT/pom.properties`
//! it holds (a shaded jar holds several), each reported as `groupId:artifactId` at its
//! `version`. When an archive holds none, its `META-INF/MANIFEST.MF` is the fallback:
//! `Bundle-SymbolicName` (OSGi) or else `Implementation-Title`, qualified by
//! `Implementation-Vendor-Id` as the group when the manifest gives one
//! (`org.example:thing`), at `Implementation-Version` (the build's own version) or else
//! `Bundle-Version` (OSGi's normalised `1.0.0`); an archive with neither a name nor a version
//! there is reported with nothing (the file name is not trusted as a version).
//!
//! Archives nested one level deep (`BOOT-INF/lib/x.jar` in a Spring Boot jar,
//! `WEB-INF/lib/x.jar` in a war, the modules of an ear; any entry ending in `.jar`/`.war`) are
//! read the same way, each package's `path` then naming the nested archive as
//! `/app.jar!/BOOT-INF/lib/x.jar`. Archives nested deeper are not opened.
//!
//! A zip's directory is at its end, so the archive is spooled first ([`spool`]): in memory
//! up to [`MEMORY_SPOOL`] bytes, in an unnamed temporary file above, up to
//! [`MAX_ARCHIVE`] (larger archives are refused as an error naming the limit). Nested
//! archives go through the same spool.

use std::collections::BTreeSet;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use zip::ZipArchive;

use super::{AnalyzeError, Analyzer, FileInfo, Found, lang_package};
use crate::inventory::{Package, PackageKind};

/// Archives up to this size are held in memory while read; larger ones go to a temporary file.
pub const MEMORY_SPOOL: u64 = 16 << 20;
/// The largest archive read.
pub const MAX_ARCHIVE: u64 = 1 << 30;
/// The most bytes of nested archives read out of one archive (a zip bomb's nested entries
/// stop there, with a warning).
pub const MAX_NESTED_TOTAL: u64 = 1 << 30;
/// The largest `pom.properties` or `MANIFEST.MF` read.
const MAX_METADATA: u64 = 1 << 20;

/// Reads Java archives' Maven coordinates.
#[derive(Debug, Default, Clone, Copy)]
pub struct JavaArchiveAnalyzer;

fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jar") || lower.ends_with(".war") || lower.ends_with(".ear")
}

impl Analyzer for JavaArchiveAnalyzer {
    fn name(&self) -> &'static str {
        "java"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        is_archive_name(file.path)
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let spooled = spool(file.path, content, file.size, MEMORY_SPOOL, MAX_ARCHIVE)?;
        let mut packages = Vec::new();
        read_archive(file.path, spooled, true, &mut packages)?;
        Ok(Some(Found { packages, os: None }))
    }
}

/// A file's bytes, held where they can be read again and sought in.
pub(crate) enum Spooled {
    /// Small files: in memory.
    Memory(Cursor<Vec<u8>>),
    /// Larger ones: an unnamed temporary file (deleted when dropped).
    File(std::fs::File),
}

impl Read for Spooled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Spooled::Memory(c) => c.read(buf),
            Spooled::File(f) => f.read(buf),
        }
    }
}

impl Seek for Spooled {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Spooled::Memory(c) => c.seek(pos),
            Spooled::File(f) => f.seek(pos),
        }
    }
}

/// Copies `content` (announced as `size` bytes) where it can be sought in: memory up to
/// `memory_cap`, an unnamed temporary file above, refused (as malformed, naming the limit)
/// above `max`.
pub(crate) fn spool(
    path: &str,
    content: &mut dyn Read,
    size: u64,
    memory_cap: u64,
    max: u64,
) -> Result<Spooled, AnalyzeError> {
    let io = |source| AnalyzeError::Io {
        path: path.to_string(),
        source,
    };
    if size > max {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: format!("{size} bytes, larger than the {max}-byte limit: not read"),
        });
    }
    let mut limited = content.take(max + 1);
    let spooled = if size <= memory_cap {
        let mut buf = Vec::with_capacity(size as usize);
        // Read at most memory_cap + 1 bytes into memory; a stream longer than announced
        // continues into a file.
        (&mut limited)
            .take(memory_cap + 1)
            .read_to_end(&mut buf)
            .map_err(io)?;
        if buf.len() as u64 <= memory_cap {
            return Ok(Spooled::Memory(Cursor::new(buf)));
        }
        let mut f = tempfile::tempfile().map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        drop(buf);
        io::copy(&mut limited, &mut f).map_err(io)?;
        f
    } else {
        let mut f = tempfile::tempfile().map_err(io)?;
        io::copy(&mut limited, &mut f).map_err(io)?;
        f
    };
    let mut f = spooled;
    let len = f.seek(SeekFrom::End(0)).map_err(io)?;
    if len > max {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: format!("longer than the {max}-byte limit: not read"),
        });
    }
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(Spooled::File(f))
}

/// Reads one archive's artifacts into `out`; opens the archives nested in it when `outer`.
fn read_archive<R: Read + Seek>(
    path: &str,
    reader: R,
    outer: bool,
    out: &mut Vec<Package>,
) -> Result<(), AnalyzeError> {
    let malformed = |reason: String| AnalyzeError::Malformed {
        path: path.to_string(),
        reason,
    };
    let mut zip =
        ZipArchive::new(reader).map_err(|e| malformed(format!("not a zip archive: {e}")))?;
    // Names that do not decode are skipped (none of the files read here has one).
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(std::borrow::Cow::into_owned))
        .collect();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut own = Vec::new();
    for name in &names {
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() == 5
            && parts[0] == "META-INF"
            && parts[1] == "maven"
            && parts[4] == "pom.properties"
        {
            let text = read_entry(&mut zip, name, path)?;
            let props = properties(&text);
            let get = |k: &str| {
                props
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.is_empty())
            };
            let (Some(group), Some(artifact), Some(version)) =
                (get("groupId"), get("artifactId"), get("version"))
            else {
                tracing::debug!(%path, entry = %name, "pom.properties without coordinates");
                continue;
            };
            let coord = format!("{group}:{artifact}");
            if seen.insert((coord.clone(), version.to_string())) {
                own.push(lang_package(
                    PackageKind::Maven,
                    &coord,
                    version,
                    vec![],
                    path,
                ));
            }
        }
    }
    if own.is_empty()
        && names.iter().any(|n| n == "META-INF/MANIFEST.MF")
        && let Some(p) =
            manifest_package(&read_entry(&mut zip, "META-INF/MANIFEST.MF", path)?, path)
    {
        own.push(p);
    }
    out.extend(own);
    if !outer {
        return Ok(());
    }
    let mut budget = MAX_NESTED_TOTAL;
    for name in &names {
        if name.ends_with('/') || !is_archive_name(name) {
            continue;
        }
        let nested_path = format!("{path}!/{name}");
        let result = (|| {
            let mut entry = zip
                .by_name(name)
                .map_err(|e| malformed(format!("{name}: {e}")))?;
            let size = entry.size();
            let spooled = spool(&nested_path, &mut entry, size, MEMORY_SPOOL, budget)?;
            drop(entry);
            budget -= size.min(budget);
            read_archive(&nested_path, spooled, false, out)
        })();
        if let Err(e) = result {
            // One bad nested archive does not hide the others.
            tracing::warn!(error = %e, "nested archive skipped");
        }
        if budget == 0 {
            tracing::warn!(%path, limit = MAX_NESTED_TOTAL, "nested archives past the limit skipped");
            break;
        }
    }
    Ok(())
}

fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    path: &str,
) -> Result<String, AnalyzeError> {
    let malformed = |reason: String| AnalyzeError::Malformed {
        path: path.to_string(),
        reason,
    };
    let entry = zip
        .by_name(name)
        .map_err(|e| malformed(format!("{name}: {e}")))?;
    let mut bytes = Vec::new();
    entry
        .take(MAX_METADATA + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| malformed(format!("{name}: {e}")))?;
    if bytes.len() as u64 > MAX_METADATA {
        return Err(malformed(format!(
            "{name} larger than {MAX_METADATA} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A `.properties` file's `key=value` (or `key: value`) pairs; comments and blank lines skipped.
fn properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim().to_string(), l[i + 1..].trim().to_string()))
        })
        .collect()
}

/// A manifest's main section (`Key: value`, 72-byte lines continued by a leading space).
fn manifest(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break; // the per-entry sections follow
        }
        if let Some(cont) = line.strip_prefix(' ') {
            if let Some((_, v)) = out.last_mut() {
                v.push_str(cont);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn manifest_package(text: &str, path: &str) -> Option<Package> {
    let m = manifest(text);
    let get = |k: &str| {
        m.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // `Bundle-SymbolicName: org.example.thing;singleton:=true`
    let bundle = get("Bundle-SymbolicName").map(|s| s.split(';').next().unwrap_or(s).trim());
    let title = get("Implementation-Title");
    let name = match (get("Implementation-Vendor-Id"), title, bundle) {
        (_, _, Some(b)) => b.to_string(),
        (Some(group), Some(t), None) => format!("{group}:{t}"),
        (None, Some(t), None) => t.to_string(),
        _ => return None,
    };
    let version = get("Implementation-Version").or(get("Bundle-Version"))?;
    Some(lang_package(
        PackageKind::Maven,
        &name,
        version,
        vec![],
        path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_properties() {
        let m = "Manifest-Version: 1.0\r\nBundle-SymbolicName: org.apache.commons.lang3;singlet\r\n on:=true\r\nBundle-Version: 3.12.0\r\n\r\nName: x\r\nBundle-Version: 9\r\n";
        let p = manifest_package(m, "/a.jar").unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("org.apache.commons.lang3", "3.12.0")
        );
        let m = "Implementation-Title: thing\nImplementation-Vendor-Id: org.example\nImplementation-Version: 1.2\n";
        assert_eq!(
            manifest_package(m, "/a.jar").unwrap().name,
            "org.example:thing"
        );
        assert!(manifest_package("Manifest-Version: 1.0\n", "/a.jar").is_none());
        let props = properties("#Generated\nversion=1.0\ngroupId = g\nartifactId:a\n");
        assert_eq!(props.len(), 3);
    }

    #[test]
    fn not_a_zip_is_an_error_and_the_spool_keeps_its_caps() {
        let info = FileInfo {
            path: "/app.jar",
            size: 5,
            mode: 0o644,
        };
        assert!(matches!(
            JavaArchiveAnalyzer.analyze(&info, &mut &b"hello"[..]),
            Err(AnalyzeError::Malformed { .. })
        ));
        // Announced small but longer: goes on into a file, still capped.
        let data = vec![7u8; 3000];
        let mut s = spool("/x", &mut &data[..], 10, 100, 5000).unwrap();
        assert!(matches!(s, Spooled::File(_)));
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(spool("/x", &mut &data[..], 10, 100, 2000).is_err());
        assert!(spool("/x", &mut &data[..], 3000, 100, 2000).is_err());
        assert!(matches!(
            spool("/x", &mut &data[..], 3000, 4000, 5000).unwrap(),
            Spooled::Memory(_)
        ));
    }
}
