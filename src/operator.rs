//! Operator commands: `stay enter|exit|list`, `outbox [held|retry|drop]`, `occupancy`. What a booth
//! operator uses when a camera misses a car, so every input is checked and refused
//! with a message that says what to type instead. They write through the same
//! transactions as the lanes; a running service picks the reports up within a second.

use crate::config::{Direction, LaneConfig, SiteConfig};
use crate::plate::{CarType, PlateColor};
use crate::report::ReportKind;
use crate::store::{ExitDetails, NewStay, Store, StoreError};
use crate::time::Timestamp;
use chrono::FixedOffset;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, OperatorError> {
    Err(OperatorError::Refused(msg.into()))
}

/// `stay enter` arguments, as typed (also the command line's options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EnterArgs {
    /// Plate without spaces, e.g. 闽A12345.
    #[arg(long)]
    pub plate: String,
    /// Plate colour code: pnc_01 unknown, pnc_02 blue, pnc_03 yellow, pnc_04 white,
    /// pnc_05 black, pnc_06 green, pnc_07 yellow-green, pnc_08 special.
    #[arg(long)]
    pub color: String,
    /// An entry lane id from the config.
    #[arg(long)]
    pub lane: String,
    /// normal, special, white or parkcard.
    #[arg(long)]
    pub car_type: Option<String>,
    /// Lot-local entry time "YYYY-MM-DD HH:MM:SS" (default: now).
    #[arg(long)]
    pub time: Option<String>,
    /// JPEG or PNG of the car.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    #[arg(long)]
    pub operator: Option<String>,
    /// Record a plate whose format is not a Chinese one (foreign, temporary plates).
    #[arg(long)]
    pub any_plate: bool,
}

/// `stay exit` arguments, as typed (also the command line's options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExitArgs {
    #[arg(long)]
    pub plate: String,
    /// An exit lane id from the config.
    #[arg(long)]
    pub lane: String,
    /// Lot-local exit time "YYYY-MM-DD HH:MM:SS" (default: now).
    #[arg(long)]
    pub time: Option<String>,
    /// Total charge of the stay, fen.
    #[arg(long)]
    pub price: Option<i64>,
    /// Still due, fen.
    #[arg(long)]
    pub should_pay: Option<i64>,
    /// Actually paid, fen.
    #[arg(long)]
    pub paid: Option<i64>,
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    #[arg(long)]
    pub operator: Option<String>,
}

/// Largest snapshot file accepted (a camera JPEG is a few MB).
const MAX_SNAPSHOT_FILE: u64 = 50 * 1024 * 1024;
/// How far in the future a typed time may be (clock differences between PCs).
const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;

fn offset(site: &SiteConfig) -> FixedOffset {
    crate::time::parse_offset(&site.platform.utc_offset)
        .unwrap_or_else(crate::time::china_standard_time)
}

/// Basic plate shape: 1–16 letters/digits (Chinese characters included), no spaces or
/// punctuation. Returned upper-cased.
pub fn check_plate(plate: &str) -> Result<String, OperatorError> {
    let p = plate.trim();
    let n = p.chars().count();
    if n == 0 {
        return refuse("--plate must not be empty");
    }
    if n > 16 {
        return refuse(format!(
            "--plate {p:?} is {n} characters; the platform takes at most 16"
        ));
    }
    if let Some(bad) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphabetic())))
    {
        return refuse(format!(
            "--plate {p:?} contains {bad:?}; write the plate without spaces or punctuation, e.g. 闽A12345"
        ));
    }
    Ok(p.to_uppercase())
}

fn check_lane<'a>(
    site: &'a SiteConfig,
    id: &str,
    want: Direction,
) -> Result<&'a LaneConfig, OperatorError> {
    let Some(lane) = site.lane(id) else {
        let known: Vec<&str> = site
            .lanes
            .iter()
            .filter(|l| l.direction == want)
            .map(|l| l.id.as_str())
            .collect();
        return refuse(format!(
            "--lane {id:?} is not a lane of this site; {} lanes: {}",
            dir_word(want),
            known.join(", ")
        ));
    };
    if lane.direction != want {
        return refuse(format!(
            "--lane {id:?} is an {} lane; this command needs an {} lane",
            dir_word(lane.direction),
            dir_word(want)
        ));
    }
    Ok(lane)
}

