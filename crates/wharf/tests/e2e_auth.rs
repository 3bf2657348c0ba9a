//! End-to-end tests of access control: the real `wharf` binary with an `[auth]` configuration,
//! identities made with its CLI (`wharf user|robot|group|rule`), driven by real clients (skopeo,
//! podman, containerd's ctr) and by raw HTTP for the Docker token protocol, the OAuth2 grants, the
//! permission matrix, bad tokens, rate limiting, the audit log and htpasswd import.
//!
//! Every test runs its own server on a free loopback port with a temp data dir (see
//! `support::AuthWharf`), so they run in parallel. The CLI works on a stopped server's data dir,
//! so a test sets its identities up first, starts the server, and stops it to change them.
//!
//! Tokens are forged in some tests with the server's own signing key (read from the data dir and
//! used through the `auth` crate): that is how an expired or wrong-audience token with a *valid*
//! signature is made without waiting for the clock, so the refusal can only come from the claim
//! under test.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::*;

// -----------------------------------------------------------------------------------------------
// Identities and configuration
// -----------------------------------------------------------------------------------------------

/// A login and its password.
type Login = (&'static str, &'static str);

const ROOT: Login = ("root", "root-password-1");
const ALICE: Login = ("alice", "alice-password-1");
const BOB: Login = ("bob", "bob-password-1");
const DEV: Login = ("dev", "dev-password-1");
const ERIN: Login = ("erin", "erin-password-1");

/// The configuration most tests use: anonymous pulls of `public/*`.
const PUBLIC_CONFIG: &str = "[auth]\nanonymous_pull = [\"public/*\"]\n";

fn add_user(s: &AuthWharf, (name, password): Login, admin: bool) {
    let mut args = vec!["user", "add", name];
    if admin {
        args.push("--admin");
    }
    let out = s.must_cli(&args, &format!("{password}\n"));
    assert!(out.contains(name), "`wharf user add` output: {out}");
}

/// Creates a robot and returns its secret, checking what the CLI prints.
fn add_robot(s: &AuthWharf, name: &str, repos: &[&str], actions: &str) -> String {
    let mut args = vec!["robot", "create", name];
    for r in repos {
        args.extend(["--repo", r]);
    }
    args.extend(["--actions", actions]);
    let out = s.must_cli(&args, "");
    robot_secret(&out, name)
}

/// The secret in `login:  robot$NAME` / `secret: ...` output.
fn robot_secret(out: &str, name: &str) -> String {
    let login = out
        .lines()
        .find_map(|l| l.strip_prefix("login:"))
        .unwrap_or_else(|| panic!("no `login:` line in robot output:\n{out}"));
    assert_eq!(
        login.trim(),
        format!("robot${name}"),
        "robot output:\n{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .unwrap_or_else(|| panic!("no `secret:` line in robot output:\n{out}"))
        .trim()
        .to_string();
    assert!(secret.len() >= 32, "robot secret looks weak: {secret:?}");
    secret
}

fn add_rule(s: &AuthWharf, subject: &str, repo: &str, actions: &str) {
    s.must_cli(
        &["rule", "add", subject, "--repo", repo, "--actions", actions],
        "",
    );
}

fn set_group(s: &AuthWharf, name: &str, members: &[&str]) {
    let mut args = vec!["group", "set", name];
    for m in members {
        args.extend(["--member", m]);
    }
    s.must_cli(&args, "");
}

// -----------------------------------------------------------------------------------------------
// base64, JWTs, forms
// -----------------------------------------------------------------------------------------------

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not.
fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("not base64: {s:?}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The three parts of a compact JWT: header JSON, claims JSON, signature (base64url text).
fn jwt_parts(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWT: {token}");
    let h = serde_json::from_slice(&b64_decode(parts[0])).expect("JWT header is JSON");
    let c = serde_json::from_slice(&b64_decode(parts[1])).expect("JWT claims are JSON");
    (h, c, parts[2].to_string())
}

fn jwt_join(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64_encode(&serde_json::to_vec(header).unwrap(), B64_URL, false),
        b64_encode(&serde_json::to_vec(claims).unwrap(), B64_URL, false)
    )
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    Sha256::digest(&outer).to_vec()
}

/// `application/x-www-form-urlencoded` / query component escaping.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// -----------------------------------------------------------------------------------------------
// HTTP with credentials
// -----------------------------------------------------------------------------------------------

/// How a request authenticates.
#[derive(Clone, Debug)]
enum Cred {
    Anon,
    Basic(String, String),
    Bearer(String),
}

impl Cred {
    fn basic((user, password): Login) -> Cred {
        Cred::Basic(user.to_string(), password.to_string())
    }

    fn authorization(&self) -> Option<String> {
        match self {
            Cred::Anon => None,
            Cred::Basic(u, p) => Some(basic(u, p)),
            Cred::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

fn call(
    http: &Http,
    method: &str,
    path: &str,
    cred: &Cred,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let auth = cred.authorization();
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        h.push(("Authorization", a));
    }
    http.must(method, path, &h, body)
}

/// `GET /token?service=wharf&scope=...` with optional Basic credentials (`extra` is appended
/// to the query as is).
fn get_token(http: &Http, login: Option<(&str, &str)>, scopes: &[&str], extra: &str) -> Response {
    let mut q = String::from("service=wharf");
    for s in scopes {
        q.push_str(&format!("&scope={}", pct(s)));
    }
    if !extra.is_empty() {
        q.push('&');
        q.push_str(extra);
    }
    let cred = login.map_or(Cred::Anon, |(u, p)| Cred::Basic(u.into(), p.into()));
    call(http, "GET", &format!("/token?{q}"), &cred, &[], &[])
}

/// A token for `scopes`, which must be issued.
fn token(http: &Http, login: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let r = get_token(http, login, scopes, "");
    assert_eq!(
        r.status,
        200,
        "token for {login:?} {scopes:?}\n{}",
        r.dump()
    );
    let v = r.json();
    let t = v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {v}"))
        .to_string();
    assert_eq!(
        v["access_token"].as_str(),
        Some(t.as_str()),
        "token != access_token: {v}"
    );
    t
}

fn post_token(http: &Http, body: &str) -> Response {
    http.must(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

fn error_codes(r: &Response) -> Vec<String> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["code"].as_str().map(String::from))
        .collect()
}

fn error_message(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Panics unless `r` is a 401 UNAUTHORIZED with a Bearer challenge naming this server's token
/// endpoint and service (and `scope`, when given).
fn assert_challenge(s: &AuthWharf, r: &Response, scope: Option<&str>, ctx: &str) {
    if let Some(problem) = challenge_problem(s, r, scope) {
        panic!("{ctx}: {problem}\n{}", r.dump());
    }
}

fn challenge_problem(s: &AuthWharf, r: &Response, scope: Option<&str>) -> Option<String> {
    if r.status != 401 {
        return Some(format!("expected 401, got {}", r.status));
    }
    if !error_codes(r).iter().any(|c| c == "UNAUTHORIZED") {
        return Some("expected error code UNAUTHORIZED".into());
    }
    let Some(ch) = r.header("WWW-Authenticate") else {
        return Some("401 without WWW-Authenticate".into());
    };
    let realm = format!("Bearer realm=\"http://{}/token\"", s.host());
    if !ch.starts_with(&realm) {
        return Some(format!("challenge {ch:?} does not start with {realm:?}"));
    }
    if !ch.contains("service=\"wharf\"") {
        return Some(format!("challenge {ch:?} lacks service=\"wharf\""));
    }
    if let Some(sc) = scope {
        let want = format!("scope=\"{sc}\"");
        if !ch.contains(&want) {
            return Some(format!("challenge {ch:?} lacks {want}"));
        }
    }
    None
}

/// Panics unless `r` is a 403 DENIED whose message names what is missing.
fn assert_denied(r: &Response, action: &str, repo: &str, ctx: &str) {
    if let Some(problem) = denied_problem(r, action, repo) {
        panic!("{ctx}: {problem}\n{}", r.dump());
    }
}

fn denied_problem(r: &Response, action: &str, repo: &str) -> Option<String> {
    if r.status != 403 {
        return Some(format!("expected 403 DENIED, got {}", r.status));
    }
    if !error_codes(r).iter().any(|c| c == "DENIED") {
        return Some("expected error code DENIED".into());
    }
    let m = error_message(r);
    if !m.contains(action) || !m.contains(repo) {
        return Some(format!(
            "denial message {m:?} should say that {action} on {repo} is missing"
        ));
    }
    None
}

// -----------------------------------------------------------------------------------------------
// Tiny images pushed over raw HTTP
// -----------------------------------------------------------------------------------------------

struct TinyImage {
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    manifest: Vec<u8>,
    digest: String,
}

fn tiny_image(seed: &str) -> TinyImage {
    let mut layer = format!("layer of {seed}\n").into_bytes();
    let n = Sha256::digest(seed.as_bytes());
    layer.extend(pattern(
        u64::from_le_bytes(n[..8].try_into().unwrap()),
        3000,
    ));
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {"Labels": {"seed": seed}}
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}]
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    TinyImage {
        config,
        config_digest,
        layer,
        layer_digest,
        manifest,
        digest,
    }
}

/// POST + PUT of one blob: the final response (201), or the first one that is not as expected.
fn push_blob_as(http: &Http, cred: &Cred, repo: &str, data: &[u8]) -> Response {
    let r = call(
        http,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        cred,
        &[],
        &[],
    );
    if r.status != 202 {
        return r;
    }
    let loc = with_query(&r.location(), &format!("digest={}", sha256_digest(data)));
    call(
        http,
        "PUT",
        &loc,
        cred,
        &[("Content-Type", "application/octet-stream")],
        data,
    )
}

/// Pushes layer, config and manifest (as `reference`): the manifest PUT's response (201), or the
/// first response that went wrong.
fn push_image_as(
    http: &Http,
    cred: &Cred,
    repo: &str,
    reference: &str,
    img: &TinyImage,
) -> Response {
    for blob in [&img.layer, &img.config] {
        let r = push_blob_as(http, cred, repo, blob);
        if r.status != 201 {
            return r;
        }
    }
    call(
        http,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        cred,
        &[("Content-Type", OCI_MANIFEST)],
        &img.manifest,
    )
}

fn must_push_image(http: &Http, cred: &Cred, repo: &str, reference: &str, img: &TinyImage) {
    let r = push_image_as(http, cred, repo, reference, img);
    assert_eq!(r.status, 201, "push of {repo}:{reference}\n{}", r.dump());
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(img.digest.as_str()),
        "{}",
        r.dump()
    );
}

fn get_manifest_as(http: &Http, cred: &Cred, repo: &str, reference: &str) -> Response {
    call(
        http,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        cred,
        &[("Accept", ACCEPT_ALL)],
        &[],
    )
}

// -----------------------------------------------------------------------------------------------
// Clients
// -----------------------------------------------------------------------------------------------

fn image_tools_ok(test: &str, extra: &[&str]) -> bool {
    let mut tools = vec!["umoci", "busybox", "skopeo"];
    tools.extend_from_slice(extra);
    have_tools(test, &tools)
}

/// `skopeo copy` of a test image to `docker://dest`, digests preserved, with `--dest-creds`.
fn skopeo_push_cmd(
    tmp: &Path,
    tag: &str,
    dest: &str,
    creds: Option<&str>,
) -> std::process::Command {
    let mut c = skopeo(tmp);
    c.args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    if let Some(cr) = creds {
        c.arg("--dest-creds").arg(cr);
    }
    c.arg(test_images().oci_ref(tag))
        .arg(format!("docker://{dest}"));
    c
}

/// `skopeo copy docker://src oci:OUT:tag` with `--src-creds`.
fn skopeo_pull_cmd(
    tmp: &Path,
    src: &str,
    out: &Layout,
    creds: Option<&str>,
) -> std::process::Command {
    let mut c = skopeo(tmp);
    c.args(["copy", "--quiet", "--src-tls-verify=false"]);
    if let Some(cr) = creds {
        c.arg("--src-creds").arg(cr);
    }
    c.arg(format!("docker://{src}")).arg(out.oci_ref("got"));
    c
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_lowercase()
}

/// A failed client command's output must show an authentication or authorization refusal (so
/// that it did not fail for some unrelated reason).
fn assert_refused(o: &std::process::Output, what: &str) {
    let e = stderr_of(o) + &String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(
        [
            "401",
            "403",
            "unauthorized",
            "denied",
            "authentication required",
            "invalid username",
        ]
        .iter()
        .any(|w| e.contains(w)),
        "{what} failed, but not with an authentication/authorization error:\n{e}"
    );
}

// -----------------------------------------------------------------------------------------------
// 1. Real clients with credentials
// -----------------------------------------------------------------------------------------------

#[test]
fn skopeo_copies_with_user_and_robot_credentials() {
    if !image_tools_ok("skopeo_copies_with_user_and_robot_credentials", &[]) {
        return;
    }
    let imgs = test_images();
    let src = imgs.image(TAG_MULTI);
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull,push");
    let secret = add_robot(&s, "ci", &["team-b/*"], "pull,push");
    s.start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = s.host();
    let http = s.http();
    let dev = format!("{}:{}", DEV.0, DEV.1);
    let robot = format!("robot$ci:{secret}");

    // A user pushes and pulls back with credentials.
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_MULTI,
        &format!("{host}/team-a/app:v1"),
        Some(&dev),
    ));
    let r = get_manifest_as(&http, &Cred::basic(DEV), "team-a/app", "v1").expect(200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(src.digest.as_str()));
    let out = Layout::empty_temp();
    run(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &out,
        Some(&dev),
    ));
    assert_eq!(
        out.image("got").digest,
        src.digest,
        "pulled manifest digest"
    );
    assert!(assert_blobs_subset(&out, imgs) >= 4, "pulled too few blobs");
    let inspect = run(skopeo(tmp)
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &dev])
        .arg(format!("docker://{host}/team-a/app:v1")));
    assert_eq!(inspect.as_bytes(), imgs.blob(&src.digest).as_slice());

    // A copy inside the registry (cross-repository mount of every blob) with the user's rights.
    run(skopeo(tmp)
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(["--src-creds", &dev, "--dest-creds", &dev])
        .arg(format!("docker://{host}/team-a/app:v1"))
        .arg(format!("docker://{host}/team-a/copy:v1")));
    let r = get_manifest_as(&http, &Cred::basic(DEV), "team-a/copy", "v1").expect(200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(src.digest.as_str()));

    // The robot pushes and pulls in its own namespace.
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-b/app:v1"),
        Some(&robot),
    ));
    let out = Layout::empty_temp();
    run(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-b/app:v1"),
        &out,
        Some(&robot),
    ));
    assert_eq!(out.image("got").digest, imgs.image(TAG_BASE).digest);

    // ... and nowhere else; nor the user in the robot's namespace.
    let o = run_fail(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-a/robot:v1"),
        Some(&robot),
    ));
    assert_refused(&o, "robot push outside its repositories");
    let o = run_fail(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &Layout::empty_temp(),
        Some(&robot),
    ));
    assert_refused(&o, "robot pull outside its repositories");
    let o = run_fail(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-b/dev:v1"),
        Some(&dev),
    ));
    assert_refused(&o, "user push outside its rules");

    // Wrong or missing credentials.
    let o = run_fail(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-a/app:v2"),
        Some("dev:wrong-password"),
    ));
    assert_refused(&o, "push with a wrong password");
    let o = run_fail(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &Layout::empty_temp(),
        Some("dev:wrong-password"),
    ));
    assert_refused(&o, "pull with a wrong password");
    let o = run_fail(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-b/app:v1"),
        &Layout::empty_temp(),
        Some("robot$ci:not-the-secret"),
    ));
    assert_refused(&o, "pull with a wrong robot secret");
    let o = run_fail(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-a/app:v2"),
        None,
    ));
    assert_refused(&o, "anonymous push");
    let o = run_fail(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &Layout::empty_temp(),
        None,
    ));
    assert_refused(&o, "anonymous pull of a private repository");

    // Nothing was written by the refused pushes.
    for (repo, tag) in [
        ("team-a/robot", "v1"),
        ("team-b/dev", "v1"),
        ("team-a/app", "v2"),
    ] {
        let r = get_manifest_as(&http, &Cred::basic(DEV), repo, tag);
        assert!(
            matches!(r.status, 403 | 404),
            "{repo}:{tag} after refused pushes\n{}",
            r.dump()
        );
    }
}

