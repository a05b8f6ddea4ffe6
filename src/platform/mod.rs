//! The City Brain platform: wire types and validation (`wire`), the SM4 envelope
//! (`envelope`), response classification (`response`), the HTTP client (`client`),
//! the commissioning check (`commission`) and the strict stand-in (`mock`).
//!
//! Only this module knows the wire format and the encryption.

pub mod client;
pub mod commission;
pub mod envelope;
pub mod mock;
pub mod response;
pub mod wire;

pub use crate::config::platform::{Secret, SecretError};
pub use client::{ClientError, PlatformClient};
pub use response::{Answer, Verdict};
pub use wire::{
    EntryRequest, ExitRequest, HeartbeatRequest, SnapshotRequest, Uplink, UplinkKind, WireError,
};
