//! Time as the pipeline sees it: wall-clock milliseconds since the Unix epoch (UTC),
//! formatted for the platform in the lot's local offset only at the edge.
//!
//! Logic never reads the clock itself: callers pass `now` in, so tests replay
//! scenarios deterministically and without sleeping.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// The wire format of every platform time field: `YYYY-MM-DD HH24:MI:SS`.
pub const WIRE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// `YYYY-MM-DD HH:MM:SS` in the given offset (the lot's local time).
    pub fn format_local(self, offset: FixedOffset) -> String {
        self.to_local(offset).format(WIRE_FORMAT).to_string()
    }
    pub fn to_local(self, offset: FixedOffset) -> DateTime<FixedOffset> {
        // An i64 millisecond count out of chrono's range (±262 000 years) cannot come
        // from a real clock; clamp rather than panic.
        let utc =
            DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        utc.with_timezone(&offset)
    }
    /// Parses `YYYY-MM-DD HH:MM:SS` as local time in `offset`.
    pub fn parse_local(text: &str, offset: FixedOffset) -> Option<Self> {
        let naive = NaiveDateTime::parse_from_str(text, WIRE_FORMAT).ok()?;
        let local = offset.from_local_datetime(&naive).single()?;
        Some(Timestamp(local.timestamp_millis()))
    }
}

/// China Standard Time, the default lot offset (spec decision: UTC+8).
pub fn china_standard_time() -> FixedOffset {
    // 8 h is well inside FixedOffset's ±24 h range, so this cannot fail.
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Parses an offset written as `+08:00`, `-05:30` or `UTC+8`.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let t = text.trim();
    let t = t.strip_prefix("UTC").unwrap_or(t);
    if t.is_empty() {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None => (rest.parse::<i32>().ok()?, 0),
    };
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_china_standard_time() {
        // 2019-10-04 05:36:04 UTC is 13:36:04 in Beijing.
        let t = Timestamp(1_570_167_364_000);
        assert_eq!(t.format_local(china_standard_time()), "2019-10-04 13:36:04");
    }

    #[test]
    fn parse_local_round_trips() {
        let off = china_standard_time();
        let t = Timestamp::parse_local("2019-10-04 13:36:04", off).unwrap();
        assert_eq!(t, Timestamp(1_570_167_364_000));
        assert!(Timestamp::parse_local("2019-10-04T13:36:04", off).is_none());
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+08:00"), FixedOffset::east_opt(8 * 3600));
        assert_eq!(parse_offset("UTC+8"), FixedOffset::east_opt(8 * 3600));
        assert_eq!(
            parse_offset("-05:30"),
            FixedOffset::east_opt(-(5 * 3600 + 1800))
        );
        assert_eq!(parse_offset("8"), None);
        assert_eq!(parse_offset("+25"), None);
    }
}