#[test]
fn anonymous_pull_of_public_repositories_only() {
    if !image_tools_ok("anonymous_pull_of_public_repositories_only", &[]) {
        return;
    }
    let imgs = test_images();
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "public/*", "pull,push");
    add_rule(&s, "user:dev", "team-a/*", "pull,push");
    s.start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = s.host();
    let http = s.http();
    let dev = format!("{}:{}", DEV.0, DEV.1);
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/public/app:v1"),
        Some(&dev),
    ));
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-a/app:v1"),
        Some(&dev),
    ));
    let want = imgs.image(TAG_BASE).digest;

    // No credentials at all: the public image is pulled, inspected and listed.
    let out = Layout::empty_temp();
    run(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/public/app:v1"),
        &out,
        None,
    ));
    assert_eq!(out.image("got").digest, want);
    let tags = run(skopeo(tmp)
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{host}/public/app")));
    assert!(tags.contains("\"v1\""), "list-tags of public/app: {tags}");
    // Plain HTTP, no token dance: anonymous pulls of public repositories need no token.
    let r = get_manifest_as(&http, &Cred::Anon, "public/app", "v1").expect(200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(want.as_str()));

    // The private repository with the same content needs credentials.
    let o = run_fail(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &Layout::empty_temp(),
        None,
    ));
    assert_refused(&o, "anonymous pull of team-a/app");
    let o = run_fail(
        skopeo(tmp)
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{host}/team-a/app")),
    );
    assert_refused(&o, "anonymous list-tags of team-a/app");
    let out = Layout::empty_temp();
    run(&mut skopeo_pull_cmd(
        tmp,
        &format!("{host}/team-a/app:v1"),
        &out,
        Some(&dev),
    ));
    assert_eq!(out.image("got").digest, want);
    let r = get_manifest_as(&http, &Cred::Anon, "team-a/app", "v1");
    assert_challenge(
        &s,
        &r,
        Some("repository:team-a/app:pull"),
        "anonymous manifest GET of team-a/app",
    );

    // Public means pull, not push.
    let o = run_fail(&mut skopeo_push_cmd(
        tmp,
        TAG_MULTI,
        &format!("{host}/public/app:v2"),
        None,
    ));
    assert_refused(&o, "anonymous push to public/app");
    get_manifest_as(&http, &Cred::Anon, "public/app", "v2").expect(404);
}

