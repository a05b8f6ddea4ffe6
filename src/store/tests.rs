use super::*;
use crate::config::Direction;
use crate::report::{Report, ReportKind};
use std::collections::HashSet;

const T0: Timestamp = Timestamp(1_570_167_364_000); // 2019-10-04 13:36:04 +08:00

fn lot(total: i64) -> LotConfig {
    LotConfig::new("P3501", total)
}

fn store(dir: &tempfile::TempDir, total: i64) -> Store {
    Store::open(dir.path(), &lot(total)).unwrap()
}

fn new_stay(plate: &str, image: Option<Vec<u8>>) -> NewStay {
    super::fixtures::new_stay(plate, image, T0)
}

/// Leaves an hour after `T0`, 5 yuan paid.
fn exit(image: Option<Vec<u8>>) -> ExitDetails {
    super::fixtures::exit_details(T0.plus_millis(3_600_000), 500, image)
}

/// A fresh store of `total` spaces; keep the directory alive as long as the store.
fn fresh(total: i64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, total);
    (dir, s)
}

fn delivered(id: i64) -> Outcome {
    Outcome::Delivered {
        id,
        result_code: Some("success".into()),
        inner_oder_no: None,
        sign_level: None,
        sign_time: None,
    }
}

/// Delivered with no result code but the platform's order number `inner`.
fn delivered_with_inner(id: i64, inner: &str) -> Outcome {
    Outcome::Delivered {
        id,
        result_code: None,
        inner_oder_no: Some(inner.into()),
        sign_level: None,
        sign_time: None,
    }
}

/// Retry `id` from `due_at` after `error`, as the uploader records a failed attempt.
fn retry(id: i64, due_at: Timestamp, error: &str) -> Outcome {
    Outcome::Retry {
        id,
        due_at,
        error: error.into(),
    }
}

/// The platform did not know the stay of `id`: its entry goes first, as the uploader
/// records it.
fn needs_entry_first(id: i64, due_at: Timestamp, error: &str) -> Outcome {
    Outcome::NeedsEntryFirst {
        id,
        due_at,
        error: error.into(),
    }
}

/// Opens a stay for `plate` (no image) at `T0`; returns its out_order_no.
fn open(s: &Store, plate: &str) -> String {
    open_with(s, plate, None)
}

/// Opens a stay for `plate` with `image` at `T0`; returns its out_order_no.
fn open_with(s: &Store, plate: &str, image: Option<Vec<u8>>) -> String {
    s.open_stay(new_stay(plate, image), T0)
        .unwrap()
        .out_order_no
}

/// Opens a stay for `A1` whose entry's first attempt failed with `error`, to be retried
/// at `due_at`.
fn entry_failed(s: &Store, due_at: Timestamp, error: &str) {
    open(s, "A1");
    let e = first_due(s, T0);
    s.record_outcomes(&[retry(e.id, due_at, error)], T0)
        .unwrap();
}

/// Opens a stay for `plate` at `T0` and delivers its entry; returns the stay's number
/// and the entry's row.
fn open_delivered(s: &Store, plate: &str) -> (String, OutboxItem) {
    let o = open(s, plate);
    let entry = first_due(s, T0);
    s.record_outcomes(&[delivered(entry.id)], T0).unwrap();
    (o, entry)
}

/// The reports due at `now`, up to ten, oldest first, none held back as busy.
fn due_items(s: &Store, now: Timestamp) -> Vec<OutboxItem> {
    s.due_reports(now, 10, false, &HashSet::new()).unwrap()
}

/// The first report due at `now`; panics when none is.
fn first_due(s: &Store, now: Timestamp) -> OutboxItem {
    due_items(s, now).remove(0)
}

fn heads(s: &Store, now: Timestamp) -> Vec<(String, ReportKind)> {
    s.due_reports(now, 100, false, &HashSet::new())
        .unwrap()
        .into_iter()
        .map(|i| (i.out_order_no, i.kind))
        .collect()
}

#[test]
fn opening_a_stay_queues_entry_and_takes_a_space() {
    let (_dir, s) = fresh(10);
    let opened = s.open_stay(new_stay("闽A12345", None), T0).unwrap();
    assert_eq!(opened.out_order_no, "P350120191004133604000001");
    assert_eq!(opened.free_spaces, 9);
    let due = due_items(&s, T0);
    assert_eq!(due.len(), 1);
    match &due[0].report {
        Report::Entry(e) => {
            assert_eq!(e.plate_no, "闽A12345");
            assert_eq!((e.total_spaces, e.free_spaces), (10, 9));
        }
        other => panic!("expected entry, got {other:?}"),
    }
    assert_eq!(
        s.occupancy().unwrap(),
        Occupancy {
            occupied: 1,
            total: 10,
            free: 9
        }
    );
}

