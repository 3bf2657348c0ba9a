//! The CLI's two ways into the registry's management operations, behind one set of methods:
//! on a data directory ([`Door::Local`]: the service's operations, `service::manage`, called as
//! the local operator, audited as `cli:USER`), or through a running server's management API
//! ([`Door::Remote`]: a typed client over the same request and response types, crate `api`).
//! Commands call a [`Door`] and print what it returns, so both ways print the same.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use api::audit::{AuditEvent, AuditQuery};
use api::gc::{GcReport, GcRequest};
use api::retention::RetentionRequest;
use api::robots::{CreateRobot, RobotSecret, RobotView};
use api::rules::{CreateRule, SetGroup};
use api::tags::{HistoryQuery, Rollback, RolledBack};
use api::users::{CreateUser, SetDisabled, SetPassword, UserView};
use api::{Group, Rule};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use service::manage::Actor;
use service::retention::{Applied, RepoPlan, VersionRow};
use service::{Service, ServiceBuilder};

use crate::admin::DataDir;

/// Percent-encodes a path segment or query value (`?repo=...&tag=...`).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A query string of `q`'s fields (`a=1&b=x`), from its serde names.
fn query_string<T: Serialize>(q: &T) -> anyhow::Result<String> {
    let v = serde_json::to_value(q)?;
    let mut parts = Vec::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let text = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("{k}={}", urlencode(&text)));
    }
    Ok(parts.join("&"))
}

/// A running server's management API, as typed calls.
pub(crate) struct Remote {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Remote {
    /// The server `--server` names (`None` without one); `--as` logs in with the password from
    /// standard input (`--as-password-stdin`), `WHARF_PASSWORD`, or asked on the terminal.
    pub(crate) fn of(d: &DataDir) -> anyhow::Result<Option<Remote>> {
        let Some(server) = &d.server else {
            return Ok(None);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = server_base(server)?;
        let auth = match &d.login_as {
            Some(u) => Some((u.clone(), login_password(u, d.as_password_stdin)?)),
            None if d.as_password_stdin => {
                anyhow::bail!("--as-password-stdin reads the password of --as USER: give --as")
            }
            None => None,
        };
        Ok(Some(Remote {
            http: reqwest::Client::builder()
                .build()
                .context("setting up the HTTP client")?,
            base,
            auth,
        }))
    }

    /// One call: `body` as JSON, the answer as `T` (an empty answer reads as JSON `null`, so
    /// `()` for 204s). A refusal becomes the server's message.
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let resp = self.open(method.clone(), path, body, None).await?;
        let text = resp.text().await.unwrap_or_default();
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text)
            .with_context(|| format!("{method} {path}: unexpected answer from the server"))
    }

    /// `POST path` with `body`, asking for the streamed answer ([`api::NDJSON`]): each
    /// progress line's phase, done and total go to `progress`; the result line is read as `T`.
    pub(crate) async fn post_with_progress<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut progress: impl FnMut(&str, u64, Option<u64>),
    ) -> anyhow::Result<T> {
        let resp = self
            .open(Method::POST, path, Some(body), Some(api::NDJSON))
            .await?;
        let v = crate::output::read_ndjson(resp, &format!("POST {path}"), |p| {
            if let (Some(phase), Some(done)) = (p["phase"].as_str(), p["done"].as_u64()) {
                progress(phase, done, p["total"].as_u64());
            }
        })
        .await?;
        serde_json::from_value(v)
            .with_context(|| format!("POST {path}: unexpected result from the server"))
    }

    /// One call whose successful answer is read by the caller (a stream): `body` as JSON,
    /// `accept` as the `Accept` header. A refusal becomes the server's message.
    pub(crate) async fn open<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        accept: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot reach the server at {} (is it running there, and is --server right? \
                     a TLS server needs https://)",
                    self.base
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("{method} {}{path}", self.base)));
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            anyhow::bail!("{method} {path}: {status}: {msg}");
        }
        Ok(resp)
    }

    /// A request to `path` with the login applied, for answers that are not JSON (a backup's
    /// stream).
    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// `GET path`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    /// `method path` with a JSON body.
    pub(crate) async fn with_body<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(method, path, Some(body)).await
    }

    /// `method path` without a body.
    pub(crate) async fn bare<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> anyhow::Result<T> {
        self.send::<(), T>(method, path, None).await
    }
}

/// The base URL of `--server`: as given with a scheme; `http://` added for a loopback host
/// (`127.0.0.1:5000`, `localhost:5000`); otherwise an error asking for the scheme (guessing
/// plain HTTP for a remote server would send a password in clear text).
pub(crate) fn server_base(server: &str) -> anyhow::Result<String> {
    let s = server.trim().trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        return Ok(s.to_owned());
    }
    if s.contains("://") {
        anyhow::bail!("--server {server}: the scheme must be http:// or https://");
    }
    let host = s.split('/').next().unwrap_or_default();
    if !host.is_empty() && oci::image_ref::is_loopback(host) {
        return Ok(format!("http://{s}"));
    }
    anyhow::bail!(
        "--server {server}: give the scheme, https://{s} (or http://{s} for a server without TLS)"
    )
}

