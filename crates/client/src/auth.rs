//! Credentials (docker `config.json`, containers `auth.json`) and `WWW-Authenticate` challenges.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::Error;
use oci::image_ref::normalize_registry;

/// A user name and password (or token used as a password) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// User name.
    pub username: String,
    /// Password or access token. Never printed by `Debug`.
    pub password: String,
}

impl BasicCredentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        BasicCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic ...` header value.
    pub fn header_value(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials per registry, from explicit entries and credentials files.
///
/// Keys are normalised registry names (`docker.io` for every Docker Hub alias, including the
/// `https://index.docker.io/v1/` key `docker login` writes). The first source that has an entry
/// for a registry wins. Credential helpers (`credHelpers`, `credsStore`) are not run: a registry
/// whose credentials live only in a helper is reported in [`CredentialStore::warnings`] and
/// logged when first used, and is then accessed anonymously.
#[derive(Clone, Default)]
pub struct CredentialStore {
    entries: HashMap<String, BasicCredentials>,
    helpers: HashMap<String, String>,
    default_helper: Option<String>,
    warnings: Vec<String>,
    sources: Vec<PathBuf>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<&String> = self.entries.keys().collect();
        hosts.sort();
        f.debug_struct("CredentialStore")
            .field("registries", &hosts)
            .field("sources", &self.sources)
            .finish()
    }
}

impl CredentialStore {
    /// An empty store: every registry is accessed anonymously.
    pub fn new() -> Self {
        CredentialStore::default()
    }

    /// Loads the credentials files the environment points to, in this order (first entry for a
    /// registry wins): `$REGISTRY_AUTH_FILE`; `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`; `$XDG_RUNTIME_DIR/containers/auth.json`;
    /// `$XDG_CONFIG_HOME/containers/auth.json`, else `~/.config/containers/auth.json`.
    /// Missing files are skipped; an unreadable or malformed one is an error.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|k| std::env::var_os(k))
    }

    /// [`CredentialStore::from_env`] with an explicit environment lookup (for tests).
    pub fn from_env_with(env: impl Fn(&str) -> Option<OsString>) -> Result<Self, Error> {
        let mut store = CredentialStore::new();
        for path in default_files(&env) {
            if path.is_file() {
                store.load_file(&path)?;
            }
        }
        Ok(store)
    }

    /// Adds credentials for a registry (overrides what files say).
    pub fn insert(&mut self, registry: &str, creds: BasicCredentials) {
        self.entries.insert(normalize_registry(registry), creds);
    }

    /// Reads one docker `config.json` / containers `auth.json` and adds the registries it has that
    /// the store does not have yet.
    pub fn load_file(&mut self, path: &Path) -> Result<(), Error> {
        let bad = |reason: String| Error::Credentials {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        self.load_json(&bytes).map_err(bad)?;
        self.sources.push(path.to_path_buf());
        Ok(())
    }

    /// Parses the JSON of a docker `config.json` / containers `auth.json`.
    fn load_json(&mut self, bytes: &[u8]) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
            #[serde(default, rename = "credHelpers")]
            cred_helpers: BTreeMap<String, String>,
            #[serde(default, rename = "credsStore")]
            creds_store: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
            #[serde(default)]
            identitytoken: Option<String>,
        }
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        for (key, entry) in file.auths {
            let registry = normalize_registry(&key);
            if self.entries.contains_key(&registry) {
                continue;
            }
            let creds = if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auths.{key:?}.auth is not base64: {e}"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key:?}.auth is not UTF-8"))?;
                let (u, p) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key:?}.auth is not base64 of user:password"))?;
                BasicCredentials::new(u, p)
            } else if let (Some(u), Some(p)) = (entry.username, entry.password) {
                BasicCredentials::new(u, p)
            } else {
                if entry.identitytoken.is_some() {
                    self.warnings.push(format!(
                        "credentials for {registry} are an OAuth identity token, which is not \
                         supported; that registry is accessed anonymously"
                    ));
                }
                continue;
            };
            self.entries.insert(registry, creds);
        }
        for (key, helper) in file.cred_helpers {
            self.helpers
                .entry(normalize_registry(&key))
                .or_insert(helper);
        }
        if self.default_helper.is_none() {
            self.default_helper = file.creds_store.filter(|s| !s.is_empty());
        }
        Ok(())
    }

    /// Credentials for a registry (any Docker Hub alias finds Docker Hub's).
    pub fn get(&self, registry: &str) -> Option<&BasicCredentials> {
        self.entries.get(&normalize_registry(registry))
    }

    /// Why a registry without an entry might have been meant to have credentials: the name of the
    /// credential helper (`credHelpers` entry or `credsStore`) that holds them, which this client
    /// does not run.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        if self.get(registry).is_some() {
            return None;
        }
        self.helpers
            .get(&normalize_registry(registry))
            .or(self.default_helper.as_ref())
            .map(String::as_str)
    }

    /// Problems found while loading (unsupported entries), for display.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The files that were read.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }
}

