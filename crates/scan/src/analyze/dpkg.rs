//! dpkg's database: `/var/lib/dpkg/status` (every package dpkg knows, with its state) and
//! distroless's `/var/lib/dpkg/status.d/NAME` files (one or more stanzas each, usually without
//! a `Status` field). Stanzas are deb822 paragraphs: `Field: value` lines, continuation lines
//! starting with a space or tab, paragraphs separated by blank lines.
//!
//! A package is listed when its `Status` says it is installed (`install ok installed`, and
//! `hold ok installed` too: a held package is installed all the same); in `status.d` files a
//! stanza without `Status` counts as installed. Licences are not read (dpkg's database has
//! none; they live in `/usr/share/doc/*/copyright`, free text).

use std::io::{BufRead, BufReader, Read};

use super::{AnalyzeError, Analyzer, FileInfo, Found};
use crate::inventory::{Package, PackageKind};

/// The main database.
const STATUS: &str = "/var/lib/dpkg/status";
/// distroless's per-package files.
const STATUS_D: &str = "/var/lib/dpkg/status.d/";
/// The largest database read (Debian's largest real ones are a few MiB).
const MAX_SIZE: u64 = 256 << 20;
/// The longest line accepted.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Reads dpkg's status database.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpkgAnalyzer;

impl Analyzer for DpkgAnalyzer {
    fn name(&self) -> &'static str {
        "dpkg"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        if file.size > MAX_SIZE {
            return false;
        }
        if file.path == STATUS {
            return true;
        }
        match file.path.strip_prefix(STATUS_D) {
            Some(name) => {
                !name.is_empty()
                    && !name.contains('/')
                    && !name.starts_with('.')
                    && !name.ends_with(".md5sums")
            }
            None => false,
        }
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let status_optional = file.path != STATUS;
        let mut packages = Vec::new();
        let mut stanza = Stanza::default();
        let mut last_field_known = false;
        let finish = |stanza: &mut Stanza, packages: &mut Vec<Package>| {
            let s = std::mem::take(stanza);
            if let Some(p) = s.into_package(file.path, status_optional) {
                packages.push(p);
            }
        };
        for_each_line(file.path, content, |line| {
            if line.trim().is_empty() {
                finish(&mut stanza, &mut packages);
                last_field_known = false;
                return Ok(());
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                // A continuation of the previous field: none of the fields read here spans
                // lines in practice, but a folded value is joined as deb822 says.
                if last_field_known {
                    stanza.continue_last(line.trim());
                }
                return Ok(());
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("not a `Field: value` line: {:?}", truncate(line)));
            };
            last_field_known = stanza.set(key.trim(), value.trim());
            Ok(())
        })?;
        finish(&mut stanza, &mut packages);
        Ok(Some(Found { packages, os: None }))
    }
}

/// The fields of one paragraph this analyser reads.
#[derive(Debug, Default)]
struct Stanza {
    package: Option<String>,
    version: Option<String>,
    status: Option<String>,
    source: Option<String>,
    arch: Option<String>,
    /// Which field the last line set (for continuation lines).
    last: Option<usize>,
}

impl Stanza {
    /// Records a field; whether it is one of ours.
    fn set(&mut self, key: &str, value: &str) -> bool {
        const KEYS: [&str; 5] = ["Package", "Version", "Status", "Source", "Architecture"];
        let Some(i) = KEYS.iter().position(|k| k.eq_ignore_ascii_case(key)) else {
            self.last = None;
            return false;
        };
        *self.slot(i) = Some(value.to_string());
        self.last = Some(i);
        true
    }

    fn continue_last(&mut self, more: &str) {
        if let Some(i) = self.last {
            let slot = self.slot(i);
            if let Some(v) = slot {
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(more);
            }
        }
    }

    fn slot(&mut self, i: usize) -> &mut Option<String> {
        match i {
            0 => &mut self.package,
            1 => &mut self.version,
            2 => &mut self.status,
            3 => &mut self.source,
            _ => &mut self.arch,
        }
    }

    fn into_package(self, path: &str, status_optional: bool) -> Option<Package> {
        let name = self.package.filter(|n| !n.is_empty())?;
        match self.status.as_deref() {
            Some(status) if !is_installed(status) => return None,
            None if !status_optional => return None,
            _ => {}
        }
        let version = self.version.filter(|v| !v.is_empty())?;
        let (mut source_name, mut source_version) = match self.source.as_deref() {
            Some(s) => parse_source(s),
            None => (None, None),
        };
        if source_name.as_deref() == Some(name.as_str()) {
            source_name = None;
        }
        if source_version.as_deref() == Some(version.as_str()) {
            source_version = None;
        }
        Some(Package {
            kind: PackageKind::Deb,
            name,
            version,
            source_name,
            source_version,
            arch: self.arch.filter(|a| !a.is_empty()),
            licenses: Vec::new(),
            path: path.to_string(),
            layer: String::new(),
        })
    }
}

