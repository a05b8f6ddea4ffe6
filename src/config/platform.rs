//! `[platform]`: where and how to reach City Brain, and the app secret (the SM4 key).

use super::{Invalid, check_between, check_chars};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the configured secret.
pub const SECRET_ENV: &str = "PARKING_BRIDGE_APP_SECRET";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// `https://host`; paths are appended; a trailing slash is tolerated.
    pub base_url: String,
    pub app_id: String,
    /// The 16-character SM4 key. Prefer `app_secret_file`; the environment variable
    /// `PARKING_BRIDGE_APP_SECRET` overrides both.
    #[serde(default)]
    pub app_secret: Option<String>,
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// Offset of the lot's local time, e.g. `+08:00` (default China Standard Time).
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// TCP + TLS connect timeout.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole request timeout (connect, send, answer).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Extra CA certificate(s), PEM, trusted besides the built-in roots (a city's
    /// private CA). TLS verification is always on.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL, e.g. `http://10.0.0.1:3128`. Without it the usual
    /// `HTTPS_PROXY` / `NO_PROXY` environment variables apply.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `device_no` sent with entries (the original's example carries one; spec decision:
    /// only when configured).
    #[serde(default)]
    pub device_no: Option<String>,
    /// Path overrides, for platforms that deviate from the spec.
    #[serde(default)]
    pub paths: PathsConfig,
    /// What the real platform's result codes mean, taught by the installer: code
    /// (exact, case-insensitive) → `delivered`, `duplicate`, `needs_entry`, `refused`,
    /// `config_fault` or `retry`. Wins over the spec's built-in codes.
    #[serde(default)]
    pub result_codes: BTreeMap<String, String>,
    /// A refused report is sent this many times in all, then held for an operator.
    #[serde(default = "default_refused_tries")]
    pub refused_tries: u32,
    /// Delay before the second try of a refused report; it doubles with every refusal
    /// (default 240 s: 5 tries span about an hour).
    #[serde(default = "default_refused_first_retry_secs")]
    pub refused_first_retry_secs: u64,
}

/// The four uplink paths, appended to `base_url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    #[serde(default = "default_entry_path")]
    pub entry: String,
    #[serde(default = "default_exit_path")]
    pub exit: String,
    #[serde(default = "default_snapshot_path")]
    pub snapshot: String,
    #[serde(default = "default_heartbeat_path")]
    pub heartbeat: String,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            entry: default_entry_path(),
            exit: default_exit_path(),
            snapshot: default_snapshot_path(),
            heartbeat: default_heartbeat_path(),
        }
    }
}

fn default_entry_path() -> String {
    crate::spec::ENTRY_PATH.to_string()
}
fn default_exit_path() -> String {
    crate::spec::EXIT_PATH.to_string()
}
fn default_snapshot_path() -> String {
    crate::spec::SNAPSHOT_PATH.to_string()
}
fn default_heartbeat_path() -> String {
    crate::spec::HEARTBEAT_PATH.to_string()
}

fn default_refused_tries() -> u32 {
    5
}

fn default_refused_first_retry_secs() -> u64 {
    240
}

fn default_utc_offset() -> String {
    "+08:00".to_string()
}

fn default_heartbeat_secs() -> u64 {
    30
}

fn default_connect_timeout_secs() -> u64 {
    5
}

fn default_request_timeout_secs() -> u64 {
    20
}

/// The app secret: the 16 ASCII bytes used as the SM4 key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl Secret {
    /// A secret from its text; it must be exactly 16 bytes.
    pub fn new(text: &str) -> Result<Secret, SecretError> {
        let bytes: [u8; 16] = text
            .as_bytes()
            .try_into()
            .map_err(|_| SecretError::Length {
                origin: String::new(),
                len: text.len(),
            })?;
        Ok(Secret(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// For display: `bb08************`-style is still too much; only the length shows.
    pub fn masked(&self) -> &'static str {
        "****"
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Why the secret could not be obtained. `key()` names the config key to blame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "no app secret: set platform.app_secret_file (or platform.app_secret, or {SECRET_ENV})"
    )]
    Missing,
    #[error("the app secret{origin} is {len} bytes; it must be exactly 16 characters")]
    Length { origin: String, len: usize },
    #[error("cannot read app secret file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "app secret file {path} is readable by everyone (mode {mode:o}); run `chmod 600 {path}`"
    )]
    WorldReadable { path: PathBuf, mode: u32 },
}

