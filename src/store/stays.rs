//! Stays (one vehicle's visit, from entry to exit) and occupancy. Each public method
//! here is one transaction.

use super::order_no::{self, SequenceState};
use super::outbox::{enforce_image_budget, queue_report};
use super::{Store, StoreError};
use crate::config::Direction;
use crate::config::storage::SnapshotMode;
use crate::plate::{CarType, PlateColor};
use crate::report::{EntryReport, ExitReport, Report, SnapshotEvent};
use crate::spec::MAX_INT8;
use crate::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::borrow::Borrow;

/// A vehicle that entered, as an operator tells it (the lane planner's entry holds
/// the same details with a shared camera image).
pub type NewStay = crate::lane::stays::EntryDetails<Vec<u8>>;

/// How a vehicle left, as an operator tells it (the lane planner's exit holds the
/// same details with a shared camera image).
pub type ExitDetails = crate::lane::stays::ExitDetails<Vec<u8>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedStay {
    pub out_order_no: String,
    pub free_spaces: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClosedStay {
    pub out_order_no: String,
    pub free_spaces: i64,
    pub stay: Stay,
}

/// A stay to open, an operator's ([`NewStay`]) or a lane's (its image shared): `I`
/// lends the image bytes without a copy.
pub(super) type Entering<I> = crate::lane::stays::EntryDetails<I>;

/// The platform's limits for an entry, checked before the transaction begins.
pub(super) fn check_entry<I>(e: &Entering<I>) -> Result<(), StoreError> {
    check_plate(&e.plate_no)?;
    check_port(&e.port_no)?;
    check_operator(e.operator.as_deref())?;
    check_fen("price", e.price)?;
    check_fen("should_pay", e.should_pay)
}

/// How a stay ends, an operator's ([`ExitDetails`]) or a lane's (its image shared):
/// `I` lends the image bytes without a copy.
pub(super) type Leaving<I> = crate::lane::stays::ExitDetails<I>;

/// The platform's limits for an exit, checked before the transaction begins.
pub(super) fn check_exit<I>(x: &Leaving<I>) -> Result<(), StoreError> {
    check_port(&x.port_no)?;
    check_operator(x.operator.as_deref())?;
    for (name, v) in [
        ("price", x.fee.price),
        ("should_pay", x.fee.should_pay),
        ("paid_fee", x.fee.paid_fee),
    ] {
        check_fen(name, Some(v))?;
    }
    Ok(())
}

/// Why a stay was closed without an exit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalClose {
    /// The same plate entered again: the old stay cannot be real any more.
    Superseded,
    /// Open for longer than the lot allows.
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StayState {
    Open,
    Closed,
    Superseded,
    Expired,
}

impl StayState {
    pub fn as_str(self) -> &'static str {
        match self {
            StayState::Open => "open",
            StayState::Closed => "closed",
            StayState::Superseded => "superseded",
            StayState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> StayState {
        match s {
            "open" => StayState::Open,
            "superseded" => StayState::Superseded,
            "expired" => StayState::Expired,
            _ => StayState::Closed,
        }
    }
}

/// A stay as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stay {
    pub out_order_no: String,
    pub plate_no: String,
    pub plate_color: PlateColor,
    pub car_type: CarType,
    pub state: StayState,
    pub entry_lane: String,
    pub entry_port: String,
    pub entered_at: Timestamp,
    pub entry_operator: Option<String>,
    pub exit_lane: Option<String>,
    pub exit_port: Option<String>,
    pub exited_at: Option<Timestamp>,
    pub price: Option<i64>,
    pub should_pay: Option<i64>,
    pub paid_fee: Option<i64>,
    /// The platform's order number, from the entry's answer.
    pub inner_oder_no: Option<String>,
    pub sign_level: Option<String>,
    pub sign_time: Option<String>,
}

const STAY_COLUMNS: &str = "out_order_no, plate_no, plate_color, car_type, state, entry_lane, entry_port, \
     entered_at, entry_operator, exit_lane, exit_port, exited_at, price, should_pay, paid_fee, \
     inner_oder_no, sign_level, sign_time";

impl Stay {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Stay> {
        let color: String = r.get(2)?;
        let car_type: String = r.get(3)?;
        let state: String = r.get(4)?;
        Ok(Stay {
            out_order_no: r.get(0)?,
            plate_no: r.get(1)?,
            plate_color: PlateColor::from_code(&color).unwrap_or_default(),
            car_type: CarType::from_code(&car_type).unwrap_or_default(),
            state: StayState::parse(&state),
            entry_lane: r.get(5)?,
            entry_port: r.get(6)?,
            entered_at: Timestamp(r.get(7)?),
            entry_operator: r.get(8)?,
            exit_lane: r.get(9)?,
            exit_port: r.get(10)?,
            exited_at: r.get::<_, Option<i64>>(11)?.map(Timestamp),
            price: r.get(12)?,
            should_pay: r.get(13)?,
            paid_fee: r.get(14)?,
            inner_oder_no: r.get(15)?,
            sign_level: r.get(16)?,
            sign_time: r.get(17)?,
        })
    }
}

/// Spaces of the lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub occupied: i64,
    pub total: i64,
    pub free: i64,
}

