//! Scanning as a registry capability: pushed manifests are analysed through a bounded
//! background queue (a push is never slowed down), their findings are served by the
//! management API, and per-repository pull rules refuse images with unignored findings at or
//! above a severity. Plugged in through `registry::Capability`; the core never imports this.

pub mod config;
mod http;
mod referrer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use oci::{Digest, Glob, Manifest, ManifestKind, Reference};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use registry::{Capability, Registry};
use service::Service;
use tokio::sync::mpsc;
use vuln::Severity;

use crate::findings::ImageFinding;
use crate::inventory::ImageInventory;
use crate::results::{ImageRecord, ScanResults, ScanState};
use crate::scanner::{Advisories, LayerRef, Scanner};
pub use config::{FeedConfig, PullRule, ScanConfig, Unscanned};
pub use referrer::SBOM_ARTIFACT_TYPE;

/// Config media types of container images; other artifacts (signatures, SBOMs, Helm charts)
/// are not scanned.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Verdicts of the pull rules kept in memory (by manifest digest), before the map is cleared.
const VERDICT_CACHE: usize = 4096;

/// The warning of a server whose database was never loaded.
const NO_DB: &str = "no vulnerability database is loaded: run `wharf vulndb update` or `wharf vulndb import` (findings are empty until then)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// What an operator watches of scanning.
struct ScanMetrics {
    queue_depth: Gauge,
    scans: Family<OutcomeLabel, Counter>,
    skipped: Counter,
    seconds: Histogram,
    layers_analysed: Counter,
    layers_reused: Counter,
    findings: Family<SeverityLabel, Counter>,
    pulls_denied: Counter,
    db_stale: Gauge,
}

impl ScanMetrics {
    fn new() -> ScanMetrics {
        ScanMetrics {
            queue_depth: Gauge::default(),
            scans: Family::default(),
            skipped: Counter::default(),
            seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            layers_analysed: Counter::default(),
            layers_reused: Counter::default(),
            findings: Family::default(),
            pulls_denied: Counter::default(),
            db_stale: Gauge::default(),
        }
    }
}

/// A pull rule's answer: allowed, or refused and why.
type Verdict = Result<(), String>;

/// One manifest to scan.
struct Job {
    repo: String,
    digest: Digest,
}

/// Scanning plugged into the registry: see the module documentation.
#[derive(Clone)]
pub struct ScanCapability {
    shared: Arc<Shared>,
}

struct Shared {
    service: Arc<Service>,
    results: ScanResults,
    scanner: Arc<Scanner>,
    advisories: RwLock<Option<Arc<Advisories>>>,
    /// Bumped whenever the advisories change, so cached pull verdicts are recomputed.
    generation: std::sync::atomic::AtomicU64,
    config: ScanConfig,
    on_push: Vec<Glob>,
    sbom_referrers: Vec<Glob>,
    rules: Vec<(Glob, PullRule)>,
    tx: mpsc::Sender<Job>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// Manifests waiting in the queue (the status API shows them as queued).
    queued: Mutex<HashSet<String>>,
    /// Pull verdicts by `repo@digest`, with the advisories generation they were made under.
    verdicts: Mutex<HashMap<String, (u64, Verdict)>>,
    metrics: ScanMetrics,
}

