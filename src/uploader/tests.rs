//! The delivery loop against an in-process fake platform.

use super::*;
use crate::config::LotConfig;
use crate::platform::Verdict;
use crate::report::SnapshotEvent;
use std::sync::Mutex as StdMutex;

type Script = Box<dyn FnMut(&Uplink, usize) -> Result<Answer, ClientError> + Send>;

/// Records every request as (label, out_order_no); answers by script.
struct Fake {
    log: StdMutex<Vec<(String, String)>>,
    script: StdMutex<Script>,
    latency: Duration,
}

fn label(u: &Uplink) -> String {
    match u {
        Uplink::Entry(_) => "entry".into(),
        Uplink::Exit(_) => "exit".into(),
        Uplink::Snapshot(s) => format!("snapshot_{}", s.event),
        Uplink::Heartbeat(h) => format!("heartbeat_{}", h.status),
    }
}

impl Fake {
    fn new(latency_ms: u64, script: Script) -> Arc<Fake> {
        Arc::new(Fake {
            log: StdMutex::new(Vec::new()),
            script: StdMutex::new(script),
            latency: Duration::from_millis(latency_ms),
        })
    }
    fn always_done() -> Arc<Fake> {
        Fake::new(0, Box::new(|_, _| ok(Verdict::Done)))
    }
    fn log(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }
}

impl Deliver for Fake {
    async fn deliver(&self, uplink: &Uplink) -> Result<Answer, ClientError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let n = {
            let mut log = self.log.lock().unwrap();
            log.push((
                label(uplink),
                uplink.out_order_no().unwrap_or("").to_string(),
            ));
            log.len()
        };
        (self.script.lock().unwrap())(uplink, n)
    }
}

fn ok(verdict: Verdict) -> Result<Answer, ClientError> {
    Ok(Answer {
        verdict,
        result_code: Some("success".into()),
        result_msg: None,
        inner_oder_no: Some("INNER".into()),
        sign_level: None,
        sign_time: None,
        unexpected_code: false,
    })
}

fn refused() -> Result<Answer, ClientError> {
    Ok(Answer {
        verdict: Verdict::Refused {
            code: None,
            message: "event 缺失".into(),
        },
        result_code: None,
        result_msg: Some("event 缺失".into()),
        inner_oder_no: None,
        sign_level: None,
        sign_time: None,
        unexpected_code: false,
    })
}

/// The platform could not be reached (`detail` says why).
fn platform_down(detail: &str) -> Result<Answer, ClientError> {
    Err(ClientError::Refused {
        url: "http://x".into(),
        detail: detail.into(),
    })
}

fn store(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::open(dir.path(), &LotConfig::new("P1", 1000)).unwrap())
}

/// A fresh store of lot `P1`; keep the directory alive as long as the store.
fn fresh() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    (dir, s)
}

fn tiny_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

fn enter(s: &Store, plate: &str, image: Option<Vec<u8>>) -> String {
    let stay = crate::store::fixtures::new_stay(plate, image, Timestamp::now());
    s.open_stay(stay, Timestamp::now()).unwrap().out_order_no
}

fn leave(s: &Store, o: &str, image: Option<Vec<u8>>) {
    let x = crate::store::fixtures::exit_details(Timestamp::now(), 0, image);
    s.close_stay(o, x, Timestamp::now()).unwrap();
}

fn fast_settings() -> UploaderSettings {
    let mut s = UploaderSettings::new("P1", crate::time::china_standard_time());
    s.backoff = Backoff {
        base_ms: 20,
        cap_ms: 200,
        alarm_ms: 300,
        trouble_after: 3,
        refused_tries: 3,
        refused_first_ms: 30,
    };
    s.poll = Duration::from_millis(20);
    s
}

fn start<D: Deliver>(
    s: &Arc<Store>,
    fake: &Arc<D>,
    settings: UploaderSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(Uploader::new(s.clone(), fake.clone(), settings, StatusHandle::default()).run())
}

