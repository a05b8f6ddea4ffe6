//! `parking-bridge check`: a site config, its secret, and every device against its
//! profile; with `--node`, the configs of the lot's other nodes too, then all of them
//! together. [`check`] returns what it found ([`LotReport`]); [`LotReport::lines`]
//! turns that into what the installer reads — error lines exact (`file:line: key:
//! message`) so that editors and scripts can jump to them, each followed by its
//! message in Chinese under a Chinese LANG. The command line only prints the lines and
//! maps [`LotReport::ok`] to the exit code.

use crate::config::cluster::{NodeFile, cross_check};
use crate::config::lanes::LaneSummary;
use crate::config::{Located, SiteConfig, locate_key};
use crate::driver::profile::plan_warnings;
use crate::driver::{ProfileError, load_profiles};
use crate::ops::i18n::Lang;
use crate::platform::PlatformClient;
use std::path::{Path, PathBuf};

/// What `check` found in one config file.
#[derive(Debug)]
pub struct Report {
    pub config: PathBuf,
    pub verdict: Verdict,
}

#[derive(Debug)]
pub enum Verdict {
    /// The file cannot be read, or the device profiles cannot be loaded: one message,
    /// shown as it is.
    Unusable(String),
    /// The config does not parse or validate: its errors, one located error a line.
    Invalid(String),
    /// The config parsed. `problems` stop the bridge; `warnings` do not, but will blind
    /// a lane. `lanes`: each lane's layout and where it comes from.
    Checked {
        problems: Vec<Located>,
        warnings: Vec<Located>,
        lanes: Vec<LaneSummary>,
    },
}

impl Report {
    pub fn ok(&self) -> bool {
        matches!(&self.verdict, Verdict::Checked { problems, .. } if problems.is_empty())
    }
}

/// What `check` (with its `--node` files) found.
#[derive(Debug)]
pub struct LotReport {
    /// The config, then each node's, in order, up to the first that fails.
    pub files: Vec<Report>,
    /// With `--node` and every file passing on its own: the files checked together.
    pub together: Option<Together>,
}

/// The lot's files checked together.
#[derive(Debug)]
pub struct Together {
    /// How many files (nodes) were given.
    pub nodes: usize,
    /// What is wrong with them together; empty: nothing.
    pub problems: Vec<Located>,
}

impl LotReport {
    pub fn ok(&self) -> bool {
        self.files.iter().all(Report::ok)
            && self.together.as_ref().is_none_or(|t| t.problems.is_empty())
    }

    /// What to print, in order, in the installer's language `lang`.
    pub fn lines(&self, lang: Lang) -> Vec<Line> {
        let mut out = Vec::new();
        for report in &self.files {
            report_lines(report, lang, &mut out);
        }
        match &self.together {
            Some(t) if t.problems.is_empty() => {
                out.push(Line::Out(format!("cluster of {} nodes: ok", t.nodes)))
            }
            Some(t) => out.extend(t.problems.iter().map(|p| Line::Err(p.to_string()))),
            None => {}
        }
        out
    }
}

/// One line of `check`'s output: for stdout (what passed) or stderr (what did not,
/// and warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Out(String),
    Err(String),
}

/// Checks `config`, then each of `nodes` (stopping at the first file that fails),
/// then — with `nodes` — all of them together as one lot.
pub fn check(config: &Path, nodes: &[PathBuf]) -> LotReport {
    let paths: Vec<&Path> = std::iter::once(config)
        .chain(nodes.iter().map(PathBuf::as_path))
        .collect();
    let mut files = Vec::new();
    // Per path in `paths` order: its text and config.
    let mut parsed: Vec<(String, SiteConfig)> = Vec::new();
    for (n, path) in paths.iter().enumerate() {
        // A file given twice (or the config itself again) is checked once.
        if let Some(first) = paths[..n].iter().position(|p| p == path) {
            let again = parsed[first].clone();
            parsed.push(again);
            continue;
        }
        let (report, site) = check_file(path);
        let ok = report.ok();
        files.push(report);
        match site {
            Some(site) if ok => parsed.push(site),
            _ => {
                return LotReport {
                    files,
                    together: None,
                };
            }
        }
    }
    let together = (!nodes.is_empty()).then(|| {
        let node_files: Vec<NodeFile<'_>> = paths
            .iter()
            .zip(&parsed)
            .map(|(path, (text, site))| NodeFile {
                path: path.to_path_buf(),
                text,
                site,
            })
            .collect();
        Together {
            nodes: node_files.len(),
            problems: cross_check(&node_files),
        }
    });
    LotReport { files, together }
}

