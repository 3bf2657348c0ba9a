//! Prometheus metrics of the HTTP layer: requests by route and status, latency, bytes moved,
//! storage used. The services' own metrics (garbage collection, retention) are attached, with
//! the process's (`process_*`, read from `/proc/self`) and the build's (`wharf_build_info`).
//!
//! `/metrics` answers the Prometheus text format 0.0.4 unless the scraper's `Accept` header
//! prefers OpenMetrics 1.0 ([`negotiate`], [`exposition`]): both come from prometheus-client's
//! own encoders, so no format is converted by hand.

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

    /// Every metric in `format`.
    pub fn encode(&self, format: Format) -> String {
        let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::with_capacity(attached.len() + 1);
        all.push(&self.registry);
        all.extend(attached.iter());
        encode(format, &all)
    }
}

/// A text exposition format of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (what `promtool check metrics` reads).
    Prometheus,
    /// OpenMetrics 1.0 text (counters' families without `_total`, `# UNIT`, `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The format a scraper asks for with its `Accept` header: OpenMetrics when it accepts
/// `application/openmetrics-text` (version 1.0.0 or 0.0.1, or none named) with a quality at
/// least that of `text/plain`; the Prometheus text format otherwise, and without the header.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut version_ok = true;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = v
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0)
                }
                "version" if media == "application/openmetrics-text" => {
                    version_ok = matches!(v, "1.0.0" | "0.0.1");
                }
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version_ok => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// `registries` encoded in `format`, one after the other (OpenMetrics ends with `# EOF`).
pub fn encode(format: Format, registries: &[&PromRegistry]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    for r in registries {
        let _ = match format {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, r),
            Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(&mut out, r),
        };
    }
    if format == Format::OpenMetrics {
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    }
    out
}

