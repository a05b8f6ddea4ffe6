//! The City Brain platform: wire types (`wire`) holding only valid values (`field`), the SM4 envelope
//! (`envelope`), response classification (`response`), the HTTP client (`client`),
//! the commissioning check (`commission`) and the strict stand-in (`mock`).
//!
//! Only this module knows the wire format and the encryption.
//!
//! Where the spec's decisions (`shared/spec/citybrain-uplink.md`) live:
//! - one slash in every path, paths configurable: [`wire::SNAPSHOT_PATH`] & co.,
//!   `config::platform::PathsConfig`;
//! - times in lot-local time, default UTC+8: `PlatformConfig::offset`;
//! - answers plain JSON or an envelope: [`response::decode`];
//! - the revised classification order (a known code decides, else `success:true` is
//!   delivered, else refused; no answer → retry) and the site's own codes:
//!   [`response::ResultCodes`], [`response::codes`];
//! - `device_no` only when configured: `PlatformClient::prepare`.

/// Result codes whose text is their own name: `NAME` → `pub const NAME: &str = "NAME";`.
macro_rules! named_codes {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        $($(#[$doc])* pub const $name: &str = stringify!($name);)*
    };
}

pub mod client;
pub mod commission;
pub mod envelope;
pub mod field;
pub mod mock;
pub mod response;
pub mod wire;

pub use crate::config::platform::{Secret, SecretError};
pub use client::{ClientError, PlatformClient};
pub use response::{Answer, Verdict};
pub use wire::{
    EntryRequest, ExitRequest, HeartbeatRequest, SnapshotRequest, Uplink, UplinkKind, WireError,
};
