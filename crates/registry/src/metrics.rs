//! Prometheus metrics of the HTTP layer: requests by route and status, latency, bytes moved,
//! storage used. The services' own metrics (garbage collection, retention) are attached.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route kind, e.g. `manifest`, `blob`, `blob_upload`.
    pub route: &'static str,
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route kind.
    pub route: &'static str,
    /// HTTP method.
    pub method: String,
}

/// All of Wharf's registry metrics.
pub struct Metrics {
    registry: PromRegistry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds.
    pub latency: Family<RouteLabels, Histogram>,
    /// Blob and manifest bytes received.
    pub bytes_in: Counter,
    /// Blob and manifest bytes sent.
    pub bytes_out: Counter,
    /// Bytes held by committed blobs.
    pub storage_used: Gauge<u64, AtomicU64>,
    /// Registries of other components, encoded after this one.
    attached: std::sync::Mutex<Vec<PromRegistry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Adds the metrics of another component (the services, the pull-through cache) to what
    /// `/metrics` shows.
    /// Its registry should carry the `wharf` prefix too.
    pub fn attach(&self, registry: PromRegistry) {
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(registry);
    }

    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = PromRegistry::with_prefix("wharf");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let storage_used = Gauge::<u64, AtomicU64>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency until the response head is sent",
            latency.clone(),
        );
        registry.register(
            "received_bytes",
            "Blob and manifest bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "sent_bytes",
            "Blob and manifest bytes sent",
            bytes_out.clone(),
        );
        registry.register(
            "storage_used_bytes",
            "Bytes held by committed blobs",
            storage_used.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            storage_used,
            attached: Default::default(),
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        for r in self
            .attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = encode_registry(&mut out, r);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
