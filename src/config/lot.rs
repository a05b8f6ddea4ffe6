//! `[lot]`: the parking lot as City Brain knows it.

use super::Invalid;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotConfig {
    /// City Brain lot id (`parking_lot_no`, at most 32 characters).
    pub parking_lot_no: String,
    pub total_spaces: i64,
}

impl LotConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if self.parking_lot_no.is_empty() || self.parking_lot_no.chars().count() > 32 {
            out.push(Invalid::new(
                "lot.parking_lot_no",
                "must be 1 to 32 characters",
            ));
        }
        if !(0..=99_999_999).contains(&self.total_spaces) {
            out.push(Invalid::new(
                "lot.total_spaces",
                "must be between 0 and 99999999",
            ));
        }
    }
}
