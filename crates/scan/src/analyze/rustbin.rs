//! Rust binaries built with `cargo auditable`: the `.dep-v0` ELF section holds the dependency
//! tree as zlib-compressed JSON,
//! `{"packages": [{"name", "version", "source", "kind", "dependencies", "root"}]}`.
//!
//! Reported: every package of kind `runtime` (the default when `kind` is absent), except those
//! whose `source` is `local` (the workspace's own crates, the binary's root crate among them
//! when built from a checkout: no advisory database knows them by that version). Build
//! dependencies (`kind: build`: build scripts, proc-macros) are not in the binary and are
//! skipped. A root crate installed from a registry (`cargo auditable install ripgrep`) has
//! `source: crates.io` and is reported, as advisories may name it.
//!
//! ELF keeps its section headers at the end of the file and the section before them, so an
//! executable is spooled first (in memory up to [`MEMORY_SPOOL`] bytes, an unnamed temporary
//! file above); executables larger than [`MAX_BINARY`] are skipped with a warning. Only the
//! 64-byte header is read from files that are not ELF. The section headers are read with
//! hand-written, bounds-checked code (32- and 64-bit, either byte order); the section is
//! capped at [`MAX_SECTION`] bytes compressed and [`MAX_JSON`] decompressed.

use std::io::{Read, Seek, SeekFrom};

use flate2::read::ZlibDecoder;
use serde::Deserialize;

use super::java::{Spooled, spool};
use super::{AnalyzeError, Analyzer, FileInfo, Found, lang_package};
use crate::inventory::PackageKind;

/// Executables up to this size are held in memory while read.
pub const MEMORY_SPOOL: u64 = 8 << 20;
/// Larger executables are skipped (with a warning).
pub const MAX_BINARY: u64 = 128 << 20;
/// The largest compressed `.dep-v0` section read.
pub const MAX_SECTION: u64 = 4 << 20;
/// The largest decompressed dependency tree read.
pub const MAX_JSON: u64 = 32 << 20;
/// The section's name.
pub const SECTION: &str = ".dep-v0";

/// Reads cargo-auditable dependency trees from executables.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustBinaryAnalyzer;

#[derive(Deserialize)]
struct Tree {
    packages: Vec<TreePackage>,
}

#[derive(Deserialize)]
struct TreePackage {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: Option<String>,
}

impl Analyzer for RustBinaryAnalyzer {
    fn name(&self) -> &'static str {
        "cargo-auditable"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        file.mode & 0o111 != 0 && file.size >= 64
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let path = file.path;
        let mut head = [0u8; 64];
        let n = read_full(content, &mut head).map_err(|source| AnalyzeError::Io {
            path: path.to_string(),
            source,
        })?;
        if n < 52 || !head.starts_with(b"\x7fELF") {
            return Ok(None);
        }
        let elf = Elf::header(&head[..n]).ok_or_else(|| malformed(path, "bad ELF header"))?;
        if elf.shoff == 0 || elf.shnum == 0 {
            return Ok(None); // no section headers
        }
        if file.size > MAX_BINARY {
            tracing::warn!(%path, size = file.size, limit = MAX_BINARY, "executable too large to look for a cargo-auditable section: skipped");
            return Ok(None);
        }
        let mut chained = (&head[..n]).chain(content);
        let mut f = spool(path, &mut chained, file.size, MEMORY_SPOOL, MAX_BINARY)?;
        let Some((offset, size)) = elf.find_section(&mut f, SECTION, path)? else {
            return Ok(None);
        };
        if size > MAX_SECTION {
            return Err(malformed(
                path,
                &format!("{SECTION} section of {size} bytes"),
            ));
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| malformed(path, &format!("{SECTION}: {e}")))?;
        let mut compressed = Vec::with_capacity(size as usize);
        (&mut f)
            .take(size)
            .read_to_end(&mut compressed)
            .map_err(|e| malformed(path, &format!("{SECTION}: {e}")))?;
        if compressed.len() as u64 != size {
            return Err(malformed(path, &format!("{SECTION} runs past the end")));
        }
        let mut json = Vec::new();
        ZlibDecoder::new(compressed.as_slice())
            .take(MAX_JSON + 1)
            .read_to_end(&mut json)
            .map_err(|e| malformed(path, &format!("{SECTION}: not zlib: {e}")))?;
        if json.len() as u64 > MAX_JSON {
            return Err(malformed(
                path,
                &format!("{SECTION} larger than {MAX_JSON} bytes"),
            ));
        }
        let tree: Tree = serde_json::from_slice(&json)
            .map_err(|e| malformed(path, &format!("{SECTION}: not a dependency tree: {e}")))?;
        let packages = tree
            .packages
            .iter()
            .filter(|p| p.kind.as_deref().unwrap_or("runtime") == "runtime" && p.source != "local")
            .map(|p| lang_package(PackageKind::Cargo, &p.name, &p.version, vec![], path))
            .collect();
        Ok(Some(Found { packages, os: None }))
    }
}

