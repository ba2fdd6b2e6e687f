//! End-to-end tests: the real server over HTTP, on SQLite and on PostgreSQL.
//!
//! One test binary (one link step) holds every end-to-end module.

mod support;

mod analysis;
mod api;
mod cli;
mod connections;
mod fixes;
mod harness;
mod hooks;
mod inbound;
mod migrations;
mod monitors;
mod outage;
mod outbound;
mod receivers;
mod record;
mod record_ui;
mod secrets;
mod store;
mod ui;
mod workers;
