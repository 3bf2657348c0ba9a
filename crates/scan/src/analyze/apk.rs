//! apk's database, `/lib/apk/db/installed`: one paragraph per installed package, each line a
//! one-letter key, a colon and a value (`P:musl`, `V:1.2.5-r0`, `A:x86_64`, `o:musl` the
//! origin, that is the source package, `L:MIT` the licence); paragraphs separated by blank
//! lines. The file lists (`F:`, `R:`, ...) are skipped as they stream past.

use std::io::Read;

use super::dpkg::{for_each_line, truncate};
use super::{AnalyzeError, Analyzer, FileInfo, Found};
use crate::inventory::{Package, PackageKind};

/// The database's path.
const INSTALLED: &str = "/lib/apk/db/installed";
/// The largest database read (real ones are a few MiB, mostly file lists).
const MAX_SIZE: u64 = 256 << 20;

/// Reads apk's installed database.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApkAnalyzer;

#[derive(Debug, Default)]
struct Entry {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
    license: Option<String>,
}

impl Entry {
    fn into_package(self, path: &str) -> Option<Package> {
        let name = self.name.filter(|n| !n.is_empty())?;
        let version = self.version.filter(|v| !v.is_empty())?;
        Some(Package {
            kind: PackageKind::Apk,
            source_name: self.origin.filter(|o| !o.is_empty() && *o != name),
            source_version: None,
            arch: self.arch.filter(|a| !a.is_empty()),
            licenses: self.license.filter(|l| !l.is_empty()).into_iter().collect(),
            name,
            version,
            path: path.to_string(),
            layer: String::new(),
        })
    }
}

impl Analyzer for ApkAnalyzer {
    fn name(&self) -> &'static str {
        "apk"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        file.path == INSTALLED && file.size <= MAX_SIZE
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let mut packages = Vec::new();
        let mut entry = Entry::default();
        for_each_line(file.path, content, |line| {
            if line.trim().is_empty() {
                if let Some(p) = std::mem::take(&mut entry).into_package(file.path) {
                    packages.push(p);
                }
                return Ok(());
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("not a `K:value` line: {:?}", truncate(line)));
            };
            let slot = match key {
                "P" => &mut entry.name,
                "V" => &mut entry.version,
                "A" => &mut entry.arch,
                "o" => &mut entry.origin,
                "L" => &mut entry.license,
                _ => return Ok(()),
            };
            *slot = Some(value.trim().to_string());
            Ok(())
        })?;
        if let Some(p) = entry.into_package(file.path) {
            packages.push(p);
        }
        Ok(Some(Found { packages, os: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_with_origin_and_licence() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:1\nI:2\nT:the musl c library\n\
            U:https://musl.libc.org/\nL:MIT\no:musl\nm:Maintainer\nt:1\nc:abc\n\
            F:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1x=\n\n\
            P:libcrypto3\nV:3.3.2-r0\nA:x86_64\nL:Apache-2.0\no:openssl\n\n\nP:noversion\n";
        let info = FileInfo {
            path: INSTALLED,
            size: text.len() as u64,
            mode: 0o644,
        };
        assert!(ApkAnalyzer.wants(&info));
        let p = ApkAnalyzer
            .analyze(&info, &mut text.as_bytes())
            .unwrap()
            .unwrap()
            .packages;
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].name, "musl");
        assert_eq!(p[0].source_name, None);
        assert_eq!(p[0].licenses, vec!["MIT".to_string()]);
        assert_eq!(p[1].name, "libcrypto3");
        assert_eq!(p[1].version, "3.3.2-r0");
        assert_eq!(p[1].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[1].arch.as_deref(), Some("x86_64"));
        let err = ApkAnalyzer
            .analyze(&info, &mut &b"P:x\ngarbage\n"[..])
            .unwrap_err();
        assert!(matches!(err, AnalyzeError::Malformed { .. }));
    }
}