/// One file's check, and its text and config when it parsed.
fn check_file(config: &Path) -> (Report, Option<(String, SiteConfig)>) {
    let report = |verdict| Report {
        config: config.to_path_buf(),
        verdict,
    };
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read config {}: {e}", config.display());
            return (report(Verdict::Unusable(message)), None);
        }
    };
    let site = match SiteConfig::from_toml(&text, config) {
        Ok(site) => site,
        Err(e) => return (report(Verdict::Invalid(e.to_string())), None),
    };
    let locate = |key: &str, message: String| Located {
        file: config.to_path_buf(),
        line: locate_key(&text, key),
        key: key.to_string(),
        message,
    };
    let mut problems = Vec::new();
    match site.platform.secret() {
        // Building the client reads ca_file and parses proxy: report those too.
        Ok(secret) => {
            if let Err(e) = PlatformClient::new(&site.platform, secret) {
                problems.push(locate("platform", e.to_string()));
            }
        }
        Err(e) => problems.push(locate(e.key(), e.to_string())),
    }
    let mut warnings = Vec::new();
    match load_profiles(&site) {
        Ok(lib) => warnings.extend(
            plan_warnings(&site, &lib)
                .into_iter()
                .map(|w| locate(&w.key, w.message)),
        ),
        // Device-vs-profile problems are keys of the site config: locate them.
        Err(ProfileError::Devices(found)) => {
            problems.extend(found.into_iter().map(|p| locate(&p.key, p.message)))
        }
        Err(e) => return (report(Verdict::Unusable(e.to_string())), None),
    }
    let lanes = site
        .lanes
        .iter()
        .map(|lane| LaneSummary::of(lane, &site.devices))
        .collect();
    let verdict = Verdict::Checked {
        problems,
        warnings,
        lanes,
    };
    (report(verdict), Some((text, site)))
}

