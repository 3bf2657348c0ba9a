//! End to end: the webhook's image rules against a real registry. A real Wharf holds pushed
//! images, `wharf sign` signs one of them (cosign's layout), and `wharf admission` answers
//! reviews of a real `kubectl` Deployment: the mutating webhook pins tags to the digests the
//! registry serves (its JSONPatch applied with an independent RFC 6902 implementation, as the
//! API server does), and the validating webhook verifies signatures with the policy's key,
//! within a deadline even when a registry never answers; the policy file reloads when edited.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env_remove("COSIGN_PASSWORD")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("HOME", "/nonexistent");
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `wharf admission` on plain HTTP (HTTPS is e2e_admission's subject), its log followed.
struct Webhook {
    child: Child,
    http: Http,
    logs: mpsc::Receiver<String>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    fn start(policy: &Path, metrics: SocketAddr, extra: &[&str]) -> Webhook {
        let mut child = wharf()
            .arg("admission")
            .arg("--policy")
            .arg(policy)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(extra)
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[webhook] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Webhook {
            child,
            http: Http::new(([127, 0, 0, 1], 1).into()),
            logs,
        };
        let line = w.wait_log("admission webhook listening");
        let addr: SocketAddr = line
            .split("address=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        w.http = Http::new(addr);
        w.http.timeout = Duration::from_secs(20);
        w
    }

    fn wait_log(&mut self, needle: &str) -> String {
        loop {
            match self.logs.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("waiting for {needle:?} in the log: {e}"),
            }
        }
    }

    /// Posts `review` to `path`; the response's `response`.
    fn post(&self, path: &str, review: &Value) -> Value {
        let body = serde_json::to_vec(review).unwrap();
        let r = self
            .http
            .must("POST", path, &[("Content-Type", "application/json")], &body)
            .expect(200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["response"]["uid"], review["request"]["uid"]);
        v["response"].clone()
    }
}

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/fixtures");
    serde_json::from_str(&fs::read_to_string(p.join(name)).unwrap()).unwrap()
}

/// The `kubectl create deployment` review with these container images.
fn deployment(images: &[&str]) -> Value {
    let mut rv = fixture("review-hardened-deployment.json");
    let spec = &mut rv["request"]["object"]["spec"]["template"]["spec"];
    let first = spec["containers"][0].clone();
    spec["containers"] = Value::Array(
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let mut c = first.clone();
                c["name"] = json!(format!("c{i}"));
                c["image"] = json!(img);
                c
            })
            .collect(),
    );
    rv
}

fn images(object: &Value) -> Vec<String> {
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap().to_owned())
        .collect()
}

