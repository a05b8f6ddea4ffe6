//! Simulated lane devices for tests, benchmarks and the demo:
//!
//! - [`SimModbus`]: Modbus slaves (DI modules, barrier controllers) whose inputs and
//!   registers are set from code, served over RTU (any serial stream, e.g. one end of
//!   a pty pair) or TCP. It also acts as a bus spy: it records every function code it
//!   receives, so tests can prove the bridge only reads.
//! - [`SimCamera`]: a Vzenith-style camera publishing `ivs_result` payloads (optionally
//!   with a JPEG) to an MQTT broker.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use parking_bridge::sim::devices::SimModbus;
//! let sim = SimModbus::new();
//! sim.add_slave(1);
//! let addr = sim.serve_tcp("127.0.0.1:0").await?;
//! sim.set_input(1, 0, true); // loop A occupied
//! # let _ = addr; Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

/// One simulated slave's data. Addresses are 0-based protocol addresses.
#[derive(Debug, Clone)]
pub struct SlaveData {
    /// Discrete inputs (function 2).
    pub inputs: Vec<bool>,
    /// Coils (function 1), e.g. ADAM-4051 inputs.
    pub coils: Vec<bool>,
    /// Holding registers (function 3).
    pub holding: Vec<u16>,
    /// Input registers (function 4).
    pub input_registers: Vec<u16>,
    /// When false the slave stays silent (a dead or unplugged device).
    pub answering: bool,
    /// Requests received, by function code.
    pub requests: HashMap<u8, u64>,
}

impl Default for SlaveData {
    fn default() -> Self {
        SlaveData {
            inputs: vec![false; 64],
            coils: vec![false; 64],
            holding: vec![0; 64],
            input_registers: vec![0; 64],
            answering: true,
            requests: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    slaves: HashMap<u8, SlaveData>,
    /// Function codes other than 1–4 seen on the bus (must stay empty).
    forbidden: Vec<u8>,
}

/// Simulated Modbus slaves sharing one bus (RTU) or one endpoint (TCP). Cloning gives
/// another handle to the same devices.
#[derive(Debug, Clone, Default)]
pub struct SimModbus {
    shared: Arc<Mutex<Shared>>,
}

impl SimModbus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding this lock can only come from a test assertion; the
        // data is still usable, so recover it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a slave with all inputs off and registers zero.
    pub fn add_slave(&self, id: u8) {
        self.lock().slaves.entry(id).or_default();
    }

    /// Sets discrete input `address` (function 2) and the coil at the same address
    /// (function 1), so one call serves both kinds of DI module.
    pub fn set_input(&self, slave: u8, address: u16, on: bool) {
        let mut s = self.lock();
        let d = s.slaves.entry(slave).or_default();
        let a = usize::from(address);
        if a < d.inputs.len() {
            d.inputs[a] = on;
            d.coils[a] = on;
        }
    }

    /// Gives a slave `n` discrete inputs and coils (an 8-input module: 8): reads past
    /// them are answered with exception 02 (illegal data address). New ones are off.
    pub fn limit_inputs(&self, slave: u8, n: usize) {
        let mut s = self.lock();
        let d = s.slaves.entry(slave).or_default();
        d.inputs.resize(n, false);
        d.coils.resize(n, false);
    }

    /// Sets holding register `address` (function 3).
    pub fn set_holding(&self, slave: u8, address: u16, value: u16) {
        let mut s = self.lock();
        let d = s.slaves.entry(slave).or_default();
        if let Some(r) = d.holding.get_mut(usize::from(address)) {
            *r = value;
        }
    }

    /// Sets input register `address` (function 4).
    pub fn set_input_register(&self, slave: u8, address: u16, value: u16) {
        let mut s = self.lock();
        let d = s.slaves.entry(slave).or_default();
        if let Some(r) = d.input_registers.get_mut(usize::from(address)) {
            *r = value;
        }
    }

    /// Makes a slave stop (or resume) answering.
    pub fn set_answering(&self, slave: u8, answering: bool) {
        self.lock().slaves.entry(slave).or_default().answering = answering;
    }

    /// Read requests a slave has received (all functions).
    pub fn request_count(&self, slave: u8) -> u64 {
        self.lock()
            .slaves
            .get(&slave)
            .map(|d| d.requests.values().sum())
            .unwrap_or(0)
    }

    /// Function codes seen by any slave, with counts.
    pub fn function_codes(&self) -> HashMap<u8, u64> {
        let s = self.lock();
        let mut out = HashMap::new();
        for d in s.slaves.values() {
            for (fc, n) in &d.requests {
                *out.entry(*fc).or_default() += n;
            }
        }
        for fc in &s.forbidden {
            *out.entry(*fc).or_default() += 1;
        }
        out
    }

    /// Function codes outside 1–4 that reached the simulated bus.
    pub fn forbidden_requests(&self) -> Vec<u8> {
        self.lock().forbidden.clone()
    }

    fn handle(&self, slave: u8, req: Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        let fc = req.function_code().value();
        let mut s = self.lock();
        if !(1..=4).contains(&fc) {
            s.forbidden.push(fc);
        }
        let Some(d) = s.slaves.get_mut(&slave) else {
            return Ok(None);
        };
        *d.requests.entry(fc).or_default() += 1;
        if !d.answering {
            return Ok(None);
        }
        fn range<T: Clone>(v: &[T], a: u16, n: u16) -> Result<Vec<T>, ExceptionCode> {
            let (a, n) = (usize::from(a), usize::from(n));
            v.get(a..a + n)
                .map(<[T]>::to_vec)
                .ok_or(ExceptionCode::IllegalDataAddress)
        }
        Ok(Some(match req {
            Request::ReadCoils(a, n) => Response::ReadCoils(range(&d.coils, a, n)?),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(range(&d.inputs, a, n)?)
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(range(&d.holding, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(range(&d.input_registers, a, n)?)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        }))
    }

    /// Serves the slaves as Modbus RTU on a serial stream (e.g. one end of a socat
    /// pty pair opened with tokio-serial) until the stream fails.
    pub fn serve_rtu(
        &self,
        serial: tokio_serial::SerialStream,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let server = tokio_modbus::server::rtu::Server::new(serial);
        let service = SimService(self.clone());
        tokio::spawn(async move { server.serve_forever(service).await })
    }

    /// Serves the slaves as Modbus TCP on `bind` (use port 0); returns the address.
    pub async fn serve_tcp(&self, bind: &str) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let sim = self.clone();
        tokio::spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream, _addr| {
                let service = SimService(sim.clone());
                async move { Ok(Some((service, stream))) }
            };
            let _ = server
                .serve(
                    &on_connected,
                    |e| tracing::debug!(error = %e, "sim modbus connection ended"),
                )
                .await;
        });
        Ok(addr)
    }
}

