//! One function per fuzz target: feeds arbitrary bytes to one of the bridge's decoders
//! of untrusted input, through the same public entry points the running bridge uses.
//!
//! Shared, by `#[path]`, between the afl binaries of this crate (`src/bin/*.rs`) and the
//! main crate's `tests/fuzz_regressions.rs`, which replays every seed and every saved
//! crash through [`run`]; so a crash found by afl stays a failing `cargo test` until it
//! is fixed. Only the main crate's own dependencies may be used here.
//!
//! A target "fails" by panicking (afl counts the abort as a crash). Besides "never
//! panics", a few targets assert invariants of a successful decode (an answer to a
//! Modbus read has exactly the requested number of values, …).

#![allow(dead_code)]

use parking_bridge::config::SiteConfig;
use parking_bridge::driver::ModbusLink;
use parking_bridge::driver::camera::push::PushVendor;
use parking_bridge::driver::camera::{self, Context, TopicKind};
use parking_bridge::driver::modbus::{self, ReadData};
use parking_bridge::driver::profile::{self, CameraProfile, ModbusProfile, Profile};
use parking_bridge::driver::rtu::{self, RtuLink, Scan};
use parking_bridge::lane::{journal, replay};
use parking_bridge::platform::{envelope, response};
use std::path::Path;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Every target, in the order `scripts/fuzz.sh` lists them.
pub const TARGETS: &[&str] = &[
    "modbus_rtu",
    "camera_payload",
    "camera_push",
    "platform_answer",
    "site_config",
    "device_profile",
    "journal_replay",
];

/// Runs one input through `target`. `false` for an unknown target name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "modbus_rtu" => modbus_rtu(data),
        "camera_payload" => camera_payload(data),
        "camera_push" => camera_push(data),
        "platform_answer" => platform_answer(data),
        "site_config" => site_config(data),
        "device_profile" => device_profile(data),
        "journal_replay" => journal_replay(data),
        _ => return false,
    }
    true
}

/// The key the platform answers are enveloped with (the spec's worked example).
pub const KEY: &[u8; 16] = b"bb0873ce314c42f7";

/// The built-in device profiles (those shipped in `device-profiles/`), parsed once.
static BUILTIN: LazyLock<Vec<Profile>> = LazyLock::new(|| {
    profile::BUILTIN
        .iter()
        .filter_map(|(name, _)| profile::find_profile(name, &[]).ok().flatten())
        .collect()
});

fn modbus_profiles() -> Vec<&'static ModbusProfile> {
    BUILTIN.iter().filter_map(|p| p.modbus.as_ref()).collect()
}

fn camera_profiles() -> Vec<&'static CameraProfile> {
    BUILTIN.iter().filter_map(|p| p.camera.as_ref()).collect()
}

/// A one-thread runtime for the async decoders (multipart, the RTU link).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
});

/// A serial line that answers with the fuzz bytes: `stale` bytes are waiting before
/// the request (line noise the link must drain), the rest arrive after it, in chunks.
struct Line {
    stale: Vec<u8>,
    answer: Vec<u8>,
    chunk: usize,
    written: bool,
}

