//! The management API's request and response bodies (`/api/v1/...`), defined once and shared
//! by the server (crates/registry, the cache capability), the service operations behind it
//! (`service::manage`) and the CLI's typed client (`wharf ... --server`). Serde only: no HTTP,
//! no storage, so a client never pulls in the server.
//!
//! The JSON written and read here is the wire format the OpenAPI document
//! (crates/registry/src/openapi.json) describes; change both together.

use serde::{Deserialize, Serialize};

pub use auth::{Actions, Group, Rule, Subject};

/// The media type of the streamed answers of long operations (`POST /api/v1/gc`,
/// `/api/v1/retention/apply`, `/api/v1/cache/warm` with this `Accept`): one JSON object a line,
/// progress lines, then `{"result": ...}` (or `{"errors": [...]}` when it failed after the
/// answer began).
pub const NDJSON: &str = "application/x-ndjson";

/// Users: people with a password (`/api/v1/users`).
pub mod users {
    use super::*;

    /// `POST /api/v1/users`: a new user.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct CreateUser {
        /// Login name.
        pub name: String,
        /// Password (8 to 1024 characters).
        pub password: String,
        /// Make the user an administrator.
        #[serde(default)]
        pub admin: bool,
    }

    /// `PUT /api/v1/users/{name}/password`.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct SetPassword {
        /// The new password.
        pub password: String,
    }

    /// `PUT /api/v1/users/{name}/disabled`.
    #[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct SetDisabled {
        /// Disabled (true) or enabled again (false).
        pub disabled: bool,
    }

    /// A user as the API shows it (never its password hash).
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct UserView {
        /// Login name.
        pub name: String,
        /// An administrator.
        pub admin: bool,
        /// Cannot log in.
        pub disabled: bool,
        /// Unix seconds.
        pub created: u64,
    }

    impl From<&auth::User> for UserView {
        fn from(u: &auth::User) -> Self {
            UserView {
                name: u.name.clone(),
                admin: u.admin,
                disabled: u.disabled,
                created: u.created,
            }
        }
    }
}

/// Robots: machine accounts with a secret (`/api/v1/robots`).
pub mod robots {
    use super::*;

    /// `POST /api/v1/robots`: a new robot account.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct CreateRobot {
        /// Name (the login is `robot$NAME`).
        pub name: String,
        /// Repository patterns it may act on (at least one).
        pub repos: Vec<String>,
        /// What it may do there.
        pub actions: Actions,
        /// Lifetime; never expires when absent.
        #[serde(default)]
        pub expires_in_seconds: Option<u64>,
        /// Free text.
        #[serde(default)]
        pub description: String,
    }

    /// A robot as the API shows it (never its secret or its hash).
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct RobotView {
        /// Name without the prefix.
        pub name: String,
        /// Login name (`robot$NAME`).
        pub login: String,
        /// Repository patterns.
        pub repos: Vec<String>,
        /// Actions.
        pub actions: Actions,
        /// Unix seconds after which it is refused.
        pub expires_at: Option<u64>,
        /// Revoked.
        pub revoked: bool,
        /// Unix seconds.
        pub created: u64,
        /// Free text.
        pub description: String,
    }

    impl RobotView {
        /// Whether the robot may log in at `now`.
        pub fn active(&self, now: u64) -> bool {
            !self.revoked && self.expires_at.is_none_or(|e| now < e)
        }
    }

    impl From<&auth::Robot> for RobotView {
        fn from(r: &auth::Robot) -> Self {
            RobotView {
                name: r.name.clone(),
                login: format!("{}{}", auth::identity::ROBOT_PREFIX, r.name),
                repos: r.repos.clone(),
                actions: r.actions,
                expires_at: r.expires_at,
                revoked: r.revoked,
                created: r.created,
                description: r.description.clone(),
            }
        }
    }

    /// A robot's new secret, shown once (create and rotate).
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct RobotSecret {
        /// Login name (`robot$NAME`).
        pub login: String,
        /// The secret.
        pub secret: String,
    }
}

/// Groups and permission rules (`/api/v1/groups`, `/api/v1/rules`). A group and a rule are
/// shown as they are stored ([`Group`], [`Rule`]).
pub mod rules {
    use super::*;

    /// `PUT /api/v1/groups/{name}`: the group's members.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct SetGroup {
        /// Login names (robots as `robot$NAME`).
        pub members: Vec<String>,
    }

    /// `POST /api/v1/rules`: a new grant.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct CreateRule {
        /// `user:NAME`, `group:NAME`, `robot:NAME` or `anonymous`.
        pub subject: String,
        /// Repository pattern.
        pub repos: String,
        /// Actions (at least one).
        pub actions: Actions,
    }
}

/// The audit log (`/api/v1/audit`).
pub mod audit {
    use super::*;

