//! Authentication flows against a small scripted registry on loopback: the Bearer token
//! challenge (anonymous and with Basic credentials to the realm, cached per scope), plain Basic
//! auth, refused credentials, and the registry's error codes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use std::time::Duration;

use client::{
    Action, BasicCredentials, Client, ClientConfig, CredentialStore, Endpoint, ErrorCode, ImageRef,
};

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// Serves `handler` on a loopback port until the test process exits; returns `127.0.0.1:PORT`.
fn serve(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let h = handler.clone();
            std::thread::spawn(move || handle(stream, &*h));
        }
    });
    addr
}

fn handle(stream: TcpStream, handler: &dyn Fn(&Req) -> Reply) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let req = Req {
            method,
            path,
            headers,
        };
        let rep = handler(&req);
        let mut out = format!("HTTP/1.1 {} X\r\n", rep.status);
        for (k, v) in &rep.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        let n = if req.method == "HEAD" {
            rep.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "0".into())
        } else {
            rep.body.len().to_string()
        };
        if !rep
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            out.push_str(&format!("Content-Length: {n}\r\n"));
        }
        out.push_str("\r\n");
        w.write_all(out.as_bytes()).unwrap();
        if req.method != "HEAD" {
            w.write_all(&rep.body).unwrap();
        }
        w.flush().unwrap();
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn digest(b: &[u8]) -> String {
    oci::Digest::sha256(b).to_string()
}

fn manifest_reply() -> Reply {
    let d = digest(MANIFEST);
    reply(
        200,
        &[
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ("Docker-Content-Digest", &d),
        ],
        MANIFEST,
    )
}

fn query_params(path: &str) -> Vec<(String, String)> {
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                k.to_string(),
                v.replace("%3A", ":")
                    .replace("%2C", ",")
                    .replace("%2F", "/"),
            )
        })
        .collect()
}

