//! The platform's dictionaries for vehicles (spec §3.3.1 `car_type`, §3.3.3 `plate_color`)
//! and plate masking for logs. Plate *format* rules live in `lane::plate_format`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Province abbreviations that open a civil plate. One of them, 黑 (Heilongjiang), is
/// also a colour word some cameras put before the plate (黑 = black).
pub const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// `plate_color` dictionary, `pnc_01` … `pnc_08`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum PlateColor {
    #[serde(rename = "pnc_01")]
    #[default]
    Unknown,
    #[serde(rename = "pnc_02")]
    Blue,
    #[serde(rename = "pnc_03")]
    Yellow,
    #[serde(rename = "pnc_04")]
    White,
    #[serde(rename = "pnc_05")]
    Black,
    #[serde(rename = "pnc_06")]
    Green,
    #[serde(rename = "pnc_07")]
    YellowGreen,
    #[serde(rename = "pnc_08")]
    Special,
}

impl PlateColor {
    pub const ALL: [PlateColor; 8] = [
        PlateColor::Unknown,
        PlateColor::Blue,
        PlateColor::Yellow,
        PlateColor::White,
        PlateColor::Black,
        PlateColor::Green,
        PlateColor::YellowGreen,
        PlateColor::Special,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PlateColor::Unknown => "pnc_01",
            PlateColor::Blue => "pnc_02",
            PlateColor::Yellow => "pnc_03",
            PlateColor::White => "pnc_04",
            PlateColor::Black => "pnc_05",
            PlateColor::Green => "pnc_06",
            PlateColor::YellowGreen => "pnc_07",
            PlateColor::Special => "pnc_08",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for PlateColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `car_type` dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CarType {
    /// Ordinary, charged.
    #[default]
    Normal,
    /// Police, fire, ambulance…: not charged.
    Special,
    /// White-listed: not charged.
    White,
    /// Monthly card: not charged.
    Parkcard,
}

impl CarType {
    pub const ALL: [CarType; 4] = [
        CarType::Normal,
        CarType::Special,
        CarType::White,
        CarType::Parkcard,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CarType::Normal => "normal",
            CarType::Special => "special",
            CarType::White => "white",
            CarType::Parkcard => "parkcard",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Types the platform treats as not charged.
    pub fn is_exempt(self) -> bool {
        !matches!(self, CarType::Normal)
    }
}

impl fmt::Display for CarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Whether log lines mask plates (`[logging] mask_plates`, on until told otherwise).
/// Here, in the leaf module, so that every layer's log lines (drivers included) follow
/// the one setting.
static MASK_IN_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sets whether log lines mask plates.
pub fn set_log_masking(mask: bool) {
    MASK_IN_LOGS.store(mask, std::sync::atomic::Ordering::Relaxed);
}

pub fn log_masking() -> bool {
    MASK_IN_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A plate as a log line shows it: masked unless masking is off.
pub fn for_log(plate: &str) -> std::borrow::Cow<'_, str> {
    if log_masking() {
        std::borrow::Cow::Owned(mask(plate))
    } else {
        std::borrow::Cow::Borrowed(plate)
    }
}

/// A plate for logs: `闽A12345` → `闽A1***5`. Plates are personal data, so logs carry
/// this form unless the operator turns masking off.
pub fn mask(plate: &str) -> String {
    let chars: Vec<char> = plate.chars().collect();
    if chars.len() <= 3 {
        return "*".repeat(chars.len());
    }
    let keep_head = 3.min(chars.len() - 1);
    let mut out: String = chars[..keep_head].iter().collect();
    out.push_str("***");
    out.push(chars[chars.len() - 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_round_trip() {
        for c in PlateColor::ALL {
            assert_eq!(PlateColor::from_code(c.code()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.code())
            );
        }
        assert_eq!(PlateColor::from_code("pnc_09"), None);
    }

    #[test]
    fn car_types_round_trip() {
        for c in CarType::ALL {
            assert_eq!(CarType::from_code(c.code()), Some(c));
        }
        assert!(!CarType::Normal.is_exempt());
        assert!(CarType::Parkcard.is_exempt());
    }

    #[test]
    fn masks_plates() {
        assert_eq!(mask("闽A12345"), "闽A1***5");
        assert_eq!(mask("粤BD12345"), "粤BD***5");
        assert_eq!(mask("AB"), "**");
        assert_eq!(for_log("闽A12345"), "闽A1***5", "masked by default");
    }
}
