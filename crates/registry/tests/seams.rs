//! The seams capabilities plug into, exercised with stand-ins rather than the real cache (which
//! the registry never imports): a decorator of the source of pulls, and a capability bringing
//! its own route and metric.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{Method, StatusCode};
use common::*;
use futures_util::future::BoxFuture;
use oci::{Digest, Reference};
use prometheus_client::metrics::counter::Counter;
use registry::{Capability, Registry};
use service::source::{BlobRead, ContentSource, SourceError, StoreSource};
use store::StoredManifest;

/// Serves `alias/<x>` as `rw/<x>`, refuses writes to `ro/<x>`, counts stored blob bytes served.
struct Alias {
    inner: StoreSource,
    served: Arc<AtomicU64>,
}

impl ContentSource for Alias {
    fn resolve(&self, name: &str, ns: Option<&str>) -> Result<Option<String>, SourceError> {
        if ns == Some("nowhere") {
            return Err(SourceError::NotServed("nowhere is not served here".into()));
        }
        Ok(name.strip_prefix("alias/").map(|x| format!("rw/{x}")))
    }

    fn refuses_writes(&self, repo: &str) -> Option<String> {
        repo.starts_with("ro/")
            .then(|| format!("{repo} is read-only"))
    }

    fn manifest<'a>(
        &'a self,
        repo: &'a str,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<StoredManifest>, SourceError>> {
        ContentSource::manifest(&self.inner, repo, r)
    }

    fn blob<'a>(
        &'a self,
        repo: &'a str,
        d: &'a Digest,
        head: bool,
    ) -> BoxFuture<'a, Result<Option<BlobRead>, SourceError>> {
        ContentSource::blob(&self.inner, repo, d, head)
    }

    fn tags<'a>(
        &'a self,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, SourceError>> {
        Box::pin(async move {
            Ok(repo
                .starts_with("listed/")
                .then(|| vec!["b".to_owned(), "a".to_owned(), "c".to_owned()]))
        })
    }

    fn served(&self, _repo: &str, bytes: u64) {
        self.served.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A capability with one route and one counter.
struct Echo(Counter);

impl Capability for Echo {
    fn routes(&self) -> axum::Router<Registry> {
        let hits = self.0.clone();
        axum::Router::new().route(
            "/api/v1/echo",
            axum::routing::get(move || async move {
                hits.inc();
                "echo"
            }),
        )
    }

    fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        prom.register("echo_requests", "Echo requests", self.0.clone());
    }
}

fn env(served: Arc<AtomicU64>) -> Env {
    Env::start_built(|svc| {
        let source = Alias {
            inner: svc.store_source(),
            served,
        };
        Registry::builder(svc)
            .source(Arc::new(source))
            .capability(Arc::new(Echo(Counter::default())))
    })
}

#[tokio::test]
async fn a_decorated_source_resolves_names_refuses_writes_and_sees_what_is_served() {
    let served = Arc::new(AtomicU64::new(0));
    let env = env(served.clone());
    let img = env.push_image("rw/app", "v1", 7).await;

    // Read through the alias: the route is renamed before it is served.
    env.get("/v2/alias/app/manifests/v1")
        .await
        .expect(StatusCode::OK);
    let layer = env
        .get(format!("/v2/alias/app/blobs/{}", img.layer.digest))
        .await;
    layer.expect(StatusCode::OK);
    assert_eq!(
        served.load(Ordering::Relaxed),
        img.layer.data.len() as u64,
        "the decorator hears of stored blobs served"
    );
    env.get("/v2/x/manifests/v1?ns=nowhere")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");

    // Writes into a read-only repository are refused before anything is stored.
    env.post("/v2/ro/app/blobs/uploads/")
        .await
        .expect_error(StatusCode::FORBIDDEN, "DENIED");
    env.req(Method::DELETE, "/v2/ro/app/manifests/v1")
        .send()
        .await
        .expect_error(StatusCode::FORBIDDEN, "DENIED");

    // A source that answers tag lists itself is paged like the store's listing.
    let tags = env.get("/v2/listed/app/tags/list?n=2").await;
    tags.expect(StatusCode::OK);
    assert_eq!(tags.json()["tags"], serde_json::json!(["a", "b"]));
}

#[tokio::test]
async fn a_capability_brings_its_routes_and_metrics() {
    let env = env(Arc::new(AtomicU64::new(0)));
    let r = env.get("/api/v1/echo").await;
    r.expect(StatusCode::OK);
    assert_eq!(r.text(), "echo");
    assert!(
        env.reg
            .metrics()
            .encode(registry::metrics::Format::Prometheus)
            .contains("wharf_echo_requests_total 1"),
        "the capability's metric is on /metrics"
    );
}
