//! Fees at exit (`price`, `should_pay`, `paid_fee`, all in fen).
//!
//! Source order: a fee source of the lot's pay system when one is wired in (the
//! [`FeeSource`] seam), else the configured [`Tariff`]. Documented default when the pay
//! system tells us nothing: the driver paid what the tariff says before leaving, so
//! `paid_fee = price` and `should_pay = 0`; with no tariff either, everything is 0.
//! Exempt car types (default: every type but `normal`) report 0.

use crate::config::lot::Tariff;
use crate::plate::CarType;
use crate::time::Timestamp;
use serde::Serialize;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What an exit report says about money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Fee {
    pub price: i64,
    pub should_pay: i64,
    pub paid_fee: i64,
}

impl Fee {
    /// A fee the driver settled in full at the pay station.
    pub fn settled(price: i64) -> Fee {
        Fee {
            price,
            should_pay: 0,
            paid_fee: price,
        }
    }
}

/// The largest amount the platform accepts (an 8-digit `int` field, in fen).
pub const MAX_FEN: i64 = crate::spec::MAX_INT8;

/// The charge a tariff sets for a stay, in fen (at most [`MAX_FEN`]).
///
/// Stays up to `free_minutes` are free; a longer stay is charged from entry:
/// every started hour at `hourly_rate`, each full 24 hours capped at `daily_cap`,
/// and the started remainder capped at `daily_cap` too.
pub fn tariff_price(
    tariff: &Tariff,
    car_type: CarType,
    entered: Timestamp,
    exited: Timestamp,
) -> i64 {
    if tariff.exempt.contains(&car_type) {
        return 0;
    }
    let stay = exited.0.saturating_sub(entered.0).max(0);
    if stay <= tariff.free_minutes.saturating_mul(MINUTE_MS) {
        return 0;
    }
    let full_days = stay / DAY_MS;
    let rest = stay % DAY_MS;
    let rest_hours = rest.div_euclid(HOUR_MS) + i64::from(rest % HOUR_MS != 0);
    let cap = |amount: i64| {
        if tariff.daily_cap > 0 {
            amount.min(tariff.daily_cap)
        } else {
            amount
        }
    };
    let per_day = cap(24i64.saturating_mul(tariff.hourly_rate));
    full_days
        .saturating_mul(per_day)
        .saturating_add(cap(rest_hours.saturating_mul(tariff.hourly_rate)))
        .min(MAX_FEN)
}

/// The exit fee under the documented default (see the module docs): tariff price, paid
/// in full. No tariff → 0. Also used by the operator's `stay exit` command.
pub fn exit_fee(
    tariff: Option<&Tariff>,
    car_type: CarType,
    entered: Timestamp,
    exited: Timestamp,
) -> Fee {
    match tariff {
        Some(t) => Fee::settled(tariff_price(t, car_type, entered, exited)),
        None => Fee::default(),
    }
}

/// Seam for a lot's pay system (an MQTT topic or Modbus registers via a profile): the
/// fee it charged for the stay ending at `exited`, or `None` when it has no answer, in
/// which case the tariff applies.
pub trait FeeSource: Send + Sync {
    fn fee(&self, stay: &FeeQuery<'_>) -> Option<Fee>;
}

/// The stay a fee is asked for: whose, what kind of car, from when to when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeQuery<'a> {
    pub plate_no: &'a str,
    pub car_type: CarType,
    pub entered: Timestamp,
    pub exited: Timestamp,
}

/// Whether a payment (or a charge) seen at `at` belongs to the stay from `entered` to
/// `exited`: seen during the stay, at most `max_age_ms` before the exit. One from
/// before the entry is an earlier stay's.
pub fn seen_during_stay(
    at: Timestamp,
    entered: Timestamp,
    exited: Timestamp,
    max_age_ms: i64,
) -> bool {
    at >= entered && exited.0.saturating_sub(at.0) <= max_age_ms
}

/// A pay terminal's charge older than this at the exit belongs to nobody now.
pub const TERMINAL_CHARGE_MAX_AGE_MS: i64 = 15 * 60 * 1000;

/// What an exit lane's pay terminal showed (Modbus roles `fee_price`, `fee_paid`) and
/// when. A charge of 0 is the terminal at rest, not a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalCharge {
    pub at: Timestamp,
    pub fee: Fee,
}

impl TerminalCharge {
    /// `None` for a terminal showing no charge.
    pub fn new(at: Timestamp, price: i64, paid: Option<i64>) -> Option<Self> {
        if price <= 0 {
            return None;
        }
        let paid = paid.unwrap_or(price).clamp(0, price);
        Some(TerminalCharge {
            at,
            fee: Fee {
                price,
                should_pay: price - paid,
                paid_fee: paid,
            },
        })
    }
}

/// The exit lane's terminal charge when it was shown during the stay and recently
/// enough, else the lot's other fee source (the pay system's payments), if any.
pub struct TerminalThen<'a> {
    pub charge: TerminalCharge,
    pub then: Option<&'a dyn FeeSource>,
}

