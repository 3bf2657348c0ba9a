//! Wharf's access control, as pure logic: who is who ([`identity`]), what they may do
//! ([`policy`], [`scope`]), how secrets are checked ([`secret`]), the registry tokens handed to
//! clients ([`token`]) and the brake on password guessing ([`limiter`]).
//!
//! Nothing here does network I/O; the registry crate wires it to HTTP and storage.

pub mod identity;
pub mod limiter;
pub mod policy;
pub mod scope;
pub mod secret;
pub mod token;

pub use identity::{Group, Robot, Rule, Subject, User};
pub use policy::{Pattern, Policy, Principal, PrincipalKind};
pub use scope::{Action, Actions, Scope};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