#[test]
fn podman_login_push_pull() {
    if !image_tools_ok("podman_login_push_pull", &["podman"]) {
        return;
    }
    let imgs = test_images();
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull,push");
    s.start();
    let host = s.host();
    let authfile = s.scratch().join("auth.json");
    let empty_authfile = s.scratch().join("empty-auth.json");
    fs::write(&empty_authfile, "{\"auths\":{}}").unwrap();
    let pusher = Podman::new();
    let login = |p: &Podman, password: &str| {
        let mut c = p.cmd();
        c.args(["login", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .args(["--username", DEV.0, "--password", password])
            .arg(&host);
        c
    };

    // A wrong password is refused at login, and nothing is stored.
    let o = run_fail(&mut login(&pusher, "wrong-password"));
    assert_refused(&o, "podman login with a wrong password");
    let stored = fs::read_to_string(&authfile).unwrap_or_default();
    assert!(
        !stored.contains(&host),
        "a failed login stored credentials: {stored}"
    );

    // Login, push, pull with the stored credentials.
    let out = run(&mut login(&pusher, DEV.1));
    assert!(out.contains("Login Succeeded"), "podman login said: {out}");
    let stored = fs::read_to_string(&authfile).unwrap();
    assert!(stored.contains(&host), "auth file after login: {stored}");
    let id = pusher.load(imgs, TAG_MULTI);
    let reference = format!("{host}/team-a/podman:v1");
    run(pusher
        .cmd()
        .args(["push", "--quiet", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(&id)
        .arg(format!("docker://{reference}")));
    let puller = Podman::new();
    run(puller
        .cmd()
        .args(["pull", "--quiet", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(&reference));
    let got = run(puller
        .cmd()
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(&reference));
    assert_eq!(got.trim(), id, "image ID pulled with podman");

    // Without the stored credentials the same pull is refused...
    let stranger = Podman::new();
    let o = run_fail(
        stranger
            .cmd()
            .args(["pull", "--quiet", "--tls-verify=false", "--authfile"])
            .arg(&empty_authfile)
            .arg(&reference),
    );
    assert_refused(&o, "podman pull without credentials");
    // ... and after logout too.
    run(pusher
        .cmd()
        .args(["logout", "--authfile"])
        .arg(&authfile)
        .arg(&host));
    let o = run_fail(
        stranger
            .cmd()
            .args(["pull", "--quiet", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(&reference),
    );
    assert_refused(&o, "podman pull after logout");
}

#[test]
fn containerd_pulls_with_credentials() {
    if !image_tools_ok("containerd_pulls_with_credentials", &["containerd", "ctr"]) {
        return;
    }
    let imgs = test_images();
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull");
    let secret = add_robot(&s, "puller", &["team-b/*"], "pull");
    s.start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let host = s.host();
    let root = format!("{}:{}", ROOT.0, ROOT.1);
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_MULTI,
        &format!("{host}/team-a/app:v1"),
        Some(&root),
    ));
    run(&mut skopeo_push_cmd(
        tmp,
        TAG_BASE,
        &format!("{host}/team-b/app:v1"),
        Some(&root),
    ));

    let ctrd = Containerd::start();
    let pull = |reference: &str, user: Option<&str>| {
        let mut c = ctrd.ctr();
        c.args(["images", "pull", "--plain-http", "--snapshotter", "native"]);
        if let Some(u) = user {
            c.args(["--user", u]);
        }
        c.arg(reference);
        c
    };
    let a = format!("{host}/team-a/app:v1");
    let b = format!("{host}/team-b/app:v1");
    let o = run_fail(&mut pull(&a, None));
    assert_refused(&o, "ctr pull without credentials");
    let o = run_fail(&mut pull(&a, Some("dev:wrong-password")));
    assert_refused(&o, "ctr pull with a wrong password");
    let o = run_fail(&mut pull(&b, Some(&format!("{}:{}", DEV.0, DEV.1))));
    assert_refused(&o, "ctr pull of a repository the user may not read");

    run(&mut pull(&a, Some(&format!("{}:{}", DEV.0, DEV.1))));
    run(&mut pull(&b, Some(&format!("robot$puller:{secret}"))));
    let listed = run(ctrd.ctr().args(["images", "ls"]));
    for (r, want) in [
        (&a, imgs.image(TAG_MULTI).digest),
        (&b, imgs.image(TAG_BASE).digest),
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(r.as_str()) && l.contains(&want)),
            "{r} should be in `ctr images ls` with {want}:\n{listed}"
        );
    }
}

// -----------------------------------------------------------------------------------------------
// 2. The OAuth2 token flow by raw HTTP
// -----------------------------------------------------------------------------------------------

#[test]
fn oauth2_password_and_refresh_grants() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull,push");
    s.start();
    let http = s.http();
    let scope = "repository:team-a/app:pull,push";

    // Password grant with access_type=offline: an access token and a refresh token.
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "password"),
            ("service", "wharf"),
            ("client_id", "wharf-e2e"),
            ("access_type", "offline"),
            ("username", DEV.0),
            ("password", DEV.1),
            ("scope", scope),
        ]),
    )
    .expect(200);
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{}", r.dump());
    let v = r.json();
    let access = v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(v["token"].as_str(), Some(access.as_str()));
    assert_eq!(v["scope"], scope, "{v}");
    assert_eq!(v["expires_in"], 300, "default token lifetime: {v}");
    let issued = v["issued_at"].as_str().expect("issued_at");
    assert!(
        issued.len() == 20 && issued.ends_with('Z') && issued.as_bytes()[10] == b'T',
        "issued_at is not RFC 3339: {issued}"
    );
    let (h, c, _) = jwt_parts(&access);
    assert_eq!(h["alg"], "ES256", "{h}");
    assert!(h["kid"].as_str().is_some_and(|k| !k.is_empty()), "{h}");
    assert_eq!(c["iss"], "wharf");
    assert_eq!(c["aud"], "wharf");
    assert_eq!(c["sub"], DEV.0);
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        300,
        "{c}"
    );
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}])
    );

    // The access token pushes.
    let img = tiny_image("oauth2");
    must_push_image(
        &http,
        &Cred::Bearer(access.clone()),
        "team-a/app",
        "v1",
        &img,
    );

    // Refresh grant, for a narrower scope: a new access token, pull only.
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "refresh_token"),
            ("service", "wharf"),
            ("client_id", "wharf-e2e"),
            ("refresh_token", &refresh),
            ("scope", "repository:team-a/app:pull"),
        ]),
    )
    .expect(200);
    let v = r.json();
    let pull_only = v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert_ne!(
        pull_only, access,
        "the refresh grant returned the old access token"
    );
    assert_eq!(v["scope"], "repository:team-a/app:pull", "{v}");
    let (_, c, _) = jwt_parts(&pull_only);
    assert_eq!(c["sub"], DEV.0);
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}])
    );

    // Use it on /v2/.
    let bearer = Cred::Bearer(pull_only.clone());
    call(&http, "GET", "/v2/", &bearer, &[], &[]).expect(200);
    let r = get_manifest_as(&http, &bearer, "team-a/app", "v1").expect(200);
    assert!(
        r.body == img.manifest,
        "manifest pulled with the refreshed token differs"
    );
    for d in [&img.layer_digest, &img.config_digest] {
        call(
            &http,
            "GET",
            &format!("/v2/team-a/app/blobs/{d}"),
            &bearer,
            &[],
            &[],
        )
        .expect(200);
    }
    // It does not push: the user may, so the answer is a new challenge, not a denial.
    let r = call(
        &http,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &bearer,
        &[],
        &[],
    );
    assert_challenge(
        &s,
        &r,
        Some("repository:team-a/app:pull,push"),
        "push with a pull-only token",
    );
    assert!(
        r.header("WWW-Authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\""),
        "{}",
        r.dump()
    );

    // A refresh token is not an access token, and an access token is not a refresh token.
    let r = call(
        &http,
        "GET",
        "/v2/",
        &Cred::Bearer(refresh.clone()),
        &[],
        &[],
    );
    assert_challenge(&s, &r, None, "refresh token used as an access token");
    let r = post_token(
        &http,
        &form(&[("grant_type", "refresh_token"), ("refresh_token", &access)]),
    );
    assert_eq!(
        r.status,
        401,
        "access token used as a refresh token\n{}",
        r.dump()
    );
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not.a.token"),
        ]),
    );
    assert_eq!(r.status, 401, "garbage refresh token\n{}", r.dump());

    // Password grant mistakes.
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "password"),
            ("username", DEV.0),
            ("password", "wrong-password"),
            ("scope", scope),
        ]),
    );
    assert_eq!(r.status, 401, "wrong password\n{}", r.dump());
    assert!(
        !r.text().contains("token\""),
        "a failed grant returned a token: {}",
        r.text()
    );
    for (body, what) in [
        (
            form(&[("username", DEV.0), ("password", DEV.1)]),
            "no grant_type",
        ),
        (
            form(&[("grant_type", "client_credentials")]),
            "unsupported grant_type",
        ),
        (
            form(&[("grant_type", "password"), ("password", DEV.1)]),
            "no username",
        ),
        (
            form(&[
                ("grant_type", "password"),
                ("username", DEV.0),
                ("password", DEV.1),
                ("service", "elsewhere"),
            ]),
            "another service",
        ),
    ] {
        let r = post_token(&http, &body);
        assert_eq!(r.status, 400, "{what}\n{}", r.dump());
    }

    // No refresh token unless asked for; GET /token gives one with offline_token=true.
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "password"),
            ("username", DEV.0),
            ("password", DEV.1),
        ]),
    )
    .expect(200);
    assert!(
        r.json().get("refresh_token").is_none(),
        "unrequested refresh token: {}",
        r.text()
    );
    let r = get_token(&http, Some(DEV), &[scope], "").expect(200);
    assert!(
        r.json().get("refresh_token").is_none(),
        "unrequested refresh token: {}",
        r.text()
    );
    let r = get_token(&http, Some(DEV), &[scope], "offline_token=true").expect(200);
    let rt = r.json()["refresh_token"]
        .as_str()
        .expect("refresh_token with offline_token=true")
        .to_string();
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", scope),
        ]),
    )
    .expect(200);
    assert_eq!(r.json()["scope"], scope);
    // Anonymous callers get no refresh token.
    let r = get_token(
        &http,
        None,
        &["repository:public/x:pull"],
        "offline_token=true",
    )
    .expect(200);
    assert!(
        r.json().get("refresh_token").is_none(),
        "anonymous refresh token: {}",
        r.text()
    );
}

// -----------------------------------------------------------------------------------------------
// 3. The permission matrix
// -----------------------------------------------------------------------------------------------

const MATRIX_REPOS: [&str; 4] = ["public/app", "secret/app", "team-a/app", "team-b/app"];

/// What each identity of the matrix may do (the rules set up in `permission_matrix`).
fn may(who: &str, repo: &str, action: &str) -> bool {
    let ns = repo.split('/').next().unwrap();
    match who {
        "root" => true,
        // Pull on team-a/* through the `readers` group; everyone pulls public/*.
        "alice" => action == "pull" && matches!(ns, "team-a" | "public"),
        // pull,push on team-a/* by a rule naming bob.
        "bob" => {
            (action == "pull" && matches!(ns, "team-a" | "public"))
                || (action == "push" && ns == "team-a")
        }
        // The robot's own grant: pull,push,delete on team-b/*.
        "robot$ci" => ns == "team-b" || (action == "pull" && ns == "public"),
        "anonymous" => action == "pull" && ns == "public",
        other => unreachable!("{other}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Basic credentials straight on /v2/.
    Basic,
    /// Bearer tokens from GET /token.
    Token,
}

struct Who {
    name: &'static str,
    login: Option<(String, String)>,
}

impl Who {
    fn anonymous(&self) -> bool {
        self.login.is_none()
    }

    /// Credentials for a request needing `scopes`.
    fn cred(&self, http: &Http, mode: Mode, scopes: &[&str]) -> Cred {
        match (mode, &self.login) {
            (Mode::Basic, None) => Cred::Anon,
            (Mode::Basic, Some((u, p))) => Cred::Basic(u.clone(), p.clone()),
            (Mode::Token, login) => Cred::Bearer(token(
                http,
                login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                scopes,
            )),
        }
    }
}

/// Collects every wrong answer of the matrix, so one run reports them all.
struct Verdicts<'a> {
    s: &'a AuthWharf,
    failures: Vec<String>,
    checks: usize,
}

impl Verdicts<'_> {
    /// `r` must be one of `ok` when allowed, else the refusal for the caller's kind: 401 with a
    /// challenge for `scope` (anonymous) or 403 DENIED naming `action` and `repo`.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &mut self,
        ctx: &str,
        r: &Response,
        allowed: bool,
        ok: &[u16],
        anonymous: bool,
        action: &str,
        repo: &str,
        scope: &str,
    ) -> bool {
        self.checks += 1;
        let problem = if allowed {
            (!ok.contains(&r.status)).then(|| format!("expected {ok:?} (allowed)"))
        } else if anonymous {
            challenge_problem(self.s, r, Some(scope))
        } else {
            denied_problem(r, action, repo)
        };
        match problem {
            Some(p) => {
                self.failures.push(format!("{ctx}: {p}\n{}", r.dump()));
                false
            }
            None => true,
        }
    }

    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }
}