#[test]
fn sequence_survives_reopen_and_clock_going_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = store(&dir, 10)
        .open_stay(new_stay("A1", None), T0)
        .unwrap()
        .out_order_no;
    let s = store(&dir, 10);
    let second = s
        .open_stay(new_stay("A2", None), T0.plus_millis(-86_400_000))
        .unwrap()
        .out_order_no;
    assert_ne!(first, second);
    assert_eq!(
        second, "P350120191004133604000002",
        "stamp held at the last one used"
    );
}

#[test]
fn occupancy_is_capped_at_total_and_floored_at_zero() {
    let (_dir, s) = fresh(1);
    let a = s.open_stay(new_stay("A1", None), T0).unwrap();
    let b = s.open_stay(new_stay("A2", None), T0).unwrap();
    assert_eq!((a.free_spaces, b.free_spaces), (0, 0));
    s.close_stay(&a.out_order_no, exit(None), T0).unwrap();
    let c = s.close_stay(&b.out_order_no, exit(None), T0).unwrap();
    assert_eq!(c.free_spaces, 1);
    assert_eq!(
        s.record_count_only(Direction::Exit, "exit-1", T0)
            .unwrap()
            .occupied,
        0
    );
    assert_eq!(
        s.record_count_only(Direction::Entry, "entry-1", T0)
            .unwrap()
            .occupied,
        1
    );
}

#[test]
fn stay_order_is_entry_snapshot_exit_snapshot() {
    let (_dir, s) = fresh(10);
    let o = open_with(&s, "A1", Some(vec![1, 2, 3]));
    s.close_stay(&o, exit(Some(vec![4, 5])), T0).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let due = due_items(&s, T0);
        assert_eq!(due.len(), 1, "only the head of a stay is due");
        seen.push(due[0].kind);
        s.record_outcomes(&[delivered(due[0].id)], T0).unwrap();
    }
    assert_eq!(
        seen,
        vec![
            ReportKind::Entry,
            ReportKind::EntrySnapshot,
            ReportKind::Exit,
            ReportKind::ExitSnapshot
        ]
    );
    assert!(heads(&s, T0).is_empty());
}