    /// One audited event: who did what to which repository, from where, when.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct AuditEvent {
        /// Unix seconds.
        pub time: u64,
        /// `push`, `delete`, `mount`, `auth.failed`, `identity.change`, ...
        pub action: String,
        /// Login name, `anonymous`, or `cli:USER` for the command line on a data directory.
        pub actor: String,
        /// Repository, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub repo: Option<String>,
        /// Digest or reference, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub target: Option<String>,
        /// Source address, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source: Option<String>,
        /// Free text.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub detail: String,
    }

    /// `GET /api/v1/audit?...`: which events, newest first.
    #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
    pub struct AuditQuery {
        /// Only this actor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub actor: Option<String>,
        /// Only this repository.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub repo: Option<String>,
        /// Only this action.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub action: Option<String>,
        /// Only events at or after this time (unix seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub since: Option<u64>,
        /// At most this many (100 when absent; 1 to 10,000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<usize>,
    }
}

/// Tags: history and rollback (`/api/v1/tags/...`).
pub mod tags {
    use super::*;

    /// `GET /api/v1/tags/history?repo=R&tag=T&limit=N`.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct HistoryQuery {
        /// Repository.
        pub repo: String,
        /// Tag.
        pub tag: String,
        /// At most this many changes (100 when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<usize>,
    }

    /// `POST /api/v1/tags/rollback`: move a tag back, to a digest or a number of changes ago.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct Rollback {
        /// Repository.
        pub repo: String,
        /// Tag.
        pub tag: String,
        /// Move the tag to this digest...
        #[serde(default)]
        pub to: Option<String>,
        /// ...or to where it pointed this many changes ago.
        #[serde(default)]
        pub steps: Option<usize>,
    }

    /// Where a rollback moved the tag.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct RolledBack {
        /// Repository.
        pub repo: String,
        /// Tag.
        pub tag: String,
        /// The digest the tag now points at.
        pub digest: String,
    }
}

/// Garbage collection (`POST /api/v1/gc`).
pub mod gc {
    use super::*;

    /// `POST /api/v1/gc`: one collection now (an empty body means the server's defaults, not
    /// dry).
    #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct GcRequest {
        /// Report only; delete nothing.
        #[serde(default)]
        pub dry_run: bool,
        /// Keep what is younger than this (seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub grace_seconds: Option<u64>,
        /// Delete uploads idle for longer than this (seconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub upload_expiry_seconds: Option<u64>,
    }

    /// What a collection did (or, dry, would do).
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub struct GcReport {
        /// Nothing was deleted.
        pub dry_run: bool,
        /// Grace period used.
        pub grace_seconds: u64,
        /// Upload expiry used.
        pub upload_expiry_seconds: u64,
        /// Unix seconds when it started.
        pub started_at: u64,
        /// How long it took.
        pub duration_seconds: f64,
        /// Repositories scanned.
        pub repositories: u64,
        /// Manifests scanned.
        pub manifests: u64,
        /// Unreferenced blobs deleted (metadata and file).
        pub blobs_deleted: u64,
        /// Blob files deleted that no metadata knew (left by a crash).
        pub orphan_files_deleted: u64,
        /// Bytes of blob files deleted.
        pub bytes_freed: u64,
        /// Links deleted whose blob stays (referenced by another repository or still
        /// protected).
        pub links_deleted: u64,
        /// Expired upload sessions deleted (record and file).
        pub uploads_expired: u64,
        /// Upload files without a session deleted.
        pub orphan_uploads_deleted: u64,
        /// Bytes of upload files deleted.
        pub upload_bytes_freed: u64,
        /// Unreferenced items kept because they are young, were touched, or were referenced
        /// again while the collection ran.
        pub kept_recent: u64,
        /// Links found without a creation time (older data): stamped now, collectable after
        /// the grace period.
        pub links_stamped: u64,
        /// Stored manifests that did not parse (their repositories' blobs were all kept).
        pub unparsable_manifests: u64,
        /// There was more to collect than one run handles; run again.
        pub incomplete: bool,
    }
}

/// Retention (`POST /api/v1/retention/plan|apply`). The plans and results are the service's
/// (`service::retention::{RepoPlan, Applied}`), which carry the planner's reasons.
pub mod retention {
    use super::*;

    /// The body of plan and apply (an empty body means every repository).
    #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct RetentionRequest {
        /// Only this repository.
        #[serde(default)]
        pub repo: Option<String>,
    }

    /// One line of `wharf versions` (`GET /api/v1/versions?repo=R`).
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct VersionRow {
        /// The tag.
        pub tag: String,
        /// The manifest it points at.
        pub digest: String,
        /// The manifest's media type.
        pub media_type: String,
        /// Bytes: the manifest, plus for an index its child manifests, plus the distinct config
        /// and layer blobs they reference (as their descriptors declare).
        pub size: u64,
        /// Unix seconds when the tag was last set (else when its manifest was first pushed).
        pub pushed: Option<u64>,
        /// Unix seconds of the manifest's last pull, if it was pulled since tracking began.
        pub last_pull: Option<u64>,
    }
}

/// The pull-through cache (`/api/v1/cache...`, when one is configured).
pub mod cache {
    use super::*;