#[test]
fn permission_matrix() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    add_user(&s, ALICE, false);
    add_user(&s, BOB, false);
    set_group(&s, "readers", &["alice"]);
    add_rule(&s, "group:readers", "team-a/*", "pull");
    add_rule(&s, "user:bob", "team-a/*", "pull,push");
    let secret = add_robot(&s, "ci", &["team-b/*"], "pull,push,delete");
    s.start();
    let http = s.http();
    let root = Cred::basic(ROOT);

    // Seed: one image per repository, each with its own blobs.
    let seeded: Vec<(&str, TinyImage)> = MATRIX_REPOS.iter().map(|r| (*r, tiny_image(r))).collect();
    for (repo, img) in &seeded {
        must_push_image(&http, &root, repo, "v1", img);
    }
    let seed_of = |repo: &str| &seeded.iter().find(|(r, _)| *r == repo).unwrap().1;

    let whos = [
        Who {
            name: "root",
            login: Some((ROOT.0.into(), ROOT.1.into())),
        },
        Who {
            name: "alice",
            login: Some((ALICE.0.into(), ALICE.1.into())),
        },
        Who {
            name: "bob",
            login: Some((BOB.0.into(), BOB.1.into())),
        },
        Who {
            name: "robot$ci",
            login: Some(("robot$ci".into(), secret.clone())),
        },
        Who {
            name: "anonymous",
            login: None,
        },
    ];
    let mut v = Verdicts {
        s: &s,
        failures: Vec::new(),
        checks: 0,
    };
    let mut seq = 0u32;

    // Catalog listing first (later steps create repositories): only pullable repositories.
    for mode in [Mode::Basic, Mode::Token] {
        for who in &whos {
            let ctx = format!("[{mode:?}] {} GET /v2/_catalog", who.name);
            let cred = who.cred(&http, mode, &["registry:catalog:*"]);
            let r = call(&http, "GET", "/v2/_catalog", &cred, &[], &[]);
            if who.anonymous() {
                // The catalog is for identified callers: no token at all, or an anonymous token
                // (which is granted nothing of registry:catalog), is challenged.
                v.check(&ctx, &r, false, &[], true, "pull", "", "registry:catalog:*");
                continue;
            }
            if !v.check(&ctx, &r, true, &[200], false, "", "", "") {
                continue;
            }
            let want: Vec<&str> = MATRIX_REPOS
                .iter()
                .copied()
                .filter(|repo| may(who.name, repo, "pull"))
                .collect();
            let got = r.json()["repositories"].clone();
            if got != json!(want) {
                v.fail(format!("{ctx}: listed {got}, expected {want:?}"));
            }
        }
    }

    for mode in [Mode::Basic, Mode::Token] {
        for who in &whos {
            let anon = who.anonymous();
            for repo in MATRIX_REPOS {
                let img = seed_of(repo);
                // --- pull: manifest GET and HEAD, blob GET, tags list -------------------------
                let allowed = may(who.name, repo, "pull");
                let scope = format!("repository:{repo}:pull");
                let cred = who.cred(&http, mode, &[&scope]);
                let ctx = format!("[{mode:?}] {} pull {repo}", who.name);
                let r = get_manifest_as(&http, &cred, repo, "v1");
                if v.check(
                    &format!("{ctx} (manifest)"),
                    &r,
                    allowed,
                    &[200],
                    anon,
                    "pull",
                    repo,
                    &scope,
                ) && allowed
                    && r.body != img.manifest
                {
                    v.fail(format!("{ctx}: manifest body differs"));
                }
                let r = call(
                    &http,
                    "HEAD",
                    &format!("/v2/{repo}/manifests/v1"),
                    &cred,
                    &[("Accept", ACCEPT_ALL)],
                    &[],
                );
                // A HEAD response has no body to carry an error code: check the status only.
                v.checks += 1;
                let want = if allowed {
                    200
                } else if anon {
                    401
                } else {
                    403
                };
                if r.status != want {
                    v.fail(format!(
                        "{ctx} (manifest HEAD): expected {want}\n{}",
                        r.dump()
                    ));
                }
                let r = call(
                    &http,
                    "GET",
                    &format!("/v2/{repo}/blobs/{}", img.layer_digest),
                    &cred,
                    &[],
                    &[],
                );
                if v.check(
                    &format!("{ctx} (blob)"),
                    &r,
                    allowed,
                    &[200],
                    anon,
                    "pull",
                    repo,
                    &scope,
                ) && allowed
                    && r.body != img.layer
                {
                    v.fail(format!("{ctx}: blob body differs"));
                }
                let r = call(
                    &http,
                    "GET",
                    &format!("/v2/{repo}/tags/list"),
                    &cred,
                    &[],
                    &[],
                );
                v.check(
                    &format!("{ctx} (tags/list)"),
                    &r,
                    allowed,
                    &[200],
                    anon,
                    "pull",
                    repo,
                    &scope,
                );
                let r = call(
                    &http,
                    "GET",
                    &format!("/v2/{repo}/referrers/{}", img.digest),
                    &cred,
                    &[],
                    &[],
                );
                v.check(
                    &format!("{ctx} (referrers)"),
                    &r,
                    allowed,
                    &[200],
                    anon,
                    "pull",
                    repo,
                    &scope,
                );

                // --- push: blob + manifest ----------------------------------------------------
                let allowed = may(who.name, repo, "push");
                let scope = format!("repository:{repo}:pull,push");
                let cred = who.cred(&http, mode, &[&scope]);
                let ctx = format!("[{mode:?}] {} push {repo}", who.name);
                seq += 1;
                let pushed = tiny_image(&format!("push {seq} {ctx}"));
                let tag = format!("pushed-{seq}");
                let r = push_image_as(&http, &cred, repo, &tag, &pushed);
                v.check(&ctx, &r, allowed, &[201], anon, "push", repo, &scope);
                let after = get_manifest_as(&http, &root, repo, &tag);
                if after.status != if allowed { 200 } else { 404 } {
                    v.fail(format!(
                        "{ctx}: afterwards the tag answers {}\n{}",
                        after.status,
                        after.dump()
                    ));
                }

                // --- delete a manifest --------------------------------------------------------
                let allowed = may(who.name, repo, "delete");
                let scope = format!("repository:{repo}:delete");
                seq += 1;
                let victim = tiny_image(&format!("victim {seq}"));
                must_push_image(&http, &root, repo, &victim.digest, &victim);
                let cred = who.cred(&http, mode, &[&scope]);
                let ctx = format!("[{mode:?}] {} delete manifest in {repo}", who.name);
                let r = call(
                    &http,
                    "DELETE",
                    &format!("/v2/{repo}/manifests/{}", victim.digest),
                    &cred,
                    &[],
                    &[],
                );
                v.check(&ctx, &r, allowed, &[202], anon, "delete", repo, &scope);
                let after = get_manifest_as(&http, &root, repo, &victim.digest);
                if after.status != if allowed { 404 } else { 200 } {
                    v.fail(format!(
                        "{ctx}: afterwards the manifest answers {}\n{}",
                        after.status,
                        after.dump()
                    ));
                }
            }

            // --- mount into a repository of one's own, from every repository ------------------
            let target = match who.name {
                "root" => format!("secret/mnt-root-{mode:?}"),
                "alice" => format!("team-a/mnt-alice-{mode:?}"),
                "bob" => format!("team-a/mnt-bob-{mode:?}"),
                "robot$ci" => format!("team-b/mnt-ci-{mode:?}"),
                _ => format!("public/mnt-anon-{mode:?}"),
            }
            .to_lowercase();
            for from in MATRIX_REPOS {
                let d = &seed_of(from).layer_digest;
                let scope = format!("repository:{target}:pull,push");
                let from_scope = format!("repository:{from}:pull");
                let cred = who.cred(&http, mode, &[&scope, &from_scope]);
                let ctx = format!(
                    "[{mode:?}] {} mount {d} from {from} into {target}",
                    who.name
                );
                let r = call(
                    &http,
                    "POST",
                    &format!("/v2/{target}/blobs/uploads/?mount={d}&from={from}"),
                    &cred,
                    &[],
                    &[],
                );
                if !may(who.name, &target, "push") {
                    v.check(&ctx, &r, false, &[], anon, "push", &target, &scope);
                    continue;
                }
                let readable = may(who.name, from, "pull");
                let want = if readable { 201 } else { 202 };
                v.checks += 1;
                if r.status != want {
                    v.fail(format!(
                        "{ctx}: expected {want} ({})\n{}",
                        if readable {
                            "mounted"
                        } else {
                            "fallback to an upload session"
                        },
                        r.dump()
                    ));
                    continue;
                }
                let linked = call(
                    &http,
                    "GET",
                    &format!("/v2/{target}/blobs/{d}"),
                    &root,
                    &[],
                    &[],
                );
                if linked.status != if readable { 200 } else { 404 } {
                    v.fail(format!(
                        "{ctx}: afterwards the blob answers {} in {target}\n{}",
                        linked.status,
                        linked.dump()
                    ));
                }
                if !readable {
                    let loc = r.location();
                    if !loc.starts_with(&format!("/v2/{target}/blobs/uploads/")) {
                        v.fail(format!("{ctx}: fallback Location {loc:?}"));
                    }
                    call(&http, "DELETE", &loc, &cred, &[], &[]);
                }
            }
        }
    }
    eprintln!(
        "permission matrix: {} checks, {} wrong",
        v.checks,
        v.failures.len()
    );
    assert!(
        v.failures.is_empty(),
        "{} of {} permission checks answered wrongly:\n\n{}",
        v.failures.len(),
        v.checks,
        v.failures.join("\n")
    );
}

/// A token is the bound of what a request may do: a cross-repository mount must not read from a
/// repository the token does not grant `pull` on, even when the account itself could (a CI job
/// holding a token for one repository must not reach into the others of its account).
#[test]
fn token_scope_bounds_cross_repository_mount() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, BOB, false);
    add_rule(&s, "user:bob", "team-a/*", "pull,push");
    s.start();
    let http = s.http();
    let img = tiny_image("mount-source");
    must_push_image(&http, &Cred::basic(BOB), "team-a/source", "v1", &img);

    // Token for the target only: no mount, a plain upload session instead.
    let t = token(&http, Some(BOB), &["repository:team-a/target:pull,push"]);
    let r = call(
        &http,
        "POST",
        &format!(
            "/v2/team-a/target/blobs/uploads/?mount={}&from=team-a/source",
            img.layer_digest
        ),
        &Cred::Bearer(t),
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        202,
        "a token without pull on team-a/source mounted from it (the token's scope is not the bound)\n{}",
        r.dump()
    );
    // With the source in the token's scope, the mount happens.
    let t = token(
        &http,
        Some(BOB),
        &[
            "repository:team-a/target:pull,push",
            "repository:team-a/source:pull",
        ],
    );
    let r = call(
        &http,
        "POST",
        &format!(
            "/v2/team-a/target/blobs/uploads/?mount={}&from=team-a/source",
            img.layer_digest
        ),
        &Cred::Bearer(t),
        &[],
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.dump());
}

/// An upload session belongs to the repository it was opened in: pushing rights elsewhere do
/// not reach it through another repository's URL, and it is refused outright through its own.
#[test]
fn upload_sessions_stay_in_their_repository() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    add_user(&s, BOB, false);
    add_rule(&s, "user:bob", "team-a/*", "pull,push");
    s.start();
    let http = s.http();
    let root = Cred::basic(ROOT);
    let bob = Cred::basic(BOB);
    let r = call(
        &http,
        "POST",
        "/v2/secret/app/blobs/uploads/",
        &root,
        &[],
        &[],
    )
    .expect(202);
    let loc = r.location();
    let id = loc
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let chunk = b"secret bytes";
    let patch_headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", "0-11"),
    ];
    call(&http, "PATCH", &loc, &root, &patch_headers, chunk).expect(202);

    // Through a repository bob may push to: the session does not exist there.
    let elsewhere = format!("/v2/team-a/app/blobs/uploads/{id}");
    for (method, body) in [
        ("GET", &b""[..]),
        ("PATCH", &b"more"[..]),
        ("DELETE", &b""[..]),
    ] {
        let r = call(
            &http,
            method,
            &elsewhere,
            &bob,
            &[("Content-Type", "application/octet-stream")],
            body,
        );
        assert_eq!(
            r.status,
            404,
            "{method} of secret/app's upload through team-a/app\n{}",
            r.dump()
        );
        assert!(
            error_codes(&r).contains(&"BLOB_UPLOAD_UNKNOWN".to_string()),
            "{}",
            r.dump()
        );
    }
    let r = call(
        &http,
        "PUT",
        &format!("{elsewhere}?digest={}", sha256_digest(chunk)),
        &bob,
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        404,
        "PUT of secret/app's upload through team-a/app\n{}",
        r.dump()
    );
    get_manifest_as(&http, &bob, "team-a/app", "none").expect(404);
    // Through its own repository: denied.
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let r = call(&http, method, &loc, &bob, &[], &[]);
        assert_denied(
            &r,
            "push",
            "secret/app",
            &format!("bob {method} on secret/app's upload"),
        );
    }
    // The session is intact and still the owner's to finish.
    let r = call(
        &http,
        "PUT",
        &with_query(&loc, &format!("digest={}", sha256_digest(chunk))),
        &root,
        &[],
        &[],
    );
    assert_eq!(r.status, 201, "root finishes its upload\n{}", r.dump());
    call(
        &http,
        "GET",
        &format!("/v2/secret/app/blobs/{}", sha256_digest(chunk)),
        &root,
        &[],
        &[],
    )
    .expect(200);
    let r = call(
        &http,
        "GET",
        &format!("/v2/team-a/app/blobs/{}", sha256_digest(chunk)),
        &bob,
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        404,
        "the blob leaked into team-a/app\n{}",
        r.dump()
    );
}