/// Longest plate the platform accepts (`plate_no`, 16 characters).
const PLATE_MAX_CHARS: usize = 16;

fn check_plate(plate: &str) -> Result<(), StoreError> {
    let n = plate.chars().count();
    if n == 0 || n > PLATE_MAX_CHARS || plate.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::Invalid(format!(
            "plate {:?} must be 1 to {PLATE_MAX_CHARS} characters without spaces",
            crate::plate::mask(plate)
        )));
    }
    Ok(())
}

fn check_port(port: &str) -> Result<(), StoreError> {
    if port.is_empty() || port.chars().count() > 32 {
        return Err(StoreError::Invalid(format!(
            "port_no {port:?} must be 1 to 32 characters"
        )));
    }
    Ok(())
}

fn check_operator(operator: Option<&str>) -> Result<(), StoreError> {
    match operator {
        Some(o) if o.is_empty() || o.chars().count() > 16 => Err(StoreError::Invalid(format!(
            "operator {o:?} must be 1 to 16 characters"
        ))),
        _ => Ok(()),
    }
}

fn check_fen(name: &str, v: Option<i64>) -> Result<(), StoreError> {
    match v {
        Some(v) if !(0..=MAX_INT8).contains(&v) => Err(StoreError::Invalid(format!(
            "{name} {v} must be between 0 and {MAX_INT8} fen"
        ))),
        _ => Ok(()),
    }
}

/// The lot's spaces as `conn` (a transaction or the plain connection) sees them.
pub(super) fn read_occupancy(conn: &Connection) -> Result<Occupancy, StoreError> {
    let (occupied, total): (i64, i64) = conn.query_row(
        "SELECT occupied, total FROM occupancy WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Occupancy {
        occupied,
        total,
        free: (total - occupied).max(0),
    })
}

/// Moves occupancy by `delta`, kept within 0..=total.
fn shift_occupancy(tx: &Transaction<'_>, delta: i64) -> Result<Occupancy, StoreError> {
    super::fault::point();
    tx.execute(
        "UPDATE occupancy SET occupied = MAX(0, MIN(total, occupied + ?1)) WHERE id = 1",
        [delta],
    )?;
    read_occupancy(tx)
}

