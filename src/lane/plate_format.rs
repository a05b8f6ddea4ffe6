//! Chinese plate formats (GA 36), the colour each format implies, and the `car_type`
//! rules. Plates are never rejected for their format: an unknown format is reported as
//! read, with the camera's colour.
//!
//! Rules (documented in `docs/lane-logic.md`):
//! - `car_type`: white list → `white`; monthly cards → `parkcard`; police (…警),
//!   armed police (WJ…), embassy (使…/…使) and consulate (…领) plates → `special`;
//!   everything else (incl. 港/澳/学/挂) → `normal`.
//! - colour when the camera says unknown: standard → blue; new-energy small → green;
//!   new-energy large → yellow-green; 警/WJ → white; 使/领/港/澳 → black; 学/挂 → yellow.

use crate::config::LotConfig;
use crate::plate::{CarType, PlateColor};

pub use crate::plate::PROVINCES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateFormat {
    /// 闽A12345: province, letter, five letters/digits.
    Standard,
    /// 粤AD12345: new energy, small car (D/F after the city letter).
    NewEnergySmall,
    /// 粤A12345D: new energy, large vehicle (D/F at the end).
    NewEnergyLarge,
    /// 闽A1234警
    Police,
    /// WJ01-12345, WJ闽12345
    ArmedPolice,
    /// 使123456, 京123456使
    Embassy,
    /// 沪A1234领
    Consulate,
    /// 粤Z1234港
    HongKong,
    /// 粤Z1234澳
    Macau,
    /// 闽A1234学
    Coach,
    /// 闽A1234挂
    Trailer,
    /// None of the above (still reported as read).
    Unknown,
}

fn is_province(c: char) -> bool {
    PROVINCES.contains(c)
}

/// Letters used on plates: A–Z without I and O.
fn is_plate_letter(c: char) -> bool {
    c.is_ascii_uppercase() && c != 'I' && c != 'O'
}

fn is_plate_alnum(c: char) -> bool {
    c.is_ascii_digit() || is_plate_letter(c)
}

/// Longest plate the platform accepts (`plate_no`, 16 characters).
pub const PLATE_MAX_CHARS: usize = 16;

/// A camera's plate text as the platform wants it: no spaces or `·` separators, ASCII
/// letters upper case. `None` when nothing usable is left (empty, control characters,
/// longer than the platform accepts): such a read counts as "no plate".
pub fn normalise(text: &str) -> Option<String> {
    let plate: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '·' && *c != '•')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let n = plate.chars().count();
    (n > 0 && n <= PLATE_MAX_CHARS && !plate.chars().any(char::is_control)).then_some(plate)
}

/// Classifies plate text (no spaces, upper case as the camera sends it).
pub fn format_of(plate: &str) -> PlateFormat {
    let c: Vec<char> = plate.chars().filter(|c| *c != '-' && *c != '·').collect();
    let n = c.len();
    if n >= 2 && c[0] == 'W' && c[1] == 'J' {
        let rest = &c[2..];
        let ok_len = (5..=8).contains(&rest.len());
        let ok_chars = rest
            .iter()
            .enumerate()
            .all(|(i, ch)| is_plate_alnum(*ch) || (i == 0 && is_province(*ch)));
        return if ok_len && ok_chars {
            PlateFormat::ArmedPolice
        } else {
            PlateFormat::Unknown
        };
    }
    if n == 7 && c[0] == '使' && c[1..].iter().all(|ch| ch.is_ascii_digit()) {
        return PlateFormat::Embassy;
    }
    if n < 7 || !is_province(c[0]) {
        return PlateFormat::Unknown;
    }
    let last = c[n - 1];
    let body_ok = |range: std::ops::Range<usize>| c[range].iter().all(|ch| is_plate_alnum(*ch));
    match (n, last) {
        (8, '使') if c[1..7].iter().all(|ch| ch.is_ascii_digit()) => PlateFormat::Embassy,
        (7, '警') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::Police,
        (7, '领') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::Consulate,
        (7, '港') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::HongKong,
        (7, '澳') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::Macau,
        (7, '学') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::Coach,
        (7, '挂') if is_plate_letter(c[1]) && body_ok(2..6) => PlateFormat::Trailer,
        (7, _) if is_plate_letter(c[1]) && body_ok(2..7) => PlateFormat::Standard,
        (8, _) if is_plate_letter(c[1]) && body_ok(2..8) => {
            if matches!(c[2], 'D' | 'F') && c[4..8].iter().all(|ch| ch.is_ascii_digit()) {
                PlateFormat::NewEnergySmall
            } else if matches!(last, 'D' | 'F') && c[2..7].iter().all(|ch| ch.is_ascii_digit()) {
                PlateFormat::NewEnergyLarge
            } else {
                PlateFormat::Unknown
            }
        }
        _ => PlateFormat::Unknown,
    }
}