fn default_files(env: &impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = nonempty("HOME");
    let mut files = Vec::new();
    if let Some(f) = nonempty("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    match (nonempty("DOCKER_CONFIG"), &home) {
        (Some(d), _) => files.push(d.join("config.json")),
        (None, Some(h)) => files.push(h.join(".docker/config.json")),
        (None, None) => {}
    }
    if let Some(d) = nonempty("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    match (nonempty("XDG_CONFIG_HOME"), &home) {
        (Some(d), _) => files.push(d.join("containers/auth.json")),
        (None, Some(h)) => files.push(h.join(".config/containers/auth.json")),
        (None, None) => {}
    }
    files
}

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`bearer`, `basic`).
    pub scheme: String,
    /// Its parameters (names lower-cased): `realm`, `service`, `scope`, ...
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lower-case) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 9110 section 11.6.1):
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && (is_tchar(b[*i]) || b[*i] == b'/') {
            *i += 1;
        }
        header[start..*i].to_owned()
    };
    loop {
        // Skip separators between challenges.
        while i < b.len() && (b[i] == b',' || b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = token(&mut i);
        if scheme.is_empty() {
            // Garbage: skip one character (not one byte: slicing inside a UTF-8 sequence
            // panics) and resynchronise.
            i += header[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut params = BTreeMap::new();
        loop {
            skip_ws(&mut i);
            let save = i;
            let name = token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || i >= b.len() || b[i] != b'=' {
                // Not a parameter: the next challenge's scheme (or a token68, which then parses
                // as a parameterless pseudo-challenge and is ignored by callers).
                i = save;
                break;
            }
            i += 1; // '='
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
                header[start..i].to_owned()
            };
            params.insert(name.to_ascii_lowercase(), value);
            skip_ws(&mut i);
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            break;
        }
        out.push(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    /// Found by the `www_authenticate` fuzz target: a non-ASCII character where a scheme was
    /// expected was skipped one byte at a time, and the next token sliced inside it (a panic).
    #[test]
    fn skips_non_ascii_garbage_whole() {
        let c = parse_challenges("\u{e9} Basic realm=\"r\", \u{757}x");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("r"));
        assert_eq!(c[1].scheme, "x");
        assert!(
            parse_challenges("BEBeare\u{757}ttp")
                .iter()
                .all(|c| !c.scheme.is_empty())
        );
    }

    #[test]
    fn parses_several_challenges_and_odd_spacing() {
        let c = parse_challenges(
            r#"Basic realm="Registry Realm", Bearer realm=https://h/t, service="a \"q\" b" ,scope="repository:x:pull,push""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("https://h/t"));
        assert_eq!(c[1].param("service"), Some("a \"q\" b"));
        assert_eq!(c[1].param("scope"), Some("repository:x:pull,push"));
        let c = parse_challenges("Basic");
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn reads_docker_and_containers_files() {
        const PODMAN_SECRET: &str = "podman-secret-Zq8vN3xL";
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker");
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(
            docker.join("config.json"),
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},
                    "ghcr.io":{{"auth":"{}"}},
                    "quay.io":{{"identitytoken":"x"}}}},
                   "credHelpers":{{"gcr.io":"gcloud"}}}}"#,
                STANDARD.encode("hubuser:hub:pass"),
                STANDARD.encode("dockeruser:p1"),
            ),
        )
        .unwrap();
        let authfile = dir.path().join("auth.json");
        std::fs::write(
            &authfile,
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"localhost:5000":{{"username":"u","password":"p"}}}}}}"#,
                STANDARD.encode(format!("podmanuser:{PODMAN_SECRET}"))
            ),
        )
        .unwrap();
        let env = |k: &str| -> Option<OsString> {
            match k {
                "DOCKER_CONFIG" => Some(docker.clone().into()),
                "REGISTRY_AUTH_FILE" => Some(authfile.clone().into()),
                "HOME" => Some("/nonexistent".into()),
                _ => None,
            }
        };
        let s = CredentialStore::from_env_with(env).unwrap();
        assert_eq!(s.sources().len(), 2);
        let hub = s.get("index.docker.io").unwrap();
        assert_eq!(hub.username, "hubuser");
        assert_eq!(hub.password, "hub:pass", "only the first colon splits");
        assert_eq!(
            s.get("ghcr.io").unwrap().username,
            "podmanuser",
            "REGISTRY_AUTH_FILE first"
        );
        assert_eq!(s.get("localhost:5000").unwrap().password, "p");
        assert!(s.get("quay.io").is_none());
        assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
        assert_eq!(s.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(s.helper_for("ghcr.io"), None);
        // A secret no temporary path can contain (a short one like `p2` can be in the random
        // name of the directory that `Debug` shows).
        assert!(!format!("{s:?}").contains(PODMAN_SECRET));
        assert_eq!(s.get("ghcr.io").unwrap().password, PODMAN_SECRET);
        assert!(!format!("{hub:?}").contains("hub:pass"));
    }

    #[test]
    fn malformed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        std::fs::write(&f, r#"{"auths":{"h":{"auth":"!!!"}}}"#).unwrap();
        let mut s = CredentialStore::new();
        let e = s.load_file(&f).unwrap_err().to_string();
        assert!(e.contains("not base64"), "{e}");
        std::fs::write(&f, "{").unwrap();
        assert!(s.load_file(&f).is_err());
    }
}
