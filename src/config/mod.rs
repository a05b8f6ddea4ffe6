//! Site config: TOML → serde (`deny_unknown_fields`) → pure `validate()` → typed values.
//! Every error names the file, the line and the key. An optional key is an `Option`
//! field (serde leaves it `None` when absent); any other key that may be left out
//! names its default.
//!
//! Each section's schema lives in its own file, owned by the part of the program that
//! uses it.

pub mod cluster;
pub mod devices;
pub mod lanes;
pub mod lot;
pub mod ops;
pub mod platform;
pub mod storage;

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub use devices::{
    Attachment, BusConfig, CameraPushConfig, DeviceConfig, MqttConfig, Parity, Role, StringList,
    TopicOverrides,
};
pub use lanes::{Direction, LaneConfig};
pub use lot::LotConfig;
pub use ops::{HttpConfig, LoggingConfig, PageLanguage};
pub use platform::{PlatformConfig, Secret, SecretError};
pub use storage::StorageConfig;

/// The whole site config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub platform: PlatformConfig,
    pub lot: LotConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub lanes: Vec<LaneConfig>,
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Extra directories searched for device profiles, before `./device-profiles`,
    /// `/usr/share/parking-bridge/device-profiles` and the built-in profiles.
    #[serde(default)]
    pub profile_dirs: Vec<String>,
    pub camera_push: Option<devices::CameraPushConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    /// `[cluster]`: this PC is one node of a lot bigger than one PC.
    pub cluster: Option<cluster::ClusterConfig>,
}

/// Serde defaults that are plain numbers, written beside the field they fill:
/// `#[serde(default = "default::u64::<100>")]`.
pub mod default {
    pub const fn u8<const N: u8>() -> u8 {
        N
    }
    pub const fn u16<const N: u16>() -> u16 {
        N
    }
    pub const fn u32<const N: u32>() -> u32 {
        N
    }
    pub const fn u64<const N: u64>() -> u64 {
        N
    }
    pub const fn i64<const N: i64>() -> i64 {
        N
    }
    pub const fn usize<const N: usize>() -> usize {
        N
    }
}

/// The keys of [`SiteConfig`] itself, written above the first `[table]`.
const TOP_LEVEL_KEYS: &[&str] = &[
    "platform",
    "lot",
    "storage",
    "lanes",
    "mqtt",
    "buses",
    "devices",
    "profile_dirs",
    "camera_push",
    "http",
    "logging",
    "cluster",
];

/// One problem found by `validate()`: the dotted key path (`lanes[1].port_no`) and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Pushes "`key` must be between LO and HI`unit`" when `value` is outside `range`: the
/// one wording of a range rule in every section.
pub(crate) fn check_between<T: PartialOrd + fmt::Display>(
    key: impl Into<String>,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
    out: &mut Vec<Invalid>,
) {
    if !range.contains(&value) {
        let (lo, hi) = range.into_inner();
        out.push(Invalid::new(
            key,
            format!("must be between {lo} and {hi}{unit}"),
        ));
    }
}

/// Pushes "`key` must not be empty" or "duplicate WHAT NAME" for a name that must be
/// unique in its list (`seen` holds the names before it).
pub(crate) fn check_unique_name<'a>(
    key: impl Into<String>,
    name: &'a str,
    what: &str,
    seen: &mut std::collections::HashSet<&'a str>,
    out: &mut Vec<Invalid>,
) {
    if name.is_empty() {
        out.push(Invalid::new(key, "must not be empty"));
    } else if !seen.insert(name) {
        out.push(Invalid::new(key, format!("duplicate {what} {name:?}")));
    }
}

/// Pushes "`key` must be 1 to MAX characters" when `text` is empty or longer.
pub(crate) fn check_chars(key: impl Into<String>, text: &str, max: usize, out: &mut Vec<Invalid>) {
    let n = text.chars().count();
    if n == 0 || n > max {
        out.push(Invalid::new(key, format!("must be 1 to {max} characters")));
    }
}

/// Pushes "`key` must be at least LO" when `value` is below `lo`.
pub(crate) fn check_at_least<T: PartialOrd + fmt::Display>(
    key: impl Into<String>,
    value: T,
    lo: T,
    out: &mut Vec<Invalid>,
) {
    if value < lo {
        out.push(Invalid::new(key, format!("must be at least {lo}")));
    }
}

