//! End-to-end protocol checks of the real `wharf` binary against the OCI Distribution Spec v1.1,
//! in raw HTTP/1.1 (what no client above exercises on its own): error codes, digest checks,
//! cross-repository mounts, streamed uploads, tag pagination, the referrers API, deletes.
//!
//! Checks that CNCF Distribution 2.8 is known to fail (it predates v1.1) are skipped when
//! `WHARF_E2E_REGISTRY=distribution`, so that mode still validates the rest of the harness.

mod support;

use serde_json::{Value, json};
use support::*;

fn tools_ok(test: &str) -> bool {
    have_tools(test, Kind::under_test().tools())
}

/// The `errors[].code` values of an error response.
fn error_codes(r: &Response) -> Vec<String> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["code"].as_str().map(String::from))
        .collect()
}

fn expect_error(r: Response, status: u16, code: &str) {
    expect_error_in(r, status, &[code]);
}

/// Status `status` and at least one of `codes` in the error body.
fn expect_error_in(r: Response, status: u16, codes: &[&str]) {
    assert_eq!(
        r.status,
        status,
        "expected HTTP {status} {codes:?}\n{}",
        r.dump()
    );
    let got = error_codes(&r);
    assert!(
        got.iter().any(|c| codes.contains(&c.as_str())),
        "expected one of the error codes {codes:?} in the body, got {got:?}\n{}",
        r.dump()
    );
}

/// Pushes config + one layer and returns (manifest bytes, manifest digest).
fn push_image(http: &Http, repo: &str, tag: &str, seed: u64) -> (Vec<u8>, String) {
    let layer = pattern(seed, 10_000 + seed as usize % 1000);
    let layer_d = http.must_push_blob(repo, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        "config": {"Labels": {"seed": seed.to_string()}}
    }))
    .unwrap();
    let config_d = http.must_push_blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    let d = sha256_digest(&manifest);
    let r = http
        .push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(d.as_str()),
        "{}",
        r.dump()
    );
    (manifest, d)
}

