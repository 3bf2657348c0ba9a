//! End-to-end tests of the pull-through cache: real upstream registries on loopback (CNCF
//! Distribution behind the fault-injecting proxy, and a second Wharf that requires credentials),
//! real clients (skopeo in path mode, containerd's ctr in mirror mode with a `hosts.toml` that
//! `wharf mirror config` wrote), and every upstream failure the proxy can make.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fault::{Fault, FaultProxy, PathKind};
use support::*;

/// The upstream's name in image references and in the `ns` parameter.
const HOST: &str = "upstream.test";
const ADMIN: (&str, &str) = ("cache-admin", "cache-admin-password");

fn tools_ok(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["umoci", "busybox", "skopeo", "docker-registry"];
    tools.extend_from_slice(extra);
    have_tools(test, &tools)
}

/// Pushes an image of the shared test layout to `dest` with skopeo, digests preserved.
fn push(tmp: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let mut c = skopeo(tmp);
    c.args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    c.args(extra);
    run(c
        .arg(test_images().oci_ref(tag))
        .arg(format!("docker://{dest}")));
}

/// Pulls `src` into a fresh OCI layout under `tmp` with skopeo.
fn pull(tmp: &Path, src: &str, name: &str) -> Result<Layout, String> {
    let dir = tmp.join(name);
    let _ = fs::remove_dir_all(&dir);
    let out = run_any(
        skopeo(tmp)
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{src}"))
            .arg(format!("oci:{}:t", dir.display())),
    );
    if out.status.success() {
        Ok(Layout::at(&dir))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A caching Wharf whose one upstream is `url`, with an administrator (access control on,
/// anonymous pulls of every repository allowed).
fn caching_wharf(url: &str, extra: &str) -> AuthWharf {
    // Metrics are served on their own listener only; `metric` finds it by the server's address.
    let metrics_port = free_port();
    let cfg = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
         [auth]\nanonymous_pull = [\"upstream.test/*\"]\n\n\
         [[cache.upstream]]\nhost = \"{HOST}\"\nurl = \"{url}\"\ntag_ttl_seconds = 1\n\
         response_timeout_seconds = 2\nread_timeout_seconds = 2\n{extra}\n"
    );
    let mut w = AuthWharf::new(&cfg);
    METRICS_PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(w.addr, metrics_port);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();
    w
}

/// The metrics listener's port of each caching Wharf, by the server's address.
static METRICS_PORTS: std::sync::Mutex<std::collections::BTreeMap<std::net::SocketAddr, u16>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn metric(w: &AuthWharf, name_and_labels: &str) -> f64 {
    let port = *METRICS_PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&w.addr)
        .expect("the server was started with a metrics listener");
    let text = Http::new(([127, 0, 0, 1], port).into())
        .get("/metrics")
        .unwrap()
        .expect(200)
        .text();
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn admin_get(w: &AuthWharf, path: &str) -> Value {
    let auth = basic(ADMIN.0, ADMIN.1);
    w.http()
        .request("GET", path, &[("Authorization", &auth)], &[])
        .unwrap()
        .expect(200)
        .json()
}

/// Path mode through Distribution: pulls fill the cache and then come from it; pushes are
/// refused; when the upstream refuses connections, stalls, or answers 429 or 500, cached images
/// still pull and uncached ones fail cleanly.
#[test]
fn path_mode_caches_and_survives_upstream_failures() {
    if !tools_ok("path_mode_caches_and_survives_upstream_failures", &[]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let up = Server::start_kind(Kind::Distribution);
    let proxy = FaultProxy::start(up.addr);
    push(
        tmp.path(),
        TAG_MULTI,
        &format!("{}/team/app:v1", up.host()),
        &[],
    );
    push(
        tmp.path(),
        TAG_INDEX,
        &format!("{}/team/app:multi", up.host()),
        &["--all"],
    );
    let w = caching_wharf(&format!("http://{}", proxy.addr()), "");
    let via = |r: &str| format!("{}/{HOST}/{r}", w.host());

    // Cold pull: everything from the upstream, byte-identical.
    let got = pull(tmp.path(), &via("team/app:v1"), "cold").expect("cold pull");
    let n = assert_blobs_subset(&got, test_images());
    assert!(n >= 4, "manifest, config and layers arrived ({n})");
    let blob_gets = proxy.requests("GET", PathKind::Blob);
    assert!(
        blob_gets >= 3,
        "the blobs came from the upstream ({blob_gets})"
    );

    // Tag lists come from the upstream: `multi` is listed before anything of it is cached.
    let tags = w
        .http()
        .get(&format!("/v2/{HOST}/team/app/tags/list"))
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(tags["tags"], serde_json::json!(["multi", "v1"]), "{tags}");
    let paged = w
        .http()
        .get(&format!("/v2/{HOST}/team/app/tags/list?n=1"))
        .unwrap()
        .expect(200);
    assert_eq!(paged.json()["tags"], serde_json::json!(["multi"]));
    assert!(
        paged
            .header("link")
            .is_some_and(|l| l.contains("last=multi")),
        "{}",
        paged.dump()
    );

    // Warm pull: no blob is fetched again.
    pull(tmp.path(), &via("team/app:v1"), "warm").expect("warm pull");
    assert_eq!(
        proxy.requests("GET", PathKind::Blob),
        blob_gets,
        "warm pull used the cache"
    );
    assert!(metric(&w, "wharf_cache_bytes_saved_total") > 0.0);

    // A multi-platform index: skopeo takes the amd64 image; the cache holds the index and that
    // platform's manifest.
    pull(tmp.path(), &via("team/app:multi"), "multi").expect("index pull");
    let ls = admin_get(&w, "/api/v1/cache");
    let index = ls["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tags"].as_array().unwrap().iter().any(|t| t == "multi"))
        .unwrap_or_else(|| panic!("index listed: {ls}"));
    assert_eq!(
        index["manifests"], 2,
        "index plus the platform asked for: {index}"
    );

    // Cached repositories are read-only.
    let out = run_any(
        skopeo(tmp.path())
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(test_images().oci_ref(TAG_BASE))
            .arg(format!("docker://{}", via("team/app:pushed"))),
    );
    assert!(!out.status.success(), "push into the cache must fail");
    let denied = w
        .http()
        .request(
            "POST",
            &format!("/v2/{HOST}/team/app/blobs/uploads/"),
            &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
            &[],
        )
        .unwrap();
    assert_eq!(denied.status, 403, "{}", denied.dump());
    assert!(
        denied.text().contains("read-only pull-through cache"),
        "{}",
        denied.dump()
    );

    // Images only the upstream has, for the uncached side of each failure, and for probing
    // that the upstream is back after it.
    for k in 0..4 {
        for t in ["gone", "back"] {
            push(
                tmp.path(),
                TAG_BASE,
                &format!("{}/team/other:{t}{k}", up.host()),
                &[],
            );
        }
    }
    for (k, (what, fault)) in [
        ("refused", Fault::Refuse),
        ("stalled", Fault::Stall),
        ("429", Fault::Status(429)),
        ("500", Fault::Status(500)),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.set(fault);
        std::thread::sleep(Duration::from_millis(1100)); // past the tag TTL
        let t = Instant::now();
        pull(tmp.path(), &via("team/app:v1"), "stale")
            .unwrap_or_else(|e| panic!("cached image must pull while upstream {what}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: served stale promptly"
        );
        let m = w
            .http()
            .request(
                "GET",
                &format!("/v2/{HOST}/team/other/manifests/gone{k}"),
                &[("Accept", ACCEPT_ALL)],
                &[],
            )
            .unwrap();
        let want = if what == "429" { 429 } else { 503 };
        assert_eq!(
            m.status,
            want,
            "uncached while upstream {what}: {}",
            m.dump()
        );
        assert!(
            m.text().contains("\"errors\""),
            "spec error body: {}",
            m.dump()
        );
        // The tag list falls back to what the cache holds.
        let held = w
            .http()
            .get(&format!("/v2/{HOST}/team/app/tags/list"))
            .unwrap()
            .expect(200)
            .json();
        assert_eq!(
            held["tags"],
            serde_json::json!(["multi", "v1"]),
            "{what}: {held}"
        );
        proxy.clear();
        // After a failure the cache leaves the upstream alone for a while (serving what it has);
        // a success ends that, so fetch something uncached from the healthy upstream.
        wait_upstream_back(&w, &via(&format!("team/other:back{k}")));
    }
    assert!(metric(&w, "wharf_cache_served_stale_total") >= 4.0);
    assert!(metric(&w, "wharf_cache_upstream_errors_total") >= 4.0);
}

/// After a fault is lifted, the cache asks the upstream again (at once for uncached content).
fn wait_upstream_back(w: &AuthWharf, image: &str) {
    let (_, rest) = image.split_once('/').unwrap();
    let (repo, tag) = rest.rsplit_once(':').unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = w
            .http()
            .request(
                "GET",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Accept", ACCEPT_ALL)],
                &[],
            )
            .unwrap();
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream never came back: {}",
            r.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A blob transfer that breaks off, or whose bytes do not match the digest, fails the client's
/// request and leaves nothing in the cache; the next request fetches it whole.
#[test]
fn broken_blob_transfers_leave_nothing_behind() {
    if !tools_ok("broken_blob_transfers_leave_nothing_behind", &[]) {
        return;
    }
    let up = Server::start_kind(Kind::Distribution);
    let proxy = FaultProxy::start(up.addr);
    let data = pattern(7, 3 * 1024 * 1024 + 17);
    let digest = up.http().must_push_blob("team/blob", &data);
    let w = caching_wharf(&format!("http://{}", proxy.addr()), "");
    let repo = format!("{HOST}/team/blob");

    for (what, fault) in [
        ("dropped", Fault::DropMidBody { after: 1024 * 1024 }),
        ("corrupt", Fault::Corrupt),
    ] {
        proxy.set_for(PathKind::Blob, fault);
        let r = w.http().get_blob_hashed(&repo, &digest);
        match r {
            Err(_) => {}
            Ok((resp, n, got)) => {
                assert!(
                    resp.status != 200 || n < data.len() as u64 || got != digest,
                    "{what}: the client must not receive a complete, valid-looking blob"
                );
                assert!(
                    n < data.len() as u64,
                    "{what}: the last byte is held back ({n})"
                );
            }
        }
        proxy.clear();
        // Nothing was cached: with the upstream gone the blob is unknown, not served.
        std::thread::sleep(Duration::from_millis(200));
        proxy.set(Fault::Status(500));
        let miss = w.http().get(&format!("/v2/{repo}/blobs/{digest}")).unwrap();
        assert_eq!(miss.status, 503, "{what}: nothing cached: {}", miss.dump());
        proxy.clear();
    }
    let uploads = w.data_dir().join("uploads");
    let leftovers: Vec<_> = fs::read_dir(&uploads)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "no partial uploads left: {leftovers:?}"
    );

    // A blob pushed to a private repository of this server is not readable through a cached
    // repository by its digest (the upstream does not have it there).
    let secret = pattern(99, 4096);
    let secret_digest = sha256_digest(&secret);
    let pushed = w
        .http()
        .request(
            "POST",
            &format!("/v2/private/app/blobs/uploads/?digest={secret_digest}"),
            &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
            &secret,
        )
        .unwrap();
    assert_eq!(pushed.status, 201, "{}", pushed.dump());
    let leak = w
        .http()
        .get(&format!("/v2/{repo}/blobs/{secret_digest}"))
        .unwrap();
    assert_eq!(
        leak.status,
        404,
        "private blob must not leak: {}",
        leak.dump()
    );

    // Healthy again: the whole blob, verified, then from the cache.
    let (resp, n, got) = w.http().get_blob_hashed(&repo, &digest).unwrap();
    assert_eq!(
        (resp.status, n, got.as_str()),
        (200, data.len() as u64, digest.as_str())
    );
    let before = proxy.blob_gets(&digest);
    let (_, _, again) = w.http().get_blob_hashed(&repo, &digest).unwrap();
    assert_eq!(again, digest);
    assert_eq!(proxy.blob_gets(&digest), before, "served from the cache");
}

/// Twenty clients asking for the same uncached 256 MiB blob at once share one upstream
/// transfer, and each gets every byte right.
#[test]
fn concurrent_cold_pulls_share_one_upstream_transfer() {
    if !tools_ok("concurrent_cold_pulls_share_one_upstream_transfer", &[]) {
        return;
    }
    let up = Server::start_kind(Kind::Distribution);
    let proxy = FaultProxy::start(up.addr);
    let size = 256 * 1024 * 1024;
    let data = pattern(11, size);
    let digest = up.http().must_push_blob("team/big", &data);
    drop(data);
    // Slow enough that every client arrives while the transfer is under way.
    proxy.set_for(
        PathKind::Blob,
        Fault::SlowBody {
            bytes_per_sec: 128 * 1024 * 1024,
        },
    );
    let w = caching_wharf(&format!("http://{}", proxy.addr()), "");
    let repo = Arc::new(format!("{HOST}/team/big"));
    let digest = Arc::new(digest);
    let http = Arc::new(w.http());
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (repo, digest, http) = (repo.clone(), digest.clone(), http.clone());
            std::thread::spawn(move || http.get_blob_hashed(&repo, &digest).unwrap())
        })
        .collect();
    for c in clients {
        let (resp, n, got) = c.join().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(n, size as u64);
        assert_eq!(got, *digest);
    }
    assert_eq!(
        proxy.blob_gets(&digest),
        1,
        "the upstream served the blob once"
    );
    assert!(
        proxy.blob_bytes() <= size as u64 + 4096,
        "{} bytes",
        proxy.blob_bytes()
    );
}

/// Mirror mode with containerd: `wharf mirror config` writes the hosts.toml, ctr pulls
/// `upstream.test/...` through Wharf (which sees `?ns=upstream.test`), and the upstream is a
/// second Wharf that requires credentials (Bearer token flow from the cache to the upstream).
#[test]
fn containerd_mirror_mode_through_an_authenticating_upstream() {
    if !tools_ok(
        "containerd_mirror_mode_through_an_authenticating_upstream",
        &["containerd", "ctr"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The upstream: Wharf with access control on and no anonymous pulls.
    let mut upstream = AuthWharf::new("");
    upstream.must_cli(&["user", "add", "mirror-bot"], "mirror-bot-password\n");
    upstream.must_cli(
        &[
            "rule",
            "add",
            "user:mirror-bot",
            "--repo",
            "team/*",
            "--actions",
            "pull,push",
        ],
        "",
    );
    upstream.start();
    push(
        tmp.path(),
        TAG_INDEX,
        &format!("{}/team/app:v1", upstream.host()),
        &["--all", "--dest-creds", "mirror-bot:mirror-bot-password"],
    );
    let anon = upstream.http().get("/v2/team/app/manifests/v1").unwrap();
    assert_eq!(anon.status, 401, "the upstream requires credentials");

    // Password from a file, as a mounted Secret would give it.
    let pw = tmp.path().join("upstream-password");
    fs::write(&pw, "mirror-bot-password\n").unwrap();
    let metrics_port = free_port();
    let cfg = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
         [auth]\nanonymous_pull = [\"upstream.test/*\"]\n\n\
         [[cache.upstream]]\nhost = \"{HOST}\"\nurl = \"http://{}\"\nusername = \"mirror-bot\"\n\
         password_file = \"{}\"\n",
        upstream.host(),
        pw.display()
    );
    let mut w = AuthWharf::new(&cfg);
    METRICS_PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(w.addr, metrics_port);
    w.must_cli(
        &["user", "add", ADMIN.0, "--admin"],
        &format!("{}\n", ADMIN.1),
    );
    w.start();

    // The node configuration, as an operator would generate it.
    let cfg_file = tmp.path().join("wharf.toml");
    fs::write(&cfg_file, &cfg).unwrap();
    let hosts = tmp.path().join("certs.d");
    run(std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["mirror", "config", "--runtime", "containerd", "--url"])
        .arg(format!("http://{}", w.host()))
        .arg("--config")
        .arg(&cfg_file)
        .arg("--out-dir")
        .arg(&hosts));
    let toml = fs::read_to_string(hosts.join(HOST).join("hosts.toml")).unwrap();
    assert!(
        toml.contains(&format!("[host.\"http://{}\"]", w.host())),
        "{toml}"
    );

    let ctrd = Containerd::start();
    let image = format!("{HOST}/team/app:v1");
    run(ctrd
        .ctr()
        .args(["images", "pull", "--hosts-dir"])
        .arg(&hosts)
        .arg(&image));
    let listed = run(ctrd.ctr().args(["images", "ls", "-q"]));
    assert!(listed.contains(&image), "{listed}");
    let log = fs::read_to_string(w.scratch().join("server.log")).unwrap_or_default();
    assert!(
        log.contains("manifest cached"),
        "the pull went through the cache:\n{log}"
    );
    assert!(
        metric(
            &w,
            "wharf_cache_lookups_total{kind=\"blob\",result=\"miss\"}"
        ) >= 2.0
    );
    // Unknown upstreams in mirror mode are refused, never served from a local repository.
    let other = w
        .http()
        .get("/v2/team/app/manifests/v1?ns=elsewhere.example")
        .unwrap();
    assert_eq!(other.status, 404, "{}", other.dump());

    // wharf cache ls / warm / pin through the API.
    let env_pw = [("WHARF_PASSWORD", ADMIN.1)];
    let server = format!("http://{}", w.host());
    let wharf = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.args(args)
            .args(["--server", &server, "--as", ADMIN.0])
            .envs(env_pw);
        run(&mut c)
    };
    let warmed = wharf(&[
        "cache",
        "warm",
        &format!("{HOST}/team/app:v1"),
        "--platform",
        "linux/arm64",
    ]);
    assert!(warmed.contains("sha256:"), "{warmed}");
    wharf(&["cache", "pin", &format!("{HOST}/team/app:v1")]);
    let ls = wharf(&["cache", "ls"]);
    assert!(
        ls.contains(&format!("{HOST}/team/app")) && ls.contains("yes"),
        "{ls}"
    );
}

/// Over its size limit, the cache evicts the least recently pulled unpinned image: its tags,
/// manifests and blob links go (a later pull fetches it again), pinned and recent images stay.
#[test]
fn size_limit_evicts_least_recently_pulled_unpinned_images() {
    if !tools_ok(
        "size_limit_evicts_least_recently_pulled_unpinned_images",
        &[],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let up = Server::start_kind(Kind::Distribution);
    let proxy = FaultProxy::start(up.addr);
    for repo in ["team/old", "team/pinned", "team/recent"] {
        push(
            tmp.path(),
            TAG_BASE,
            &format!("{}/{repo}:v1", up.host()),
            &[],
        );
    }
    // The three images share their blobs (about 1 MiB on disk, counted once): over the limit
    // whatever goes, so every unpinned image is evicted and the pinned one stays.
    let w = caching_wharf(
        &format!("http://{}", proxy.addr()),
        "\n[cache]\nmax_bytes = 500000\neviction_interval_seconds = 3600\npinned = [\"upstream.test/team/pinned\"]\n",
    );
    let via = |r: &str| format!("{}/{HOST}/{r}", w.host());
    for (i, repo) in ["team/pinned", "team/old", "team/recent"]
        .iter()
        .enumerate()
    {
        pull(tmp.path(), &via(&format!("{repo}:v1")), &format!("p{i}")).expect("pull");
        // Pull times are kept to the second.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Pull times reach storage in batches; the eviction pass reads them from there.
    std::thread::sleep(Duration::from_millis(200));
    let auth = basic(ADMIN.0, ADMIN.1);
    let dry = w
        .http()
        .request(
            "POST",
            "/api/v1/cache/evict",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"dry_run":true}"#,
        )
        .unwrap()
        .expect(200)
        .json();
    assert_eq!(dry["eviction"]["dry_run"], true, "{dry}");
    let evicted = dry["eviction"]["evicted"].as_array().unwrap().clone();
    assert!(!evicted.is_empty(), "over the limit: {dry}");
    assert!(
        evicted
            .iter()
            .all(|e| !e.as_str().unwrap().contains("team/pinned")),
        "pinned images stay: {dry}"
    );
    let ls = admin_get(&w, "/api/v1/cache");
    assert_eq!(
        ls["images"].as_array().unwrap().len(),
        3,
        "dry run changed nothing: {ls}"
    );

    let done = w
        .http()
        .request(
            "POST",
            "/api/v1/cache/evict",
            // An empty body means the defaults: not a dry run.
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap()
        .expect(200)
        .json();
    let gone: Vec<String> = done["eviction"]["evicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(!gone.is_empty(), "{done}");
    let ls = admin_get(&w, "/api/v1/cache");
    let repos: Vec<&str> = ls["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["repo"].as_str().unwrap())
        .collect();
    assert!(repos.contains(&"upstream.test/team/pinned"), "{ls}");
    for g in &gone {
        let repo = g.split('@').next().unwrap();
        assert!(!repos.contains(&repo), "{repo} evicted: {ls}");
    }
    assert_eq!(gone.len(), 2, "both unpinned images went: {done}");
    // The pinned image kept its blobs: it pulls with the upstream down.
    proxy.set(Fault::Refuse);
    pull(tmp.path(), &via("team/pinned:v1"), "pinned").expect("pinned image pulls offline");
    proxy.clear();
    // An evicted image pulls again, from the upstream.
    let before = proxy.requests("GET", PathKind::Manifest);
    let repo = gone[0]
        .split('@')
        .next()
        .unwrap()
        .strip_prefix("upstream.test/")
        .unwrap();
    pull(tmp.path(), &via(&format!("{repo}:v1")), "again").expect("pull after eviction");
    assert!(
        proxy.requests("GET", PathKind::Manifest) > before,
        "fetched again"
    );
    assert!(metric(&w, "wharf_cache_evictions_total") >= 1.0);
}