/// Applies a mutating response's JSONPatch to the review's object, as the API server does.
fn patched(review: &Value, response: &Value) -> Value {
    use base64::Engine as _;
    let mut object = review["request"]["object"].clone();
    if let Some(p) = response.get("patch") {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

fn metric(http: &Http, line_start: &str) -> f64 {
    let text = http.must("GET", "/metrics", &[], &[]).expect(200).text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn policy_text(host: &str, key: &Path, signature_mode: &str) -> String {
    format!(
        r#"
[pss]
mode = "off"
[images]
digest = "enforce"
[signatures]
mode = "{signature_mode}"
[[signatures.key]]
name = "release"
path = "{}"
[[signatures.require]]
match = "{host}/team/*"
keys = ["release"]
[[signatures.require]]
match = "127.0.0.1:{{blackhole}}"
[mutate]
pin = true
"#,
        key.display()
    )
}

#[test]
fn webhook_pins_verifies_and_keeps_its_deadline_against_a_real_registry() {
    let reg = Server::start();
    let http = reg.http();
    let host = reg.addr.to_string();
    let d1 = push_image(&http, "team/app", "v1", 1);
    let d2 = push_image(&http, "team/app", "v2", 2);
    let d3 = push_image(&http, "other/tool", "1", 3);

    // A key pair, and a signature of team/app:v1 only.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("release");
    ok(wharf()
        .env("COSIGN_PASSWORD", "pw")
        .args(["key", "generate", "--output-prefix"])
        .arg(&prefix));
    let (key, public) = (
        dir.path().join("release.key"),
        dir.path().join("release.pub"),
    );
    ok(wharf()
        .env("COSIGN_PASSWORD", "pw")
        .args(["sign", &format!("{host}/team/app:v1"), "--key"])
        .arg(&key));

    // A registry that accepts connections and never answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = blackhole.local_addr().unwrap().to_string();
    let policy = dir.path().join("policy.toml");
    let text = policy_text(&host, &public, "enforce").replace("127.0.0.1:{blackhole}", &hole);
    fs::write(&policy, &text).unwrap();
    let metrics_port = free_port();
    let mut w = Webhook::start(
        &policy,
        ([127, 0, 0, 1], metrics_port).into(),
        &["--lookup-deadline-ms", "800", "--tag-ttl-seconds", "1"],
    );
    let scrape = Http::new(([127, 0, 0, 1], metrics_port).into());

    // Mutation: every tag the registry knows is pinned to the digest it serves; an unknown one
    // is left as written, with a warning saying why.
    let app1 = format!("{host}/team/app:v1");
    let app2 = format!("{host}/team/app:v2");
    let tool = format!("{host}/other/tool:1");
    let missing = format!("{host}/team/missing:1");
    let rv = deployment(&[&app1, &app2, &tool, &missing]);
    let r = w.post("/admission/v1/mutate", &rv);
    assert_eq!(r["allowed"], true, "{r}");
    let object = patched(&rv, &r);
    assert_eq!(
        images(&object),
        vec![
            format!("{app1}@{d1}"),
            format!("{app2}@{d2}"),
            format!("{tool}@{d3}"),
            missing.clone()
        ]
    );
    let warning = r["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with(&format!(
            "[mutate] container \"c3\": image \"{missing}\" not pinned"
        )),
        "{warning}"
    );
    assert!(w.wait_log("admission mutation").contains("changed=3"));

    // Validation of the mutated object: v1 is signed by the release key, v2 is not, the tool
    // needs no signature, the unpinned image breaks the digest rule.
    let mut again = rv.clone();
    again["request"]["object"] = object.clone();
    let r = w.post("/admission/v1/validate", &again);
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "[images.signature] container \"c1\": image \"{app2}@{d2}\" ({d2}) has no signature verified by release: it has no signature"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "[images.digest] container \"c3\": image \"{missing}\""
        )),
        "{msg}"
    );
    assert!(!msg.contains("\"c0\""), "v1 is signed: {msg}");
    assert!(
        !msg.contains("\"c2\""),
        "the tool needs no signature: {msg}"
    );

    // Only the signed image, pinned: allowed; the second time its verdict comes from the cache.
    let only_signed = deployment(&[&format!("{app1}@{d1}"), &format!("{tool}@{d3}")]);
    let fetched = metric(
        &scrape,
        "wharf_admission_lookups_total{kind=\"signature\",outcome=\"ok\"}",
    );
    assert!(fetched >= 1.0, "signature lookups: {fetched}");
    let r = w.post("/admission/v1/validate", &only_signed);
    assert_eq!(r["allowed"], true, "{r}");
    let r = w.post("/admission/v1/validate", &only_signed);
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        metric(
            &scrape,
            "wharf_admission_lookups_cached_total{kind=\"signature\"}"
        ) >= 1.0
    );

    // Sign v2: once the unverified verdict's short lifetime is over, v2 is admitted.
    ok(wharf()
        .env("COSIGN_PASSWORD", "pw")
        .args(["sign", &app2, "--key"])
        .arg(&key));
    std::thread::sleep(Duration::from_millis(1200));
    let v2 = deployment(&[&format!("{app2}@{d2}")]);
    let r = w.post("/admission/v1/validate", &v2);
    assert_eq!(r["allowed"], true, "{r}");

    // A registry that never answers: the review is answered by the deadline, and refused.
    let stuck = format!("{hole}/x/y:1");
    let started = Instant::now();
    let r = w.post("/admission/v1/validate", &deployment(&[&stuck]));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("no answer within the review's deadline of 800 ms"),
        "{msg}"
    );
    let r = w.post("/admission/v1/mutate", &deployment(&[&stuck]));
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("patch").is_none(), "{r}");
    assert!(
        metric(
            &scrape,
            "wharf_admission_lookups_total{kind=\"digest\",outcome=\"deadline\"}"
        ) >= 1.0
    );
    drop(blackhole);

    // Reload: a broken edit is refused (the old policy stays), a good one takes effect.
    let unsigned = deployment(&[&format!("{host}/team/app:v3@{d3}")]);
    fs::write(&policy, "[signatures]\nmode = \"sometimes\"\n").unwrap();
    w.wait_log("policy not reloaded");
    let r = w.post("/admission/v1/validate", &unsigned);
    assert_eq!(r["allowed"], false, "{r}");
    fs::write(
        &policy,
        policy_text(&host, &public, "warn").replace("127.0.0.1:{blackhole}", &hole),
    )
    .unwrap();
    w.wait_log("policy reloaded");
    let r = w.post("/admission/v1/validate", &unsigned);
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("[images.signature] container \"c0\""),
        "{r}"
    );
    assert!(
        metric(
            &scrape,
            "wharf_admission_policy_reloads_total{outcome=\"error\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &scrape,
            "wharf_admission_reviews_total{webhook=\"validate\",outcome=\"denied\"}"
        ) >= 3.0
    );
}