#[test]
fn blob_upload_variants_and_errors() {
    if !tools_ok("blob_upload_variants_and_errors") {
        return;
    }
    let srv = Server::start();
    let http = srv.http();
    let repo = "proto/blobs";

    // /v2/ is 200.
    http.get("/v2/").unwrap().expect(200);

    // Unknown blob: HEAD 404 without body, GET 404 BLOB_UNKNOWN.
    let missing = sha256_digest(b"never pushed");
    let h = http.head(&format!("/v2/{repo}/blobs/{missing}")).unwrap();
    assert_eq!(h.status, 404, "{}", h.dump());
    expect_error(http.get_blob(repo, &missing).unwrap(), 404, "BLOB_UNKNOWN");

    // Single-request monolithic upload (POST ?digest= with the body): 201, or 202 when the
    // registry only supports the two-step form (allowed by the spec).
    let one = pattern(21, 50_000);
    let one_d = sha256_digest(&one);
    let r = http.must(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={one_d}"),
        &[("Content-Type", "application/octet-stream")],
        &one,
    );
    match r.status {
        201 => {
            assert_eq!(
                r.header("Docker-Content-Digest"),
                Some(one_d.as_str()),
                "{}",
                r.dump()
            );
            let (g, n, d) = http.get_blob_hashed(repo, &one_d).unwrap();
            assert_eq!((g.status, n, d), (200, one.len() as u64, one_d.clone()));
        }
        202 => eprintln!(
            "[e2e] {:?}: single-POST upload not supported (202)",
            srv.kind
        ),
        _ => panic!("POST ?digest= with a body\n{}", r.dump()),
    }

    // Two-step monolithic upload with a wrong digest: 400 DIGEST_INVALID, and nothing stored.
    let data = pattern(22, 70_000);
    let wrong = sha256_digest(b"something else");
    let post = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let r = http.must(
        "PUT",
        &with_query(&post.location(), &format!("digest={wrong}")),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    expect_error(r, 400, "DIGEST_INVALID");
    assert_eq!(
        http.head(&format!("/v2/{repo}/blobs/{wrong}"))
            .unwrap()
            .status,
        404
    );

    // Streamed PATCH with Transfer-Encoding: chunked and no Content-Range (Docker/containerd
    // style), in two requests, then PUT ?digest=.
    let data = pattern(23, 300_000);
    let d = sha256_digest(&data);
    let post = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let r = http
        .request_chunked(
            "PATCH",
            &post.location(),
            &[("Content-Type", "application/octet-stream")],
            &[&data[..1000], &data[1000..100_000]],
        )
        .unwrap()
        .expect(202);
    assert_eq!(r.header("Range"), Some("0-99999"), "{}", r.dump());
    let r = http
        .request_chunked(
            "PATCH",
            &r.location(),
            &[("Content-Type", "application/octet-stream")],
            &[&data[100_000..]],
        )
        .unwrap()
        .expect(202);
    assert_eq!(r.header("Range"), Some("0-299999"), "{}", r.dump());
    let r = http
        .must(
            "PUT",
            &with_query(&r.location(), &format!("digest={d}")),
            &[],
            &[],
        )
        .expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(d.as_str()),
        "{}",
        r.dump()
    );
    let (g, n, got) = http.get_blob_hashed(repo, &d).unwrap();
    assert_eq!((g.status, n, got), (200, data.len() as u64, d.clone()));

    // The empty blob (0 bytes) is a valid blob.
    let empty_d = http.must_push_blob(repo, b"");
    assert_eq!(empty_d, sha256_digest(b""));
    let h = http
        .head(&format!("/v2/{repo}/blobs/{empty_d}"))
        .unwrap()
        .expect(200);
    assert_eq!(h.header("Content-Length"), Some("0"), "{}", h.dump());
    let g = http.get_blob(repo, &empty_d).unwrap().expect(200);
    assert!(g.body.is_empty(), "{}", g.dump());

    // Invalid names and digests are refused with a 4xx, never a 2xx or 5xx.
    for path in [
        "/v2/Upper/Case/blobs/uploads/".to_string(),
        "/v2/bad..name/blobs/uploads/".to_string(),
        format!("/v2/{repo}/blobs/sha256:nothex"),
        format!("/v2/{repo}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"),
    ] {
        let method = if path.ends_with("/uploads/") {
            "POST"
        } else {
            "GET"
        };
        let r = http.must(method, &path, &[], &[]);
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} must be refused with a 4xx\n{}",
            r.dump()
        );
    }

    // Pushing a blob that already exists works again (idempotent).
    http.must_push_blob(repo, &data);

    // Cross-repository mount: 201 and the blob is readable in the target repository.
    let r = http.must(
        "POST",
        &format!("/v2/proto/mounted/blobs/uploads/?mount={d}&from={repo}"),
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        201,
        "cross-repo mount of an existing blob\n{}",
        r.dump()
    );
    assert_eq!(
        path_of(r.must_header("Location")),
        format!("/v2/proto/mounted/blobs/{d}")
    );
    let (g, n, got) = http.get_blob_hashed("proto/mounted", &d).unwrap();
    assert_eq!((g.status, n, got), (200, data.len() as u64, d.clone()));
    // Mounting an unknown blob falls back to an upload session (202).
    let r = http.must(
        "POST",
        &format!("/v2/proto/mounted/blobs/uploads/?mount={missing}&from={repo}"),
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        202,
        "mount of an unknown blob must open an upload\n{}",
        r.dump()
    );

    // Cancelling an upload: DELETE -> 204, then its status is 404.
    let post = http
        .must("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
        .expect(202);
    let loc = post.location();
    let r = http.must("DELETE", &loc, &[], &[]);
    assert_eq!(r.status, 204, "cancel upload\n{}", r.dump());
    let r = http.must("GET", &loc, &[], &[]);
    assert_eq!(r.status, 404, "status of a cancelled upload\n{}", r.dump());

    // Blob delete: 202 (or 405 if the registry disables it); then 404.
    let r = http.must("DELETE", &format!("/v2/proto/mounted/blobs/{d}"), &[], &[]);
    match r.status {
        202 => {
            let h = http.head(&format!("/v2/proto/mounted/blobs/{d}")).unwrap();
            assert_eq!(h.status, 404, "deleted blob still served\n{}", h.dump());
            // ... only in that repository.
            assert_eq!(
                http.head(&format!("/v2/{repo}/blobs/{d}")).unwrap().status,
                200
            );
        }
        405 => eprintln!("[e2e] {:?}: blob delete disabled (405)", srv.kind),
        _ => panic!("DELETE blob\n{}", r.dump()),
    }
}

