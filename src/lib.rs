//! patchkeeper: keeps fleets of Linux hosts patched the GitOps way.
//!
//! See `ARCHITECTURE.md` for the map of modules.

pub mod actor;
pub mod advisory;
pub mod alert;
pub mod ansible;
pub mod apply;
pub mod cli;
pub mod cluster;
pub mod compliance;
pub mod diagnostic;
pub mod driver;
pub mod durable;
pub mod duration;
pub mod events;
pub mod fleet;
pub mod model;
pub mod observe;
pub mod observed;
pub mod open_files;
pub mod package;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod rapid;
pub mod reconcile;
pub mod redact;
pub mod report;
pub mod request;
pub mod schema;
pub mod service;
pub mod simulate;
pub mod source;
pub mod ssh_target;
pub mod status;
pub mod terminal;
pub mod token;
pub mod transport;
pub mod trust;
pub mod validate;
pub mod version;
pub mod view;
pub mod window;
