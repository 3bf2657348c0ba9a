//! Analysers: each one recognises the files it understands (a dpkg `status`, a
//! `*.dist-info/METADATA`, a Go binary) from their path, size and mode, and reads what they
//! list. The layer walker offers each regular file to every analyser once, streaming: an
//! analyser reads only the files it asked for, within the size it asked for.

use std::io::Read;

use crate::inventory::{OsRelease, Package};

/// A regular file as the layer walker sees it, before its content is read.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo<'a> {
    /// Absolute, normalised path in the image (`/var/lib/dpkg/status`).
    pub path: &'a str,
    /// Size in bytes, as the tar header gives it.
    pub size: u64,
    /// Unix permission bits (`0o755`), for analysers that look only at executables.
    pub mode: u32,
}

/// What a file lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The packages it lists (each with `path` set to the file's path; `layer` empty).
    pub packages: Vec<Package>,
    /// The OS release it names (os-release files).
    pub os: Option<OsRelease>,
}

/// A file an analyser wanted but could not read: reported as a warning, the file skipped, the
/// layer's analysis goes on.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The bytes are not in the format the analyser expects.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What was wrong, in words.
        reason: String,
    },
    /// Reading the layer failed (a truncated or corrupt archive): the whole layer fails.
    #[error("reading {path}: {source}")]
    Io {
        /// The file being read.
        path: String,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
}

/// One kind of file that lists packages.
pub trait Analyzer: Send + Sync {
    /// A short name, recorded with each finding (`dpkg`, `os-release`, `python`).
    fn name(&self) -> &'static str;

    /// Whether to read this file, from its path, size and mode alone (cheap: called for every
    /// regular file of every layer).
    fn wants(&self, file: &FileInfo<'_>) -> bool;

    /// Reads the file (`content` yields at most `file.size` bytes) and says what it lists;
    /// `Ok(None)` when it turns out not to be this analyser's file after all (an executable
    /// with no Go build info): nothing is recorded for it then.
    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError>;
}

pub mod apk;
pub mod dpkg;
pub mod os_release;
pub mod rpm;

/// The analysers of the OS package databases and the OS release: os-release, dpkg, apk and
/// rpm (SQLite), in that order.
pub fn os_analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(os_release::OsReleaseAnalyzer),
        Box::new(dpkg::DpkgAnalyzer),
        Box::new(apk::ApkAnalyzer),
        Box::new(rpm::RpmAnalyzer),
    ]
}

pub mod golang;
pub mod java;
pub mod npm;
pub mod python;
pub mod rustbin;

/// The language ecosystems' analysers: Python distributions, npm packages and lockfiles, Go
/// binaries' build info, Rust binaries' cargo-auditable section, Java archives.
pub fn language_analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(python::PythonAnalyzer),
        Box::new(npm::NpmAnalyzer),
        Box::new(golang::GoBinaryAnalyzer),
        Box::new(rustbin::RustBinaryAnalyzer),
        Box::new(java::JavaArchiveAnalyzer),
    ]
}

/// A language package found in `path` (no source package, no architecture, no layer yet).
pub(crate) fn lang_package(
    kind: crate::inventory::PackageKind,
    name: &str,
    version: &str,
    licenses: Vec<String>,
    path: &str,
) -> Package {
    Package {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        arch: None,
        licenses,
        path: path.to_string(),
        layer: String::new(),
    }
}

/// Every analyser: the OS databases and os-release first, then the language ecosystems.
pub fn all_analyzers() -> Vec<Box<dyn Analyzer>> {
    let mut all = os_analyzers();
    all.extend(language_analyzers());
    all
}
