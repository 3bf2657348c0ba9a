//! In-process conformance tests of the whole HTTP API, written against the OCI Distribution
//! Specification (spec.md, v1.1 plus the `tag` query parameter added after it) and modelled on the
//! checks of the upstream conformance suite (`conformance/` in opencontainers/distribution-spec):
//! pull, push, content discovery and content management, plus every error path, name and path
//! tricks, health endpoints and durability across a restart.
//!
//! Tests assert what the spec requires. Where Wharf differs they fail; nothing is ignored.

mod common;

use std::collections::BTreeSet;
use std::io;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::*;
use serde_json::{Value, json};

const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;
const BAD_REQUEST: StatusCode = StatusCode::BAD_REQUEST;

fn zero_digest() -> String {
    format!("sha256:{}", "0".repeat(64))
}

// =============================================================================================
// Base, health and metrics
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn base_endpoint_answers_200_with_api_version_header() {
    let env = Env::start();
    for uri in ["/v2/", "/v2"] {
        let r = env.get(uri).await;
        r.expect(StatusCode::OK);
        r.expect_header("Docker-Distribution-API-Version", "registry/2.0");
    }
    let r = env.head("/v2/").await;
    r.expect(StatusCode::OK);
    r.expect_header("Docker-Distribution-API-Version", "registry/2.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_version_header_is_on_every_response() {
    let env = Env::start();
    let d = zero_digest();
    let responses = vec![
        env.get(format!("/v2/r/blobs/{d}")).await,
        env.get("/v2/BAD/tags/list").await,
        env.post("/v2/r/blobs/uploads/").await,
        env.get("/v2/r/manifests/nope").await,
        env.get("/v2/_catalog").await,
        env.get("/v3/").await,
    ];
    for r in &responses {
        r.expect_header("Docker-Distribution-API-Version", "registry/2.0");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_readyz_and_metrics() {
    let env = Env::start();
    let r = env.get("/healthz").await;
    r.expect(StatusCode::OK);
    assert_eq!(r.text(), "ok");

    env.get("/readyz").await.expect(StatusCode::OK);
    env.reg.set_ready(false);
    env.get("/readyz")
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    // Liveness is unaffected by draining.
    env.get("/healthz").await.expect(StatusCode::OK);
    env.reg.set_ready(true);
    env.get("/readyz").await.expect(StatusCode::OK);

    let img = env.push_image("metrics/repo", "v1", 1).await;
    env.get(format!("/v2/metrics/repo/manifests/{}", img.digest))
        .await
        .expect(StatusCode::OK);
    env.get("/v2/metrics/repo/manifests/missing")
        .await
        .expect(NOT_FOUND);

    // Metrics are not on the API's router (they name repositories), only on their own.
    use tower::ServiceExt;
    env.get("/metrics").await.expect(NOT_FOUND);
    let scrape = |accept: Option<&'static str>| {
        let mut req = axum::http::Request::get("/metrics");
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let router = env.reg.metrics_router();
        async move {
            let r = router
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            let body = http_body_util::BodyExt::collect(r.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec();
            (ct, String::from_utf8(body).unwrap())
        }
    };
    // The Prometheus text format by default and when asked for; OpenMetrics when asked for.
    for accept in [None, Some("text/plain;version=0.0.4")] {
        let (ct, t) = scrape(accept).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        for needle in [
            "# TYPE wharf_http_requests_total counter",
            "route=\"manifest\"",
            "status=\"404\"",
            "# TYPE wharf_http_request_duration_seconds histogram",
            "wharf_received_bytes_total",
            "wharf_sent_bytes_total",
            "wharf_storage_used_bytes",
            "wharf_build_info{",
            "process_resident_memory_bytes",
        ] {
            assert!(t.contains(needle), "metrics lack {needle}\n{t}");
        }
        assert!(!t.contains("# EOF"), "{t}");
        // The data volume's space, as statvfs tells it (a temp dir is on a real volume).
        let gauge = |name: &str| -> f64 {
            t.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name}\n{t}"))
                .parse()
                .unwrap()
        };
        let (avail, cap) = (
            gauge("wharf_storage_available_bytes"),
            gauge("wharf_storage_capacity_bytes"),
        );
        assert!(
            avail > 0.0 && cap >= avail,
            "available {avail}, capacity {cap}"
        );
    }
    let (ct, t) = scrape(Some("application/openmetrics-text;version=1.0.0")).await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(t.contains("# TYPE wharf_http_requests counter"), "{t}");
    assert!(t.contains("wharf_http_requests_total{"), "{t}");
    assert!(t.trim_end().ends_with("# EOF"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_answer_404() {
    let env = Env::start();
    for uri in [
        "/v3/",
        "/v2/repo",
        "/v2/repo/",
        "/v2/repo/unknown/thing",
        "/v2/repo/manifests/v1/",
        "/v2/repo/tags/list/",
        "/",
    ] {
        let r = env.get(uri).await;
        r.expect_status_spec_body(NOT_FOUND);
    }
}

// =============================================================================================
// Pull: blobs
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn pull_blob_get_and_head() {
    let env = Env::start();
    let b = Blob::random(1, 4096);
    env.push_blob("pull/blob", &b).await;
    let uri = format!("/v2/pull/blob/blobs/{}", b.digest);

    let r = env.get(&uri).await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body.as_ref(), b.data.as_slice());
    r.expect_header("Docker-Content-Digest", &b.d());
    r.expect_header("Content-Length", "4096");

    let r = env.head(&uri).await;
    r.expect(StatusCode::OK);
    assert!(r.body.is_empty(), "HEAD must not have a body\n{}", r.dump());
    r.expect_header("Docker-Content-Digest", &b.d());
    r.expect_header("Content-Length", "4096");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_missing_blob_is_404_blob_unknown() {
    let env = Env::start();
    let d = zero_digest();
    // A repository that was never created: BLOB_UNKNOWN or NAME_UNKNOWN both fit.
    env.get(format!("/v2/pull/none/blobs/{d}"))
        .await
        .expect_error_any(NOT_FOUND, &["BLOB_UNKNOWN", "NAME_UNKNOWN"]);
    env.head(format!("/v2/pull/none/blobs/{d}"))
        .await
        .expect(NOT_FOUND);
    // A repository that exists but lacks the blob.
    env.push_blob("pull/some", &Blob::random(2, 10)).await;
    env.get(format!("/v2/pull/some/blobs/{d}"))
        .await
        .expect_error(NOT_FOUND, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_blob_is_scoped_to_its_repository() {
    let env = Env::start();
    let b = Blob::random(3, 100);
    env.push_blob("scope/a", &b).await;
    env.get(format!("/v2/scope/a/blobs/{}", b.digest))
        .await
        .expect(StatusCode::OK);
    env.get(format!("/v2/scope/b/blobs/{}", b.digest))
        .await
        .expect_error(NOT_FOUND, "BLOB_UNKNOWN");
    env.head(format!("/v2/scope/b/blobs/{}", b.digest))
        .await
        .expect(NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_blob_digest_with_escaped_colon() {
    let env = Env::start();
    let b = Blob::random(4, 64);
    env.push_blob("esc", &b).await;
    let escaped = b.d().replace(':', "%3A");
    let r = env.get(format!("/v2/esc/blobs/{escaped}")).await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_blob_with_invalid_digest_is_400_digest_invalid() {
    let env = Env::start();
    for d in [
        "sha256:xyz".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha512:{}", "a".repeat(64)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
        "nodigest".to_owned(),
    ] {
        env.get(format!("/v2/r/blobs/{d}"))
            .await
            .expect_error(BAD_REQUEST, "DIGEST_INVALID");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn range_requests_on_blobs() {
    let env = Env::start();
    let b = Blob::random(5, 2048);
    env.push_blob("range", &b).await;
    let uri = format!("/v2/range/blobs/{}", b.digest);
    let cases: [(&str, usize, usize); 5] = [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
    ];
    for (range, start, end) in cases {
        let r = env
            .req(Method::GET, &uri)
            .header("Range", range)
            .send()
            .await;
        r.expect(StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body.as_ref(), &b.data[start..=end], "{range}");
        r.expect_header("Content-Length", &(end - start + 1).to_string());
        r.expect_header("Content-Range", &format!("bytes {start}-{end}/2048"));
        r.expect_header("Docker-Content-Digest", &b.d());
    }
    // Past the end: 416 with the complete length (RFC 9110 §15.5.17).
    for range in ["bytes=5000-10000", "bytes=2048-", "bytes=-0"] {
        let r = env
            .req(Method::GET, &uri)
            .header("Range", range)
            .send()
            .await;
        r.expect(StatusCode::RANGE_NOT_SATISFIABLE);
        r.expect_header("Content-Range", "bytes */2048");
    }
    // A HEAD with a range describes the part without sending it.
    let r = env
        .req(Method::HEAD, &uri)
        .header("Range", "bytes=100-199")
        .send()
        .await;
    assert!(r.body.is_empty(), "{}", r.dump());
    assert!(
        r.status == StatusCode::PARTIAL_CONTENT || r.status == StatusCode::OK,
        "{}",
        r.dump()
    );
}

/// The conformance suite's "range 500-0" case: an inverted range must be refused with 416; a full
/// 200 is counted as "range request unsupported, full blob returned".
#[tokio::test(flavor = "multi_thread")]
async fn range_request_with_end_before_start_is_416() {
    let env = Env::start();
    let b = Blob::random(6, 2048);
    env.push_blob("range", &b).await;
    let r = env
        .req(Method::GET, format!("/v2/range/blobs/{}", b.digest))
        .header("Range", "bytes=500-0")
        .send()
        .await;
    r.expect(StatusCode::RANGE_NOT_SATISFIABLE);
}

/// A JSON body on a 416 is a 4xx error body and must use one of the spec's codes.
#[tokio::test(flavor = "multi_thread")]
async fn range_416_error_body_uses_a_spec_error_code() {
    let env = Env::start();
    let b = Blob::random(7, 100);
    env.push_blob("range", &b).await;
    let r = env
        .req(Method::GET, format!("/v2/range/blobs/{}", b.digest))
        .header("Range", "bytes=1000-")
        .send()
        .await;
    r.expect_status_spec_body(StatusCode::RANGE_NOT_SATISFIABLE);
}

// =============================================================================================
// Pull: manifests
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn pull_manifest_by_tag_and_digest_get_and_head() {
    let env = Env::start();
    let img = env.push_image("pull/img", "v1", 10).await;
    let len = img.body.len().to_string();
    for reference in ["v1".to_owned(), img.digest.to_string()] {
        let uri = format!("/v2/pull/img/manifests/{reference}");
        let r = env
            .req(Method::GET, &uri)
            .header("Accept", OCI_MANIFEST)
            .header("Accept", OCI_INDEX)
            .send()
            .await;
        r.expect(StatusCode::OK);
        assert_eq!(r.body.as_ref(), img.body.as_slice());
        r.expect_header("Content-Type", OCI_MANIFEST);
        r.expect_header("Content-Length", &len);
        r.expect_header("Docker-Content-Digest", &img.digest.to_string());

        let r = env.head(&uri).await;
        r.expect(StatusCode::OK);
        assert!(r.body.is_empty(), "HEAD must not have a body\n{}", r.dump());
        r.expect_header("Content-Type", OCI_MANIFEST);
        r.expect_header("Content-Length", &len);
        r.expect_header("Docker-Content-Digest", &img.digest.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_missing_manifest_is_404_manifest_unknown() {
    let env = Env::start();
    env.push_image("pull/m", "v1", 11).await;
    let d = sha256(b"random content nobody pushed");
    for repo in ["pull/m", "pull/never"] {
        for reference in ["missing-tag".to_owned(), d.to_string()] {
            let uri = format!("/v2/{repo}/manifests/{reference}");
            let codes: &[&str] = if repo == "pull/m" {
                &["MANIFEST_UNKNOWN"]
            } else {
                &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]
            };
            env.get(&uri).await.expect_error_any(NOT_FOUND, codes);
            env.head(&uri).await.expect(NOT_FOUND);
        }
    }
}

/// The conformance suite pulls `sha256:baddigeststring` and accepts 400 or 404.
#[tokio::test(flavor = "multi_thread")]
async fn pull_manifest_with_malformed_digest_is_400_or_404() {
    let env = Env::start();
    let r = env.get("/v2/r/manifests/sha256:baddigeststring").await;
    assert!(
        r.status == BAD_REQUEST || r.status == NOT_FOUND,
        "{}",
        r.dump()
    );
    r.check_spec_body();
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_manifest_returns_the_exact_bytes_pushed() {
    let env = Env::start();
    let img = Image::new(12);
    env.push_blob("bytes", &img.config).await;
    env.push_blob("bytes", &img.layer).await;
    // Odd key order, whitespace, unicode escapes and an unknown field must survive verbatim.
    let body = format!(
        "{{\n  \"layers\" : [ {} ],\n\t\"config\":{},  \"schemaVersion\" : 2,\r\n \"mediaType\": \"{}\", \"x-custom\": \"caf\\u00e9 ☕\" }}  \n",
        img.layer.desc(OCI_LAYER),
        img.config.desc(OCI_CONFIG),
        OCI_MANIFEST
    );
    let r = env
        .push_manifest("bytes", "weird", OCI_MANIFEST, body.as_bytes())
        .await;
    let d = sha256(body.as_bytes());
    r.expect_header("Docker-Content-Digest", &d.to_string());
    for reference in ["weird".to_owned(), d.to_string()] {
        let r = env.get(format!("/v2/bytes/manifests/{reference}")).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.body.as_ref(), body.as_bytes());
    }
}

// =============================================================================================
// Push: blobs, monolithic
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_post_then_put() {
    let env = Env::start();
    let b = Blob::random(20, 1000);
    let r = env.post("/v2/push/pp/blobs/uploads/").await;
    r.expect(StatusCode::ACCEPTED);
    let loc = r.location();
    assert!(
        loc.starts_with("/v2/push/pp/blobs/uploads/")
            && loc.len() > "/v2/push/pp/blobs/uploads/".len(),
        "Location must name the session: {loc}"
    );
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .body(b.data.clone())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    r.expect_header("Docker-Content-Digest", &b.d());
    let blob_loc = r.location();
    let r = env.get(&blob_loc).await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body.as_ref(), b.data.as_slice());
    env.get(format!("/v2/push/pp/blobs/{}", b.digest))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_single_post() {
    let env = Env::start();
    for b in [Blob::random(21, 777), Blob::sha512(pattern(22, 777))] {
        let r = env
            .req(
                Method::POST,
                format!("/v2/push/single/blobs/uploads/?digest={}", b.digest),
            )
            .header("Content-Type", OCTET)
            .body(b.data.clone())
            .send()
            .await;
        // Wharf supports single-POST uploads, so 201 (a registry that does not may answer 202).
        r.expect(StatusCode::CREATED);
        r.expect_header("Docker-Content-Digest", &b.d());
        let r = env.get(r.location()).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.body.as_ref(), b.data.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_streamed_patch_then_empty_put() {
    let env = Env::start();
    let b = Blob::random(23, 5000);
    let loc = env.start_upload("push/stream").await;
    let r = env
        .req(Method::PATCH, &loc)
        .header("Content-Type", OCTET)
        .raw_body(Body::from(b.data.clone()))
        .send()
        .await;
    r.expect(StatusCode::ACCEPTED);
    r.expect_header("Range", "0-4999");
    let loc = r.location();
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .header("Content-Length", "0")
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env.get(r.location()).await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_well_known_blobs_empty_and_empty_json() {
    let env = Env::start();
    for b in [
        Blob::new(Vec::new()),
        Blob::new(b"{}".to_vec()),
        Blob::sha512(Vec::new()),
        Blob::sha512(b"{}".to_vec()),
    ] {
        env.push_blob("wellknown", &b).await;
        let uri = format!("/v2/wellknown/blobs/{}", b.digest);
        let r = env.head(&uri).await;
        r.expect(StatusCode::OK);
        r.expect_header("Content-Length", &b.data.len().to_string());
        r.expect_header("Docker-Content-Digest", &b.d());
        let r = env.get(&uri).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.body.as_ref(), b.data.as_slice());
        env.delete(&uri).await.expect(StatusCode::ACCEPTED);
        env.head(&uri).await.expect(NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_same_blob_twice_is_idempotent() {
    let env = Env::start();
    let b = Blob::random(24, 300);
    env.push_blob("dup", &b).await;
    env.push_blob("dup", &b).await;
    let r = env
        .req(
            Method::POST,
            format!("/v2/dup/blobs/uploads/?digest={}", b.digest),
        )
        .body(b.data.clone())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env.get(format!("/v2/dup/blobs/{}", b.digest)).await;
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_put_with_wrong_digest_is_400_and_leaves_nothing() {
    let env = Env::start();
    let b = Blob::random(25, 1500);
    let claimed = sha256(b"something else");
    let loc = env.start_upload("bad/put").await;
    let r = env
        .req(Method::PUT, with_query(&loc, &format!("digest={claimed}")))
        .header("Content-Type", OCTET)
        .body(b.data.clone())
        .send()
        .await;
    r.expect_error(BAD_REQUEST, "DIGEST_INVALID");
    for d in [claimed.to_string(), b.d()] {
        env.head(format!("/v2/bad/put/blobs/{d}"))
            .await
            .expect(NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_single_post_with_wrong_digest_is_refused_and_leaves_nothing() {
    let env = Env::start();
    for b in [Blob::random(26, 900), Blob::sha512(pattern(27, 900))] {
        let mut bad = b.data.clone();
        bad.extend_from_slice(b"oh no");
        let r = env
            .req(
                Method::POST,
                format!("/v2/bad/post/blobs/uploads/?digest={}", b.digest),
            )
            .header("Content-Type", OCTET)
            .body(bad.clone())
            .send()
            .await;
        // The conformance suite allows 202 (single POST unsupported) or 400.
        if r.status == StatusCode::ACCEPTED {
            let loc = r.location();
            env.req(
                Method::PUT,
                with_query(&loc, &format!("digest={}", b.digest)),
            )
            .body(bad.clone())
            .send()
            .await
            .expect_error(BAD_REQUEST, "DIGEST_INVALID");
        } else {
            r.expect_error(BAD_REQUEST, "DIGEST_INVALID");
        }
        env.head(format!("/v2/bad/post/blobs/{}", b.digest))
            .await
            .expect(NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_put_digest_parameter_missing_or_invalid_is_400() {
    let env = Env::start();
    let loc = env.start_upload("bad/param").await;
    env.req(Method::PUT, &loc)
        .body(b"abc".to_vec())
        .send()
        .await
        .expect_error(BAD_REQUEST, "DIGEST_INVALID");
    let loc = env.start_upload("bad/param").await;
    env.req(Method::PUT, with_query(&loc, "digest=sha256:nothex"))
        .body(b"abc".to_vec())
        .send()
        .await
        .expect_error(BAD_REQUEST, "DIGEST_INVALID");
    env.req(
        Method::POST,
        "/v2/bad/param/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e",
    )
    .body(b"abc".to_vec())
    .send()
    .await
    .expect_error(BAD_REQUEST, "DIGEST_INVALID");
}

// =============================================================================================
// Push: blobs, chunked
// =============================================================================================

async fn patch(env: &Env, loc: &str, data: &[u8], start: usize) -> Resp {
    env.req(Method::PATCH, loc)
        .header("Content-Type", OCTET)
        .header(
            "Content-Range",
            &format!("{}-{}", start, start + data.len() - 1),
        )
        .body(data.to_vec())
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunked_in_order() {
    let env = Env::start();
    for b in [Blob::random(30, 3000), Blob::sha512(pattern(31, 3000))] {
        let r = env
            .req(Method::POST, "/v2/chunked/blobs/uploads/")
            .header("Content-Length", "0")
            .send()
            .await;
        r.expect(StatusCode::ACCEPTED);
        let mut loc = r.location();
        for (i, chunk) in b.data.chunks(1024).enumerate() {
            let start = i * 1024;
            let r = patch(&env, &loc, chunk, start).await;
            r.expect(StatusCode::ACCEPTED);
            r.expect_header("Range", &format!("0-{}", start + chunk.len() - 1));
            loc = r.location();
            let s = env.get(&loc).await;
            s.expect(StatusCode::NO_CONTENT);
            s.expect_header("Range", &format!("0-{}", start + chunk.len() - 1));
            assert!(s.header("Location").is_some(), "{}", s.dump());
        }
        let r = env
            .req(
                Method::PUT,
                with_query(&loc, &format!("digest={}", b.digest)),
            )
            .header("Content-Type", OCTET)
            .header("Content-Length", "0")
            .send()
            .await;
        r.expect(StatusCode::CREATED);
        r.expect_header("Docker-Content-Digest", &b.d());
        let r = env.get(r.location()).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.body.as_ref(), b.data.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunked_final_chunk_in_put() {
    let env = Env::start();
    let b = Blob::random(32, 2000);
    let loc = env.start_upload("chunked/put").await;
    let r = patch(&env, &loc, &b.data[..1200], 0).await;
    r.expect(StatusCode::ACCEPTED);
    let loc = r.location();
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .header("Content-Range", "1200-1999")
        .body(b.data[1200..].to_vec())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env.get(r.location()).await;
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunked_put_without_any_body_headers() {
    let env = Env::start();
    let b = Blob::random(33, 700);
    let loc = env.start_upload("chunked/nohdr").await;
    let r = patch(&env, &loc, &b.data, 0).await;
    r.expect(StatusCode::ACCEPTED);
    let r = env
        .req(
            Method::PUT,
            with_query(&r.location(), &format!("digest={}", b.digest)),
        )
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    env.get(format!("/v2/chunked/nohdr/blobs/{}", b.digest))
        .await
        .expect(StatusCode::OK);
}

/// The conformance suite's chunked flow: out-of-order chunks get 416, a GET recovers the offset,
/// a retried chunk gets 416, an out-of-order final chunk in the PUT gets 416, then it completes.
#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunked_out_of_order_is_416_and_recoverable() {
    let env = Env::start();
    let b = Blob::random(34, 3000);
    let (c1, c2, c3) = (&b.data[..1000], &b.data[1000..2000], &b.data[2000..]);
    let loc = env.start_upload("ooo").await;

    // Second chunk first.
    let r = patch(&env, &loc, c2, 1000).await;
    r.expect(StatusCode::RANGE_NOT_SATISFIABLE);
    let s = env.get(&loc).await;
    s.expect(StatusCode::NO_CONTENT);
    let loc = s.location();

    let r = patch(&env, &loc, c1, 0).await;
    r.expect(StatusCode::ACCEPTED);
    r.expect_header("Range", "0-999");
    let loc = r.location();

    // Retrying the first chunk is out of order now.
    patch(&env, &loc, c1, 0)
        .await
        .expect(StatusCode::RANGE_NOT_SATISFIABLE);
    // Skipping ahead is too.
    patch(&env, &loc, c3, 2000)
        .await
        .expect(StatusCode::RANGE_NOT_SATISFIABLE);
    let s = env.get(&loc).await;
    s.expect(StatusCode::NO_CONTENT);
    s.expect_header("Range", "0-999");
    let loc = s.location();

    let r = patch(&env, &loc, c2, 1000).await;
    r.expect(StatusCode::ACCEPTED);
    r.expect_header("Range", "0-1999");
    let loc = r.location();

    // Final chunk in the PUT, out of order: 416.
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .header("Content-Range", "1000-1999")
        .body(c2.to_vec())
        .send()
        .await;
    r.expect(StatusCode::RANGE_NOT_SATISFIABLE);
    let s = env.get(&loc).await;
    s.expect(StatusCode::NO_CONTENT);
    s.expect_header("Range", "0-1999");

    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .header("Content-Range", "2000-2999")
        .body(c3.to_vec())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env.get(r.location()).await;
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

/// A 416 for an out-of-order chunk is a 4xx; a JSON body on it must use a spec error code.
#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunk_out_of_order_error_body_uses_a_spec_code() {
    let env = Env::start();
    let loc = env.start_upload("ooo/code").await;
    let r = patch(&env, &loc, b"hello", 10).await;
    r.expect_status_spec_body(StatusCode::RANGE_NOT_SATISFIABLE);
}

/// "The `<end-of-range>` value is the position of the last uploaded byte of the blob, matching the
/// end value of the `Content-Range` in the request." A chunk whose body is shorter or longer than
/// its Content-Range (chunked transfer encoding, so no Content-Length to compare) must not be
/// acknowledged with a different range: it must be refused.
#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunk_whose_body_disagrees_with_its_content_range_is_refused() {
    let env = Env::start();
    let mut problems = Vec::new();
    for (range, body) in [("0-9", &b"12345"[..]), ("0-4", &b"1234567890"[..])] {
        let loc = env.start_upload("short/chunk").await;
        let r = env
            .req(Method::PATCH, &loc)
            .header("Content-Type", OCTET)
            .header("Content-Range", range)
            .raw_body(Body::from(body.to_vec()))
            .send()
            .await;
        let ok = if r.status == StatusCode::ACCEPTED {
            r.header("Range") == Some(range)
        } else {
            r.status.is_client_error()
        };
        if !ok {
            problems.push(format!(
                "Content-Range {range} with a {}-byte body was acknowledged as Range {:?}\n{}",
                body.len(),
                r.header("Range"),
                r.dump()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunk_content_length_disagreeing_with_content_range_is_refused() {
    let env = Env::start();
    let loc = env.start_upload("cl/cr").await;
    let r = env
        .req(Method::PATCH, &loc)
        .header("Content-Type", OCTET)
        .header("Content-Range", "0-9")
        .header("Content-Length", "5")
        .raw_body(Body::from(b"12345".to_vec()))
        .send()
        .await;
    r.expect_error(BAD_REQUEST, "SIZE_INVALID");
    // Nothing was accepted.
    let s = env.get(&loc).await;
    s.expect(StatusCode::NO_CONTENT);
    s.expect_header("Range", "0-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_blob_chunk_with_malformed_content_range_is_refused() {
    let env = Env::start();
    let loc = env.start_upload("bad/cr").await;
    for cr in ["abc", "5", "9-1", "-1-3"] {
        let r = env
            .req(Method::PATCH, &loc)
            .header("Content-Range", cr)
            .body(b"xyz".to_vec())
            .send()
            .await;
        assert!(r.status.is_client_error(), "{cr}: {}", r.dump());
    }
    let s = env.get(&loc).await;
    s.expect(StatusCode::NO_CONTENT);
    s.expect_header("Range", "0-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_status_of_a_new_session() {
    let env = Env::start();
    let loc = env.start_upload("status").await;
    let r = env.get(&loc).await;
    r.expect(StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert!(r.header("Location").is_some(), "{}", r.dump());
    let range = r.must_header("Range");
    assert!(range.starts_with("0-"), "{}", r.dump());
}

/// Over HTTP/2 a request body needs no Content-Length and there is no Transfer-Encoding header.
/// The closing PUT then carries the final chunk with neither header; the chunk must not be
/// dropped. (Robustness: the spec lists Content-Length as sent "if present".)
#[tokio::test(flavor = "multi_thread")]
async fn push_blob_put_with_body_but_no_length_header_keeps_the_body() {
    let env = Env::start();
    let b = Blob::random(35, 1000);
    let loc = env.start_upload("h2").await;
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Type", OCTET)
        .raw_body(Body::from(b.data.clone()))
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env.get(format!("/v2/h2/blobs/{}", b.digest)).await;
    assert_eq!(r.body.as_ref(), b.data.as_slice());
}

// =============================================================================================
// Push: upload sessions — cancel, unknown ids, other repositories
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn upload_cancel_with_delete() {
    let env = Env::start();
    let b = Blob::random(40, 100);
    let loc = env.start_upload("cancel").await;
    patch(&env, &loc, &b.data, 0)
        .await
        .expect(StatusCode::ACCEPTED);
    let r = env
        .req(Method::DELETE, &loc)
        .header("Content-Length", "0")
        .send()
        .await;
    r.expect(StatusCode::NO_CONTENT);
    env.get(&loc)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    patch(&env, &loc, &b.data, 0)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.req(
        Method::PUT,
        with_query(&loc, &format!("digest={}", b.digest)),
    )
    .header("Content-Length", "0")
    .send()
    .await
    .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.delete(&loc)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.head(format!("/v2/cancel/blobs/{}", b.digest))
        .await
        .expect(NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_session_is_gone_after_completion() {
    let env = Env::start();
    let b = Blob::random(41, 100);
    let loc = env.start_upload("done").await;
    let put = with_query(&loc, &format!("digest={}", b.digest));
    env.req(Method::PUT, &put)
        .body(b.data.clone())
        .send()
        .await
        .expect(StatusCode::CREATED);
    env.get(&loc)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.req(Method::PUT, &put)
        .body(b.data.clone())
        .send()
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    patch(&env, &loc, b"more", 100)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_upload_ids_are_404_blob_upload_unknown() {
    let env = Env::start();
    // Make the repository exist and hold files, so a traversal would have something to find.
    env.push_blob("ids", &Blob::random(42, 10)).await;
    let live = env.start_upload("ids").await;
    let live_id = live.rsplit('/').next().unwrap().to_owned();
    let d = zero_digest();
    for id in [
        "00000000-0000-0000-0000-000000000000".to_owned(),
        "nope".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        "..%2F..%2Fmeta.redb".to_owned(),
        "%2e%2e%2fmeta.redb".to_owned(),
        "meta.redb".to_owned(),
        format!("{live_id}%2F..%2F{live_id}"),
        live_id.to_uppercase(),
        "a".repeat(300),
        "x%00y".to_owned(),
    ] {
        let uri = format!("/v2/ids/blobs/uploads/{id}");
        env.get(&uri)
            .await
            .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        patch(&env, &uri, b"data", 0)
            .await
            .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        env.req(Method::PUT, format!("{uri}?digest={d}"))
            .body(Vec::new())
            .send()
            .await
            .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        env.delete(&uri)
            .await
            .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    // Ids with real slashes do not even route to an upload: still 404.
    for id in ["../../x", "a/b", "../uploads/x"] {
        let uri = format!("/v2/ids/blobs/uploads/{id}");
        let r = env.get(&uri).await;
        r.expect_status_spec_body(NOT_FOUND);
        let r = patch(&env, &uri, b"data", 0).await;
        assert!(r.status.is_client_error(), "{}", r.dump());
        r.check_spec_body();
    }
    // The live session was not disturbed.
    env.get(&live).await.expect(StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_id_cannot_be_used_from_another_repository() {
    let env = Env::start();
    let b = Blob::random(43, 200);
    let loc = env.start_upload("owner/repo").await;
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let other = format!("/v2/other/repo/blobs/uploads/{id}");
    env.get(&other)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    patch(&env, &other, &b.data, 0)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.req(Method::PUT, format!("{other}?digest={}", b.digest))
        .body(b.data.clone())
        .send()
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.delete(&other)
        .await
        .expect_error(NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    env.head(format!("/v2/other/repo/blobs/{}", b.digest))
        .await
        .expect(NOT_FOUND);
    // The owner can still use it.
    let r = env.get(&loc).await;
    r.expect(StatusCode::NO_CONTENT);
    env.req(
        Method::PUT,
        with_query(&loc, &format!("digest={}", b.digest)),
    )
    .body(b.data.clone())
    .send()
    .await
    .expect(StatusCode::CREATED);
    env.head(format!("/v2/other/repo/blobs/{}", b.digest))
        .await
        .expect(NOT_FOUND);
}

// =============================================================================================
// Push: cross-repository mount
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn mount_from_a_repository_holding_the_blob_is_201() {
    let env = Env::start();
    for b in [Blob::random(50, 512), Blob::sha512(pattern(51, 512))] {
        env.push_blob("mount/src", &b).await;
        let r = env
            .post(format!(
                "/v2/mount/dst/blobs/uploads/?mount={}&from=mount/src",
                b.digest
            ))
            .await;
        r.expect(StatusCode::CREATED);
        assert_eq!(r.location(), format!("/v2/mount/dst/blobs/{}", b.digest));
        r.expect_header("Docker-Content-Digest", &b.d());
        let g = env.get(r.location()).await;
        g.expect(StatusCode::OK);
        assert_eq!(g.body.as_ref(), b.data.as_slice());
        // Both repositories hold it independently.
        env.delete(format!("/v2/mount/src/blobs/{}", b.digest))
            .await
            .expect(StatusCode::ACCEPTED);
        env.get(format!("/v2/mount/dst/blobs/{}", b.digest))
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_that_cannot_be_done_starts_an_upload_202() {
    let env = Env::start();
    let b = Blob::random(52, 256);
    env.push_blob("mount/third", &b).await;
    env.push_blob("mount/gone", &b).await;
    env.delete(format!("/v2/mount/gone/blobs/{}", b.digest))
        .await
        .expect(StatusCode::ACCEPTED);
    let d = b.d();
    for query in [
        // Source repository lacks it (it lives only in a third repository).
        format!("mount={d}&from=mount/empty"),
        // Source repository deleted it.
        format!("mount={d}&from=mount/gone"),
        // No `from`.
        format!("mount={d}"),
        // Unknown digest.
        format!("mount={}&from=mount/third", zero_digest()),
    ] {
        let r = env
            .post(format!("/v2/mount/dst2/blobs/uploads/?{query}"))
            .await;
        r.expect(StatusCode::ACCEPTED);
        let loc = r.location();
        assert!(
            loc.starts_with("/v2/mount/dst2/blobs/uploads/"),
            "{query}: {}",
            r.dump()
        );
        env.get(&loc).await.expect(StatusCode::NO_CONTENT);
    }
    env.head(format!("/v2/mount/dst2/blobs/{d}"))
        .await
        .expect(NOT_FOUND);
    // The session from a failed mount is a normal upload.
    let r = env
        .post(format!(
            "/v2/mount/dst2/blobs/uploads/?mount={d}&from=mount/empty"
        ))
        .await;
    env.req(
        Method::PUT,
        with_query(&r.location(), &format!("digest={d}")),
    )
    .body(b.data.clone())
    .send()
    .await
    .expect(StatusCode::CREATED);
    env.get(format!("/v2/mount/dst2/blobs/{d}"))
        .await
        .expect(StatusCode::OK);
}

// =============================================================================================
// Push: manifests
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_by_tag_and_by_digest() {
    let env = Env::start();
    let img = Image::new(60);
    env.push_blob("man", &img.config).await;
    env.push_blob("man", &img.layer).await;
    for reference in ["test0", "test1", &img.digest.to_string()] {
        let r = env
            .push_manifest("man", reference, OCI_MANIFEST, &img.body)
            .await;
        r.expect_header("Docker-Content-Digest", &img.digest.to_string());
        let g = env
            .req(Method::GET, r.location())
            .header("Accept", OCI_MANIFEST)
            .send()
            .await;
        g.expect(StatusCode::OK);
        g.expect_header("Content-Type", OCI_MANIFEST);
        g.expect_header("Content-Length", &img.body.len().to_string());
        assert_eq!(g.body.as_ref(), img.body.as_slice());
    }
    let r = env.get("/v2/man/tags/list").await;
    assert_eq!(r.json()["tags"], json!(["test0", "test1"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_with_a_digest_not_matching_the_body_is_400() {
    let env = Env::start();
    let img = Image::new(61);
    env.push_blob("mismatch", &img.config).await;
    env.push_blob("mismatch", &img.layer).await;
    let mut body = img.body.clone();
    body.extend_from_slice(b"  ");
    for claimed in [img.digest.clone(), sha512(&img.body)] {
        env.put_manifest("mismatch", &claimed.to_string(), OCI_MANIFEST, &body)
            .await
            .expect_error(BAD_REQUEST, "DIGEST_INVALID");
        env.get(format!("/v2/mismatch/manifests/{claimed}"))
            .await
            .expect(NOT_FOUND);
    }
    env.get(format!("/v2/mismatch/manifests/{}", sha256(&body)))
        .await
        .expect(NOT_FOUND);
}

/// Conformance "400 response body should contain OCI-conforming JSON message".
#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_to_a_malformed_digest_is_400_with_spec_body() {
    let env = Env::start();
    let r = env
        .put_manifest(
            "r",
            "sha256:totallywrong",
            OCI_MANIFEST,
            b"{\"invalid\":true}",
        )
        .await;
    r.expect(BAD_REQUEST);
    r.error_codes();
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_with_invalid_tag_is_refused() {
    let env = Env::start();
    let img = env.push_image("tagcheck", "", 62).await;
    for tag in [".dot", "-dash", &"a".repeat(129), "a%2Fb", "t%20t"] {
        let r = env
            .put_manifest("tagcheck", tag, OCI_MANIFEST, &img.body)
            .await;
        assert!(r.status.is_client_error(), "{tag}: {}", r.dump());
        r.check_spec_body();
    }
    for tag in ["_under", "UPPER.case-1", &"a".repeat(128)] {
        env.push_manifest("tagcheck", tag, OCI_MANIFEST, &img.body)
            .await;
        env.get(format!("/v2/tagcheck/manifests/{tag}"))
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_referencing_missing_blobs_is_manifest_blob_unknown() {
    let env = Env::start();
    let config = Blob::random(63, 50);
    let layer = Blob::random(64, 500);
    let body = to_vec(&oci_image(&config, &[&layer]));
    // Nothing pushed.
    let r = env.put_manifest("mbu", "v1", OCI_MANIFEST, &body).await;
    assert!(r.status.is_client_error(), "{}", r.dump());
    assert!(
        r.error_codes().iter().all(|c| c == "MANIFEST_BLOB_UNKNOWN"),
        "{}",
        r.dump()
    );
    // Config only.
    env.push_blob("mbu", &config).await;
    let r = env.put_manifest("mbu", "v1", OCI_MANIFEST, &body).await;
    assert!(r.status.is_client_error(), "{}", r.dump());
    assert_eq!(r.error_codes()[0], "MANIFEST_BLOB_UNKNOWN");
    // The layer lives in another repository only.
    env.push_blob("mbu/elsewhere", &layer).await;
    let r = env.put_manifest("mbu", "v1", OCI_MANIFEST, &body).await;
    assert!(r.status.is_client_error(), "{}", r.dump());
    assert_eq!(r.error_codes()[0], "MANIFEST_BLOB_UNKNOWN");
    env.get("/v2/mbu/manifests/v1").await.expect(NOT_FOUND);
    env.get(format!("/v2/mbu/manifests/{}", sha256(&body)))
        .await
        .expect(NOT_FOUND);
    // With everything present it is accepted.
    env.push_blob("mbu", &layer).await;
    env.push_manifest("mbu", "v1", OCI_MANIFEST, &body).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_index_with_missing_children_is_manifest_blob_unknown() {
    let env = Env::start();
    let a = env.push_image("idx", "", 65).await;
    let b = Image::new(66); // never pushed
    let body = to_vec(&oci_index(vec![a.desc(), b.desc()]));
    let r = env.put_manifest("idx", "multi", OCI_INDEX, &body).await;
    assert!(r.status.is_client_error(), "{}", r.dump());
    assert_eq!(r.error_codes()[0], "MANIFEST_BLOB_UNKNOWN");
    env.get("/v2/idx/manifests/multi").await.expect(NOT_FOUND);
    // A child in another repository does not count either.
    env.push_image("idx/other", "", 66).await;
    let r = env.put_manifest("idx", "multi", OCI_INDEX, &body).await;
    assert_eq!(r.error_codes()[0], "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_index_and_nested_index() {
    let env = Env::start();
    let a = env.push_image("nest", "", 67).await;
    let b = env.push_image("nest", "", 68).await;
    let mut da = a.desc();
    da["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut db = b.desc();
    db["platform"] = json!({"os": "linux", "architecture": "arm64"});
    let index = to_vec(&oci_index(vec![da, db]));
    let r = env.push_manifest("nest", "index", OCI_INDEX, &index).await;
    r.expect_header("Docker-Content-Digest", &sha256(&index).to_string());
    let g = env.get("/v2/nest/manifests/index").await;
    g.expect(StatusCode::OK);
    g.expect_header("Content-Type", OCI_INDEX);
    assert_eq!(g.body.as_ref(), index.as_slice());

    let outer = to_vec(&oci_index(vec![manifest_desc(&index, OCI_INDEX)]));
    env.push_manifest("nest", "index-of-index", OCI_INDEX, &outer)
        .await;
    let g = env.get("/v2/nest/manifests/index-of-index").await;
    assert_eq!(g.body.as_ref(), outer.as_slice());

    // An empty index is valid.
    let empty = to_vec(&oci_index(vec![]));
    env.push_manifest("nest", "empty-index", OCI_INDEX, &empty)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_content_type_must_match_media_type() {
    let env = Env::start();
    let img = env.push_image("ct", "", 69).await;
    for ct in [OCI_INDEX, DOCKER_MANIFEST] {
        env.put_manifest("ct", "v1", ct, &img.body)
            .await
            .expect_error(BAD_REQUEST, "MANIFEST_INVALID");
    }
    env.get("/v2/ct/manifests/v1").await.expect(NOT_FOUND);
    // Parameters on the Content-Type are ignored.
    env.push_manifest(
        "ct",
        "v1",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &img.body,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_content_type_is_returned_without_parameters() {
    let env = Env::start();
    let img = Image::new(70);
    env.push_blob("ctp", &img.config).await;
    env.push_blob("ctp", &img.layer).await;
    // No mediaType field: the Content-Type is the manifest's type.
    let mut v: Value = serde_json::from_slice(&img.body).unwrap();
    v.as_object_mut().unwrap().remove("mediaType");
    let body = to_vec(&v);
    env.push_manifest(
        "ctp",
        "v1",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &body,
    )
    .await;
    let g = env.get("/v2/ctp/manifests/v1").await;
    g.expect(StatusCode::OK);
    g.expect_header("Content-Type", OCI_MANIFEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_invalid_manifests_is_manifest_invalid() {
    let env = Env::start();
    let img = env.push_image("inv", "", 71).await;
    let cfg = img.config.desc(OCI_CONFIG);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        to_vec(
            &json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []}),
        ),
        to_vec(&json!({"mediaType": OCI_MANIFEST, "config": cfg, "layers": []})),
        to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})),
        to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX})),
        to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 1}, "layers": []}),
        ),
        to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": img.config.d(), "size": -1}, "layers": []}),
        ),
    ];
    for body in bodies {
        let r = env.put_manifest("inv", "bad", OCI_MANIFEST, &body).await;
        r.expect_error(BAD_REQUEST, "MANIFEST_INVALID");
    }
    env.get("/v2/inv/manifests/bad").await.expect(NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_larger_than_4mib_is_413() {
    let env = Env::start();
    let img = env.push_image("big", "", 72).await;
    let over = big_manifest(&img, 4 * 1024 * 1024 + 1);
    // With a Content-Length up front.
    let r = env.put_manifest("big", "over", OCI_MANIFEST, &over).await;
    r.expect(StatusCode::PAYLOAD_TOO_LARGE);
    r.check_spec_body();
    // Streamed without a length.
    let r = env
        .req(Method::PUT, "/v2/big/manifests/over")
        .header("Content-Type", OCI_MANIFEST)
        .raw_body(Body::from_stream(futures_util::stream::iter(
            over.chunks(64 * 1024)
                .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )))
        .send()
        .await;
    r.expect(StatusCode::PAYLOAD_TOO_LARGE);
    r.check_spec_body();
    env.get("/v2/big/manifests/over").await.expect(NOT_FOUND);
}

/// "Clients and registries SHOULD expect to support manifest uploads of at least 4 MiB."
#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_of_exactly_4mib_is_accepted() {
    let env = Env::start();
    let img = env.push_image("big", "", 73).await;
    let body = big_manifest(&img, 4 * 1024 * 1024);
    env.push_manifest("big", "exact", OCI_MANIFEST, &body).await;
    let g = env.get("/v2/big/manifests/exact").await;
    g.expect(StatusCode::OK);
    assert_eq!(g.body.len(), body.len());
    assert!(g.body.as_ref() == body.as_slice());
}

/// An image manifest padded with an annotation to exactly `size` bytes.
fn big_manifest(img: &Image, size: usize) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&img.body).unwrap();
    v["annotations"] = json!({"pad": ""});
    let base = to_vec(&v).len();
    v["annotations"]["pad"] = Value::String("A".repeat(size - base));
    let out = to_vec(&v);
    assert_eq!(out.len(), size);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifests_without_layers_and_artifacts() {
    let env = Env::start();
    let empty = Blob::new(b"{}".to_vec());
    let config = Blob::random(74, 40);
    env.push_blob("art", &empty).await;
    env.push_blob("art", &config).await;
    // Image manifest with an empty layer list.
    let no_layers = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config.desc(OCI_CONFIG), "layers": [],
    }));
    env.push_manifest("art", "no-layers", OCI_MANIFEST, &no_layers)
        .await;
    // Artifact with an artifactType and the empty config and layer.
    let artifact = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": empty.desc(OCI_EMPTY), "layers": [empty.desc(OCI_EMPTY)],
    }));
    env.push_manifest("art", "artifact", OCI_MANIFEST, &artifact)
        .await;
    for tag in ["no-layers", "artifact"] {
        env.get(format!("/v2/art/manifests/{tag}"))
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_with_non_distributable_layers_and_extra_fields() {
    let env = Env::start();
    let config = Blob::random(75, 80);
    let layer = Blob::random(76, 200);
    env.push_blob("nd", &config).await;
    env.push_blob("nd", &layer).await;
    let foreign = Blob::random(77, 123); // never pushed: lives at its URL
    let mut foreign_desc =
        foreign.desc("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
    foreign_desc["urls"] = json!([format!(
        "https://store.example.com/blobs/sha256/{}",
        foreign.digest.hex()
    )]);
    let mut with_data = layer.desc(OCI_LAYER);
    with_data["data"] = json!("AAAA");
    let body = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config.desc(OCI_CONFIG),
        "layers": [foreign_desc, with_data],
        "org.example.custom-field": {"nested": [1, 2, 3]},
    }));
    env.push_manifest("nd", "v1", OCI_MANIFEST, &body).await;
    let g = env.get("/v2/nd/manifests/v1").await;
    assert_eq!(g.body.as_ref(), body.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_docker_schema2_manifest_and_manifest_list() {
    let env = Env::start();
    let config = Blob::random(78, 90);
    let layer = Blob::random(79, 400);
    env.push_blob("docker/img", &config).await;
    env.push_blob("docker/img", &layer).await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": config.desc(DOCKER_CONFIG), "layers": [layer.desc(DOCKER_LAYER)],
    }));
    let r = env
        .push_manifest("docker/img", "amd64", DOCKER_MANIFEST, &manifest)
        .await;
    r.expect_header("Docker-Content-Digest", &sha256(&manifest).to_string());
    let mut child = manifest_desc(&manifest, DOCKER_MANIFEST);
    child["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let list = to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child],
    }));
    env.push_manifest("docker/img", "latest", DOCKER_LIST, &list)
        .await;
    for (tag, ct, body) in [
        ("amd64", DOCKER_MANIFEST, &manifest),
        ("latest", DOCKER_LIST, &list),
    ] {
        let g = env
            .req(Method::GET, format!("/v2/docker/img/manifests/{tag}"))
            .header("Accept", DOCKER_LIST)
            .header("Accept", DOCKER_MANIFEST)
            .send()
            .await;
        g.expect(StatusCode::OK);
        g.expect_header("Content-Type", ct);
        assert_eq!(g.body.as_ref(), body.as_slice());
        let h = env.head(format!("/v2/docker/img/manifests/{tag}")).await;
        h.expect_header("Content-Type", ct);
    }
    // A list whose child is missing is refused.
    let mut ghost = manifest_desc(b"{\"ghost\":1}", DOCKER_MANIFEST);
    ghost["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let bad = to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [ghost]}));
    let r = env
        .put_manifest("docker/img", "bad", DOCKER_LIST, &bad)
        .await;
    assert_eq!(r.error_codes()[0], "MANIFEST_BLOB_UNKNOWN", "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_tag_moves_to_the_new_manifest() {
    let env = Env::start();
    let a = env.push_image("retag", "latest", 80).await;
    let b = env.push_image("retag", "latest", 81).await;
    let g = env.get("/v2/retag/manifests/latest").await;
    g.expect_header("Docker-Content-Digest", &b.digest.to_string());
    // The old manifest is still there by digest.
    env.get(format!("/v2/retag/manifests/{}", a.digest))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_sha512_content() {
    let env = Env::start();
    let config = Blob::sha512(br#"{"architecture":"arm64","os":"linux"}"#.to_vec());
    let layer = Blob::sha512(pattern(82, 1000));
    env.push_blob("sha512", &config).await;
    env.push_blob("sha512", &layer).await;
    let manifest = to_vec(&oci_image(&config, &[&layer]));
    let md = sha512(&manifest);
    let r = env
        .push_manifest("sha512", &md.to_string(), OCI_MANIFEST, &manifest)
        .await;
    r.expect_header("Docker-Content-Digest", &md.to_string());
    assert_eq!(r.location(), format!("/v2/sha512/manifests/{md}"));
    let g = env.get(format!("/v2/sha512/manifests/{md}")).await;
    g.expect(StatusCode::OK);
    g.expect_header("Docker-Content-Digest", &md.to_string());
    assert_eq!(g.body.as_ref(), manifest.as_slice());
    env.head(format!("/v2/sha512/manifests/{md}"))
        .await
        .expect(StatusCode::OK);

    // An index of sha512 manifests, itself pushed by its sha512 digest.
    let child = json!({"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": manifest.len(),
        "platform": {"os": "linux", "architecture": "arm64"}});
    let index = to_vec(&oci_index(vec![child]));
    let id = sha512(&index);
    env.push_manifest("sha512", &id.to_string(), OCI_INDEX, &index)
        .await
        .expect_header("Docker-Content-Digest", &id.to_string());
    let g = env.get(format!("/v2/sha512/manifests/{id}")).await;
    assert_eq!(g.body.as_ref(), index.as_slice());
    g.expect_header("Content-Type", OCI_INDEX);

    // Deleting by sha512 digest.
    env.delete(format!("/v2/sha512/manifests/{id}"))
        .await
        .expect(StatusCode::ACCEPTED);
    env.get(format!("/v2/sha512/manifests/{id}"))
        .await
        .expect(NOT_FOUND);
}

/// `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` (spec: "Pushing Manifests"): a registry that
/// supports it creates each tag.
#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_by_digest_with_tag_parameters_creates_the_tags() {
    let env = Env::start();
    let img = env.push_image("tagparam", "", 83).await;
    let r = env
        .req(
            Method::PUT,
            format!(
                "/v2/tagparam/manifests/{}?tag=1.2.3&tag=1.2&tag=latest",
                img.digest
            ),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(img.body.clone())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    for tag in ["1.2.3", "1.2", "latest"] {
        let g = env.get(format!("/v2/tagparam/manifests/{tag}")).await;
        g.expect(StatusCode::OK);
        g.expect_header("Docker-Content-Digest", &img.digest.to_string());
    }
}

/// Spec, "Pushing Manifests": "If a registry supports this, it ... MUST include an `OCI-Tag`
/// response header ... for each accepted tag." The conformance suite fails a digest push with tag
/// parameters whose response lacks `OCI-Tag` for every tag, for sha256 and sha512 manifests.
#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_with_tag_parameters_answers_oci_tag_headers() {
    let env = Env::start();
    let img = env.push_image("ocitag", "", 84).await;
    let r = env
        .req(
            Method::PUT,
            format!(
                "/v2/ocitag/manifests/{}?tag=1.2.3&tag=1.2&tag=latest",
                img.digest
            ),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(img.body.clone())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let got: BTreeSet<String> = r.header_list("OCI-Tag").into_iter().collect();
    for tag in ["1.2.3", "1.2", "latest"] {
        assert!(got.contains(tag), "OCI-Tag lacks {tag}\n{}", r.dump());
    }

    // sha512: tags can only be pushed this way.
    let index = to_vec(&oci_index(vec![img.desc()]));
    let d = sha512(&index);
    let r = env
        .req(
            Method::PUT,
            format!("/v2/ocitag/manifests/{d}?tag=tag-param-sha512"),
        )
        .header("Content-Type", OCI_INDEX)
        .body(index.clone())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    assert!(
        r.header_list("OCI-Tag")
            .iter()
            .any(|t| t == "tag-param-sha512"),
        "{}",
        r.dump()
    );
    env.get("/v2/ocitag/manifests/tag-param-sha512")
        .await
        .expect(StatusCode::OK)
        .expect_header("Docker-Content-Digest", &d.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_manifest_with_an_interrupted_body_leaves_nothing() {
    let env = Env::start();
    let img = env.push_image("intr", "", 85).await;
    let half = img.body[..img.body.len() / 2].to_vec();
    let r = env
        .req(Method::PUT, "/v2/intr/manifests/v1")
        .header("Content-Type", OCI_MANIFEST)
        .header("Content-Length", &img.body.len().to_string())
        .raw_body(failing_body(half))
        .send()
        .await;
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{}",
        r.dump()
    );
    r.check_spec_body();
    env.get("/v2/intr/manifests/v1").await.expect(NOT_FOUND);
}

// =============================================================================================
// Referrers
// =============================================================================================

fn referrers_of(r: &Resp) -> Vec<Value> {
    r.expect(StatusCode::OK);
    r.expect_header("Content-Type", OCI_INDEX);
    let v = r.json();
    assert_eq!(v["schemaVersion"], json!(2), "{}", r.dump());
    assert_eq!(v["mediaType"], json!(OCI_INDEX), "{}", r.dump());
    v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests must be an array\n{}", r.dump()))
        .clone()
}

/// An artifact manifest referring to `subject`.
fn artifact(
    subject: &Value,
    artifact_type: Option<&str>,
    config: &Blob,
    config_type: &str,
    note: &str,
) -> Vec<u8> {
    let mut v = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config.desc(config_type),
        "layers": [config.desc(config_type)],
        "subject": subject,
        "annotations": {"org.opencontainers.conformance": note},
    });
    if let Some(t) = artifact_type {
        v["artifactType"] = json!(t);
    }
    to_vec(&v)
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_of_an_unknown_subject_is_an_empty_index() {
    let env = Env::start();
    let d = sha256(b"no such subject");
    for repo in ["ref/none", "ref/never-created"] {
        let r = env.get(format!("/v2/{repo}/referrers/{d}")).await;
        assert!(referrers_of(&r).is_empty(), "{}", r.dump());
    }
    env.push_image("ref/none", "v1", 90).await;
    let r = env.get(format!("/v2/ref/none/referrers/{d}")).await;
    assert!(referrers_of(&r).is_empty());
    // Filtering an empty list is still an empty index.
    let r = env
        .get(format!(
            "/v2/ref/none/referrers/{d}?artifactType=application/x"
        ))
        .await;
    assert!(referrers_of(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_with_an_invalid_digest_is_400() {
    let env = Env::start();
    for d in ["sha256:nothex", "latest", "sha256:"] {
        env.get(format!("/v2/ref/bad/referrers/{d}"))
            .await
            .expect_error(BAD_REQUEST, "DIGEST_INVALID");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_list_and_artifact_type_filter() {
    let env = Env::start();
    let repo = "ref/list";
    let subject = env.push_image(repo, "image", 91).await;
    let sdesc = subject.desc();
    let empty = Blob::new(b"{}".to_vec());
    let cfg = Blob::random(92, 30);
    env.push_blob(repo, &empty).await;
    env.push_blob(repo, &cfg).await;

    const SBOM: &str = "application/vnd.example.sbom+json";
    const SIG: &str = "application/vnd.example.signature";
    const CONF_TYPE: &str = "application/vnd.example.config.v1+json";
    let a1 = artifact(&sdesc, Some(SBOM), &empty, OCI_EMPTY, "a1");
    let a2 = artifact(&sdesc, Some(SIG), &empty, OCI_EMPTY, "a2");
    let a3 = artifact(&sdesc, None, &cfg, CONF_TYPE, "a3"); // artifactType from config
    let a4 = artifact(&sdesc, Some(SBOM), &empty, OCI_EMPTY, "a4");
    // An index referring to the subject, without an artifactType.
    let idx = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
        "subject": sdesc, "annotations": {"org.opencontainers.conformance": "idx"},
    }));
    // One pushed by tag, the others by digest.
    for (i, (body, ct)) in [
        (&a1, OCI_MANIFEST),
        (&a2, OCI_MANIFEST),
        (&a3, OCI_MANIFEST),
        (&a4, OCI_MANIFEST),
        (&idx, OCI_INDEX),
    ]
    .into_iter()
    .enumerate()
    {
        let reference = if i == 0 {
            "tagged-artifact".to_owned()
        } else {
            sha256(body).to_string()
        };
        let r = env.push_manifest(repo, &reference, ct, body).await;
        r.expect_header("OCI-Subject", &subject.digest.to_string());
    }

    let want = |body: &[u8], mt: &str, at: Option<&str>, note: &str| {
        let mut v = json!({
            "mediaType": mt, "digest": sha256(body).to_string(), "size": body.len(),
            "annotations": {"org.opencontainers.conformance": note},
        });
        if let Some(at) = at {
            v["artifactType"] = json!(at);
        }
        v
    };
    let all = [
        want(&a1, OCI_MANIFEST, Some(SBOM), "a1"),
        want(&a2, OCI_MANIFEST, Some(SIG), "a2"),
        want(&a3, OCI_MANIFEST, Some(CONF_TYPE), "a3"),
        want(&a4, OCI_MANIFEST, Some(SBOM), "a4"),
        want(&idx, OCI_INDEX, None, "idx"),
    ];
    let r = env
        .get(format!("/v2/{repo}/referrers/{}", subject.digest))
        .await;
    let got = referrers_of(&r);
    assert_eq!(got.len(), all.len(), "{}", r.dump());
    for w in &all {
        let found = got.iter().find(|g| g["digest"] == w["digest"]);
        let g = found.unwrap_or_else(|| panic!("missing {w}\n{}", r.dump()));
        for k in ["mediaType", "size", "annotations"] {
            assert_eq!(g[k], w[k], "{k} of {}\n{}", w["digest"], r.dump());
        }
        assert_eq!(
            g.get("artifactType"),
            w.get("artifactType"),
            "artifactType of {}\n{}",
            w["digest"],
            r.dump()
        );
    }
    // The subject's own image is not a referrer of itself, nor are index children.
    assert!(
        got.iter()
            .all(|g| g["digest"] != json!(subject.digest.to_string()))
    );

    // Filtering ('+' percent-encoded as a client must).
    for (at, n) in [(SBOM, 2), (SIG, 1), (CONF_TYPE, 1), ("application/none", 0)] {
        let q = at.replace('+', "%2B");
        let r = env
            .get(format!(
                "/v2/{repo}/referrers/{}?artifactType={q}",
                subject.digest
            ))
            .await;
        let got = referrers_of(&r);
        assert!(
            r.header_list("OCI-Filters-Applied")
                .iter()
                .any(|f| f == "artifactType"),
            "{}",
            r.dump()
        );
        assert_eq!(got.len(), n, "{at}\n{}", r.dump());
        assert!(
            got.iter().all(|g| g["artifactType"] == json!(at)),
            "{}",
            r.dump()
        );
    }
    // No filter, no header.
    let r = env
        .get(format!("/v2/{repo}/referrers/{}", subject.digest))
        .await;
    assert!(r.header("OCI-Filters-Applied").is_none(), "{}", r.dump());

    // Referrers are per repository.
    let r = env
        .get(format!("/v2/ref/elsewhere/referrers/{}", subject.digest))
        .await;
    assert!(referrers_of(&r).is_empty());

    // Deleting a referrer removes it; deleting a tag does not.
    env.delete(format!("/v2/{repo}/manifests/{}", sha256(&a2)))
        .await
        .expect(StatusCode::ACCEPTED);
    env.delete(format!("/v2/{repo}/manifests/tagged-artifact"))
        .await
        .expect(StatusCode::ACCEPTED);
    let r = env
        .get(format!("/v2/{repo}/referrers/{}", subject.digest))
        .await;
    let got = referrers_of(&r);
    let digests: BTreeSet<String> = got
        .iter()
        .map(|g| g["digest"].as_str().unwrap().to_owned())
        .collect();
    assert!(!digests.contains(&sha256(&a2).to_string()), "{}", r.dump());
    assert!(digests.contains(&sha256(&a1).to_string()), "{}", r.dump());
    assert_eq!(got.len(), 4, "{}", r.dump());
}

/// "A registry MUST accept a manifest that includes a subject field referencing another manifest
/// that does not yet exist in the repository", and list it as a referrer.
#[tokio::test(flavor = "multi_thread")]
async fn referrers_of_a_subject_pushed_later() {
    let env = Env::start();
    let repo = "ref/later";
    let subject = Image::new(93);
    let empty = Blob::new(b"{}".to_vec());
    env.push_blob(repo, &empty).await;
    let art = artifact(
        &subject.desc(),
        Some("application/vnd.example.sig"),
        &empty,
        OCI_EMPTY,
        "early",
    );
    let r = env
        .push_manifest(repo, &sha256(&art).to_string(), OCI_MANIFEST, &art)
        .await;
    r.expect_header("OCI-Subject", &subject.digest.to_string());
    // Subject still missing.
    env.get(format!("/v2/{repo}/manifests/{}", subject.digest))
        .await
        .expect(NOT_FOUND);
    let r = env
        .get(format!("/v2/{repo}/referrers/{}", subject.digest))
        .await;
    let got = referrers_of(&r);
    assert_eq!(got.len(), 1, "{}", r.dump());
    assert_eq!(got[0]["digest"], json!(sha256(&art).to_string()));
    // Missing subject of a subject that will never exist, pushed by tag.
    let ghost = json!({"mediaType": OCI_MANIFEST, "size": 123,
        "digest": sha256(b"missing content").to_string()});
    let art2 = artifact(
        &ghost,
        Some("application/vnd.example.sig"),
        &empty,
        OCI_EMPTY,
        "ghost",
    );
    env.push_manifest(repo, "tagged-artifact", OCI_MANIFEST, &art2)
        .await
        .expect_header("OCI-Subject", &sha256(b"missing content").to_string());
    let r = env
        .get(format!(
            "/v2/{repo}/referrers/{}",
            sha256(b"missing content")
        ))
        .await;
    assert_eq!(referrers_of(&r).len(), 1, "{}", r.dump());
    // Now the subject arrives; its referrer is still listed.
    env.push_blob(repo, &subject.config).await;
    env.push_blob(repo, &subject.layer).await;
    env.push_manifest(repo, "image", OCI_MANIFEST, &subject.body)
        .await;
    let r = env
        .get(format!("/v2/{repo}/referrers/{}", subject.digest))
        .await;
    assert_eq!(referrers_of(&r).len(), 1, "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_of_a_sha512_subject() {
    let env = Env::start();
    let repo = "ref/sha512";
    let config = Blob::sha512(b"{}".to_vec());
    env.push_blob(repo, &config).await;
    let subject_body = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config.desc(OCI_EMPTY), "layers": [],
    }));
    let sd = sha512(&subject_body);
    env.push_manifest(repo, &sd.to_string(), OCI_MANIFEST, &subject_body)
        .await;
    let subject =
        json!({"mediaType": OCI_MANIFEST, "digest": sd.to_string(), "size": subject_body.len()});
    let art = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-test",
        "config": config.desc(OCI_EMPTY), "layers": [], "subject": subject,
    }));
    let ad = sha512(&art);
    env.push_manifest(repo, &ad.to_string(), OCI_MANIFEST, &art)
        .await
        .expect_header("OCI-Subject", &sd.to_string());
    let r = env.get(format!("/v2/{repo}/referrers/{sd}")).await;
    let got = referrers_of(&r);
    assert_eq!(got.len(), 1, "{}", r.dump());
    assert_eq!(got[0]["digest"], json!(ad.to_string()));
}

// =============================================================================================
// Content discovery: tags and catalog
// =============================================================================================

async fn tags(env: &Env, uri: &str) -> (Vec<String>, Option<String>) {
    let r = env.get(uri).await;
    r.expect(StatusCode::OK);
    let v = r.json();
    let tags = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags must be an array\n{}", r.dump()))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (tags, next_link(&r))
}

/// The target of a `Link: <...>; rel="next"` header.
fn next_link(r: &Resp) -> Option<String> {
    let v = r.header("Link")?;
    assert!(
        v.contains("rel=\"next\""),
        "Link must be rel=\"next\"\n{}",
        r.dump()
    );
    let start = v.find('<').expect("Link has <") + 1;
    let end = v.find('>').expect("Link has >");
    Some(v[start..end].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_is_sorted_and_names_the_repository() {
    let env = Env::start();
    let img = env.push_image("disc/tags", "", 100).await;
    let mut all = vec!["b", "a", "B", "A", "_x", "z9", "v1.0", "v1.0-rc", "v10"];
    for t in &all {
        env.push_manifest("disc/tags", t, OCI_MANIFEST, &img.body)
            .await;
    }
    all.sort(); // ASCIIbetical, as Go's sort.Strings
    let r = env.get("/v2/disc/tags/tags/list").await;
    r.expect(StatusCode::OK);
    let v = r.json();
    assert_eq!(v["name"], json!("disc/tags"), "{}", r.dump());
    assert_eq!(v["tags"], json!(all), "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_of_an_unknown_repository_is_404_name_unknown() {
    let env = Env::start();
    env.get("/v2/disc/never/tags/list")
        .await
        .expect_error(NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_pagination_with_n_last_and_link() {
    let env = Env::start();
    let img = env.push_image("disc/page", "", 101).await;
    let all: Vec<String> = (0..7).map(|i| format!("test{i}")).collect();
    for t in &all {
        env.push_manifest("disc/page", t, OCI_MANIFEST, &img.body)
            .await;
    }
    // n limits.
    let (first, link) = tags(&env, "/v2/disc/page/tags/list?n=3").await;
    assert_eq!(first, all[..3]);
    let link = link.expect("a full page with more tags has a Link");
    assert!(link.starts_with("/v2/disc/page/tags/list?"), "{link}");
    // last excludes itself and starts after it.
    let (after, _) = tags(&env, "/v2/disc/page/tags/list?n=3&last=test2").await;
    assert_eq!(after, all[3..6]);
    let (rest, _) = tags(&env, "/v2/disc/page/tags/list?last=test4").await;
    assert_eq!(rest, all[5..]);
    // Following Links walks every tag exactly once.
    let mut seen = first.clone();
    let mut next = Some(link);
    let mut hops = 0;
    while let Some(uri) = next {
        hops += 1;
        assert!(hops < 10, "Link chain does not end");
        let (page, link) = tags(&env, &uri).await;
        assert!(page.len() <= 3);
        seen.extend(page);
        next = link;
    }
    assert_eq!(seen, all);
    // n=0: an empty list and no Link.
    let r = env.get("/v2/disc/page/tags/list?n=0").await;
    r.expect(StatusCode::OK);
    assert_eq!(r.json()["tags"], json!([]), "{}", r.dump());
    assert!(r.header("Link").is_none(), "{}", r.dump());
    // n larger than the count returns all, without Link.
    let (big, link) = tags(&env, "/v2/disc/page/tags/list?n=100").await;
    assert_eq!(big, all);
    assert!(link.is_none());
    // last past the end is empty.
    let (none, _) = tags(&env, "/v2/disc/page/tags/list?last=zzz").await;
    assert!(none.is_empty());
}

/// A malformed `n` is a 400; the spec defines no code for it, so a JSON body must use one of the
/// spec's codes.
#[tokio::test(flavor = "multi_thread")]
async fn tags_list_with_invalid_n_is_400_with_spec_code() {
    let env = Env::start();
    env.push_image("disc/badn", "v1", 102).await;
    for n in ["abc", "-1", "1.5"] {
        let r = env.get(format!("/v2/disc/badn/tags/list?n={n}")).await;
        r.expect_status_spec_body(BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_after_every_tag_is_deleted_is_empty() {
    let env = Env::start();
    env.push_image("disc/emptied", "only", 103).await;
    env.delete("/v2/disc/emptied/manifests/only")
        .await
        .expect(StatusCode::ACCEPTED);
    let (t, _) = tags(&env, "/v2/disc/emptied/tags/list").await;
    assert!(t.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_repositories_with_pagination() {
    let env = Env::start();
    let names = ["a", "a-b", "a/b", "a/b/c", "b", "c.d/e"];
    for (i, n) in names.iter().enumerate() {
        env.push_image(n, "v1", 110 + i as u64).await;
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    let r = env.get("/v2/_catalog").await;
    r.expect(StatusCode::OK);
    assert_eq!(r.json()["repositories"], json!(sorted), "{}", r.dump());

    let r = env.get("/v2/_catalog?n=2").await;
    assert_eq!(r.json()["repositories"], json!(sorted[..2]));
    let mut next = next_link(&r);
    let mut seen: Vec<String> = sorted[..2].iter().map(|s| s.to_string()).collect();
    let mut hops = 0;
    while let Some(uri) = next {
        hops += 1;
        assert!(hops < 10);
        let r = env.get(&uri).await;
        r.expect(StatusCode::OK);
        for v in r.json()["repositories"].as_array().unwrap() {
            seen.push(v.as_str().unwrap().to_owned());
        }
        next = next_link(&r);
    }
    assert_eq!(seen, sorted);
    let r = env.get("/v2/_catalog?n=2&last=a/b").await;
    assert_eq!(r.json()["repositories"], json!(["a/b/c", "b"]));
    let r = env.get("/v2/_catalog?n=0").await;
    assert_eq!(r.json()["repositories"], json!([]));
    assert!(r.header("Link").is_none());
}

// =============================================================================================
// Content management: deletes
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn delete_manifest_by_tag_keeps_the_manifest() {
    let env = Env::start();
    let img = env.push_image("mgmt/tag", "tagtest0", 120).await;
    env.push_manifest("mgmt/tag", "keep", OCI_MANIFEST, &img.body)
        .await;
    let (before, _) = tags(&env, "/v2/mgmt/tag/tags/list").await;
    env.delete("/v2/mgmt/tag/manifests/tagtest0")
        .await
        .expect(StatusCode::ACCEPTED);
    env.get("/v2/mgmt/tag/manifests/tagtest0")
        .await
        .expect_error(NOT_FOUND, "MANIFEST_UNKNOWN");
    env.head("/v2/mgmt/tag/manifests/tagtest0")
        .await
        .expect(NOT_FOUND);
    env.get(format!("/v2/mgmt/tag/manifests/{}", img.digest))
        .await
        .expect(StatusCode::OK);
    env.get("/v2/mgmt/tag/manifests/keep")
        .await
        .expect(StatusCode::OK);
    let (after, _) = tags(&env, "/v2/mgmt/tag/tags/list").await;
    assert!(after.len() < before.len());
    assert_eq!(after, vec!["keep"]);
    env.delete("/v2/mgmt/tag/manifests/tagtest0")
        .await
        .expect_error(NOT_FOUND, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_manifest_by_digest_removes_it_and_its_tags() {
    let env = Env::start();
    let img = env.push_image("mgmt/dig", "t1", 121).await;
    env.push_manifest("mgmt/dig", "t2", OCI_MANIFEST, &img.body)
        .await;
    let other = env.push_image("mgmt/dig", "other", 122).await;
    env.delete(format!("/v2/mgmt/dig/manifests/{}", img.digest))
        .await
        .expect(StatusCode::ACCEPTED);
    for reference in ["t1".to_owned(), "t2".to_owned(), img.digest.to_string()] {
        env.get(format!("/v2/mgmt/dig/manifests/{reference}"))
            .await
            .expect_error(NOT_FOUND, "MANIFEST_UNKNOWN");
        env.head(format!("/v2/mgmt/dig/manifests/{reference}"))
            .await
            .expect(NOT_FOUND);
    }
    let (t, _) = tags(&env, "/v2/mgmt/dig/tags/list").await;
    assert_eq!(t, vec!["other"]);
    env.get(format!("/v2/mgmt/dig/manifests/{}", other.digest))
        .await
        .expect(StatusCode::OK);
    env.delete(format!("/v2/mgmt/dig/manifests/{}", img.digest))
        .await
        .expect_error(NOT_FOUND, "MANIFEST_UNKNOWN");
    // A repository that does not exist.
    let r = env
        .delete(format!("/v2/mgmt/nothing/manifests/{}", img.digest))
        .await;
    r.expect(NOT_FOUND);
    r.check_spec_body();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_blob() {
    let env = Env::start();
    let b = Blob::random(123, 256);
    env.push_blob("mgmt/blob", &b).await;
    env.push_blob("mgmt/blob2", &b).await;
    let uri = format!("/v2/mgmt/blob/blobs/{}", b.digest);
    env.delete(&uri).await.expect(StatusCode::ACCEPTED);
    env.get(&uri).await.expect_error(NOT_FOUND, "BLOB_UNKNOWN");
    env.head(&uri).await.expect(NOT_FOUND);
    env.delete(&uri)
        .await
        .expect_error(NOT_FOUND, "BLOB_UNKNOWN");
    // Another repository's link is untouched.
    env.get(format!("/v2/mgmt/blob2/blobs/{}", b.digest))
        .await
        .expect(StatusCode::OK);
    env.delete(format!("/v2/mgmt/blob/blobs/{}", zero_digest()))
        .await
        .expect_error(NOT_FOUND, "BLOB_UNKNOWN");
    env.delete("/v2/mgmt/blob/blobs/sha256:bad")
        .await
        .expect_error(BAD_REQUEST, "DIGEST_INVALID");
}

// =============================================================================================
// Names, references and path tricks
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn nested_and_unusual_repository_names_work_end_to_end() {
    let env = Env::start();
    let long = ["a"; 127].join("/"); // 253 characters
    for (i, repo) in [
        "a/b/c/d/e",
        "a__b/c--d/e.f_g",
        "team/blobs/uploads",
        "team/blobs/x",
        "team/manifests/v1",
        "org/tags/list",
        "org/referrers/x",
        "v2",
        &long,
    ]
    .into_iter()
    .enumerate()
    {
        let img = env.push_image(repo, "v1", 130 + i as u64).await;
        for uri in [
            format!("/v2/{repo}/manifests/v1"),
            format!("/v2/{repo}/manifests/{}", img.digest),
            format!("/v2/{repo}/blobs/{}", img.layer.digest),
        ] {
            env.get(&uri).await.expect(StatusCode::OK);
        }
        let r = env.get(format!("/v2/{repo}/tags/list")).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.json()["name"], json!(repo), "{}", r.dump());
        assert_eq!(r.json()["tags"], json!(["v1"]), "{}", r.dump());
        let r = env
            .get(format!("/v2/{repo}/referrers/{}", img.digest))
            .await;
        assert!(referrers_of(&r).is_empty());
        // Chunked upload through the session URL.
        let b = Blob::random(200 + i as u64, 100);
        let loc = env.start_upload(repo).await;
        let r = patch(&env, &loc, &b.data, 0).await;
        r.expect(StatusCode::ACCEPTED);
        env.get(r.location()).await.expect(StatusCode::NO_CONTENT);
        env.req(
            Method::PUT,
            with_query(&r.location(), &format!("digest={}", b.digest)),
        )
        .send()
        .await
        .expect(StatusCode::CREATED);
        env.delete(format!("/v2/{repo}/blobs/{}", b.digest))
            .await
            .expect(StatusCode::ACCEPTED);
        env.delete(format!("/v2/{repo}/manifests/v1"))
            .await
            .expect(StatusCode::ACCEPTED);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_repository_names_are_name_invalid() {
    let env = Env::start();
    let d = zero_digest();
    let too_long = "a".repeat(256);
    for name in [
        "Upper",
        "a/Upper",
        "foo/../bar",
        "..",
        "foo/..",
        "foo/./bar",
        "foo/%2e%2e/bar",
        "%2e%2e",
        "foo%2Fbar",
        "foo//bar",
        "foo/",
        "-foo",
        "foo-",
        "foo_",
        "foo___bar",
        "foo..bar",
        ".hidden",
        too_long.as_str(),
    ] {
        let uris = [
            (Method::GET, format!("/v2/{name}/manifests/latest")),
            (Method::HEAD, format!("/v2/{name}/manifests/{d}")),
            (Method::PUT, format!("/v2/{name}/manifests/latest")),
            (Method::DELETE, format!("/v2/{name}/manifests/latest")),
            (Method::GET, format!("/v2/{name}/blobs/{d}")),
            (Method::DELETE, format!("/v2/{name}/blobs/{d}")),
            (Method::POST, format!("/v2/{name}/blobs/uploads/")),
            (Method::GET, format!("/v2/{name}/blobs/uploads/some-id")),
            (Method::GET, format!("/v2/{name}/tags/list")),
            (Method::GET, format!("/v2/{name}/referrers/{d}")),
        ];
        for (m, uri) in uris {
            let head = m == Method::HEAD;
            let r = env.req(m, &uri).body(b"{}".to_vec()).send().await;
            if head {
                assert!(r.status.is_client_error(), "{}", r.dump());
            } else {
                r.expect_error(BAD_REQUEST, "NAME_INVALID");
            }
        }
    }
    // Mount from an invalid repository name is refused, not silently ignored.
    let r = env
        .post(format!("/v2/ok/blobs/uploads/?mount={d}&from=../etc"))
        .await;
    assert!(
        r.status == BAD_REQUEST || r.status == StatusCode::ACCEPTED,
        "{}",
        r.dump()
    );
    r.check_spec_body();
    // Nothing was created by any of it.
    let r = env.get("/v2/_catalog").await;
    assert_eq!(r.json()["repositories"], json!([]), "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tags_on_pull_are_refused() {
    let env = Env::start();
    env.push_image("refs", "v1", 140).await;
    for reference in [
        ".dot",
        "-dash",
        &"a".repeat(129),
        "a%2Fb",
        "sha256:",
        ":",
        "a:b",
    ] {
        let r = env.get(format!("/v2/refs/manifests/{reference}")).await;
        assert!(
            r.status == BAD_REQUEST || r.status == NOT_FOUND,
            "{reference}: {}",
            r.dump()
        );
        r.check_spec_body();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_methods_are_405_unsupported() {
    let env = Env::start();
    let d = zero_digest();
    for (m, uri) in [
        (Method::POST, "/v2/r/manifests/latest".to_owned()),
        (Method::PATCH, "/v2/r/manifests/latest".to_owned()),
        (Method::PUT, format!("/v2/r/blobs/{d}")),
        (Method::POST, format!("/v2/r/blobs/{d}")),
        (Method::GET, "/v2/r/blobs/uploads/".to_owned()),
        (Method::DELETE, "/v2/r/tags/list".to_owned()),
        (Method::DELETE, "/v2/_catalog".to_owned()),
        (Method::POST, "/v2/".to_owned()),
        (Method::DELETE, format!("/v2/r/referrers/{d}")),
        (Method::POST, "/v2/r/blobs/uploads/abc".to_owned()),
    ] {
        env.req(m, &uri)
            .send()
            .await
            .expect_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    }
}

/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405 response
/// containing a list of the target resource's currently supported methods."
#[tokio::test(flavor = "multi_thread")]
async fn method_not_allowed_lists_allowed_methods() {
    let env = Env::start();
    let r = env.post("/v2/r/manifests/latest").await;
    r.expect(StatusCode::METHOD_NOT_ALLOWED);
    let allow = r.header_list("Allow");
    for m in ["GET", "HEAD", "PUT", "DELETE"] {
        assert!(
            allow.iter().any(|a| a == m),
            "Allow lacks {m}\n{}",
            r.dump()
        );
    }
}

// =============================================================================================
// Clients as they really encode queries, concurrency, configured limits
// =============================================================================================

/// The conformance suite builds queries with Go's `url.Values.Encode`, which escapes `:` as `%3A`,
/// `/` as `%2F` and `+` as `%2B`.
#[tokio::test(flavor = "multi_thread")]
async fn go_style_escaped_query_parameters() {
    let env = Env::start();
    let esc = |s: &str| {
        s.replace(':', "%3A")
            .replace('/', "%2F")
            .replace('+', "%2B")
    };
    // POST then PUT.
    let b = Blob::random(170, 300);
    let loc = env.start_upload("enc/src").await;
    env.req(
        Method::PUT,
        with_query(&loc, &format!("digest={}", esc(&b.d()))),
    )
    .body(b.data.clone())
    .send()
    .await
    .expect(StatusCode::CREATED);
    // Single POST, sha512.
    let c = Blob::sha512(pattern(171, 300));
    env.req(
        Method::POST,
        format!("/v2/enc/src/blobs/uploads/?digest={}", esc(&c.d())),
    )
    .body(c.data.clone())
    .send()
    .await
    .expect(StatusCode::CREATED);
    // Mount with an escaped digest and an escaped nested `from`.
    for blob in [&b, &c] {
        let r = env
            .post(format!(
                "/v2/enc/dst/blobs/uploads/?from={}&mount={}",
                esc("enc/src"),
                esc(&blob.d())
            ))
            .await;
        r.expect(StatusCode::CREATED);
        env.get(r.location()).await.expect(StatusCode::OK);
    }
    // Referrers filter with an escaped media type.
    let subject = env.push_image("enc/src", "v1", 172).await;
    let empty = Blob::new(b"{}".to_vec());
    env.push_blob("enc/src", &empty).await;
    let at = "application/vnd.example.sbom+json";
    let art = artifact(&subject.desc(), Some(at), &empty, OCI_EMPTY, "enc");
    env.push_manifest("enc/src", &sha256(&art).to_string(), OCI_MANIFEST, &art)
        .await;
    let r = env
        .get(format!(
            "/v2/enc/src/referrers/{}?artifactType={}",
            subject.digest,
            esc(at)
        ))
        .await;
    assert_eq!(referrers_of(&r).len(), 1, "{}", r.dump());
    // Tag parameters and pagination cursors.
    env.req(
        Method::PUT,
        format!(
            "/v2/enc/src/manifests/{}?tag=a.1&tag=b_2",
            esc(&subject.digest.to_string())
        ),
    )
    .header("Content-Type", OCI_MANIFEST)
    .body(subject.body.clone())
    .send()
    .await
    .expect(StatusCode::CREATED);
    let (t, _) = tags(&env, "/v2/enc/src/tags/list?n=10&last=a.1").await;
    assert_eq!(t, vec!["b_2", "v1"]);
}

/// Two PATCHes racing for the same offset of one session: one wins, the other is out of order,
/// and the bytes are not interleaved.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_chunks_for_the_same_offset() {
    let env = Env::start();
    let a = pattern(180, 200_000);
    let b = pattern(181, 200_000);
    let loc = env.start_upload("race").await;
    let (ra, rb) = tokio::join!(patch(&env, &loc, &a, 0), patch(&env, &loc, &b, 0));
    let statuses = [ra.status, rb.status];
    assert!(
        statuses.contains(&StatusCode::ACCEPTED)
            && statuses.contains(&StatusCode::RANGE_NOT_SATISFIABLE),
        "{}\n{}",
        ra.dump(),
        rb.dump()
    );
    let winner = if ra.status == StatusCode::ACCEPTED {
        &a
    } else {
        &b
    };
    let d = sha256(winner);
    env.req(Method::PUT, with_query(&loc, &format!("digest={d}")))
        .header("Content-Length", "0")
        .send()
        .await
        .expect(StatusCode::CREATED);
    let g = env.get(format!("/v2/race/blobs/{d}")).await;
    assert!(g.body.as_ref() == winner.as_slice());
}

/// When the registry caps `n`, it returns fewer than `n` entries and a Link to the rest ("It may
/// return fewer than `<int>` tags ... [if] the registry includes a `Link` header").
#[tokio::test(flavor = "multi_thread")]
async fn pagination_is_capped_by_max_page_with_a_link() {
    let env = Env::start_with(registry::Limits {
        max_page: 2,
        ..registry::Limits::default()
    });
    let img = env.push_image("cap", "", 190).await;
    for t in ["t1", "t2", "t3", "t4"] {
        env.push_manifest("cap", t, OCI_MANIFEST, &img.body).await;
    }
    let (page, link) = tags(&env, "/v2/cap/tags/list?n=5").await;
    assert_eq!(page, vec!["t1", "t2"]);
    let link = link.expect("a capped page must carry a Link");
    let (rest, _) = tags(&env, &link).await;
    assert_eq!(rest, vec!["t3", "t4"]);
    for r in ["cap2", "cap3"] {
        env.push_image(r, "v1", 191).await;
    }
    let r = env.get("/v2/_catalog?n=50").await;
    assert_eq!(r.json()["repositories"], json!(["cap", "cap2"]));
    assert!(next_link(&r).is_some(), "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_size_limit_is_configurable() {
    let env = Env::start_with(registry::Limits {
        max_manifest_bytes: 2000,
        ..registry::Limits::default()
    });
    let img = env.push_image("lim", "", 192).await;
    let at = big_manifest(&img, 2000);
    env.push_manifest("lim", "at", OCI_MANIFEST, &at).await;
    let over = big_manifest(&img, 2001);
    env.put_manifest("lim", "over", OCI_MANIFEST, &over)
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE);
}

// =============================================================================================
// Durability: restart, truncated bodies, wrong digests
// =============================================================================================

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_resumes_after_restart() {
    let env = Env::start();
    let b256 = Blob::random(150, 3000);
    let b512 = Blob::sha512(pattern(151, 3000));
    let cancelled = Blob::random(152, 500);
    let done = Blob::random(153, 200);
    let img = env.push_image("restart", "before", 154).await;
    env.push_blob("restart", &done).await;

    let l256 = env.start_upload("restart").await;
    let l512 = env.start_upload("restart").await;
    let lcan = env.start_upload("restart").await;
    let l256 = patch(&env, &l256, &b256.data[..1000], 0).await.location();
    let l512 = patch(&env, &l512, &b512.data[..1000], 0).await.location();
    patch(&env, &lcan, &cancelled.data, 0)
        .await
        .expect(StatusCode::ACCEPTED);

    let (env, _) = env.restart();

    for loc in [&l256, &l512] {
        let s = env.get(loc).await;
        s.expect(StatusCode::NO_CONTENT);
        s.expect_header("Range", "0-999");
    }
    let l256 = patch(&env, &l256, &b256.data[1000..2000], 1000).await;
    l256.expect(StatusCode::ACCEPTED);
    l256.expect_header("Range", "0-1999");
    let l256 = l256.location();
    // Out of order after the restart is still detected.
    patch(&env, &l512, &b512.data[2000..], 2000)
        .await
        .expect(StatusCode::RANGE_NOT_SATISFIABLE);

    let (env, _) = env.restart();

    let r = env
        .req(
            Method::PUT,
            with_query(&l256, &format!("digest={}", b256.digest)),
        )
        .header("Content-Range", "2000-2999")
        .body(b256.data[2000..].to_vec())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    let r = env
        .req(
            Method::PUT,
            with_query(&l512, &format!("digest={}", b512.digest)),
        )
        .header("Content-Range", "1000-2999")
        .body(b512.data[1000..].to_vec())
        .send()
        .await;
    r.expect(StatusCode::CREATED);
    env.req(Method::DELETE, &lcan)
        .send()
        .await
        .expect(StatusCode::NO_CONTENT);

    for b in [&b256, &b512, &done] {
        let g = env.get(format!("/v2/restart/blobs/{}", b.digest)).await;
        g.expect(StatusCode::OK);
        assert_eq!(g.body.as_ref(), b.data.as_slice());
    }
    env.head(format!("/v2/restart/blobs/{}", cancelled.digest))
        .await
        .expect(NOT_FOUND);
    let g = env.get("/v2/restart/manifests/before").await;
    g.expect(StatusCode::OK);
    assert_eq!(g.body.as_ref(), img.body.as_slice());
}

async fn assert_no_blob(env: &Env, repo: &str, d: impl std::fmt::Display) {
    env.head(format!("/v2/{repo}/blobs/{d}"))
        .await
        .expect(NOT_FOUND);
}

/// A body that yields `data` and then fails, as a dropped connection does.
fn failing_body(data: Vec<u8>) -> Body {
    Body::from_stream(futures_util::stream::iter(vec![
        Ok(Bytes::from(data)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_bodies_and_wrong_digests_leave_no_blob() {
    let env = Env::start();
    let repo = "trunc";
    let b = Blob::random(160, 10_000);
    let half = b.data[..5000].to_vec();
    let len = b.data.len().to_string();

    // Single POST whose body breaks off.
    let r = env
        .req(
            Method::POST,
            format!("/v2/{repo}/blobs/uploads/?digest={}", b.digest),
        )
        .header("Content-Length", &len)
        .raw_body(failing_body(half.clone()))
        .send()
        .await;
    assert!(!r.status.is_success(), "{}", r.dump());
    r.check_spec_body();
    assert_no_blob(&env, repo, b.d()).await;

    // Single POST whose body is shorter than its Content-Length but ends cleanly.
    let r = env
        .req(
            Method::POST,
            format!("/v2/{repo}/blobs/uploads/?digest={}", b.digest),
        )
        .header("Content-Length", &len)
        .raw_body(Body::from(half.clone()))
        .send()
        .await;
    assert!(r.status.is_client_error(), "{}", r.dump());
    r.check_spec_body();
    assert_no_blob(&env, repo, b.d()).await;
    assert_no_blob(&env, repo, sha256(&half).to_string()).await;

    // POST then PUT whose body breaks off.
    let loc = env.start_upload(repo).await;
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Length", &len)
        .raw_body(failing_body(half.clone()))
        .send()
        .await;
    assert!(!r.status.is_success(), "{}", r.dump());
    r.check_spec_body();
    assert_no_blob(&env, repo, b.d()).await;
    // The session can still be abandoned cleanly.
    let r = env.delete(&loc).await;
    assert!(
        r.status == StatusCode::NO_CONTENT || r.status == NOT_FOUND,
        "{}",
        r.dump()
    );

    // PATCH whose body breaks off, then a PUT claiming the whole blob.
    let loc = env.start_upload(repo).await;
    let r = env
        .req(Method::PATCH, &loc)
        .header("Content-Range", &format!("0-{}", b.data.len() - 1))
        .header("Content-Length", &len)
        .raw_body(failing_body(half.clone()))
        .send()
        .await;
    assert!(!r.status.is_success(), "{}", r.dump());
    let r = env
        .req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Length", "0")
        .send()
        .await;
    r.expect_error(BAD_REQUEST, "DIGEST_INVALID");
    assert_no_blob(&env, repo, b.d()).await;

    // A complete upload under a wrong digest, for each digest algorithm.
    for wrong in [sha256(b"wrong"), sha512(b"wrong")] {
        let loc = env.start_upload(repo).await;
        env.req(Method::PUT, with_query(&loc, &format!("digest={wrong}")))
            .body(b.data.clone())
            .send()
            .await
            .expect_error(BAD_REQUEST, "DIGEST_INVALID");
        assert_no_blob(&env, repo, wrong.to_string()).await;
        assert_no_blob(&env, repo, b.d()).await;
        // Completing the same session with the right digest still works.
        env.req(
            Method::PUT,
            with_query(&loc, &format!("digest={}", b.digest)),
        )
        .header("Content-Length", "0")
        .send()
        .await
        .expect(StatusCode::CREATED);
        env.delete(format!("/v2/{repo}/blobs/{}", b.digest))
            .await
            .expect(StatusCode::ACCEPTED);
    }

    // Still nothing after a restart.
    let (env, _) = env.restart();
    for d in [
        b.d(),
        sha256(&half).to_string(),
        sha256(b"wrong").to_string(),
    ] {
        env.head(format!("/v2/{repo}/blobs/{d}"))
            .await
            .expect(NOT_FOUND);
    }
    // And nothing under the blob directory either.
    let stray = std::fs::read_dir(env.dir().join("blobs").join("sha512"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(
        stray, 0,
        "a sha512 blob file was published for a refused upload"
    );
}
