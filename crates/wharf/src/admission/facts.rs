//! The webhook's lookups: what the policy engine asks about images ([`policy::FactRequest`]),
//! found out from registries with the one registry client: tags resolved to digests, cosign
//! signatures verified with the policy's keys (`trust::verify_image`, as `wharf verify` does).
//!
//! Latency is the webhook's whole problem (the API server waits on it, with a timeout of a few
//! seconds): every lookup of a review runs concurrently, each distinct (repository, digest,
//! keys) is verified once per review, all of a review's lookups share one deadline well under
//! the webhook timeout, at most `max_lookups` run at once across reviews, and answers are
//! cached: digests of tags for `tag_ttl`, verified signatures for `verdict_ttl` (a digest's
//! signatures do not change; unverified verdicts for `tag_ttl` only, so a newly signed image is
//! admitted soon). A lookup that fails or misses the deadline becomes an `Err` fact, which
//! fires its rule: nothing is admitted because a registry was slow.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use client::{Client, Digest, ImageRef};
use futures_util::future::join_all;
use policy::{FactRequest, Facts, ImageFacts, Policy, ScanFact, Severity, SignatureFact};
use trust::PublicKey;

/// Limits and lifetimes of the lookups.
#[derive(Debug, Clone)]
pub struct FactConfig {
    /// All lookups of one review end by then (the webhook configuration's timeout is 5 s).
    pub deadline: Duration,
    /// Most registry lookups in flight at once, across reviews.
    pub max_lookups: usize,
    /// How long a tag's digest, or an unverified verdict, is reused.
    pub tag_ttl: Duration,
    /// How long a verified signature verdict is reused.
    pub verdict_ttl: Duration,
    /// Most entries of each cache.
    pub cache_entries: usize,
}

impl Default for FactConfig {
    fn default() -> Self {
        FactConfig {
            deadline: Duration::from_secs(2),
            max_lookups: 32,
            tag_ttl: Duration::from_secs(30),
            verdict_ttl: Duration::from_secs(300),
            cache_entries: 10_000,
        }
    }
}

/// A bounded map whose entries expire.
struct TtlCache<K, V> {
    cap: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    fn new(cap: usize) -> Self {
        TtlCache {
            cap: cap.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V, ttl: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.cap {
            let now = Instant::now();
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= self.cap {
                map.clear();
            }
        }
        map.insert(k, (Instant::now() + ttl, v));
    }
}

/// Counters of the lookups, for `/metrics` (clones share the counts).
#[derive(Default, Clone)]
pub struct FactMetrics {
    /// Lookups answered from a cache, by kind (`digest`, `signature`).
    pub cached: prometheus_client::metrics::family::Family<
        KindLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Lookups sent to a registry, by kind and outcome (`ok`, `error`, `deadline`).
    pub fetched: prometheus_client::metrics::family::Family<
        KindOutcomeLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindLabel {
    /// `digest` or `signature`.
    pub kind: &'static str,
}

/// `kind` and `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindOutcomeLabel {
    /// `digest` or `signature`.
    pub kind: &'static str,
    /// `ok`, `error` or `deadline`.
    pub outcome: &'static str,
}

/// This Wharf, when the webhook runs inside `wharf serve`: images named by one of its
/// `names` are looked up in-process (tags through the same source as pulls, so through the
/// pull-through cache; signatures as stored; scan results from the scanner), not over HTTP.
pub struct LocalRegistry {
    /// Registry hosts that name this Wharf in image references (normalised, lower case).
    pub names: Vec<String>,
    /// The source pulls read (the cache's decorator when one is configured).
    pub source: Arc<dyn service::source::ContentSource>,
    /// The registry's services (metadata and blob stores).
    pub service: Arc<service::Service>,
    /// The scanner, when `[scan]` is configured.
    pub scan: Option<Arc<scan::capability::ScanCapability>>,
}

impl LocalRegistry {
    fn serves(&self, r: &ImageRef) -> bool {
        self.names.iter().any(|n| n == r.registry())
    }

