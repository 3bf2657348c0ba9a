//! Go binaries: the build information the Go toolchain (1.18 and later) embeds in every
//! executable it links, the same data `go version -m` prints.
//!
//! The block starts with the 14-byte magic `\xff Go buildinf:` at a 16-byte aligned offset
//! (inside `.go.buildinfo`, near the start of the data segment), then a pointer-size byte and
//! a flags byte, padded to 32 bytes. With flag `0x2` (Go 1.18+), two varint-length-prefixed
//! strings follow inline: the toolchain version (`go1.21.3`) and the module information,
//! framed by two 16-byte sentinels, one tab-separated line per record (tabs shown as ` → `):
//!
//! ```text
//! path → example.com/cmd/app
//! mod → example.com/app → v1.2.0 → h1:…
//! dep → golang.org/x/net → v0.17.0 → h1:…
//! dep → github.com/a/b → v1.0.0
//! => → github.com/fork/b → v1.0.1 → h1:…
//! build → -compiler=gc
//! ```
//!
//! Reported: `stdlib` at the toolchain's version in OSV's spelling (`go1.21.3` → `1.21.3`,
//! `go1.20` → `1.20.0`, `go1.21rc2` → `1.21.0-rc.2`; a `devel` toolchain is not reported), the
//! main module (unless its version is `(devel)`, a build from a checkout) and every `dep`. A
//! replaced dependency (`=>`) is reported under the replacement's path and version, since that
//! is the code compiled in; a replacement by a local directory has no version and is skipped
//! (logged at debug level). Module versions keep their `v` (`v0.17.0`), as the build info and
//! purls write them.
//!
//! Binaries from Go before 1.18 keep the strings elsewhere in the binary and point at them
//! (flags without `0x2`): that format is not supported and is reported as such (an
//! [`AnalyzeError::Malformed`] naming it), so the skip is visible. Only ELF executables are
//! read (container images are Linux).
//!
//! The file is streamed: the search holds [`SCAN_WINDOW`] bytes at a time, and the two
//! strings are read with caps ([`MAX_VERSION`], [`MAX_MODINFO`]).

use std::io::Read;

use super::{AnalyzeError, Analyzer, FileInfo, Found, lang_package};
use crate::inventory::{Package, PackageKind};

/// The build info block's magic.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Bytes held while searching for the magic.
pub const SCAN_WINDOW: usize = 256 << 10;
/// The longest toolchain version string read.
pub const MAX_VERSION: u64 = 1 << 10;
/// The longest module information read.
pub const MAX_MODINFO: u64 = 16 << 20;
/// Executables smaller than this are not Go programs (the smallest Go binary is about a
/// megabyte); they are not read at all.
const MIN_SIZE: u64 = 64 << 10;

const HEADER: usize = 32;
const ALIGN: usize = 16;

/// Reads Go executables' build info.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoBinaryAnalyzer;

impl Analyzer for GoBinaryAnalyzer {
    fn name(&self) -> &'static str {
        "go-binary"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        file.mode & 0o111 != 0 && file.size >= MIN_SIZE
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let Some(info) = read_build_info(file.path, content)? else {
            return Ok(None);
        };
        Ok(Some(Found {
            packages: info.packages(file.path),
            os: None,
        }))
    }
}

/// A binary's build info, as embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain version, as written (`go1.21.3`).
    pub go_version: String,
    /// The module information text (without its sentinels); empty for a binary built
    /// outside module mode.
    pub modinfo: String,
}

impl BuildInfo {
    /// The packages the build info names (see the module documentation).
    pub fn packages(&self, path: &str) -> Vec<Package> {
        let mut out = Vec::new();
        if let Some(v) = stdlib_version(&self.go_version) {
            out.push(lang_package(PackageKind::Go, "stdlib", &v, vec![], path));
        }
        // (path, version) of the last `mod`/`dep` line, replaced by a following `=>`.
        let mut pending: Option<(String, String)> = None;
        let flush = |p: Option<(String, String)>, out: &mut Vec<Package>| {
            if let Some((name, version)) = p {
                if version.is_empty() || version == "(devel)" {
                    tracing::debug!(%path, module = %name, "Go module without a version skipped");
                } else if !out.iter().any(|x| x.name == name && x.version == version) {
                    out.push(lang_package(PackageKind::Go, &name, &version, vec![], path));
                }
            }
        };
        for line in self.modinfo.lines() {
            let mut f = line.split('\t');
            match f.next() {
                Some("mod") | Some("dep") => {
                    flush(pending.take(), &mut out);
                    let p = f.next().unwrap_or_default().to_string();
                    let v = f.next().unwrap_or_default().to_string();
                    pending = Some((p, v));
                }
                Some("=>") => {
                    let p = f.next().unwrap_or_default().to_string();
                    let v = f.next().unwrap_or_default().to_string();
                    if v.is_empty() {
                        tracing::debug!(%path, replacement = %p, "Go module replaced by a local directory skipped");
                        pending = None;
                    } else {
                        pending = Some((p, v));
                    }
                }
                _ => {}
            }
        }
        flush(pending.take(), &mut out);
        out
    }
}