/// The answer to `GET /metrics` with request headers `headers`: `registries` in the format
/// the `Accept` header asks for ([`negotiate`]). Shared by every metrics listener (`wharf
/// serve`'s and the admission webhook's).
pub fn exposition(
    headers: &axum::http::HeaderMap,
    registries: &[&PromRegistry],
) -> axum::response::Response {
    let format = negotiate(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    text_response(format, encode(format, registries))
}

/// `body`, already encoded in `format`, as a `/metrics` answer.
pub fn text_response(format: Format, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (axum::http::header::CONTENT_TYPE, format.content_type()),
            (axum::http::header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

/// Registers `wharf_build_info{version, revision}` (an info metric: 1) in `prom`, a registry
/// with the `wharf` prefix.
pub fn register_build_info(prom: &mut PromRegistry, version: &str, revision: &str) {
    prom.register(
        "build",
        "Wharf's version and the source revision it was built from",
        prometheus_client::metrics::info::Info::new(vec![
            ("version".to_owned(), version.to_owned()),
            ("revision".to_owned(), revision.to_owned()),
        ]),
    );
}

/// A registry holding the `process_*` metrics (no prefix), read from `/proc/self` at each
/// scrape; on systems without `/proc` it holds nothing.
pub fn process_registry() -> PromRegistry {
    let mut r = PromRegistry::default();
    r.register_collector(Box::new(ProcessCollector));
    r
}

/// The standard `process_*` metrics of the Prometheus client libraries, read from `/proc/self`
/// on each scrape (Linux); a file that cannot be read leaves its metrics out.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/self/stat`'s times: the kernel's USER_HZ, 100 on every
/// Linux architecture Wharf builds for (Prometheus' Go procfs assumes the same).
const USER_HZ: f64 = 100.0;

/// What `/proc` tells of this process.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    virtual_bytes: Option<u64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcessStats {
    fn read() -> Self {
        let proc_dir = std::path::Path::new("/proc/self");
        let mut s = ProcessStats::default();
        if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| boot_time(&t));
            s.apply_stat(&stat, boot);
        }
        if let Ok(status) = std::fs::read_to_string(proc_dir.join("status")) {
            s.resident_bytes = status_kib(&status, "VmRSS:").map(|k| k * 1024);
            s.virtual_bytes = status_kib(&status, "VmSize:").map(|k| k * 1024);
        }
        if let Ok(dir) = std::fs::read_dir(proc_dir.join("fd")) {
            // The directory's own descriptor, open while it is listed, is not counted.
            s.open_fds = Some((dir.count() as u64).saturating_sub(1));
        }
        if let Ok(limits) = std::fs::read_to_string(proc_dir.join("limits")) {
            s.max_fds = max_open_files(&limits);
        }
        s
    }

    /// Fields of `/proc/self/stat`: utime and stime (14, 15) and starttime (22), in clock
    /// ticks; the command name (2) is in parentheses and may hold spaces and parentheses.
    fn apply_stat(&mut self, stat: &str, boot_time: Option<u64>) {
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return;
        };
        // `rest` starts at field 3 (state).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(u), Some(st)) = (field(14), field(15)) {
            self.cpu_seconds = Some((u + st) as f64 / USER_HZ);
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time) {
            self.start_time_seconds = Some(boot as f64 + start as f64 / USER_HZ);
        }
    }
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `/proc/self/status` line such as `VmRSS:    1234 kB`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits` (none when `unlimited`).
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges: [(&str, &str, Option<f64>); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// `wharf_storage_available_bytes` and `wharf_storage_capacity_bytes`: the data volume's free
/// space and size, read from the blob store at each scrape (a disk-filling alert needs nothing
/// else, not even the kubelet's volume metrics). Registered only for a store on a volume.
pub fn register_storage_space(prom: &mut PromRegistry, blobs: Arc<dyn store::BlobStore>) {
    prom.register_collector(Box::new(SpaceCollector(blobs)));
}

struct SpaceCollector(Arc<dyn store::BlobStore>);

impl std::fmt::Debug for SpaceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpaceCollector")
    }
}

impl prometheus_client::collector::Collector for SpaceCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some(space) = self.0.space() else {
            return Ok(());
        };
        for (name, help, v) in [
            (
                "storage_available_bytes",
                "Bytes still free on the data volume for the registry",
                space.available,
            ),
            (
                "storage_capacity_bytes",
                "Size of the data volume in bytes",
                space.capacity,
            ),
        ] {
            let m = ConstGauge::new(v as i64);
            m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        Ok(())
    }
}

/// `wharf_tls_certificate_expiry_timestamp_seconds`: the served certificate's notAfter, in
/// seconds since the epoch, read at each scrape (so it follows reloads).
pub fn register_tls_expiry(prom: &mut PromRegistry, tls: crate::ReloadingTls) {
    prom.register_collector(Box::new(TlsCollector(tls)));
}

struct TlsCollector(crate::ReloadingTls);

impl std::fmt::Debug for TlsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsCollector")
    }
}

impl prometheus_client::collector::Collector for TlsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some(not_after) = self.0.certificate().not_after else {
            return Ok(());
        };
        let secs = match not_after.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let m = ConstGauge::new(secs);
        m.encode(encoder.encode_descriptor(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires (notAfter), in seconds since the epoch",
            None,
            m.metric_type(),
        )?)
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        let cases: &[(Option<&str>, Format)] = &[
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain;version=0.0.4"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text;Version=0.0.1"),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text; version=2.0.0"),
                Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Prometheus),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
                Prometheus,
            ),
            // Prometheus 2.x's scrape header.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 3 preferring the text format.
            (
                Some(
                    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,application/openmetrics-text;version=1.0.0;q=0.3,*/*;q=0.1",
                ),
                Prometheus,
            ),
            (Some("application/json"), Prometheus),
            (Some("application/openmetrics-text;q=bogus"), Prometheus),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "{accept:?}");
        }
    }

    #[test]
    fn both_formats() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                route: "manifest",
                method: "GET".into(),
                status: 200,
            })
            .inc();
        m.latency
            .get_or_create(&RouteLabels {
                route: "manifest",
                method: "GET".into(),
            })
            .observe(0.003);
        let mut build = PromRegistry::with_prefix("wharf");
        register_build_info(&mut build, "1.2.3", "abc123");
        m.attach(build);
        m.attach(process_registry());

        let text = m.encode(Format::Prometheus);
        for line in [
            "# HELP wharf_http_requests_total HTTP requests served.",
            "# TYPE wharf_http_requests_total counter",
            "wharf_http_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 1",
            "# TYPE wharf_http_request_duration_seconds histogram",
            "wharf_http_request_duration_seconds_bucket{route=\"manifest\",method=\"GET\",le=\"+Inf\"} 1",
            "wharf_http_request_duration_seconds_count{route=\"manifest\",method=\"GET\"} 1",
            "# TYPE wharf_build_info gauge",
            "wharf_build_info{version=\"1.2.3\",revision=\"abc123\"} 1",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_start_time_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );

        let om = m.encode(Format::OpenMetrics);
        for line in [
            "# TYPE wharf_http_requests counter",
            "# TYPE wharf_build info",
            "wharf_build_info{version=\"1.2.3\",revision=\"abc123\"} 1",
            "# TYPE process_cpu_seconds counter",
        ] {
            assert!(om.lines().any(|l| l == line), "no {line:?} in\n{om}");
        }
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(om.matches("# EOF").count(), 1);
    }

    #[test]
    fn proc_parsing() {
        let mut s = ProcessStats::default();
        // A command name with a space and a parenthesis.
        let stat = "1234 (wharf (x) y) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 500 123456789 2000 18446744073709551615";
        s.apply_stat(stat, Some(1_700_000_000));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.start_time_seconds, Some(1_700_000_005.0));
        s.apply_stat("garbage", None);
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            status_kib("Name:\twharf\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
        assert_eq!(status_kib("Name:\twharf\n", "VmRSS:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );

        // This process, read for real.
        let me = ProcessStats::read();
        assert!(me.resident_bytes.unwrap() > 1 << 20, "{me:?}");
        assert!(
            me.virtual_bytes.unwrap() >= me.resident_bytes.unwrap(),
            "{me:?}"
        );
        assert!(me.open_fds.unwrap() >= 3, "{me:?}");
        assert!(me.max_fds.unwrap() >= me.open_fds.unwrap(), "{me:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = me.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 24.0 * 3600.0,
            "{started} vs {now}"
        );
        assert!(me.cpu_seconds.unwrap() >= 0.0);
    }
}
