//! Version management as pure logic, free of I/O:
//!
//! - [`semver`]: semantic versions in tags (`[v]MAJOR.MINOR.PATCH[-PRERELEASE]`) and their
//!   precedence, and [`sort_versions`], the order `wharf versions` lists tags in.
//! - [`retention`]: retention policies and the planner that maps a repository's tags,
//!   manifests, push and pull times to a plan of deletions, each with its reason.
//!
//! `keep_tags` patterns are [`oci::Glob`]s, the one glob matcher of Wharf.
//!
//! The registry gathers the inputs from storage, asks the planner, and carries the plan out.

pub mod retention;
pub mod semver;

pub use retention::{Plan, Policy, Repo, plan};
pub use semver::{Version, sort_versions};