fn dir_word(d: Direction) -> &'static str {
    match d {
        Direction::Entry => "entry",
        Direction::Exit => "exit",
    }
}

fn check_time(
    text: Option<&str>,
    offset: FixedOffset,
    now: Timestamp,
) -> Result<Timestamp, OperatorError> {
    let Some(text) = text else { return Ok(now) };
    let Some(t) = Timestamp::parse_local(text.trim(), offset) else {
        return refuse(format!(
            "--time {text:?} must look like \"2024-05-01 08:30:00\" (lot-local time)"
        ));
    };
    if t.0 > now.0 + FUTURE_SLACK_MS {
        return refuse(format!("--time {text:?} is in the future"));
    }
    Ok(t)
}

fn check_operator(op: Option<String>) -> Result<Option<String>, OperatorError> {
    match op {
        Some(o) if o.trim().is_empty() || o.chars().count() > 16 => {
            refuse(format!("--operator {o:?} must be 1 to 16 characters"))
        }
        Some(o) => Ok(Some(o.trim().to_string())),
        None => Ok(None),
    }
}

fn read_snapshot(path: Option<PathBuf>) -> Result<Option<Vec<u8>>, OperatorError> {
    let Some(path) = path else { return Ok(None) };
    let meta = std::fs::metadata(&path)
        .map_err(|e| OperatorError::Refused(format!("--snapshot {}: {e}", path.display())))?;
    if meta.len() > MAX_SNAPSHOT_FILE {
        return refuse(format!(
            "--snapshot {} is larger than 50 MB",
            path.display()
        ));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| OperatorError::Refused(format!("--snapshot {}: {e}", path.display())))?;
    match image::guess_format(&bytes) {
        Ok(image::ImageFormat::Jpeg | image::ImageFormat::Png) => Ok(Some(bytes)),
        _ => refuse(format!(
            "--snapshot {} is not a JPEG or PNG image",
            path.display()
        )),
    }
}

/// `stay enter`: opens a stay; returns its `out_order_no`.
pub fn stay_enter(
    site: &SiteConfig,
    a: EnterArgs,
    now: Timestamp,
) -> Result<String, OperatorError> {
    let plate = check_plate(&a.plate)?;
    let Some(color) = PlateColor::from_code(a.color.trim()) else {
        let codes: Vec<&str> = PlateColor::ALL.iter().map(|c| c.code()).collect();
        return refuse(format!(
            "--color {:?} is not a platform colour code; use one of {} (pnc_02 blue, pnc_03 yellow, pnc_06 green)",
            a.color,
            codes.join(", ")
        ));
    };
    let lane = check_lane(site, &a.lane, Direction::Entry)?;
    // A booth operator types plates: check them against the Chinese formats, so a typo
    // does not become a stay the exit camera can never match.
    let format = crate::lane::plate_format::format_of(&plate);
    if format == crate::lane::plate_format::PlateFormat::Unknown
        && plate != lane.placeholder_plate
        && !a.any_plate
    {
        return refuse(format!(
            "--plate {plate:?} is not a Chinese plate format (7 characters like 闽A12345, 8 for \
             new-energy like 粤BD12345, or a 警/学/挂/港/澳/使/领 plate); check it, or add \
             --any-plate to record it as typed"
        ));
    }
    // Unknown colour: the format's own colour where it has one (green for new-energy).
    let color = crate::lane::plate_format::effective_color(&plate, color);
    let car_type = match a.car_type.as_deref() {
        // From the lot's white list and monthly cards, then the format (警 → special).
        None => crate::lane::plate_format::car_type_of(&plate, &site.lot),
        Some(t) => match CarType::from_code(t.trim()) {
            Some(c) => c,
            None => {
                return refuse(format!(
                    "--car-type {t:?} must be one of normal, special, white, parkcard"
                ));
            }
        },
    };
    let entered_at = check_time(a.time.as_deref(), offset(site), now)?;
    let operator = check_operator(a.operator)?;
    let snapshot = read_snapshot(a.snapshot)?;
    let store = Store::open_site(site)?;
    if let Some(open) = store.find_open_stay(&plate)? {
        return refuse(format!(
            "{plate} is already parked (stay {}, entered {}); record its exit first",
            open.out_order_no,
            open.entered_at.format_local(offset(site))
        ));
    }
    let opened = store.open_stay(
        NewStay {
            plate_no: plate,
            plate_color: color,
            car_type,
            lane: lane.id.clone(),
            port_no: lane.port_no.clone(),
            entered_at,
            operator,
            snapshot,
            price: None,
            should_pay: None,
        },
        now,
    )?;
    Ok(opened.out_order_no)
}