impl FeeSource for TerminalThen<'_> {
    fn fee(&self, stay: &FeeQuery<'_>) -> Option<Fee> {
        let at = self.charge.at;
        if seen_during_stay(at, stay.entered, stay.exited, TERMINAL_CHARGE_MAX_AGE_MS) {
            return Some(self.charge.fee);
        }
        self.then?.fee(stay)
    }
}

/// One exit's fee sources, owned: its lane's terminal charge and the pay system's
/// payments as the lane core had them. For a passage planned elsewhere (a multi-PC
/// lot's lot node), where the core's own state is not at hand.
#[derive(Debug, Clone, Default)]
pub struct OwnedFees {
    pub charge: Option<TerminalCharge>,
    pub payments: Option<Payments>,
}

impl FeeSource for OwnedFees {
    fn fee(&self, stay: &FeeQuery<'_>) -> Option<Fee> {
        let payments = self.payments.as_ref().map(|p| p as &dyn FeeSource);
        match self.charge {
            Some(charge) => TerminalThen {
                charge,
                then: payments,
            }
            .fee(stay),
            None => payments?.fee(stay),
        }
    }
}

/// The pay system's latest payment per plate (`payment` events), used at that plate's
/// exit when it was received during the stay and at most `max_age_ms` before the exit.
#[derive(Debug, Clone, Default)]
pub struct Payments {
    max_age_ms: i64,
    /// By plate, upper case: when it came and what it was.
    latest: std::collections::HashMap<String, (Timestamp, Fee)>,
}

impl Payments {
    pub fn new(max_age_ms: i64) -> Self {
        Payments {
            max_age_ms,
            latest: Default::default(),
        }
    }

