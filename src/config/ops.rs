//! `[http]` and `[logging]`: the operator's side.

use super::{Invalid, check_at_least, check_between};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Status page, `/metrics` and `/healthz`. Empty string disables the endpoint.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for every request (`Authorization: Bearer T`, or `?token=T` for a
    /// phone's browser). Required when `listen` is not a loopback address.
    #[serde(default)]
    pub token: Option<String>,
    /// Show whole plates on the status page (default: masked like the logs).
    #[serde(default)]
    pub show_plates: bool,
    /// `/healthz` degrades when no platform answer has succeeded for this long.
    #[serde(default = "default_platform_down_secs")]
    pub platform_down_secs: u64,
    /// `/healthz` degrades when a device link has been down for this long.
    #[serde(default = "default_device_down_secs")]
    pub device_down_secs: u64,
    /// `/healthz` degrades when the storage budget (or the file system holding the
    /// storage dir) is this full, in percent.
    #[serde(default = "default_disk_full_percent")]
    pub disk_full_percent: u8,
    /// `/healthz` degrades while the system clock is not NTP-synchronised. Turn off only
    /// on a site without any time source (the reports' times are then the PC's guess).
    #[serde(default = "yes")]
    pub require_clock_sync: bool,
    /// Language of the status page: `auto` (the browser's `Accept-Language`), `en` or
    /// `zh-CN`. Logs stay in English.
    #[serde(default)]
    pub language: PageLanguage,
}

/// `[http] language`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum PageLanguage {
    /// Follow the browser's `Accept-Language` (English when it names neither).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "en")]
    English,
    #[serde(rename = "zh-CN", alias = "zh", alias = "zh_CN", alias = "zh-Hans")]
    Chinese,
}

fn default_listen() -> String {
    "127.0.0.1:9108".to_string()
}

fn default_platform_down_secs() -> u64 {
    300
}

fn default_device_down_secs() -> u64 {
    60
}

fn default_disk_full_percent() -> u8 {
    90
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            token: None,
            show_plates: false,
            platform_down_secs: default_platform_down_secs(),
            device_down_secs: default_device_down_secs(),
            disk_full_percent: default_disk_full_percent(),
            require_clock_sync: true,
            language: PageLanguage::Auto,
        }
    }
}

impl HttpConfig {
    /// The parsed listen address; `None` when the endpoint is disabled or the address
    /// is invalid (which `validate` reports).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }

    /// A non-empty token, if one is configured.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }

    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if self.listen.is_empty() {
            return;
        }
        match self.listen.parse::<std::net::SocketAddr>() {
            Err(_) => out.push(Invalid::new("http.listen", "expected an address like \"127.0.0.1:9108\"")),
            Ok(addr) if !addr.ip().is_loopback() && self.token().is_none() => out.push(Invalid::new(
                "http.listen",
                "a non-loopback address needs `token` set in [http] (the status page shows plates and snapshots)",
            )),
            Ok(_) => {}
        }
        check_at_least("http.platform_down_secs", self.platform_down_secs, 1, out);
        check_at_least("http.device_down_secs", self.device_down_secs, 1, out);
        check_between(
            "http.disk_full_percent",
            self.disk_full_percent,
            1..=100,
            "",
            out,
        );
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Mask plates in logs (`闽A1***5`). Plates are personal data.
    #[serde(default = "yes")]
    pub mask_plates: bool,
    /// Log filter when `RUST_LOG` is not set, in `RUST_LOG` syntax (`info`,
    /// `parking_bridge=debug,info`). Re-read from the file on SIGHUP.
    #[serde(default = "default_level")]
    pub level: String,
}

fn yes() -> bool {
    true
}

fn default_level() -> String {
    "info".to_string()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            mask_plates: true,
            level: default_level(),
        }
    }
}

impl LoggingConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            out.push(Invalid::new(
                "logging.level",
                "expected a level like \"info\" or \"parking_bridge=debug,info\"",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_language_accepts_auto_en_and_chinese_spellings_only() {
        let parse = |v: &str| toml::from_str::<HttpConfig>(&format!("language = {v:?}"));
        assert_eq!(parse("auto").unwrap().language, PageLanguage::Auto);
        assert_eq!(parse("en").unwrap().language, PageLanguage::English);
        for zh in ["zh-CN", "zh", "zh_CN", "zh-Hans"] {
            assert_eq!(parse(zh).unwrap().language, PageLanguage::Chinese, "{zh}");
        }
        let e = parse("fr").unwrap_err().to_string();
        assert!(e.contains("unknown variant `fr`"), "{e}");
        assert_eq!(HttpConfig::default().language, PageLanguage::Auto);
    }

    #[test]
    fn non_loopback_listen_needs_a_token() {
        let mut http = HttpConfig {
            listen: "0.0.0.0:9108".into(),
            ..HttpConfig::default()
        };
        let mut out = Vec::new();
        http.validate(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].key, "http.listen");
        http.token = Some("s3cret-token".into());
        out.clear();
        http.validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn loopback_and_disabled_need_no_token() {
        for listen in ["127.0.0.1:9108", "[::1]:9108", ""] {
            let http = HttpConfig {
                listen: listen.into(),
                ..HttpConfig::default()
            };
            let mut out = Vec::new();
            http.validate(&mut out);
            assert!(out.is_empty(), "{listen}: {out:?}");
        }
    }

    #[test]
    fn bad_log_level_is_reported() {
        let logging = LoggingConfig {
            level: "loud=,=".into(),
            ..LoggingConfig::default()
        };
        let mut out = Vec::new();
        logging.validate(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