/// `stay exit`: closes the plate's open stay; returns its `out_order_no`.
pub fn stay_exit(site: &SiteConfig, a: ExitArgs, now: Timestamp) -> Result<String, OperatorError> {
    let plate = check_plate(&a.plate)?;
    let lane = check_lane(site, &a.lane, Direction::Exit)?;
    let away_time = check_time(a.time.as_deref(), offset(site), now)?;
    let operator = check_operator(a.operator)?;
    // `None`: the lot tariff decides once the stay is known (below).
    let typed = match (a.price, a.should_pay, a.paid) {
        (None, None, None) => None,
        (Some(p), Some(s), Some(d)) => Some((p, s, d)),
        _ => return refuse("give all of --price, --should-pay and --paid (fen), or none of them"),
    };
    if let Some((price, should_pay, paid)) = typed {
        for (name, v) in [
            ("--price", price),
            ("--should-pay", should_pay),
            ("--paid", paid),
        ] {
            if !(0..=crate::lane::fees::MAX_FEN).contains(&v) {
                return refuse(format!("{name} {v} must be between 0 and 99999999 fen"));
            }
        }
        if should_pay > price || paid > price {
            return refuse("--should-pay and --paid cannot exceed --price");
        }
    }
    let snapshot = read_snapshot(a.snapshot)?;
    let store = Store::open_site(site)?;
    let Some(stay) = store.find_open_stay(&plate)? else {
        return refuse(format!(
            "{plate} has no open stay; see `parking-bridge stay list --open`"
        ));
    };
    if away_time < stay.entered_at {
        return refuse(format!(
            "--time is before the entry of {plate} ({})",
            stay.entered_at.format_local(offset(site))
        ));
    }
    let fee = match typed {
        Some((price, should_pay, paid_fee)) => crate::lane::Fee {
            price,
            should_pay,
            paid_fee,
        },
        // The lane logic's default: the tariff's price, paid at the booth (§5 of
        // docs/lane-logic.md); no tariff → 0/0/0; exempt types → 0.
        None => crate::lane::fees::exit_fee(
            site.lot.tariff.as_ref(),
            stay.car_type,
            stay.entered_at,
            away_time,
        ),
    };
    let closed = store.close_stay(
        &stay.out_order_no,
        ExitDetails {
            lane: lane.id.clone(),
            port_no: lane.port_no.clone(),
            away_time,
            fee,
            operator,
            snapshot,
        },
        now,
    )?;
    Ok(closed.out_order_no)
}

/// `stay list`: newest first.
pub fn stay_list(
    site: &SiteConfig,
    open_only: bool,
    limit: usize,
) -> Result<String, OperatorError> {
    let store = Store::open_site(site)?;
    let off = offset(site);
    let stays = store.list_stays(open_only, limit)?;
    let missing: std::collections::HashSet<String> =
        store.acked_without_inner_order()?.into_iter().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<52} {:<12} {:<7} {:<10} {:<19} {:<19} inner_oder_no",
        "out_order_no", "plate", "color", "state", "entered", "exited"
    );
    for s in &stays {
        let _ = writeln!(
            out,
            "{:<52} {:<12} {:<7} {:<10} {:<19} {:<19} {}",
            s.out_order_no,
            s.plate_no,
            s.plate_color.code(),
            s.state.as_str(),
            s.entered_at.format_local(off),
            s.exited_at
                .map(|t| t.format_local(off))
                .unwrap_or_else(|| "-".into()),
            match (&s.inner_oder_no, missing.contains(&s.out_order_no)) {
                (Some(inner), _) => inner.as_str(),
                (None, true) => "MISSING (entry acknowledged without one)",
                (None, false) => "-",
            }
        );
    }
    if !missing.is_empty() {
        // Before the count line, which scripts read last.
        let _ = writeln!(
            out,
            "{} stay(s) acknowledged without inner_oder_no in all",
            missing.len()
        );
    }
    let _ = write!(out, "{} stay(s)", stays.len());
    Ok(out)
}