/// Whether a `Status: WANT FLAG STATE` value says the package's files are on disk
/// (`installed`); a package only unpacked, half-configured or removed is not listed.
fn is_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    words.len() == 3 && words[1] == "ok" && words[2] == "installed"
}

/// `glibc (2.36-9+deb12u3)` → (`glibc`, `2.36-9+deb12u3`); `glibc` → (`glibc`, none).
pub fn parse_source(value: &str) -> (Option<String>, Option<String>) {
    let value = value.trim();
    let (name, rest) = match value.find(char::is_whitespace) {
        Some(i) => (&value[..i], value[i..].trim()),
        None => (value, ""),
    };
    let version = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    ((!name.is_empty()).then(|| name.to_string()), version)
}

/// Calls `f` with each line of `content` (without its line ending), reading through a
/// buffer: memory is bounded by the longest line, itself capped at 1 MiB. `f`'s error string
/// and a line that is not UTF-8 or too long become [`AnalyzeError::Malformed`].
pub(crate) fn for_each_line(
    path: &str,
    content: &mut dyn Read,
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), AnalyzeError> {
    let malformed = |reason: String| AnalyzeError::Malformed {
        path: path.to_string(),
        reason,
    };
    let mut reader = BufReader::with_capacity(64 << 10, content);
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| AnalyzeError::Io {
                path: path.to_string(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        lineno += 1;
        if buf.len() > MAX_LINE {
            return Err(malformed(format!("line {lineno} longer than 1 MiB")));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| malformed(format!("line {lineno} is not UTF-8")))?;
        f(line).map_err(|reason| malformed(format!("line {lineno}: {reason}")))?;
    }
}

/// The first 80 characters of a line, for messages.
pub(crate) fn truncate(line: &str) -> &str {
    match line.char_indices().nth(80) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, text: &str) -> Result<Vec<Package>, AnalyzeError> {
        let info = FileInfo {
            path,
            size: text.len() as u64,
            mode: 0o644,
        };
        assert!(DpkgAnalyzer.wants(&info));
        Ok(DpkgAnalyzer
            .analyze(&info, &mut text.as_bytes())?
            .unwrap()
            .packages)
    }

    #[test]
    fn installed_packages_with_their_source() {
        let text = "Package: libc6\nStatus: install ok installed\nPriority: optional\n\
            Architecture: amd64\nMulti-Arch: same\nSource: glibc (2.36-9+deb12u3)\n\
            Version: 2.36-9+deb12u4\nDescription: GNU C Library\n .\n more text\n\n\
            Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n\n\
            Package: held\nStatus: hold ok installed\nVersion: 1:2.0\nSource: held\n\n\
            Package: tzdata\nStatus: install ok installed\nVersion: 2024a-0+deb12u1\n\
            Source: tzdata\nArchitecture: all\nConffiles:\n /etc/x 123\n";
        let p = run("/var/lib/dpkg/status", text).unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].name, "libc6");
        assert_eq!(p[0].source_name.as_deref(), Some("glibc"));
        assert_eq!(p[0].source_version.as_deref(), Some("2.36-9+deb12u3"));
        assert_eq!(p[0].arch.as_deref(), Some("amd64"));
        assert_eq!(p[0].path, "/var/lib/dpkg/status");
        assert_eq!(p[1].name, "held");
        assert_eq!(p[1].version, "1:2.0");
        assert_eq!(p[1].source_name, None);
        assert_eq!(p[2].name, "tzdata");
        assert_eq!(p[2].arch.as_deref(), Some("all"));
    }

    #[test]
    fn distroless_status_d() {
        let info = |p| FileInfo {
            path: p,
            size: 10,
            mode: 0o644,
        };
        assert!(!DpkgAnalyzer.wants(&info("/var/lib/dpkg/status.d/libc6.md5sums")));
        assert!(!DpkgAnalyzer.wants(&info("/var/lib/dpkg/status-old")));
        let text = "Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n\
            Source: openssl\n\nPackage: openssl\nVersion: 3.0.11-1~deb12u2\n";
        let p = run("/var/lib/dpkg/status.d/libssl3", text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[0].source_version, None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let err = run("/var/lib/dpkg/status", "Package: a\nno colon here\n").unwrap_err();
        assert!(matches!(err, AnalyzeError::Malformed { .. }), "{err}");
        let bytes = [b'P', 0xff, 0xfe, b'\n'];
        let info = FileInfo {
            path: STATUS,
            size: 4,
            mode: 0,
        };
        assert!(DpkgAnalyzer.analyze(&info, &mut &bytes[..]).is_err());
        assert_eq!(
            parse_source("glibc (2.36-9)"),
            (Some("glibc".into()), Some("2.36-9".into()))
        );
        assert_eq!(parse_source("zlib"), (Some("zlib".into()), None));
    }
}