/// What the status API says of one manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageScan {
    /// The repository asked about.
    pub repository: String,
    /// The manifest's digest.
    pub digest: String,
    /// `queued`, `done`, `failed`, `skipped` or `unscanned`.
    pub state: String,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the state last changed (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<u64>,
    /// The distribution (`Debian GNU/Linux 12 (bookworm)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Packages found.
    pub packages: usize,
    /// Unsuppressed findings by severity.
    pub summary: std::collections::BTreeMap<String, usize>,
    /// Every finding, suppressed ones marked, most severe first.
    pub findings: Vec<ImageFinding>,
    /// An index's children, each scanned as an image of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ImageScan>,
    /// Warnings about the database (stale, empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ScanCapability {
    /// Scanning over `service`'s storage, keeping its results in `results` (layer
    /// inventories too), with no advisories until [`ScanCapability::set_advisories`]. Call
    /// [`ScanCapability::spawn_workers`] once a runtime runs.
    pub fn new(service: Arc<Service>, results: ScanResults, config: ScanConfig) -> ScanCapability {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let on_push = config.on_push.iter().map(|p| Glob::new(p)).collect();
        let sbom_referrers = config.sbom_referrers.iter().map(|p| Glob::new(p)).collect();
        let rules = config
            .pull_rules
            .iter()
            .map(|r| (Glob::new(&r.repositories), r.clone()))
            .collect();
        ScanCapability {
            shared: Arc::new(Shared {
                service,
                scanner: Arc::new(Scanner::new(Some(results.clone()))),
                results,
                advisories: RwLock::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
                config,
                on_push,
                sbom_referrers,
                rules,
                tx,
                rx: tokio::sync::Mutex::new(rx),
                queued: Mutex::new(HashSet::new()),
                verdicts: Mutex::new(HashMap::new()),
                metrics: ScanMetrics::new(),
            }),
        }
    }

    /// Starts the configured number of scan workers.
    pub fn spawn_workers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.shared.config.workers.max(1))
            .map(|_| {
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    loop {
                        let job = { shared.rx.lock().await.recv().await };
                        let Some(job) = job else { break };
                        shared.metrics.queue_depth.dec();
                        let key = job.digest.to_string();
                        shared.scan(&job.repo, &job.digest).await;
                        shared.queued.lock().expect("queued set").remove(&key);
                    }
                })
            })
            .collect()
    }

    /// Replaces the advisories (after an import or update): every stored image is matched
    /// against the new ones from then on, without reading a layer.
    pub fn set_advisories(&self, advisories: Arc<Advisories>) {
        let stale = advisories.warnings().iter().any(|w| w.contains("stale"));
        *self.shared.advisories.write().expect("advisories lock") = Some(advisories);
        self.shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared.metrics.db_stale.set(i64::from(stale));
    }

    /// Queues `digest` of `repo` for a scan; `false` when the queue is full.
    pub fn enqueue(&self, repo: &str, digest: &Digest) -> bool {
        self.shared.enqueue(repo, digest)
    }

    /// The scan state and findings of manifest `digest` of `repo`.
    pub async fn image(&self, repo: &str, digest: &Digest) -> Result<ImageScan, String> {
        let shared = self.shared.clone();
        let (repo, digest) = (repo.to_string(), digest.to_string());
        tokio::task::spawn_blocking(move || shared.image_scan(&repo, &digest))
            .await
            .map_err(|e| e.to_string())?
    }

    /// The combined inventory of an analysed image manifest.
    pub fn inventory(&self, digest: &Digest) -> Result<Option<ImageInventory>, String> {
        let rec = self
            .shared
            .results
            .image(&digest.to_string())
            .map_err(|e| e.to_string())?;
        match rec {
            Some(rec) => self
                .shared
                .results
                .inventory(&rec)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// Manifests waiting to be scanned.
    pub fn queue_depth(&self) -> usize {
        self.shared.queued.lock().expect("queued set").len()
    }
}

impl Shared {
    fn enqueue(&self, repo: &str, digest: &Digest) -> bool {
        let key = digest.to_string();
        {
            let mut q = self.queued.lock().expect("queued set");
            if q.contains(&key) {
                return true;
            }
            q.insert(key.clone());
        }
        let job = Job {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                true
            }
            Err(_) => {
                self.queued.lock().expect("queued set").remove(&key);
                self.metrics.skipped.inc();
                tracing::warn!(repo, digest = %key, "scan queue full: scan skipped until a rescan");
                false
            }
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Scans one manifest (an index: each child), recording the outcome.
    async fn scan(self: &Arc<Self>, repo: &str, digest: &Digest) {
        let started = Instant::now();
        let outcome = self.scan_manifest(repo, digest).await;
        let label = match &outcome {
            Ok(ScanState::Done) => "done",
            Ok(_) => "skipped",
            Err(_) => "failed",
        };
        self.metrics
            .scans
            .get_or_create(&OutcomeLabel {
                outcome: label.into(),
            })
            .inc();
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = outcome {
            tracing::warn!(repo, %digest, error = %e, "scan failed");
            let rec = ImageRecord {
                digest: digest.to_string(),
                repo: repo.to_string(),
                layers: vec![],
                children: vec![],
                state: ScanState::Failed(e),
                updated: Self::now(),
                millis: started.elapsed().as_millis() as u64,
            };
            let results = self.results.clone();
            let _ = tokio::task::spawn_blocking(move || results.put_image(&rec)).await;
        }
        let suffix = format!("@{digest}");
        self.verdicts
            .lock()
            .expect("verdicts")
            .retain(|k, _| !k.ends_with(&suffix));
    }

    async fn scan_manifest(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
    ) -> Result<ScanState, String> {
        let started = Instant::now();
        let stored = self
            .service
            .meta()
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("manifest {digest} is not in {repo} (deleted since?)"))?;
        let m = Manifest::parse(Some(&stored.media_type), &stored.body)
            .map_err(|e| format!("manifest does not parse: {e}"))?;
        let mut rec = ImageRecord {
            digest: digest.to_string(),
            repo: repo.to_string(),
            layers: vec![],
            children: vec![],
            state: ScanState::Done,
            updated: 0,
            millis: 0,
        };
        match m.kind {
            ManifestKind::Index => {
                for child in &m.manifests {
                    // BuildKit's attestation manifests are `unknown/unknown` platform: no image.
                    let unknown = child
                        .platform
                        .as_ref()
                        .and_then(|p| p.get("os"))
                        .and_then(|o| o.as_str())
                        == Some("unknown");
                    if unknown {
                        continue;
                    }
                    rec.children.push(child.digest.to_string());
                    Box::pin(self.scan(repo, &child.digest)).await;
                }
            }
            ManifestKind::Image => {
                let config_type = m.config.as_ref().map(|c| c.media_type.as_str());
                if !config_type.is_some_and(|t| IMAGE_CONFIGS.contains(&t)) {
                    rec.state = ScanState::Skipped(format!(
                        "an artifact ({}), not a container image",
                        config_type.unwrap_or("no config")
                    ));
                } else {
                    for layer in &m.layers {
                        self.layer(layer).await?;
                        rec.layers.push(layer.digest.to_string());
                    }
                }
            }
        }
        rec.updated = Self::now();
        rec.millis = started.elapsed().as_millis() as u64;
        let state = rec.state.clone();
        let results = self.results.clone();
        let shared = self.clone();
        let image = format!("{repo}@{digest}");
        let inventory = tokio::task::spawn_blocking(move || {
            results.put_image(&rec)?;
            let inv = results.inventory(&rec)?;
            if let Some(inv) = &inv {
                for f in shared.findings(&image, inv) {
                    if f.suppressed.is_none() {
                        shared
                            .metrics
                            .findings
                            .get_or_create(&SeverityLabel {
                                severity: f.finding.severity.name().into(),
                            })
                            .inc();
                    }
                }
            }
            Ok::<_, crate::results::ResultsError>(inv)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if let Some(inv) = inventory
            && self.sbom_referrers.iter().any(|g| g.matches(repo))
        {
            // The scan stands whether or not the SBOM could be stored.
            match referrer::attach(
                &self.service,
                repo,
                digest,
                &stored.media_type,
                &stored.body,
                &m,
                &inv,
            )
            .await
            {
                Ok(d) => tracing::info!(repo, %digest, sbom = %d, "SBOM attached as a referrer"),
                Err(e) => tracing::warn!(repo, %digest, error = %e, "attaching the SBOM failed"),
            }
        }
        tracing::info!(repo, %digest, millis = started.elapsed().as_millis() as u64, "scanned");
        Ok(state)
    }

    /// Makes sure layer `d`'s inventory is stored, analysing it if it is not.
    async fn layer(self: &Arc<Self>, d: &oci::Descriptor) -> Result<(), String> {
        let key = d.digest.to_string();
        let scanner = self.scanner.clone();
        let k = key.clone();
        let kept = tokio::task::spawn_blocking(move || scanner.kept(&k))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if kept.is_some() {
            self.metrics.layers_reused.inc();
            return Ok(());
        }
        let size = u64::try_from(d.size).unwrap_or(0);
        let stream = self
            .service
            .blobs()
            .get(&d.digest, 0, size)
            .await
            .map_err(|e| format!("layer {key}: {e}"))?;
        // The store verified the blob when it was pushed; the bridge lets the (blocking) layer
        // walker read the async stream.
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let layer = LayerRef {
            digest: key,
            media_type: d.media_type.clone(),
            size,
        };
        let scanner = self.scanner.clone();
        tokio::task::spawn_blocking(move || {
            scanner
                .analyze(&layer, Box::new(reader), &mut |_| {})
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        self.metrics.layers_analysed.inc();
        Ok(())
    }

    /// The findings of an inventory with the current advisories (none before a database is
    /// loaded).
    fn findings(&self, image: &str, inv: &ImageInventory) -> Vec<ImageFinding> {
        let advisories = self.advisories.read().expect("advisories lock").clone();
        advisories.map_or_else(Vec::new, |a| a.findings(image, inv))
    }

    /// The feeds of the loaded database.
    fn feeds(&self) -> Vec<crate::db::FeedStatus> {
        match &*self.advisories.read().expect("advisories lock") {
            Some(a) => a.feeds().to_vec(),
            None => Vec::new(),
        }
    }

    /// Warnings every answer carries.
    fn warnings(&self) -> Vec<String> {
        match &*self.advisories.read().expect("advisories lock") {
            Some(a) => a.warnings().to_vec(),
            None => vec![NO_DB.to_string()],
        }
    }

    /// The status and findings of one manifest (blocking: reads the results database).
    fn image_scan(&self, repo: &str, digest: &str) -> Result<ImageScan, String> {
        let mut scan = ImageScan {
            repository: repo.to_string(),
            digest: digest.to_string(),
            state: "unscanned".into(),
            detail: None,
            updated: None,
            os: None,
            packages: 0,
            summary: Default::default(),
            findings: vec![],
            children: vec![],
            warnings: self.warnings(),
        };
        if self.queued.lock().expect("queued set").contains(digest) {
            scan.state = "queued".into();
        }
        let Some(rec) = self.results.image(digest).map_err(|e| e.to_string())? else {
            return Ok(scan);
        };
        scan.updated = Some(rec.updated);
        let (state, detail) = match &rec.state {
            ScanState::Queued => ("queued", None),
            ScanState::Done => ("done", None),
            ScanState::Failed(d) => ("failed", Some(d.clone())),
            ScanState::Skipped(d) => ("skipped", Some(d.clone())),
        };
        if scan.state != "queued" {
            scan.state = state.into();
        }
        scan.detail = detail;
        for child in &rec.children {
            let mut c = self.image_scan(repo, child)?;
            c.warnings.clear();
            for (sev, n) in &c.summary {
                *scan.summary.entry(sev.clone()).or_default() += n;
            }
            scan.children.push(c);
        }
        if let Some(inv) = self.results.inventory(&rec).map_err(|e| e.to_string())? {
            scan.os = inv
                .os
                .as_ref()
                .map(|o| o.pretty_name.clone().unwrap_or_else(|| o.id.clone()));
            scan.packages = inv.packages.len();
            let mut findings = self.findings(&format!("{repo}@{digest}"), &inv);
            findings.sort_by(|a, b| {
                (b.finding.severity, &a.finding.id).cmp(&(a.finding.severity, &b.finding.id))
            });
            for f in findings.iter().filter(|f| f.suppressed.is_none()) {
                *scan
                    .summary
                    .entry(f.finding.severity.name().to_string())
                    .or_default() += 1;
            }
            scan.findings = findings;
        }
        Ok(scan)
    }

    /// The pull rule's verdict on manifest `digest` of `repo` (blocking).
    fn verdict(&self, repo: &str, rule: &PullRule, digest: &str) -> Result<(), String> {
        let scan = self.image_scan(repo, digest)?;
        // An image never scanned (pushed before scanning was on, or copied in without a push)
        // is queued by its first pull, so a retry finds it scanned.
        if scan.state == "unscanned"
            && let Ok(d) = Digest::parse(digest)
        {
            self.enqueue(repo, &d);
        }
        let worst = |s: &ImageScan| -> Vec<(String, Severity)> {
            s.findings
                .iter()
                .filter(|f| f.suppressed.is_none() && f.finding.severity >= rule.severity)
                .map(|f| (f.finding.id.clone(), f.finding.severity))
                .collect()
        };
        let mut bad = Vec::new();
        let mut unscanned = Vec::new();
        let mut check = |s: &ImageScan| match s.state.as_str() {
            "done" => bad.extend(worst(s)),
            "skipped"
                if s.children.is_empty()
                    && s.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with("an artifact")) => {}
            _ => unscanned.push(format!("{} ({})", s.digest, s.state)),
        };
        if scan.children.is_empty() {
            check(&scan);
        } else {
            for c in &scan.children {
                check(c);
            }
        }
        if !bad.is_empty() {
            bad.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            bad.dedup();
            let ids: Vec<String> = bad
                .iter()
                .take(5)
                .map(|(id, s)| format!("{id} ({s})"))
                .collect();
            let more = if bad.len() > 5 {
                format!(" and {} more", bad.len() - 5)
            } else {
                String::new()
            };
            return Err(format!(
                "{repo}@{digest} has {} unignored finding(s) at or above {} ({}{more}); pulls of {} are refused by the scan rule for {}",
                bad.len(),
                rule.severity,
                ids.join(", "),
                repo,
                rule.repositories
            ));
        }
        if !unscanned.is_empty() && rule.unscanned == Unscanned::Deny {
            return Err(format!(
                "{repo}@{digest} has no scan result yet ({}); the scan rule for {} refuses unscanned images: retry once it is scanned",
                unscanned.join(", "),
                rule.repositories
            ));
        }
        Ok(())
    }
}

impl Capability for ScanCapability {
    fn routes(&self) -> axum::Router<Registry> {
        http::routes(self.clone())
    }

    fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        let m = &self.shared.metrics;
        let p = prom.sub_registry_with_prefix("scan");
        p.register(
            "queue_depth",
            "Manifests waiting to be scanned",
            m.queue_depth.clone(),
        );
        p.register("scans", "Manifests scanned, by outcome", m.scans.clone());
        p.register(
            "skipped",
            "Pushes not scanned because the queue was full",
            m.skipped.clone(),
        );
        p.register(
            "duration_seconds",
            "Time to scan one manifest",
            m.seconds.clone(),
        );
        p.register(
            "layers_analysed",
            "Layers read and analysed",
            m.layers_analysed.clone(),
        );
        p.register(
            "layers_reused",
            "Layers whose stored inventory was reused",
            m.layers_reused.clone(),
        );
        p.register(
            "findings",
            "Unsuppressed findings of scanned images, by severity",
            m.findings.clone(),
        );
        p.register(
            "pulls_denied",
            "Manifest GETs refused by a scan pull rule",
            m.pulls_denied.clone(),
        );
        p.register(
            "db_stale",
            "1 when the vulnerability database is older than max_db_age_hours",
            m.db_stale.clone(),
        );
    }

    fn pushed(&self, repo: &str, digest: &Digest, _media_type: &str) {
        let s = &self.shared;
        if s.config.enabled && s.on_push.iter().any(|g| g.matches(repo)) {
            s.enqueue(repo, digest);
        }
    }

    fn gates_pulls(&self) -> bool {
        !self.shared.rules.is_empty()
    }

    fn check_pull<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let s = &self.shared;
            let Some((_, rule)) = s.rules.iter().find(|(g, _)| g.matches(repo)) else {
                return Ok(());
            };
            let key = format!("{repo}@{digest}");
            let generation = s.generation.load(std::sync::atomic::Ordering::Relaxed);
            if let Some((g, v)) = s.verdicts.lock().expect("verdicts").get(&key)
                && *g == generation
            {
                if v.is_err() {
                    s.metrics.pulls_denied.inc();
                }
                return v.clone();
            }
            let shared = s.clone();
            let (r, k, rule) = (repo.to_string(), digest.to_string(), rule.clone());
            let verdict = tokio::task::spawn_blocking(move || shared.verdict(&r, &rule, &k))
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| v);
            // A verdict on an image still queued is not kept: it changes within seconds.
            if !s
                .queued
                .lock()
                .expect("queued set")
                .contains(&digest.to_string())
            {
                let mut cache = s.verdicts.lock().expect("verdicts");
                if cache.len() >= VERDICT_CACHE {
                    cache.clear();
                }
                cache.insert(key, (generation, verdict.clone()));
            }
            if verdict.is_err() {
                s.metrics.pulls_denied.inc();
            }
            verdict
        })
    }
}

/// The scanning routes on a server without `[scan]`: `/api/v1/scan*` answers 404 saying so,
/// rather than the registry's "no such endpoint" (which reads like a wrong URL).
pub struct NoScan;

/// The message of every `/api/v1/scan*` answer of a server without scanning.
pub const NO_SCAN: &str =
    "scanning is not configured on this server (add a [scan] section to its configuration)";

impl Capability for NoScan {
    fn routes(&self) -> axum::Router<Registry> {
        use axum::routing::any;
        async fn absent() -> registry::ApiError {
            registry::ApiError::new(registry::Code::NameUnknown, NO_SCAN)
        }
        axum::Router::new()
            .route("/api/v1/scan", any(absent))
            .route("/api/v1/scan/{*rest}", any(absent))
    }

    fn register_metrics(&self, _prom: &mut prometheus_client::registry::Registry) {}
}