impl AsyncRead for Line {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        let src = if me.written {
            &mut me.answer
        } else if me.stale.is_empty() {
            // Nothing waiting before the request: the link only polls once here.
            return Poll::Pending;
        } else {
            &mut me.stale
        };
        // An empty source after the request reads as end of stream (the adapter unplugged).
        let n = src.len().min(me.chunk).min(buf.remaining());
        buf.put_slice(&src[..n]);
        src.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Line {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written = true;
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn check_answer(req: &modbus::ReadRequest, data: &ReadData) {
    let n = match data {
        ReadData::Bits(b) => b.len(),
        ReadData::Words(w) => w.len(),
    };
    assert_eq!(
        n,
        usize::from(req.count),
        "answer length differs from the request"
    );
}

/// Modbus RTU answers: `[profile, request, slave, stale, chunk, bytes…]`. The bytes go
/// through the frame scanner (CRC check, resynchronisation past garbage) and through
/// the real link over a fake serial line, then into the profile's point decoder.
pub fn modbus_rtu(data: &[u8]) {
    let [p, r, slave, stale, chunk, rest @ ..] = data else {
        return;
    };
    let profiles = modbus_profiles();
    let Some(prof) = profiles.get(usize::from(*p) % profiles.len().max(1)) else {
        return;
    };
    let requests = modbus::plan(&prof.points);
    let Some(req) = requests
        .get(usize::from(*r) % requests.len().max(1))
        .copied()
    else {
        return;
    };
    // Direct scan, as over the whole buffer.
    if let Scan::Answer { data, .. } = rtu::scan_response(*slave, &req, rest) {
        check_answer(&req, &data);
    }
    let stale = usize::from(*stale).min(rest.len());
    let line = Line {
        stale: rest[..stale].to_vec(),
        answer: rest[stale..].to_vec(),
        chunk: usize::from(*chunk % 64) + 1,
        written: false,
    };
    let mut link = RtuLink::new(line);
    let got = RUNTIME.block_on(link.read(*slave, &req, Duration::from_millis(50)));
    let _ = link.take_counts();
    if let Ok(answer) = got {
        check_answer(&req, &answer);
        let mut answers: Vec<Option<ReadData>> = vec![None; requests.len()];
        if let Some(slot) = answers.iter_mut().zip(&requests).find(|(_, q)| **q == req) {
            *slot.0 = Some(answer);
        }
        let _ = modbus::decode(&prof.points, &requests, &answers);
    }
}

/// Camera messages (MQTT and JSON pushes): `[profile, topic kind, payload…]`, decoded
/// per every camera profile's charset, field paths, base64 pictures and code maps.
pub fn camera_payload(data: &[u8]) {
    let [p, k, payload @ ..] = data else {
        return;
    };
    let profiles = camera_profiles();
    let Some(prof) = profiles.get(usize::from(*p) % profiles.len().max(1)) else {
        return;
    };
    let kind = match k % 3 {
        0 => TopicKind::Result,
        1 => TopicKind::Quick,
        _ => TopicKind::Heartbeat,
    };
    let _ = camera::decode(prof, kind, payload);
    let _ = camera::route_value(prof, payload);
}

/// Camera HTTP push bodies: `[profile, Content-Type line "\n", body…]`, unpacked as the
/// profile's vendor does (Hikvision multipart/XML/JSON, Dahua/QianYi/Vzenith JSON in
/// the profile's charset) and decoded like the receiver does.
pub fn camera_push(data: &[u8]) {
    let [p, rest @ ..] = data else {
        return;
    };
    let profiles = camera_profiles();
    let Some(prof) = profiles.get(usize::from(*p) % profiles.len().max(1)) else {
        return;
    };
    let (ct, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let ct = String::from_utf8_lossy(ct).into_owned();
    let content_type = (!ct.is_empty()).then_some(ct.as_str());
    let vendor = prof.push.unwrap_or(PushVendor::Vzenith);
    let body = bytes::Bytes::copy_from_slice(body);
    let unpacked = RUNTIME.block_on(vendor.unpack(content_type, body, prof.charset));
    if let Ok(u) = unpacked {
        let ctx = Context {
            offset: chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset"),
            parts: &u.parts,
        };
        let _ = camera::decode_value(prof, TopicKind::Result, &u.json, &ctx);
    }
}

/// Platform answers: `[status hi, status lo, body…]`, plain or enveloped, through the
/// uploader's answer decoder; envelopes also through the envelope parser and SM4.
pub fn platform_answer(data: &[u8]) {
    let [hi, lo, body @ ..] = data else {
        return;
    };
    let status = 100 + u16::from_be_bytes([*hi, *lo]) % 500;
    let table = response::ResultCodes::default();
    let answer = response::decode(status, body, KEY, &table);
    if status >= 500 {
        assert!(
            !answer.verdict.is_delivered(),
            "a 5xx answer taken for a delivery"
        );
    }
    if let Ok(env) = envelope::parse(body) {
        let _ = envelope::decrypt_b64(KEY, &env.encrypted_data);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = envelope::decrypt_b64(KEY, text);
    }
}

/// The site config (`config.toml`): parsing with file/line/key errors, validation, and
/// each device against its built-in profile.
pub fn site_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = SiteConfig::from_toml(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.validate();
    let mut problems = Vec::new();
    for (i, d) in config.devices.iter().enumerate() {
        if let Some(p) = BUILTIN.iter().find(|p| p.name == d.profile) {
            profile::check_device(i, d, p, &mut problems);
        }
    }
}

/// Device profiles: `stem "\n" toml…` through the profile parser and validator.
pub fn device_profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (stem, toml) = text.split_once('\n').unwrap_or(("fuzz", text));
    if let Ok(p) = profile::parse_profile(toml, stem, Path::new("fuzz.toml"))
        && let Some(m) = &p.modbus
    {
        let _ = modbus::plan(&m.points);
    }
}

/// The site config the journal/replay target replays against (the lane scenarios').
static REPLAY_CONFIG: LazyLock<Option<SiteConfig>> = LazyLock::new(|| {
    SiteConfig::from_toml(
        include_str!("../../tests/scenarios/site.toml"),
        Path::new("tests/scenarios/site.toml"),
    )
    .ok()
});

/// A journal directory of this process (`scripts/fuzz.sh` removes them all after a run).
static JOURNAL_DIR: LazyLock<Option<std::path::PathBuf>> = LazyLock::new(|| {
    let dir = std::env::temp_dir()
        .join("pb-fuzz-journal")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).ok().map(|_| dir)
});

/// The event journal and `replay` input (JSON lines of raw events and marks): each
/// line through the journal's line parser, the whole through `replay` (which runs the
/// lane logic on whatever events parse).
pub fn journal_replay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = journal::Line::parse(line);
    }
    // The journal as the lane task reads it back on start (torn lines, marks, stops).
    if let Some(dir) = JOURNAL_DIR.as_ref()
        && std::fs::write(dir.join("events.jsonl"), data).is_ok()
        && let Ok(window) = journal::read_window(dir, parking_bridge::time::Timestamp(0))
    {
        let _ = window.applied();
    }
    if let Some(config) = REPLAY_CONFIG.as_ref() {
        let _ = replay::run(config, text.as_bytes(), std::io::sink(), true);
    }
}