#[test]
fn manifest_rules_and_errors() {
    if !tools_ok("manifest_rules_and_errors") {
        return;
    }
    let srv = Server::start();
    let http = srv.http();
    let repo = "proto/manifests";

    // Unknown manifest: HEAD 404, GET 404 MANIFEST_UNKNOWN.
    let h = http
        .must(
            "HEAD",
            &format!("/v2/{repo}/manifests/nope"),
            &[("Accept", ACCEPT_ALL)],
            &[],
        )
        .status;
    assert_eq!(h, 404);
    expect_error(
        http.get_manifest(repo, "nope").unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    );

    let (manifest, d) = push_image(&http, repo, "v1", 1);

    // By tag and by digest, the exact bytes, with the stored media type.
    for reference in ["v1", d.as_str()] {
        let r = http.get_manifest(repo, reference).unwrap().expect(200);
        assert!(r.body == manifest, "{}", r.dump());
        assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST), "{}", r.dump());
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(d.as_str()),
            "{}",
            r.dump()
        );
    }

    // PUT by digest with a body that does not hash to it: 400 DIGEST_INVALID.
    let other = sha256_digest(b"not this manifest");
    let r = http
        .push_manifest(repo, &other, OCI_MANIFEST, &manifest)
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID");

    // A manifest whose layer was never pushed: 400 MANIFEST_BLOB_UNKNOWN (or BLOB_UNKNOWN, which
    // the spec's push section names).
    let mut v: Value = serde_json::from_slice(&manifest).unwrap();
    v["layers"][0]["digest"] = json!(sha256_digest(b"missing layer"));
    let bad = serde_json::to_vec(&v).unwrap();
    let r = http
        .push_manifest(repo, "broken", OCI_MANIFEST, &bad)
        .unwrap();
    expect_error_in(r, 400, &["MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"]);
    assert_eq!(http.get_manifest(repo, "broken").unwrap().status, 404);

    // Not JSON / not a manifest: 400 MANIFEST_INVALID.
    let r = http
        .push_manifest(repo, "junk", OCI_MANIFEST, b"{not json")
        .unwrap();
    expect_error(r, 400, "MANIFEST_INVALID");

    // Moving a tag: the tag follows, the old manifest stays reachable by digest.
    let (m2, d2) = push_image(&http, repo, "v1", 2);
    let r = http.get_manifest(repo, "v1").unwrap().expect(200);
    assert!(r.body == m2, "tag did not move\n{}", r.dump());
    http.get_manifest(repo, &d).unwrap().expect(200);
    assert_ne!(d, d2);

    // A 3 MiB manifest (the spec says registries should accept at least 4 MiB).
    let mut big: Value = serde_json::from_slice(&manifest).unwrap();
    big["annotations"] = json!({"org.example.padding": "x".repeat(3 << 20)});
    let big = serde_json::to_vec(&big).unwrap();
    let r = http
        .push_manifest(repo, "big", OCI_MANIFEST, &big)
        .unwrap()
        .expect(201);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256_digest(&big).as_str())
    );
    let r = http.get_manifest(repo, "big").unwrap().expect(200);
    assert!(r.body == big, "3 MiB manifest came back different");

    // Docker v2s2 manifests keep their media type.
    let mut dv: Value = serde_json::from_slice(&manifest).unwrap();
    dv["mediaType"] = json!(DOCKER_MANIFEST);
    dv["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    dv["layers"][0]["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    let dm = serde_json::to_vec(&dv).unwrap();
    http.push_manifest(repo, "docker", DOCKER_MANIFEST, &dm)
        .unwrap()
        .expect(201);
    let r = http.get_manifest(repo, "docker").unwrap().expect(200);
    assert_eq!(
        r.header("Content-Type"),
        Some(DOCKER_MANIFEST),
        "{}",
        r.dump()
    );
    assert!(r.body == dm);

    // Delete by digest: 202, then gone by digest and by every tag pointing at it.
    let r = http.must("DELETE", &format!("/v2/{repo}/manifests/{d2}"), &[], &[]);
    assert_eq!(r.status, 202, "delete manifest\n{}", r.dump());
    assert_eq!(http.get_manifest(repo, &d2).unwrap().status, 404);
    assert_eq!(http.get_manifest(repo, "v1").unwrap().status, 404);
    // Other manifests are untouched.
    http.get_manifest(repo, &d).unwrap().expect(200);
    http.get_manifest(repo, "docker").unwrap().expect(200);

    // Deleting a tag (v1.1): only the tag goes. Distribution 2.8 does not support it.
    if srv.kind != Kind::Distribution {
        let r = http.must("DELETE", &format!("/v2/{repo}/manifests/docker"), &[], &[]);
        assert_eq!(r.status, 202, "delete tag\n{}", r.dump());
        assert_eq!(http.get_manifest(repo, "docker").unwrap().status, 404);
        http.get_manifest(repo, &sha256_digest(&dm))
            .unwrap()
            .expect(200);
    }
}

