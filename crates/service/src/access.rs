//! Access decisions: who is calling (a [`Credential`]: Basic user and password, or a registry
//! token), what they may do (the policy), the tokens the token endpoint issues, login
//! throttling and the audit log. No HTTP types: the HTTP layer parses the `Authorization`
//! header into a [`Credential`] and turns an [`AccessError`] into the 401/403 answers (with the
//! `WWW-Authenticate` challenge a [`Challenge`] describes) of the Docker token protocol.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use auth::limiter::{LoginThrottle, ThrottleSettings};
use auth::token::{Access as Grant, Claims, KeyRing};
use auth::{Action, Actions, Policy, Principal, PrincipalKind, Robot, Scope, User};
use sha2::{Digest, Sha256};

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
    /// Failed logins of one account from one address before its attempts are delayed.
    pub max_failures: u32,
    /// Failures are forgotten after this long without a new one.
    pub failure_window_secs: u64,
    /// Longest delay between two attempts of one account from one address.
    pub lockout_secs: u64,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies, ingress controllers).
    pub trusted_proxies: Vec<Cidr>,
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
            trusted_proxies: Vec::new(),
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

/// An IP network such as `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (ADDRESS/PREFIX)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip.to_canonical() {
                IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, net_len), (ip, ip_len)) = (bits(self.addr), bits(ip));
        if net_len != ip_len {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        net & mask == ip & mask
    }
}

/// What a caller presented, as the HTTP layer parsed it from the `Authorization` header.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Nothing (anonymous, unless a verified client certificate names a user).
    None,
    /// A user name (or `robot$name`) and password (or robot secret).
    Basic {
        /// Login name.
        user: String,
        /// Password or robot secret.
        password: String,
    },
    /// A registry token issued by the token endpoint.
    Bearer(String),
    /// Something that is no usable credential (malformed Basic, an unknown scheme); why.
    Unusable(String),
}

/// The `WWW-Authenticate: Bearer` challenge of a 401: where to get a token and for what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Why the request was refused.
    pub message: String,
    /// The configured token endpoint; the HTTP layer derives one from the request when unset.
    pub realm: Option<String>,
    /// URL scheme of a derived realm (`https` when serving TLS).
    pub scheme: &'static str,
    /// The token service name.
    pub service: String,
    /// The scope to ask for (`repository:R:pull,push`, `registry:catalog:*`).
    pub scope: Option<String>,
    /// A Bearer error code (`insufficient_scope`), when the token was too narrow.
    pub error: Option<&'static str>,
}

/// Why access control refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Bad or missing credentials (401, without a challenge: login and tokens).
    #[error("{0}")]
    Unauthorized(String),
    /// Authentication (or a wider token) needed: a 401 with a Bearer challenge.
    #[error("{}", .0.message)]
    Challenge(Box<Challenge>),
    /// The caller is known and may not do this (403).
    #[error("{0}")]
    Denied(String),
    /// Too many failed logins of this account from this address (429).
    #[error("{message}")]
    Throttled {
        /// What to tell the client.
        message: String,
        /// Seconds until the next attempt is considered.
        retry_after_secs: u64,
    },
    /// Every password-check thread is busy and the queue is full (503).
    #[error("{message}")]
    Busy {
        /// What to tell the client.
        message: String,
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// The request asks for too much (too many scopes, too large a token) (400).
    #[error("{0}")]
    Invalid(String),
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

    /// Whether the caller's token, if it presented one, grants the registry resource `name`
    /// (`catalog`, `admin`): the catalog and the management API need their own `registry:`
    /// scopes, so a token for one repository opens neither. Without a token: true.
    pub fn token_grants(&self, name: &str) -> bool {
        self.grants.as_ref().is_none_or(|c| {
            c.access
                .iter()
                .any(|a| a.kind == "registry" && a.name == name && !a.actions().is_empty())
        })
    }

    /// Whether the caller may administer the registry: access control is off, or it is an
    /// administrator whose token (if any) grants `registry:admin`.
    pub fn is_admin(&self) -> bool {
        self.open || (self.principal.admin && self.token_grants("admin"))
    }
}

/// Identities as loaded in memory, rebuilt whenever they change.
struct Snapshot {
    users: HashMap<String, User>,
    robots: HashMap<String, Robot>,
    policy: Policy,
    /// Access control applies in `auto` mode: an identity exists, or it has been on before.
    closed: bool,
    /// Credential fingerprints by login name (see [`AccessControl::credential_fingerprint`]).
    fingerprints: HashMap<String, String>,
}

