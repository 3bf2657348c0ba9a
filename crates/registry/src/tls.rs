//! HTTPS for the registry: a certificate chain and key loaded from PEM files, reloaded while
//! serving when the files change, and optional client-certificate authentication.
//!
//! - [`TlsSettings`] names the files and the knobs.
//! - [`ReloadingTls`] holds the live rustls [`ServerConfig`]. [`ReloadingTls::watch`] polls the
//!   files (their bytes, read through any symlinks) every `reload_interval` and swaps in a new
//!   configuration when they change. Polling rather than inotify on purpose: a Kubernetes Secret
//!   volume is updated by pointing its `..data` symlink at a new timestamped directory, which
//!   changes what the paths resolve to without any event on the files the paths name. Each new
//!   connection takes the configuration current at its accept; connections already open keep the
//!   one they were made with and are never dropped by a reload. A new pair that does not load
//!   (unparsable PEM, no key, a key that does not match the certificate, a bad client CA) is
//!   logged at error level and the previous one keeps serving.
//! - [`ClientIdentity`]: when a client presented a certificate that verified against the client
//!   CA, every request on that connection carries its subject as a request extension. Handlers
//!   read it with `Option<axum::Extension<ClientIdentity>>` (or
//!   `req.extensions().get::<ClientIdentity>()`); it is absent on plain HTTP, on TLS without a
//!   client CA, and for clients that sent no certificate in `optional` mode.
//!
//! The cryptography is rustls with its `ring` provider; ALPN offers `h2` then `http/1.1`.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest as _, Sha256};
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// Whether clients must present a certificate when a client CA is configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients without a valid certificate from the client CA are refused during the handshake.
    #[default]
    Required,
    /// Clients may connect without a certificate (they carry no [`ClientIdentity`]); a
    /// certificate that is presented must still verify, or the handshake fails.
    Optional,
}

/// Where the certificates are and how they are served.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key of the leaf: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
    /// (`RSA PRIVATE KEY`). Encrypted keys are not supported.
    pub key_path: PathBuf,
    /// PEM CA certificate(s) client certificates must chain to; `None`: no client certificates
    /// are requested.
    pub client_ca_path: Option<PathBuf>,
    /// With a client CA: whether a client certificate is required.
    pub client_auth: ClientAuth,
    /// How often the files are checked for changes; zero disables reloading.
    pub reload_interval: Duration,
    /// A client must complete the TLS handshake within this time or is disconnected, so slow or
    /// silent clients cannot hold connection slots.
    pub handshake_timeout: Duration,
}

impl TlsSettings {
    /// Settings for a certificate and key with the defaults: no client CA, checked every 5 s,
    /// 10 s handshake timeout.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        TlsSettings {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            client_ca_path: None,
            client_auth: ClientAuth::Required,
            reload_interval: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a certificate, key or client CA could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{}: invalid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The error.
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{}: no PEM CERTIFICATE block found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error(
        "{}: no private key found (expected a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block; encrypted keys are not supported)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("certificate {} and key {} cannot be served together: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The client CA file is unusable.
    #[error("client CA {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a certificate says about itself, for logs, metrics and tests.
#[derive(Clone, Debug)]
pub struct CertificateInfo {
    /// The subject as an RFC 4514 string, e.g. `CN=registry.example.com,O=Example`.
    pub subject: String,
    /// The issuer as an RFC 4514 string.
    pub issuer: String,
    /// The serial number, lower-case hex without separators.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256_fingerprint: String,
    /// Start of validity.
    pub not_before: Option<SystemTime>,
    /// End of validity.
    pub not_after: Option<SystemTime>,
    /// DNS names in the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses in the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// The DER certificate.
    pub der: CertificateDer<'static>,
}

/// The verified client certificate of a TLS connection, attached to every request on it as an
/// axum request extension.
///
/// Present only when the client presented a certificate that chains to the configured client CA
/// and is valid now (rustls/webpki verify it during the handshake, including its extended key
/// usage allowing client authentication). Cheap to clone.
///
/// ```ignore
/// async fn handler(identity: Option<axum::Extension<registry::tls::ClientIdentity>>) {
///     if let Some(axum::Extension(id)) = identity {
///         tracing::info!(cn = ?id.common_name(), dns = ?id.dns_names(), "client certificate");
///     }
/// }
/// ```
#[derive(Clone)]
pub struct ClientIdentity(Arc<IdentityInner>);

struct IdentityInner {
    common_name: Option<String>,
    subject: String,
    issuer: String,
    dns_names: Vec<String>,
    email_addresses: Vec<String>,
    uris: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    serial: String,
    sha256_fingerprint: String,
    der: CertificateDer<'static>,
}

impl ClientIdentity {
    /// Describes a certificate. This does not verify anything: the server builds identities
    /// only from certificates the TLS handshake verified. Fields that cannot be decoded are
    /// left empty (the fingerprint and DER are always there).
    pub fn from_der(der: &CertificateDer<'_>) -> Self {
        let parsed = Parsed::from_der(der.as_ref());
        ClientIdentity(Arc::new(IdentityInner {
            common_name: parsed.common_name,
            subject: parsed.subject,
            issuer: parsed.issuer,
            dns_names: parsed.dns_names,
            email_addresses: parsed.email_addresses,
            uris: parsed.uris,
            ip_addresses: parsed.ip_addresses,
            serial: parsed.serial,
            sha256_fingerprint: fingerprint(der.as_ref()),
            der: der.clone().into_owned(),
        }))
    }

    /// The first common name (CN) of the subject, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.0.common_name.as_deref()
    }

    /// The whole subject as an RFC 4514 string, e.g. `CN=ci-runner,O=team-a`.
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// DNS names among the subject alternative names.
    pub fn dns_names(&self) -> &[String] {
        &self.0.dns_names
    }

    /// E-mail addresses (rfc822Name) among the subject alternative names.
    pub fn email_addresses(&self) -> &[String] {
        &self.0.email_addresses
    }

    /// URIs among the subject alternative names (e.g. SPIFFE IDs).
    pub fn uris(&self) -> &[String] {
        &self.0.uris
    }

    /// IP addresses among the subject alternative names.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.0.ip_addresses
    }

