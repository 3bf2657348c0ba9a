//! Access control at the HTTP boundary: who is calling (Basic credentials or a registry token),
//! what they may do (the policy), the token endpoint, and the 401/403 answers of the Docker
//! token protocol.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use auth::limiter::FailureLimiter;
use auth::token::{Access as Grant, Claims, KeyRing};
use auth::{Action, Actions, Policy, Principal, PrincipalKind, Robot, Scope, User};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Code};
use crate::identities::{AuditEvent, Identities};

/// When access control applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Never: everyone may do everything (only sensible on loopback).
    Off,
    /// As soon as one user or robot exists, and from then on: once on, it stays on even when
    /// the last identity goes (the data directory is sealed, see
    /// [`Identities::seal`](crate::identities::Identities::seal)).
    #[default]
    Auto,
    /// Always: with no identities, only anonymous pulls of public patterns work.
    On,
}

/// Settings of access control.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// When it applies.
    pub mode: AuthMode,
    /// Token `aud` and the `service` of challenges.
    pub service: String,
    /// Token `iss`.
    pub issuer: String,
    /// Token endpoint URL for challenges; derived from the request's Host when unset.
    pub realm: Option<String>,
    /// Scheme used when deriving the realm (`https` when serving TLS).
    pub scheme: &'static str,
    /// Access token lifetime.
    pub token_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// Repository patterns anyone may pull.
    pub anonymous_pull: Vec<String>,
    /// Failed logins tolerated per account or address within `failure_window_secs`.
    pub max_failures: u32,
    /// Window for counting failures.
    pub failure_window_secs: u64,
    /// Lockout after too many failures.
    pub lockout_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Auto,
            service: "wharf".into(),
            issuer: "wharf".into(),
            realm: None,
            scheme: "http",
            token_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            anonymous_pull: Vec::new(),
            max_failures: 10,
            failure_window_secs: 300,
            lockout_secs: 300,
        }
    }
}

impl AuthSettings {
    /// A warning for a server listening on `listen` without a configured realm beyond loopback:
    /// challenges then send clients to whatever host the request's Host header named.
    pub fn realm_warning(&self, listen: std::net::SocketAddr) -> Option<String> {
        if self.realm.is_some() || self.mode == AuthMode::Off || listen.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "no [auth] realm configured: the token endpoint in 401 challenges is derived from each \
             request's Host header ({}://HOST/token), which clients choose; set realm = \
             \"{}://<public host>/token\" in the [auth] section of the configuration file",
            self.scheme, self.scheme
        ))
    }
}

/// The source address of a request, set by the connection loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Where a request comes from, as the connection loop recorded it: the source address, and the
/// common name of a client certificate the TLS handshake verified.
pub fn request_origin(ext: &axum::http::Extensions) -> (Option<IpAddr>, Option<&str>) {
    let source = ext.get::<PeerAddr>().map(|p| p.0.ip());
    let cert = ext
        .get::<crate::tls::ClientIdentity>()
        .and_then(|c| c.common_name());
    (source, cert)
}

/// What a request needs.
#[derive(Clone, Debug, Default)]
pub struct Need {
    /// Repository and actions, for repository routes.
    pub repo: Option<(String, Actions)>,
    /// Actions named in a challenge's scope (clients ask for `pull,push` to push).
    pub scope_actions: Actions,
    /// The catalog (any signed-in caller; filtered per repository).
    pub catalog: bool,
    /// Identity management (administrators only).
    pub admin: bool,
}

/// Who is calling, and what was decided.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The principal.
    pub principal: Principal,
    /// Access control is off: everything is allowed.
    pub open: bool,
    /// Token grants, when the caller presented a token.
    grants: Option<Arc<Claims>>,
    /// Source address.
    pub source: Option<IpAddr>,
}

impl Caller {
    /// An unrestricted caller (access control off).
    pub fn open() -> Self {
        Caller {
            principal: Principal::anonymous(),
            open: true,
            grants: None,
            source: None,
        }
    }
}