/// Most verified tokens cached, and their estimated bytes.
const TOKEN_CACHE_ENTRIES: usize = 16_384;
const TOKEN_CACHE_BYTES: usize = 16 << 20;
/// Most cached Basic credential checks.
const BASIC_CACHE_ENTRIES: usize = 16_384;
const BASIC_CACHE_SECS: u64 = 60;
/// Most scopes one token may carry (a push asks for one or two).
pub const MAX_TOKEN_SCOPES: usize = 64;
/// Largest token issued or accepted, in bytes: it travels in an `Authorization` header, and
/// proxies commonly refuse headers over 8 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Password checks waiting for a thread, per thread, before callers are told to come back.
const HASH_QUEUE_PER_THREAD: usize = 32;
/// Most threads checking passwords at once (each argon2 check holds 19 MiB).
const MAX_HASH_THREADS: usize = 4;

/// The access-control service.
pub struct AccessControl {
    settings: AuthSettings,
    keys: KeyRing,
    ids: Identities,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Verified tokens by SHA-256 of the token: signature checks are paid once per token.
    /// Bounded by entries and by estimated bytes, since anonymous callers choose its content.
    token_cache: Mutex<TokenCache>,
    /// Verified Basic credentials by SHA-256 of `user:password`, for a minute: argon2 is
    /// deliberately slow and simple clients send Basic on every request.
    basic_cache: Mutex<HashMap<[u8; 32], (Principal, u64)>>,
    /// Failed logins per (account, address) with backoff, and per address (module
    /// `auth::limiter`).
    throttle: Mutex<LoginThrottle>,
    /// The few threads that check passwords.
    hasher: HashPool,
    /// Counters exported on `/metrics`.
    metrics: AuthMetrics,
    /// Bounds audit writes running in the background.
    audit_inflight: Arc<tokio::sync::Semaphore>,
}

/// Counters of authentication work, exported on `/metrics`.
#[derive(Clone, Default)]
struct AuthMetrics {
    /// Password (argon2/bcrypt) checks run.
    password_checks: prometheus_client::metrics::counter::Counter,
    /// Logins refused by the throttle without a check.
    throttled: prometheus_client::metrics::counter::Counter,
    /// Logins refused because every password-check thread was busy and the queue full.
    busy: prometheus_client::metrics::counter::Counter,
}

/// Verified tokens, bounded by count and by estimated size.
#[derive(Default)]
struct TokenCache {
    map: HashMap<[u8; 32], (Arc<Claims>, usize)>,
    bytes: usize,
}

impl TokenCache {
    fn get(&self, k: &[u8; 32]) -> Option<Arc<Claims>> {
        self.map.get(k).map(|(c, _)| c.clone())
    }

    fn insert(&mut self, k: [u8; 32], c: Arc<Claims>) {
        let size = claims_size(&c);
        if let Some((_, old)) = self.map.remove(&k) {
            self.bytes -= old;
        }
        if self.map.len() >= TOKEN_CACHE_ENTRIES || self.bytes + size > TOKEN_CACHE_BYTES {
            // Full: drop entries (in the map's arbitrary order) until half the budget is free,
            // so a flood of large tokens costs re-verifications, never memory.
            let keep_bytes = TOKEN_CACHE_BYTES / 2;
            let keep_entries = TOKEN_CACHE_ENTRIES / 2;
            let mut bytes = self.bytes;
            let mut n = self.map.len();
            self.map.retain(|_, (_, s)| {
                if bytes + size > keep_bytes || n >= keep_entries {
                    bytes -= *s;
                    n -= 1;
                    false
                } else {
                    true
                }
            });
            self.bytes = bytes;
        }
        if size <= TOKEN_CACHE_BYTES / 2 {
            self.bytes += size;
            self.map.insert(k, (c, size));
        }
    }
}

