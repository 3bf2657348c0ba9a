//! An async client for the OCI Distribution API, for any registry (Wharf, CNCF Distribution,
//! Docker Hub, ghcr.io, Harbor, ...).
//!
//! # API summary
//!
//! - [`ImageRef::parse`] parses `[host[:port]/]repository[:tag][@digest]` with Docker Hub
//!   normalisation (`busybox` is `docker.io/library/busybox`, `index.docker.io` is `docker.io`,
//!   whose API is served by `registry-1.docker.io`). [`ImageRef::reference`] is what goes after
//!   `/manifests/`: the digest, else the tag, else `latest`; [`ImageRef::with_tag`] /
//!   [`ImageRef::with_digest`] derive references in the same repository.
//! - [`Client::new`] with a [`ClientConfig`] (or [`Client::from_env`]): plain HTTP for loopback
//!   registries and [`ClientConfig::insecure_registries`], HTTPS (rustls, system roots) otherwise.
//!   Authentication is automatic: anonymous first, then on a 401 either Basic with stored
//!   credentials or the Bearer token flow (`WWW-Authenticate` realm/service/scope, Basic
//!   credentials to the realm when known, and over plain HTTP only when the registry itself is
//!   plain HTTP); tokens are cached per (registry, scope) until they expire.
//! - [`CredentialStore::from_env`] reads `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json` (else
//!   `~/.docker/config.json`) and the containers `auth.json` files (`auths.<host>.auth` =
//!   base64 `user:password`); credential helpers are not run (a warning names the helper).
//! - Operations, all `async` and taking the image whose registry and repository they address:
//!   [`Client::resolve`] (HEAD, falling back to GET) returns [`Resolved`] (digest, media type,
//!   size); [`Client::get_manifest`] returns verified bytes ([`FetchedManifest`]);
//!   [`Client::get_blob`] (bounded, verified) and [`Client::get_blob_to`] (streamed, verified);
//!   [`Client::blob_size`]; [`Client::push_blob`] / [`Client::push_blob_file`] (monolithic
//!   POST + PUT, skipped when the blob exists); [`Client::push_manifest`] (by tag or digest,
//!   returns the digest and whether the registry processed the `subject`);
//!   [`Client::list_tags`] (follows `Link` pagination); [`Client::referrers`] (`Ok(None)` when
//!   the registry has no referrers API); [`Client::delete_manifest`].
//! - [`Client::request`] is the lower level under them, for a registry reached at an explicit URL
//!   ([`Endpoint`]: a pull-through cache's upstream, a mirror): one authenticated request about a
//!   repository ([`Action`] names the token scope), the response returned with its body left to
//!   stream. Tokens are kept per (endpoint, scope), at most 1,024, until shortly before their
//!   `expires_in` runs out; a 401 to a cached token fetches a fresh one and retries once.
//! - Errors are [`Error`]: registry failures carry the HTTP status and the spec's
//!   [`ErrorCode`] (`MANIFEST_UNKNOWN`, `DENIED`, ...); digest mismatches, size limits,
//!   authentication and transport failures are their own variants.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::Error> {
//! use client::{Client, ImageRef};
//! let client = Client::from_env()?;
//! let image = ImageRef::parse("localhost:5000/team/app:1.0")?;
//! let resolved = client.resolve(&image).await?;
//! let manifest = client.get_manifest(&image.with_digest(resolved.digest.clone())).await?;
//! # let _ = manifest; Ok(()) }
//! ```

mod auth;
mod client;
mod error;

pub use auth::{BasicCredentials, Challenge, CredentialStore, parse_challenges};
pub use client::{
    Action, Client, ClientConfig, Endpoint, FetchedManifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES,
    PushedBlob, PushedManifest, Resolved,
};
pub use error::{Error, ErrorCode, Result};
/// Image references are `oci`'s, the one parser of Wharf (Docker Hub aliasing included).
pub use oci::image_ref::{
    DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_GGCR, ImageRef, ImageRefError, api_host,
    host_without_port, is_loopback, normalize_registry,
};
pub use oci::{Descriptor, Digest};