/// Identities as loaded in memory, rebuilt whenever they change.
struct Snapshot {
    users: HashMap<String, User>,
    robots: HashMap<String, Robot>,
    policy: Policy,
    /// Access control applies in `auto` mode: an identity exists, or it has been on before.
    closed: bool,
}

const CACHE_CAP: usize = 16_384;
const BASIC_CACHE_SECS: u64 = 60;

/// The access-control service.
pub struct AccessControl {
    settings: AuthSettings,
    keys: KeyRing,
    ids: Identities,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Verified tokens by SHA-256 of the token: signature checks are paid once per token.
    token_cache: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
    /// Verified Basic credentials by SHA-256 of `user:password`, for a minute: argon2 is
    /// deliberately slow and simple clients send Basic on every request.
    basic_cache: Mutex<HashMap<[u8; 32], (Principal, u64)>>,
    /// Failed logins per account (users only: robot secrets are unguessable, and locking a
    /// robot out would let anyone stop a pipeline) and, with a higher threshold since clients
    /// behind one NAT share it, per source address.
    limiter: Mutex<Limiters>,
    /// Bounds audit writes running in the background.
    audit_inflight: Arc<tokio::sync::Semaphore>,
}

struct Limiters {
    accounts: FailureLimiter,
    addresses: FailureLimiter,
}

/// Source addresses tolerate this many times the per-account failures.
const ADDRESS_FAILURE_FACTOR: u32 = 5;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>, k: K, v: V) {
    if m.len() >= CACHE_CAP {
        m.clear();
    }
    m.insert(k, v);
}

impl AccessControl {
    /// Builds the service and loads identities.
    pub async fn new(
        settings: AuthSettings,
        keys: KeyRing,
        ids: Identities,
    ) -> Result<Self, store::StoreError> {
        let limiter = Limiters {
            accounts: FailureLimiter::new(
                settings.max_failures,
                settings.failure_window_secs,
                settings.lockout_secs,
                100_000,
            ),
            addresses: FailureLimiter::new(
                settings.max_failures.saturating_mul(ADDRESS_FAILURE_FACTOR),
                settings.failure_window_secs,
                settings.lockout_secs,
                100_000,
            ),
        };
        let ac = AccessControl {
            snapshot: RwLock::new(Arc::new(Snapshot {
                users: HashMap::new(),
                robots: HashMap::new(),
                policy: Policy::default(),
                closed: false,
            })),
            settings,
            keys,
            ids,
            token_cache: Mutex::new(HashMap::new()),
            basic_cache: Mutex::new(HashMap::new()),
            limiter: Mutex::new(limiter),
            audit_inflight: Arc::new(tokio::sync::Semaphore::new(MAX_AUDIT_INFLIGHT)),
        };
        let on = match ac.settings.mode {
            AuthMode::Off => false,
            AuthMode::On => true,
            AuthMode::Auto => ac.ids.any_identity().await?,
        };
        if on {
            // Data directories from before the seal existed, and `mode = "on"`, seal here.
            ac.ids.seal().await?;
        }
        ac.reload().await?;
        Ok(ac)
    }

    /// The identity store.
    pub fn identities(&self) -> &Identities {
        &self.ids
    }