pub(super) fn journal(
    tx: &Transaction<'_>,
    at: Timestamp,
    lane: Option<&str>,
    what: &str,
    plate: Option<&str>,
    out_order_no: Option<&str>,
) -> Result<(), StoreError> {
    super::fault::point();
    tx.prepare_cached(
        "INSERT INTO lane_journal (at, lane, what, plate_no, out_order_no) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![at.0, lane, what, plate, out_order_no])?;
    Ok(())
}

pub(super) fn load_stay(tx: &Transaction<'_>, out_order_no: &str) -> Result<Stay, StoreError> {
    super::fault::point();
    tx.prepare_cached(&format!(
        "SELECT {STAY_COLUMNS} FROM stays WHERE out_order_no = ?1"
    ))?
    .query_row([out_order_no], Stay::from_row)
    .optional()?
    .ok_or_else(|| StoreError::NoSuchStay(out_order_no.to_string()))
}

/// A vehicle counted without a report, inside `tx`.
pub(super) fn count_only_in(
    tx: &Transaction<'_>,
    direction: Direction,
    lane: &str,
    at: Timestamp,
) -> Result<Occupancy, StoreError> {
    let (delta, what) = match direction {
        Direction::Entry => (1, "count_only_entry"),
        Direction::Exit => (-1, "count_only_exit"),
    };
    journal(tx, at, Some(lane), what, None, None)?;
    shift_occupancy(tx, delta)
}

impl Store {
    /// Opens a stay in ONE durable transaction: next `out_order_no`, the stay,
    /// occupancy + 1 (capped at total), the entry report and, with an image, the entry
    /// snapshot. Returns after the commit is on disk.
    pub fn open_stay(&self, s: NewStay, now: Timestamp) -> Result<OpenedStay, StoreError> {
        let mut out = self.open_stays_grouped(vec![s], now)?;
        // open_stays_grouped returns exactly one result per input.
        out.pop()
            .ok_or_else(|| StoreError::Invalid("no stay opened".into()))
    }

    /// Opens several stays in one transaction (one disk sync for all of them).
    pub fn open_stays_grouped(
        &self,
        stays: Vec<NewStay>,
        now: Timestamp,
    ) -> Result<Vec<OpenedStay>, StoreError> {
        for s in &stays {
            check_entry(s)?;
        }
        let local_secs = self.local_secs(now);
        self.write_reports(now, |tx| {
            let mut opened = Vec::with_capacity(stays.len());
            for s in &stays {
                opened.push(self.open_in(tx, s, now, local_secs)?);
            }
            Ok(opened)
        })
    }

    /// A write that queues reports: the image budget is enforced in the same
    /// transaction, and the uploader is woken once it is committed.
    pub(super) fn write_reports<T>(
        &self,
        now: Timestamp,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let value = self.write(|tx| {
            let value = f(tx)?;
            enforce_image_budget(tx, self.options.image_budget_bytes, now)?;
            Ok(value)
        })?;
        self.notify.notify_one();
        Ok(value)
    }

    /// Opens a stay inside `tx`: next number, occupancy + 1, the stay, its reports.
    pub(super) fn open_in<I: Borrow<Vec<u8>>>(
        &self,
        tx: &Transaction<'_>,
        s: &Entering<I>,
        now: Timestamp,
        local_secs: i64,
    ) -> Result<OpenedStay, StoreError> {
        super::fault::point();
        let state: SequenceState = tx.query_row(
            "SELECT seq, last_local_secs FROM sequence WHERE id = 1",
            [],
            |r| {
                Ok(SequenceState {
                    seq: r.get(0)?,
                    last_local_secs: r.get(1)?,
                })
            },
        )?;
        let a = order_no::allocate(state, local_secs);
        super::fault::point();
        tx.prepare_cached("UPDATE sequence SET seq = ?1, last_local_secs = ?2 WHERE id = 1")?
            .execute([a.next_state.seq, a.next_state.last_local_secs])?;
        let out_order_no = order_no::format(&self.lot_no, a.local_secs, a.seq);
        let occ = shift_occupancy(tx, 1)?;
        super::fault::point();
        tx.prepare_cached(
            "INSERT INTO stays (out_order_no, plate_no, plate_color, car_type, state, entry_lane, entry_port, \
             entered_at, entry_operator, entry_price, entry_should_pay, entry_total_spaces, entry_free_spaces) \
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            out_order_no,
            s.plate_no,
            s.plate_color.code(),
            s.car_type.code(),
            s.lane,
            s.port_no,
            s.entered_at.0,
            s.operator,
            s.price,
            s.should_pay,
            occ.total,
            occ.free
        ])?;
        let entry = Report::Entry(EntryReport {
            out_order_no: out_order_no.clone(),
            plate_no: s.plate_no.clone(),
            plate_color: s.plate_color,
            car_type: s.car_type,
            parking_time: s.entered_at,
            port_no: s.port_no.clone(),
            operator: s.operator.clone(),
            price: s.price,
            should_pay: s.should_pay,
            total_spaces: occ.total,
            free_spaces: occ.free,
        });
        let image = s.snapshot.as_ref().map(|i| i.borrow().as_slice());
        self.queue_with_image(tx, &entry, SnapshotEvent::Parking, image, now)?;
        Ok(OpenedStay {
            out_order_no,
            free_spaces: occ.free,
        })
    }

    /// Queues `report` and, when there is an image, either attaches it (inline mode) or
    /// queues a separate snapshot report after it.
    fn queue_with_image(
        &self,
        tx: &Transaction<'_>,
        report: &Report,
        event: SnapshotEvent,
        image: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match (image, self.options.snapshot_mode) {
            (None, _) => {
                queue_report(tx, report, None, now)?;
            }
            (Some(img), SnapshotMode::Inline) => {
                queue_report(tx, report, Some(img), now)?;
            }
            (Some(img), SnapshotMode::Separate) => {
                queue_report(tx, report, None, now)?;
                let snap = Report::Snapshot {
                    out_order_no: report.out_order_no().to_string(),
                    event,
                };
                queue_report(tx, &snap, Some(img), now)?;
            }
        }
        Ok(())
    }

    /// Closes an open stay in ONE durable transaction: the stay, occupancy − 1 (not
    /// below 0), the exit report and, with an image, the exit snapshot.
    pub fn close_stay(
        &self,
        out_order_no: &str,
        x: ExitDetails,
        now: Timestamp,
    ) -> Result<ClosedStay, StoreError> {
        check_exit(&x)?;
        self.write_reports(now, |tx| self.close_in(tx, out_order_no, &x, now))
    }

    /// Closes an open stay inside `tx`: occupancy − 1, the stay, its exit reports.
    pub(super) fn close_in<I: Borrow<Vec<u8>>>(
        &self,
        tx: &Transaction<'_>,
        out_order_no: &str,
        x: &Leaving<I>,
        now: Timestamp,
    ) -> Result<ClosedStay, StoreError> {
        let stay = load_stay(tx, out_order_no)?;
        if stay.state != StayState::Open {
            return Err(StoreError::NotOpen(out_order_no.to_string()));
        }
        let occ = shift_occupancy(tx, -1)?;
        super::fault::point();
        tx.prepare_cached(
            "UPDATE stays SET state = 'closed', exit_lane = ?2, exit_port = ?3, exited_at = ?4, \
             exit_operator = ?5, price = ?6, should_pay = ?7, paid_fee = ?8, closed_at = ?9 \
             WHERE out_order_no = ?1",
        )?
        .execute(params![
            out_order_no,
            x.lane,
            x.port_no,
            x.away_time.0,
            x.operator,
            x.fee.price,
            x.fee.should_pay,
            x.fee.paid_fee,
            now.0
        ])?;
        let exit = Report::Exit(ExitReport {
            out_order_no: out_order_no.to_string(),
            plate_no: stay.plate_no.clone(),
            plate_color: stay.plate_color,
            car_type: stay.car_type,
            away_time: x.away_time,
            price: x.fee.price,
            should_pay: x.fee.should_pay,
            paid_fee: x.fee.paid_fee,
            port_no: x.port_no.clone(),
            operator: x.operator.clone(),
            total_spaces: occ.total,
            free_spaces: occ.free,
        });
        let image = x.snapshot.as_ref().map(|i| i.borrow().as_slice());
        self.queue_with_image(tx, &exit, SnapshotEvent::Away, image, now)?;
        // The stay as it is now, built from what was just written (no read back).
        let stay = Stay {
            state: StayState::Closed,
            exit_lane: Some(x.lane.clone()),
            exit_port: Some(x.port_no.clone()),
            exited_at: Some(x.away_time),
            price: Some(x.fee.price),
            should_pay: Some(x.fee.should_pay),
            paid_fee: Some(x.fee.paid_fee),
            ..stay
        };
        Ok(ClosedStay {
            out_order_no: out_order_no.to_string(),
            free_spaces: occ.free,
            stay,
        })
    }

    /// Every open stay, oldest first (for plate matching).
    pub fn open_stays(&self) -> Result<Vec<Stay>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {STAY_COLUMNS} FROM stays WHERE state = 'open' ORDER BY entered_at, out_order_no"
            ),
            [],
            Stay::from_row,
        )
    }

    /// The most recent open stay of exactly this plate.
    pub fn find_open_stay(&self, plate: &str) -> Result<Option<Stay>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {STAY_COLUMNS} FROM stays WHERE state = 'open' AND plate_no = ?1 \
             ORDER BY entered_at DESC, out_order_no DESC LIMIT 1"
        ))?;
        Ok(st.query_row([plate], Stay::from_row).optional()?)
    }

    /// One stay by its number, whatever its state.
    pub fn stay(&self, out_order_no: &str) -> Result<Option<Stay>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {STAY_COLUMNS} FROM stays WHERE out_order_no = ?1"
        ))?;
        Ok(st.query_row([out_order_no], Stay::from_row).optional()?)
    }

    /// Stays, newest first; `open_only` keeps only open ones.
    pub fn list_stays(&self, open_only: bool, limit: usize) -> Result<Vec<Stay>, StoreError> {
        let filter = if open_only {
            "WHERE state = 'open'"
        } else {
            ""
        };
        self.read_all(
            &format!(
                "SELECT {STAY_COLUMNS} FROM stays {filter} ORDER BY entered_at DESC, out_order_no DESC LIMIT ?1"
            ),
            [i64::try_from(limit).unwrap_or(i64::MAX)],
            Stay::from_row,
        )
    }

    /// Closes a stay without an exit report (the platform is told nothing), freeing its
    /// space.
    pub fn close_stay_locally(
        &self,
        out_order_no: &str,
        reason: LocalClose,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|tx| self.close_locally_in(tx, out_order_no, reason, now))
    }

    /// Closes an open stay locally inside `tx`, freeing its space.
    pub(super) fn close_locally_in(
        &self,
        tx: &Transaction<'_>,
        out_order_no: &str,
        reason: LocalClose,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let state = match reason {
            LocalClose::Superseded => StayState::Superseded,
            LocalClose::Expired => StayState::Expired,
        };
        let stay = load_stay(tx, out_order_no)?;
        if stay.state != StayState::Open {
            return Err(StoreError::NotOpen(out_order_no.to_string()));
        }
        super::fault::point();
        tx.execute(
            "UPDATE stays SET state = ?2, closed_at = ?3 WHERE out_order_no = ?1",
            params![out_order_no, state.as_str(), now.0],
        )?;
        shift_occupancy(tx, -1)?;
        journal(
            tx,
            now,
            None,
            state.as_str(),
            Some(&stay.plate_no),
            Some(out_order_no),
        )
    }

    /// A vehicle passed without a report (unreadable plate, count-only lane):
    /// occupancy + 1 for an entry, − 1 for an exit, within 0..=total.
    pub fn record_count_only(
        &self,
        direction: Direction,
        lane: &str,
        at: Timestamp,
    ) -> Result<Occupancy, StoreError> {
        self.write(|tx| count_only_in(tx, direction, lane, at))
    }

    pub fn occupancy(&self) -> Result<Occupancy, StoreError> {
        read_occupancy(&self.lock())
    }

    /// Sets the occupied count (an operator's correction after a recount).
    pub fn set_occupancy(&self, n: i64) -> Result<(), StoreError> {
        if !(0..=self.total_spaces).contains(&n) {
            return Err(StoreError::Invalid(format!(
                "occupied spaces {n} must be between 0 and the lot's total of {}",
                self.total_spaces
            )));
        }
        self.write(|tx| {
            tx.execute("UPDATE occupancy SET occupied = ?1 WHERE id = 1", [n])?;
            journal(
                tx,
                Timestamp::now(),
                None,
                &format!("occupancy_set {n}"),
                None,
                None,
            )
        })
    }
}
