//! Immutable tags end to end with the real binary: a tag matching a rule is created once and
//! never moves or disappears, on every write path (PUT manifest, DELETE tag, DELETE manifest),
//! even under concurrent pushes; pushing the identical manifest again succeeds (clients retry).

mod support;

use serde_json::json;
use support::*;

/// Pushes a one-layer image manifest (not tagged unless `tag` is given); returns its digest and
/// bytes.
fn manifest(http: &Http, repo: &str, seed: u64) -> (String, Vec<u8>) {
    let layer = pattern(seed, 1024);
    let layer_d = http.must_push_blob(repo, &layer);
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "seed": seed})).unwrap();
    let config_d = http.must_push_blob(repo, &config);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    (sha256_digest(&m), m)
}

fn tagged(http: &Http, repo: &str, tag: &str) -> Option<String> {
    let r = http.head(&format!("/v2/{repo}/manifests/{tag}")).unwrap();
    (r.status == 200).then(|| r.must_header("docker-content-digest").to_owned())
}

#[test]
fn immutable_tags_hold_on_every_write_path() {
    let mut s = AuthWharf::new(
        "[[tags.immutable]]\nrepos = \"prod/*\"\ntags = \"v*\"\n\n[[tags.immutable]]\nrepos = \"lib/*\"\nsemver = true\n",
    );
    s.start();
    let http = s.http();
    let (a, ma) = manifest(&http, "prod/app", 1);
    let (b, mb) = manifest(&http, "prod/app", 2);

    http.push_manifest("prod/app", "v1", OCI_MANIFEST, &ma)
        .unwrap()
        .expect(201);
    // The same manifest again: a client retry, accepted.
    http.push_manifest("prod/app", "v1", OCI_MANIFEST, &ma)
        .unwrap()
        .expect(201);
    // Another manifest: refused with DENIED and a message naming the tag; the tag stays.
    let r = http
        .push_manifest("prod/app", "v1", OCI_MANIFEST, &mb)
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    assert!(r.text().contains("v1 is immutable"), "{}", r.dump());
    assert_eq!(tagged(&http, "prod/app", "v1").as_deref(), Some(a.as_str()));
    // Also through PUT by digest with ?tag=.
    let r = http
        .push_manifest("prod/app", &format!("{b}?tag=v1"), OCI_MANIFEST, &mb)
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());

    // Tags outside the rule move freely.
    http.push_manifest("prod/app", "latest", OCI_MANIFEST, &ma)
        .unwrap()
        .expect(201);
    http.push_manifest("prod/app", "latest", OCI_MANIFEST, &mb)
        .unwrap()
        .expect(201);
    assert_eq!(
        tagged(&http, "prod/app", "latest").as_deref(),
        Some(b.as_str())
    );

    // Deleting the tag, or the manifest it points at, is refused; other manifests go.
    let r = http
        .request("DELETE", "/v2/prod/app/manifests/v1", &[], &[])
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    let r = http
        .request("DELETE", &format!("/v2/prod/app/manifests/{a}"), &[], &[])
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    assert_eq!(tagged(&http, "prod/app", "v1").as_deref(), Some(a.as_str()));
    http.request("DELETE", &format!("/v2/prod/app/manifests/{b}"), &[], &[])
        .unwrap()
        .expect(202);

    // Semantic-version rule: 1.2.3 is frozen, "1.2" is not a semantic version.
    let (c, mc) = manifest(&http, "lib/x", 3);
    let (_, md) = manifest(&http, "lib/x", 4);
    http.push_manifest("lib/x", "1.2.3", OCI_MANIFEST, &mc)
        .unwrap()
        .expect(201);
    assert_eq!(
        http.push_manifest("lib/x", "1.2.3", OCI_MANIFEST, &md)
            .unwrap()
            .status,
        403
    );
    http.push_manifest("lib/x", "1.2", OCI_MANIFEST, &mc)
        .unwrap()
        .expect(201);
    http.push_manifest("lib/x", "1.2", OCI_MANIFEST, &md)
        .unwrap()
        .expect(201);
    assert_eq!(tagged(&http, "lib/x", "1.2.3").as_deref(), Some(c.as_str()));

    // Other repositories are not covered.
    let (_, me) = manifest(&http, "dev/app", 5);
    let (_, mf) = manifest(&http, "dev/app", 6);
    http.push_manifest("dev/app", "v1", OCI_MANIFEST, &me)
        .unwrap()
        .expect(201);
    http.push_manifest("dev/app", "v1", OCI_MANIFEST, &mf)
        .unwrap()
        .expect(201);
}