impl SecretError {
    /// The config key this error is about (for locating its line).
    pub fn key(&self) -> &'static str {
        match self {
            SecretError::Missing => "platform",
            SecretError::Length { origin, .. } if origin.contains("app_secret_file") => {
                "platform.app_secret_file"
            }
            SecretError::Length { .. } => "platform.app_secret",
            SecretError::Read { .. } | SecretError::WorldReadable { .. } => {
                "platform.app_secret_file"
            }
        }
    }
}

impl PlatformConfig {
    pub fn validate(&self, out: &mut Vec<Invalid>) {
        check_between(
            "platform.heartbeat_secs",
            self.heartbeat_secs,
            1..=60,
            " (the platform requires a heartbeat at most 60 s apart)",
            out,
        );
        if crate::time::parse_offset(&self.utc_offset).is_none() {
            out.push(Invalid::new(
                "platform.utc_offset",
                "expected an offset like \"+08:00\"",
            ));
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.query().is_some() || url.fragment().is_some() {
                    out.push(Invalid::new(
                        "platform.base_url",
                        "must not have a query or fragment",
                    ));
                }
            }
            Ok(_) => out.push(Invalid::new(
                "platform.base_url",
                "expected http:// or https:// and a host",
            )),
            Err(e) => out.push(Invalid::new("platform.base_url", format!("not a URL: {e}"))),
        }
        check_chars("platform.app_id", &self.app_id, 32, out);
        if let Some(s) = &self.app_secret
            && s.len() != 16
        {
            out.push(Invalid::new(
                "platform.app_secret",
                format!(
                    "is {} bytes; it must be exactly 16 characters (the SM4 key)",
                    s.len()
                ),
            ));
        }
        if self
            .app_secret_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            out.push(Invalid::new(
                "platform.app_secret_file",
                "must not be empty",
            ));
        }
        for (key, secs) in [
            ("platform.connect_timeout_secs", self.connect_timeout_secs),
            ("platform.request_timeout_secs", self.request_timeout_secs),
        ] {
            check_between(key, secs, 1..=600, " seconds", out);
        }
        if self.connect_timeout_secs > self.request_timeout_secs {
            out.push(Invalid::new(
                "platform.connect_timeout_secs",
                "must not exceed request_timeout_secs",
            ));
        }
        if let Some(p) = &self.proxy
            && reqwest::Url::parse(p).is_err()
        {
            out.push(Invalid::new(
                "platform.proxy",
                "expected a URL like \"http://10.0.0.1:3128\"",
            ));
        }
        if let Some(d) = &self.device_no {
            check_chars("platform.device_no", d, 64, out);
        }
        for (key, path) in [
            ("platform.paths.entry", &self.paths.entry),
            ("platform.paths.exit", &self.paths.exit),
            ("platform.paths.snapshot", &self.paths.snapshot),
            ("platform.paths.heartbeat", &self.paths.heartbeat),
        ] {
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                out.push(Invalid::new(
                    key,
                    "must start with '/' and contain no spaces",
                ));
            }
        }
        for (code, verdict) in &self.result_codes {
            if code.trim().is_empty() {
                out.push(Invalid::new(
                    "platform.result_codes",
                    "a result code must not be empty",
                ));
            }
            if crate::spec::CodeVerdict::parse(verdict).is_none() {
                out.push(Invalid::new(
                    "platform.result_codes",
                    format!(
                        "{code:?} = {verdict:?}: the verdict must be one of {}",
                        crate::spec::CodeVerdict::NAMES
                    ),
                ));
            }
        }
        check_between(
            "platform.refused_tries",
            self.refused_tries,
            1..=100,
            "",
            out,
        );
        check_between(
            "platform.refused_first_retry_secs",
            self.refused_first_retry_secs,
            1..=86_400,
            " seconds",
            out,
        );
    }

    /// The site's result-code mappings, parsed (`validate()` names unknown verdicts;
    /// should one get here anyway, it is left out).
    pub fn result_code_verdicts(&self) -> BTreeMap<String, crate::spec::CodeVerdict> {
        self.result_codes
            .iter()
            .filter_map(|(code, v)| crate::spec::CodeVerdict::parse(v).map(|v| (code.clone(), v)))
            .collect()
    }

    /// The lot's local offset. `validate()` has rejected unparsable values; should one
    /// get here anyway, China Standard Time (the spec default) is used.
    pub fn offset(&self) -> chrono::FixedOffset {
        crate::time::parse_offset(&self.utc_offset).unwrap_or_else(crate::time::china_standard_time)
    }

    /// The secret, from (in this order) `PARKING_BRIDGE_APP_SECRET`, `app_secret_file`
    /// (refused when readable by everyone), `app_secret`.
    pub fn secret(&self) -> Result<Secret, SecretError> {
        let env = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
        self.secret_from(env.as_deref())
    }

    /// As [`secret`](Self::secret), with the environment value passed in (testable).
    pub fn secret_from(&self, env: Option<&str>) -> Result<Secret, SecretError> {
        if let Some(text) = env {
            return with_source(Secret::new(text), format!(" from {SECRET_ENV}"));
        }
        if let Some(path) = &self.app_secret_file {
            let text = read_secret_file(path)?;
            // A trailing newline from `echo secret > file` is not part of the key.
            let text = text.trim_end_matches(['\n', '\r']);
            return with_source(
                Secret::new(text),
                format!(" in app_secret_file {}", path.display()),
            );
        }
        if let Some(text) = &self.app_secret {
            return with_source(Secret::new(text), " in platform.app_secret".to_string());
        }
        Err(SecretError::Missing)
    }
}