fn age(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `outbox`: what waits for the platform.
pub fn outbox(site: &SiteConfig, now: Timestamp) -> Result<String, OperatorError> {
    let store = Store::open_site(site)?;
    let sum = store.outbox_summary(now)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15} {:>8} {:>10} {:>8} {:>8} {:>6}  last error",
        "kind", "pending", "oldest", "acked", "dropped", "held"
    );
    for kind in [
        ReportKind::Entry,
        ReportKind::EntrySnapshot,
        ReportKind::Exit,
        ReportKind::ExitSnapshot,
    ] {
        let k = sum.kinds.get(&kind).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<15} {:>8} {:>10} {:>8} {:>8} {:>6}  {}",
            kind.as_str(),
            k.pending,
            k.oldest_pending_age_ms
                .map(age)
                .unwrap_or_else(|| "-".into()),
            k.acknowledged,
            k.dropped,
            k.held,
            k.last_error.as_deref().unwrap_or("-")
        );
    }
    let _ = write!(
        out,
        "pending total {}, pending images {} bytes",
        sum.pending(),
        sum.image_bytes
    );
    if sum.held() > 0 {
        let _ = write!(
            out,
            "\n{} report(s) HELD after repeated refusals: see `parking-bridge outbox held`",
            sum.held()
        );
    }
    let missing = store.acked_without_inner_order()?;
    if !missing.is_empty() {
        let _ = write!(
            out,
            "\n{} stay(s) acknowledged without inner_oder_no (see `stay list`)",
            missing.len()
        );
    }
    Ok(out)
}

/// `outbox held`: reports the platform refused too often, with its words.
pub fn outbox_held(site: &SiteConfig) -> Result<String, OperatorError> {
    let store = Store::open_site(site)?;
    let off = offset(site);
    let held = store.held_reports()?;
    let mut out = String::new();
    if held.is_empty() {
        let _ = write!(out, "no held reports");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<44} {:<15} {:<12} {:>8} {:<19} {:<19} platform's answer",
        "out_order_no", "kind", "plate", "refusals", "first refused", "last refused"
    );
    let time = |t: Option<Timestamp>| t.map(|t| t.format_local(off)).unwrap_or_else(|| "-".into());
    for h in &held {
        let words = match (&h.refusal_code, &h.refusal_message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => format!("(no code) {m}"),
            (None, None) => "(no code, no message)".into(),
        };
        let _ = writeln!(
            out,
            "{:<44} {:<15} {:<12} {:>8} {:<19} {:<19} {}",
            h.out_order_no,
            h.kind.as_str(),
            h.plate_no
                .as_deref()
                .map(crate::plate::mask)
                .unwrap_or_else(|| "-".into()),
            h.refusals,
            time(h.first_refused_at),
            time(h.last_refused_at),
            words
        );
        if h.waiting > 0 {
            let _ = writeln!(
                out,
                "    {} later report(s) of this stay wait for it (the platform could not match them)",
                h.waiting
            );
        }
    }
    let _ = write!(
        out,
        "{} held; after fixing the cause: `outbox retry OUT_ORDER_NO` or `outbox retry --all-held`; \
         to give up on one: `outbox drop OUT_ORDER_NO --reason TEXT`",
        held.len()
    );
    Ok(out)
}