    async fn digest(&self, r: &ImageRef) -> Result<Digest, String> {
        let tag = oci::Reference::Tag(r.effective_tag().to_owned());
        match self.source.manifest(r.repository(), &tag).await {
            Ok(Some(m)) => Ok(m.digest),
            Ok(None) => Err(format!(
                "manifest unknown: {}:{} is not in this Wharf",
                r.repository(),
                r.effective_tag()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn artifacts(
        &self,
        r: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<trust::SignatureArtifact>, String> {
        service::signatures::SigningPolicy::artifacts(
            self.service.meta().as_ref(),
            self.service.blobs().as_ref(),
            r.repository(),
            digest,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// The scanner's verdict; an image it has not seen is queued for scanning.
    async fn scan(&self, r: &ImageRef, digest: &Digest) -> Result<ScanFact, String> {
        let Some(scan) = &self.scan else {
            return Err("this Wharf has no [scan] configured".into());
        };
        let s = scan.image(r.repository(), digest).await?;
        if s.state == "unscanned" {
            scan.enqueue(r.repository(), digest);
        }
        Ok(scan_fact(&s))
    }
}

/// A scan's state as the policy sees it: an index counts every child's findings.
fn scan_fact(s: &scan::capability::ImageScan) -> ScanFact {
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    let mut worst: Vec<(Severity, String)> = Vec::new();
    let mut pending: Option<String> = None;
    let mut visit = vec![s];
    while let Some(s) = visit.pop() {
        if !s.children.is_empty() {
            visit.extend(s.children.iter());
            continue;
        }
        if s.state != "done" {
            pending.get_or_insert_with(|| match &s.detail {
                Some(d) => format!("{} ({d})", s.state),
                None => s.state.clone(),
            });
            continue;
        }
        for f in s.findings.iter().filter(|f| f.suppressed.is_none()) {
            let sev = f.finding.severity;
            *counts.entry(sev).or_default() += 1;
            worst.push((
                sev,
                format!(
                    "{} in {} {}",
                    f.finding.id, f.installed.name, f.installed.version
                ),
            ));
        }
    }
    if let Some(why) = pending {
        return ScanFact::NotScanned(why);
    }
    worst.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    worst.dedup();
    worst.truncate(8);
    ScanFact::Scanned { counts, worst }
}

/// Finds out facts about images from registries.
pub struct FactFinder {
    client: Client,
    keys: Vec<(String, PublicKey)>,
    cfg: FactConfig,
    lookups: tokio::sync::Semaphore,
    tags: TtlCache<String, Digest>,
    verdicts: TtlCache<(String, Digest, Vec<String>), SignatureFact>,
    local: Option<Arc<LocalRegistry>>,
    /// Lookup counters.
    pub metrics: FactMetrics,
}

impl FactFinder {
    /// A finder for `policy`: reads the public keys its signature rules name.
    pub fn new(
        policy: &Policy,
        client: Client,
        cfg: FactConfig,
        metrics: FactMetrics,
        local: Option<Arc<LocalRegistry>>,
    ) -> anyhow::Result<FactFinder> {
        let keys = policy
            .signatures
            .keys
            .iter()
            .map(|k| {
                crate::key::load_public(std::path::Path::new(&k.path))
                    .map(|p| (k.name.clone(), p))
                    .with_context(|| format!("the policy's key {:?}", k.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(FactFinder {
            client,
            keys,
            lookups: tokio::sync::Semaphore::new(cfg.max_lookups.max(1)),
            tags: TtlCache::new(cfg.cache_entries),
            verdicts: TtlCache::new(cfg.cache_entries),
            cfg,
            local,
            metrics,
        })
    }

    fn count(&self, kind: &'static str, outcome: &'static str) {
        self.metrics
            .fetched
            .get_or_create(&KindOutcomeLabel { kind, outcome })
            .inc();
    }

    /// Runs `f` with a lookup slot, by `deadline`.
    async fn bounded<T>(
        &self,
        kind: &'static str,
        deadline: tokio::time::Instant,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let late = || {
            format!(
                "no answer within the review's deadline of {} ms",
                self.cfg.deadline.as_millis()
            )
        };
        let out = tokio::time::timeout_at(deadline, async {
            let _slot = self.lookups.acquire().await.map_err(|e| e.to_string())?;
            f.await
        })
        .await;
        match out {
            Ok(Ok(v)) => {
                self.count(kind, "ok");
                Ok(v)
            }
            Ok(Err(e)) => {
                self.count(kind, "error");
                Err(e)
            }
            Err(_) => {
                self.count(kind, "deadline");
                Err(late())
            }
        }
    }

    /// The digest `r`'s tag names now (cached for `tag_ttl`).
    async fn digest(&self, r: &ImageRef, deadline: tokio::time::Instant) -> Result<Digest, String> {
        if let Some(d) = r.digest() {
            return Ok(d.clone());
        }
        let key = r.canonical();
        if let Some(d) = self.tags.get(&key) {
            self.metrics
                .cached
                .get_or_create(&KindLabel { kind: "digest" })
                .inc();
            return Ok(d);
        }
        let d = self
            .bounded("digest", deadline, async {
                match &self.local {
                    Some(l) if l.serves(r) => l.digest(r).await,
                    _ => self
                        .client
                        .resolve(r)
                        .await
                        .map(|x| x.digest)
                        .map_err(|e| e.to_string()),
                }
            })
            .await?;
        self.tags.put(key, d.clone(), self.cfg.tag_ttl);
        Ok(d)
    }

    /// Which of `keys` verified a signature of `digest` in `r`'s repository (cached).
    async fn signature(
        &self,
        r: &ImageRef,
        digest: &Digest,
        keys: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<SignatureFact, String> {
        let key = (r.name(), digest.clone(), keys.to_vec());
        if let Some(v) = self.verdicts.get(&key) {
            self.metrics
                .cached
                .get_or_create(&KindLabel { kind: "signature" })
                .inc();
            return Ok(v);
        }
        let named: Vec<&(String, PublicKey)> =
            self.keys.iter().filter(|(n, _)| keys.contains(n)).collect();
        let public: Vec<PublicKey> = named.iter().map(|(_, k)| k.clone()).collect();
        let fact = self
            .bounded("signature", deadline, async {
                let artifacts = match &self.local {
                    Some(l) if l.serves(r) => l.artifacts(r, digest).await?,
                    _ => {
                        crate::verify::collect(&self.client, r, digest)
                            .await
                            .map_err(|e| format!("{e:#}"))?
                            .0
                    }
                };
                let v = trust::verify_image(
                    digest,
                    &artifacts,
                    &public,
                    &trust::Requirements::default(),
                );
                let mut verified_by: Vec<String> = v
                    .verified
                    .iter()
                    .filter_map(|s| named.get(s.key_index).map(|(n, _)| n.clone()))
                    .collect();
                verified_by.dedup();
                Ok(SignatureFact {
                    verified_by,
                    rejected: v
                        .rejected
                        .iter()
                        .map(|x| format!("{}: {}", x.source, x.reason))
                        .collect(),
                })
            })
            .await?;
        let ttl = if fact.verified_by.is_empty() {
            self.cfg.tag_ttl
        } else {
            self.cfg.verdict_ttl
        };
        self.verdicts.put(key, fact.clone(), ttl);
        Ok(fact)
    }

    /// The scanner's verdict on `digest` of `r` (never cached here: the scanner's own results
    /// are the cache, and a scan finishing must count at once).
    async fn scan(
        &self,
        r: &ImageRef,
        digest: &Digest,
        deadline: tokio::time::Instant,
    ) -> Result<ScanFact, String> {
        match &self.local {
            Some(l) if l.serves(r) => {
                let late = format!(
                    "no answer within the review's deadline of {} ms",
                    self.cfg.deadline.as_millis()
                );
                tokio::time::timeout_at(deadline, l.scan(r, digest))
                    .await
                    .unwrap_or(Err(late))
            }
            Some(_) => Err(format!(
                "{} is not this Wharf: only its own images have scan results",
                r.registry()
            )),
            None => Err(
                "scan results are known only to the webhook inside `wharf serve` with [scan]"
                    .into(),
            ),
        }
    }

    /// The facts `requests` ask for, all looked up at once within one deadline.
    pub async fn facts(&self, requests: &[FactRequest]) -> Facts {
        let deadline = tokio::time::Instant::now() + self.cfg.deadline;
        // Digests first (each distinct tag once).
        let digests = join_all(requests.iter().map(|q| self.digest(&q.reference, deadline))).await;
        // Then each distinct (repository, digest, keys) verified once.
        let mut jobs: Vec<(String, Digest, Vec<String>, &ImageRef)> = Vec::new();
        for (q, d) in requests.iter().zip(&digests) {
            if let (Some(keys), Ok(d)) = (&q.signature, d) {
                let k = (q.reference.name(), d.clone(), keys.clone(), &q.reference);
                if !jobs.iter().any(|j| j.0 == k.0 && j.1 == k.1 && j.2 == k.2) {
                    jobs.push(k);
                }
            }
        }
        let verdicts = join_all(
            jobs.iter()
                .map(|(_, d, keys, r)| self.signature(r, d, keys, deadline)),
        )
        .await;
        let scans = join_all(requests.iter().zip(&digests).map(|(q, d)| async move {
            match (q.scan, d) {
                (false, _) | (_, Err(_)) => None,
                (true, Ok(d)) => Some(self.scan(&q.reference, d, deadline).await),
            }
        }))
        .await;
        let mut facts = Facts::default();
        for ((q, d), scan) in requests.iter().zip(digests).zip(scans) {
            let signature = match (&q.signature, &d) {
                (None, _) | (_, Err(_)) => None,
                (Some(keys), Ok(d)) => jobs
                    .iter()
                    .position(|j| j.0 == q.reference.name() && j.1 == *d && j.2 == *keys)
                    .map(|i| verdicts[i].clone()),
            };
            facts.images.insert(
                q.image.clone(),
                ImageFacts {
                    digest: (q.digest).then_some(d),
                    signature,
                    scan,
                },
            );
        }
        facts
    }

    /// The digests of the images the mutating webhook pins, looked up at once.
    pub async fn digests<'a>(&self, images: impl Iterator<Item = &'a ImageRef>) -> Facts {
        let deadline = tokio::time::Instant::now() + self.cfg.deadline;
        let images: Vec<&ImageRef> = images.collect();
        let found = join_all(images.iter().map(|r| self.digest(r, deadline))).await;
        let mut facts = Facts::default();
        for (r, d) in images.into_iter().zip(found) {
            facts.images.insert(
                r.as_str().to_owned(),
                ImageFacts {
                    digest: Some(d),
                    ..ImageFacts::default()
                },
            );
        }
        facts
    }
}
