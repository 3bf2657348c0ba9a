//! SBOMs.
