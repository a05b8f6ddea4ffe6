//! Platform answers and their classification (spec "Common response fields").

/// What a platform answer means for the report that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted now.
    Done,
    /// `OUT_ORDER_NO_DUPLICATION`: already delivered earlier (an idempotent retry).
    AlreadyDone,
    /// `ORDER_NOT_EXIST` / `OUT_ORDER_NO_NOT_EXIST`: the stay's entry must be
    /// (re)delivered first.
    NeedsEntryFirst,
    /// `PARKING_LOT_NOT_EXIST`, invalid parameters, wrong credentials: an alarm; keep
    /// the data and retry slowly.
    ConfigFault { code: String, message: String },
    /// Anything else: transient or unknown; retry with backoff.
    Retry { why: String },
}

/// A decoded answer: its verdict plus the fields the lot must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub result_code: Option<String>,
    pub result_msg: Option<String>,
    /// The platform's order number (`inner_oder_no`, spelled as on the wire).
    pub inner_oder_no: Option<String>,
    pub sign_level: Option<String>,
    pub sign_time: Option<String>,
}