/// Estimated heap and inline bytes of a cached token's claims.
fn claims_size(c: &Claims) -> usize {
    let strings = c.iss.len() + c.sub.len() + c.aud.len() + c.jti.len();
    let opt = c.token_use.as_ref().map_or(0, String::len) + c.cred.as_ref().map_or(0, String::len);
    let access: usize = c
        .access
        .iter()
        .map(|a| {
            std::mem::size_of::<Grant>()
                + a.kind.len()
                + a.name.len()
                + a.actions
                    .iter()
                    .map(|x| x.len() + std::mem::size_of::<String>())
                    .sum::<usize>()
                + 3 * 16
        })
        .sum();
    // Key, Arc header, map slot and allocator overhead per entry.
    32 + 64 + std::mem::size_of::<Claims>() + strings + opt + access
}

/// A small pool of threads for password checks. Argon2 allocates 19 MiB per check: on tokio's
/// blocking pool (up to 512 threads) a flood of logins ran hundreds at once, and glibc kept the
/// freed memory in per-thread arenas. Here at most `threads` checks run, each on a thread of its
/// own; a bounded queue holds the rest, and past it callers are told to come back.
struct HashPool {
    jobs: std::sync::mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
    threads: usize,
    queued: Arc<AtomicUsize>,
}

impl HashPool {
    fn new() -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, MAX_HASH_THREADS);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(
            threads * HASH_QUEUE_PER_THREAD,
        );
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wharf-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password-check thread failed");
            }
        }
        HashPool {
            jobs: tx,
            threads,
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Checks `password` against `hash` on the pool; `None` when the queue is full.
    async fn verify(&self, password: &str, hash: &str) -> Option<bool> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (pw, hash) = (password.to_owned(), hash.to_owned());
        let queued = self.queued.clone();
        queued.fetch_add(1, Ordering::Relaxed);
        let job = Box::new(move || {
            queued.fetch_sub(1, Ordering::Relaxed);
            // The caller may have gone away (client disconnected): skip the work then.
            if !tx.is_closed() {
                let _ = tx.send(auth::secret::verify_password(&pw, &hash));
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => rx.await.ok(),
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Source addresses may fail this many times the per-account limit (across accounts) before
/// they are suspect.
const ADDRESS_FAILURE_FACTOR: u32 = 5;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>, k: K, v: V) {
    if m.len() >= BASIC_CACHE_ENTRIES {
        m.clear();
    }
    m.insert(k, v);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A reserved login attempt: given back undecided if the request goes away before it is decided.
struct Attempt<'a> {
    throttle: &'a Mutex<LoginThrottle>,
    account: &'a str,
    address: String,
    decided: bool,
}

impl Attempt<'_> {
    fn decide(mut self, ok: bool) {
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            t.succeed(self.account, &self.address);
        } else {
            t.fail(self.account, &self.address, now_ms());
        }
        self.decided = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            self.throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(self.account, &self.address);
        }
    }
}