/// The password of `--as USER`: standard input's first line with `from_stdin`
/// (`--as-password-stdin`), else `WHARF_PASSWORD`, else asked on the terminal without echo.
fn login_password(user: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        return Ok(crate::admin::read_secret_line()
            .context("--as-password-stdin")?
            .to_string());
    }
    if let Ok(p) = std::env::var("WHARF_PASSWORD") {
        return Ok(p);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!(
            "--as {user} needs a password: give it on standard input with --as-password-stdin, \
             or set WHARF_PASSWORD (no terminal to ask on)"
        );
    }
    rpassword::prompt_password(format!("Password for {user}: ")).context("reading the password")
}

/// Where management operations go: the data directory or a running server.
pub(crate) enum Door {
    /// The service over a data directory (the server stopped), as the local operator.
    Local(Box<Service>, Actor),
    /// A running server's management API.
    Remote(Remote),
}

/// Opens the metadata database of a data directory.
pub(crate) fn open_meta(data: &Path) -> anyhow::Result<store::RedbMetaStore> {
    store::RedbMetaStore::open(&data.join("meta.redb")).with_context(|| {
        format!(
            "opening the metadata database in {} (is a server running on it? stop it first, or use --server)",
            data.display()
        )
    })
}

impl Door {
    /// The server of `--server`, or else the data directory with the default rules.
    pub(crate) fn open(d: &DataDir) -> anyhow::Result<Door> {
        match Remote::of(d)? {
            Some(r) => Ok(Door::Remote(r)),
            None => Door::local(d.local_dir()?, |b| b),
        }
    }

    /// The service over data directory `data`, with what `configure` adds (the tag and
    /// retention rules of a configuration file).
    pub(crate) fn local(
        data: &Path,
        configure: impl FnOnce(ServiceBuilder) -> ServiceBuilder,
    ) -> anyhow::Result<Door> {
        store::private_dir(data).with_context(|| format!("creating {}", data.display()))?;
        let meta = Arc::new(open_meta(data)?);
        let blobs = Arc::new(
            store::FsBlobStore::open(data)
                .with_context(|| format!("opening the blob store in {}", data.display()))?,
        );
        let svc = configure(Service::builder(blobs, meta))
            .build()
            .context("configuring the service")?;
        Ok(Door::Local(Box::new(svc), Actor::operator()))
    }

