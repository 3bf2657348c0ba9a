//! What an operator watches of the cache: hits, misses, upstream errors, stale answers, bytes.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::UpstreamError;

/// Labels of a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `manifest` or `blob`.
    pub kind: &'static str,
    /// `hit`, `revalidated`, `miss`, `stale` or `error`.
    pub result: &'static str,
}

/// Labels of an upstream failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The upstream's host.
    pub upstream: String,
    /// The kind of failure (see [`UpstreamError::kind`]).
    pub kind: &'static str,
}

/// Labels naming an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream's host.
    pub upstream: String,
}

/// The cache's metrics.
#[derive(Default)]
pub struct CacheMetrics {
    /// Lookups by kind and result.
    pub lookups: Family<LookupLabels, Counter>,
    /// Upstream failures by upstream and kind.
    pub upstream_errors: Family<ErrorLabels, Counter>,
    /// Cached manifests served because the upstream could not be asked.
    pub served_stale: Family<UpstreamLabels, Counter>,
    /// Bytes fetched from upstreams.
    pub upstream_bytes: Counter,
    /// Bytes of cached blobs served without asking an upstream.
    pub bytes_saved: Counter,
    /// Bytes of blobs held for cached repositories (measured by the eviction pass).
    pub cached_bytes: Gauge<u64, AtomicU64>,
    /// Cached images evicted for space.
    pub evictions: Counter,
}

impl CacheMetrics {
    /// Adds every metric to `registry` (under its `wharf` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cache");
        r.register(
            "lookups",
            "Pull-through cache lookups by kind and result",
            self.lookups.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed upstream requests by upstream and kind",
            self.upstream_errors.clone(),
        );
        r.register(
            "served_stale",
            "Cached manifests served because the upstream was unavailable",
            self.served_stale.clone(),
        );
        r.register(
            "upstream_bytes",
            "Blob bytes fetched from upstream registries",
            self.upstream_bytes.clone(),
        );
        r.register(
            "bytes_saved",
            "Cached blob bytes served without an upstream transfer",
            self.bytes_saved.clone(),
        );
        r.register(
            "cached_bytes",
            "Bytes of blobs held for cached repositories",
            self.cached_bytes.clone(),
        );
        r.register(
            "evictions",
            "Cached images evicted to stay under the size limit",
            self.evictions.clone(),
        );
    }

    /// Counts a lookup.
    pub(crate) fn lookup(&self, kind: &'static str, result: &'static str) {
        self.lookups
            .get_or_create(&LookupLabels { kind, result })
            .inc();
    }

    /// Counts an upstream failure.
    pub(crate) fn upstream_error(&self, upstream: &str, e: &UpstreamError) {
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                upstream: upstream.to_owned(),
                kind: e.kind(),
            })
            .inc();
    }
}
