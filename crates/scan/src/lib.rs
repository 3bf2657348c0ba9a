//! Wharf's scanning capability (issue 12): what an image holds and what is known to be wrong
//! with it. A capability in the architecture's sense: the registry core never imports it.
//!
//! - [`inventory`]: package inventories per layer (kept by layer digest, so a shared base
//!   layer is analysed once) and per image (layers combined with their whiteouts);
//! - [`analyze`]: the analysers that read package databases and metadata files out of a layer;
//! - [`db`]: the vulnerability database (feeds imported and downloaded, stored in redb) and
//!   the join of an image inventory with its index;
//! - [`results`]: what scanning keeps (layer inventories, per-manifest records);
//! - [`capability`]: scanning in the registry (scan on push, findings API, pull rules);
//! - [`findings`]: an image's findings, each with the installed package it was found in.
//!
//! Version orderings, advisory ranges and findings are pure logic in the `vuln` crate.

pub mod analyze;
pub mod capability;
pub mod db;
pub mod findings;
pub mod inventory;
pub mod layer;
pub mod report;
pub mod results;
pub mod sbom;
pub mod scanner;
pub mod source;

pub use findings::ImageFinding;
pub use inventory::{FileFinding, ImageInventory, LayerInventory, OsRelease, Package, PackageKind};