fn with_source(r: Result<Secret, SecretError>, source: String) -> Result<Secret, SecretError> {
    r.map_err(|e| match e {
        SecretError::Length { len, .. } => SecretError::Length {
            origin: source,
            len,
        },
        other => other,
    })
}

fn read_secret_file(path: &Path) -> Result<String, SecretError> {
    let read_err = |e: std::io::Error| SecretError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o004 != 0 {
            return Err(SecretError::WorldReadable {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    std::fs::read_to_string(path).map_err(read_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PlatformConfig {
        toml::from_str(
            r#"base_url = "https://host"
app_id = "ae145d83e56cb332"
"#,
        )
        .unwrap()
    }

    #[test]
    fn secret_prints_masked() {
        let s = Secret::new("bb0873ce314c42f7").unwrap();
        assert_eq!(format!("{s}"), "****");
        assert_eq!(format!("{s:?}"), "****");
        assert_eq!(s.as_bytes(), b"bb0873ce314c42f7");
    }

    #[test]
    fn secret_of_wrong_length_is_refused() {
        assert!(matches!(
            Secret::new("short"),
            Err(SecretError::Length { len: 5, .. })
        ));
        let mut c = config();
        c.app_secret = Some("0123456789abcdef0".into());
        let mut out = Vec::new();
        c.validate(&mut out);
        assert!(
            out.iter().any(|i| i.key == "platform.app_secret"),
            "{out:?}"
        );
        assert_eq!(
            c.secret_from(None).unwrap_err().key(),
            "platform.app_secret"
        );
    }

    #[test]
    fn environment_overrides_file_and_inline_secret() {
        let mut c = config();
        c.app_secret = Some("aaaaaaaaaaaaaaaa".into());
        assert_eq!(c.secret_from(None).unwrap().as_bytes(), b"aaaaaaaaaaaaaaaa");
        assert_eq!(
            c.secret_from(Some("bbbbbbbbbbbbbbbb")).unwrap().as_bytes(),
            b"bbbbbbbbbbbbbbbb"
        );
        assert!(matches!(
            c.secret_from(Some("bad")),
            Err(SecretError::Length { .. })
        ));
    }

    #[test]
    fn missing_secret_is_an_error() {
        assert_eq!(config().secret_from(None), Err(SecretError::Missing));
    }

    #[cfg(unix)]
    #[test]
    fn secret_file_is_read_and_world_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app_secret");
        std::fs::write(&path, "cccccccccccccccc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c = config();
        c.app_secret = Some("aaaaaaaaaaaaaaaa".into());
        c.app_secret_file = Some(path.clone());
        assert_eq!(
            c.secret_from(None).unwrap().as_bytes(),
            b"cccccccccccccccc",
            "file wins over inline"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = c.secret_from(None).unwrap_err();
        assert!(matches!(err, SecretError::WorldReadable { .. }), "{err}");
        assert_eq!(err.key(), "platform.app_secret_file");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "too-short").unwrap();
        let err = c.secret_from(None).unwrap_err();
        assert_eq!(err.key(), "platform.app_secret_file", "{err}");
    }

    #[test]
    fn invalid_platform_values_are_named() {
        let mut c = config();
        c.base_url = "ftp://x".into();
        c.app_id = String::new();
        c.connect_timeout_secs = 0;
        c.paths.entry = "barrier/parking".into();
        let mut out = Vec::new();
        c.validate(&mut out);
        let keys: Vec<&str> = out.iter().map(|i| i.key.as_str()).collect();
        for k in [
            "platform.base_url",
            "platform.app_id",
            "platform.connect_timeout_secs",
            "platform.paths.entry",
        ] {
            assert!(keys.contains(&k), "{k} missing in {keys:?}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = config();
        let mut out = Vec::new();
        c.validate(&mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(c.offset(), crate::time::china_standard_time());
        assert_eq!(c.paths.snapshot, "/barrier/uploadSnapshot");
    }
}