    /// All users.
    pub(crate) async fn users(&self) -> anyhow::Result<Vec<UserView>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().users(a).await?),
            Door::Remote(r) => r.get("/api/v1/users").await,
        }
    }

    /// Adds a user.
    pub(crate) async fn create_user(&self, n: &CreateUser) -> anyhow::Result<UserView> {
        match self {
            Door::Local(s, a) => Ok(s.manage().create_user(a, n.clone()).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/users", n).await,
        }
    }

    /// Sets a user's password.
    pub(crate) async fn set_password(&self, name: &str, p: &SetPassword) -> anyhow::Result<()> {
        match self {
            Door::Local(s, a) => Ok(s.manage().set_password(a, name, p.clone()).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/users/{}/password", urlencode(name));
                r.with_body(Method::PUT, &path, p).await
            }
        }
    }

    /// Disables or enables a user.
    pub(crate) async fn set_disabled(
        &self,
        name: &str,
        d: SetDisabled,
    ) -> anyhow::Result<UserView> {
        match self {
            Door::Local(s, a) => Ok(s.manage().set_disabled(a, name, d).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/users/{}/disabled", urlencode(name));
                r.with_body(Method::PUT, &path, &d).await
            }
        }
    }

    /// Deletes a user.
    pub(crate) async fn delete_user(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Door::Local(s, a) => Ok(s.manage().delete_user(a, name).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/users/{}", urlencode(name));
                r.bare(Method::DELETE, &path).await
            }
        }
    }

    /// All robots.
    pub(crate) async fn robots(&self) -> anyhow::Result<Vec<RobotView>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().robots(a).await?),
            Door::Remote(r) => r.get("/api/v1/robots").await,
        }
    }

    /// Creates a robot.
    pub(crate) async fn create_robot(&self, n: &CreateRobot) -> anyhow::Result<RobotSecret> {
        match self {
            Door::Local(s, a) => Ok(s.manage().create_robot(a, n.clone()).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/robots", n).await,
        }
    }

    /// Revokes a robot.
    pub(crate) async fn revoke_robot(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Door::Local(s, a) => Ok(s.manage().revoke_robot(a, name).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/robots/{}/revoke", urlencode(name));
                r.bare(Method::POST, &path).await
            }
        }
    }

    /// Replaces a robot's secret.
    pub(crate) async fn rotate_robot(&self, name: &str) -> anyhow::Result<RobotSecret> {
        match self {
            Door::Local(s, a) => Ok(s.manage().rotate_robot(a, name).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/robots/{}/rotate", urlencode(name));
                r.bare(Method::POST, &path).await
            }
        }
    }

    /// All groups.
    pub(crate) async fn groups(&self) -> anyhow::Result<Vec<Group>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().groups(a).await?),
            Door::Remote(r) => r.get("/api/v1/groups").await,
        }
    }

    /// Creates or replaces a group.
    pub(crate) async fn set_group(&self, name: &str, g: &SetGroup) -> anyhow::Result<Group> {
        match self {
            Door::Local(s, a) => Ok(s.manage().set_group(a, name, g.clone()).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/groups/{}", urlencode(name));
                r.with_body(Method::PUT, &path, g).await
            }
        }
    }

    /// Deletes a group.
    pub(crate) async fn delete_group(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Door::Local(s, a) => Ok(s.manage().delete_group(a, name).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/groups/{}", urlencode(name));
                r.bare(Method::DELETE, &path).await
            }
        }
    }

    /// All rules.
    pub(crate) async fn rules(&self) -> anyhow::Result<Vec<Rule>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().rules(a).await?),
            Door::Remote(r) => r.get("/api/v1/rules").await,
        }
    }

    /// Adds a rule.
    pub(crate) async fn create_rule(&self, n: &CreateRule) -> anyhow::Result<Rule> {
        match self {
            Door::Local(s, a) => Ok(s.manage().create_rule(a, n.clone()).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/rules", n).await,
        }
    }

    /// Deletes a rule.
    pub(crate) async fn delete_rule(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Door::Local(s, a) => Ok(s.manage().delete_rule(a, id).await?),
            Door::Remote(r) => {
                let path = format!("/api/v1/rules/{}", urlencode(id));
                r.bare(Method::DELETE, &path).await
            }
        }
    }

    /// Audit events, newest first.
    pub(crate) async fn audit(&self, q: &AuditQuery) -> anyhow::Result<Vec<AuditEvent>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().audit(a, q).await?),
            Door::Remote(r) => r.get(&format!("/api/v1/audit?{}", query_string(q)?)).await,
        }
    }

    /// Every change of a tag, newest first.
    pub(crate) async fn tag_history(
        &self,
        q: &HistoryQuery,
    ) -> anyhow::Result<Vec<store::TagEvent>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().tag_history(a, &q.repo, &q.tag, q.limit).await?),
            Door::Remote(r) => {
                r.get(&format!("/api/v1/tags/history?{}", query_string(q)?))
                    .await
            }
        }
    }

    /// Moves a tag back.
    pub(crate) async fn rollback(&self, b: &Rollback) -> anyhow::Result<RolledBack> {
        match self {
            Door::Local(s, a) => Ok(s.manage().rollback(a, b.clone(), None).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/tags/rollback", b).await,
        }
    }

    /// A repository's tags in version order, with digest, size, push and last-pull time.
    pub(crate) async fn versions(&self, repo: &str) -> anyhow::Result<Vec<VersionRow>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().versions(a, repo).await?),
            Door::Remote(r) => {
                r.get(&format!("/api/v1/versions?repo={}", urlencode(repo)))
                    .await
            }
        }
    }

    /// Runs one garbage collection.
    pub(crate) async fn gc(&self, g: &GcRequest) -> anyhow::Result<GcReport> {
        match self {
            Door::Local(s, a) => Ok(s.manage().gc(a, g.clone()).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/gc", g).await,
        }
    }

    /// What the retention policies would delete.
    pub(crate) async fn retention_plan(
        &self,
        q: &RetentionRequest,
    ) -> anyhow::Result<Vec<RepoPlan>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().retention_plan(a, q).await?),
            Door::Remote(r) => r.with_body(Method::POST, "/api/v1/retention/plan", q).await,
        }
    }

    /// Deletes what the retention policies say.
    pub(crate) async fn retention_apply(
        &self,
        q: &RetentionRequest,
    ) -> anyhow::Result<Vec<Applied>> {
        match self {
            Door::Local(s, a) => Ok(s.manage().retention_apply(a, q).await?),
            Door::Remote(r) => {
                r.with_body(Method::POST, "/api/v1/retention/apply", q)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_carry_the_set_fields_encoded() {
        let q = AuditQuery {
            actor: Some("robot$ci".into()),
            limit: Some(5),
            ..AuditQuery::default()
        };
        assert_eq!(query_string(&q).unwrap(), "actor=robot%24ci&limit=5");
        assert_eq!(query_string(&AuditQuery::default()).unwrap(), "");
    }

    #[test]
    fn server_urls_get_a_scheme_only_on_loopback() {
        for (given, want) in [
            ("127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("localhost:5000/", "http://localhost:5000"),
            ("[::1]:5000", "http://[::1]:5000"),
            (
                "https://registry.example.com/",
                "https://registry.example.com",
            ),
            ("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
        ] {
            assert_eq!(server_base(given).unwrap(), want, "{given}");
        }
        for (given, want) in [
            ("registry.example.com", "https://registry.example.com"),
            ("ftp://x", "http:// or https://"),
            ("", "give the scheme"),
        ] {
            let e = server_base(given).unwrap_err().to_string();
            assert!(e.contains(want), "{given}: {e}");
        }
    }
}
