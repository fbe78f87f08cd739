//! hallmonitor: an edge agent for data-center facility telemetry.
//!
//! The crate is laid out by pipeline stage; see ARCHITECTURE.md for the map.

pub mod agent;
pub mod backoff;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod ha;
pub mod logging;
pub mod model;
pub mod outbox;
pub mod profiles;
pub mod publish;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sources;
pub mod status;
pub mod store;