/// Pushes "`key` must not be negative" when `value` is.
pub(crate) fn check_not_negative(key: impl Into<String>, value: i64, out: &mut Vec<Invalid>) {
    if value < 0 {
        out.push(Invalid::new(key, "must not be negative"));
    }
}

/// A config error located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    /// 1-based; `None` when the key is absent from the file (a missing required key).
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl Located {
    /// `problem` located in the config `text` read from `file` (the line of its key,
    /// or of the nearest enclosing table present).
    pub fn in_text(file: &Path, text: &str, problem: Invalid) -> Located {
        Located {
            file: file.to_path_buf(),
            line: locate_key(text, &problem.key),
            key: problem.key,
            message: problem.message,
        }
    }

    /// A TOML or schema error from the parser, located at its line and key.
    /// `top_level_keys` are the file's own keys above its first `[table]`: one written
    /// below a table is named as misplaced.
    pub fn parse_error(
        file: &Path,
        text: &str,
        e: &toml::de::Error,
        top_level_keys: &[&str],
    ) -> Located {
        let message = e.message().to_string();
        let line = e.span().map(|s| line_of_offset(text, s.start));
        let mut key = e
            .span()
            .and_then(|s| key_at_offset(text, s.start))
            .unwrap_or_default();
        // A top-level key written below a [table] header belongs to that table in
        // TOML: say so, rather than leave "unknown field" to puzzle the installer.
        let misplaced = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
            .filter(|field| top_level_keys.contains(field) && key.contains('.'))
            .map(str::to_string);
        let message = match misplaced {
            Some(field) => format!(
                "`{field}` is a top-level key, but TOML puts every key below a [table] header into that table: move it above the first [table]"
            ),
            None => message,
        };
        // "missing field `x`": the span is the enclosing table; name the field too.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            key = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
        }
        Located {
            file: file.to_path_buf(),
            line,
            key,
            message,
        }
    }

    /// Every problem of `problems`, located in `text` (see [`Located::in_text`]).
    pub fn all_in_text(file: &Path, text: &str, problems: Vec<Invalid>) -> Vec<Located> {
        problems
            .into_iter()
            .map(|p| Located::in_text(file, text, p))
            .collect()
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Located>),
}

