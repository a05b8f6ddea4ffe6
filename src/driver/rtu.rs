//! Modbus RTU master over any byte stream (a serial port in the field, a pty pair or
//! TCP loopback in tests).
//!
//! The framing is our own rather than tokio-modbus's client: it can only encode the
//! four read functions (read-only by construction), it counts CRC errors and garbage
//! bytes instead of silently resynchronising, and it drops stale bytes before each
//! request — after a timeout it first waits one more timeout for the late answer — so
//! a late answer can never be taken for the next one. An answer that started but came
//! out corrupted ends when the line goes quiet, not at the timeout: on a noisy line
//! the lane is then blind for one poll, not for two timeouts.

use crate::driver::modbus::{Function, ReadData, ReadRequest};
use crate::driver::{LinkError, ModbusLink};
use futures::FutureExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for b in data {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The 8-byte request frame for a read.
pub fn encode_request(slave: u8, req: &ReadRequest) -> [u8; 8] {
    let [ah, al] = req.address.to_be_bytes();
    let [ch, cl] = req.count.to_be_bytes();
    let mut f = [slave, req.function.code(), ah, al, ch, cl, 0, 0];
    let [lo, hi] = crc16(&f[..6]).to_le_bytes();
    f[6] = lo;
    f[7] = hi;
    f
}

/// `bytes` with their CRC appended: a frame as it travels (tests build answers so).
#[cfg(test)]
pub(crate) fn with_crc(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(&crc16(bytes).to_le_bytes());
    v
}

/// Result of scanning received bytes for the answer to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Not enough bytes yet. The first `garbage` bytes can start no answer (garbage,
    /// or frames with a bad CRC, `crc_errors` of them): a caller waiting for more may
    /// drop them, so that each byte is scanned once however slowly the answer comes.
    NeedMore { garbage: usize, crc_errors: usize },
    /// A valid answer; `consumed` bytes (garbage before it included) are used.
    Answer {
        data: ReadData,
        garbage: usize,
        crc_errors: usize,
    },
    Exception {
        code: u8,
        garbage: usize,
        crc_errors: usize,
    },
}

impl Scan {
    /// (garbage bytes, CRC errors) skipped before the frame found, or before the
    /// incomplete one that needs more bytes.
    pub fn skipped(&self) -> (usize, usize) {
        match self {
            Scan::NeedMore {
                garbage,
                crc_errors,
            }
            | Scan::Answer {
                garbage,
                crc_errors,
                ..
            }
            | Scan::Exception {
                garbage,
                crc_errors,
                ..
            } => (*garbage, *crc_errors),
        }
    }
}

/// Looks for the answer to `req` from `slave` in `buf`, skipping garbage and frames
/// with a bad CRC (each counted).
pub fn scan_response(slave: u8, req: &ReadRequest, buf: &[u8]) -> Scan {
    let fc = req.function.code();
    let data_len = req.response_data_len();
    let mut garbage = 0;
    let mut crc_errors = 0;
    let mut start = 0;
    while start < buf.len() {
        let rest = &buf[start..];
        let frame_len = match rest {
            [s, f, ..] if *s == slave && *f == fc | 0x80 => 5,
            [s, f, n, ..] if *s == slave && *f == fc && usize::from(*n) == data_len => 5 + data_len,
            [s] if *s == slave => {
                return Scan::NeedMore {
                    garbage,
                    crc_errors,
                };
            }
            [s, f] if *s == slave && *f == fc => {
                return Scan::NeedMore {
                    garbage,
                    crc_errors,
                };
            }
            _ => {
                garbage += 1;
                start += 1;
                continue;
            }
        };
        if rest.len() < frame_len {
            return Scan::NeedMore {
                garbage,
                crc_errors,
            };
        }
        let frame = &rest[..frame_len];
        let crc = u16::from_le_bytes([frame[frame_len - 2], frame[frame_len - 1]]);
        if crc16(&frame[..frame_len - 2]) != crc {
            crc_errors += 1;
            garbage += 1;
            start += 1;
            continue;
        }
        if frame_len == 5 {
            return Scan::Exception {
                code: frame[2],
                garbage,
                crc_errors,
            };
        }
        let payload = &frame[3..3 + data_len];
        let data = if req.function.reads_bits() {
            ReadData::Bits(
                (0..usize::from(req.count))
                    .map(|i| payload[i / 8] >> (i % 8) & 1 == 1)
                    .collect(),
            )
        } else {
            ReadData::Words(
                payload
                    .chunks_exact(2)
                    .map(|w| u16::from_be_bytes([w[0], w[1]]))
                    .collect(),
            )
        };
        return Scan::Answer {
            data,
            garbage,
            crc_errors,
        };
    }
    Scan::NeedMore {
        garbage,
        crc_errors,
    }
}

