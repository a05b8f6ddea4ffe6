//! `[http]` and `[logging]`: the operator's side.

use super::Invalid;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Status page, `/metrics` and `/healthz`. Empty string disables the endpoint.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9108".to_string()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

impl HttpConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(Invalid::new(
                "http.listen",
                "expected an address like \"127.0.0.1:9108\"",
            ));
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Mask plates in logs (`闽A1***5`). Plates are personal data.
    #[serde(default = "yes")]
    pub mask_plates: bool,
}

fn yes() -> bool {
    true
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig { mask_plates: true }
    }
}