// -----------------------------------------------------------------------------------------------
// 4. Bad tokens
// -----------------------------------------------------------------------------------------------

/// Signs `claims` with the server's own current key (from its data dir): a token with a valid
/// signature, so that a refusal can only come from the claims themselves.
fn forge(s: &AuthWharf, claims: auth::token::Claims) -> String {
    let pem = fs::read_to_string(s.data_dir().join("auth/token-signing-key.pem"))
        .expect("the token signing key is kept in <data>/auth/token-signing-key.pem");
    auth::token::KeyRing::from_pems(&pem, &[])
        .expect("key")
        .sign(&claims)
}

fn claims_for(sub: &str, repo: &str, actions: &[&str]) -> auth::token::Claims {
    let t = now();
    auth::token::Claims {
        iss: "wharf".into(),
        sub: sub.into(),
        aud: "wharf".into(),
        exp: t + 300,
        nbf: t,
        iat: t,
        jti: format!("e2e-{t}-{sub}-{repo}"),
        access: vec![auth::token::Access {
            kind: "repository".into(),
            name: repo.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }],
        token_use: None,
        cred: None,
    }
}

#[test]
fn bad_tokens_are_rejected() {
    let config = "[auth]\nanonymous_pull = [\"public/*\"]\ntoken_ttl_seconds = 120\n";
    let mut s = AuthWharf::new(config);
    add_user(&s, DEV, false);
    add_user(&s, ALICE, false);
    add_rule(&s, "user:dev", "team-a/*", "pull,push");
    add_rule(&s, "user:alice", "team-a/*", "pull");
    s.start();
    let http = s.http();
    let img = tiny_image("bad-tokens");
    must_push_image(&http, &Cred::basic(DEV), "team-a/app", "v1", &img);
    let pull_scope = "repository:team-a/app:pull";
    let get = |t: &str| get_manifest_as(&http, &Cred::Bearer(t.to_string()), "team-a/app", "v1");

    // Baseline: a genuine token works, and has the configured lifetime.
    let r = get_token(&http, Some(DEV), &[pull_scope], "").expect(200);
    assert_eq!(
        r.json()["expires_in"],
        120,
        "token_ttl_seconds: {}",
        r.text()
    );
    let good = r.json()["token"].as_str().unwrap().to_string();
    get(&good).expect(200);
    let (h, c, sig) = jwt_parts(&good);
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        120,
        "{c}"
    );

    let refused = |t: &str, what: &str| {
        let r = get(t);
        assert_challenge(&s, &r, Some(pull_scope), what);
        r
    };

    // Altered claims under the original signature: later expiry, more actions, another subject.
    let mut later = c.clone();
    later["exp"] = json!(c["exp"].as_u64().unwrap() + 3600);
    refused(
        &jwt_join(&h, &later, &sig),
        "token with a later exp under the old signature",
    );
    let mut wider = c.clone();
    wider["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    let forged = jwt_join(&h, &wider, &sig);
    let r = call(
        &http,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &Cred::Bearer(forged),
        &[],
        &[],
    );
    assert_challenge(&s, &r, None, "push with a token whose actions were widened");
    let mut other = c.clone();
    other["sub"] = json!("alice");
    refused(
        &jwt_join(&h, &other, &sig),
        "token with another subject under the old signature",
    );

    // A flipped signature byte (in the middle: the last character only carries padding bits).
    let mut raw = b64_decode(&sig);
    raw[10] ^= 0x01;
    let flipped = format!(
        "{}.{}",
        good.rsplit_once('.').unwrap().0,
        b64_encode(&raw, B64_URL, false)
    );
    refused(&flipped, "token with a flipped signature byte");
    // No signature, a truncated one, garbage.
    refused(
        &format!("{}.", good.rsplit_once('.').unwrap().0),
        "token without a signature",
    );
    refused(&good[..good.len() - 10], "truncated token");
    refused("abc", "garbage token");
    refused("a.b.c", "garbage three-part token");

    // alg: none, with an empty signature and with the genuine one.
    let none = json!({"alg": "none", "typ": "JWT"});
    refused(&jwt_join(&none, &wider, ""), "alg none, empty signature");
    refused(&jwt_join(&none, &c, &sig), "alg none, original signature");
    let mut none_kid = h.clone();
    none_kid["alg"] = json!("none");
    refused(
        &jwt_join(&none_kid, &wider, ""),
        "alg none with the server's kid",
    );
    // alg: HS256 keyed with the server's public key (the classic algorithm confusion).
    let key_path = s.data_dir().join("auth/token-signing-key.pem");
    if which("openssl").is_some() {
        let public = run(std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key_path));
        let mut hs = h.clone();
        hs["alg"] = json!("HS256");
        let unsigned = jwt_join(&hs, &wider, "");
        let input = unsigned.trim_end_matches('.');
        let mac = hmac_sha256(public.as_bytes(), input.as_bytes());
        refused(
            &format!("{input}.{}", b64_encode(&mac, B64_URL, false)),
            "HS256 keyed with the public key",
        );
    } else {
        eprintln!("bad_tokens_are_rejected: openssl not installed, HS256 confusion case not run");
    }

    // Correctly signed by the server's key, but expired, not yet valid, or for someone else.
    get(&forge(&s, claims_for("dev", "team-a/app", &["pull"]))).expect(200);
    let mut expired = claims_for("dev", "team-a/app", &["pull"]);
    (expired.iat, expired.nbf, expired.exp) = (now() - 600, now() - 600, now() - 120);
    let r = refused(
        &forge(&s, expired),
        "expired token (2 minutes ago, beyond any leeway)",
    );
    assert!(error_message(&r).contains("expired"), "{}", r.dump());
    let mut future = claims_for("dev", "team-a/app", &["pull"]);
    future.nbf = now() + 3600;
    future.exp = now() + 7200;
    refused(
        &forge(&s, future),
        "token not valid before an hour from now",
    );
    let mut aud = claims_for("dev", "team-a/app", &["pull"]);
    aud.aud = "other-registry".into();
    refused(&forge(&s, aud), "token for another audience");
    let mut iss = claims_for("dev", "team-a/app", &["pull"]);
    iss.iss = "someone-else".into();
    refused(&forge(&s, iss), "token from another issuer");
    refused(
        &forge(&s, claims_for("ghost", "team-a/app", &["pull"])),
        "token of an account that does not exist",
    );
    let mut refresh_as_access = claims_for("dev", "team-a/app", &["pull"]);
    refresh_as_access.token_use = Some("refresh".into());
    refused(
        &forge(&s, refresh_as_access),
        "refresh token used as an access token",
    );

    // A token issued by another Wharf (another service name and key) is worthless here.
    let mut other_srv = AuthWharf::new("[auth]\nservice = \"other-registry\"\n");
    add_user(&other_srv, DEV, false);
    add_rule(&other_srv, "user:dev", "team-a/*", "pull,push");
    other_srv.start();
    let oh = other_srv.http();
    let r = call(
        &oh,
        "GET",
        &format!("/token?service=other-registry&scope={}", pct(pull_scope)),
        &Cred::basic(DEV),
        &[],
        &[],
    )
    .expect(200);
    let foreign = r.json()["token"].as_str().unwrap().to_string();
    call(&oh, "GET", "/v2/", &Cred::Bearer(foreign.clone()), &[], &[]).expect(200);
    assert_eq!(jwt_parts(&foreign).1["aud"], "other-registry");
    refused(
        &foreign,
        "token issued by another registry for another service",
    );
    // And this server does not issue tokens for the other service.
    let r = call(
        &http,
        "GET",
        "/token?service=other-registry",
        &Cred::basic(DEV),
        &[],
        &[],
    );
    assert_eq!(r.status, 400, "token for another service\n{}", r.dump());

    // A token whose scope is narrower than the request: the account may, so a new challenge
    // with error="insufficient_scope" sends the client back for a wider token.
    let r = call(
        &http,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &Cred::Bearer(good.clone()),
        &[],
        &[],
    );
    assert_challenge(
        &s,
        &r,
        Some("repository:team-a/app:pull,push"),
        "push with a pull token",
    );
    assert!(
        r.must_header("WWW-Authenticate")
            .contains("error=\"insufficient_scope\""),
        "{}",
        r.dump()
    );
    let other_repo = token(&http, Some(DEV), &["repository:team-a/other:pull"]);
    let r = get(&other_repo);
    assert_challenge(&s, &r, Some(pull_scope), "token for another repository");
    assert!(
        r.must_header("WWW-Authenticate")
            .contains("error=\"insufficient_scope\""),
        "{}",
        r.dump()
    );
    let r = call(
        &http,
        "DELETE",
        &format!("/v2/team-a/app/manifests/{}", img.digest),
        &Cred::Bearer(good.clone()),
        &[],
        &[],
    );
    assert_eq!(
        r.status,
        403,
        "delete with a pull token by an account that may not delete\n{}",
        r.dump()
    );

    // A scope wider than allowed is cut down to what is allowed, and the rest stays denied.
    let r = get_token(
        &http,
        Some(ALICE),
        &[
            "repository:team-a/app:pull,push,delete",
            "repository:secret/x:*",
        ],
        "",
    )
    .expect(200);
    let v = r.json();
    assert_eq!(
        v["scope"], "repository:team-a/app:pull repository:secret/x:",
        "{v}"
    );
    let t = v["token"].as_str().unwrap().to_string();
    let (_, c, _) = jwt_parts(&t);
    let granted: Vec<&Value> = c["access"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actions"] != json!([]))
        .collect();
    assert_eq!(
        granted,
        vec![&json!({"type": "repository", "name": "team-a/app", "actions": ["pull"]})],
        "{c}"
    );
    get(&t).expect(200);
    let r = call(
        &http,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &Cred::Bearer(t.clone()),
        &[],
        &[],
    );
    assert_denied(
        &r,
        "push",
        "team-a/app",
        "push with a token that asked for more than allowed",
    );
    let r = call(
        &http,
        "DELETE",
        &format!("/v2/team-a/app/manifests/{}", img.digest),
        &Cred::Bearer(t),
        &[],
        &[],
    );
    assert_denied(
        &r,
        "delete",
        "team-a/app",
        "delete with a token that asked for more than allowed",
    );
    get_manifest_as(&http, &Cred::basic(DEV), "team-a/app", "v1").expect(200);

    // Other schemes and malformed credentials.
    for header in [
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic !!!",
        "Digest username=\"dev\"",
    ] {
        let r = http.must(
            "GET",
            "/v2/team-a/app/manifests/v1",
            &[("Authorization", header), ("Accept", ACCEPT_ALL)],
            &[],
        );
        assert_challenge(&s, &r, None, &format!("Authorization: {header}"));
    }
}