/// `outbox retry OUT_ORDER_NO | --all-held`: held reports go again, with a fresh
/// refusal budget.
pub fn outbox_retry(
    site: &SiteConfig,
    out_order_no: Option<&str>,
    now: Timestamp,
) -> Result<String, OperatorError> {
    let store = Store::open_site(site)?;
    let target = out_order_no.map(str::trim);
    if let Some(o) = target {
        let (pending, held) = store.unfinished_of(o)?;
        if held == 0 {
            return refuse(format!(
                "{o} has no held report ({pending} pending); `parking-bridge outbox held` lists the held ones"
            ));
        }
    }
    let n = store.retry_held(target, now)?;
    tracing::info!(
        out_order_no = target.unwrap_or("all"),
        reports = n,
        "operator: held reports sent again"
    );
    Ok(format!(
        "{n} held report(s) queued again; the running bridge sends them within a second"
    ))
}

/// `outbox drop OUT_ORDER_NO --reason TEXT`: gives up on a stay's held reports. They
/// stay in the database as dropped, with the reason.
pub fn outbox_drop(
    site: &SiteConfig,
    out_order_no: &str,
    reason: &str,
    now: Timestamp,
) -> Result<String, OperatorError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return refuse("--reason must say why (it is kept with the dropped reports)");
    }
    let o = out_order_no.trim();
    let store = Store::open_site(site)?;
    let (pending, held) = store.unfinished_of(o)?;
    if held == 0 {
        return refuse(format!(
            "{o} has no held report ({pending} pending); only held reports can be dropped"
        ));
    }
    let kinds = store.drop_held(o, reason, now)?;
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    tracing::warn!(out_order_no = o, kinds = ?names, reason, "operator: reports dropped");
    Ok(format!(
        "dropped {} report(s) of {o}: {} (kept in the database with the reason)",
        kinds.len(),
        names.join(", ")
    ))
}

