//! What the demo shows while it runs (a screen redrawn in place on a terminal, plain
//! lines otherwise) and the summary table at the end. Rendering is pure: a snapshot
//! of the numbers in, text out.

use super::verify::Verdict;
use crate::plate::mask;

/// One lane as the screen shows it.
#[derive(Debug, Clone, Default)]
pub struct LaneLine {
    pub id: String,
    pub direction: &'static str,
    pub transport: &'static str,
    pub loop_a: bool,
    pub loop_b: bool,
    pub gate: &'static str,
    pub passages: u64,
}

/// Everything the live view shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    pub elapsed_s: f64,
    pub vehicles_done: usize,
    pub vehicles_total: Option<usize>,
    pub lanes: Vec<LaneLine>,
    /// Newest first: (time, lane, plate, what).
    pub last_passages: Vec<(String, String, String, &'static str)>,
    pub occupied: i64,
    pub total: i64,
    pub outbox_pending: u64,
    pub accepted_entries: usize,
    pub accepted_exits: usize,
    pub platform_note: String,
    /// The bridge's status page (`http://…/`), when it serves one.
    pub status_url: Option<String>,
    /// Where log lines go while this view owns the terminal.
    pub log_file: Option<String>,
}

fn onoff(b: bool) -> &'static str {
    if b { "●" } else { "○" }
}

impl Screen {
    /// The full-screen view (for a terminal).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let progress = match self.vehicles_total {
            Some(n) => format!("{}/{} vehicles", self.vehicles_done, n),
            None => format!("{} vehicles (Ctrl-C to stop)", self.vehicles_done),
        };
        out.push_str(&format!(
            "parking-bridge demo — simulated lot  {progress}  {:.1} s\n\n",
            self.elapsed_s
        ));
        if let Some(url) = &self.status_url {
            out.push_str(&format!("status page {url}\n"));
        }
        if let Some(log) = &self.log_file {
            out.push_str(&format!("log         {log}\n"));
        }
        if self.status_url.is_some() || self.log_file.is_some() {
            out.push('\n');
        }
        out.push_str("lane        dir    link       A  B  gate     passages\n");
        for l in &self.lanes {
            out.push_str(&format!(
                "{:<11} {:<6} {:<10} {}  {}  {:<8} {}\n",
                l.id,
                l.direction,
                l.transport,
                onoff(l.loop_a),
                onoff(l.loop_b),
                l.gate,
                l.passages
            ));
        }
        out.push_str(&format!(
            "\noccupancy {}/{} (free {})   outbox pending {}   platform accepted {} entries, {} exits   {}\n",
            self.occupied,
            self.total,
            (self.total - self.occupied).max(0),
            self.outbox_pending,
            self.accepted_entries,
            self.accepted_exits,
            self.platform_note
        ));
        out.push_str("\nlast passages\n");
        for (time, lane, plate, what) in self.last_passages.iter().take(8) {
            out.push_str(&format!(
                "  {time}  {lane:<10} {:<10} {what}\n",
                mask(plate)
            ));
        }
        out
    }

    /// One plain log line (when stdout is not a terminal).
    pub fn line(&self) -> String {
        format!(
            "demo t={:.1}s vehicles={} occupied={}/{} outbox_pending={} accepted_entries={} accepted_exits={}",
            self.elapsed_s,
            self.vehicles_done,
            self.occupied,
            self.total,
            self.outbox_pending,
            self.accepted_entries,
            self.accepted_exits
        )
    }
}

/// The end-of-run table: vehicles simulated vs. what the platform accepted, per case.
pub fn summary(verdict: &Verdict) -> String {
    let mut out = String::new();
    out.push_str(
        "case               simulated  expected entries  entries accepted  exits accepted\n",
    );
    let (mut s, mut e, mut a, mut x) = (0, 0, 0, 0);
    for r in &verdict.rows {
        out.push_str(&format!(
            "{:<18} {:>9}  {:>16}  {:>16}  {:>14}\n",
            r.case.name(),
            r.simulated,
            r.expected_entries,
            r.entries,
            r.exits
        ));
        s += r.simulated;
        e += r.expected_entries;
        a += r.entries;
        x += r.exits;
    }
    out.push_str(&format!(
        "{:<18} {s:>9}  {e:>16}  {a:>16}  {x:>14}\n",
        "total"
    ));
    let aside: usize = verdict.rows.iter().map(|r| r.set_aside).sum();
    if aside > 0 {
        out.push_str(&format!(
            "set aside: {aside} vehicles passed while a fault blinded their lane (at most one entry each, exit optional; not in the rows above)\n"
        ));
    }
    if verdict.ok() {
        out.push_str("\nPASS: the platform's record matches the simulation exactly\n");
    } else {
        out.push_str("\nFAIL: the platform's record does not match the simulation:\n");
        for p in &verdict.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::traffic::Case;
    use crate::sim::verify::CaseRow;

    #[test]
    fn screen_masks_plates_and_shows_counts() {
        let s = Screen {
            vehicles_total: Some(30),
            vehicles_done: 3,
            occupied: 2,
            total: 100,
            last_passages: vec![(
                "12:00:01".into(),
                "entry-1".into(),
                "闽A12345".into(),
                "entry",
            )],
            ..Screen::default()
        };
        let text = s.render();
        assert_shows(
            &text,
            &["闽A1***5", "3/30 vehicles", "occupancy 2/100 (free 98)"],
        );
        assert!(!text.contains("闽A12345"), "{text}");
        assert!(!text.contains("status page"), "{text}");
        let with_page = Screen {
            status_url: Some("http://127.0.0.1:4321/".into()),
            log_file: Some("/tmp/d/demo.log".into()),
            ..s
        }
        .render();
        assert_shows(
            &with_page,
            &[
                "status page http://127.0.0.1:4321/",
                "log         /tmp/d/demo.log",
            ],
        );
    }

    fn assert_shows(text: &str, needles: &[&str]) {
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn summary_says_pass_or_lists_problems() {
        let rows = vec![CaseRow {
            case: Case::Normal,
            simulated: 2,
            expected_entries: 2,
            entries: 2,
            exits: 2,
            set_aside: 0,
        }];
        let ok = summary(&Verdict {
            rows: rows.clone(),
            problems: vec![],
        });
        assert!(ok.contains("PASS"), "{ok}");
        let bad = summary(&Verdict {
            rows,
            problems: vec!["plate x: 0 accepted entries, expected 1".into()],
        });
        assert!(bad.contains("FAIL") && bad.contains("expected 1"), "{bad}");
    }
}