/// Modbus 3.5-character silence for a baud rate (fixed 1.75 ms above 19 200 baud).
pub fn silent_interval(baud: u32) -> Duration {
    if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        // 11 bits per character (start, 8 data, parity or 2nd stop, stop).
        Duration::from_micros(38_500_000 / u64::from(baud.max(1)))
    }
}

/// Time to send `bytes` bytes at `baud` with 11-bit characters.
pub fn frame_time(bytes: usize, baud: u32) -> Duration {
    Duration::from_micros(bytes as u64 * 11 * 1_000_000 / u64::from(baud.max(1)))
}

/// A Modbus RTU master on one stream.
pub struct RtuLink<T> {
    stream: T,
    buf: Vec<u8>,
    /// After a request went unanswered in time: until when its answer may still come.
    /// The next request waits for it (and drops it), so a late answer can never be
    /// taken for the next request's (found by tests/resource_limits.rs).
    settle_until: Option<Instant>,
    /// Counters since the last call to `take_counts`.
    crc_errors: u64,
    garbage: u64,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RtuLink<T> {
    pub fn new(stream: T) -> Self {
        RtuLink {
            stream,
            buf: Vec::with_capacity(256),
            settle_until: None,
            crc_errors: 0,
            garbage: 0,
        }
    }

    /// After a timeout, waits out the rest of the time a late answer may take (one more
    /// timeout), dropping whatever arrives as garbage.
    async fn settle(&mut self) -> Result<(), LinkError> {
        let Some(until) = self.settle_until.take() else {
            return Ok(());
        };
        let mut scratch = [0u8; 256];
        loop {
            match tokio::time::timeout_at(until, self.stream.read(&mut scratch)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => return Err(LinkError::Transport("stream closed".into())),
                Ok(Ok(n)) => self.garbage += n as u64,
                Ok(Err(e)) => return Err(LinkError::Transport(e.to_string())),
            }
        }
    }

    /// Drops bytes already waiting (late answers, line noise), counting them as garbage.
    fn drain_stale(&mut self) -> Result<(), LinkError> {
        let mut scratch = [0u8; 256];
        loop {
            match self.stream.read(&mut scratch).now_or_never() {
                Some(Ok(0)) => return Err(LinkError::Transport("stream closed".into())),
                Some(Ok(n)) => self.garbage += n as u64,
                Some(Err(e)) => return Err(LinkError::Transport(e.to_string())),
                None => return Ok(()),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ModbusLink for RtuLink<T> {
    async fn read(
        &mut self,
        slave: u8,
        req: &ReadRequest,
        timeout: Duration,
    ) -> Result<ReadData, LinkError> {
        debug_assert!(Function::from_code(req.function.code()).is_some());
        self.settle().await?;
        self.drain_stale()?;
        let frame = encode_request(slave, req);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        self.stream
            .flush()
            .await
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        self.buf.clear();
        let deadline = Instant::now() + timeout;
        let quiet = quiet_after_answer(timeout);
        let mut chunk = [0u8; 256];
        let mut last_byte: Option<Instant> = None;
        loop {
            let scan = scan_response(slave, req, &self.buf);
            let (garbage, crc_errors) = scan.skipped();
            self.garbage += garbage as u64;
            self.crc_errors += crc_errors as u64;
            match scan {
                // Bytes that can start no answer are not scanned again.
                Scan::NeedMore { .. } => drop(self.buf.drain(..garbage)),
                Scan::Answer { data, .. } => return Ok(data),
                Scan::Exception { code, .. } => return Err(LinkError::Exception(code)),
            }
            // Once bytes came, the line going quiet ends the answer: a slave sends a
            // frame without pauses, so waiting out the timeout would only blind the
            // lane (a corrupted answer on a noisy line) for nothing.
            let wake = last_byte.map_or(deadline, |t| (t + quiet).min(deadline));
            match tokio::time::timeout_at(wake, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    // Whatever arrived is garbage or a corrupted answer.
                    if let Scan::NeedMore { .. } = scan_response(slave, req, &self.buf) {
                        let (g, c) = count_bad(slave, req, &self.buf);
                        self.garbage += g;
                        self.crc_errors += c;
                    }
                    if last_byte.is_none() {
                        // No answer in time: it may still come; the next request waits.
                        self.settle_until = Some(Instant::now() + timeout);
                        return Err(LinkError::Timeout);
                    }
                    if wake >= deadline {
                        self.settle_until = Some(Instant::now() + timeout);
                    }
                    return Err(LinkError::Corrupt);
                }
                Ok(Ok(0)) => return Err(LinkError::Transport("stream closed".into())),
                Ok(Ok(n)) => {
                    last_byte = Some(Instant::now());
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() > 4096 {
                        self.garbage += self.buf.len() as u64;
                        self.buf.clear();
                    }
                }
                Ok(Err(e)) => return Err(LinkError::Transport(e.to_string())),
            }
        }
    }

    fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.crc_errors),
            std::mem::take(&mut self.garbage),
        )
    }
}

/// How long a quiet line ends an answer that has started: a fifth of the timeout, at
/// least 20 ms (a USB adapter hands bytes over in bursts up to 16 ms apart), never
/// more than the timeout.
fn quiet_after_answer(timeout: Duration) -> Duration {
    (timeout / 5).max(Duration::from_millis(20)).min(timeout)
}

/// Counts bad bytes in an incomplete buffer: CRC errors are frames whose header
/// matched and whose full length arrived.
fn count_bad(slave: u8, req: &ReadRequest, buf: &[u8]) -> (u64, u64) {
    let full = 5 + req.response_data_len();
    let crc = u64::from(buf.len() >= full && buf[0] == slave && buf[1] == req.function.code());
    (buf.len() as u64, crc)
}

/// Opens a serial port for a bus.
pub fn open_serial(
    bus: &crate::config::BusConfig,
) -> Result<tokio_serial::SerialStream, LinkError> {
    use tokio_serial::SerialPortBuilderExt;
    let parity = match bus.parity {
        crate::config::Parity::None => tokio_serial::Parity::None,
        crate::config::Parity::Even => tokio_serial::Parity::Even,
        crate::config::Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits = match bus.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let stop_bits = if bus.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    tokio_serial::new(&bus.port, bus.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| LinkError::Transport(format!("{}: {e}", bus.port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_matches_the_spec_example() {
        // Modbus over serial line spec example: slave 1, FC03, address 0, 1 register
        // → 01 03 00 00 00 01 84 0A.
        assert_eq!(
            encode_request(1, &ReadRequest::new(Function::ReadHoldingRegisters, 0, 1)),
            [1, 3, 0, 0, 0, 1, 0x84, 0x0A]
        );
    }

    #[test]
    fn bits_are_unpacked_lsb_first() {
        let r = ReadRequest::new(Function::ReadDiscreteInputs, 0, 8);
        let buf = with_crc(&[1, 2, 1, 0b0000_1001]);
        let Scan::Answer {
            data,
            garbage: 0,
            crc_errors: 0,
        } = scan_response(1, &r, &buf)
        else {
            panic!()
        };
        assert_eq!(
            data,
            ReadData::Bits(vec![true, false, false, true, false, false, false, false])
        );
    }

    #[test]
    fn garbage_before_the_answer_is_skipped_and_counted() {
        let r = ReadRequest::new(Function::ReadHoldingRegisters, 0, 2);
        let mut buf = vec![0xFF, 0x00, 0x13];
        buf.extend(with_crc(&[1, 3, 4, 0, 7, 0x12, 0x34]));
        assert_eq!(
            scan_response(1, &r, &buf),
            Scan::Answer {
                data: ReadData::Words(vec![7, 0x1234]),
                garbage: 3,
                crc_errors: 0
            }
        );
    }

    #[test]
    fn bad_crc_is_never_an_answer() {
        let r = ReadRequest::new(Function::ReadDiscreteInputs, 0, 8);
        let mut buf = with_crc(&[1, 2, 1, 0xFF]);
        buf[3] ^= 0x01;
        assert_eq!(
            scan_response(1, &r, &buf),
            Scan::NeedMore {
                garbage: 6,
                crc_errors: 1
            }
        );
        assert_eq!(count_bad(1, &r, &buf), (6, 1));
    }

    #[test]
    fn answer_from_another_slave_is_ignored() {
        let r = ReadRequest::new(Function::ReadDiscreteInputs, 0, 8);
        assert_eq!(
            scan_response(1, &r, &with_crc(&[2, 2, 1, 0xFF])),
            Scan::NeedMore {
                garbage: 6,
                crc_errors: 0
            }
        );
    }

    #[test]
    fn exceptions_are_recognised() {
        let r = ReadRequest::new(Function::ReadCoils, 0, 16);
        assert_eq!(
            scan_response(1, &r, &with_crc(&[1, 0x81, 2])),
            Scan::Exception {
                code: 2,
                garbage: 0,
                crc_errors: 0
            }
        );
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let r = ReadRequest::new(Function::ReadHoldingRegisters, 0, 2);
        assert_eq!(
            scan_response(1, &r, &[1, 3, 4, 0]),
            Scan::NeedMore {
                garbage: 0,
                crc_errors: 0
            }
        );
    }

    #[test]
    fn silent_interval_follows_the_spec() {
        assert_eq!(silent_interval(115_200), Duration::from_micros(1750));
        let at_9600 = silent_interval(9600);
        assert!(
            at_9600 > Duration::from_micros(3900) && at_9600 < Duration::from_micros(4100),
            "{at_9600:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupted_answer_fails_once_the_line_is_quiet_not_at_the_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let r = ReadRequest::new(Function::ReadDiscreteInputs, 0, 4);
        let (bridge, mut slave) = tokio::io::duplex(64);
        let line = tokio::spawn(async move {
            let mut request = [0u8; 8];
            slave.read_exact(&mut request).await.unwrap();
            let mut bad = with_crc(&[1, 2, 1, 0b0101]);
            bad[3] ^= 0x10; // a bit flipped on the line
            slave.write_all(&bad).await.unwrap();
            // The next request is answered at once: no waiting out a late answer.
            slave.read_exact(&mut request).await.unwrap();
            slave
                .write_all(&with_crc(&[1, 2, 1, 0b0101]))
                .await
                .unwrap();
            slave
        });
        let mut link = RtuLink::new(bridge);
        let timeout = Duration::from_millis(150);
        let t0 = Instant::now();
        assert_eq!(
            link.read(1, &r, timeout).await,
            Err(LinkError::Corrupt),
            "a bad CRC is no answer"
        );
        assert_eq!(
            t0.elapsed(),
            quiet_after_answer(timeout),
            "failed when quiet"
        );
        assert_eq!(link.take_counts().0, 1, "the CRC error is counted");
        let t1 = Instant::now();
        assert_eq!(
            link.read(1, &r, timeout).await,
            Ok(ReadData::Bits(vec![true, false, true, false]))
        );
        assert!(t1.elapsed() < timeout, "no settle after a complete answer");
        drop(line.await.unwrap());
    }

    #[test]
    fn the_quiet_line_is_a_fifth_of_the_timeout_within_bounds() {
        let q = |ms| quiet_after_answer(Duration::from_millis(ms)).as_millis();
        assert_eq!((q(150), q(50), q(10), q(1_000)), (30, 20, 10, 200));
    }

    #[tokio::test]
    async fn bytes_that_start_no_answer_are_dropped_as_they_arrive_and_counted_once() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let r = ReadRequest::new(Function::ReadHoldingRegisters, 0, 2);
        let (bridge, mut slave) = tokio::io::duplex(64);
        let answer = with_crc(&[1, 3, 4, 0, 7, 0, 9]);
        let line = tokio::spawn(async move {
            let mut request = [0u8; 8];
            slave.read_exact(&mut request).await.unwrap();
            // 3 000 bytes of noise full of would-be frame starts (slave 1, FC 3), a few at
            // a time as a slow line delivers them, then the answer.
            for _ in 0..500 {
                slave.write_all(&[1, 3, 4, 0xAA, 1, 0x55]).await.unwrap();
            }
            slave.write_all(&answer).await.unwrap();
            slave
        });
        let mut link = RtuLink::new(bridge);
        let got = link.read(1, &r, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, ReadData::Words(vec![7, 9]));
        assert_eq!(
            link.take_counts().1,
            3_000,
            "every noise byte counted, once"
        );
        assert!(
            link.buf.len() <= 9,
            "noise is not kept: {} bytes",
            link.buf.len()
        );
        drop(line.await.unwrap());
    }
}