/// `occupancy [set N]`.
pub fn occupancy(site: &SiteConfig, set: Option<i64>) -> Result<String, OperatorError> {
    let store = Store::open_site(site)?;
    if let Some(n) = set {
        store.set_occupancy(n)?;
    }
    let o = store.occupancy()?;
    Ok(format!(
        "occupied {} of {}, free {}",
        o.occupied, o.total, o.free
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lot `P1` of 50 spaces storing in `dir`, lanes `entry-1` (E1) and `exit-1` (X1).
    fn site(dir: &std::path::Path) -> SiteConfig {
        let text = format!(
            "{}[[lanes]]\nid = \"entry-1\"\ndirection = \"entry\"\nport_no = \"E1\"\n\
             [[lanes]]\nid = \"exit-1\"\ndirection = \"exit\"\nport_no = \"X1\"\n",
            crate::config::test_site_head("")
        );
        let mut site = SiteConfig::from_toml(&text, std::path::Path::new("site.toml")).unwrap();
        site.lot = crate::config::LotConfig::new("P1", 50);
        site.storage.dir = dir.to_path_buf();
        site
    }

    /// The test site in a fresh directory (keep it alive as long as the site), and now.
    fn fresh() -> (tempfile::TempDir, SiteConfig, Timestamp) {
        let dir = tempfile::tempdir().unwrap();
        let site = site(dir.path());
        (dir, site, Timestamp::now())
    }

    fn enter_args(plate: &str) -> EnterArgs {
        EnterArgs {
            plate: plate.into(),
            color: "pnc_02".into(),
            lane: "entry-1".into(),
            ..EnterArgs::default()
        }
    }

    fn exit_args(plate: &str) -> ExitArgs {
        ExitArgs {
            plate: plate.into(),
            lane: "exit-1".into(),
            ..ExitArgs::default()
        }
    }

    /// The price, should-pay and paid fee stored with stay `o`.
    fn fee_of(store: &Store, o: &str) -> (Option<i64>, Option<i64>, Option<i64>) {
        let stay = store.stay(o).unwrap().expect("stay stored");
        (stay.price, stay.should_pay, stay.paid_fee)
    }

    fn refused(r: Result<String, OperatorError>) -> String {
        match r {
            Err(OperatorError::Refused(m)) => m,
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn enter_then_exit_closes_the_same_stay() {
        let (_dir, site, now) = fresh();
        let o = stay_enter(&site, enter_args("闽a12345"), now).unwrap();
        assert!(o.starts_with("P1"));
        let x = exit_args("闽A12345");
        assert_eq!(stay_exit(&site, x, now).unwrap(), o);
        assert!(occupancy(&site, None).unwrap().contains("occupied 0 of 50"));
        assert!(stay_list(&site, false, 10).unwrap().contains("闽A12345"));
        assert!(outbox(&site, now).unwrap().contains("pending total 2"));
    }

    #[test]
    fn bad_input_is_refused_with_a_clear_message() {
        let (_dir, site, now) = fresh();
        assert!(
            refused(stay_enter(&site, enter_args("闽A 12345"), now)).contains("without spaces")
        );
        assert!(refused(stay_enter(&site, enter_args(""), now)).contains("empty"));
        let mut a = enter_args("闽A12345");
        a.color = "blue".into();
        assert!(refused(stay_enter(&site, a, now)).contains("pnc_02"));
        let mut a = enter_args("闽A12345");
        a.lane = "exit-1".into();
        assert!(refused(stay_enter(&site, a, now)).contains("exit lane"));
        let mut a = enter_args("闽A12345");
        a.lane = "nowhere".into();
        assert!(refused(stay_enter(&site, a, now)).contains("entry-1"));
        let mut a = enter_args("闽A12345");
        a.time = Some("yesterday".into());
        assert!(refused(stay_enter(&site, a, now)).contains("2024-05-01"));
        let mut a = enter_args("闽A12345");
        a.car_type = Some("bus".into());
        assert!(refused(stay_enter(&site, a, now)).contains("parkcard"));
        let x = exit_args("B9");
        assert!(refused(stay_exit(&site, x, now)).contains("no open stay"));
        stay_enter(&site, enter_args("闽A12345"), now).unwrap();
        assert!(refused(stay_enter(&site, enter_args("闽A12345"), now)).contains("already parked"));
        let x = ExitArgs {
            price: Some(100),
            ..exit_args("A1")
        };
        assert!(refused(stay_exit(&site, x, now)).contains("--should-pay"));
        let x = ExitArgs {
            price: Some(100),
            should_pay: Some(200),
            paid: Some(0),
            ..exit_args("A1")
        };
        assert!(refused(stay_exit(&site, x, now)).contains("exceed"));
        assert!(matches!(
            occupancy(&site, Some(51)),
            Err(OperatorError::Store(StoreError::Invalid(_)))
        ));
        assert!(occupancy(&site, Some(7)).unwrap().contains("occupied 7"));
    }

    #[test]
    fn exit_without_price_charges_the_lot_tariff() {
        let dir = tempfile::tempdir().unwrap();
        let mut site = site(dir.path());
        site.lot.tariff = Some(crate::config::lot::Tariff {
            free_minutes: 15,
            hourly_rate: 500,
            daily_cap: 3000,
            exempt: vec![CarType::Special, CarType::White, CarType::Parkcard],
        });
        let now = Timestamp::now();
        let mut a = enter_args("闽A12345");
        // 2 h 10 min before the exit: three started hours.
        let entered = Timestamp(now.0 - (2 * 60 + 10) * 60_000);
        a.time = Some(entered.format_local(offset(&site)));
        let o = stay_enter(&site, a, now).unwrap();
        let x = exit_args("闽A12345");
        stay_exit(&site, x, now).unwrap();
        let store = Store::open_site(&site).unwrap();
        assert_eq!(fee_of(&store, &o), (Some(1500), Some(0), Some(1500)));

        // Typed figures still win over the tariff.
        stay_enter(&site, enter_args("闽A54321"), now).unwrap();
        let x = ExitArgs {
            price: Some(700),
            should_pay: Some(700),
            paid: Some(0),
            ..exit_args("闽A54321")
        };
        let o2 = stay_exit(&site, x, now).unwrap();
        assert_eq!(fee_of(&store, &o2), (Some(700), Some(700), Some(0)));
    }

    #[test]
    fn typed_plates_are_checked_against_chinese_formats() {
        let (_dir, site, now) = fresh();
        let msg = refused(stay_enter(&site, enter_args("闽A1234"), now));
        assert!(
            msg.contains("not a Chinese plate format") && msg.contains("--any-plate"),
            "{msg}"
        );
        let mut a = enter_args("ABC123");
        a.any_plate = true;
        stay_enter(&site, a, now).unwrap();
        // Unknown colour on a new-energy plate is green; a police plate is special.
        let mut a = enter_args("粤BD12345");
        a.color = "pnc_01".into();
        stay_enter(&site, a, now).unwrap();
        stay_enter(&site, enter_args("闽A1234警"), now).unwrap();
        let store = Store::open_site(&site).unwrap();
        let ne = store.find_open_stay("粤BD12345").unwrap().unwrap();
        assert_eq!(ne.plate_color, PlateColor::Green);
        let police = store.find_open_stay("闽A1234警").unwrap().unwrap();
        assert_eq!(police.car_type, CarType::Special);
    }

    #[test]
    fn snapshot_must_be_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let site = site(dir.path());
        let file = dir.path().join("note.txt");
        std::fs::write(&file, "hello").unwrap();
        let mut a = enter_args("闽A12345");
        a.snapshot = Some(file);
        assert!(refused(stay_enter(&site, a, Timestamp::now())).contains("not a JPEG or PNG"));
    }

    /// Holds every unfinished report of `o` as the uploader would after refusals.
    fn hold_all(site: &SiteConfig, o: &str) {
        let store = Store::open_site(site).unwrap();
        let items = store
            .due_reports(Timestamp::now(), 100, false, &Default::default())
            .unwrap();
        let outcomes: Vec<_> = items
            .iter()
            .filter(|i| i.out_order_no == o)
            .map(|i| crate::store::Outcome::Held {
                id: i.id,
                refusal: crate::store::Refusal {
                    code: Some("BAD_FIELD".into()),
                    message: "port_no 未登记".into(),
                },
            })
            .collect();
        assert!(!outcomes.is_empty());
        store.record_outcomes(&outcomes, Timestamp::now()).unwrap();
    }

    #[test]
    fn held_reports_are_listed_retried_and_dropped_and_it_survives_reopening() {
        let (_dir, site, now) = fresh();
        let o = stay_enter(&site, enter_args("闽A12345"), now).unwrap();
        hold_all(&site, &o);
        let list = outbox_held(&site).unwrap();
        assert!(list.contains(&o), "{list}");
        assert!(list.contains("BAD_FIELD: port_no 未登记"), "{list}");
        assert!(!list.contains("闽A12345"), "plate masked: {list}");
        assert!(outbox(&site, now).unwrap().contains("1 report(s) HELD"));
        // The exit recorded later waits behind the held entry.
        stay_exit(&site, exit_args("闽A12345"), now).unwrap();
        assert!(outbox_held(&site).unwrap().contains("1 later report(s)"));
        let store = Store::open_site(&site).unwrap();
        assert!(
            store
                .due_reports(now, 10, false, &Default::default())
                .unwrap()
                .is_empty()
        );
        drop(store);

        assert!(refused(outbox_retry(&site, Some("NOPE"), now)).contains("no held report"));
        assert!(
            outbox_retry(&site, Some(&o), now)
                .unwrap()
                .starts_with("1 held")
        );
        let store = Store::open_site(&site).unwrap();
        let due = store
            .due_reports(now, 10, false, &Default::default())
            .unwrap();
        assert_eq!(
            (due.len(), due[0].kind, due[0].refusals),
            (1, ReportKind::Entry, 0)
        );
        drop(store);

        hold_all(&site, &o);
        assert!(refused(outbox_drop(&site, &o, "  ", now)).contains("--reason"));
        let done = outbox_drop(&site, &o, "wrong plate typed", now).unwrap();
        assert!(done.contains("dropped 2 report(s)"), "{done}");
        assert!(done.contains("entry, exit"), "{done}");
        assert_eq!(outbox_held(&site).unwrap(), "no held reports");
        let store = Store::open_site(&site).unwrap();
        // Read straight from the file: the store has no query for the reason.
        let reason: String = rusqlite::Connection::open(store.path())
            .unwrap()
            .query_row(
                "SELECT drop_reason FROM outbox WHERE out_order_no = ?1 AND kind = 2",
                [&o],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reason, "wrong plate typed");
        assert_eq!(store.pending_count().unwrap(), 0);
    }
}
