//! One image's inventory, layer by layer: a layer whose inventory is kept (by digest, from an
//! earlier scan of any image that shares it) is not read again; any other is streamed through
//! the analysers and kept. Used by `wharf scan`/`wharf sbom` and by scan-on-push.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use vuln::IgnoreRules;

use crate::analyze::{Analyzer, all_analyzers};
use crate::db::{VulnDb, apply_ignores, match_image};
use crate::findings::ImageFinding;
use crate::inventory::{ImageInventory, LayerInventory};
use crate::layer::{LayerError, analyze_layer};
use crate::results::{ResultsError, ScanResults};

/// Why an image could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The image source failed (unreadable blob, digest mismatch).
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A layer is not a readable archive.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The layer inventory store failed.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// Reading a layer's remaining bytes (to finish verifying its digest) failed.
    #[error("layer {digest}: {source}")]
    Verify {
        /// The layer.
        digest: String,
        /// The read error (a digest mismatch, a truncated blob).
        #[source]
        source: io::Error,
    },
}

/// A layer to analyse: its digest and media type.
#[derive(Debug, Clone)]
pub struct LayerRef {
    /// The blob's digest (the key its inventory is kept under).
    pub digest: String,
    /// Its media type (a hint for the compression).
    pub media_type: String,
    /// Its size in bytes (for progress).
    pub size: u64,
}

/// What a scan reports while it runs (for progress bars).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Layer `index` of `total` is starting: read (`cached` false) or reused.
    Layer {
        /// Its position, from 0.
        index: usize,
        /// How many layers the image has.
        total: usize,
        /// Its digest.
        digest: &'a str,
        /// Its size.
        size: u64,
        /// Whether its kept inventory is used (nothing is read).
        cached: bool,
    },
    /// `n` more bytes of the current layer were read.
    Bytes(u64),
}

/// Reads images' layers through the analysers, keeping each layer's inventory.
pub struct Scanner {
    analyzers: Vec<Box<dyn Analyzer>>,
    results: Option<ScanResults>,
}

impl Scanner {
    /// A scanner with every analyser, keeping layer inventories in `results` when given.
    pub fn new(results: Option<ScanResults>) -> Scanner {
        Scanner::with_analyzers(all_analyzers(), results)
    }

    /// A scanner with these analysers.
    pub fn with_analyzers(
        analyzers: Vec<Box<dyn Analyzer>>,
        results: Option<ScanResults>,
    ) -> Scanner {
        Scanner { analyzers, results }
    }

    /// The kept inventory of layer `digest`, if an earlier scan stored one. Blocking.
    pub fn kept(&self, digest: &str) -> Result<Option<LayerInventory>, ScanError> {
        match &self.results {
            Some(r) => Ok(r.layer(digest)?),
            None => Ok(None),
        }
    }

    /// Reads layer `layer` from `reader` (which must stream the blob and check its digest at
    /// the end) through the analysers, and keeps its inventory. The stream is read to its end,
    /// so a blob that does not match its digest fails here even if its tar archive ended
    /// early. Blocking.
    pub fn analyze(
        &self,
        layer: &LayerRef,
        reader: Box<dyn Read + Send>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<LayerInventory, ScanError> {
        let mut reader = Counting {
            inner: reader,
            progress,
        };
        let inv = analyze_layer(
            &layer.digest,
            Some(&layer.media_type),
            &mut reader,
            &self.analyzers,
        )?;
        io::copy(&mut reader, &mut io::sink()).map_err(|source| ScanError::Verify {
            digest: layer.digest.clone(),
            source,
        })?;
        if let Some(r) = &self.results {
            r.put_layer(&inv)?;
        }
        Ok(inv)
    }

    /// The combined inventory of an image's layers (lowest first), each kept or read through
    /// `open` (called only for layers with nothing kept). Blocking.
    pub fn image(
        &self,
        layers: &[LayerRef],
        mut open: impl FnMut(&LayerRef) -> Result<Box<dyn Read + Send>, ScanError>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<ImageInventory, ScanError> {
        let mut inventories = Vec::with_capacity(layers.len());
        for (index, layer) in layers.iter().enumerate() {
            let kept = self.kept(&layer.digest)?;
            progress(Progress::Layer {
                index,
                total: layers.len(),
                digest: &layer.digest,
                size: layer.size,
                cached: kept.is_some(),
            });
            let inv = match kept {
                Some(inv) => inv,
                None => self.analyze(layer, open(layer)?, progress)?,
            };
            inventories.push(inv);
        }
        Ok(ImageInventory::combine(&inventories))
    }
}

/// A reader that reports how many bytes it has read.
struct Counting<'p, 'q> {
    inner: Box<dyn Read + Send>,
    progress: &'p mut dyn FnMut(Progress<'q>),
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Progress::Bytes(n as u64));
        Ok(n)
    }
}

/// Today's date in UTC, `YYYY-MM-DD` (ignore rules expire by date).
pub fn today() -> String {
    oci::time::UtcDateTime::from_system(SystemTime::now()).date()
}

/// The advisories of a vulnerability database, loaded once, with the ignore rules and the
/// database's warnings: what matching an inventory needs.
pub struct Advisories {
    index: vuln::Index,
    ignore: IgnoreRules,
    warnings: Vec<String>,
    feeds: Vec<crate::db::FeedStatus>,
}

impl Advisories {
    /// Loads `db`'s index; `max_age` makes an older database a warning.
    pub fn load(
        db: &VulnDb,
        ignore: IgnoreRules,
        max_age: Duration,
    ) -> Result<Advisories, crate::db::DbError> {
        let feeds = db.status()?;
        let mut warnings = Vec::new();
        if feeds.is_empty() {
            warnings.push(format!(
                "the vulnerability database in {} is empty: run `wharf vulndb update` or `wharf vulndb import`",
                db.dir().display()
            ));
        } else if db.is_stale(max_age)? {
            let newest = feeds.iter().map(|f| f.imported_at).max().unwrap_or(0);
            let now = crate::db::now_secs();
            warnings.push(format!(
                "the vulnerability database is stale: last imported {} hours ago (more than {} hours); run `wharf vulndb update`",
                now.saturating_sub(newest) / 3600,
                max_age.as_secs() / 3600
            ));
        }
        let today = today();
        for rule in ignore.expired(&today) {
            warnings.push(format!(
                "ignore rule for {} expired on {}: it no longer suppresses anything",
                rule.id,
                rule.expires.as_deref().unwrap_or("?")
            ));
        }
        Ok(Advisories {
            index: db.index()?,
            ignore,
            warnings,
            feeds,
        })
    }

    /// The findings of `inventory` as image `image` (ignore rules match that name), suppressed
    /// ones marked.
    pub fn findings(&self, image: &str, inventory: &ImageInventory) -> Vec<ImageFinding> {
        let mut findings = match_image(&self.index, inventory);
        apply_ignores(&mut findings, &self.ignore, image, &today());
        findings
    }

    /// Warnings every report carries (an empty or stale database, expired ignore rules).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The feeds loaded (name, source, import time, hash, records).
    pub fn feeds(&self) -> &[crate::db::FeedStatus] {
        &self.feeds
    }

    /// The matcher's index.
    pub fn index(&self) -> &vuln::Index {
        &self.index
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn today_is_a_date() {
        let t = super::today();
        assert_eq!(t.len(), 10);
        assert!(t.as_str() > "2026-01-01", "{t}");
    }
}