fn report_lines(report: &Report, lang: Lang, out: &mut Vec<Line>) {
    // Each error line as it is, then (under a Chinese LANG) its message translated.
    let show = |text: &str, out: &mut Vec<Line>| {
        for line in text.lines() {
            out.push(Line::Err(line.to_string()));
            if let Some(message) = line.splitn(3, ": ").nth(2) {
                let translated = lang.tr_text(message);
                if translated != message {
                    out.push(Line::Err(format!("    → {translated}")));
                }
            }
        }
    };
    let explain = |out: &mut Vec<Line>| {
        if lang != Lang::En {
            out.push(Line::Err(
                lang.tr(
                    "Fix each line above (file:line: key: what is wrong), then run check again.",
                )
                .to_string(),
            ));
        }
    };
    match &report.verdict {
        Verdict::Unusable(message) => out.push(Line::Err(message.clone())),
        Verdict::Invalid(errors) => {
            show(errors, out);
            explain(out);
        }
        Verdict::Checked {
            problems,
            warnings,
            lanes,
        } => {
            out.extend(warnings.iter().map(|w| Line::Err(format!("warning: {w}"))));
            if problems.is_empty() {
                let ok = format!("{}: ok", report.config.display());
                out.push(Line::Out(lang.tr_text(&ok)));
                // A lane's warnings do not fail the check (a lane being commissioned
                // may not have every input wired yet).
                for lane in lanes {
                    out.push(Line::Out(format!("lane {}", lane.line())));
                    out.extend(
                        lane.warnings
                            .iter()
                            .map(|w| Line::Out(format!("warning: lane {}: {w}", lane.id))),
                    );
                }
            } else {
                for p in problems {
                    show(&p.to_string(), out);
                }
                explain(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid one-lane site whose secret is in a file beside it.
    fn site(dir: &Path, name: &str, extra: &str) -> PathBuf {
        let secret = dir.join("app_secret");
        std::fs::write(&secret, "0123456789abcdef").unwrap();
        // The check refuses a secret others can read.
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\napp_secret_file = {:?}\n\
                 [lot]\nparking_lot_no = \"L\"\ntotal_spaces = 1\n[storage]\ndir = \"/tmp\"\n\
                 [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\n{extra}",
                secret.display().to_string()
            ),
        )
        .unwrap();
        path
    }

    fn errs(lines: &[Line]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Err(t) => Some(t.as_str()),
                Line::Out(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_valid_config_passes_and_lists_its_lanes() {
        let dir = tempfile::tempdir().unwrap();
        let path = site(dir.path(), "site.toml", "");
        let report = check(&path, &[]);
        assert!(report.ok(), "{report:?}");
        assert!(report.together.is_none());
        let lines = report.lines(Lang::En);
        assert_eq!(lines[0], Line::Out(format!("{}: ok", path.display())));
        assert!(
            matches!(&lines[1], Line::Out(l) if l.starts_with("lane in")),
            "{lines:?}"
        );
    }

    #[test]
    fn an_unreadable_file_fails_with_one_message_and_no_explanation() {
        let report = check(Path::new("/nonexistent/site.toml"), &[]);
        assert!(!report.ok());
        assert!(matches!(report.files[0].verdict, Verdict::Unusable(_)));
        let lines = report.lines(Lang::Zh);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(errs(&lines)[0].starts_with("cannot read config /nonexistent/site.toml"));
    }

    #[test]
    fn a_problem_is_located_and_explained_in_chinese() {
        let dir = tempfile::tempdir().unwrap();
        let path = site(
            dir.path(),
            "site.toml",
            "[[buses]]\nname = \"b\"\nport = \"/dev/parking/bus1\"\n\
             [[devices]]\nname = \"io\"\nprofile = \"waveshare-modbus-rtu-io-8ch\"\nlane = \"in\"\n\
             bus = \"b\"\nroles = { loop_a = \"di42\" }\n",
        );
        let report = check(&path, &[]);
        assert!(!report.ok());
        let Verdict::Checked { problems, .. } = &report.files[0].verdict else {
            panic!("{report:?}");
        };
        assert_eq!(problems[0].key, "devices[0].roles.loop_a");
        assert!(problems[0].line.is_some());
        let en = report.lines(Lang::En);
        assert!(en.iter().all(|l| matches!(l, Line::Err(_))), "{en:?}");
        assert!(!errs(&en).iter().any(|l| l.starts_with("Fix each line")));
        // Under Chinese, the exact line stays and an explanation closes the list.
        let zh = report.lines(Lang::Zh);
        assert_eq!(errs(&zh)[0], errs(&en)[0]);
        assert!(zh.len() > en.len(), "{zh:?}");
    }

    #[test]
    fn nodes_are_checked_alone_first_then_together() {
        let dir = tempfile::tempdir().unwrap();
        let a = site(dir.path(), "a.toml", "");
        let b = site(dir.path(), "b.toml", "");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "[platform\n").unwrap();
        // A failing node stops the check before the files are put together.
        let report = check(&a, &[broken.clone(), b.clone()]);
        assert!(!report.ok());
        assert_eq!(report.files.len(), 2);
        assert!(matches!(report.files[1].verdict, Verdict::Invalid(_)));
        assert!(report.together.is_none());
        // Two configs without [cluster] are not one lot: the together check says why.
        let report = check(&a, std::slice::from_ref(&b));
        assert_eq!(report.files.len(), 2);
        assert!(report.files.iter().all(Report::ok));
        let together = report.together.as_ref().unwrap();
        assert_eq!(together.nodes, 2);
        assert!(!together.problems.is_empty());
        assert!(!report.ok());
    }
}
