//! `[lot]`: the parking lot as City Brain knows it, plus the lot-wide rules the lane
//! logic applies: tariff, white list, monthly cards, unmatched exits, stay expiry and
//! where the occupancy count comes from.

use super::{Invalid, check_between, check_chars, check_not_negative};
use crate::plate::CarType;
// Lot figures and fees go into the platform's 8-digit `int` fields.
use crate::spec::MAX_INT8;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotConfig {
    /// City Brain lot id (`parking_lot_no`, at most 32 characters).
    pub parking_lot_no: String,
    pub total_spaces: i64,
    /// Fees at exit when the pay system exposes no fee source. Absent: every exit
    /// reports `price = 0`.
    #[serde(default)]
    pub tariff: Option<Tariff>,
    /// Plates reported as `car_type = "white"` (not charged).
    #[serde(default)]
    pub white_list: Vec<String>,
    /// Plates with a monthly card, reported as `car_type = "parkcard"` (not charged).
    #[serde(default)]
    pub monthly_cards: Vec<String>,
    /// What an exit that matches no open stay becomes.
    #[serde(default)]
    pub unmatched_exit: UnmatchedExit,
    /// Whether a trailer (`…挂`) read behind its tractor gets a stay of its own.
    #[serde(default)]
    pub trailers: Trailers,
    /// What happens to the open stay of a plate that enters again (its exit was missed).
    #[serde(default)]
    pub reentry: Reentry,
    /// Open stays older than this are closed locally as expired (0 = never).
    #[serde(default = "default_stay_max_age_hours")]
    pub stay_max_age_hours: i64,
    /// Where the occupied count comes from.
    #[serde(default)]
    pub occupancy_source: OccupancySource,
    /// `[lot.occupancy_mqtt]`: an MQTT topic (on the `[mqtt]` broker) that drives the
    /// occupied count, e.g. from a parking guidance system. Needs
    /// `occupancy_source = "external"`.
    #[serde(default)]
    pub occupancy_mqtt: Option<OccupancyMqtt>,
    /// `[lot.fee_mqtt]`: an MQTT topic on which the lot's pay system publishes what a
    /// plate paid; its figures win over the tariff at that plate's exit.
    #[serde(default)]
    pub fee_mqtt: Option<FeeMqtt>,
}

/// An occupancy topic: each message sets the count.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OccupancyMqtt {
    pub topic: String,
    /// Dotted path to the number in a JSON payload (`data.occupied`, `lots.0.free`);
    /// absent: the payload is a plain integer.
    #[serde(default)]
    pub field: Option<String>,
    /// What the number counts: `occupied` (default) or `free`.
    #[serde(default)]
    pub counts: crate::event::Counted,
}

/// A pay system's fee topic (JSON: `plate_no`, `price`, optional `paid_fee`,
/// `should_pay`; fen).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeMqtt {
    pub topic: String,
    /// A payment older than this at the exit is not used (the tariff decides).
    #[serde(default = "default_fee_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_fee_max_age_secs() -> u64 {
    // Pay at the booth or the machine, then drive out: minutes, not hours.
    30 * 60
}

fn default_stay_max_age_hours() -> i64 {
    // A month: long enough for monthly-card cars parked over a holiday.
    31 * 24
}

/// A simple tariff: free minutes, then a rate per started hour, capped per 24 hours.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// Stays up to this long are free; longer stays are charged from the entry time.
    #[serde(default)]
    pub free_minutes: i64,
    /// Fen per started hour.
    pub hourly_rate: i64,
    /// Most fen charged for any 24 hours from entry (0 = no cap).
    #[serde(default)]
    pub daily_cap: i64,
    /// Car types that are never charged (default: every type but `normal`).
    #[serde(default = "default_exempt")]
    pub exempt: Vec<CarType>,
}

fn default_exempt() -> Vec<CarType> {
    vec![CarType::Special, CarType::White, CarType::Parkcard]
}

/// Policy for an exit whose plate matches no open stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedExit {
    /// Kept in the local database only; nothing invented on the platform (default).
    #[default]
    RecordLocally,
    /// Reported as an entry and exit at the exit time (a zero-length stay), for lots
    /// whose platform operator wants every exit seen.
    ReportSynthetic,
}

/// Lot rule for a drawbar trailer (`…挂` plate) read behind its tractor in one passage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trailers {
    /// Folded into the tractor's stay: no stay, report or space of its own (default:
    /// a car park counts vehicles, and a trailer is parked with its tractor).
    #[default]
    WithTractor,
    /// A stay of its own, like any vehicle (freight yards that track trailers).
    OwnStay,
}

/// Lot rule for a plate entering while its previous stay is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Report an exit for the old stay at the new entry's time minus one second, price
    /// 0, flagged `orphaned` in the lane journal (default: the platform must not hold
    /// an open stay for ever).
    #[default]
    CloseWithExit,
    /// Close the old stay locally only (superseded); the platform keeps it open.
    LeaveOpen,
}

/// Where the occupied count comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OccupancySource {
    /// Counted from entries and exits (default).
    #[default]
    Passages,
    /// Set from outside (a counter device or a guidance system via the runtime's
    /// occupancy input, or `parking-bridge occupancy set N`); passages still move it
    /// between two external updates.
    External,
}