/// `go1.21.3` → `1.21.3`; `go1.20` → `1.20.0`; `go1.21rc2` → `1.21.0-rc.2`;
/// `go1.22.1 X:boringcrypto` → `1.22.1`; `devel …` → `None`.
pub fn stdlib_version(go: &str) -> Option<String> {
    let v = go.split_whitespace().next()?.strip_prefix("go")?;
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (num, pre) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&v[..i], Some(&v[i..])),
        None => (v, None),
    };
    let mut parts: Vec<&str> = num.split('.').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut out = parts.join(".");
    if let Some(pre) = pre {
        let digits = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let word = &pre[..pre.len() - digits.len()];
        out.push('-');
        out.push_str(word);
        if !digits.is_empty() {
            out.push('.');
            out.push_str(digits);
        }
    }
    Some(out)
}

/// Streams `content` for the build info. `Ok(None)` for a file that is not ELF or has no build
/// info (not a Go binary, or one built without it).
pub fn read_build_info(
    path: &str,
    content: &mut dyn Read,
) -> Result<Option<BuildInfo>, AnalyzeError> {
    let io = |source| AnalyzeError::Io {
        path: path.to_string(),
        source,
    };
    let mut win: Vec<u8> = Vec::with_capacity(SCAN_WINDOW);
    // Fill the first bytes to check the ELF magic.
    fill(content, &mut win, 4).map_err(io)?;
    if !win.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    // `win[0]` is at file offset `base`; `base` stays a multiple of ALIGN, so an aligned index
    // in `win` is an aligned file offset.
    let finder = memchr::memmem::Finder::new(MAGIC);
    let mut base: u64 = 0;
    loop {
        let eof = fill(content, &mut win, SCAN_WINDOW).map_err(io)? < SCAN_WINDOW;
        let mut from = 0usize;
        // Where the next window starts: the unsearched tail (a magic whose header is not all
        // here yet, or the last bytes that may begin one).
        let keep_from = loop {
            let Some(rel) = finder.find(&win[from..]) else {
                break win.len().saturating_sub(HEADER) / ALIGN * ALIGN;
            };
            let pos = from + rel;
            if !pos.is_multiple_of(ALIGN) {
                from = pos + 1; // the magic's bytes elsewhere (a string in the program)
                continue;
            }
            if pos + HEADER > win.len() {
                break pos;
            }
            return read_block(path, &mut win, pos, content, base);
        };
        if eof {
            return Ok(None);
        }
        win.drain(..keep_from);
        base += keep_from as u64;
    }
}

/// Reads the block whose header is at `win[pos..]` (the strings follow in the window and,
/// past its end, in the stream).
fn read_block(
    path: &str,
    win: &mut Vec<u8>,
    pos: usize,
    content: &mut dyn Read,
    base: u64,
) -> Result<Option<BuildInfo>, AnalyzeError> {
    let flags = win[pos + 15];
    if flags & 0x2 == 0 {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: "Go build info in the pre-1.18 pointer format (not supported)".into(),
        });
    }
    let rest = win.split_off(pos + HEADER);
    let mut chained = rest.as_slice().chain(content);
    let go_version = read_string(&mut chained, MAX_VERSION, path, "version")?;
    let go_version = String::from_utf8_lossy(&go_version).into_owned();
    let modinfo = read_string(&mut chained, MAX_MODINFO, path, "modinfo")?;
    if !go_version.starts_with("go") && !go_version.starts_with("devel") {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: format!("Go build info with an odd version {go_version:?}"),
        });
    }
    // Strip the 16-byte sentinels (binary, not UTF-8), as debug/buildinfo does.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        String::from_utf8_lossy(&modinfo[16..modinfo.len() - 16]).into_owned()
    } else {
        String::new()
    };
    tracing::trace!(%path, offset = base + pos as u64, "Go build info found");
    Ok(Some(BuildInfo {
        go_version,
        modinfo,
    }))
}