    /// The serial number, lower-case hex.
    pub fn serial(&self) -> &str {
        &self.0.serial
    }

    /// SHA-256 of the DER certificate, lower-case hex (for pinning a certificate).
    pub fn sha256_fingerprint(&self) -> &str {
        &self.0.sha256_fingerprint
    }

    /// The DER certificate, for anything not exposed above.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.0.der
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.0.subject)
            .field("dns_names", &self.0.dns_names)
            .field("email_addresses", &self.0.email_addresses)
            .field("uris", &self.0.uris)
            .field("ip_addresses", &self.0.ip_addresses)
            .field("serial", &self.0.serial)
            .finish()
    }
}

/// The outcome of one check of the files.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what is already served.
    Unchanged,
    /// A new certificate is served to new connections.
    Reloaded,
    /// The files changed but could not be used; the previous certificate is still served.
    Rejected(TlsError),
}

/// The live TLS configuration: loaded from the files, swapped when they change. Cheap to clone.
#[derive(Clone)]
pub struct ReloadingTls {
    shared: Arc<Shared>,
}

struct Shared {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    active: RwLock<Active>,
    /// The last rejected content (hash of the error and the bytes) and when it was last logged,
    /// so a bad pair is logged once and then reminded of, not logged on every check.
    rejected: Mutex<Option<(u64, Instant)>>,
}

struct Active {
    config: Arc<ServerConfig>,
    snapshot: Snapshot,
    info: CertificateInfo,
}

/// How often a rejected pair that is still in place is logged again.
const REJECTED_REMINDER: Duration = Duration::from_secs(300);

/// A certificate closer than this to its end of validity is warned about at each load.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.certificate();
        f.debug_struct("ReloadingTls")
            .field("settings", &self.shared.settings)
            .field("subject", &info.subject)
            .field("serial", &info.serial)
            .finish()
    }
}