#[test]
fn revoked_robot_tokens_are_rejected_after_restart() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-b/*", "pull");
    let secret = add_robot(&s, "ci", &["team-b/*"], "pull,push");
    s.start();
    let http = s.http();
    let robot: Login = ("robot$ci", Box::leak(secret.into_boxed_str()));
    let img = tiny_image("revocation");
    must_push_image(&http, &Cred::basic(robot), "team-b/app", "v1", &img);
    let scope = "repository:team-b/app:pull,push";

    let robot_token = token(&http, Some(robot), &[scope]);
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "password"),
            ("username", robot.0),
            ("password", robot.1),
            ("scope", scope),
            ("access_type", "offline"),
        ]),
    )
    .expect(200);
    let robot_refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let dev_token = token(&http, Some(DEV), &["repository:team-b/app:pull"]);
    get_manifest_as(
        &http,
        &Cred::Bearer(robot_token.clone()),
        "team-b/app",
        "v1",
    )
    .expect(200);
    let kid = jwt_parts(&robot_token).0["kid"].clone();

    s.stop();
    let out = s.must_cli(&["robot", "revoke", "ci"], "");
    assert!(out.contains("revoked"), "{out}");
    let listed = s.must_cli(&["robot", "list"], "");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("robot$ci") && l.contains("revoked")),
        "{listed}"
    );
    s.start();

    // The signing key survived the restart: the user's token still works, new tokens have the
    // same key id. So what refuses the robot's token below is the revocation.
    get_manifest_as(&http, &Cred::Bearer(dev_token), "team-b/app", "v1").expect(200);
    assert_eq!(
        jwt_parts(&token(&http, Some(DEV), &[])).0["kid"],
        kid,
        "the signing key changed on restart"
    );

    let r = get_manifest_as(
        &http,
        &Cred::Bearer(robot_token.clone()),
        "team-b/app",
        "v1",
    );
    assert_challenge(
        &s,
        &r,
        Some("repository:team-b/app:pull"),
        "revoked robot's access token",
    );
    let r = call(
        &http,
        "POST",
        "/v2/team-b/app/blobs/uploads/",
        &Cred::Bearer(robot_token),
        &[],
        &[],
    );
    assert_challenge(&s, &r, None, "revoked robot's access token, push");
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &robot_refresh),
            ("scope", scope),
        ]),
    );
    assert_eq!(r.status, 401, "revoked robot's refresh token\n{}", r.dump());
    let r = get_token(&http, Some(robot), &[scope], "");
    assert_eq!(
        r.status,
        401,
        "revoked robot's secret at the token endpoint\n{}",
        r.dump()
    );
    let r = get_manifest_as(&http, &Cred::basic(robot), "team-b/app", "v1");
    assert_challenge(&s, &r, None, "revoked robot's secret as Basic credentials");
}

/// Rotating a robot's secret or changing a user's password is what one does after a leak: the
/// long-lived refresh tokens obtained with the old secret must stop working too (otherwise
/// whoever stole the secret keeps access for `refresh_ttl_seconds`, 30 days by default).
#[test]
fn refresh_tokens_do_not_survive_secret_rotation_or_password_change() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull");
    let secret = add_robot(&s, "ci", &["team-b/*"], "pull");
    s.start();
    let http = s.http();
    let refresh_of = |user: &str, password: &str| {
        let r = post_token(
            &http,
            &form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", password),
                ("access_type", "offline"),
            ]),
        )
        .expect(200);
        r.json()["refresh_token"].as_str().unwrap().to_string()
    };
    let robot_rt = refresh_of("robot$ci", &secret);
    let dev_rt = refresh_of(DEV.0, DEV.1);

    s.stop();
    let new_secret = robot_secret(&s.must_cli(&["robot", "rotate", "ci"], ""), "ci");
    assert_ne!(new_secret, secret);
    s.must_cli(&["user", "passwd", DEV.0], "a-brand-new-password\n");
    s.start();

    // The old credentials are refused, the new ones work.
    let r = get_token(&http, Some(("robot$ci", &secret)), &[], "");
    assert_eq!(
        r.status,
        401,
        "old robot secret after rotation\n{}",
        r.dump()
    );
    get_token(&http, Some(("robot$ci", &new_secret)), &[], "").expect(200);
    let r = get_token(&http, Some(DEV), &[], "");
    assert_eq!(r.status, 401, "old password after passwd\n{}", r.dump());
    get_token(&http, Some((DEV.0, "a-brand-new-password")), &[], "").expect(200);

    let mut failures = Vec::new();
    for (rt, what) in [
        (&robot_rt, "robot secret rotation"),
        (&dev_rt, "user password change"),
    ] {
        let r = post_token(
            &http,
            &form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]),
        );
        if r.status != 401 {
            failures.push(format!(
                "a refresh token obtained before the {what} still works:\n{}",
                r.dump()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// -----------------------------------------------------------------------------------------------
// 5. Rate limiting of failed logins
// -----------------------------------------------------------------------------------------------

#[test]
fn failed_logins_lock_the_account_out() {
    let config =
        "[auth]\nmax_failed_logins = 3\nfailed_login_window_seconds = 300\nlockout_seconds = 3\n";
    let mut s = AuthWharf::new(config);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull");
    s.start();
    let http = s.http();

    for i in 1..=3 {
        let r = get_token(&http, Some((DEV.0, "wrong-password")), &[], "");
        assert_eq!(r.status, 401, "wrong password #{i}\n{}", r.dump());
    }
    // Locked: even the right password is refused, on every way in, with Retry-After.
    let r = get_token(&http, Some(DEV), &[], "");
    assert_eq!(
        r.status,
        429,
        "right password after 3 failures\n{}",
        r.dump()
    );
    assert!(
        error_codes(&r).contains(&"TOOMANYREQUESTS".to_string()),
        "{}",
        r.dump()
    );
    let wait: u64 = r
        .must_header("Retry-After")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    let r = call(&http, "GET", "/v2/", &Cred::basic(DEV), &[], &[]);
    assert_eq!(
        r.status,
        429,
        "Basic on /v2/ while locked out\n{}",
        r.dump()
    );
    let r = post_token(
        &http,
        &form(&[
            ("grant_type", "password"),
            ("username", DEV.0),
            ("password", DEV.1),
        ]),
    );
    assert_eq!(
        r.status,
        429,
        "password grant while locked out\n{}",
        r.dump()
    );
    // More guessing while locked does not get through either (10 attempts in all).
    for _ in 0..7 {
        let r = get_token(&http, Some((DEV.0, "another-guess")), &[], "");
        assert_eq!(r.status, 429, "guess while locked out\n{}", r.dump());
    }

    // The lockout ends.
    std::thread::sleep(Duration::from_secs(wait + 1));
    get_token(&http, Some(DEV), &[], "").expect(200);
    call(&http, "GET", "/v2/", &Cred::basic(DEV), &[], &[]).expect(200);
}

/// A lockout must hold for the right password too, even when that password was verified a
/// moment before the guessing started: otherwise, while the real user (or a CI job) keeps using
/// its credentials, a locked account answers guesses for free (wrong: 429, right: 200), with no
/// password hashing to slow them down.
#[test]
fn lockout_holds_for_recently_verified_credentials() {
    let config =
        "[auth]\nmax_failed_logins = 3\nfailed_login_window_seconds = 300\nlockout_seconds = 300\n";
    let mut s = AuthWharf::new(config);
    add_user(&s, DEV, false);
    s.start();
    let http = s.http();
    get_token(&http, Some(DEV), &[], "").expect(200);
    for i in 1..=3 {
        let r = get_token(&http, Some((DEV.0, "wrong-password")), &[], "");
        assert_eq!(r.status, 401, "wrong password #{i}\n{}", r.dump());
    }
    let r = get_token(&http, Some((DEV.0, "yet-another-guess")), &[], "");
    assert_eq!(r.status, 429, "a guess while locked out\n{}", r.dump());
    let r = get_token(&http, Some(DEV), &[], "");
    assert_eq!(
        r.status,
        429,
        "the right password passes during the lockout because it was verified within the last \
         minute (the Basic-credential cache is consulted before the lockout)\n{}",
        r.dump()
    );
}

/// Many failures from one address across accounts make the address suspect: from then on every
/// account that failed from it waits from its first failure (instead of after
/// max_failed_logins), while an account without failures from it (the administrator behind the
/// same NAT) still logs in.
#[test]
fn failed_logins_make_the_source_address_suspect() {
    let config =
        "[auth]\nmax_failed_logins = 3\nfailed_login_window_seconds = 300\nlockout_seconds = 300\n";
    let mut s = AuthWharf::new(config);
    add_user(&s, DEV, false);
    s.start();
    let http = s.http();
    // One failure each for names that do not exist: no account reaches its limit, the address
    // does (its threshold is five times the per-account one).
    for i in 0..15 {
        let name = format!("mallory{i}");
        let r = get_token(&http, Some((&name, "guess-guess")), &[], "");
        assert_eq!(r.status, 401, "{name}\n{}", r.dump());
    }
    // A name that failed from this address is delayed now (for 2 s after its failure).
    let r = get_token(&http, Some(("mallory14", "guess-guess")), &[], "");
    assert_eq!(
        r.status,
        429,
        "second guess of a name from a suspect address\n{}",
        r.dump()
    );
    assert!(r.header("Retry-After").is_some(), "{}", r.dump());
    // An account without failures from this address is not locked out.
    get_token(&http, Some(DEV), &[], "").expect(200);
    // Its first failure from here is checked; the next attempt waits.
    let r = get_token(&http, Some((DEV.0, "wrong-password")), &[], "");
    assert_eq!(r.status, 401, "{}", r.dump());
    let r = get_token(&http, Some((DEV.0, "wrong-password")), &[], "");
    assert_eq!(r.status, 429, "{}", r.dump());
}

// -----------------------------------------------------------------------------------------------
// 6. The audit log
// -----------------------------------------------------------------------------------------------

fn audit_events(s: &AuthWharf, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json", "--limit", "1000"];
    args.extend_from_slice(filter);
    s.must_cli(&args, "")
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

#[test]
fn audit_log_records_pushes_deletes_mounts_and_failed_logins() {
    let config = "[auth]\nanonymous_pull = [\"public/*\"]\n[log]\nlevel = \"debug\"\n";
    let mut s = AuthWharf::new(config);
    add_user(&s, DEV, false);
    add_rule(&s, "user:dev", "team-a/*", "pull,push,delete");
    let secret = add_robot(&s, "ci", &["team-b/*"], "pull,push");
    let t0 = now();
    s.start();
    let http = s.http();
    let dev = Cred::basic(DEV);
    let robot = Cred::Basic("robot$ci".into(), secret.clone());

    let img = tiny_image("audited");
    must_push_image(&http, &dev, "team-a/app", "v1", &img);
    let r = call(
        &http,
        "POST",
        &format!(
            "/v2/team-a/copy/blobs/uploads/?mount={}&from=team-a/app",
            img.layer_digest
        ),
        &dev,
        &[],
        &[],
    );
    assert_eq!(r.status, 201, "mount\n{}", r.dump());
    call(
        &http,
        "DELETE",
        &format!("/v2/team-a/app/manifests/{}", img.digest),
        &dev,
        &[],
        &[],
    )
    .expect(202);
    call(
        &http,
        "DELETE",
        &format!("/v2/team-a/copy/blobs/{}", img.layer_digest),
        &dev,
        &[],
        &[],
    )
    .expect(202);
    let robot_img = tiny_image("audited-robot");
    must_push_image(&http, &robot, "team-b/app", "r1", &robot_img);
    // A token-authenticated push is attributed to the token's subject.
    let t = token(&http, Some(DEV), &["repository:team-a/tok:pull,push"]);
    let tok_img = tiny_image("audited-token");
    must_push_image(
        &http,
        &Cred::Bearer(t.clone()),
        "team-a/tok",
        "t1",
        &tok_img,
    );
    // Failed logins: a wrong password, an unknown user, a wrong robot secret.
    assert_eq!(
        get_token(&http, Some((DEV.0, "wrong-password-1")), &[], "").status,
        401
    );
    assert_eq!(
        call(
            &http,
            "GET",
            "/v2/",
            &Cred::Basic("nobody".into(), "wrong-password-2".into()),
            &[],
            &[]
        )
        .status,
        401
    );
    assert_eq!(
        get_token(&http, Some(("robot$ci", "wrong-secret-3")), &[], "").status,
        401
    );
    // Refused requests change nothing and are no pushes.
    let r = push_image_as(&http, &robot, "team-a/app", "nope", &tiny_image("refused"));
    assert_eq!(r.status, 403, "{}", r.dump());
    s.stop();
    let t1 = now();

    let all = audit_events(&s, &[]);
    let find = |action: &str, actor: &str, repo: Option<&str>, target: Option<&str>| {
        all.iter()
            .find(|e| {
                e["action"] == action
                    && e["actor"] == actor
                    && repo.is_none_or(|r| e["repo"] == r)
                    && target.is_none_or(|t| e["target"] == t)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no audit event action={action} actor={actor} repo={repo:?} target={target:?} in:\n{}",
                    all.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
                )
            })
            .clone()
    };
    for e in [
        find("push", "dev", Some("team-a/app"), Some(&img.digest)),
        find("mount", "dev", Some("team-a/copy"), Some(&img.layer_digest)),
        find("delete", "dev", Some("team-a/app"), Some(&img.digest)),
        find(
            "delete",
            "dev",
            Some("team-a/copy"),
            Some(&img.layer_digest),
        ),
        find(
            "push",
            "robot$ci",
            Some("team-b/app"),
            Some(&robot_img.digest),
        ),
        find("push", "dev", Some("team-a/tok"), Some(&tok_img.digest)),
        find("auth.failed", "dev", None, None),
        find("auth.failed", "nobody", None, None),
        find("auth.failed", "robot$ci", None, None),
    ] {
        let t = e["time"].as_u64().unwrap_or(0);
        assert!(
            (t0..=t1).contains(&t),
            "event time {t} outside [{t0}, {t1}]: {e}"
        );
        assert_eq!(e["source"], "127.0.0.1", "source address of {e}");
    }
    let push = find("push", "dev", Some("team-a/app"), Some(&img.digest));
    assert!(
        push["detail"].as_str().unwrap_or("").contains("v1"),
        "pushed tag in the event: {push}"
    );
    let identity_changes = all
        .iter()
        .filter(|e| e["action"] == "identity.change")
        .count();
    assert!(
        identity_changes >= 3,
        "CLI changes (user, rule, robot) should be audited: {identity_changes}"
    );
    assert!(
        !all.iter()
            .any(|e| e["repo"] == "team-a/app" && e["target"] == tiny_image("refused").digest),
        "a refused push was audited as a push"
    );
    // Newest first.
    let times: Vec<u64> = all.iter().map(|e| e["time"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "audit events not newest first: {times:?}"
    );

    // Filters.
    let pushes = audit_events(&s, &["--actor", "dev", "--action", "push"]);
    assert_eq!(pushes.len(), 2, "dev's pushes: {pushes:?}");
    assert!(
        pushes
            .iter()
            .all(|e| e["actor"] == "dev" && e["action"] == "push")
    );
    let repo = audit_events(&s, &["--repo", "team-a/copy"]);
    assert_eq!(
        repo.len(),
        2,
        "events of team-a/copy (mount, delete): {repo:?}"
    );
    let failed = audit_events(&s, &["--action", "auth.failed"]);
    assert_eq!(failed.len(), 3, "failed logins: {failed:?}");
    let text = s.must_cli(&["audit", "--action", "mount"], "");
    assert!(
        text.lines().count() == 1
            && text.contains(&img.layer_digest)
            && text.contains("team-a/copy"),
        "text audit output:\n{text}"
    );

    // No secret in the audit log or in the server's log lines (debug level included).
    let audit_text = s.must_cli(&["audit", "--json", "--limit", "1000"], "");
    let log = s.log();
    for (secret_value, what) in [
        (DEV.1, "dev's password"),
        ("wrong-password-1", "a wrong password"),
        ("wrong-password-2", "a wrong password"),
        ("wrong-secret-3", "a wrong robot secret"),
        (secret.as_str(), "the robot's secret"),
        (t.as_str(), "a token"),
        (t.rsplit_once('.').unwrap().1, "a token's signature"),
        (&basic(DEV.0, DEV.1)["Basic ".len()..], "Basic credentials"),
    ] {
        assert!(
            !audit_text.contains(secret_value),
            "{what} appears in the audit log"
        );
        assert!(
            !log.contains(secret_value),
            "{what} appears in the server log"
        );
    }
}

// -----------------------------------------------------------------------------------------------
// 7. htpasswd import
// -----------------------------------------------------------------------------------------------

/// An htpasswd line made by Apache's `htpasswd` (bcrypt), when the tool is installed.
fn htpasswd_line(user: &str, password: &str) -> Option<String> {
    if which("htpasswd").is_none() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "\n{bang}\n!!! htpasswd (apache2-utils) is not installed: only the precomputed bcrypt \
                 line is imported; the freshly generated ($2y$) one is not tested\n{bang}\n",
                bang = "!".repeat(100)
            )
            .as_bytes(),
        );
        return None;
    }
    let out = run(std::process::Command::new("htpasswd").args(["-nbB", "-C", "5", user, password]));
    Some(out.trim().to_string())
}

#[test]
fn htpasswd_users_are_imported() {
    let mut s = AuthWharf::new("");
    let path = s.scratch().join("htpasswd");
    // AUTH_BCRYPT: bcrypt of AUTH_PASSWORD (shared with the Distribution peer tests, which check
    // that Distribution accepts it too).
    let mut lines = vec![
        "# users migrated from Distribution".to_string(),
        format!("{AUTH_USER}:{AUTH_BCRYPT}"),
        "legacy:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_string(),
        format!("bad$name:{AUTH_BCRYPT}"),
    ];
    let generated = htpasswd_line("tooluser", "tool-password-1");
    lines.extend(generated.clone());
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    s.set_config(&format!("[auth]\nhtpasswd = \"{}\"\n", path.display()));
    // The users exist once the server has imported them; rules may name only users that
    // exist, so they are added after a first start.
    s.start();
    s.stop();
    add_rule(&s, &format!("user:{AUTH_USER}"), "team-a/*", "pull,push");
    add_rule(&s, "user:tooluser", "team-a/*", "pull");
    s.start();
    let http = s.http();

    // Only htpasswd users exist, and access control is on because of them.
    let r = call(&http, "GET", "/v2/", &Cred::Anon, &[], &[]);
    assert_challenge(&s, &r, None, "anonymous /v2/ with htpasswd users");
    let r = get_token(
        &http,
        Some((AUTH_USER, AUTH_PASSWORD)),
        &["repository:team-a/app:pull,push"],
        "",
    )
    .expect(200);
    assert_eq!(r.json()["scope"], "repository:team-a/app:pull,push");
    assert_eq!(
        jwt_parts(r.json()["token"].as_str().unwrap()).1["sub"],
        AUTH_USER
    );
    let cred = Cred::Basic(AUTH_USER.into(), AUTH_PASSWORD.into());
    call(&http, "GET", "/v2/", &cred, &[], &[]).expect(200);
    must_push_image(&http, &cred, "team-a/app", "v1", &tiny_image("htpasswd"));
    let r = get_token(&http, Some((AUTH_USER, "not-the-password")), &[], "");
    assert_eq!(
        r.status,
        401,
        "wrong password of an htpasswd user\n{}",
        r.dump()
    );
    // Lines that are not bcrypt, or not a valid name, are skipped, with a warning.
    assert_eq!(
        get_token(&http, Some(("legacy", "password")), &[], "").status,
        401
    );
    let log = s.log();
    assert!(
        log.contains("legacy") && log.contains("bcrypt"),
        "no warning about the {{SHA}} line:\n{log}"
    );
    if generated.is_some() {
        get_token(&http, Some(("tooluser", "tool-password-1")), &[], "").expect(200);
        get_manifest_as(
            &http,
            &Cred::Basic("tooluser".into(), "tool-password-1".into()),
            "team-a/app",
            "v1",
        )
        .expect(200);
    }

    s.stop();
    let users = s.must_cli(&["user", "list"], "");
    assert!(
        users.lines().any(|l| l.starts_with(AUTH_USER)),
        "imported user not listed:\n{users}"
    );
    assert!(
        !users.contains("legacy") && !users.contains("bad$name"),
        "skipped lines imported:\n{users}"
    );
    // A restart imports the same file again without trouble.
    s.start();
    get_token(&http, Some((AUTH_USER, AUTH_PASSWORD)), &[], "").expect(200);
}

/// The htpasswd file is a source of users: taking a user out of it (how access is withdrawn in
/// an htpasswd setup) must withdraw that user's access at the next start.
#[test]
fn htpasswd_user_removed_from_the_file_loses_access() {
    let mut s = AuthWharf::new("");
    let path = s.scratch().join("htpasswd");
    fs::write(&path, format!("{AUTH_USER}:{AUTH_BCRYPT}\n")).unwrap();
    s.set_config(&format!(
        "[auth]\nmode = \"on\"\nhtpasswd = \"{}\"\n",
        path.display()
    ));
    add_user(&s, DEV, false);
    s.start();
    get_token(&s.http(), Some((AUTH_USER, AUTH_PASSWORD)), &[], "").expect(200);
    s.stop();
    // Another user stays: a file with no users at all stops the start (see
    // e2e_hardening_closed.rs).
    fs::write(&path, format!("someone-else:{AUTH_BCRYPT}\n")).unwrap();
    s.start();
    let r = get_token(&s.http(), Some((AUTH_USER, AUTH_PASSWORD)), &[], "");
    assert_eq!(
        r.status,
        401,
        "{AUTH_USER} was removed from the htpasswd file but can still log in\n{}",
        r.dump()
    );
}

// -----------------------------------------------------------------------------------------------
// Modes
// -----------------------------------------------------------------------------------------------

#[test]
fn auth_modes_off_on_and_auto() {
    // auto with no identity: open (as before access control existed).
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    s.start();
    let http = s.http();
    call(&http, "GET", "/v2/", &Cred::Anon, &[], &[]).expect(200);
    must_push_image(
        &http,
        &Cred::Anon,
        "team-a/app",
        "v1",
        &tiny_image("auto-open"),
    );
    must_push_image(
        &http,
        &Cred::Anon,
        "public/app",
        "v1",
        &tiny_image("auto-open-public"),
    );

    // off: open even though a user exists.
    s.stop();
    add_user(&s, ERIN, false);
    s.set_config("[auth]\nmode = \"off\"\n");
    s.start();
    call(&http, "GET", "/v2/", &Cred::Anon, &[], &[]).expect(200);
    must_push_image(
        &http,
        &Cred::Anon,
        "team-a/app",
        "v2",
        &tiny_image("off-open"),
    );

    // auto with a user: enforced.
    s.stop();
    s.set_config(PUBLIC_CONFIG);
    s.start();
    let r = call(&http, "GET", "/v2/", &Cred::Anon, &[], &[]);
    assert_challenge(&s, &r, None, "auto mode once a user exists");
    get_manifest_as(&http, &Cred::Anon, "public/app", "v1").expect(200);
    let r = get_manifest_as(&http, &Cred::Anon, "team-a/app", "v1");
    assert_challenge(
        &s,
        &r,
        Some("repository:team-a/app:pull"),
        "auto mode, private pull",
    );
    // A user without any rule may sign in, and do nothing but pull what is public.
    call(&http, "GET", "/v2/", &Cred::basic(ERIN), &[], &[]).expect(200);
    get_manifest_as(&http, &Cred::basic(ERIN), "public/app", "v1").expect(200);
    let r = get_manifest_as(&http, &Cred::basic(ERIN), "team-a/app", "v1");
    assert_denied(&r, "pull", "team-a/app", "user without rules");

    // on with no identity: only anonymous pulls of public repositories.
    s.stop();
    s.must_cli(&["user", "delete", ERIN.0], "");
    s.set_config("[auth]\nmode = \"on\"\nanonymous_pull = [\"public/*\"]\n");
    s.start();
    get_manifest_as(&http, &Cred::Anon, "public/app", "v1").expect(200);
    let r = get_manifest_as(&http, &Cred::Anon, "team-a/app", "v1");
    assert_challenge(
        &s,
        &r,
        Some("repository:team-a/app:pull"),
        "mode on, private pull",
    );
    let r = push_image_as(
        &http,
        &Cred::Anon,
        "public/app",
        "v9",
        &tiny_image("on-refused"),
    );
    assert_challenge(
        &s,
        &r,
        Some("repository:public/app:pull,push"),
        "mode on, anonymous push",
    );
}

// Keep the helpers honest: the hand-written base64 and HMAC against known vectors.
#[test]
fn helpers_base64_and_hmac() {
    assert_eq!(
        b64_encode(b"dev:dev-password-1", B64_STD, true),
        "ZGV2OmRldi1wYXNzd29yZC0x"
    );
    assert_eq!(b64_encode(b"ab", B64_STD, true), "YWI=");
    assert_eq!(b64_encode(b"a", B64_URL, false), "YQ");
    assert_eq!(b64_decode("YWI="), b"ab");
    assert_eq!(b64_decode("YQ"), b"a");
    assert_eq!(
        b64_decode(&b64_encode(&[0xfb, 0xff, 0xfe, 0x01], B64_URL, false)),
        [0xfb, 0xff, 0xfe, 0x01]
    );
    // RFC 4231 test case 2.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// An upload session belongs to whoever started it: another user who may push to the same
/// repository and learns the session id can neither read, continue, finish nor cancel it.
#[test]
fn upload_sessions_belong_to_their_starter() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    add_user(&s, BOB, false);
    add_rule(&s, "user:bob", "team-a/*", "pull,push");
    s.start();
    let http = s.http();
    let root = Cred::basic(ROOT);
    let bob = Cred::basic(BOB);
    let loc = call(
        &http,
        "POST",
        "/v2/team-a/shared/blobs/uploads/",
        &root,
        &[],
        &[],
    )
    .expect(202)
    .location();
    let chunk = b"root's bytes";
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", "0-11"),
    ];
    call(&http, "PATCH", &loc, &root, &headers, chunk).expect(202);
    let digest = sha256_digest(chunk);
    let put = with_query(&loc, &format!("digest={digest}"));
    for (method, path, body) in [
        ("GET", loc.as_str(), &b""[..]),
        ("PATCH", loc.as_str(), &b"more"[..]),
        ("PUT", put.as_str(), &b""[..]),
        ("DELETE", loc.as_str(), &b""[..]),
    ] {
        let r = call(&http, method, path, &bob, &[], body);
        assert_eq!(r.status, 404, "bob {method} on root's upload\n{}", r.dump());
        assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
    }
    // The starter finishes it untouched.
    call(&http, "PUT", &put, &root, &[], &[]).expect(201);
    let r = call(
        &http,
        "GET",
        &format!("/v2/team-a/shared/blobs/{digest}"),
        &root,
        &[],
        &[],
    )
    .expect(200);
    assert_eq!(r.body, chunk);
}

/// The front doors apply the same rules: the CLI on a data directory and the CLI with
/// `--server` refuse a password the management API refuses, `user disable` works through
/// `--server` as on the data directory (a disabled user cannot log in), and garbage collection
/// runs started through the API are audited like identity changes.
#[test]
fn front_doors_apply_the_same_rules() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    // On the data directory: too short, and too long (the API's limit; the CLI once took any
    // length there).
    for pw in ["short".to_owned(), "x".repeat(2000)] {
        let out = s.cli(&["user", "add", "shorty"], &format!("{pw}\n"));
        assert!(
            !out.status.success(),
            "a {}-character password was accepted",
            pw.len()
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("password must be 8 to 1024"), "{err}");
    }
    s.start();
    let http = s.http();
    let server = format!("http://{}", s.host());
    let remote = |args: &[&str], stdin: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.args(args)
            .args(["--server", &server, "--as", ROOT.0])
            .env("WHARF_PASSWORD", ROOT.1)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, stdin.as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    };
    // Through the server: the same rule, the same words.
    let out = remote(&["user", "add", "shorty"], "short\n");
    assert!(!out.status.success(), "a 5-character password was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password must be 8 to 1024"), "{err}");
    let out = remote(&["user", "add", DEV.0], &format!("{}\n", DEV.1));
    assert!(out.status.success(), "{out:?}");
    get_token(&http, Some(DEV), &[], "").expect(200);

    // Disable through the server: the user can no longer log in; enable again: they can.
    let out = remote(&["user", "disable", DEV.0], "");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("user dev disabled"));
    let r = get_token(&http, Some(DEV), &[], "");
    assert_eq!(r.status, 401, "a disabled user logged in\n{}", r.dump());
    let out = remote(&["user", "disable", DEV.0, "--enable"], "");
    assert!(out.status.success(), "{out:?}");
    get_token(&http, Some(DEV), &[], "").expect(200);
    // The last administrator cannot be disabled through either door.
    let out = remote(&["user", "disable", ROOT.0], "");
    assert!(!out.status.success(), "the last administrator was disabled");

    // A garbage collection run through the API is audited.
    let auth = basic(ROOT.0, ROOT.1);
    let r = http
        .request(
            "POST",
            "/api/v1/gc",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            b"{\"dry_run\": true}",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.dump());
    s.stop();
    s.start();
    let audit = s
        .http()
        .request(
            "GET",
            "/api/v1/audit?action=gc.run",
            &[("Authorization", &auth)],
            &[],
        )
        .unwrap();
    assert_eq!(audit.status, 200, "{}", audit.dump());
    let events = audit.json();
    let events = events.as_array().expect("an array of events");
    assert!(
        events.iter().any(|e| e["actor"] == ROOT.0
            && e["detail"].as_str().unwrap_or("").contains("dry_run: true")),
        "no gc.run event by root: {events:?}"
    );
}

/// The CLI on a data directory and the CLI with `--server` are one API over the same service
/// operations: the same change through either door is audited with the same action and the
/// same words (by the local operator `cli:USER`, or by the administrator who called), and the
/// list commands print the same thing both ways. A server without a pull-through cache says so
/// on `/api/v1/cache*`.
#[test]
fn front_doors_audit_and_list_alike() {
    let mut s = AuthWharf::new(PUBLIC_CONFIG);
    add_user(&s, ROOT, true);
    // On the data directory.
    add_user(&s, ALICE, false);
    s.must_cli(&["group", "set", "local-team", "--member", ALICE.0], "");
    s.must_cli(
        &[
            "rule",
            "add",
            "group:local-team",
            "--repo",
            "team-a/*",
            "--actions",
            "pull",
        ],
        "",
    );
    s.must_cli(&["robot", "create", "local-ci", "--repo", "team-a/*"], "");
    s.start();
    let server = format!("http://{}", s.host());
    let remote = |args: &[&str], stdin: &str| -> String {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.args(args)
            .args(["--server", &server, "--as", ROOT.0])
            .env("WHARF_PASSWORD", ROOT.1)
            .env_remove("WHARF_DATA_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, stdin.as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "wharf {} --server failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The same changes through the server.
    remote(&["user", "add", BOB.0], &format!("{}\n", BOB.1));
    remote(&["group", "set", "remote-team", "--member", BOB.0], "");
    remote(
        &[
            "rule",
            "add",
            "group:remote-team",
            "--repo",
            "team-b/*",
            "--actions",
            "pull",
        ],
        "",
    );
    remote(&["robot", "create", "remote-ci", "--repo", "team-b/*"], "");

    // No cache configured: the cache's routes say so (not "no such endpoint").
    let r = s
        .http()
        .request(
            "GET",
            "/api/v1/cache",
            &[("Authorization", &basic(ROOT.0, ROOT.1))],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.dump());
    assert_eq!(r.json()["errors"][0]["code"], "NAME_UNKNOWN");
    let msg = r.error_message();
    assert!(msg.contains("no pull-through cache is configured"), "{msg}");

    // Audit events are written in the background: a restart flushes them.
    s.stop();
    s.start();
    let lists: [&[&str]; 5] = [
        &["user", "list"],
        &["robot", "list"],
        &["group", "list"],
        &["rule", "list"],
        &["audit", "--json", "--action", "identity.change"],
    ];
    let through_server: Vec<String> = lists.iter().map(|a| remote(a, "")).collect();
    let audit_text = remote(&["audit", "--action", "identity.change"], "");
    s.stop();
    for (args, remote_out) in lists.iter().zip(&through_server) {
        let local_out = s.must_cli(args, "");
        assert_eq!(
            &local_out,
            remote_out,
            "`wharf {}` prints differently on the data directory and with --server",
            args.join(" ")
        );
        assert!(
            !local_out.trim().is_empty(),
            "{}: nothing listed",
            args.join(" ")
        );
    }
    // Text, not JSON lines, without --json through the server too.
    assert_eq!(
        audit_text,
        s.must_cli(&["audit", "--action", "identity.change"], "")
    );
    assert!(!audit_text.starts_with('{'), "{audit_text}");

    // Each change is audited once, with the same action and words through either door.
    let events: Vec<serde_json::Value> = through_server[4]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |detail: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["detail"] == detail)
            .map(|e| {
                assert_eq!(e["action"], "identity.change", "{e}");
                e["actor"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let (local, root) = ("cli:wharf-e2e", ROOT.0);
    assert_eq!(by("user alice added (admin: false)"), [local]);
    assert_eq!(by("user bob added (admin: false)"), [root]);
    assert_eq!(by("group local-team set to [alice]"), [local]);
    assert_eq!(by("group remote-team set to [bob]"), [root]);
    assert_eq!(by("robot local-ci created for team-a/* (pull)"), [local]);
    assert_eq!(by("robot remote-ci created for team-b/* (pull)"), [root]);
    let rules: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["detail"].as_str().unwrap_or("").starts_with("rule "))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules.iter().any(|e| e["actor"] == "cli:wharf-e2e"
            && e["detail"]
                .as_str()
                .unwrap()
                .ends_with(": group:local-team may pull team-a/*")),
        "{rules:?}"
    );
    assert!(
        rules.iter().any(|e| e["actor"] == ROOT.0
            && e["detail"]
                .as_str()
                .unwrap()
                .ends_with(": group:remote-team may pull team-b/*")),
        "{rules:?}"
    );
}