impl AccessControl {
    /// Builds the service and loads identities.
    pub async fn new(
        settings: AuthSettings,
        keys: KeyRing,
        ids: Identities,
    ) -> Result<Self, store::StoreError> {
        let throttle = LoginThrottle::new(ThrottleSettings {
            free_failures: settings.max_failures,
            window_ms: settings.failure_window_secs.saturating_mul(1000),
            max_delay_ms: settings.lockout_secs.saturating_mul(1000),
            address_failures: settings.max_failures.saturating_mul(ADDRESS_FAILURE_FACTOR),
            capacity: 100_000,
        });
        let ac = AccessControl {
            snapshot: RwLock::new(Arc::new(Snapshot {
                users: HashMap::new(),
                robots: HashMap::new(),
                policy: Policy::default(),
                closed: false,
                fingerprints: HashMap::new(),
            })),
            settings,
            keys,
            ids,
            token_cache: Mutex::new(TokenCache::default()),
            basic_cache: Mutex::new(HashMap::new()),
            throttle: Mutex::new(throttle),
            hasher: HashPool::new(),
            metrics: AuthMetrics::default(),
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

    /// Registers the authentication counters (password checks run, logins throttled, logins
    /// refused while every password-check thread was busy) in `prom`.
    pub fn register_metrics(&self, prom: &mut prometheus_client::registry::Registry) {
        prom.register(
            "password_checks",
            "Password hash checks run (argon2id or bcrypt)",
            self.metrics.password_checks.clone(),
        );
        prom.register(
            "logins_throttled",
            "Logins refused by the failed-login throttle without a check",
            self.metrics.throttled.clone(),
        );
        prom.register(
            "logins_busy",
            "Logins refused because every password-check thread was busy and the queue full",
            self.metrics.busy.clone(),
        );
    }

    /// Peers whose `X-Forwarded-For` names the client (the HTTP layer resolves the client's
    /// address with them).
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.settings.trusted_proxies
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
        let fingerprints = users
            .iter()
            .map(|u| (u.name.clone(), fingerprint(&u.password_hash)))
            .chain(robots.iter().map(|r| {
                (
                    format!("{}{}", auth::identity::ROBOT_PREFIX, r.name),
                    fingerprint(&r.secret_hash),
                )
            }))
            .collect();
        let snap = Snapshot {
            fingerprints,
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

    /// Reserves a login attempt with the throttle, or answers 429 with `Retry-After`.
    fn reserve<'a>(
        &'a self,
        user: &'a str,
        source: Option<IpAddr>,
    ) -> Result<Attempt<'a>, AccessError> {
        let address = source.map(|ip| ip.to_string()).unwrap_or_default();
        let reserved = self
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(user, &address, now_ms());
        match reserved {
            Ok(()) => Ok(Attempt {
                throttle: &self.throttle,
                account: user,
                address,
                decided: false,
            }),
            Err(t) => {
                self.metrics.throttled.inc();
                let wait = t.retry_after_secs;
                Err(AccessError::Throttled {
                    message: format!(
                        "too many failed logins for {user} from this address; retry in {wait} s"
                    ),
                    retry_after_secs: wait,
                })
            }
        }
    }

    /// Checks a password on the password-check threads (counted), or answers 503 when they are
    /// all busy and the queue is full.
    async fn check_password(&self, password: &str, hash: &str) -> Result<bool, AccessError> {
        self.metrics.password_checks.inc();
        match self.hasher.verify(password, hash).await {
            Some(ok) => Ok(ok),
            None => {
                self.metrics.busy.inc();
                Err(AccessError::Busy {
                    message: format!(
                        "too many logins being checked ({} at once); retry in 1 s",
                        self.hasher.threads
                    ),
                    retry_after_secs: 1,
                })
            }
        }
    }

    /// Checks a user name and password (or robot secret). Throttled and audited.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Principal, AccessError> {
        let key = sha(format!("{user}:{password}").as_bytes());
        let now = auth::now();
        let robot = user.starts_with(auth::identity::ROBOT_PREFIX);
        // The throttle applies before anything else, cached successes included: otherwise a
        // delayed account would still answer guesses of its (cached) password. Robots are not
        // throttled: their secrets are unguessable, and delaying one would let anyone behind the
        // same address stop a pipeline.
        let attempt = if robot {
            None
        } else {
            Some(self.reserve(user, source)?)
        };
        let snap = self.snap();
        let cached = self
            .basic_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(_, until)| *until > now)
            .cloned();
        if cached.is_some() {
            // Still active now (a robot may have expired since it was cached).
            if let Some(p) = self.principal_active(&snap, user, now) {
                if let Some(a) = attempt {
                    a.decide(true);
                }
                return Ok(p);
            }
            self.basic_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        let ok = if let Some(r) = user.strip_prefix(auth::identity::ROBOT_PREFIX) {
            snap.robots.get(r).is_some_and(|robot| {
                robot.active(now) && auth::secret::verify_secret(password, &robot.secret_hash)
            })
        } else {
            match snap.users.get(user) {
                Some(u) if !u.disabled => self.check_password(password, &u.password_hash).await?,
                _ => {
                    // Same cost whether or not the user exists, so timing does not reveal names.
                    let _ = self.check_password(password, DUMMY_HASH).await?;
                    false
                }
            }
        };
        let principal = ok
            .then(|| self.principal_active(&snap, user, now))
            .flatten();
        if let Some(a) = attempt {
            a.decide(principal.is_some());
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
                Err(AccessError::Unauthorized(
                    "invalid username or password".into(),
                ))
            }
        }
    }

    fn verify_token(&self, token: &str) -> Result<Arc<Claims>, AccessError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AccessError::Unauthorized(format!(
                "invalid token: longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let key = sha(token.as_bytes());
        let now = auth::now();
        let cached = self
            .token_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key);
        let claims = match cached {
            Some(c) if c.exp + auth::token::LEEWAY_SECS > now => c,
            _ => {
                let c = Arc::new(
                    self.keys
                        .verify(token, &self.settings.issuer, &self.settings.service, now)
                        .map_err(|e| AccessError::Unauthorized(format!("invalid token: {e}")))?,
                );
                self.token_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, c.clone());
                c
            }
        };
        if claims.token_use.is_some() {
            return Err(AccessError::Unauthorized(
                "a refresh token is not an access token".into(),
            ));
        }
        Ok(claims)
    }

    /// Identifies the caller from its credential (anonymous when there is none).
    async fn identify(
        &self,
        credential: &Credential,
        source: Option<IpAddr>,
        cert_user: Option<&str>,
    ) -> Result<(Principal, Option<Arc<Claims>>), AccessError> {
        let token = match credential {
            Credential::None => {
                // A client certificate verified by the TLS handshake names a user by its CN.
                let by_cert =
                    cert_user.and_then(|cn| self.principal_active(&self.snap(), cn, auth::now()));
                return Ok((by_cert.unwrap_or_else(Principal::anonymous), None));
            }
            Credential::Unusable(why) => return Err(AccessError::Unauthorized(why.clone())),
            Credential::Basic { user, password } => {
                return Ok((self.login(user, password, source).await?, None));
            }
            Credential::Bearer(token) => token,
        };
        let claims = self.verify_token(token)?;
        if claims.sub.is_empty() {
            return Ok((Principal::anonymous(), Some(claims)));
        }
        let snap = self.snap();
        let p = self
            .principal_active(&snap, &claims.sub, auth::now())
            .ok_or_else(|| {
                AccessError::Unauthorized("the token's account is disabled, revoked or gone".into())
            })?;
        // Tokens name the credential they were issued against: a password change, a secret
        // rotation or a deleted and re-created account retires them at once. (Tokens without
        // the claim were signed by an older version and live out their short lifetime.)
        if let Some(cred) = &claims.cred
            && snap.fingerprints.get(&claims.sub) != Some(cred)
        {
            return Err(AccessError::Unauthorized(
                "the token was issued before the account's password or secret changed".into(),
            ));
        }
        Ok((p, Some(claims)))
    }

    /// What `caller` may do on `repo`, from its token grants or, without a token, the policy.
    pub fn allowed(&self, caller: &Caller, repo: &str) -> Actions {
        if caller.open {
            return Actions::of(Action::Admin);
        }
        let policy = self.snap().policy.allowed(&caller.principal, repo);
        match &caller.grants {
            // A token grants what it names and the policy still allows: removing a rule takes
            // effect on outstanding tokens at once.
            Some(c) => c
                .access
                .iter()
                .filter(|a| a.kind == "repository" && a.name == repo)
                .fold(Actions::NONE, |acc, a| acc.union(a.actions()))
                .intersect(policy),
            None => policy,
        }
    }

    /// What the policy allows the principal itself (ignoring the token's scope).
    pub fn policy_allows(&self, p: &Principal, repo: &str) -> Actions {
        self.snap().policy.allowed(p, repo)
    }

    /// Decides a request: the caller, or why it is refused (a [`AccessError::Challenge`] is
    /// a 401 the client answers by fetching a token). `cert_user` is the common name of a
    /// client certificate the TLS handshake verified.
    pub async fn authorize(
        &self,
        credential: &Credential,
        source: Option<IpAddr>,
        cert_user: Option<&str>,
        need: &Need,
    ) -> Result<Caller, AccessError> {
        if !self.enforced() {
            return Ok(Caller {
                source,
                ..Caller::open()
            });
        }
        let (principal, grants) = match self.identify(credential, source, cert_user).await {
            Ok(x) => x,
            Err(AccessError::Unauthorized(message)) => {
                return Err(self.challenge(need, None, message));
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
        // A token counts only for what it grants (`Caller::token_grants`).
        let token_grants = |name: &str| caller.token_grants(name);
        if need.admin {
            if caller.is_admin() {
                return Ok(caller);
            }
            if caller.principal.admin {
                return Err(AccessError::Denied("this token does not grant registry:admin; use Basic credentials or a token issued for scope registry:admin:*".into()));
            }
            if anonymous {
                return Err(self.challenge(need, None, "authentication required".into()));
            }
            return Err(AccessError::Denied(format!(
                "{} is not an administrator",
                caller.principal.display()
            )));
        }
        let Some((repo, wanted)) = &need.repo else {
            if need.catalog && !token_grants("catalog") {
                return Err(self.challenge(
                    need,
                    Some("insufficient_scope"),
                    "token does not grant registry:catalog".into(),
                ));
            }
            // /v2/ and the catalog: any identified caller (an anonymous token counts, so that
            // clients pulling public images can proceed).
            if anonymous && caller.grants.is_none() {
                return Err(self.challenge(need, None, "authentication required".into()));
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
                need,
                None,
                format!("authentication required to {missing} {repo}"),
            ));
        }
        if caller.grants.is_some() && self.policy_allows(&caller.principal, repo).covers(*wanted) {
            // Allowed, but this token was issued for a narrower scope: ask for a new one.
            return Err(self.challenge(
                need,
                Some("insufficient_scope"),
                format!("token does not grant {missing} on {repo}"),
            ));
        }
        Err(AccessError::Denied(format!(
            "{} may not {missing} {repo}",
            caller.principal.display()
        )))
    }

    /// A 401 with the `WWW-Authenticate: Bearer` challenge clients follow to the token endpoint.
    fn challenge(&self, need: &Need, error: Option<&'static str>, message: String) -> AccessError {
        let scope = if let Some((repo, actions)) = &need.repo {
            let actions = actions.union(need.scope_actions);
            Some(format!("repository:{repo}:{actions}"))
        } else if need.catalog {
            Some("registry:catalog:*".into())
        } else {
            None
        };
        AccessError::Challenge(Box::new(Challenge {
            message,
            realm: self.settings.realm.clone(),
            scheme: self.settings.scheme,
            service: self.settings.service.clone(),
            scope,
            error,
        }))
    }

    /// Issues an access token for `principal` covering what it may do of `requested`. Refuses
    /// (400) more than [`MAX_TOKEN_SCOPES`] scopes, or a token over [`MAX_TOKEN_BYTES`].
    pub fn issue(
        &self,
        principal: &Principal,
        requested: &[Scope],
    ) -> Result<(String, Vec<Scope>), AccessError> {
        let too_big = AccessError::Invalid;
        if requested.len() > MAX_TOKEN_SCOPES {
            return Err(too_big(format!(
                "{} scopes requested; a token carries at most {MAX_TOKEN_SCOPES} scopes",
                requested.len()
            )));
        }
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
            cred: (principal.kind != PrincipalKind::Anonymous)
                .then(|| self.credential_fingerprint(&principal.name))
                .flatten(),
        };
        let token = self.keys.sign(&claims);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(too_big(format!(
                "the token for these scopes would be {} bytes, more than {MAX_TOKEN_BYTES}: request fewer scopes",
                token.len()
            )));
        }
        Ok((token, granted))
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
    /// Every hash carries a fresh salt (argon2) or secret (robots), so it also changes when an
    /// account is deleted and re-created with the same password.
    fn credential_fingerprint(&self, name: &str) -> Option<String> {
        self.snap().fingerprints.get(name).cloned()
    }

    /// Redeems a refresh token for its (still active) principal.
    pub fn redeem_refresh(&self, token: &str) -> Result<Principal, AccessError> {
        let c = self
            .keys
            .verify(
                token,
                &self.settings.issuer,
                &self.settings.service,
                auth::now(),
            )
            .map_err(|e| AccessError::Unauthorized(format!("invalid refresh token: {e}")))?;
        if c.token_use.as_deref() != Some("refresh") {
            return Err(AccessError::Unauthorized("not a refresh token".into()));
        }
        let current = self.credential_fingerprint(&c.sub);
        if c.cred.is_none() || c.cred != current {
            return Err(AccessError::Unauthorized(
                "refresh token was issued before the password or secret changed".into(),
            ));
        }
        self.principal_active(&self.snap(), &c.sub, auth::now())
            .ok_or_else(|| {
                AccessError::Unauthorized("the token's account is disabled, revoked or gone".into())
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

/// A short fingerprint of a stored password or secret hash.
fn fingerprint(stored_hash: &str) -> String {
    hex::encode(&sha(stored_hash.as_bytes())[..8])
}

fn hex_id() -> String {
    auth::secret::random_bytes::<16>()
        .map(hex::encode)
        .unwrap_or_else(|_| format!("{:x}", auth::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.200.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy.local").is_err());
    }

    fn claims(n: usize, name_len: usize) -> Claims {
        Claims {
            iss: "wharf".into(),
            sub: String::new(),
            aud: "wharf".into(),
            exp: u64::MAX / 2,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: (0..n)
                .map(|i| Grant {
                    kind: "repository".into(),
                    name: format!("{i}{}", "x".repeat(name_len)),
                    actions: vec!["pull".into()],
                })
                .collect(),
            token_use: None,
            cred: None,
        }
    }

    #[test]
    fn token_cache_is_bounded_by_bytes_and_entries() {
        let mut c = TokenCache::default();
        let big = Arc::new(claims(MAX_TOKEN_SCOPES, 120));
        let each = claims_size(&big);
        assert!(each > MAX_TOKEN_SCOPES * 120, "estimate {each}");
        for i in 0..5_000u32 {
            c.insert(sha(&i.to_le_bytes()), big.clone());
            assert!(c.bytes <= TOKEN_CACHE_BYTES, "{} bytes cached", c.bytes);
        }
        let real: usize = c.map.values().map(|(_, s)| s).sum();
        assert_eq!(real, c.bytes);
        assert!(c.map.len() < TOKEN_CACHE_BYTES / each + 1);
        // Small entries are bounded by count.
        let mut c = TokenCache::default();
        let small = Arc::new(claims(1, 1));
        for i in 0..40_000u32 {
            c.insert(sha(&i.to_le_bytes()), small.clone());
        }
        assert!(c.map.len() <= TOKEN_CACHE_ENTRIES);
        // Re-inserting a key does not count it twice.
        let k = sha(b"again");
        c.insert(k, small.clone());
        let before = c.bytes;
        c.insert(k, small);
        assert_eq!(c.bytes, before);
    }

    // Identities seen through access control (moved from identities.rs with the identities).

    fn user(name: &str, admin: bool) -> User {
        User {
            name: name.into(),
            password_hash: "x".into(),
            admin,
            disabled: false,
            created: 0,
            source: None,
        }
    }

    fn ids(dir: &tempfile::TempDir) -> Identities {
        let meta = store::RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
        Identities::new(Arc::new(meta))
    }

    async fn access(
        ids: &Identities,
        mode: crate::access::AuthMode,
    ) -> crate::access::AccessControl {
        let pem = auth::token::KeyRing::generate_pem().unwrap();
        let keys = auth::token::KeyRing::from_pems(&pem, &[]).unwrap();
        let settings = crate::access::AuthSettings {
            mode,
            ..Default::default()
        };
        crate::access::AccessControl::new(settings, keys, ids.clone())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn auto_mode_stays_closed_when_the_last_identity_goes() {
        use crate::access::AuthMode;
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        let ac = access(&ids, AuthMode::Auto).await;
        assert!(
            !ac.enforced(),
            "a fresh data directory starts open in auto mode"
        );
        ids.put_user(&user("dev", false)).await.unwrap();
        ac.reload().await.unwrap();
        assert!(ac.enforced());
        ids.delete_user("dev").await.unwrap();
        ac.reload().await.unwrap();
        assert!(ac.enforced(), "no identity left, still closed");
        assert!(
            access(&ids, AuthMode::Auto).await.enforced(),
            "and after a restart"
        );
        assert!(
            !access(&ids, AuthMode::Off).await.enforced(),
            "off stays an explicit choice"
        );
    }

    #[tokio::test]
    async fn mode_on_seals_for_later_auto_starts() {
        use crate::access::AuthMode;
        let dir = tempfile::tempdir().unwrap();
        let ids = ids(&dir);
        assert!(access(&ids, AuthMode::On).await.enforced());
        assert!(access(&ids, AuthMode::Auto).await.enforced());
    }

    #[test]
    fn realm_warning_beyond_loopback_without_a_realm() {
        use crate::access::{AuthMode, AuthSettings};
        let any: std::net::SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let s = AuthSettings::default();
        let w = s.realm_warning(any).expect("warned");
        assert!(w.contains("Host header") && w.contains("realm"), "{w}");
        assert!(s.realm_warning(lo).is_none());
        let configured = AuthSettings {
            realm: Some("https://r.example/token".into()),
            ..AuthSettings::default()
        };
        assert!(configured.realm_warning(any).is_none());
        let off = AuthSettings {
            mode: AuthMode::Off,
            ..AuthSettings::default()
        };
        assert!(off.realm_warning(any).is_none());
    }
}