impl ReloadingTls {
    /// Loads the certificate, key and client CA named by `settings`, failing if they do not
    /// form a usable configuration.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let snapshot = Snapshot::read(&settings)?;
        let (config, info) = build(&settings, &provider, &snapshot)?;
        log_loaded("TLS certificate loaded", &info, None);
        Ok(ReloadingTls {
            shared: Arc::new(Shared {
                settings,
                provider,
                active: RwLock::new(Active {
                    config,
                    snapshot,
                    info,
                }),
                rejected: Mutex::new(None),
            }),
        })
    }

    /// The settings this was loaded with.
    pub fn settings(&self) -> &TlsSettings {
        &self.shared.settings
    }

    /// The rustls configuration for a new connection.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.shared
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    /// The certificate currently served.
    pub fn certificate(&self) -> CertificateInfo {
        self.shared
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .info
            .clone()
    }

    /// Reads the files and, if they changed, swaps in the new configuration. Blocking (file
    /// reads); logs what it did. A rejected pair is logged at error level.
    pub fn reload(&self) -> Reload {
        let s = &self.shared;
        let result = self.read_changed().and_then(|snapshot| match snapshot {
            None => Ok(None),
            Some(snapshot) => {
                build(&s.settings, &s.provider, &snapshot).map(|(c, i)| Some((snapshot, c, i)))
            }
        });
        match result {
            Ok(None) => Reload::Unchanged,
            Ok(Some((snapshot, config, info))) => {
                let mut active = s.active.write().unwrap_or_else(|e| e.into_inner());
                log_loaded("TLS certificate reloaded", &info, Some(&active.info));
                *active = Active {
                    config,
                    snapshot,
                    info,
                };
                *s.rejected.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Reload::Reloaded
            }
            Err(e) => {
                self.log_rejected(&e);
                Reload::Rejected(e)
            }
        }
    }

    /// The files' content if it differs from what is served, read until two reads in a row
    /// agree: a Secret volume update swaps all files at once, and a read straddling the swap
    /// must not pair the old certificate with the new key.
    ///
    /// A failed read (a file missing for an instant while a directory is swapped) is retried
    /// too; the error is returned only if the files stay unreadable for about half a second.
    fn read_changed(&self) -> Result<Option<Snapshot>, TlsError> {
        let settings = &self.shared.settings;
        let mut last: Result<Snapshot, TlsError> = Snapshot::read(settings);
        if let Ok(first) = &last {
            let active = self.shared.active.read().unwrap_or_else(|e| e.into_inner());
            if *first == active.snapshot {
                return Ok(None);
            }
        }
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            let again = Snapshot::read(settings);
            if let (Ok(a), Ok(b)) = (&last, &again)
                && a == b
            {
                return again.map(Some);
            }
            last = again;
        }
        // Still changing or unreadable: use the last read; if it is inconsistent it is rejected
        // now, and the next check tries again.
        last.map(Some)
    }

    fn log_rejected(&self, e: &TlsError) {
        let mut h = DefaultHasher::new();
        e.to_string().hash(&mut h);
        if let Ok(snapshot) = Snapshot::read(&self.shared.settings) {
            snapshot.hash(&mut h);
        }
        let key = h.finish();
        let mut rejected = self
            .shared
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let repeat = match *rejected {
            Some((k, at)) if k == key => {
                if now.duration_since(at) < REJECTED_REMINDER {
                    return;
                }
                true
            }
            _ => false,
        };
        *rejected = Some((key, now));
        let served = self.certificate();
        tracing::error!(
            error = %e,
            still_serving_serial = %served.serial,
            still_serving_subject = %served.subject,
            still_serving_not_after = %format_time(served.not_after),
            repeat,
            "TLS certificate change REJECTED: the new files cannot be served, so the previous certificate stays in use; fix the files (they are checked again every {:?})",
            self.shared.settings.reload_interval
        );
    }

    /// Checks the files every `reload_interval` until the future is dropped (runs forever;
    /// returns at once if reloading is disabled). Spawn it next to the server.
    pub async fn watch(self) {
        let interval = self.shared.settings.reload_interval;
        if interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: the files were just loaded
        loop {
            tick.tick().await;
            let this = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || this.reload()).await {
                tracing::error!(error = %e, "TLS certificate check failed");
            }
        }
    }
}