impl LotConfig {
    /// A lot with every optional field at its default (tests, benches).
    pub fn new(parking_lot_no: &str, total_spaces: i64) -> Self {
        LotConfig {
            parking_lot_no: parking_lot_no.to_string(),
            total_spaces,
            tariff: None,
            white_list: Vec::new(),
            monthly_cards: Vec::new(),
            unmatched_exit: UnmatchedExit::default(),
            trailers: Trailers::default(),
            reentry: Reentry::default(),
            stay_max_age_hours: default_stay_max_age_hours(),
            occupancy_source: OccupancySource::default(),
            occupancy_mqtt: None,
            fee_mqtt: None,
        }
    }

    pub fn validate(&self, out: &mut Vec<Invalid>) {
        check_chars("lot.parking_lot_no", &self.parking_lot_no, 32, out);
        check_between("lot.total_spaces", self.total_spaces, 0..=MAX_INT8, "", out);
        check_not_negative("lot.stay_max_age_hours", self.stay_max_age_hours, out);
        if let Some(t) = &self.tariff {
            check_not_negative("lot.tariff.free_minutes", t.free_minutes, out);
            check_between(
                "lot.tariff.hourly_rate",
                t.hourly_rate,
                0..=MAX_INT8,
                " fen",
                out,
            );
            check_between(
                "lot.tariff.daily_cap",
                t.daily_cap,
                0..=MAX_INT8,
                " fen",
                out,
            );
        }
        if let Some(o) = &self.occupancy_mqtt {
            if self.occupancy_source != OccupancySource::External {
                out.push(Invalid::new(
                    "lot.occupancy_source",
                    "must be \"external\" when [lot.occupancy_mqtt] is set (the topic drives the count)",
                ));
            }
            check_topic("lot.occupancy_mqtt.topic", &o.topic, out);
            if o.field
                .as_deref()
                .is_some_and(|f| f.is_empty() || f.split('.').any(str::is_empty))
            {
                out.push(Invalid::new(
                    "lot.occupancy_mqtt.field",
                    "must be a dotted path like \"data.occupied\"",
                ));
            }
        }
        if let Some(f) = &self.fee_mqtt {
            check_topic("lot.fee_mqtt.topic", &f.topic, out);
        }
        for (key, list) in [
            ("white_list", &self.white_list),
            ("monthly_cards", &self.monthly_cards),
        ] {
            for (i, p) in list.iter().enumerate() {
                let n = p.chars().count();
                if n == 0 || n > 16 || p.contains(char::is_whitespace) {
                    out.push(Invalid::new(
                        format!("lot.{key}[{i}]"),
                        "must be a plate of 1 to 16 characters without spaces",
                    ));
                }
            }
        }
    }
}

fn check_topic(key: &str, topic: &str, out: &mut Vec<Invalid>) {
    // Wildcards would mix several sources into one number.
    if topic.is_empty() || topic.contains(['+', '#']) {
        out.push(Invalid::new(key, "must be a topic name without wildcards"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lot_rules_parse_with_defaults() {
        let lot: LotConfig = toml::from_str(
            "parking_lot_no = \"P\"\ntotal_spaces = 10\nmonthly_cards = [\"闽A1\"]\n[tariff]\nhourly_rate = 500",
        )
        .unwrap();
        let tariff = lot.tariff.clone().unwrap();
        assert_eq!((tariff.free_minutes, tariff.daily_cap), (0, 0));
        assert_eq!(
            tariff.exempt,
            vec![CarType::Special, CarType::White, CarType::Parkcard]
        );
        assert_eq!(lot.unmatched_exit, UnmatchedExit::RecordLocally);
        assert_eq!(lot.trailers, Trailers::WithTractor);
        assert_eq!(lot.reentry, Reentry::CloseWithExit);
        let lot: LotConfig = toml::from_str(
            "parking_lot_no = \"P\"\ntotal_spaces = 10\ntrailers = \"own_stay\"\nreentry = \"leave_open\"",
        )
        .unwrap();
        assert_eq!(
            (lot.trailers, lot.reentry),
            (Trailers::OwnStay, Reentry::LeaveOpen)
        );
        assert!(
            toml::from_str::<LotConfig>(
                "parking_lot_no = \"P\"\ntotal_spaces = 10\ntrailers = \"towed\""
            )
            .is_err()
        );
        assert_eq!(lot.occupancy_source, OccupancySource::Passages);
        assert_eq!(lot.stay_max_age_hours, 744);
    }

    #[test]
    fn bad_lot_rules_are_named_by_key() {
        let mut lot = LotConfig::new("P", 10);
        lot.tariff = Some(Tariff {
            free_minutes: -1,
            hourly_rate: 5,
            daily_cap: 0,
            exempt: vec![],
        });
        lot.white_list = vec!["闽A 1".into()];
        lot.stay_max_age_hours = -2;
        let mut out = Vec::new();
        lot.validate(&mut out);
        let keys: Vec<&str> = out.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "lot.stay_max_age_hours",
                "lot.tariff.free_minutes",
                "lot.white_list[0]"
            ]
        );
    }
}