/// The tokio-modbus service view of [`SimModbus`].
#[derive(Clone)]
struct SimService(SimModbus);

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(self.0.handle(req.slave, req.request))
    }
}

/// The topic suffixes of a Vzenith camera's recognitions, which carry its pictures:
/// the final result and the quick one.
pub const VZENITH_RESULT: &str = "ivs_result";
pub const VZENITH_QUICK_RESULT: &str = "quick_ivs_result";

/// Camera `sn`'s Vzenith topic ending in `suffix` (`sn` "+": every camera's).
pub fn vzenith_topic(sn: &str, suffix: &str) -> String {
    format!("device/{sn}/message/up/{suffix}")
}

/// A simulated Vzenith camera publishing to an MQTT broker with the vendor's topic
/// layout (`device/{sn}/message/up/...`).
pub struct SimCamera {
    client: rumqttc::AsyncClient,
    sn: String,
    task: tokio::task::JoinHandle<()>,
}

impl SimCamera {
    /// Connects to the broker as client `sim-cam-{sn}`.
    pub fn connect(host: &str, port: u16, sn: &str) -> SimCamera {
        let mut opts = rumqttc::MqttOptions::new(format!("sim-cam-{sn}"), host, port);
        opts.set_keep_alive(std::time::Duration::from_secs(5));
        opts.set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 32);
        let task = tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        });
        SimCamera {
            client,
            sn: sn.to_string(),
            task,
        }
    }

    /// Publishes a recognition (`quick` on the quick-result topic). `color_type` is the
    /// vendor code: 0 unknown, 1 blue, 2 yellow, 3 white, 4 black, 5 green.
    pub async fn publish_plate(
        &self,
        plate: &str,
        color_type: u8,
        jpeg: Option<&[u8]>,
        quick: bool,
    ) -> Result<(), rumqttc::ClientError> {
        // The snapshot is a camera frame: the scene image, as a real camera sends it.
        let body = crate::driver::camera::samples::vzenith_ivs_result_made(
            &self.sn,
            plate,
            color_type,
            jpeg,
            None,
            crate::time::Timestamp::now(),
        );
        let topic = if quick {
            VZENITH_QUICK_RESULT
        } else {
            VZENITH_RESULT
        };
        self.publish_raw(topic, body.into_bytes()).await
    }

    /// Publishes a keep-alive.
    pub async fn keep_alive(&self) -> Result<(), rumqttc::ClientError> {
        let body = serde_json::json!({"sn": self.sn, "name": "keep_alive", "timestamp": crate::time::Timestamp::now().millis() / 1000});
        self.publish_raw("keep_alive", body.to_string().into_bytes())
            .await
    }

    /// Publishes arbitrary bytes on `device/{sn}/message/up/{suffix}`.
    pub async fn publish_raw(
        &self,
        suffix: &str,
        payload: Vec<u8>,
    ) -> Result<(), rumqttc::ClientError> {
        let topic = vzenith_topic(&self.sn, suffix);
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
    }
}

