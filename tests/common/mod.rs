//! Helpers shared by the end-to-end tests (`mod common;` in a test file).

pub mod api;
pub mod browser;
pub mod cli;
pub mod git;
pub mod lab;
pub mod nats;
pub mod report_fleet;
pub mod webhook;