/// The two leading bytes [`platform_answer`] reads as `status`.
fn status(status: u16) -> [u8; 2] {
    (status - 100).to_be_bytes()
}

/// Seed inputs for `target`, built from the project's test fixtures and samples.
/// `scripts/fuzz.sh` writes them as afl's starting corpus; the regression test replays
/// them too.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Both crates' manifests: the main one, or fuzz/ under it.
    let root = if root.join("tests/scenarios").is_dir() {
        root.to_path_buf()
    } else {
        root.join("..")
    };
    let files = |dir: &str, ext: &str| -> Vec<Vec<u8>> {
        let mut v: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p: &std::path::PathBuf| {
            p.to_string_lossy().ends_with(ext) && !p.to_string_lossy().ends_with(".expected.jsonl")
        });
        v.sort();
        v.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    };
    let with = |head: &[u8], body: &[u8]| -> Vec<u8> { [head, body].concat() };
    match target {
        "modbus_rtu" => {
            let mut out = Vec::new();
            let profiles = modbus_profiles();
            for (pi, prof) in profiles.iter().enumerate() {
                for (ri, req) in modbus::plan(&prof.points).iter().enumerate() {
                    let slave = prof.default_slave;
                    let n = req.response_data_len();
                    let mut frame = vec![slave, req.function.code(), n as u8];
                    frame.extend((0..n).map(|i| (i * 37) as u8));
                    let [lo, hi] = rtu::crc16(&frame).to_le_bytes();
                    frame.extend([lo, hi]);
                    let mut exc = vec![slave, req.function.code() | 0x80, 2];
                    let [lo, hi] = rtu::crc16(&exc).to_le_bytes();
                    exc.extend([lo, hi]);
                    let head = [pi as u8, ri as u8, slave];
                    out.push(with(&[head[0], head[1], head[2], 0, 8], &frame));
                    // Garbage before the answer, a corrupted copy, then the real one.
                    let mut noisy = vec![0xff, 0x00, slave];
                    let mut bad = frame.clone();
                    bad[3] ^= 0x40;
                    noisy.extend(bad);
                    noisy.extend(&frame);
                    out.push(with(&[head[0], head[1], head[2], 2, 3], &noisy));
                    out.push(with(&[head[0], head[1], head[2], 0, 64], &exc));
                }
            }
            out
        }
        "camera_payload" => {
            use camera::samples as s;
            let jpeg: &[u8] = &[
                0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0xff, 0xd9,
            ];
            let payloads: Vec<Vec<u8>> = vec![
                s::vzenith_ivs_result("sn-1", "京A12345", 1, Some(jpeg)).into_bytes(),
                s::vzenith_alarm_info_plate("京A12345", 1, 8, Some(jpeg)).into_bytes(),
                s::dahua_tollgate("京A12345", "Blue", "2026-01-01 08:00:00.000", Some(jpeg))
                    .into_bytes(),
                s::dahua_keep_alive("dahua-itc-01").into_bytes(),
                s::qianyi_alarm_info_plate("京A12345", 1, 1_767_225_600, false, Some(jpeg)),
                s::hx_plate_result("cam-1", "京A12345", 1).into_bytes(),
            ];
            let mut out = Vec::new();
            for p in 0..camera_profiles().len() {
                for payload in &payloads {
                    out.push(with(&[p as u8, 0], payload));
                }
            }
            out
        }
        "camera_push" => {
            use camera::samples as s;
            let jpeg: &[u8] = &[
                0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0xff, 0xd9,
            ];
            let xml = s::hikvision_anpr_xml("京A12345", "blue", "2026-01-01T08:00:00+08:00");
            let (ct, multipart) = s::hikvision_multipart(&xml, Some(jpeg), Some(jpeg));
            let mut bodies: Vec<(String, Vec<u8>)> = vec![
                (ct, multipart),
                ("application/xml".into(), xml.clone().into_bytes()),
                (
                    "application/json".into(),
                    s::dahua_tollgate("京A12345", "Blue", "2026-01-01 08:00:00.000", Some(jpeg))
                        .into_bytes(),
                ),
                (
                    "application/json".into(),
                    s::vzenith_alarm_info_plate("京A12345", 1, 8, Some(jpeg)).into_bytes(),
                ),
                (
                    "application/json".into(),
                    s::qianyi_alarm_info_plate("京A12345", 1, 1_767_225_600, false, Some(jpeg)),
                ),
            ];
            let gbk_xml = xml.replace("UTF-8", "GB2312");
            let (gbk, _, _) = encoding_rs::GBK.encode(&gbk_xml);
            bodies.push(("text/xml".into(), gbk.into_owned()));
            let mut out = Vec::new();
            for p in 0..camera_profiles().len() {
                for (ct, body) in &bodies {
                    let mut v = vec![p as u8];
                    v.extend(ct.as_bytes());
                    v.push(b'\n');
                    v.extend(body);
                    out.push(v);
                }
            }
            out
        }
        "platform_answer" => {
            let mut out = Vec::new();
            for answer in files("tests/fixtures/spec/answers", ".json") {
                out.push(with(&status(200), &answer));
                // The same answer enveloped, as some deployments send it.
                let sealed = envelope::seal("app", KEY, "m1", "20260101080000", answer.clone());
                out.push(with(&status(200), &sealed));
                out.push(with(&status(403), &answer));
            }
            out.push(with(&status(503), b"<html>Service Unavailable</html>"));
            out.extend(
                files("tests/fixtures/spec", ".golden.json")
                    .into_iter()
                    .map(|g| with(&status(200), &g)),
            );
            out
        }
        "site_config" => {
            let mut out = files("tests/scenarios", ".toml");
            out.extend(files("packaging", ".toml"));
            out
        }
        "device_profile" => profile::BUILTIN
            .iter()
            .map(|(name, text)| format!("{name}\n{text}").into_bytes())
            .collect(),
        "journal_replay" => files("tests/scenarios", ".jsonl"),
        _ => Vec::new(),
    }
}