#[test]
fn a_stay_in_backoff_does_not_hold_back_others() {
    let (_dir, s) = fresh(10);
    let a = open(&s, "A1");
    let b = open(&s, "A2");
    s.close_stay(&a, exit(None), T0).unwrap();
    let due = due_items(&s, T0);
    s.record_outcomes(&[retry(due[0].id, T0.plus_millis(60_000), "503")], T0)
        .unwrap();
    assert_eq!(heads(&s, T0), vec![(b.clone(), ReportKind::Entry)]);
    assert_eq!(heads(&s, T0.plus_millis(60_000)).len(), 2);
    let busy: HashSet<String> = [b].into_iter().collect();
    assert_eq!(
        s.due_reports(T0.plus_millis(60_000), 10, false, &busy)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn newest_first_reaches_live_reports_behind_a_backlog() {
    let (_dir, s) = fresh(1000);
    for i in 0..20 {
        s.open_stay(new_stay(&format!("A{i}"), None), T0).unwrap();
    }
    let live = s
        .open_stay(new_stay("LIVE1", None), T0)
        .unwrap()
        .out_order_no;
    let newest = s.due_reports(T0, 1, true, &HashSet::new()).unwrap();
    assert_eq!(newest[0].out_order_no, live);
}

#[test]
fn unknown_stay_requeues_its_entry_before_the_exit() {
    let (_dir, s) = fresh(10);
    let (o, entry) = open_delivered(&s, "A1");
    s.close_stay(&o, exit(None), T0).unwrap();
    let exit_row = first_due(&s, T0);
    assert_eq!(exit_row.kind, ReportKind::Exit);
    s.record_outcomes(&[needs_entry_first(exit_row.id, T0, "ORDER_NOT_EXIST")], T0)
        .unwrap();
    assert_eq!(heads(&s, T0), vec![(o.clone(), ReportKind::Entry)]);
    let again = first_due(&s, T0);
    assert_eq!(again.id, entry.id, "the stored entry row is reused");
    s.record_outcomes(&[delivered(again.id)], T0).unwrap();
    assert_eq!(heads(&s, T0), vec![(o, ReportKind::Exit)]);
}

#[test]
fn entry_rebuilt_from_the_stay_after_pruning() {
    let (_dir, s) = fresh(10);
    let (o, _) = open_delivered(&s, "A1");
    let later = T0.plus_millis(31 * 24 * 3600 * 1000);
    assert_eq!(s.prune(later).unwrap(), 1);
    assert!(s.stay(&o).unwrap().is_some(), "open stays are never pruned");
    s.close_stay(&o, exit(None), later).unwrap();
    let exit_row = first_due(&s, later);
    s.record_outcomes(&[needs_entry_first(exit_row.id, later, "x")], later)
        .unwrap();
    let rebuilt = first_due(&s, later);
    match rebuilt.report {
        Report::Entry(e) => assert_eq!((e.plate_no.as_str(), e.free_spaces), ("A1", 9)),
        other => panic!("expected entry, got {other:?}"),
    }
}

#[test]
fn entry_answer_fields_are_kept_on_the_stay() {
    let (_dir, s) = fresh(10);
    let o = open(&s, "A1");
    let entry = first_due(&s, T0);
    s.record_outcomes(
        &[Outcome::Delivered {
            id: entry.id,
            result_code: Some("success".into()),
            inner_oder_no: Some("INNER-9".into()),
            sign_level: Some("L2".into()),
            sign_time: Some("2019-10-04 13:36:05".into()),
        }],
        T0,
    )
    .unwrap();
    let stay = s.stay(&o).unwrap().unwrap();
    assert_eq!(stay.inner_oder_no.as_deref(), Some("INNER-9"));
    assert_eq!(stay.sign_level.as_deref(), Some("L2"));
}

#[test]
fn an_entry_acknowledged_without_inner_order_is_counted_and_a_known_one_never_lost() {
    let (_dir, s) = fresh(10);
    let o = open(&s, "A1");
    let entry = first_due(&s, T0);
    // The first answer was lost; the re-send is answered as a duplicate without one.
    let counted = super::outbox::WITHOUT_INNER.get();
    s.record_outcomes(&[delivered(entry.id)], T0).unwrap();
    assert_eq!(s.acked_without_inner_order().unwrap(), vec![o.clone()]);
    // (≥: other tests of this binary may count too when run as threads.)
    assert!(super::outbox::WITHOUT_INNER.get() > counted, "counted");
    // A later answer (the exit's) that carries it fills the gap.
    s.close_stay(&o, exit(None), T0).unwrap();
    let exit_row = first_due(&s, T0);
    s.record_outcomes(&[delivered_with_inner(exit_row.id, "INNER-1")], T0)
        .unwrap();
    assert!(s.acked_without_inner_order().unwrap().is_empty());
    // The entry re-sent later and answered without one does not erase it.
    let o2 = open(&s, "B2");
    let e2 = first_due(&s, T0);
    s.record_outcomes(&[delivered_with_inner(e2.id, "INNER-2")], T0)
        .unwrap();
    s.close_stay(&o2, exit(None), T0).unwrap();
    s.lock()
        .execute("UPDATE outbox SET state = 'pending' WHERE id = ?1", [e2.id])
        .unwrap();
    s.record_outcomes(&[delivered(e2.id)], T0).unwrap();
    assert_eq!(
        s.stay(&o2).unwrap().unwrap().inner_oder_no.as_deref(),
        Some("INNER-2")
    );
}

#[test]
fn held_rows_survive_pruning_and_a_held_snapshot_keeps_its_image() {
    let (_dir, s) = fresh(10);
    let o = open_with(&s, "A1", Some(vec![1, 2, 3]));
    let entry = first_due(&s, T0);
    s.record_outcomes(&[delivered(entry.id)], T0).unwrap();
    let snap = first_due(&s, T0);
    assert_eq!(snap.kind, ReportKind::EntrySnapshot);
    let refusal = Refusal {
        code: None,
        message: "event 缺失".into(),
    };
    s.record_outcomes(
        &[Outcome::Held {
            id: snap.id,
            refusal,
        }],
        T0,
    )
    .unwrap();
    s.prune(T0.plus_millis(400 * 86_400_000)).unwrap();
    assert_eq!(s.held_count().unwrap(), 1);
    assert!(s.image(snap.id).unwrap().is_some());
    assert_eq!(s.held_reports().unwrap()[0].out_order_no, o);
}

#[test]
fn inline_mode_attaches_the_image_to_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        snapshot_mode: SnapshotMode::Inline,
        ..StoreOptions::default()
    };
    let s = Store::open_with(dir.path(), &lot(10), opts).unwrap();
    s.open_stay(new_stay("A1", Some(vec![9; 100])), T0).unwrap();
    let due = due_items(&s, T0);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].image_bytes, Some(100));
    assert_eq!(s.image(due[0].id).unwrap().unwrap().data, vec![9; 100]);
}