/// One error a line, as printed by `check` and at startup.
pub fn join_lines(errors: &[Located]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl SiteConfig {
    /// Reads, parses and validates a site config file.
    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        Self::from_toml(&read_text(path)?, path)
    }

    /// Parses and validates config text; `path` is only used in error messages and to
    /// resolve relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<SiteConfig, ConfigError> {
        let mut config: SiteConfig = toml::from_str(text).map_err(|e| {
            ConfigError::Invalid(vec![Located::parse_error(path, text, &e, TOP_LEVEL_KEYS)])
        })?;
        lanes::resolve_layouts(&mut config.lanes, &config.devices);
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(Located::all_in_text(
                path, text, problems,
            )))
        }
    }

    /// [`load`](Self::load), then obtains the app secret (environment, file or inline
    /// value). Secret problems are reported like other config errors, located at the
    /// key they concern.
    pub fn load_with_secret(path: &Path) -> Result<(SiteConfig, Secret), ConfigError> {
        let text = read_text(path)?;
        let config = Self::from_toml(&text, path)?;
        match config.platform.secret() {
            Ok(secret) => Ok((config, secret)),
            Err(e) => Err(ConfigError::Invalid(vec![Located::in_text(
                path,
                &text,
                Invalid::new(e.key(), e.to_string()),
            )])),
        }
    }

    /// Every rule that the types alone cannot express. Pure: no I/O.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        self.platform.validate(&mut out);
        self.lot.validate(&mut out);
        if self.mqtt.is_none() {
            for (set, key) in [
                (self.lot.occupancy_mqtt.is_some(), "lot.occupancy_mqtt"),
                (self.lot.fee_mqtt.is_some(), "lot.fee_mqtt"),
            ] {
                if set {
                    out.push(Invalid::new(key, "needs the [mqtt] broker section"));
                }
            }
        }
        self.storage.validate(&mut out);
        lanes::validate_all(&self.lanes, &mut out);
        lanes::validate_layouts(&self.lanes, &self.devices, &mut out);
        devices::validate_all(self, &mut out);
        self.http.validate(&mut out);
        self.logging.validate(&mut out);
        cluster::validate(self, &mut out);
        out
    }

    pub fn lane(&self, id: &str) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| l.id == id)
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The smallest valid head of a site config, for tests: platform, lot `L` (with the
/// `lot_extra` lines) and storage; lanes, buses and devices follow it.
#[cfg(test)]
pub(crate) fn test_site_head(lot_extra: &str) -> String {
    format!(
        "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n\
         [lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n{lot_extra}\
         [storage]\ndir = \"/tmp\"\n"
    )
}

/// 1-based line of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a dotted key path like `lanes[1].port_no` or `platform.app_id`
/// in TOML text, using the parser's spans. Falls back to the enclosing table's line
/// when the key itself is absent, and `None` when nothing matches.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let doc: toml::Spanned<toml::de::DeTable> = toml::de::DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut table = doc.get_ref();
    let mut segments = split_key(key).into_iter().peekable();
    while let Some((name, index)) = segments.next() {
        let (k, v) = table.get_key_value(name.as_str())?;
        best = Some(line_of_offset(text, k.span().start));
        let mut value = v;
        if let Some(i) = index {
            match value.get_ref() {
                toml::de::DeValue::Array(items) => {
                    value = items.get(i)?;
                    best = Some(line_of_offset(text, value.span().start));
                }
                _ => return best,
            }
        }
        if segments.peek().is_none() {
            return best;
        }
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

/// The dotted key path (`lanes[1].direction`) of the key or value at a byte offset,
/// e.g. where the parser found an unknown key or a value of the wrong type.
pub fn key_at_offset(text: &str, offset: usize) -> Option<String> {
    let doc: toml::Spanned<toml::de::DeTable> = toml::de::DeTable::parse(text).ok()?;
    path_in_table(doc.get_ref(), offset, "")
}

fn path_in_table(table: &toml::de::DeTable, offset: usize, prefix: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if k.span().contains(&offset) {
            return Some(path);
        }
        // Header-defined tables' spans do not cover their keys: always look inside.
        match v.get_ref() {
            toml::de::DeValue::Table(t) => {
                if let Some(p) = path_in_table(t, offset, &path) {
                    return Some(p);
                }
            }
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if let toml::de::DeValue::Table(t) = item.get_ref()
                        && let Some(p) = path_in_table(t, offset, &item_path)
                    {
                        return Some(p);
                    }
                    if item.span().contains(&offset) {
                        return Some(item_path);
                    }
                }
            }
            _ => {}
        }
        if v.span().contains(&offset) {
            return Some(path);
        }
    }
    None
}