    /// Payments kept as long as the lot's `[lot.fee_mqtt] max_age_secs` (30 min without).
    pub fn for_lot(lot: &crate::config::LotConfig) -> Self {
        let max_age_secs = lot.fee_mqtt.as_ref().map_or(30 * 60, |f| f.max_age_secs);
        Payments::new(i64::try_from(max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// Records a `payment` event (any other is ignored) received at its time, as of
    /// `now`.
    pub fn record_event(&mut self, event: &crate::event::RawEvent, now: Timestamp) {
        let crate::event::EventKind::Payment {
            plate_no,
            price,
            should_pay,
            paid_fee,
        } = &event.kind
        else {
            return;
        };
        let fee = Fee {
            price: *price,
            should_pay: *should_pay,
            paid_fee: *paid_fee,
        };
        self.record(plate_no, fee, event.at, now.max(event.at));
    }

    /// No payment is kept.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Records a payment received at `at`; forgets those too old to be used at `now`.
    pub fn record(&mut self, plate_no: &str, fee: Fee, at: Timestamp, now: Timestamp) {
        let max_age = self.max_age_ms;
        self.latest
            .retain(|_, (seen, _)| now.0.saturating_sub(seen.0) <= max_age);
        self.latest.insert(plate_no.to_uppercase(), (at, fee));
    }
}

impl FeeSource for Payments {
    fn fee(&self, stay: &FeeQuery<'_>) -> Option<Fee> {
        let (at, fee) = self.latest.get(&stay.plate_no.to_uppercase())?;
        seen_during_stay(*at, stay.entered, stay.exited, self.max_age_ms).then_some(*fee)
    }
}

/// Picks the fee: the fee source's answer, else the tariff default. Exempt types are
/// always 0, whatever a pay system says.
pub fn decide_fee(
    source: Option<&dyn FeeSource>,
    tariff: Option<&Tariff>,
    stay: &FeeQuery<'_>,
) -> Fee {
    let car_type = stay.car_type;
    let exempt = tariff.map_or(car_type.is_exempt(), |t| t.exempt.contains(&car_type));
    if exempt {
        return Fee::default();
    }
    match source.and_then(|s| s.fee(stay)) {
        // A pay system's figures are kept within what the platform accepts.
        Some(f) => {
            let price = f.price.clamp(0, MAX_FEN);
            Fee {
                price,
                should_pay: f.should_pay.clamp(0, price),
                paid_fee: f.paid_fee.clamp(0, price),
            }
        }
        None => exit_fee(tariff, car_type, stay.entered, stay.exited),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stay of a normal car `A1` from `entered` to `exited` (ms).
    fn a1(entered: i64, exited: i64) -> FeeQuery<'static> {
        FeeQuery {
            plate_no: "A1",
            car_type: CarType::Normal,
            entered: Timestamp(entered),
            exited: Timestamp(exited),
        }
    }

    #[test]
    fn terminal_charge_counts_for_the_stay_it_was_shown_in() {
        assert_eq!(TerminalCharge::new(Timestamp(5), 0, Some(0)), None);
        let charge = TerminalCharge::new(Timestamp(1_000_000), 1500, Some(1000)).unwrap();
        assert_eq!(
            charge.fee,
            Fee {
                price: 1500,
                should_pay: 500,
                paid_fee: 1000
            }
        );
        // Paid more than charged, or nothing shown: capped / settled in full.
        let over = TerminalCharge::new(Timestamp(0), 800, Some(900)).unwrap();
        assert_eq!(over.fee, Fee::settled(800));
        assert_eq!(
            TerminalCharge::new(Timestamp(0), 800, None).unwrap().fee,
            Fee::settled(800)
        );
        struct Topic;
        impl FeeSource for Topic {
            fn fee(&self, _: &FeeQuery<'_>) -> Option<Fee> {
                Some(Fee::settled(1))
            }
        }
        let source = TerminalThen {
            charge,
            then: Some(&Topic),
        };
        let fee = |entered: i64, exited: i64| source.fee(&a1(entered, exited));
        assert_eq!(fee(0, 1_060_000), Some(charge.fee));
        // Shown before this stay began: an earlier car's; the topic answers instead.
        assert_eq!(fee(1_000_001, 1_060_000), Some(Fee::settled(1)));
        // Too long before the exit.
        assert_eq!(
            fee(0, 1_000_000 + TERMINAL_CHARGE_MAX_AGE_MS + 1),
            Some(Fee::settled(1))
        );
        let alone = TerminalThen { charge, then: None };
        assert_eq!(alone.fee(&a1(1_000_001, 1_060_000)), None);
    }

    fn tariff() -> Tariff {
        Tariff {
            free_minutes: 15,
            hourly_rate: 500,
            daily_cap: 3000,
            exempt: vec![CarType::Special, CarType::White, CarType::Parkcard],
        }
    }

    fn t(min: i64) -> Timestamp {
        Timestamp(min * MINUTE_MS)
    }

    #[test]
    fn stays_within_free_minutes_cost_nothing() {
        assert_eq!(tariff_price(&tariff(), CarType::Normal, t(0), t(15)), 0);
    }

    #[test]
    fn longer_stays_pay_every_started_hour_from_entry() {
        assert_eq!(tariff_price(&tariff(), CarType::Normal, t(0), t(16)), 500);
        assert_eq!(tariff_price(&tariff(), CarType::Normal, t(0), t(60)), 500);
        assert_eq!(tariff_price(&tariff(), CarType::Normal, t(0), t(61)), 1000);
    }

    #[test]
    fn daily_cap_limits_each_24_hours() {
        assert_eq!(
            tariff_price(&tariff(), CarType::Normal, t(0), t(10 * 60)),
            3000
        );
        assert_eq!(
            tariff_price(&tariff(), CarType::Normal, t(0), t(24 * 60)),
            3000
        );
        assert_eq!(
            tariff_price(&tariff(), CarType::Normal, t(0), t(25 * 60)),
            3500
        );
        assert_eq!(
            tariff_price(&tariff(), CarType::Normal, t(0), t(48 * 60 + 600)),
            9000
        );
    }

    #[test]
    fn exempt_types_pay_nothing() {
        for ct in [CarType::Special, CarType::White, CarType::Parkcard] {
            assert_eq!(exit_fee(Some(&tariff()), ct, t(0), t(600)), Fee::default());
        }
    }

    #[test]
    fn default_is_paid_in_full_and_zero_without_tariff() {
        assert_eq!(
            exit_fee(Some(&tariff()), CarType::Normal, t(0), t(90)),
            Fee {
                price: 1000,
                should_pay: 0,
                paid_fee: 1000
            }
        );
        assert_eq!(exit_fee(None, CarType::Normal, t(0), t(90)), Fee::default());
    }

    #[test]
    fn price_never_exceeds_what_the_platform_accepts() {
        let uncapped = Tariff {
            free_minutes: 0,
            hourly_rate: 99_999_999,
            daily_cap: 0,
            exempt: vec![],
        };
        assert_eq!(
            tariff_price(&uncapped, CarType::Normal, t(0), t(600)),
            MAX_FEN
        );
    }

    #[test]
    fn exit_before_entry_costs_nothing() {
        assert_eq!(tariff_price(&tariff(), CarType::Normal, t(100), t(0)), 0);
    }

    struct PaySystem;
    impl FeeSource for PaySystem {
        fn fee(&self, stay: &FeeQuery<'_>) -> Option<Fee> {
            (stay.plate_no == "闽A12345").then_some(Fee {
                price: 800,
                should_pay: 300,
                paid_fee: 500,
            })
        }
    }

    #[test]
    fn fee_source_answer_wins_over_tariff_but_not_over_exemption() {
        let src: &dyn FeeSource = &PaySystem;
        let tf = tariff();
        // The fee of `plate`'s stay from 0 to `exited` minutes.
        let decide = |plate_no, car_type, exited| {
            let stay = FeeQuery {
                plate_no,
                car_type,
                entered: t(0),
                exited: t(exited),
            };
            decide_fee(Some(src), Some(&tf), &stay)
        };
        let got = decide("闽A12345", CarType::Normal, 600);
        assert_eq!(
            got,
            Fee {
                price: 800,
                should_pay: 300,
                paid_fee: 500
            }
        );
        let other = decide("闽A99999", CarType::Normal, 90);
        assert_eq!(other, Fee::settled(1000));
        let exempt = decide("闽A12345", CarType::White, 600);
        assert_eq!(exempt, Fee::default());
    }
}