fn malformed(path: &str, reason: &str) -> AnalyzeError {
    AnalyzeError::Malformed {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What the ELF header says about the section headers.
#[derive(Debug, Clone, Copy)]
struct Elf {
    is64: bool,
    le: bool,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

impl Elf {
    fn u16(&self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }
    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    fn u64(&self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
    /// A word: 8 bytes in 64-bit files, 4 in 32-bit ones.
    fn word(&self, b: &[u8], at: usize) -> Option<u64> {
        if self.is64 {
            self.u64(b, at)
        } else {
            self.u32(b, at).map(u64::from)
        }
    }

    fn header(h: &[u8]) -> Option<Elf> {
        let is64 = match h.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let le = match h.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut e = Elf {
            is64,
            le,
            shoff: 0,
            shentsize: 0,
            shnum: 0,
            shstrndx: 0,
        };
        if is64 {
            e.shoff = e.u64(h, 0x28)?;
            e.shentsize = e.u16(h, 0x3a)?;
            e.shnum = e.u16(h, 0x3c)?;
            e.shstrndx = e.u16(h, 0x3e)?;
        } else {
            e.shoff = u64::from(e.u32(h, 0x20)?);
            e.shentsize = e.u16(h, 0x2e)?;
            e.shnum = e.u16(h, 0x30)?;
            e.shstrndx = e.u16(h, 0x32)?;
        }
        let min = if is64 { 64 } else { 40 };
        (e.shentsize >= min).then_some(e)
    }

    /// (name offset, file offset, size) of section `i`, from the section header table.
    fn section(&self, table: &[u8], i: u16) -> Option<(u32, u64, u64)> {
        let base = usize::from(i) * usize::from(self.shentsize);
        let name = self.u32(table, base)?;
        let (off, size) = if self.is64 {
            (
                self.word(table, base + 0x18)?,
                self.word(table, base + 0x20)?,
            )
        } else {
            (
                self.word(table, base + 0x10)?,
                self.word(table, base + 0x14)?,
            )
        };
        Some((name, off, size))
    }

    /// The file offset and size of the section called `want`.
    fn find_section(
        &self,
        f: &mut Spooled,
        want: &str,
        path: &str,
    ) -> Result<Option<(u64, u64)>, AnalyzeError> {
        let bad = |what: &str| malformed(path, &format!("ELF section headers: {what}"));
        let table_len = u64::from(self.shnum) * u64::from(self.shentsize);
        if table_len > (8 << 20) {
            return Err(bad("table too large"));
        }
        let mut table = vec![0u8; table_len as usize];
        f.seek(SeekFrom::Start(self.shoff))
            .map_err(|_| bad("offset past the end"))?;
        f.read_exact(&mut table)
            .map_err(|_| bad("table past the end"))?;
        let (_, str_off, str_size) = self
            .section(&table, self.shstrndx)
            .ok_or_else(|| bad("no name table"))?;
        if str_size > (4 << 20) {
            return Err(bad("name table too large"));
        }
        let mut names = vec![0u8; str_size as usize];
        f.seek(SeekFrom::Start(str_off))
            .map_err(|_| bad("name table past the end"))?;
        f.read_exact(&mut names)
            .map_err(|_| bad("name table past the end"))?;
        for i in 0..self.shnum {
            let (name_off, off, size) = self.section(&table, i).ok_or_else(|| bad("short"))?;
            let Some(rest) = names.get(name_off as usize..) else {
                continue;
            };
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            if &rest[..end] == want.as_bytes() {
                return Ok(Some((off, size)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_elf_and_broken_elf_do_not_panic() {
        let info = |size| FileInfo {
            path: "/bin/x",
            size,
            mode: 0o755,
        };
        assert!(
            RustBinaryAnalyzer
                .analyze(&info(10), &mut &b"#!/bin/sh\necho\n"[..])
                .unwrap()
                .is_none()
        );
        // An ELF header whose section table points past the end.
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x28..0x30].copy_from_slice(&1_000_000u64.to_le_bytes());
        h[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        h[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            RustBinaryAnalyzer.analyze(&info(64), &mut &h[..]),
            Err(AnalyzeError::Malformed { .. })
        ));
        // A bad class byte.
        h[4] = 9;
        assert!(RustBinaryAnalyzer.analyze(&info(64), &mut &h[..]).is_err());
    }
}