#[test]
fn a_policy_naming_an_unreadable_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        policy_text(
            "127.0.0.1:5000",
            &PathBuf::from("/nonexistent/release.pub"),
            "enforce",
        ),
    )
    .unwrap();
    let out = wharf()
        .arg("admission")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the policy's key \"release\"") && err.contains("/nonexistent/release.pub"),
        "{err}"
    );
}

#[test]
fn reviews_beyond_max_reviews_are_refused_at_once() {
    // Reviews held by a registry that never answers fill the one slot; the next is refused
    // with 503 at once (the API server then applies the failurePolicy) instead of queueing.
    let dir = tempfile::tempdir().unwrap();
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = blackhole.local_addr().unwrap().to_string();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[pss]\nmode = \"off\"\n[signatures]\nmode = \"enforce\"\n\
             [[signatures.key]]\nname = \"k\"\npath = \"{}\"\n\
             [[signatures.require]]\nmatch = \"{hole}\"\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(
                    "../../../shared/interop/cosign/01-containers-image-simple-signing/cosign.pub"
                )
                .display()
        ),
    )
    .unwrap();
    let w = Webhook::start(
        &policy,
        ([127, 0, 0, 1], free_port()).into(),
        &["--max-reviews", "1", "--lookup-deadline-ms", "2000"],
    );
    let stuck = deployment(&[&format!("{hole}/x/y:1")]);
    let http = w.http.clone();
    let body = serde_json::to_vec(&stuck).unwrap();
    let held = std::thread::spawn(move || {
        http.must(
            "POST",
            "/admission/v1/validate",
            &[("Content-Type", "application/json")],
            &body,
        )
        .status
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let r = w
        .http
        .must(
            "POST",
            "/admission/v1/validate",
            &[("Content-Type", "application/json")],
            &serde_json::to_vec(&deployment(&["nginx:1.27"])).unwrap(),
        )
        .expect(503);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(
        r.text().contains("too many admission reviews in flight"),
        "{}",
        r.text()
    );
    // The held review is answered (refused) by its deadline; then the slot is free again.
    assert_eq!(held.join().unwrap(), 200);
    let r = w.post("/admission/v1/validate", &deployment(&["nginx:1.27"]));
    assert_eq!(r["allowed"], true, "{r}");
    drop(blackhole);
}