/// Reads into `buf` until it holds `want` bytes or the stream ends; returns the length.
fn fill(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    while buf.len() < want {
        let old = buf.len();
        buf.resize(want, 0);
        match r.read(&mut buf[old..]) {
            Ok(0) => {
                buf.truncate(old);
                break;
            }
            Ok(n) => buf.truncate(old + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(old),
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
    Ok(buf.len())
}

/// A Go varint (unsigned LEB128) length, then that many bytes, at most `cap`.
fn read_string(
    r: &mut dyn Read,
    cap: u64,
    path: &str,
    what: &str,
) -> Result<Vec<u8>, AnalyzeError> {
    let malformed = |reason: String| AnalyzeError::Malformed {
        path: path.to_string(),
        reason,
    };
    let mut len: u64 = 0;
    let mut shift = 0u32;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)
            .map_err(|_| malformed(format!("Go build info truncated in the {what} length")))?;
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(malformed(format!("Go build info: bad {what} length")));
        }
    }
    if len > cap {
        return Err(malformed(format!(
            "Go build info: {what} of {len} bytes (limit {cap})"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    r.take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| malformed(format!("Go build info: reading the {what}: {e}")))?;
    if bytes.len() as u64 != len {
        return Err(malformed(format!("Go build info truncated in the {what}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdlib_versions_in_osv_spelling() {
        assert_eq!(stdlib_version("go1.21.3").as_deref(), Some("1.21.3"));
        assert_eq!(stdlib_version("go1.20").as_deref(), Some("1.20.0"));
        assert_eq!(stdlib_version("go1.21rc2").as_deref(), Some("1.21.0-rc.2"));
        assert_eq!(
            stdlib_version("go1.22.1 X:boringcrypto").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(stdlib_version("devel go1.22-abcdef"), None);
        assert_eq!(stdlib_version("go"), None);
        assert_eq!(stdlib_version("go1..2"), None);
    }

    #[test]
    fn replacements_and_devel_modules() {
        let info = BuildInfo {
            go_version: "go1.19.8".into(),
            modinfo: "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
                      dep\tgithub.com/a/b\tv1.0.0\th1:x\n=>\tgithub.com/fork/b\tv1.0.1\th1:y\n\
                      dep\texample.com/local\tv0.0.0\n=>\t./local\t\n\
                      dep\tgolang.org/x/text\tv0.3.7\th1:z\nbuild\t-compiler=gc\n"
                .into(),
        };
        let got: Vec<(String, String)> = info
            .packages("/app")
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        let want = [
            ("stdlib", "1.19.8"),
            ("github.com/fork/b", "v1.0.1"),
            ("golang.org/x/text", "v0.3.7"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    fn elf_with(block: &[u8], at: usize) -> Vec<u8> {
        let mut f = b"\x7fELF".to_vec();
        f.resize(at, 0);
        f.extend_from_slice(block);
        f.resize(f.len() + 100, 0);
        f
    }

    #[test]
    fn truncated_or_odd_blocks_are_errors_and_non_go_files_are_none() {
        let mut hdr = MAGIC.to_vec();
        hdr.push(8);
        hdr.push(2);
        hdr.resize(HEADER, 0);
        // A length running past the end of the file.
        let mut block = hdr.clone();
        block.extend_from_slice(&[0xff, 0xff, 0x03]);
        let f = elf_with(&block, SCAN_WINDOW - 16);
        let f = &f[..f.len() - 100];
        assert!(read_build_info("/x", &mut &f[..]).is_err());
        // The pointer format.
        let mut old = hdr.clone();
        old[15] = 0;
        let f = elf_with(&old, 4096);
        assert!(matches!(
            read_build_info("/x", &mut &f[..]),
            Err(AnalyzeError::Malformed { .. })
        ));
        // A magic at an unaligned offset is not build info.
        let f = elf_with(&hdr, 4100);
        assert!(read_build_info("/x", &mut &f[..]).unwrap().is_none());
        // Not ELF.
        assert!(
            read_build_info("/x", &mut &b"#!/bin/sh\n"[..])
                .unwrap()
                .is_none()
        );
        // A block straddling the window's edge is found.
        let mut good = hdr.clone();
        good.extend_from_slice(b"\x08go1.21.3\x00");
        let f = elf_with(&good, SCAN_WINDOW - 16);
        let info = read_build_info("/x", &mut &f[..]).unwrap().unwrap();
        assert_eq!(info.go_version, "go1.21.3");
        assert!(info.modinfo.is_empty());
    }
}