#[tokio::test]
async fn bearer_flow_anonymous_pull_and_authenticated_push_with_token_cache() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr_cell: Arc<Mutex<String>> = Arc::default();
    let (l, a) = (log.clone(), addr_cell.clone());
    let addr = serve(move |req| {
        let realm = format!("http://{}/token", a.lock().unwrap());
        if req.path.starts_with("/token") {
            let params = query_params(&req.path);
            let scopes: Vec<&str> = params
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(
                params
                    .iter()
                    .find(|(k, _)| k == "service")
                    .map(|(_, v)| v.as_str()),
                Some("mock-registry")
            );
            let authed = req.headers.get("authorization").map(String::as_str)
                == Some(&format!("Basic {}", b64("alice:s3cret")));
            l.lock()
                .unwrap()
                .push(format!("token {} authed={authed}", scopes.join(" ")));
            let wants_push = scopes.iter().any(|s| s.contains("push"));
            if wants_push && !authed {
                return reply(401, &[], br#"{"details":"bad credentials"}"#);
            }
            let token = if wants_push {
                "push-token"
            } else {
                "pull-token"
            };
            let body = format!(r#"{{"access_token":"{token}","expires_in":300}}"#);
            return reply(
                200,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
        }
        let push = req.method == "PUT" || req.method == "POST";
        let needed = if push { "push-token" } else { "pull-token" };
        let got = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        l.lock()
            .unwrap()
            .push(format!("{} {} {got}", req.method, req.path));
        let ok = got == format!("Bearer {needed}") || got == "Bearer push-token";
        if !ok {
            let scope = if push {
                "repository:team/app:pull,push"
            } else {
                "repository:team/app:pull"
            };
            let challenge =
                format!(r#"Bearer realm="{realm}",service="mock-registry",scope="{scope}""#);
            return reply(
                401,
                &[
                    ("WWW-Authenticate", &challenge),
                    ("Content-Type", "application/json"),
                ],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v2/team/app/manifests/v1") => manifest_reply(),
            ("HEAD", "/v2/team/app/manifests/v1") => {
                let d = digest(MANIFEST);
                let n = MANIFEST.len().to_string();
                reply(
                    200,
                    &[
                        ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                        ("Docker-Content-Digest", &d),
                        ("Content-Length", &n),
                    ],
                    b"",
                )
            }
            ("PUT", "/v2/team/app/manifests/v2") => {
                let d = digest(MANIFEST);
                reply(201, &[("Docker-Content-Digest", &d)], b"")
            }
            _ => reply(
                404,
                &[("Content-Type", "application/json")],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        }
    });
    *addr_cell.lock().unwrap() = addr.clone();

    // Anonymous: pull works through an anonymous token, push is refused by the token server.
    let anon = Client::new(ClientConfig::default()).unwrap();
    let image = ImageRef::parse(&format!("{addr}/team/app:v1")).unwrap();
    let r = anon.resolve(&image).await.unwrap();
    assert_eq!(r.digest.to_string(), digest(MANIFEST));
    assert_eq!(r.size, MANIFEST.len() as u64);
    let m = anon.get_manifest(&image).await.unwrap();
    assert_eq!(&m.bytes[..], MANIFEST);
    let err = anon
        .push_manifest(
            &image.with_tag("v2").unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
            MANIFEST.to_vec().into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, client::Error::Auth { .. }), "{err}");
    {
        let log = log.lock().unwrap();
        let tokens = log.iter().filter(|l| l.starts_with("token")).count();
        // one pull token (then cached for HEAD and GET), one refused push token
        assert_eq!(tokens, 2, "{log:#?}");
        assert!(
            log[0].starts_with("HEAD /v2/team/app/manifests/v1 "),
            "{log:#?}"
        );
    }

    // With credentials: the push token is fetched with Basic credentials, once, then cached.
    let mut creds = CredentialStore::new();
    creds.insert(&addr, BasicCredentials::new("alice", "s3cret"));
    let authed = Client::new(ClientConfig::default().with_credentials(creds)).unwrap();
    log.lock().unwrap().clear();
    for _ in 0..3 {
        let p = authed
            .push_manifest(
                &image.with_tag("v2").unwrap(),
                "application/vnd.oci.image.manifest.v1+json",
                MANIFEST.to_vec().into(),
            )
            .await
            .unwrap();
        assert_eq!(p.digest.to_string(), digest(MANIFEST));
        assert!(!p.subject_processed);
    }
    let log = log.lock().unwrap().clone();
    let token_reqs: Vec<&String> = log.iter().filter(|l| l.starts_with("token")).collect();
    assert_eq!(token_reqs.len(), 1, "{log:#?}");
    assert!(
        token_reqs[0].contains("repository:team/app:pull,push")
            && token_reqs[0].ends_with("authed=true"),
        "{log:#?}"
    );
    // Error codes come through typed.
    let err = authed
        .get_manifest(&image.with_tag("missing").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ManifestUnknown), "{err}");
    assert!(err.is_not_found());
}

#[tokio::test]
async fn basic_auth_with_credentials_and_refusal_without() {
    let expected = format!("Basic {}", b64("bob:pw"));
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = seen.clone();
    let addr = serve(move |req| {
        let got = req.headers.get("authorization").cloned();
        s.lock().unwrap().push(got.clone());
        if got.as_deref() != Some(expected.as_str()) {
            return reply(
                401,
                &[("WWW-Authenticate", r#"Basic realm="Registry Realm""#)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        if req.path == "/v2/app/tags/list" {
            return reply(
                200,
                &[("Content-Type", "application/json")],
                br#"{"name":"app","tags":["a","b"]}"#,
            );
        }
        reply(404, &[], b"")
    });
    let image = ImageRef::parse(&format!("{addr}/app")).unwrap();

    let anon = Client::new(ClientConfig::default()).unwrap();
    let err = anon.list_tags(&image).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.code(), Some(&ErrorCode::Unauthorized));

    let mut creds = CredentialStore::new();
    creds.insert(&addr, BasicCredentials::new("bob", "pw"));
    let c = Client::new(ClientConfig::default().with_credentials(creds)).unwrap();
    assert_eq!(c.list_tags(&image).await.unwrap(), ["a", "b"]);
    seen.lock().unwrap().clear();
    assert_eq!(c.list_tags(&image).await.unwrap(), ["a", "b"]);
    // After the first challenge the credentials go out up front: one request, no 401.
    assert_eq!(seen.lock().unwrap().len(), 1);

    let mut wrong = CredentialStore::new();
    wrong.insert(&addr, BasicCredentials::new("bob", "nope"));
    let c = Client::new(ClientConfig::default().with_credentials(wrong)).unwrap();
    let err = c.list_tags(&image).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[tokio::test]
async fn digest_mismatch_and_size_limit_are_caught() {
    let addr = serve(|req| match req.path.as_str() {
        "/v2/app/manifests/lying" => reply(
            200,
            &[
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Docker-Content-Digest", &digest(b"something else")),
            ],
            MANIFEST,
        ),
        p if p.starts_with("/v2/app/blobs/") => reply(200, &[], b"not the blob you asked for"),
        _ => reply(404, &[], b""),
    });
    let c = Client::new(ClientConfig::default()).unwrap();
    let image = ImageRef::parse(&format!("{addr}/app:lying")).unwrap();
    let err = c.get_manifest(&image).await.unwrap_err();
    assert!(matches!(err, client::Error::DigestMismatch { .. }), "{err}");
    let want = oci::Digest::sha256(b"the blob");
    let err = c.get_blob(&image, &want, 1 << 20).await.unwrap_err();
    assert!(matches!(err, client::Error::DigestMismatch { .. }), "{err}");
    let err = c.get_blob(&image, &want, 4).await.unwrap_err();
    assert!(matches!(err, client::Error::TooLarge { .. }), "{err}");
    let mut sink = Vec::new();
    let err = c.get_blob_to(&image, &want, &mut sink).await.unwrap_err();
    assert!(matches!(err, client::Error::DigestMismatch { .. }), "{err}");
}

/// The token cache behind [`Client::request`] (what the pull-through cache uses for its
/// upstreams): a token is reused for the same endpoint and scope, fetched again once its
/// `expires_in` has passed, and fetched again (with one retry of the request) when the registry
/// refuses it before then.
#[tokio::test]
async fn request_reuses_tokens_and_refetches_after_expiry_or_401() {
    let issued: Arc<Mutex<u32>> = Arc::default();
    let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr_cell: Arc<Mutex<String>> = Arc::default();
    let (n, rv, l, a) = (
        issued.clone(),
        revoked.clone(),
        log.clone(),
        addr_cell.clone(),
    );
    let addr = serve(move |req| {
        if req.path.starts_with("/token") {
            let authed = req.headers.get("authorization").map(String::as_str)
                == Some(&format!("Basic {}", b64("carol:pw")));
            let mut n = n.lock().unwrap();
            *n += 1;
            l.lock().unwrap().push(format!(
                "token {} authed={authed}",
                query_params(&req.path)
                    .iter()
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            ));
            let body = format!(r#"{{"token":"tok{n}","expires_in":1}}"#);
            return reply(200, &[], body.as_bytes());
        }
        let got = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        l.lock().unwrap().push(format!("{} {got}", req.path));
        let valid = got
            .strip_prefix("Bearer tok")
            .is_some_and(|t| !rv.lock().unwrap().contains(&format!("tok{t}")));
        if !valid {
            let realm = format!("http://{}/token", a.lock().unwrap());
            let challenge = format!(r#"Bearer realm="{realm}",service="svc""#);
            return reply(401, &[("WWW-Authenticate", &challenge)], b"");
        }
        reply(200, &[], b"blob")
    });
    *addr_cell.lock().unwrap() = addr.clone();
    // The registry's name is not its address: credentials are found by the name.
    let mut creds = CredentialStore::new();
    creds.insert("upstream.test", BasicCredentials::new("carol", "pw"));
    let c = Client::new(ClientConfig::default().with_credentials(creds)).unwrap();
    let endpoint = Endpoint::new("upstream.test", &format!("http://{addr}/")).unwrap();
    let get = || {
        c.request(
            &endpoint,
            "lib/app",
            Action::Pull,
            reqwest::Method::GET,
            "blobs/sha256:x",
            reqwest::header::HeaderMap::new(),
        )
    };
    let tokens = || *issued.lock().unwrap();

    for _ in 0..3 {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], b"blob");
    }
    assert_eq!(
        tokens(),
        1,
        "one token for three requests: {:#?}",
        log.lock().unwrap()
    );
    assert_eq!(
        log.lock().unwrap()[1],
        "token repository:lib/app:pull authed=true"
    );

    // expires_in 1 s: the cached token is not sent after that.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(tokens(), 2, "{:#?}", log.lock().unwrap());

    // The registry refuses a token that has not expired yet: one fresh token, one retry.
    revoked.lock().unwrap().push("tok2".into());
    log.lock().unwrap().clear();
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(tokens(), 3);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "/v2/lib/app/blobs/sha256:x Bearer tok2",
            "token repository:lib/app:pull authed=true",
            "/v2/lib/app/blobs/sha256:x Bearer tok3",
        ],
    );
    // And the fresh one is cached.
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(tokens(), 3);
}
