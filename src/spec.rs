//! The platform spec's constants and dictionaries that more than one layer needs
//! (config checks them, the wire uses them): a leaf, importing nothing of the crate, so
//! `config` need not reach up into `platform`.

pub const ENTRY_PATH: &str = "/barrier/parking";
pub const EXIT_PATH: &str = "/barrier/away";
/// The original writes `//barrier/uploadSnapshot`; spec decision: one slash.
pub const SNAPSHOT_PATH: &str = "/barrier/uploadSnapshot";
pub const HEARTBEAT_PATH: &str = "/barrier/heartbeat";

/// Snapshots must be *less than* 500K (spec): the base64 text is strictly shorter than
/// this many characters. **Decision:** K = 1000, the stricter reading.
pub const MAX_SNAPSHOT_LEN: usize = 500_000;
/// `int` fields of width 8.
pub const MAX_INT8: i64 = 99_999_999;

/// Lengths (characters) of the text fields, from the spec's tables.
pub const MAX_OUT_ORDER_NO_LEN: usize = 64;
pub const MAX_PLATE_NO_LEN: usize = 16;
pub const MAX_LOT_NO_LEN: usize = 32;
pub const MAX_PORT_NO_LEN: usize = 32;
pub const MAX_OPERATOR_LEN: usize = 16;
pub const MAX_DEVICE_NO_LEN: usize = 64;
/// The envelope's `app_id` and `message_id`.
pub const MAX_APP_ID_LEN: usize = 32;
pub const MAX_MESSAGE_ID_LEN: usize = 64;

/// The verdict a result code maps to (the values of `[platform.result_codes]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CodeVerdict {
    Delivered,
    Duplicate,
    NeedsEntry,
    Refused,
    ConfigFault,
    Retry,
}

impl CodeVerdict {
    pub const NAMES: &'static str =
        "delivered, duplicate, needs_entry, refused, config_fault, retry";

    pub fn parse(text: &str) -> Option<CodeVerdict> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "delivered" | "success" => CodeVerdict::Delivered,
            "duplicate" | "already_delivered" => CodeVerdict::Duplicate,
            "needs_entry" | "needs_entry_first" => CodeVerdict::NeedsEntry,
            "refused" => CodeVerdict::Refused,
            "config_fault" => CodeVerdict::ConfigFault,
            "retry" => CodeVerdict::Retry,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CodeVerdict::Delivered => "delivered",
            CodeVerdict::Duplicate => "duplicate",
            CodeVerdict::NeedsEntry => "needs_entry",
            CodeVerdict::Refused => "refused",
            CodeVerdict::ConfigFault => "config_fault",
            CodeVerdict::Retry => "retry",
        }
    }
}
