//! parking-bridge: lane hardware → entries/exits → City Brain platform.
//!
//! Data flows one way (see `docs/ARCHITECTURE.md`):
//! drivers —[`event::RawEvent`]→ lanes —[`report::Report`]→ store/outbox → uploader → platform.

pub mod check;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod event;
pub mod health;
pub mod lane;
pub mod lane_task;
pub mod metrics;
pub mod operator;
pub mod ops;
pub mod plate;
pub mod platform;
pub mod report;
pub mod service;
pub mod sim;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod time;
pub mod uploader;