fn split_key(key: &str) -> Vec<(String, Option<usize>)> {
    key.split('.')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.split_once('[') {
            Some((name, rest)) => (name.to_string(), rest.trim_end_matches(']').parse().ok()),
            None => (seg.to_string(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"[platform]
base_url = "https://host"
app_id = "ae145d83e56cb332"
app_secret = "bb0873ce314c42f7"

[lot]
parking_lot_no = "P001"
total_spaces = 100

[storage]
dir = "/var/lib/parking-bridge"

[[lanes]]
id = "entry-1"
direction = "entry"
port_no = "E1"

[[lanes]]
id = "exit-1"
direction = "exit"
port_no = "X1"
"#;

    fn errors(text: &str) -> Vec<Located> {
        match SiteConfig::from_toml(text, Path::new("/etc/pb.toml")) {
            Err(ConfigError::Invalid(v)) => v,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        line_of_offset(text, text.find(needle).unwrap())
    }

    /// The first error of `text`, asserted to name `key` on the line where `needle` is.
    fn first_error_at(text: &str, key: &str, needle: &str) -> Located {
        let e = errors(text).remove(0);
        assert_eq!(e.key, key, "{e}");
        assert_eq!(e.line, Some(line_of(text, needle)), "{e}");
        e
    }

    /// `VALID` with `line` added below `anchor` (which ends a line).
    fn valid_with_line_after(anchor: &str, line: &str) -> String {
        let anchor = format!("{anchor}\n");
        assert!(VALID.contains(&anchor), "{anchor:?} is not in VALID");
        VALID.replacen(&anchor, &format!("{anchor}{line}\n"), 1)
    }

    #[test]
    fn valid_config_loads() {
        let c = SiteConfig::from_toml(VALID, Path::new("x.toml")).unwrap();
        assert_eq!(c.lanes.len(), 2);
        assert_eq!(c.platform.heartbeat_secs, 30);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = valid_with_line_after("app_id = \"ae145d83e56cb332\"", "colour = 1");
        let e = first_error_at(&text, "platform.colour", "colour");
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert!(
            e.to_string().starts_with(&format!(
                "/etc/pb.toml:{}: platform.colour: ",
                e.line.unwrap()
            )),
            "{e}"
        );
    }

    #[test]
    fn top_level_key_below_a_table_is_an_error_naming_its_line() {
        let text = valid_with_line_after(
            "[storage]\ndir = \"/var/lib/parking-bridge\"",
            "profile_dirs = [\"/etc/pb/profiles\"]",
        );
        let e = first_error_at(&text, "storage.profile_dirs", "profile_dirs");
        assert!(
            e.message.contains("top-level key") && e.message.contains("above the first [table]"),
            "{e}"
        );
        // Above the first table it is read.
        let text = format!("profile_dirs = [\"/etc/pb/profiles\"]\n{VALID}");
        let c = SiteConfig::from_toml(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.profile_dirs, vec!["/etc/pb/profiles".to_string()]);
    }

    #[test]
    fn two_lanes_with_one_port_no_are_an_error() {
        let text = VALID.replace("port_no = \"X1\"", "port_no = \"E1\"");
        let e = &errors(&text)[0];
        assert_eq!(e.key, "lanes[1].port_no");
        let second = text.rfind("port_no = \"E1\"").unwrap();
        assert_eq!(e.line, Some(line_of_offset(&text, second)));
        assert!(e.message.contains("already lane \"entry-1\"'s"), "{e}");
    }

    /// A wrong type, a bad value in the lanes array, an unknown key in an array
    /// element, a secret of the wrong length: each named at its key and line.
    #[test]
    fn each_bad_value_is_named_at_its_key_and_line() {
        for (from, to, key, needle) in [
            (
                "total_spaces = 100",
                "total_spaces = \"hundred\"",
                "lot.total_spaces",
                "total_spaces",
            ),
            (
                "direction = \"exit\"",
                "direction = \"sideways\"",
                "lanes[1].direction",
                "sideways",
            ),
            (
                "port_no = \"X1\"",
                "port_no = \"\"",
                "lanes[1].port_no",
                "port_no = \"\"",
            ),
            (
                "id = \"exit-1\"\n",
                "id = \"exit-1\"\nspeed = 3\n",
                "lanes[1].speed",
                "speed",
            ),
            (
                "bb0873ce314c42f7",
                "short",
                "platform.app_secret",
                "app_secret",
            ),
        ] {
            first_error_at(&VALID.replace(from, to), key, needle);
        }
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = VALID.replace("dir = \"/var/lib/parking-bridge\"\n", "");
        let e = &errors(&text)[0];
        assert!(e.key.ends_with("dir"), "{e}");
    }

    #[test]
    fn several_validation_errors_are_all_reported() {
        let text = VALID
            .replace("total_spaces = 100", "total_spaces = -1")
            .replace("\n[lot]", "heartbeat_secs = 90\n\n[lot]");
        let errs = errors(&text);
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(
            keys.contains(&"platform.heartbeat_secs") && keys.contains(&"lot.total_spaces"),
            "{keys:?}"
        );
        assert_eq!(
            errs.iter()
                .find(|e| e.key == "platform.heartbeat_secs")
                .unwrap()
                .line,
            Some(line_of(&text, "heartbeat_secs"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn load_with_secret_locates_world_readable_secret_file() {
        use std::os::unix::fs::PermissionsExt;
        // The environment override would hide the file; this test needs it unset.
        if std::env::var_os(platform::SECRET_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("app_secret");
        std::fs::write(&secret, "bb0873ce314c42f7").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = VALID.replace(
            "app_secret = \"bb0873ce314c42f7\"",
            &format!("app_secret_file = {:?}", secret.display().to_string()),
        );
        let cfg = dir.path().join("site.toml");
        std::fs::write(&cfg, &text).unwrap();
        match SiteConfig::load_with_secret(&cfg) {
            Err(ConfigError::Invalid(v)) => {
                assert_eq!(v[0].key, "platform.app_secret_file");
                assert_eq!(v[0].line, Some(line_of(&text, "app_secret_file")));
                assert!(
                    v[0].message.contains("readable by everyone"),
                    "{}",
                    v[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (_, s) = SiteConfig::load_with_secret(&cfg).unwrap();
        assert_eq!(s.as_bytes(), b"bb0873ce314c42f7");
    }
}