#[test]
fn disk_budget_drops_oldest_images_never_reports() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        image_budget_bytes: 250,
        ..StoreOptions::default()
    };
    let s = Store::open_with(dir.path(), &lot(10), opts).unwrap();
    for i in 0..3 {
        s.open_stay(new_stay(&format!("A{i}"), Some(vec![1; 100])), T0)
            .unwrap();
    }
    let summary = s.outbox_summary(T0).unwrap();
    assert_eq!(
        summary.kinds[&ReportKind::Entry].pending,
        3,
        "entries are never dropped"
    );
    assert_eq!(summary.kinds[&ReportKind::EntrySnapshot].pending, 2);
    assert_eq!(summary.kinds[&ReportKind::EntrySnapshot].dropped, 1);
    assert_eq!(summary.image_bytes, 200);
}

#[test]
fn local_close_frees_the_space_without_a_report() {
    let (_dir, s) = fresh(10);
    let o = open(&s, "A1");
    s.close_stay_locally(&o, LocalClose::Superseded, T0)
        .unwrap();
    assert_eq!(s.occupancy().unwrap().occupied, 0);
    assert_eq!(s.stay(&o).unwrap().unwrap().state, StayState::Superseded);
    assert!(s.find_open_stay("A1").unwrap().is_none());
    assert_eq!(s.outbox_summary(T0).unwrap().pending(), 1, "only the entry");
    assert!(matches!(
        s.close_stay(&o, exit(None), T0),
        Err(StoreError::NotOpen(_))
    ));
}

#[test]
fn find_open_stay_and_open_stays() {
    let (_dir, s) = fresh(10);
    open(&s, "A1");
    let b = open(&s, "B2");
    assert_eq!(s.find_open_stay("B2").unwrap().unwrap().out_order_no, b);
    assert_eq!(s.open_stays().unwrap().len(), 2);
    s.close_stay(&b, exit(None), T0).unwrap();
    assert_eq!(s.open_stays().unwrap().len(), 1);
    assert!(s.find_open_stay("B2").unwrap().is_none());
}

#[test]
fn bad_input_is_refused() {
    let (_dir, s) = fresh(10);
    assert!(matches!(
        s.open_stay(new_stay("", None), T0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.open_stay(new_stay("A 1", None), T0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.open_stay(new_stay(&"A".repeat(17), None), T0),
        Err(StoreError::Invalid(_))
    ));
    assert!(s.set_occupancy(11).is_err());
    s.set_occupancy(7).unwrap();
    assert_eq!(s.occupancy().unwrap().free, 3);
}

#[test]
fn summary_reports_pending_age_and_last_error() {
    let (_dir, s) = fresh(10);
    entry_failed(&s, T0, "HTTP 502");
    let sum = s.outbox_summary(T0.plus_millis(5_000)).unwrap();
    let k = &sum.kinds[&ReportKind::Entry];
    assert_eq!(k.pending, 1);
    assert_eq!(k.oldest_pending_age_ms, Some(5_000));
    assert_eq!(k.last_error.as_deref(), Some("HTTP 502"));
    assert_eq!(s.pending_count().unwrap(), 1);
}

#[test]
fn garbage_file_is_a_clear_error_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let garbage =
        b"this is not an sqlite database, but it is long enough to have a header....".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    match Store::open(dir.path(), &lot(10)) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("state.db"), "{e}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a garbage file"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "never recreated");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(store(&dir, 10));
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(dir.path(), &lot(10)).err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn integrity_check_passes_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    store(&dir, 10).check_integrity().unwrap();
}

#[test]
fn grouped_open_is_one_transaction_with_distinct_numbers() {
    let (_dir, s) = fresh(100);
    let opened = s
        .open_stays_grouped(
            (0..10).map(|i| new_stay(&format!("G{i}"), None)).collect(),
            T0,
        )
        .unwrap();
    let numbers: HashSet<_> = opened.iter().map(|o| o.out_order_no.clone()).collect();
    assert_eq!(numbers.len(), 10);
    assert_eq!(s.occupancy().unwrap().occupied, 10);
}

#[test]
fn retries_scheduled_before_the_clock_went_back_are_due() {
    let (_dir, s) = fresh(10);
    entry_failed(&s, T0.plus_millis(30_000), "x");
    assert!(heads(&s, T0).is_empty(), "backing off");
    assert_eq!(
        heads(&s, T0.plus_millis(-2 * 3_600_000)).len(),
        1,
        "clock two hours back"
    );
}

