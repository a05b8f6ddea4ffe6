//! HTTPS client: envelope, POST, decode the answer. What it sends is valid by
//! construction (`wire`), so it checks nothing again.
//! reqwest with rustls (no OpenSSL); TLS verification always on.

use super::envelope;
use super::field::DeviceNo;
use super::response::{self, Answer, MAX_ANSWER_BYTES, ResultCodes};
use super::wire::{Uplink, UplinkKind, WireError};
use crate::config::PlatformConfig;
use crate::config::platform::{PathsConfig, Secret};
use crate::time::Timestamp;
use chrono::FixedOffset;
use std::time::Duration;

/// Why a request got no answer (or was not sent). Transport errors are retriable;
/// `Invalid` and `Setup` need a person.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A report that cannot become a request (a value the spec does not allow).
    #[error("request refused before sending: {0}")]
    Invalid(#[from] WireError),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("DNS lookup failed for {url}: {detail}")]
    Dns { url: String, detail: String },
    #[error("connection refused by {url}: {detail}")]
    Refused { url: String, detail: String },
    #[error("timed out talking to {url}: {detail}")]
    Timeout { url: String, detail: String },
    #[error("TLS failure with {url}: {detail}")]
    Tls { url: String, detail: String },
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("connection to {url} failed mid-request: {detail}")]
    Transport { url: String, detail: String },
}

impl ClientError {
    /// Worth retrying later unchanged.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, ClientError::Invalid(_) | ClientError::Setup(_))
    }

    /// What an installer should check, in plain language.
    pub fn hint(&self) -> &'static str {
        match self {
            ClientError::Invalid(_) => {
                "the request breaks the platform's rules (see the field named above); fix the config or report data"
            }
            ClientError::Setup(_) => {
                "check platform.ca_file (a PEM file) and platform.proxy (a URL)"
            }
            ClientError::Dns { .. } => {
                "DNS: the platform's host name could not be resolved; check platform.base_url and this PC's DNS server"
            }
            ClientError::Refused { .. } => {
                "refused: the host answered but nothing listens on that port; check the port in platform.base_url, or the platform is down"
            }
            ClientError::Timeout { .. } => {
                "timeout: no answer in time; check the network route/firewall to the platform, the proxy, or the platform is down"
            }
            ClientError::Tls { .. } => {
                "TLS: the platform's certificate is not trusted or the handshake failed; check https vs http in base_url, this PC's clock, or set platform.ca_file"
            }
            ClientError::Connect { .. } => {
                "network: cannot reach the platform (no route / unreachable); check the network cable, gateway and firewall"
            }
            ClientError::Transport { .. } => {
                "the connection dropped before the platform answered; usually transient, it will be retried"
            }
        }
    }

    fn from_reqwest(url: &str, e: &reqwest::Error) -> ClientError {
        let url = url.to_string();
        let detail = chain(e);
        let lower = detail.to_ascii_lowercase();
        let io_kind = io_kind(e);
        if e.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
            ClientError::Timeout { url, detail }
        } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
            ClientError::Refused { url, detail }
        } else if lower.contains("dns error")
            || lower.contains("failed to lookup")
            || lower.contains("name or service")
        {
            ClientError::Dns { url, detail }
        } else if TLS_MARKERS.iter().any(|m| lower.contains(m)) {
            ClientError::Tls { url, detail }
        } else if e.is_connect() {
            ClientError::Connect { url, detail }
        } else {
            ClientError::Transport { url, detail }
        }
    }
}

/// Fragments of rustls' error texts (its error type is not a direct dependency).
const TLS_MARKERS: &[&str] = &[
    "certificate",
    "tls",
    "handshake",
    "corrupt message",
    "fatal alert",
    "peer is incompatible",
    "peer misbehaved",
    "unexpected message",
];

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// A request ready to go: what `platform-test` prints and what is POSTed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    pub message_id: String,
    pub timestamp: String,
    /// The envelope JSON (only encrypted data inside).
    /// Shared bytes: re-posting (or printing) does not copy a 500 KB body.
    pub body: bytes::Bytes,
}

/// Talks to one platform with one app id and secret.
#[derive(Debug, Clone)]
pub struct PlatformClient {
    http: reqwest::Client,
    base_url: String,
    paths: PathsConfig,
    app_id: String,
    secret: Secret,
    offset: FixedOffset,
    device_no: Option<DeviceNo>,
    /// Result codes and their verdicts: the spec's and the site's.
    codes: ResultCodes,
}

/// An answer as it arrived, for `platform-test`.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    /// The answer's business JSON (decrypted when it came enveloped), when it is JSON.
    pub json: Option<String>,
    /// The body as received (cut at [`MAX_ANSWER_BYTES`]).
    pub body: Vec<u8>,
}