    /// `POST /api/v1/cache/warm`: fetch images into the cache now.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct WarmRequest {
        /// Image references of cached upstreams (1 to 100).
        pub images: Vec<String>,
        /// `os/arch[/variant]` of an index to fetch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub platform: Option<String>,
    }

    /// `POST /api/v1/cache/pins` (and `DELETE ...?image=`): an image pattern to keep.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields)]
    pub struct PinRequest {
        /// Image pattern.
        pub image: String,
    }

    /// `GET /api/v1/cache/pins`.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct Pins {
        /// Pins from the configuration.
        pub configured: Vec<String>,
        /// Pins made at run time.
        pub runtime: Vec<String>,
    }

    /// An upstream registry of the cache.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct UpstreamView {
        /// Its host name, as clients name it.
        pub host: String,
        /// Where the cache reaches it.
        pub endpoint: String,
        /// The local repository prefix of its images.
        pub prefix: String,
        /// Whether it is used.
        pub enabled: bool,
        /// How long a tag is trusted without asking the upstream.
        pub tag_ttl_seconds: u64,
    }

    /// `GET /api/v1/cache`: the cache's limits, upstreams and images (`I`: the cache's image
    /// record on the server, any JSON-shaped type on a client).
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct CacheListing<I> {
        /// The size limit (0: none).
        pub max_bytes: u64,
        /// Bytes of the cached images.
        pub image_bytes: u64,
        /// The upstreams.
        pub upstreams: Vec<UpstreamView>,
        /// Cached images, least recently pulled first.
        pub images: Vec<I>,
    }

    /// `POST /api/v1/cache/evict` (an empty body means the defaults: not dry).
    #[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct EvictRequest {
        /// Report only; evict nothing.
        pub dry_run: bool,
    }
}

/// Signatures and trusted keys (`/api/v1/signatures`, `/api/v1/trusted-keys`).
pub mod signing {
    use super::*;

    /// A key the server trusts.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct TrustedKey {
        /// Its configured name.
        pub name: String,
        /// `sha256:` of its SPKI DER.
        pub key_id: String,
        /// Its algorithm.
        pub algorithm: String,
    }

    /// A signature a trusted key verified.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct VerifiedView {
        /// Where it was found.
        pub source: String,
        /// `simple-signing` or `sigstore-bundle`.
        pub format: String,
        /// The name of the key that verified it.
        pub key: String,
        /// That key's id.
        pub key_id: String,
        /// The signed reference or subject name, if any.
        pub identity: Option<String>,
        /// The signed annotations.
        pub annotations: std::collections::BTreeMap<String, serde_json::Value>,
    }

    /// A signature (or manifest) looked at and refused.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
    pub struct RejectedView {
        /// Where it was found.
        pub source: String,
        /// Why it was refused.
        pub reason: String,
    }

    /// `GET /api/v1/signatures?repo=R&reference=REF`: an image's signatures.
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    pub struct SignatureReport {
        /// The image's digest.
        pub digest: String,
        /// Names of the trusted keys.
        pub trusted_keys: Vec<String>,
        /// Signatures that verified.
        pub verified: Vec<VerifiedView>,
        /// What was refused, and why.
        pub rejected: Vec<RejectedView>,
    }
}

/// Online backups (`POST /api/v1/backup`): the answer is a tar archive (its layout and
/// manifest are `store::backup`'s), described by these headers.
pub mod backup {
    /// The answer's media type.
    pub const MEDIA_TYPE: &str = "application/x-tar";
    /// Response header: the blobs the backup holds (a client's progress total).
    pub const BLOBS_HEADER: &str = "wharf-backup-blobs";
    /// Response header: the bytes of those blobs.
    pub const BYTES_HEADER: &str = "wharf-backup-bytes";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_keep_the_wire_names() {
        let u = auth::User {
            name: "alice".into(),
            password_hash: "h".into(),
            admin: true,
            disabled: false,
            created: 7,
            source: None,
        };
        assert_eq!(
            serde_json::to_value(users::UserView::from(&u)).unwrap(),
            serde_json::json!({"name": "alice", "admin": true, "disabled": false, "created": 7})
        );
        let r = auth::Robot {
            name: "ci".into(),
            secret_hash: "h".into(),
            repos: vec!["a/*".into()],
            actions: Actions::parse_list("pull,push").unwrap(),
            expires_at: None,
            revoked: false,
            created: 1,
            description: String::new(),
        };
        let v = serde_json::to_value(robots::RobotView::from(&r)).unwrap();
        assert_eq!(v["login"], "robot$ci");
        assert_eq!(v["actions"], serde_json::json!(["pull", "push"]));
        assert!(v.get("secret_hash").is_none());
        // Unknown fields are refused, absent optional ones default.
        assert!(
            serde_json::from_str::<users::CreateUser>(r#"{"name":"a","password":"p","x":1}"#)
                .is_err()
        );
        let g: gc::GcRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(g, gc::GcRequest::default());
    }
}