impl PlateFormat {
    /// The colour this format is issued in; `Unknown` where a format comes in several.
    pub fn implied_color(self) -> PlateColor {
        match self {
            // Standard plates are blue for small cars and yellow for large ones; blue is
            // by far the most common at a car park barrier.
            PlateFormat::Standard => PlateColor::Blue,
            PlateFormat::NewEnergySmall => PlateColor::Green,
            PlateFormat::NewEnergyLarge => PlateColor::YellowGreen,
            PlateFormat::Police | PlateFormat::ArmedPolice => PlateColor::White,
            PlateFormat::Embassy
            | PlateFormat::Consulate
            | PlateFormat::HongKong
            | PlateFormat::Macau => PlateColor::Black,
            PlateFormat::Coach | PlateFormat::Trailer => PlateColor::Yellow,
            PlateFormat::Unknown => PlateColor::Unknown,
        }
    }

    /// Formats of vehicles the platform treats as `special` (not charged).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            PlateFormat::Police
                | PlateFormat::ArmedPolice
                | PlateFormat::Embassy
                | PlateFormat::Consulate
        )
    }
}

/// The colour to report: the camera's when it knows, else the format's.
pub fn effective_color(plate: &str, camera: PlateColor) -> PlateColor {
    if camera != PlateColor::Unknown {
        camera
    } else {
        format_of(plate).implied_color()
    }
}

/// The `car_type` to report for a plate in this lot.
pub fn car_type_of(plate: &str, lot: &LotConfig) -> CarType {
    if lot.white_list.iter().any(|p| p == plate) {
        CarType::White
    } else if lot.monthly_cards.iter().any(|p| p == plate) {
        CarType::Parkcard
    } else if format_of(plate).is_special() {
        CarType::Special
    } else {
        CarType::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_documented_format() {
        let cases = [
            ("闽A12345", PlateFormat::Standard),
            ("京AD12345", PlateFormat::NewEnergySmall),
            ("粤BFA1234", PlateFormat::NewEnergySmall),
            ("沪A12345D", PlateFormat::NewEnergyLarge),
            ("闽A1234警", PlateFormat::Police),
            ("WJ0112345", PlateFormat::ArmedPolice),
            ("WJ闽12345", PlateFormat::ArmedPolice),
            ("使123456", PlateFormat::Embassy),
            ("京123456使", PlateFormat::Embassy),
            ("沪A1234领", PlateFormat::Consulate),
            ("粤Z1234港", PlateFormat::HongKong),
            ("粤Z1234澳", PlateFormat::Macau),
            ("闽A1234学", PlateFormat::Coach),
            ("闽A1234挂", PlateFormat::Trailer),
        ];
        for (plate, want) in cases {
            assert_eq!(format_of(plate), want, "{plate}");
        }
    }

    #[test]
    fn rejects_malformed_plates_as_unknown() {
        for plate in [
            "",
            "闽A1234",
            "XA12345",
            "闽AO2345",
            "闽A123456789",
            "无牌车",
            "闽112345",
            "WJ1",
        ] {
            assert_eq!(format_of(plate), PlateFormat::Unknown, "{plate}");
        }
    }

    #[test]
    fn camera_text_is_normalised_or_refused() {
        assert_eq!(normalise(" 闽A·12345 ").as_deref(), Some("闽A12345"));
        assert_eq!(normalise("闽a 12345").as_deref(), Some("闽A12345"));
        assert_eq!(normalise("  "), None);
        assert_eq!(normalise("闽A1\u{7}2345"), None);
        assert_eq!(normalise("闽A123456789012345"), None, "17 characters");
    }

    #[test]
    fn camera_colour_wins_and_format_fills_unknown() {
        let cases = [
            ("闽A12345", PlateColor::Yellow, PlateColor::Yellow),
            ("闽A12345", PlateColor::Unknown, PlateColor::Blue),
            ("京AD12345", PlateColor::Unknown, PlateColor::Green),
            ("沪A12345D", PlateColor::Unknown, PlateColor::YellowGreen),
            ("闽A1234警", PlateColor::Unknown, PlateColor::White),
            ("沪A1234领", PlateColor::Unknown, PlateColor::Black),
            ("闽A1234学", PlateColor::Unknown, PlateColor::Yellow),
            ("garbage", PlateColor::Unknown, PlateColor::Unknown),
        ];
        for (plate, camera, want) in cases {
            assert_eq!(
                effective_color(plate, camera),
                want,
                "{plate} with {camera}"
            );
        }
    }

    #[test]
    fn car_type_follows_lists_then_format() {
        let mut lot = LotConfig::new("L1", 10);
        lot.white_list = vec!["闽A11111".into(), "闽A1234警".into()];
        lot.monthly_cards = vec!["闽A22222".into()];
        assert_eq!(car_type_of("闽A11111", &lot), CarType::White);
        assert_eq!(car_type_of("闽A22222", &lot), CarType::Parkcard);
        assert_eq!(
            car_type_of("闽A1234警", &lot),
            CarType::White,
            "list wins over format"
        );
        assert_eq!(car_type_of("闽A4321警", &lot), CarType::Special);
        assert_eq!(car_type_of("WJ闽12345", &lot), CarType::Special);
        assert_eq!(car_type_of("使123456", &lot), CarType::Special);
        assert_eq!(car_type_of("沪A1234领", &lot), CarType::Special);
        assert_eq!(car_type_of("粤Z1234港", &lot), CarType::Normal);
        assert_eq!(car_type_of("闽A1234学", &lot), CarType::Normal);
        assert_eq!(car_type_of("闽A1234挂", &lot), CarType::Normal);
        assert_eq!(car_type_of("闽A33333", &lot), CarType::Normal);
    }
}