#[test]
fn tag_listing_and_pagination() {
    if !tools_ok("tag_listing_and_pagination") {
        return;
    }
    let srv = Server::start();
    let http = srv.http();
    let repo = "proto/tags";
    let (m, _) = push_image(&http, repo, "seed", 3);
    let mut want: Vec<String> = vec!["seed".into()];
    for t in ["v1.0", "v1.1", "v2.0", "latest", "a", "Z-upper", "b_1", "0"] {
        http.push_manifest(repo, t, OCI_MANIFEST, &m)
            .unwrap()
            .expect(201);
        want.push(t.into());
    }
    want.sort(); // lexical order, as the spec requires

    let all = http
        .get(&format!("/v2/{repo}/tags/list"))
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(all["name"], repo);
    let mut got: Vec<String> = serde_json::from_value(all["tags"].clone()).unwrap();
    if srv.kind == Kind::Distribution {
        got.sort(); // Distribution 2.8 lists in directory order
    }
    assert_eq!(got, want, "tags/list must list every tag, in lexical order");

    // A tag longer than 128 characters is refused with a 4xx.
    let long = "t".repeat(129);
    let r = http.push_manifest(repo, &long, OCI_MANIFEST, &m).unwrap();
    assert!(
        (400..500).contains(&r.status),
        "129-character tag accepted\n{}",
        r.dump()
    );

    // Unknown repository: 404 NAME_UNKNOWN.
    expect_error(
        http.get("/v2/proto/nothing-here/tags/list").unwrap(),
        404,
        "NAME_UNKNOWN",
    );

    if srv.kind == Kind::Distribution {
        return; // Distribution 2.8 ignores n and last on tags/list.
    }
    // Pages of 4 following the Link header.
    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{repo}/tags/list?n=4"));
    let mut pages = 0;
    while let Some(p) = next.take() {
        let r = http.get(&p).unwrap().expect(200);
        let tags: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
        assert!(
            tags.len() <= 4,
            "page larger than n=4: {tags:?}\n{}",
            r.dump()
        );
        seen.extend(tags);
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        if let Some(link) = r.header("Link") {
            assert!(link.contains("rel=\"next\""), "Link header {link:?}");
            let url = link
                .split(['<', '>'])
                .nth(1)
                .unwrap_or_else(|| panic!("Link {link:?}"));
            next = Some(path_of(url));
        }
    }
    assert_eq!(seen, want, "paginated tags differ from the full list");
    assert_eq!(pages, want.len().div_ceil(4));
    // last= starts after the given tag.
    let r = http
        .get(&format!("/v2/{repo}/tags/list?n=100&last=latest"))
        .unwrap()
        .expect(200);
    let tags: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
    let after: Vec<String> = want
        .iter()
        .filter(|t| t.as_str() > "latest")
        .cloned()
        .collect();
    assert_eq!(tags, after, "tags after last=latest");
}

