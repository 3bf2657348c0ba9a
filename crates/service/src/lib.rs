//! Wharf's registry services, with no HTTP types: identity storage, garbage collection,
//! retention, signature verdicts, pull tracking and tag rules, over the storage seams of `store`.
//!
//! A [`Service`] is built once by a [`ServiceBuilder`] and shared (behind an `Arc`) by every
//! front door: the HTTP API in `registry`, and the CLI on a data directory.

pub mod access;
pub mod backup;
pub mod gc;
pub mod identities;
pub mod manage;
pub mod pulls;
pub mod retention;
pub mod signatures;
pub mod source;
pub mod tagrules;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use prometheus_client::registry::Registry as PromRegistry;
use store::{BlobStore, MetaStore};

/// Limits and knobs of the registry API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest `n` honoured in paginated listings.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: oci::manifest::MAX_MANIFEST_BYTES,
            max_page: 10_000,
        }
    }
}

/// Why a [`ServiceBuilder`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A limit of zero would refuse every manifest or empty every listing.
    #[error("invalid limits: {0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// The registry's services over one blob store and one metadata store, shared by the front
/// doors. Built by [`Service::builder`].
pub struct Service {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    /// Access control (users, robots, tokens, permissions, audit log); everyone may do
    /// everything without it.
    access: Option<Arc<access::AccessControl>>,
    signing: Option<Arc<signatures::SigningPolicy>>,
    tag_rules: tagrules::TagRules,
    /// Garbage collection, storage use, and the per-digest locks and touches it relies on.
    gc: Arc<gc::Collector>,
    limits: Limits,
    /// Manifest pulls noted since the last flush (pulls.rs).
    pulls: pulls::PullTracker,
    /// Retention policies and their schedule (retention.rs).
    retention: retention::RetentionRules,
    /// One retention run at a time.
    retention_lock: tokio::sync::Mutex<()>,
    /// Identities, rules and the audit log: access control's when configured (so identity
    /// changes are serialized with its own), else over the same metadata store.
    identities: identities::Identities,
}

/// Collects a [`Service`]'s optional parts; [`ServiceBuilder::build`] checks them.
pub struct ServiceBuilder {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    access: Option<Arc<access::AccessControl>>,
    signing: Option<Arc<signatures::SigningPolicy>>,
    tag_rules: tagrules::TagRules,
    limits: Limits,
    retention: retention::RetentionRules,
    pull_capacity: usize,
    locks: Option<Arc<store::DigestLocks>>,
}

impl ServiceBuilder {
    /// Access control (users, robots, tokens, permissions). Without it everyone may do
    /// everything; with it, retention records its deletions in the audit log.
    pub fn access(mut self, ac: Arc<access::AccessControl>) -> Self {
        self.access = Some(ac);
        self
    }

    /// Trusted signing keys and the rules that require verified signatures for pulls.
    pub fn signing(mut self, policy: Arc<signatures::SigningPolicy>) -> Self {
        self.signing = Some(policy);
        self
    }

    /// Immutable-tag rules (none by default).
    pub fn tag_rules(mut self, rules: tagrules::TagRules) -> Self {
        self.tag_rules = rules;
        self
    }

    /// Retention rules and their schedule (none by default).
    pub fn retention(mut self, rules: retention::RetentionRules) -> Self {
        self.retention = rules;
        self
    }

    /// Size and paging limits ([`Limits::default`] otherwise).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Most manifests whose pulls are held between flushes
    /// ([`pulls::DEFAULT_CAPACITY`] otherwise).
    pub fn pull_capacity(mut self, capacity: usize) -> Self {
        self.pull_capacity = capacity;
        self
    }

    /// The stores' per-digest lock table, when other parts (the pull-through cache) commit and
    /// link blobs in the same stores; a table of its own otherwise. See [`Service::locks`].
    pub fn locks(mut self, locks: Arc<store::DigestLocks>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Checks the settings and builds the service.
    pub fn build(self) -> Result<Service, BuildError> {
        if self.limits.max_manifest_bytes == 0 {
            return Err(BuildError::ZeroLimit("max_manifest_bytes"));
        }
        if self.limits.max_page == 0 {
            return Err(BuildError::ZeroLimit("max_page"));
        }
        let locks = self
            .locks
            .unwrap_or_else(|| Arc::new(store::DigestLocks::new()));
        let gc = Arc::new(gc::Collector::new(
            self.blobs.clone(),
            self.meta.clone(),
            locks,
        ));
        let identities = self.access.as_ref().map_or_else(
            || identities::Identities::new(self.meta.clone()),
            |a| a.identities().clone(),
        );
        Ok(Service {
            blobs: self.blobs,
            meta: self.meta,
            access: self.access,
            signing: self.signing,
            tag_rules: self.tag_rules,
            gc,
            limits: self.limits,
            pulls: pulls::PullTracker::new(self.pull_capacity),
            retention: self.retention,
            retention_lock: tokio::sync::Mutex::new(()),
            identities,
        })
    }
}

impl Service {
    /// Starts building a service over these stores.
    pub fn builder(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>) -> ServiceBuilder {
        ServiceBuilder {
            blobs,
            meta,
            access: None,
            signing: None,
            tag_rules: tagrules::TagRules::default(),
            limits: Limits::default(),
            retention: retention::RetentionRules::default(),
            pull_capacity: pulls::DEFAULT_CAPACITY,
            locks: None,
        }
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// Access control, when configured.
    pub fn access(&self) -> Option<&Arc<access::AccessControl>> {
        self.access.as_ref()
    }

    /// Identities, rules and the audit log (access control's when it is configured).
    pub fn identities(&self) -> &identities::Identities {
        &self.identities
    }

    /// The management operations every front door calls (the HTTP API, the CLI on a data
    /// directory): see [`manage`].
    pub fn manage(&self) -> manage::Manage<'_> {
        manage::Manage::new(self)
    }

    /// The signature policy, when one is configured.
    pub fn signing(&self) -> Option<&Arc<signatures::SigningPolicy>> {
        self.signing.as_ref()
    }

    /// The immutable-tag rules.
    pub fn tag_rules(&self) -> &tagrules::TagRules {
        &self.tag_rules
    }

    /// Size and paging limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The garbage collector (storage use, scheduled and on-demand collections; docs/gc.md).
    pub fn collector(&self) -> &Arc<gc::Collector> {
        &self.gc
    }

    /// The plain source of pulls: manifests and blobs as the stores hold them (a capability
    /// may decorate it; see [`source::ContentSource`]).
    pub fn store_source(&self) -> source::StoreSource {
        source::StoreSource::new(self.meta.clone(), self.gc.clone())
    }

    /// Runs one garbage collection now (after any running one) and returns its report. For
    /// other modules, e.g. the pull-through cache after it evicts manifests.
    pub async fn collect_garbage(&self, opts: &gc::GcOptions) -> Result<gc::GcReport, gc::GcError> {
        self.gc.collect(opts).await
    }

    /// Registers the services' metrics (garbage collection and storage use, retention, pull
    /// tracking, authentication) into `prom`, for the HTTP layer's `/metrics`.
    pub fn register_metrics(&self, prom: &mut PromRegistry) {
        if let Some(ac) = &self.access {
            ac.register_metrics(prom);
        }
        self.gc.metrics().register(prom);
        self.retention.register_metrics(prom);
        prom.register(
            "pulls_untracked",
            "Manifest pulls not recorded because the pull-tracking map was full",
            self.pulls.dropped.clone(),
        );
    }
}