/// The bytes of the files, compared to detect a change.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Snapshot {
    fn read(settings: &TlsSettings) -> Result<Snapshot, TlsError> {
        Ok(Snapshot {
            cert: read(&settings.cert_path)?,
            key: read(&settings.key_path)?,
            client_ca: settings.client_ca_path.as_deref().map(read).transpose()?,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the rustls configuration for one snapshot of the files.
fn build(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    snap: &Snapshot,
) -> Result<(Arc<ServerConfig>, CertificateInfo), TlsError> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let chain = CertificateDer::pem_slice_iter(&snap.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(&settings.cert_path))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: settings.cert_path.clone(),
        });
    };
    let info = describe(leaf);
    let key = PrivateKeyDer::from_pem_slice(&snap.key).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: settings.key_path.clone(),
        },
        source => TlsError::Pem {
            path: settings.key_path.clone(),
            source,
        },
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let builder = match (&settings.client_ca_path, &snap.client_ca) {
        (Some(path), Some(ca)) => {
            let ca_err = |message: String| TlsError::ClientCa {
                path: path.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| ca_err(format!("invalid PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_err(format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ca_err("no PEM CERTIFICATE block found".into()));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match settings.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Pair {
            cert: settings.cert_path.clone(),
            key: settings.key_path.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), info))
}

/// What the certificate says, for logs.
fn describe(der: &CertificateDer<'_>) -> CertificateInfo {
    let p = Parsed::from_der(der.as_ref());
    CertificateInfo {
        subject: p.subject,
        issuer: p.issuer,
        serial: p.serial,
        sha256_fingerprint: fingerprint(der.as_ref()),
        not_before: p.not_before,
        not_after: p.not_after,
        dns_names: p.dns_names,
        ip_addresses: p.ip_addresses,
        der: der.clone().into_owned(),
    }
}

fn log_loaded(what: &str, info: &CertificateInfo, previous: Option<&CertificateInfo>) {
    tracing::info!(
        subject = %info.subject,
        issuer = %info.issuer,
        serial = %info.serial,
        sha256 = %info.sha256_fingerprint,
        dns_names = ?info.dns_names,
        ip_addresses = ?info.ip_addresses,
        not_after = %format_time(info.not_after),
        previous_serial = previous.map(|p| p.serial.as_str()),
        "{what}"
    );
    let now = SystemTime::now();
    if let Some(not_after) = info.not_after {
        match not_after.duration_since(now) {
            Err(_) => tracing::error!(
                serial = %info.serial,
                not_after = %format_time(info.not_after),
                "the TLS certificate has EXPIRED: clients will refuse it"
            ),
            Ok(left) if left < EXPIRY_WARNING => tracing::warn!(
                serial = %info.serial,
                not_after = %format_time(info.not_after),
                hours_left = left.as_secs() / 3600,
                "the TLS certificate expires soon"
            ),
            Ok(_) => {}
        }
    }
    if info.not_before.is_some_and(|nb| nb > now) {
        tracing::warn!(
            serial = %info.serial,
            not_before = %format_time(info.not_before),
            "the TLS certificate is not valid yet: clients will refuse it"
        );
    }
}

fn format_time(t: Option<SystemTime>) -> String {
    t.map_or_else(
        || "unknown".into(),
        |t| oci::time::UtcDateTime::from_system(t).rfc3339(),
    )
}

/// A serial number as hex without the sign byte DER adds to positive numbers whose high bit is
/// set, as `openssl x509 -serial` prints it (in lower case).
fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(&bytes[start..])
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fields of a certificate Wharf looks at; empty where decoding fails.
#[derive(Default)]
struct Parsed {
    common_name: Option<String>,
    subject: String,
    issuer: String,
    serial: String,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
    dns_names: Vec<String>,
    email_addresses: Vec<String>,
    uris: Vec<String>,
    ip_addresses: Vec<IpAddr>,
}

impl Parsed {
    fn from_der(der: &[u8]) -> Parsed {
        let cert = match x509_cert::Certificate::from_der(der) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot decode the fields of a certificate");
                return Parsed::default();
            }
        };
        let tbs = cert.tbs_certificate();
        let mut p = Parsed {
            common_name: tbs
                .subject()
                .common_name()
                .ok()
                .flatten()
                .map(|cn| cn.value().into_owned()),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            serial: serial_hex(tbs.serial_number().as_bytes()),
            not_before: Some(tbs.validity().not_before.to_system_time()),
            not_after: Some(tbs.validity().not_after.to_system_time()),
            ..Parsed::default()
        };
        if let Ok(Some((_, SubjectAltName(names)))) = tbs.get_extension::<SubjectAltName>() {
            for name in names {
                match name {
                    GeneralName::DnsName(s) => p.dns_names.push(s.to_string()),
                    GeneralName::Rfc822Name(s) => p.email_addresses.push(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) => p.uris.push(s.to_string()),
                    GeneralName::IpAddress(o) => match o.as_bytes().len() {
                        4 => p.ip_addresses.push(IpAddr::from(
                            <[u8; 4]>::try_from(o.as_bytes()).expect("4 bytes"),
                        )),
                        16 => p.ip_addresses.push(IpAddr::from(
                            <[u8; 16]>::try_from(o.as_bytes()).expect("16 bytes"),
                        )),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        p
    }
}

/// Test PKI shared by the unit tests of this module and of the server.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType, SerialNumber,
    };
    use rustls::pki_types::CertificateDer;

    /// A test CA that issues server and client certificates.
    pub(crate) struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pub pem: String,
    }

    /// A certificate and its key, as PEM.
    pub(crate) struct Issued {
        pub cert_pem: String,
        pub key_pem: String,
        pub der: CertificateDer<'static>,
    }

    impl TestCa {
        pub fn new(name: &str) -> TestCa {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            TestCa {
                issuer: Issuer::new(params, key),
                pem: cert.pem(),
            }
        }

        pub fn server(&self, serial: u64) -> Issued {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "wharf test server");
            params.serial_number = Some(SerialNumber::from(serial));
            self.issue(params)
        }

        pub fn client(&self, cn: &str) -> Issued {
            let mut params = CertificateParams::new(vec!["ci.example.com".to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .distinguished_name
                .push(DnType::OrganizationName, "team-a");
            params
                .subject_alt_names
                .push(SanType::Rfc822Name("ci@example.com".try_into().unwrap()));
            params
                .subject_alt_names
                .push(SanType::URI("spiffe://example.com/ci".try_into().unwrap()));
            params
                .subject_alt_names
                .push(SanType::IpAddress("10.1.2.3".parse().unwrap()));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            self.issue(params)
        }

        fn issue(&self, params: CertificateParams) -> Issued {
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Issued {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                der: cert.der().clone(),
            }
        }
    }

    /// A directory laid out as Kubernetes lays out a Secret volume: the files are symlinks
    /// through `..data`, itself a symlink to a timestamped directory swapped atomically.
    pub(crate) struct SecretDir {
        pub dir: tempfile::TempDir,
        generation: u32,
    }

    impl SecretDir {
        pub fn new(files: &[(&str, &[u8])]) -> SecretDir {
            let mut s = SecretDir {
                dir: tempfile::tempdir().unwrap(),
                generation: 0,
            };
            s.update(files);
            for (name, _) in files {
                std::os::unix::fs::symlink(format!("..data/{name}"), s.dir.path().join(name))
                    .unwrap();
            }
            s
        }

        pub fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes a new timestamped directory and swaps `..data` to it, as the kubelet does.
        pub fn update(&mut self, files: &[(&str, &[u8])]) {
            self.generation += 1;
            let root = self.dir.path();
            let stamp = format!("..2026_11_26_18_00_{:02}.{}", self.generation, 1000);
            std::fs::create_dir(root.join(&stamp)).unwrap();
            for (name, bytes) in files {
                std::fs::write(root.join(&stamp).join(name), bytes).unwrap();
            }
            let old = std::fs::read_link(root.join("..data")).ok();
            std::os::unix::fs::symlink(&stamp, root.join("..data_tmp")).unwrap();
            std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
            if let Some(old) = old {
                std::fs::remove_dir_all(root.join(old)).unwrap();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{SecretDir, TestCa};
    use super::*;

    fn settings(dir: &SecretDir) -> TlsSettings {
        TlsSettings::new(dir.path("tls.crt"), dir.path("tls.key"))
    }

    fn served_der(tls: &ReloadingTls) -> CertificateDer<'static> {
        tls.certificate().der
    }

    #[test]
    fn reloader_follows_secret_volume_swaps_and_keeps_the_old_pair_on_bad_files() {
        let ca = TestCa::new("reload CA");
        let a = ca.server(0xa1);
        let mut secret = SecretDir::new(&[
            ("tls.crt", a.cert_pem.as_bytes()),
            ("tls.key", a.key_pem.as_bytes()),
        ]);
        let tls = ReloadingTls::load(settings(&secret)).unwrap();
        assert_eq!(served_der(&tls), a.der);
        assert_eq!(tls.certificate().serial, "a1");
        assert_eq!(tls.certificate().dns_names, vec!["localhost"]);
        assert!(matches!(tls.reload(), Reload::Unchanged));

        // A new pair, swapped in the Kubernetes way: picked up.
        let b = ca.server(0xb2);
        secret.update(&[
            ("tls.crt", b.cert_pem.as_bytes()),
            ("tls.key", b.key_pem.as_bytes()),
        ]);
        let before = tls.server_config();
        assert!(matches!(tls.reload(), Reload::Reloaded));
        assert_eq!(served_der(&tls), b.der);
        assert!(!Arc::ptr_eq(&before, &tls.server_config()));
        assert!(matches!(tls.reload(), Reload::Unchanged));

        // A key that does not match the certificate: rejected, B still served.
        let c = ca.server(0xc3);
        secret.update(&[
            ("tls.crt", c.cert_pem.as_bytes()),
            ("tls.key", b.key_pem.as_bytes()),
        ]);
        match tls.reload() {
            Reload::Rejected(TlsError::Pair { .. }) => {}
            other => panic!("mismatched key: {other:?}"),
        }
        assert_eq!(served_der(&tls), b.der);
        // Checked again (and rejected again, quietly) while the files stay bad.
        assert!(matches!(tls.reload(), Reload::Rejected(_)));

        // Garbage certificate, then a missing key file: rejected too.
        secret.update(&[("tls.crt", b"not a certificate"), ("tls.key", b"junk")]);
        assert!(matches!(
            tls.reload(),
            Reload::Rejected(TlsError::NoCertificate { .. })
        ));
        secret.update(&[("tls.crt", c.cert_pem.as_bytes())]);
        assert!(matches!(
            tls.reload(),
            Reload::Rejected(TlsError::Read { .. })
        ));
        secret.update(&[
            ("tls.crt", c.cert_pem.as_bytes()),
            (
                "tls.key",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ]);
        assert!(matches!(
            tls.reload(),
            Reload::Rejected(TlsError::NoKey { .. })
        ));
        assert_eq!(served_der(&tls), b.der);

        // Fixed: C is served.
        secret.update(&[
            ("tls.crt", c.cert_pem.as_bytes()),
            ("tls.key", c.key_pem.as_bytes()),
        ]);
        assert!(matches!(tls.reload(), Reload::Reloaded));
        assert_eq!(served_der(&tls), c.der);
        assert_eq!(tls.certificate().serial, "c3");
    }

    #[test]
    fn load_refuses_unusable_files() {
        let ca = TestCa::new("load CA");
        let a = ca.server(1);
        let b = ca.server(2);
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let cert = write("a.crt", a.cert_pem.as_bytes());
        let other_key = write("b.key", b.key_pem.as_bytes());
        let err = ReloadingTls::load(TlsSettings::new(&cert, &other_key)).unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert!(err.to_string().contains("a.crt"), "{err}");
        let missing = dir.path().join("missing.key");
        let err = ReloadingTls::load(TlsSettings::new(&cert, &missing)).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        // A chain with the CA after the leaf, and a key file holding the cert too: fine.
        let chain = write("chain.crt", format!("{}{}", a.cert_pem, ca.pem).as_bytes());
        let combined = write(
            "combined.pem",
            format!("{}{}", a.cert_pem, a.key_pem).as_bytes(),
        );
        let tls = ReloadingTls::load(TlsSettings::new(&chain, &combined)).unwrap();
        assert_eq!(tls.certificate().der, a.der);
        // A client CA file without certificates.
        let mut s = TlsSettings::new(&cert, write("a.key", a.key_pem.as_bytes()));
        s.client_ca_path = Some(write("empty-ca.crt", b""));
        let err = ReloadingTls::load(s).unwrap_err();
        assert!(matches!(err, TlsError::ClientCa { .. }), "{err}");
    }

    #[test]
    fn client_identity_exposes_subject_and_sans() {
        let ca = TestCa::new("identity CA");
        let c = ca.client("ci-runner");
        let id = ClientIdentity::from_der(&c.der);
        assert_eq!(id.common_name(), Some("ci-runner"));
        assert!(id.subject().contains("CN=ci-runner"), "{}", id.subject());
        assert!(id.subject().contains("O=team-a"), "{}", id.subject());
        assert_eq!(id.issuer(), "CN=identity CA");
        assert_eq!(id.dns_names(), ["ci.example.com"]);
        assert_eq!(id.email_addresses(), ["ci@example.com"]);
        assert_eq!(id.uris(), ["spiffe://example.com/ci"]);
        assert_eq!(id.ip_addresses(), ["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(id.sha256_fingerprint().len(), 64);
        assert_eq!(id.certificate(), &c.der);
        // Undecodable bytes: an identity with empty fields, never a panic.
        let junk = ClientIdentity::from_der(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]));
        assert_eq!(junk.common_name(), None);
        assert!(junk.dns_names().is_empty());
    }
}