#[test]
fn referrers_api() {
    if !tools_ok("referrers_api") {
        return;
    }
    let srv = Server::start();
    if srv.kind == Kind::Distribution {
        eprintln!("[e2e] Distribution 2.8 has no referrers API: skipped");
        return;
    }
    let http = srv.http();
    let repo = "proto/referrers";
    let (subject, subject_d) = push_image(&http, repo, "app", 4);

    // Two artifacts (a signature-like and an SBOM-like one) pointing at the image, using the
    // empty config descriptor as OCI 1.1 artifacts do.
    let empty = b"{}";
    let empty_d = http.must_push_blob(repo, empty);
    let mut refs = Vec::new();
    for (i, art) in [
        "application/vnd.example.signature",
        "application/vnd.example.sbom+json",
    ]
    .iter()
    .enumerate()
    {
        let payload = pattern(100 + i as u64, 512);
        let payload_d = http.must_push_blob(repo, &payload);
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": art,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_d, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": payload_d, "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject_d, "size": subject.len()},
            "annotations": {"org.example.n": i.to_string()}
        }))
        .unwrap();
        let d = sha256_digest(&m);
        let r = http
            .push_manifest(repo, &d, OCI_MANIFEST, &m)
            .unwrap()
            .expect(201);
        assert_eq!(
            r.header("OCI-Subject"),
            Some(subject_d.as_str()),
            "PUT of a manifest with a subject must answer OCI-Subject\n{}",
            r.dump()
        );
        refs.push((d, m.len(), art.to_string()));
    }

    let r = http
        .get(&format!("/v2/{repo}/referrers/{subject_d}"))
        .unwrap()
        .expect(200);
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX), "{}", r.dump());
    let idx = r.json();
    assert_eq!(idx["mediaType"], OCI_INDEX, "{idx:#}");
    let listed = idx["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "both referrers listed\n{idx:#}");
    for (d, size, art) in &refs {
        let e = listed
            .iter()
            .find(|e| e["digest"] == d.as_str())
            .unwrap_or_else(|| panic!("referrer {d} missing\n{idx:#}"));
        assert_eq!(e["size"], *size as u64, "{e}");
        assert_eq!(e["artifactType"], art.as_str(), "{e}");
        assert_eq!(e["mediaType"], OCI_MANIFEST, "{e}");
    }

    // Filtering by artifactType.
    let r = http
        .get(&format!(
            "/v2/{repo}/referrers/{subject_d}?artifactType=application/vnd.example.signature"
        ))
        .unwrap()
        .expect(200);
    let listed = r.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "artifactType filter\n{}", r.dump());
    assert_eq!(listed[0]["digest"], refs[0].0.as_str());
    assert_eq!(
        r.header("OCI-Filters-Applied"),
        Some("artifactType"),
        "{}",
        r.dump()
    );

    // A digest with no referrers: 200 with an empty index.
    let r = http
        .get(&format!(
            "/v2/{repo}/referrers/{}",
            sha256_digest(b"nobody")
        ))
        .unwrap()
        .expect(200);
    assert_eq!(r.json()["manifests"], json!([]), "{}", r.dump());

    // Deleting a referrer removes it from the list.
    http.must(
        "DELETE",
        &format!("/v2/{repo}/manifests/{}", refs[1].0),
        &[],
        &[],
    )
    .expect(202);
    let r = http
        .get(&format!("/v2/{repo}/referrers/{subject_d}"))
        .unwrap()
        .expect(200);
    let listed = r.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        listed.len(),
        1,
        "deleted referrer still listed\n{}",
        r.dump()
    );
}
