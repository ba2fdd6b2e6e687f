//! Hookline: a self-hosted webhook hub.
//!
//! The binary is a thin shell over [`cli::run`]; tests build an [`Application`] directly.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod experiments;
pub mod fixes;
pub mod github;
pub mod group_commit;
pub mod hooks;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod incidents;
pub mod integrations;
pub mod monitors;
pub mod outbound;
pub mod people;
pub mod record;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod ttl_cache;
pub mod web;

pub use app::Application;
pub use config::Config;