impl PlatformClient {
    pub fn new(cfg: &PlatformConfig, secret: Secret) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(cfg.request_timeout_secs.max(1)))
            .user_agent(concat!("parking-bridge/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Setup(format!("cannot read ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Setup(format!("ca_file {} is not PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Setup(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(proxy) = &cfg.proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| ClientError::Setup(format!("proxy {proxy:?}: {e}")))?;
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|e| ClientError::Setup(chain(&e)))?;
        Ok(PlatformClient {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            paths: cfg.paths.clone(),
            app_id: cfg.app_id.clone(),
            secret,
            offset: cfg.offset(),
            device_no: cfg
                .device_no
                .as_deref()
                .map(DeviceNo::new)
                .transpose()
                .map_err(|e| ClientError::Setup(format!("platform.device_no: {e}")))?,
            codes: ResultCodes::with_site(&cfg.result_code_verdicts()),
        })
    }

    /// The full URL of an interface.
    pub fn url(&self, kind: UplinkKind) -> String {
        let path = match kind {
            UplinkKind::Entry => &self.paths.entry,
            UplinkKind::Exit => &self.paths.exit,
            UplinkKind::Snapshot => &self.paths.snapshot,
            UplinkKind::Heartbeat => &self.paths.heartbeat,
        };
        format!("{}{}", self.base_url, path)
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The lot's offset used for `timestamp`.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// Seals `uplink` (valid by construction) with a fresh `message_id`, stamped `now`.
    /// The configured `device_no` (checked with the config) is written into the JSON of
    /// an entry or exit as it is encoded, so the uplink and its image are not copied.
    pub fn prepare(&self, uplink: &Uplink, now: Timestamp) -> Prepared {
        let message_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now.format_local(self.offset);
        let body = envelope::seal(
            &self.app_id,
            self.secret.as_bytes(),
            &message_id,
            &timestamp,
            uplink.to_json_with_device(self.device_no.as_ref()),
        );
        Prepared {
            url: self.url(uplink.kind()),
            message_id,
            timestamp,
            body: body.into(),
        }
    }

    /// The result-code table answers are classified with.
    pub fn result_codes(&self) -> &ResultCodes {
        &self.codes
    }

    /// POSTs a prepared request and decodes the answer.
    pub async fn post(&self, prepared: &Prepared) -> Result<Answer, ClientError> {
        self.post_raw(prepared).await.map(|(answer, _)| answer)
    }

    /// [`post`](Self::post), also returning the answer as it arrived.
    pub async fn post_raw(&self, prepared: &Prepared) -> Result<(Answer, RawAnswer), ClientError> {
        let url = &prepared.url;
        let mut resp = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(prepared.body.clone())
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(url, &e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::from_reqwest(url, &e))?
        {
            // A runaway answer is cut off; decoding then reports it as not JSON.
            let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        let (answer, json) =
            response::decode_fields(status, &body, self.secret.as_bytes(), &self.codes);
        tracing::debug!(url = %url, message_id = %prepared.message_id, status, verdict = ?answer.verdict, "platform answered");
        Ok((answer, RawAnswer { status, json, body }))
    }

    /// Encrypts, POSTs, decodes and classifies. Each call uses a fresh `message_id`.
    pub async fn send(&self, uplink: &Uplink) -> Result<Answer, ClientError> {
        let prepared = self.prepare(uplink, Timestamp::now());
        self.post(&prepared).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(base_url: &str) -> PlatformConfig {
        toml::from_str(&format!("base_url = {base_url:?}\napp_id = \"app\"\nconnect_timeout_secs = 2\nrequest_timeout_secs = 2\n"))
            .unwrap()
    }

    fn secret() -> Secret {
        Secret::new("bb0873ce314c42f7").unwrap()
    }

    #[test]
    fn urls_join_with_trailing_slash_tolerated() {
        let c = PlatformClient::new(&cfg("https://host/api/"), secret()).unwrap();
        assert_eq!(
            c.url(UplinkKind::Heartbeat),
            "https://host/api/barrier/heartbeat"
        );
        assert_eq!(
            c.url(UplinkKind::Snapshot),
            "https://host/api/barrier/uploadSnapshot"
        );
    }

    #[test]
    fn prepare_seals_with_a_fresh_message_id() {
        let c = PlatformClient::new(&cfg("http://127.0.0.1:1"), secret()).unwrap();
        let hb = Uplink::heartbeat("P001", true).unwrap();
        let p1 = c.prepare(&hb, Timestamp(1_570_167_364_000));
        let p2 = c.prepare(&hb, Timestamp(1_570_167_364_000));
        assert_ne!(p1.message_id, p2.message_id, "fresh message_id per request");
        assert_eq!(p1.timestamp, "2019-10-04 13:36:04");
        let env = envelope::parse(&p1.body).unwrap();
        let plain = envelope::decrypt_b64(secret().as_bytes(), &env.encrypted_data).unwrap();
        assert_eq!(plain, br#"{"parking_lot_no":"P001","status":"alive"}"#);
        assert!(!String::from_utf8_lossy(&p1.body).contains("bb0873ce314c42f7"));
    }

    #[test]
    fn refused_connection_is_retriable_with_refused_hint() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PlatformClient::new(&cfg(&format!("http://127.0.0.1:{port}")), secret()).unwrap();
        let err = rt
            .block_on(c.send(&Uplink::heartbeat("P001", true).unwrap()))
            .unwrap_err();
        assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
        assert!(err.is_retriable());
        assert!(err.hint().starts_with("refused"));
    }

    #[test]
    fn silent_server_times_out_within_the_configured_bound() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = cfg(&format!("http://127.0.0.1:{port}"));
        c.request_timeout_secs = 1;
        c.connect_timeout_secs = 1;
        let client = PlatformClient::new(&c, secret()).unwrap();
        let started = std::time::Instant::now();
        let err = rt
            .block_on(client.send(&Uplink::heartbeat("P001", true).unwrap()))
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.is_retriable());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn unresolvable_host_is_a_dns_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = PlatformClient::new(&cfg("http://nonexistent.invalid"), secret()).unwrap();
        let err = rt
            .block_on(c.send(&Uplink::heartbeat("P001", true).unwrap()))
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Dns { .. } | ClientError::Timeout { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn bad_ca_file_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let mut c = cfg("https://host");
        c.ca_file = Some(path);
        let err = PlatformClient::new(&c, secret()).unwrap_err();
        assert!(matches!(err, ClientError::Setup(_)), "{err:?}");
        assert!(!err.is_retriable());
    }
}