    /// Reloads identities after a change and forgets cached credential checks.
    pub async fn reload(&self) -> Result<(), store::StoreError> {
        let users = self.ids.users().await?;
        let robots = self.ids.robots().await?;
        let groups = self.ids.groups().await?;
        let rules = self.ids.rules().await?;
        let policy = Policy::new(&rules, &groups, &robots, &self.settings.anonymous_pull);
        let snap = Snapshot {
            closed: !users.is_empty() || !robots.is_empty() || self.ids.sealed().await?,
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            robots: robots.into_iter().map(|r| (r.name.clone(), r)).collect(),
            policy,
        };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        self.basic_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    fn snap(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether requests must be authorized at all.
    pub fn enforced(&self) -> bool {
        match self.settings.mode {
            AuthMode::Off => false,
            AuthMode::On => true,
            AuthMode::Auto => self.snap().closed,
        }
    }

    fn principal_active(&self, snap: &Snapshot, name: &str, now: u64) -> Option<Principal> {
        if let Some(r) = name.strip_prefix(auth::identity::ROBOT_PREFIX) {
            let robot = snap.robots.get(r)?;
            return robot.active(now).then(|| Principal {
                kind: PrincipalKind::Robot,
                name: name.to_owned(),
                admin: false,
            });
        }
        let u = snap.users.get(name)?;
        (!u.disabled).then(|| Principal {
            kind: PrincipalKind::User,
            name: name.to_owned(),
            admin: u.admin,
        })
    }

    fn rate_check(&self, user: &str, source: Option<IpAddr>) -> Result<(), ApiError> {
        let now = auth::now();
        let l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        let by_account = l.accounts.check(user, now);
        let by_address = source.map_or(Ok(()), |ip| l.addresses.check(&ip.to_string(), now));
        for r in [by_account, by_address] {
            if let Err(wait) = r {
                return Err(ApiError::new(
                    Code::TooManyRequests,
                    format!("too many failed logins; retry in {wait} s"),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(wait)));
            }
        }
        Ok(())
    }

    /// Checks a user name and password (or robot secret). Rate-limited and audited.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Principal, ApiError> {
        let key = sha(format!("{user}:{password}").as_bytes());
        let now = auth::now();
        // The lockout applies before anything else, cached successes included: otherwise a
        // locked account would still answer guesses of its (cached) password.
        self.rate_check(user, source)?;
        if let Some((p, until)) = self
            .basic_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *until > now
        {
            return Ok(p.clone());
        }
        let snap = self.snap();
        let ok = if let Some(r) = user.strip_prefix(auth::identity::ROBOT_PREFIX) {
            snap.robots.get(r).is_some_and(|robot| {
                robot.active(now) && auth::secret::verify_secret(password, &robot.secret_hash)
            })
        } else {
            match snap.users.get(user) {
                Some(u) if !u.disabled => {
                    let (pw, hash) = (password.to_owned(), u.password_hash.clone());
                    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
                    tokio::task::spawn_blocking(move || auth::secret::verify_password(&pw, &hash))
                        .await
                        .unwrap_or(false)
                }
                _ => {
                    // Same cost whether or not the user exists, so timing does not reveal names.
                    let pw = password.to_owned();
                    let _ = tokio::task::spawn_blocking(move || {
                        auth::secret::verify_password(&pw, DUMMY_HASH)
                    })
                    .await;
                    false
                }
            }
        };
        let principal = ok
            .then(|| self.principal_active(&snap, user, now))
            .flatten();
        {
            let mut l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
            let robot = user.starts_with(auth::identity::ROBOT_PREFIX);
            match &principal {
                Some(_) => l.accounts.succeed(user),
                None => {
                    if !robot {
                        l.accounts.fail(user, now);
                    }
                    if let Some(ip) = source {
                        l.addresses.fail(&ip.to_string(), now);
                    }
                }
            }
        }
        match principal {
            Some(p) => {
                bounded_insert(
                    &mut self.basic_cache.lock().unwrap_or_else(|e| e.into_inner()),
                    key,
                    (p.clone(), now + BASIC_CACHE_SECS),
                );
                Ok(p)
            }
            None => {
                let _ = self
                    .ids
                    .audit(&AuditEvent {
                        time: now,
                        action: "auth.failed".into(),
                        actor: user.to_owned(),
                        repo: None,
                        target: None,
                        source: source.map(|s| s.to_string()),
                        detail: "bad credentials".into(),
                    })
                    .await;
                Err(ApiError::new(
                    Code::Unauthorized,
                    "invalid username or password",
                ))
            }
        }
    }

    fn verify_token(&self, token: &str) -> Result<Arc<Claims>, ApiError> {
        let key = sha(token.as_bytes());
        let now = auth::now();
        let cached = self
            .token_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let claims = match cached {
            Some(c) if c.exp + auth::token::LEEWAY_SECS > now => c,
            _ => {
                let c = Arc::new(
                    self.keys
                        .verify(token, &self.settings.issuer, &self.settings.service, now)
                        .map_err(|e| {
                            ApiError::new(Code::Unauthorized, format!("invalid token: {e}"))
                        })?,
                );
                bounded_insert(
                    &mut self.token_cache.lock().unwrap_or_else(|e| e.into_inner()),
                    key,
                    c.clone(),
                );
                c
            }
        };
        if claims.token_use.is_some() {
            return Err(ApiError::new(
                Code::Unauthorized,
                "a refresh token is not an access token",
            ));
        }
        Ok(claims)
    }

    /// Identifies the caller from the request headers (anonymous when there are none).
    async fn identify(
        &self,
        headers: &HeaderMap,
        source: Option<IpAddr>,
        cert_user: Option<&str>,
    ) -> Result<(Principal, Option<Arc<Claims>>), ApiError> {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            // A client certificate verified by the TLS handshake names a user by its CN.
            let by_cert =
                cert_user.and_then(|cn| self.principal_active(&self.snap(), cn, auth::now()));
            return Ok((by_cert.unwrap_or_else(Principal::anonymous), None));
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = decode_basic(rest.trim())
                .ok_or_else(|| ApiError::new(Code::Unauthorized, "malformed Basic credentials"))?;
            return Ok((self.login(&user, &pass, source).await?, None));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let claims = self.verify_token(rest.trim())?;
            if claims.sub.is_empty() {
                return Ok((Principal::anonymous(), Some(claims)));
            }
            let p = self
                .principal_active(&self.snap(), &claims.sub, auth::now())
                .ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthorized,
                        "the token's account is disabled, revoked or gone",
                    )
                })?;
            return Ok((p, Some(claims)));
        }
        Err(ApiError::new(
            Code::Unauthorized,
            "unsupported authorization scheme",
        ))
    }

    /// What `caller` may do on `repo`, from its token grants or, without a token, the policy.
    pub fn allowed(&self, caller: &Caller, repo: &str) -> Actions {
        if caller.open {
            return Actions::of(Action::Admin);
        }
        match &caller.grants {
            Some(c) => c
                .access
                .iter()
                .filter(|a| a.kind == "repository" && a.name == repo)
                .fold(Actions::NONE, |acc, a| acc.union(a.actions())),
            None => self.snap().policy.allowed(&caller.principal, repo),
        }
    }

    /// What the policy allows the principal itself (ignoring the token's scope).
    pub fn policy_allows(&self, p: &Principal, repo: &str) -> Actions {
        self.snap().policy.allowed(p, repo)
    }

    /// Decides a request: the caller, or the 401/403 to answer.
    /// `cert_user` is the common name of a client certificate the TLS handshake verified.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        source: Option<IpAddr>,
        cert_user: Option<&str>,
        need: &Need,
    ) -> Result<Caller, ApiError> {
        if !self.enforced() {
            return Ok(Caller {
                source,
                ..Caller::open()
            });
        }
        let (principal, grants) = match self.identify(headers, source, cert_user).await {
            Ok(x) => x,
            Err(e) if e.code == Code::Unauthorized => {
                return Err(self.challenge(headers, need, None, e.message));
            }
            Err(e) => return Err(e),
        };
        let caller = Caller {
            principal,
            open: false,
            grants,
            source,
        };
        let anonymous = caller.principal.kind == PrincipalKind::Anonymous;
        // A token counts only for what it grants: the catalog and the management API need
        // their own `registry:` scopes, so a token for one repository opens neither.
        let token_grants = |name: &str| {
            caller.grants.as_ref().is_none_or(|c| {
                c.access
                    .iter()
                    .any(|a| a.kind == "registry" && a.name == name && !a.actions().is_empty())
            })
        };
        if need.admin {
            if caller.principal.admin && token_grants("admin") {
                return Ok(caller);
            }
            if caller.principal.admin {
                return Err(ApiError::new(
                    Code::Denied,
                    "this token does not grant registry:admin; use Basic credentials or a token issued for scope registry:admin:*",
                ));
            }
            if anonymous {
                return Err(self.challenge(headers, need, None, "authentication required".into()));
            }
            return Err(ApiError::new(
                Code::Denied,
                format!("{} is not an administrator", caller.principal.display()),
            ));
        }
        let Some((repo, wanted)) = &need.repo else {
            if need.catalog && !token_grants("catalog") {
                return Err(self.challenge(
                    headers,
                    need,
                    Some("insufficient_scope"),
                    "token does not grant registry:catalog".into(),
                ));
            }
            // /v2/ and the catalog: any identified caller (an anonymous token counts, so that
            // clients pulling public images can proceed).
            if anonymous && caller.grants.is_none() {
                return Err(self.challenge(headers, need, None, "authentication required".into()));
            }
            return Ok(caller);
        };
        let have = self.allowed(&caller, repo);
        if have.covers(*wanted) {
            return Ok(caller);
        }
        let missing = wanted.missing_from(have);
        if anonymous {
            return Err(self.challenge(
                headers,
                need,
                None,
                format!("authentication required to {missing} {repo}"),
            ));
        }
        if caller.grants.is_some() && self.policy_allows(&caller.principal, repo).covers(*wanted) {
            // Allowed, but this token was issued for a narrower scope: ask for a new one.
            return Err(self.challenge(
                headers,
                need,
                Some("insufficient_scope"),
                format!("token does not grant {missing} on {repo}"),
            ));
        }
        Err(ApiError::new(
            Code::Denied,
            format!("{} may not {missing} {repo}", caller.principal.display()),
        ))
    }

    /// A 401 with the `WWW-Authenticate: Bearer` challenge clients follow to the token endpoint.
    fn challenge(
        &self,
        headers: &HeaderMap,
        need: &Need,
        error: Option<&str>,
        message: String,
    ) -> ApiError {
        let realm = self.realm(headers);
        let mut v = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            self.settings.service
        );
        if let Some((repo, actions)) = &need.repo {
            let actions = actions.union(need.scope_actions);
            v.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
        } else if need.catalog {
            v.push_str(",scope=\"registry:catalog:*\"");
        }
        if let Some(e) = error {
            v.push_str(&format!(",error=\"{e}\""));
        }
        ApiError::new(Code::Unauthorized, message).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        )
    }

    /// The token endpoint named in challenges: the configured `realm`, else one derived from the
    /// request's Host header (which any client chooses).
    fn realm(&self, headers: &HeaderMap) -> String {
        if let Some(r) = &self.settings.realm {
            return r.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("{}://{host}/token", self.settings.scheme)
    }

    /// Issues an access token for `principal` covering what it may do of `requested`.
    pub fn issue(&self, principal: &Principal, requested: &[Scope]) -> (String, Vec<Scope>) {
        let granted: Vec<Scope> = requested
            .iter()
            .map(|s| {
                let actions = match s.kind.as_str() {
                    "repository" if oci::validate_repository(&s.name).is_ok() => {
                        s.actions.intersect(self.policy_allows(principal, &s.name))
                    }
                    "registry"
                        if s.name == "catalog" && principal.kind != PrincipalKind::Anonymous =>
                    {
                        Actions::of(Action::Pull)
                    }
                    "registry" if s.name == "admin" && principal.admin => {
                        Actions::of(Action::Admin)
                    }
                    _ => Actions::NONE,
                };
                Scope {
                    actions,
                    ..s.clone()
                }
            })
            .collect();
        let now = auth::now();
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: if principal.kind == PrincipalKind::Anonymous {
                String::new()
            } else {
                principal.name.clone()
            },
            aud: self.settings.service.clone(),
            exp: now + self.settings.token_ttl_secs,
            nbf: now,
            iat: now,
            jti: hex_id(),
            access: granted.iter().map(Grant::from_scope).collect(),
            token_use: None,
            cred: None,
        };
        (self.keys.sign(&claims), granted)
    }

    /// Issues a refresh token (OAuth2 `access_type=offline`).
    pub fn issue_refresh(&self, principal: &Principal) -> String {
        let now = auth::now();
        self.keys.sign(&Claims {
            iss: self.settings.issuer.clone(),
            sub: principal.name.clone(),
            aud: self.settings.service.clone(),
            exp: now + self.settings.refresh_ttl_secs,
            nbf: now,
            iat: now,
            jti: hex_id(),
            access: Vec::new(),
            token_use: Some("refresh".into()),
            cred: self.credential_fingerprint(&principal.name),
        })
    }

    /// A short fingerprint of the account's stored password hash or robot secret hash.
    fn credential_fingerprint(&self, name: &str) -> Option<String> {
        let snap = self.snap();
        let stored = match name.strip_prefix(auth::identity::ROBOT_PREFIX) {
            Some(r) => snap.robots.get(r)?.secret_hash.clone(),
            None => snap.users.get(name)?.password_hash.clone(),
        };
        Some(hex::encode(&sha(stored.as_bytes())[..8]))
    }

    /// Redeems a refresh token for its (still active) principal.
    pub fn redeem_refresh(&self, token: &str) -> Result<Principal, ApiError> {
        let c = self
            .keys
            .verify(
                token,
                &self.settings.issuer,
                &self.settings.service,
                auth::now(),
            )
            .map_err(|e| {
                ApiError::new(Code::Unauthorized, format!("invalid refresh token: {e}"))
            })?;
        if c.token_use.as_deref() != Some("refresh") {
            return Err(ApiError::new(Code::Unauthorized, "not a refresh token"));
        }
        let current = self.credential_fingerprint(&c.sub);
        if c.cred.is_none() || c.cred != current {
            return Err(ApiError::new(
                Code::Unauthorized,
                "refresh token was issued before the password or secret changed",
            ));
        }
        self.principal_active(&self.snap(), &c.sub, auth::now())
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unauthorized,
                    "the token's account is disabled, revoked or gone",
                )
            })
    }

    /// The configured service name.
    pub fn service(&self) -> &str {
        &self.settings.service
    }

    /// Token lifetime.
    pub fn token_ttl(&self) -> u64 {
        self.settings.token_ttl_secs
    }

    /// Records an audit event for `caller`.
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        repo: Option<&str>,
        target: Option<String>,
        detail: String,
    ) {
        let e = AuditEvent {
            time: auth::now(),
            action: action.to_owned(),
            actor: caller.principal.display().to_owned(),
            repo: repo.map(str::to_owned),
            target,
            source: caller.source.map(|s| s.to_string()),
            detail,
        };
        // The event joins the next group commit without holding up the response; when too
        // many are already in flight, the request waits for its own (backpressure, bounded).
        let ids = self.ids.clone();
        let write = async move {
            if let Err(err) = ids.audit(&e).await {
                tracing::error!(error = %err, "writing audit event failed");
            }
        };
        match self.audit_inflight.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    write.await;
                    drop(permit);
                });
            }
            Err(_) => write.await,
        }
    }
}

impl AccessControl {
    /// Waits (up to `limit`) for audit events still being written, so a shutdown loses none.
    pub async fn flush_audit(&self, limit: std::time::Duration) {
        let all = u32::try_from(MAX_AUDIT_INFLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.audit_inflight.acquire_many(all)).await;
    }
}

/// Audit events written in the background at most at once.
const MAX_AUDIT_INFLIGHT: usize = 4096;

/// An argon2id hash of a random password, verified against when the user does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0r8jJkVxJ3bV7kY8Qw2m0o3QmYV4k5Cz9p2Nw1q0s8E";

fn hex_id() -> String {
    auth::secret::random_bytes::<16>()
        .map(hex::encode)
        .unwrap_or_else(|_| format!("{:x}", auth::now()))
}

/// Decodes `base64(user:password)`.
pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}