#[test]
fn delivered_images_give_their_space_back_bit_by_bit() {
    let (_dir, s) = fresh(100);
    for i in 0..40 {
        s.open_stay(new_stay(&format!("A{i}"), Some(vec![7u8; 256 * 1024])), T0)
            .unwrap();
    }
    loop {
        let due = s.due_reports(T0, 100, false, &HashSet::new()).unwrap();
        if due.is_empty() {
            break;
        }
        let done: Vec<Outcome> = due.iter().map(|d| delivered(d.id)).collect();
        s.record_outcomes(&done, T0).unwrap();
    }
    let (before, page) = s.page_usage().unwrap();
    assert!(
        before * page > 10 << 20,
        "40 images of 256 KiB: {before} pages"
    );
    // Each call releases at most the asked number of pages, beyond the reserve.
    assert_eq!(s.reclaim_free_pages(0, 100).unwrap(), 100);
    assert_eq!(s.page_usage().unwrap().0, before - 100);
    let mut calls = 0;
    while s.reclaim_free_pages(64, 1000).unwrap() > 0 {
        calls += 1;
        assert!(calls < 100, "reclaim never finishes");
    }
    let (after, _) = s.page_usage().unwrap();
    assert!(after * page < 2 << 20, "{after} pages left of {before}");
    // The reserve stays free for the next images.
    let conn = s.lock();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 64);
}

#[test]
fn a_database_made_without_incremental_vacuum_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    {
        // As an earlier version created it: a table before any auto_vacuum setting.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE before_this_version (x)")
            .unwrap();
    }
    let s = store(&dir, 10);
    s.open_stay(new_stay("A1", Some(vec![1u8; 64 * 1024])), T0)
        .unwrap();
    assert_eq!(s.reclaim_free_pages(0, 1000).unwrap(), 0);
}

#[test]
fn late_passages_of_a_port_are_due_one_at_a_time_oldest_first() {
    let (_dir, s) = fresh(100);
    let now = T0.plus_millis(3 * 3_600_000);
    // A camera's stored recognitions, pushed three hours late, one a minute.
    let late: Vec<String> = (0..5)
        .map(|i| {
            let mut stay = new_stay(&format!("L{i}"), None);
            stay.entered_at = T0.plus_millis(i * 60_000);
            s.open_stay(stay, now).unwrap().out_order_no
        })
        .collect();
    // A live passage on the same port and a late one on another port are not held back.
    let mut live = new_stay("LIVE", None);
    live.entered_at = now;
    let live = s.open_stay(live, now).unwrap().out_order_no;
    let mut other = new_stay("OTHER", None);
    other.entered_at = T0;
    other.port_no = "E2".into();
    let other = s.open_stay(other, now).unwrap().out_order_no;
    let due: Vec<String> = heads(&s, now).into_iter().map(|(o, _)| o).collect();
    assert_eq!(due, vec![late[0].clone(), live.clone(), other.clone()]);

    // In flight (still pending) it holds the next back; answered, the next is due.
    let busy: HashSet<String> = [late[0].clone()].into_iter().collect();
    assert!(
        s.due_reports(now, 10, false, &busy)
            .unwrap()
            .iter()
            .all(|i| i.out_order_no != late[1])
    );
    let first = first_due(&s, now);
    s.record_outcomes(&[delivered(first.id)], now).unwrap();
    assert!(heads(&s, now).contains(&(late[1].clone(), ReportKind::Entry)));
    assert!(!heads(&s, now).contains(&(late[2].clone(), ReportKind::Entry)));

    // A refused one waits for its retry without holding the rest of the port back.
    let second = due_items(&s, now)
        .into_iter()
        .find(|i| i.out_order_no == late[1])
        .unwrap();
    let refused = Outcome::Refused {
        id: second.id,
        due_at: now.plus_millis(240_000),
        refusal: Refusal {
            code: None,
            message: "event 缺失".into(),
        },
    };
    s.record_outcomes(&[refused], now).unwrap();
    assert!(heads(&s, now).contains(&(late[2].clone(), ReportKind::Entry)));
    // The uploader's newest-first pick cannot jump the queue either.
    let newest: Vec<String> = s
        .due_reports(now, 10, true, &HashSet::new())
        .unwrap()
        .into_iter()
        .map(|i| i.out_order_no)
        .collect();
    assert!(
        !newest.contains(&late[3]) && !newest.contains(&late[4]),
        "{newest:?}"
    );
}
