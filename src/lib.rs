//! patchkeeper: keeps fleets of Linux hosts patched the GitOps way.
//!
//! See `ARCHITECTURE.md` for the map of modules.

pub mod cli;
pub mod model;
pub mod observed;
pub mod transport;
pub mod driver;
