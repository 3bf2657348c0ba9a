//! The `[scan]` section of the server's configuration.

use std::path::PathBuf;

use serde::Deserialize;
use vuln::Severity;

/// Scanning in the registry: what is scanned on push, how much may wait, and which
/// repositories refuse pulls of vulnerable images.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Scan on push at all (the API's rescan works either way).
    pub enabled: bool,
    /// Repository patterns whose pushes are scanned (globs; default every repository).
    pub on_push: Vec<String>,
    /// Manifests that may wait for a scanner; a push beyond it is not delayed, its scan is
    /// skipped (and counted) until a rescan.
    pub queue: usize,
    /// Scans run at once (each on a blocking thread: decompression and parsing are CPU-bound).
    pub workers: usize,
    /// The vulnerability database's directory (default `DATA_DIR/vulndb`).
    pub db_dir: Option<PathBuf>,
    /// An ignore file (TOML, `[[ignore]]` entries), honoured by findings, reports and rules.
    pub ignore_file: Option<PathBuf>,
    /// Hours after its last import at which the database counts as stale (a warning on every
    /// report, and `wharf_scan_db_stale` = 1).
    pub max_db_age_hours: u64,
    /// Repository patterns whose scanned images get their SBOM attached as an OCI 1.1
    /// referrer (CycloneDX JSON).
    pub sbom_referrers: Vec<String>,
    /// Seconds between downloads of the vulnerability feeds by the server itself (0: never;
    /// the database is then kept current by `wharf vulndb update --data-dir` from outside, which
    /// the server picks up). The first download runs at start.
    pub update_interval_seconds: u64,
    /// The feeds the server downloads (default: the public feeds, see `wharf vulndb update`).
    #[serde(rename = "feed")]
    pub feeds: Vec<FeedConfig>,
    /// Pull rules: a repository's images with unignored findings at or above a severity are
    /// refused (`DENIED`); HEAD is allowed.
    #[serde(rename = "pull_rule")]
    pub pull_rules: Vec<PullRule>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: true,
            on_push: vec!["*".into()],
            queue: 256,
            workers: 1,
            db_dir: None,
            ignore_file: None,
            max_db_age_hours: 48,
            sbom_referrers: Vec::new(),
            update_interval_seconds: 0,
            feeds: Vec::new(),
            pull_rules: Vec::new(),
        }
    }
}

/// One `[[scan.feed]]`: a vulnerability feed the server downloads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Its name in the database (`osv/Debian`): a new download replaces this feed.
    pub name: String,
    /// Where to download it (an OSV all.zip, the Debian tracker JSON, an Alpine secdb file).
    pub url: String,
    /// The content's expected SHA-256 (hex), to pin a mirror's file.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// One `[[scan.pull_rule]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRule {
    /// The repositories it applies to (a glob; the first matching rule decides).
    pub repositories: String,
    /// Pulls of images with an unignored finding at or above this severity are refused.
    pub severity: Severity,
    /// What to do with an image not scanned yet (or whose scan failed): refuse (default, the
    /// safe choice) or allow.
    #[serde(default)]
    pub unscanned: Unscanned,
}

/// The pull rule's answer for an image with no scan result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unscanned {
    /// Refuse until a scan says it is clean.
    #[default]
    Deny,
    /// Allow.
    Allow,
}
