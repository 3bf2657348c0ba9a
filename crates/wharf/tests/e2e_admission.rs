//! End to end: `wharf admission` over HTTPS (a test CA and server certificate made here with
//! rcgen), driven by curl sending what the API server sends a validating webhook: a POST of an
//! `admission.k8s.io/v1` AdmissionReview with `Content-Type: application/json`, over HTTP/2
//! when offered, trusting only the webhook configuration's CA bundle. The reviews are the
//! policy crate's fixtures: real `kubectl` objects wrapped as the API server wraps them.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::Value;
use tempfile::TempDir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/fixtures")
}

/// A CA (written to `ca.pem`) and a server certificate for `localhost` signed by it.
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "wharf admission test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "wharf-admission.wharf.svc");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (ca_path, cert_path, key_path) =
        (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    fs::write(&ca_path, ca_cert.pem()).unwrap();
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

/// Bodies above this are sent with `Expect: 100-continue`.
const MAX_SMALL_BODY: usize = 1 << 20;

struct Webhook {
    child: Child,
    port: u16,
    logs: mpsc::Receiver<String>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    /// Starts `wharf admission` on an ephemeral loopback port; the port is read from its log.
    fn start(policy: &Path, cert: &Path, key: &Path) -> Webhook {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("admission")
            .arg("--policy")
            .arg(policy)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("WHARF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Webhook {
            child,
            port: 0,
            logs,
        };
        let line = w.wait_log("admission webhook listening");
        let addr = line
            .split("address=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        assert!(line.contains("https=true"), "{line}");
        w.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        w
    }

    /// The next log line containing `needle` (within 20 s).
    fn wait_log(&mut self, needle: &str) -> String {
        loop {
            match self.logs.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("waiting for {needle:?} in the log: {e}"),
            }
        }
    }

    /// curl as the API server calls a webhook; returns (status, body).
    fn post(&self, ca: &Path, content_type: &str, body: &[u8]) -> (u16, String) {
        self.post_with(ca, content_type, body, "--http2")
    }

    /// [`Webhook::post`] with curl's HTTP version flag (`--http2`, `--http1.1`).
    fn post_with(&self, ca: &Path, content_type: &str, body: &[u8], http: &str) -> (u16, String) {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("body");
        fs::write(&file, body).unwrap();
        let mut curl = Command::new("curl");
        if body.len() > MAX_SMALL_BODY {
            // Ask before sending a large body, as clients do: the webhook refuses it by its
            // Content-Length (413) and curl stops, instead of racing the refusal with its
            // upload and meeting a closed connection (a broken pipe).
            curl.args(["-H", "Expect: 100-continue", "--expect100-timeout", "10"]);
        }
        let out = curl
            .args(["-sS", http, "--max-time", "20", "--cacert"])
            .arg(ca)
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-H", "Accept: application/json, */*"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(format!(
                "https://localhost:{}/admission/v1/validate?timeout=10s",
                self.port
            ))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, trailer) = text.rsplit_once('\n').unwrap();
        let mut t = trailer.split(' ');
        let code = t.next().unwrap().parse().unwrap();
        if http == "--http2" {
            assert_eq!(t.next(), Some("2"), "HTTP/2 over ALPN, as the API server");
        }
        (code, body.to_owned())
    }

    fn review(&self, ca: &Path, fixture: &str) -> Value {
        let body = fs::read(fixtures().join(fixture)).unwrap();
        let (code, text) = self.post(ca, "application/json", &body);
        assert_eq!(code, 200, "{fixture}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["response"]["uid"], sent["request"]["uid"]);
        v["response"].clone()
    }
}

#[test]
fn webhook_over_https_answers_reviews_as_the_api_server_expects() {
    let tmp = TempDir::new().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let mut w = Webhook::start(&fixtures().join("admission-policy.toml"), &cert, &key);

    // A privileged pod with host namespaces: denied, every rule and container named.
    let r = w.review(&ca, "review-privileged-pod.json");
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[pss.privileged] container \"rooted\": privileged (container \"rooted\" must not set securityContext.privileged=true) (Pod Security baseline:latest)"),
        "{msg}"
    );
    assert!(msg.contains("[pss.hostNamespaces] Pod/rooted"), "{msg}");
    let log = w.wait_log("admission decision");
    for want in [
        "uid=0b1e6a3c-7d2f-4a8e-9c41-5e2f8a9d1c01",
        "kind=Pod",
        "namespace=\"apps\"",
        "name=rooted",
        "allowed=false",
        "pss.privileged",
    ] {
        assert!(log.contains(want), "{want} not in {log}");
    }
    // One access line per review, as the registry writes them.
    let access = w.wait_log("wharf::access");
    for want in [
        "request_id=",
        "method=POST",
        "path=/admission/v1/validate?timeout=10s",
        "status=200",
        "latency_ms=",
    ] {
        assert!(access.contains(want), "{want} not in {access}");
    }

    // A compliant Deployment: allowed, no warnings.
    let r = w.review(&ca, "review-hardened-deployment.json");
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
    assert!(w.wait_log("admission decision").contains("allowed=true"));

    // `nginx:latest`: allowed with a warning the API server keeps whole.
    let r = w.review(&ca, "review-deployment-latest.json");
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{r}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with("[images.latest] container \"nginx\""),
        "{warning}"
    );
    assert!(warning.len() < 120);

    // The default Deployment in a restricted namespace: denied at restricted.
    let r = w.review(&ca, "review-deployment-restricted-ns.json");
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("(Pod Security restricted:latest)")
    );

    // Malformed bodies: 400; not JSON by its Content-Type: 415; too large: 413.
    let (code, text) = w.post(&ca, "application/json", b"{\"apiVersion\": ");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("invalid JSON"), "{text}");
    let (code, text) = w.post(
        &ca,
        "application/json",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("request.uid"), "{text}");
    let body = fs::read(fixtures().join("review-job.json")).unwrap();
    let (code, _) = w.post(&ca, "text/plain", &body);
    assert_eq!(code, 415);
    let mut big = b"{\"a\":\"".to_vec();
    big.resize(4 << 20, b'x');
    big.extend_from_slice(b"\"}");
    // (Over HTTP/1.1: on HTTP/2 the early answer resets the stream still being sent, and
    // curl reports the reset rather than the status.)
    // The webhook refuses by Content-Length before reading (no `100 Continue`), so curl never
    // sends the body and always sees the status.
    let (code, text) = w.post_with(&ca, "application/json", &big, "--http1.1");
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("larger than the 3 MiB"), "{text}");

    // Health.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("https://localhost:{}/healthz", w.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn bad_policy_stops_the_start() {
    let tmp = TempDir::new().unwrap();
    let policy = tmp.path().join("policy.toml");
    fs::write(&policy, "[pss]\nlevel = \"strict\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("admission")
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strict"), "{err}");
}

#[test]
fn admission_certs_makes_a_pki_the_webhook_serves_and_curl_trusts() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new().unwrap();
    let out_dir = tmp.path().join("certs");
    let certs = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["admission", "certs", "--out"])
            .arg(&out_dir)
            .args(["--dns", "localhost", "--dns", "wharf-admission.wharf.svc"])
            .args(["--ip", "127.0.0.1", "--days", "30"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = certs(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = out_dir.join("ca.crt");
    // stdout is the caBundle: the CA certificate, base64.
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    assert_eq!(bundle, fs::read(&ca).unwrap());
    for (f, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
    ] {
        let m = fs::metadata(out_dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    // openssl agrees: the serving certificate chains to the CA, for the names asked.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(out_dir.join("tls.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(out_dir.join("tls.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:wharf-admission.wharf.svc") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    // Existing files are kept unless --force.
    assert!(!certs(&[]).status.success());
    assert!(certs(&["--force"]).status.success());

    // The webhook serves the pair; curl (as the API server) trusts it with the CA.
    let w = Webhook::start(
        &fixtures().join("admission-policy.toml"),
        &out_dir.join("tls.crt"),
        &out_dir.join("tls.key"),
    );
    let r = w.review(&out_dir.join("ca.crt"), "review-privileged-pod.json");
    assert_eq!(r["allowed"], false, "{r}");
}