async fn until_drained(s: &Arc<Store>, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if s.outbox_summary(Timestamp::now()).unwrap().pending() == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox not drained: {:?}",
            s.outbox_summary(Timestamp::now())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Positions of each label for one stay in the log.
fn sequence_of(log: &[(String, String)], o: &str) -> Vec<String> {
    log.iter()
        .filter(|(_, x)| x == o)
        .map(|(l, _)| l.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stay_goes_entry_snapshot_exit_snapshot() {
    let (_dir, s) = fresh();
    let fake = Fake::new(2, Box::new(|_, _| ok(Verdict::Done)));
    let task = start(&s, &fake, fast_settings());
    let mut stays = Vec::new();
    for i in 0..12 {
        let o = enter(&s, &format!("A{i}"), Some(tiny_jpeg()));
        leave(&s, &o, Some(tiny_jpeg()));
        stays.push(o);
    }
    until_drained(&s, 20).await;
    task.abort();
    let log = fake.log();
    for o in &stays {
        assert_eq!(
            sequence_of(&log, o),
            ["entry", "snapshot_parking", "exit", "snapshot_away"],
            "stay {o}"
        );
    }
    assert_eq!(
        s.stay(&stays[0]).unwrap().unwrap().inner_oder_no.as_deref(),
        Some("INNER")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_stay_does_not_hold_back_the_others() {
    let (_dir, s) = fresh();
    let stuck = enter(&s, "STUCK1", None);
    let stuck_clone = stuck.clone();
    let fake = Fake::new(
        0,
        Box::new(move |u, _| {
            if u.out_order_no() == Some(stuck_clone.as_str()) {
                ok(Verdict::Retry {
                    why: "SYSTEM_BUSY".into(),
                })
            } else {
                ok(Verdict::Done)
            }
        }),
    );
    let others: Vec<String> = (0..20).map(|i| enter(&s, &format!("B{i}"), None)).collect();
    let task = start(&s, &fake, fast_settings());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.outbox_summary(Timestamp::now()).unwrap().pending() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "others held back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while sequence_of(&fake.log(), &stuck).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck stay not retried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let log = fake.log();
    for o in &others {
        assert_eq!(sequence_of(&log, o), ["entry"]);
    }
    assert!(
        sequence_of(&log, &stuck).len() >= 2,
        "the stuck stay keeps being retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_order_sends_the_entry_again_then_the_exit() {
    let (_dir, s) = fresh();
    let o = enter(&s, "A1", None);
    leave(&s, &o, None);
    // The platform "lost" the first entry: the first exit is answered ORDER_NOT_EXIST.
    let mut exits = 0;
    let fake = Fake::new(
        0,
        Box::new(move |u, _| {
            if matches!(u, Uplink::Exit(_)) {
                exits += 1;
                if exits == 1 {
                    return ok(Verdict::NeedsEntryFirst);
                }
            }
            ok(Verdict::Done)
        }),
    );
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(
        sequence_of(&fake.log(), &o),
        ["entry", "exit", "entry", "exit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_answer_counts_as_delivered() {
    let (_dir, s) = fresh();
    let o = enter(&s, "A1", None);
    let fake = Fake::new(0, Box::new(|_, _| ok(Verdict::AlreadyDone)));
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(sequence_of(&fake.log(), &o), ["entry"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_pauses_everything_then_drains_in_order() {
    let (_dir, s) = fresh();
    let stays: Vec<String> = (0..30).map(|i| enter(&s, &format!("C{i}"), None)).collect();
    for o in &stays {
        leave(&s, o, None);
    }
    let fake = Fake::new(
        1,
        Box::new(|_, n| {
            if n <= 12 {
                platform_down("down")
            } else {
                ok(Verdict::Done)
            }
        }),
    );
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 30).await;
    task.abort();
    let log = fake.log();
    let failed_attempts = 12;
    // Paused while down: far fewer attempts than reports were made before the pause.
    assert!(log.len() <= 60 + failed_attempts, "{} attempts", log.len());
    for o in &stays {
        let seq = sequence_of(&log, o);
        let last_entry = seq.iter().rposition(|l| l == "entry").unwrap();
        let first_exit = seq.iter().position(|l| l == "exit").unwrap();
        assert!(last_entry < first_exit, "{o}: {seq:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_snapshot_is_dropped_and_the_rest_goes() {
    let (_dir, s) = fresh();
    let o = enter(&s, "A1", Some(b"definitely not an image".to_vec()));
    leave(&s, &o, Some(tiny_jpeg()));
    let fake = Fake::always_done();
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(
        sequence_of(&fake.log(), &o),
        ["entry", "exit", "snapshot_away"]
    );
    let sum = s.outbox_summary(Timestamp::now()).unwrap();
    assert_eq!(sum.kinds[&ReportKind::EntrySnapshot].dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_by_another_connection_are_picked_up() {
    let (dir, s) = fresh();
    let fake = Fake::always_done();
    let mut settings = fast_settings();
    settings.poll = Duration::from_millis(200);
    let task = start(&s, &fake, settings);
    // A second Store on the same file stands in for an operator command's process.
    let other = store(&dir);
    let o = enter(&other, "OP1", None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while sequence_of(&fake.log(), &o).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not picked up within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_pace_during_a_slow_backlog() {
    let (_dir, s) = fresh();
    for i in 0..200 {
        enter(&s, &format!("H{i}"), None);
    }
    let fake = Fake::new(50, Box::new(|_, _| ok(Verdict::Done)));
    let task = start(&s, &fake, fast_settings());
    let beat = heartbeat(
        &fake,
        Duration::from_millis(100),
        StatusHandle::default(),
        crate::uploader::heartbeat::RETRY_AFTER_FAILURE,
    );
    let started = std::time::Instant::now();
    let beats = tokio::spawn(beat.run());
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    beats.abort();
    task.abort();
    let n = fake
        .log()
        .iter()
        .filter(|(l, _)| l == "heartbeat_alive")
        .count();
    assert!(n >= 9, "{n} heartbeats in {:?}", started.elapsed());
    assert!(
        s.outbox_summary(Timestamp::now()).unwrap().pending() > 0,
        "backlog was still there"
    );
}

use heartbeat::Heartbeat;

/// Heartbeats of lot `P1` through `fake`, every `every`, the link lost after two minutes.
fn heartbeat(
    fake: &Arc<Fake>,
    every: Duration,
    status: StatusHandle,
    retry_after_failure: Duration,
) -> Heartbeat<Fake> {
    Heartbeat {
        deliver: fake.clone(),
        parking_lot_no: "P1".into(),
        every,
        health: crate::health::Health::new(),
        lost_after: Duration::from_secs(120),
        status,
        retry_after_failure,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_mode_sends_the_image_inside_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::store::StoreOptions {
        snapshot_mode: crate::config::storage::SnapshotMode::Inline,
        ..crate::store::StoreOptions::default()
    };
    let lot = LotConfig::new("P1", 10);
    let s = Arc::new(Store::open_with(dir.path(), &lot, opts).unwrap());
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let seen2 = seen.clone();
    let fake = Fake::new(
        0,
        Box::new(move |u, _| {
            if let Uplink::Entry(e) = u {
                seen2.lock().unwrap().push(e.snapshot.clone());
            }
            ok(Verdict::Done)
        }),
    );
    let o = enter(&s, "A1", Some(tiny_jpeg()));
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(
        sequence_of(&fake.log(), &o),
        ["entry"],
        "no separate snapshot"
    );
    let sent = seen.lock().unwrap()[0].clone().expect("image inline");
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(sent.as_str())
        .unwrap();
    assert_eq!(jpeg, tiny_jpeg(), "a small JPEG goes as it is");
}

/// Waits until `cond` holds (checked every 10 ms), failing after `secs`.
async fn until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_entry_snapshot_does_not_delay_the_exit_and_is_held() {
    let (_dir, s) = fresh();
    let o = enter(&s, "R1", Some(tiny_jpeg()));
    leave(&s, &o, Some(tiny_jpeg()));
    let fake = Fake::new(
        0,
        Box::new(|u, _| match u {
            Uplink::Snapshot(x) if x.event == SnapshotEvent::Parking => refused(),
            _ => ok(Verdict::Done),
        }),
    );
    let task = start(&s, &fake, fast_settings());
    until(20, "held", || s.held_count().unwrap() == 1).await;
    until_drained(&s, 20).await;
    task.abort();
    let seq = sequence_of(&fake.log(), &o);
    let exit = seq.iter().position(|l| l == "exit").unwrap();
    let first_snapshot = seq.iter().position(|l| l == "snapshot_parking").unwrap();
    let last_snapshot = seq.iter().rposition(|l| l == "snapshot_parking").unwrap();
    assert!(first_snapshot < exit, "{seq:?}");
    assert!(
        exit < last_snapshot,
        "the exit did not wait for the refused snapshot's retries: {seq:?}"
    );
    assert_eq!(
        seq.iter().filter(|l| *l == "snapshot_parking").count(),
        3,
        "refused_tries"
    );
    assert!(seq.contains(&"snapshot_away".to_string()));
    let held = s.held_reports().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].kind, ReportKind::EntrySnapshot);
    assert_eq!(held[0].refusals, 3);
    assert_eq!(held[0].refusal_code, None);
    assert_eq!(held[0].refusal_message.as_deref(), Some("event 缺失"));
    assert!(held[0].first_refused_at <= held[0].last_refused_at);
    assert_eq!(held[0].waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_entry_blocks_only_its_own_exit_until_retried() {
    let (_dir, s) = fresh();
    let bad = enter(&s, "BAD1", None);
    leave(&s, &bad, None);
    let good: Vec<String> = (0..5).map(|i| enter(&s, &format!("G{i}"), None)).collect();
    for o in &good {
        leave(&s, o, None);
    }
    let accept = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accept2 = accept.clone();
    let bad2 = bad.clone();
    let fake = Fake::new(
        0,
        Box::new(move |u, _| {
            if u.out_order_no() == Some(bad2.as_str())
                && !accept2.load(std::sync::atomic::Ordering::SeqCst)
            {
                refused()
            } else {
                ok(Verdict::Done)
            }
        }),
    );
    let task = start(&s, &fake, fast_settings());
    until(20, "entry held", || s.held_count().unwrap() == 1).await;
    until(20, "others delivered", || {
        good.iter()
            .all(|o| sequence_of(&fake.log(), o) == ["entry", "exit"])
    })
    .await;
    // The exit waits behind its held entry and says so.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sequence_of(&fake.log(), &bad), ["entry", "entry", "entry"]);
    let held = s.held_reports().unwrap();
    assert_eq!((held[0].kind, held[0].waiting), (ReportKind::Entry, 1));
    // The operator fixed the cause: retry sends the entry, then the exit.
    accept.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(s.retry_held(Some(&bad), Timestamp::now()).unwrap(), 1);
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(
        sequence_of(&fake.log(), &bad),
        ["entry", "entry", "entry", "entry", "exit"]
    );
    assert_eq!(s.held_count().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_report_does_not_pause_the_uploader_for_100_other_stays() {
    let (_dir, s) = fresh();
    let bad = enter(&s, "BAD2", None);
    let others: Vec<String> = (0..100)
        .map(|i| enter(&s, &format!("O{i}"), None))
        .collect();
    let bad2 = bad.clone();
    let fake = Fake::new(
        1,
        Box::new(move |u, _| {
            if u.out_order_no() == Some(bad2.as_str()) {
                refused()
            } else {
                ok(Verdict::Done)
            }
        }),
    );
    let mut settings = fast_settings();
    // Refusals far apart: if they paused anything, the others would wait for seconds.
    settings.backoff.refused_first_ms = 60_000;
    let status = StatusHandle::default();
    let task = tokio::spawn(Uploader::new(s.clone(), fake.clone(), settings, status.clone()).run());
    let started = std::time::Instant::now();
    until(10, "100 others delivered", || {
        others
            .iter()
            .all(|o| sequence_of(&fake.log(), o).len() == 1)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sequence_of(&fake.log(), &bad),
        ["entry"],
        "refused once, retried later"
    );
    assert_eq!(status.get().consecutive_failures, 0);
    // The uploader keeps running until every answer is recorded: the fake logs a
    // request before the uploader marks it sent, so stopping earlier could leave
    // delivered rows pending.
    until(5, "recorded", || {
        s.outbox_summary(Timestamp::now()).unwrap().pending() == 1
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_accepted_report_carries_the_lots_count_at_send_time() {
    let (_dir, s) = fresh();
    // A backlog built through an outage: each row holds the count of its own moment.
    let stays: Vec<String> = (0..30).map(|i| enter(&s, &format!("N{i}"), None)).collect();
    for o in stays.iter().take(20) {
        leave(&s, o, None);
    }
    let accepted = Arc::new(StdMutex::new(Vec::new()));
    let accepted2 = accepted.clone();
    let fake = Fake::new(
        3,
        Box::new(move |u, n| {
            if n % 7 == 3 {
                return platform_down("flaky");
            }
            match u {
                Uplink::Entry(e) => accepted2.lock().unwrap().push(e.free_spaces.get()),
                Uplink::Exit(x) => accepted2.lock().unwrap().push(x.free_spaces.get()),
                _ => {}
            }
            ok(Verdict::Done)
        }),
    );
    let task = start(&s, &fake, fast_settings());
    // Live traffic while the backlog drains.
    let late: Vec<String> = (0..5).map(|i| enter(&s, &format!("L{i}"), None)).collect();
    leave(&s, &late[0], None);
    until_drained(&s, 30).await;
    task.abort();
    let free = s.occupancy().unwrap().free;
    assert_eq!(free, 1000 - 14);
    let accepted = accepted.lock().unwrap();
    assert_eq!(accepted.len(), 56);
    assert_eq!(*accepted.last().unwrap(), free, "{accepted:?}");
}

#[test]
fn entries_and_exits_with_another_count_wait_for_those_in_flight() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let id = rt.block_on(async { tokio::spawn(async {}).id() });
    let mut in_flight = HashMap::new();
    assert!(may_dispatch(ReportKind::Entry, Some((10, 5)), &in_flight));
    in_flight.insert(id, (10, 5));
    assert!(may_dispatch(ReportKind::Exit, Some((10, 5)), &in_flight));
    assert!(!may_dispatch(ReportKind::Exit, Some((10, 6)), &in_flight));
    assert!(may_dispatch(
        ReportKind::EntrySnapshot,
        Some((10, 6)),
        &in_flight
    ));
    assert!(!may_dispatch(ReportKind::Entry, None, &in_flight));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_follows_right_after_the_platform_answers_again() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let down2 = down.clone();
    let fake = Fake::new(
        0,
        Box::new(move |_, _| {
            if down2.load(std::sync::atomic::Ordering::SeqCst) {
                platform_down("down")
            } else {
                ok(Verdict::Done)
            }
        }),
    );
    let status = StatusHandle::default();
    let beat = heartbeat(
        &fake,
        Duration::from_secs(30),
        status.clone(),
        Duration::from_millis(300),
    );
    let task = tokio::spawn(beat.run());
    let beats = || {
        fake.log()
            .iter()
            .filter(|(l, _)| l == "heartbeat_alive")
            .count()
    };
    until(5, "first beat", || beats() >= 1).await;
    until(5, "failed beats repeated", || beats() >= 3).await;
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let back = std::time::Instant::now();
    until(5, "beat after return", || {
        status.get().last_heartbeat.is_some_and(|(_, _, ok)| ok)
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        back.elapsed()
    );
    // Then the period: no more beats for a while.
    let n = beats();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(beats(), n, "back on the 30 s period");
    // The uploader's first answer after failures triggers one at once.
    status.platform_back();
    until(2, "beat on platform_back", || beats() == n + 1).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undocumented_success_code_is_delivered_and_counted_by_code() {
    let (_dir, s) = fresh();
    let o = enter(&s, "U1", None);
    let fake = Fake::new(
        0,
        Box::new(|_, _| {
            let mut a = ok(Verdict::Done)?;
            a.result_code = Some("UNDOCUMENTED_7".into());
            a.unexpected_code = true;
            Ok(a)
        }),
    );
    let counted = || {
        UNEXPECTED_CODES
            .with_label_values(&["UNDOCUMENTED_7"])
            .get()
    };
    let before = counted();
    let task = start(&s, &fake, fast_settings());
    until_drained(&s, 20).await;
    task.abort();
    assert_eq!(sequence_of(&fake.log(), &o), ["entry"], "delivered once");
    assert_eq!(counted() - before, 1);
}