impl Drop for SimCamera {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which vendor's HTTP push a [`SimPushCamera`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStyle {
    /// Hikvision ISAPI: multipart with the EventNotificationAlert XML and the scene.
    Hikvision,
    /// Dahua ITC TollgateInfo JSON; it "misses" its first acknowledgements and resends.
    Dahua,
}

/// A simulated camera pushing its recognitions over HTTP to the bridge's
/// `[camera_push]` listener, in its vendor's format. The Dahua style resends every
/// recognition `resends` more times, as a camera does whose acknowledgement got
/// lost, so the bridge's resend de-duplication is exercised.
pub struct SimPushCamera {
    style: PushStyle,
    url: String,
    keep_alive_url: String,
    client: reqwest::Client,
    resends: usize,
}

impl SimPushCamera {
    /// `base` is `http://host:port/camera/{id}` (plus `/token/{token}` when bound by
    /// token).
    pub fn new(style: PushStyle, base: &str, resends: usize) -> SimPushCamera {
        let (url, keep_alive_url) = match style {
            PushStyle::Hikvision => (format!("{base}/ISAPI/Event/notification"), String::new()),
            PushStyle::Dahua => (
                format!("{base}/NotificationInfo/TollgateInfo"),
                format!("{base}/NotificationInfo/KeepAlive"),
            ),
        };
        SimPushCamera {
            style,
            url,
            keep_alive_url,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            resends,
        }
    }

    /// Pushes one recognition made now (`plate` "" for no plate).
    pub async fn push_plate(
        &self,
        plate: &str,
        color: crate::plate::PlateColor,
        jpeg: Option<&[u8]>,
    ) -> Result<(), String> {
        use crate::driver::camera::samples;
        use crate::plate::PlateColor as C;
        let now = chrono::Utc::now().with_timezone(&crate::time::china_standard_time());
        let (content_type, body, sends) = match self.style {
            PushStyle::Hikvision => {
                let color = match color {
                    C::Blue => "blue",
                    C::Yellow => "yellow",
                    C::White => "white",
                    C::Black => "black",
                    C::Green => "newEnergyGreen",
                    C::YellowGreen => "newEnergyYellowGreen",
                    _ => "unknown",
                };
                let plate = if plate.is_empty() { "noPlate" } else { plate };
                let xml = samples::hikvision_anpr_xml(plate, color, &now.to_rfc3339());
                let (ct, body) = samples::hikvision_multipart(&xml, jpeg, None);
                (ct, body, 1)
            }
            PushStyle::Dahua => {
                let color = match color {
                    C::Blue => "Blue",
                    C::Yellow => "Yellow",
                    C::White => "White",
                    C::Black => "Black",
                    C::Green => "Green",
                    C::YellowGreen => "YellowGreen",
                    _ => "Unknown",
                };
                let plate = if plate.is_empty() { "无车牌" } else { plate };
                let time = now.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
                let body = samples::dahua_tollgate(plate, color, &time, jpeg);
                (
                    "application/json".to_string(),
                    body.into_bytes(),
                    1 + self.resends,
                )
            }
        };
        for _ in 0..sends {
            let r = self
                .client
                .post(&self.url)
                .header("content-type", &content_type)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("push answered {}", r.status()));
            }
        }
        Ok(())
    }

    /// Dahua keep-alive (Hikvision cameras send none here).
    pub async fn keep_alive(&self) -> Result<(), String> {
        if self.style != PushStyle::Dahua {
            return Ok(());
        }
        self.client
            .post(&self.keep_alive_url)
            .body(crate::driver::camera::samples::dahua_keep_alive("sim"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