/// Many clients racing to create the same immutable tag with different manifests: exactly one
/// wins and the tag never moves afterwards (the check and the write are one transaction).
#[test]
fn immutable_tag_creation_race_has_one_winner() {
    let mut s = AuthWharf::new("[[tags.immutable]]\nrepos = \"prod/*\"\ntags = \"release-*\"\n");
    s.start();
    let http = s.http();
    let manifests: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| manifest(&http, "prod/race", 100 + i))
        .collect();
    let addr = s.addr;
    let results: Vec<(String, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = manifests
            .iter()
            .map(|(d, m)| {
                scope.spawn(move || {
                    let http = Http::new(addr);
                    let r = http
                        .push_manifest("prod/race", "release-1", OCI_MANIFEST, m)
                        .unwrap();
                    (d.clone(), r.status)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, st)| *st == 201)
        .map(|(d, _)| d)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|(_, st)| *st == 201 || *st == 403),
        "{results:?}"
    );
    assert_eq!(
        tagged(&http, "prod/race", "release-1").as_ref(),
        Some(winners[0])
    );
}

/// Every tag change is recorded with actor and previous/new digest; rollback moves a tag back
/// (by digest or by steps), is recorded itself, respects immutability, and works through the
/// management API and through the CLI on the data directory.
#[test]
fn tag_history_and_rollback() {
    let mut s = AuthWharf::new("[[tags.immutable]]\nrepos = \"prod/*\"\ntags = \"v*\"\n");
    s.start();
    let http = s.http();
    let (a, ma) = manifest(&http, "prod/app", 31);
    let (b, mb) = manifest(&http, "prod/app", 32);
    let (c, mc) = manifest(&http, "prod/app", 33);
    for m in [&ma, &mb, &mc] {
        http.push_manifest("prod/app", "latest", OCI_MANIFEST, m)
            .unwrap()
            .expect(201);
    }
    // Pushing the same manifest again is no change and leaves no event.
    http.push_manifest("prod/app", "latest", OCI_MANIFEST, &mc)
        .unwrap()
        .expect(201);
    http.push_manifest("prod/app", "v1", OCI_MANIFEST, &ma)
        .unwrap()
        .expect(201);

    let h = http
        .get("/api/v1/tags/history?repo=prod/app&tag=latest")
        .unwrap()
        .expect(200)
        .json();
    let moves: Vec<(Option<&str>, Option<&str>)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["previous"].as_str(), e["new"].as_str()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Some(b.as_str()), Some(c.as_str())),
            (Some(a.as_str()), Some(b.as_str())),
            (None, Some(a.as_str()))
        ],
        "{h}"
    );
    assert_eq!(h[0]["actor"], "anonymous");

    // Rollback one step: latest goes back to b, and the rollback is in the history.
    let r = http
        .request(
            "POST",
            "/api/v1/tags/rollback",
            &[("Content-Type", "application/json")],
            br#"{"repo":"prod/app","tag":"latest","steps":1}"#,
        )
        .unwrap()
        .expect(200);
    assert_eq!(r.json()["digest"], b.as_str());
    assert_eq!(
        tagged(&http, "prod/app", "latest").as_deref(),
        Some(b.as_str())
    );
    let h = http
        .get("/api/v1/tags/history?repo=prod/app&tag=latest")
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(h[0]["previous"], c.as_str());
    assert_eq!(h[0]["new"], b.as_str());

    // An immutable tag cannot be rolled back to another manifest; an unknown digest is refused.
    let body = format!(r#"{{"repo":"prod/app","tag":"v1","to":"{c}"}}"#);
    let r = http
        .request(
            "POST",
            "/api/v1/tags/rollback",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.dump());
    let missing = sha256_digest(b"nothing");
    let body = format!(r#"{{"repo":"prod/app","tag":"latest","to":"{missing}"}}"#);
    let r = http
        .request(
            "POST",
            "/api/v1/tags/rollback",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.dump());

    // Deleting a tag is recorded.
    http.request("DELETE", "/v2/prod/app/manifests/latest", &[], &[])
        .unwrap()
        .expect(202);

    // The CLI on the data directory (server stopped) sees the same history and can roll back.
    s.stop();
    let out = s.must_cli(&["tag", "history", "prod/app:latest", "--json"], "");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0]["previous"], b.as_str());
    assert!(lines[0]["new"].is_null(), "deletion recorded: {out}");
    s.must_cli(&["tag", "rollback", "prod/app:latest", "--to", &a], "");
    s.start();
    assert_eq!(
        tagged(&s.http(), "prod/app", "latest").as_deref(),
        Some(a.as_str())
    );
}
