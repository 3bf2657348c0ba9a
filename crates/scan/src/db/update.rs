//! Downloading feeds: each configured [`FeedSource`] is fetched over HTTP(S), streamed to a
//! temporary file next to the database (never held in memory) while its SHA-256 is computed,
//! checked (status, size cap, the configured digest if any), skipped when its content is the
//! one already imported, and otherwise imported like a local file (format detected from the
//! content).

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DbError, FeedStatus, VulnDb};

/// Where one feed is downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSource {
    /// The feed's name in the database (`osv/Debian`, `alpine/v3.20/main`).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// The content's expected SHA-256 (hex), when it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The public feeds: osv.dev's per-ecosystem `all.zip` for Debian, Alpine, PyPI, npm, Go,
/// crates.io and Maven; the Debian security tracker's JSON; Alpine's secdb for v3.18-v3.21,
/// main and community.
pub fn default_sources() -> Vec<FeedSource> {
    let mut out = Vec::new();
    for eco in [
        "Debian",
        "Alpine",
        "PyPI",
        "npm",
        "Go",
        "crates.io",
        "Maven",
    ] {
        out.push(FeedSource {
            name: format!("osv/{eco}"),
            url: format!("https://osv-vulnerabilities.storage.googleapis.com/{eco}/all.zip"),
            sha256: None,
        });
    }
    out.push(FeedSource {
        name: "debian-tracker".into(),
        url: "https://security-tracker.debian.org/tracker/data/json".into(),
        sha256: None,
    });
    for v in ["v3.18", "v3.19", "v3.20", "v3.21"] {
        for repo in ["main", "community"] {
            out.push(FeedSource {
                name: format!("alpine/{v}/{repo}"),
                url: format!("https://secdb.alpinelinux.org/{v}/{repo}.json"),
                sha256: None,
            });
        }
    }
    out
}

/// What updating one feed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// New content, imported.
    Imported(FeedStatus),
    /// The same content as the last import (same SHA-256): nothing to do.
    Unchanged(FeedStatus),
}

/// Download settings.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Largest download accepted (default 4 GiB).
    pub max_bytes: u64,
    /// Connect timeout (default 30 s).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes (default 60 s).
    pub read_timeout: Duration,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            max_bytes: 4 << 30,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

fn http_err(url: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Http {
        url: url.to_string(),
        message: e.to_string(),
    }
}

impl VulnDb {
    /// Downloads and imports each source with the default settings; one outcome per source,
    /// in order (a failed feed does not stop the others, and keeps its previous import).
    pub async fn update(
        &self,
        sources: &[FeedSource],
    ) -> Vec<(String, Result<UpdateOutcome, DbError>)> {
        self.update_with(sources, &UpdateConfig::default()).await
    }

    /// [`VulnDb::update`] with explicit settings.
    pub async fn update_with(
        &self,
        sources: &[FeedSource],
        config: &UpdateConfig,
    ) -> Vec<(String, Result<UpdateOutcome, DbError>)> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: fine either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("wharf-scan/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .no_proxy()
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                return sources
                    .iter()
                    .map(|s| (s.name.clone(), Err(http_err(&s.url, &e))))
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(sources.len());
        for s in sources {
            let r = self.update_one(&client, s, config).await;
            if let Err(e) = &r {
                tracing::warn!(feed = %s.name, error = %e, "vulnerability feed update failed");
            }
            out.push((s.name.clone(), r));
        }
        out
    }

    async fn update_one(
        &self,
        client: &reqwest::Client,
        source: &FeedSource,
        config: &UpdateConfig,
    ) -> Result<UpdateOutcome, DbError> {
        let url = &source.url;
        let mut resp = client.get(url).send().await.map_err(|e| http_err(url, e))?;
        if !resp.status().is_success() {
            return Err(http_err(url, format!("HTTP status {}", resp.status())));
        }
        let announced = resp.content_length();
        if announced.is_some_and(|n| n > config.max_bytes) {
            return Err(http_err(url, "larger than the configured maximum"));
        }
        let dir = self.dir.clone();
        let mut tmp = tempfile::Builder::new()
            .prefix(".feed-")
            .tempfile_in(&dir)
            .map_err(|e| DbError::io(&dir, e))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(url, e))? {
            total += chunk.len() as u64;
            if total > config.max_bytes {
                return Err(http_err(url, "larger than the configured maximum"));
            }
            hasher.update(&chunk);
            // Small synchronous writes to a local file: the chunks are at most tens of KiB.
            tmp.write_all(&chunk)
                .map_err(|e| DbError::io(tmp.path(), e))?;
        }
        tmp.flush().map_err(|e| DbError::io(tmp.path(), e))?;
        if let Some(len) = announced
            && len != total
        {
            return Err(http_err(url, format!("got {total} of {len} bytes")));
        }
        let sha = hex::encode(hasher.finalize());
        if let Some(expected) = &source.sha256
            && !expected.eq_ignore_ascii_case(&sha)
        {
            return Err(DbError::Checksum {
                url: url.clone(),
                expected: expected.clone(),
                actual: sha,
            });
        }
        let db = self.clone();
        let name = source.name.clone();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(prev) = db.status()?.into_iter().find(|f| f.name == name)
                && prev.sha256 == sha
                && prev.source == url
            {
                return Ok(UpdateOutcome::Unchanged(prev));
            }
            let status = db.import_named(&name, tmp.path(), &url, Some(sha))?;
            drop(tmp);
            Ok(UpdateOutcome::Imported(status))
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}
