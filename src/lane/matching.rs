//! Exit ↔ open-stay matching: the exact plate first, then a plate one camera misread
//! away — a confusable character (0/D/Q, 8/B, 1/I, 2/Z, 5/S) or a misread province
//! character — but only when exactly one open stay fits. Anything else is unmatched:
//! guessing between two candidates would close the wrong car's stay.

use super::plate_format::PROVINCES;

/// How an exit plate was matched to a stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Exact,
    /// One confusable character or the province character differs.
    Fuzzy,
}

const CONFUSABLE: [&str; 5] = ["0DQ", "8B", "1I", "2Z", "5S"];

fn confusable(a: char, b: char) -> bool {
    CONFUSABLE
        .iter()
        .any(|group| group.contains(a) && group.contains(b))
}

/// True when `a` and `b` differ in exactly one position and that difference is one a
/// camera plausibly makes.
pub fn one_misread_apart(a: &str, b: &str) -> bool {
    let (mut ia, mut ib) = (a.chars(), b.chars());
    let mut diffs = 0;
    let mut index = 0;
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return diffs == 1,
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                diffs += 1;
                let plausible = confusable(x, y)
                    || (index == 0 && PROVINCES.contains(x) && PROVINCES.contains(y));
                if diffs > 1 || !plausible {
                    return false;
                }
            }
            _ => return false,
        }
        index += 1;
    }
}

/// Finds the stay an exit plate closes among `candidates` (index, plate): the exact
/// plate, else the single one-misread-apart plate. `None` when nothing or more than one
/// fuzzy candidate fits.
pub fn match_exit<'a, I>(exit_plate: &str, candidates: I) -> Option<(usize, MatchKind)>
where
    I: IntoIterator<Item = (usize, &'a str)>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    // Exact first, in its own pass: a plain comparison, and the common case.
    if let Some((i, _)) = candidates.clone().find(|(_, plate)| *plate == exit_plate) {
        return Some((i, MatchKind::Exact));
    }
    let mut fits = candidates.filter(|(_, plate)| one_misread_apart(exit_plate, plate));
    match (fits.next(), fits.next()) {
        (Some((i, _)), None) => Some((i, MatchKind::Fuzzy)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(exit: &str, open: &[&str]) -> Option<(usize, MatchKind)> {
        match_exit(exit, open.iter().copied().enumerate())
    }

    #[test]
    fn exact_match_wins_over_fuzzy_candidates() {
        assert_eq!(
            m("闽A12345", &["闽A12S45", "闽A12345"]),
            Some((1, MatchKind::Exact))
        );
    }

    #[test]
    fn each_confusable_pair_matches_in_both_directions() {
        for (a, b) in [
            ('0', 'D'),
            ('0', 'Q'),
            ('D', 'Q'),
            ('8', 'B'),
            ('1', 'I'),
            ('2', 'Z'),
            ('5', 'S'),
        ] {
            let open = format!("闽A1{a}345");
            let exit = format!("闽A1{b}345");
            assert_eq!(m(&exit, &[&open]), Some((0, MatchKind::Fuzzy)), "{a}/{b}");
            assert_eq!(m(&open, &[&exit]), Some((0, MatchKind::Fuzzy)), "{b}/{a}");
        }
    }

    #[test]
    fn misread_province_matches() {
        assert_eq!(m("闽A12345", &["粤A12345"]), Some((0, MatchKind::Fuzzy)));
    }

    #[test]
    fn two_fitting_stays_are_ambiguous_and_unmatched() {
        assert_eq!(m("闽A12345", &["闽A1234S", "粤A12345"]), None);
    }

    #[test]
    fn unrelated_or_two_character_differences_do_not_match() {
        assert_eq!(m("闽A12345", &["闽A12346"]), None, "6/5 are not confusable");
        assert_eq!(m("闽A12345", &["闽A1Z34S"]), None, "two differences");
        assert_eq!(m("闽A12345", &["闽A123456"]), None, "length differs");
        assert_eq!(m("闽A12345", &["闽S12345"]), None, "A/S are not confusable");
    }
}
