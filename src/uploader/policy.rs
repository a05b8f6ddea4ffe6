//! What to do with an answer, and when to try again. Pure: time and randomness come in
//! as arguments, so every rule is tested without sleeping.

use crate::platform::{Answer, ClientError, Verdict};
use crate::report::ReportKind;
use crate::store::Outcome;
use crate::time::Timestamp;

/// Retry timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure, ms.
    pub base_ms: i64,
    /// Largest delay for transient failures, ms.
    pub cap_ms: i64,
    /// Fixed delay for alarms (configuration faults): slow, but never giving up.
    pub alarm_ms: i64,
    /// Consecutive failures (across stays) after which the platform counts as down and
    /// everything waits, instead of trying each queued report in turn.
    pub trouble_after: u32,
    /// Tries of a refused report before it is held for an operator.
    pub refused_tries: u32,
    /// Delay after the first refusal, ms; doubles with each refusal.
    pub refused_first_ms: i64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 500,
            cap_ms: 60_000,
            alarm_ms: 300_000,
            trouble_after: 3,
            refused_tries: 5,
            refused_first_ms: 240_000,
        }
    }
}

impl Backoff {
    /// Delay before attempt number `failures + 1`: exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that many reports do not retry in lockstep.
    /// `unit` is a random number in [0, 1).
    pub fn delay_ms(&self, failures: u32, unit: f64) -> i64 {
        let exp = failures.saturating_sub(1).min(30);
        let full = self.base_ms.saturating_mul(1i64 << exp).min(self.cap_ms);
        let unit = unit.clamp(0.0, 1.0);
        full / 2 + ((full / 2) as f64 * unit) as i64
    }

    /// Delay after the `refusals`-th refusal of a report: doubling from
    /// `refused_first_ms`, never more than [`MAX_REFUSED_DELAY_MS`].
    pub fn refused_delay_ms(&self, refusals: u32) -> i64 {
        let exp = refusals.saturating_sub(1).min(30);
        self.refused_first_ms
            .max(1)
            .saturating_mul(1i64 << exp)
            .min(MAX_REFUSED_DELAY_MS)
    }
}

/// The outbox treats a due time more than an hour ahead as a clock that went back, so
/// no retry is scheduled further out than this.
pub const MAX_REFUSED_DELAY_MS: i64 = 3_540_000;

/// What the uploader learns from one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// A failure that says the platform (not this report) is in trouble.
    pub platform_trouble: bool,
    /// A configuration fault an operator must fix (error log, metric, status).
    pub alarm: Option<String>,
    /// The platform answered (delivered, refused, a fault it named): it is reachable.
    pub answered: bool,
}

/// Longest platform-wide pause (the alarm pause is one minute).
pub const MAX_PAUSE_MS: i64 = 10 * 60 * 1000;

/// Platform-wide state the uploader keeps between attempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throttle {
    pub consecutive_failures: u32,
    /// Pauses in a row without a success in between; the next pause doubles.
    pub pauses: u32,
    /// Nothing is sent before this.
    pub paused_until: Option<Timestamp>,
}

impl Throttle {
    /// A pause never lasts longer than [`MAX_PAUSE_MS`]; a longer one means the wall
    /// clock went back, and is over.
    pub fn may_send(&self, now: Timestamp) -> bool {
        self.paused_until
            .is_none_or(|p| now >= p || p.0 - now.0 > MAX_PAUSE_MS)
    }

    /// While the platform is in trouble only one report probes it; otherwise `max`.
    pub fn in_flight_limit(&self, policy: &Backoff, max: usize) -> usize {
        if self.consecutive_failures >= policy.trouble_after {
            1
        } else {
            max
        }
    }

    /// Notes an attempt's result; returns when the failed report should be retried if
    /// the whole platform is paused (so it goes first when the platform is back).
    /// Failures that arrive during a pause (requests already in flight when it began)
    /// do not lengthen it: the pause grows per probe, not per failed request.
    pub fn note(
        &mut self,
        d: &Decision,
        policy: &Backoff,
        now: Timestamp,
        unit: f64,
    ) -> Option<Timestamp> {
        if let Some(_alarm) = &d.alarm {
            let until = now.plus_millis(policy.alarm_ms.min(60_000));
            self.paused_until = Some(until);
            return Some(until);
        }
        if !d.platform_trouble {
            if d.answered {
                self.consecutive_failures = 0;
                self.pauses = 0;
            }
            return None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < policy.trouble_after {
            return None;
        }
        if let Some(p) = self.paused_until
            && p > now
            && p.0 - now.0 <= MAX_PAUSE_MS
        {
            return Some(p);
        }
        self.pauses = self.pauses.saturating_add(1);
        let until = now.plus_millis(policy.delay_ms(self.pauses, unit));
        self.paused_until = Some(until);
        Some(until)
    }
}

/// Classifies one attempt. `failures_before` counts earlier failed attempts of the row,
/// `refusals_before` its earlier refusals.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    id: i64,
    kind: ReportKind,
    failures_before: u32,
    refusals_before: u32,
    result: &Result<Answer, ClientError>,
    policy: &Backoff,
    now: Timestamp,
    unit: f64,
) -> Decision {
    let retry_later = |error: String| Outcome::Retry {
        id,
        due_at: now.plus_millis(policy.delay_ms(failures_before + 1, unit)),
        error,
    };
    let answered = |outcome: Outcome| Decision {
        outcome,
        platform_trouble: false,
        alarm: None,
        answered: true,
    };
    // The platform (or the link to it) is in trouble: retry with backoff.
    let trouble = |error: String| Decision {
        outcome: retry_later(error),
        platform_trouble: true,
        alarm: None,
        answered: false,
    };
    // A fault only a person can fix: an alarm, retried slowly.
    let alarm = |error: String, answered: bool| Decision {
        outcome: Outcome::Retry {
            id,
            due_at: now.plus_millis(policy.alarm_ms),
            error: error.clone(),
        },
        platform_trouble: false,
        alarm: Some(error),
        answered,
    };
    match result {
        Ok(answer) => match &answer.verdict {
            Verdict::Done | Verdict::AlreadyDone => answered(Outcome::Delivered {
                id,
                result_code: answer.result_code.clone(),
                inner_oder_no: answer.inner_oder_no.clone(),
                sign_level: answer.sign_level.clone(),
                sign_time: answer.sign_time.clone(),
            }),
            Verdict::NeedsEntryFirst if kind != ReportKind::Entry => {
                answered(Outcome::NeedsEntryFirst {
                    id,
                    due_at: now.plus_millis(policy.delay_ms(failures_before + 1, unit)),
                    error: answer
                        .result_code
                        .clone()
                        .unwrap_or_else(|| "ORDER_NOT_EXIST".into()),
                })
            }
            Verdict::NeedsEntryFirst => {
                // An entry cannot need itself first: the platform is confused; retry.
                answered(retry_later(format!(
                    "entry answered {}",
                    answer.result_code.as_deref().unwrap_or("?")
                )))
            }
            Verdict::ConfigFault { code, message } => alarm(format!("{code}: {message}"), true),
            Verdict::Refused { code, message } => {
                let refusals = refusals_before.saturating_add(1);
                let refusal = crate::store::Refusal {
                    code: code.clone(),
                    message: message.clone(),
                };
                if refusals >= policy.refused_tries.max(1) {
                    answered(Outcome::Held { id, refusal })
                } else {
                    answered(Outcome::Refused {
                        id,
                        due_at: now.plus_millis(policy.refused_delay_ms(refusals)),
                        refusal,
                    })
                }
            }
            Verdict::Retry { why } => trouble(why.clone()),
        },
        Err(e) if e.is_retriable() => trouble(e.to_string()),
        Err(e) => alarm(format!("{e} ({})", e.hint()), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_000_000);

    fn answer(verdict: Verdict) -> Result<Answer, ClientError> {
        Ok(Answer {
            verdict,
            result_code: None,
            result_msg: None,
            inner_oder_no: Some("I1".into()),
            sign_level: None,
            sign_time: None,
            unexpected_code: false,
        })
    }

    /// Decides on a platform answer for a first attempt with the default backoff at
    /// `NOW`, so each test names only what it varies: the id, kind, verdict and jitter.
    fn decide_answer(id: i64, kind: ReportKind, verdict: Verdict, jitter: f64) -> Decision {
        decide(
            id,
            kind,
            0,
            0,
            &answer(verdict),
            &Backoff::default(),
            NOW,
            jitter,
        )
    }

    /// A first attempt at entry 1 answered `HTTP 503`: platform trouble.
    fn failed_with_503() -> Decision {
        let why = "HTTP 503".into();
        decide_answer(1, ReportKind::Entry, Verdict::Retry { why }, 0.0)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let b = Backoff::default();
        assert_eq!(b.delay_ms(1, 0.0), 250);
        assert_eq!(b.delay_ms(1, 0.999), 499);
        assert_eq!(b.delay_ms(2, 0.0), 500);
        assert_eq!(b.delay_ms(3, 0.0), 1_000);
        assert_eq!(b.delay_ms(20, 0.0), 30_000);
        assert!(b.delay_ms(u32::MAX, 1.0) <= 60_000);
    }

    #[test]
    fn duplicate_counts_as_delivered_and_keeps_inner_order_no() {
        let d = decide_answer(7, ReportKind::Entry, Verdict::AlreadyDone, 0.5);
        match d.outcome {
            Outcome::Delivered {
                id, inner_oder_no, ..
            } => assert_eq!((id, inner_oder_no.as_deref()), (7, Some("I1"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_order_on_exit_requeues_the_entry() {
        let d = decide_answer(7, ReportKind::Exit, Verdict::NeedsEntryFirst, 0.0);
        assert!(matches!(d.outcome, Outcome::NeedsEntryFirst { id: 7, .. }));
        let d = decide_answer(7, ReportKind::Entry, Verdict::NeedsEntryFirst, 0.0);
        assert!(matches!(d.outcome, Outcome::Retry { .. }));
    }

    #[test]
    fn config_fault_is_an_alarm_retried_slowly() {
        let v = Verdict::ConfigFault {
            code: "PARKING_LOT_NOT_EXIST".into(),
            message: "no lot".into(),
        };
        let d = decide_answer(1, ReportKind::Entry, v, 0.0);
        assert!(
            d.alarm
                .as_deref()
                .unwrap()
                .contains("PARKING_LOT_NOT_EXIST")
        );
        assert_eq!(
            d.outcome,
            Outcome::Retry {
                id: 1,
                due_at: NOW.plus_millis(300_000),
                error: d.alarm.clone().unwrap()
            }
        );
    }

    #[test]
    fn transport_errors_retry_with_growing_delay() {
        let err: Result<Answer, ClientError> = Err(ClientError::Refused {
            url: "http://x".into(),
            detail: "refused".into(),
        });
        let after = |attempts| {
            let b = Backoff::default();
            decide(1, ReportKind::Exit, attempts, 0, &err, &b, NOW, 0.0)
        };
        let (first, fifth) = (after(0), after(4));
        assert!(first.platform_trouble);
        let due = |d: &Decision| match d.outcome {
            Outcome::Retry { due_at, .. } => due_at.0 - NOW.0,
            _ => panic!(),
        };
        assert!(due(&fifth) > due(&first));
    }

    #[test]
    fn platform_pauses_after_consecutive_failures_and_resumes_on_success() {
        let b = Backoff::default();
        let mut t = Throttle::default();
        let fail = failed_with_503();
        assert_eq!(t.note(&fail, &b, NOW, 0.0), None);
        assert_eq!(t.note(&fail, &b, NOW, 0.0), None);
        let until = t.note(&fail, &b, NOW, 0.0).expect("paused after 3");
        assert!(!t.may_send(NOW));
        assert!(t.may_send(until));
        assert_eq!(t.in_flight_limit(&b, 4), 1, "one probe while in trouble");
        assert_eq!(
            t.note(&fail, &b, NOW, 0.0),
            Some(until),
            "a failure during the pause does not lengthen it"
        );
        let next = t.note(&fail, &b, until, 0.0).unwrap();
        assert_eq!(
            next.0 - until.0,
            2 * (until.0 - NOW.0),
            "the next probe's failure doubles it"
        );
        assert!(
            t.may_send(Timestamp(NOW.0 - 86_400_000)),
            "clock went back a day: pause over"
        );
        let ok = decide(
            2,
            ReportKind::Entry,
            0,
            0,
            &answer(Verdict::Done),
            &b,
            until,
            0.0,
        );
        t.note(&ok, &b, until, 0.0);
        assert_eq!(t.consecutive_failures, 0);
        assert_eq!(t.pauses, 0);
        assert_eq!(t.in_flight_limit(&b, 4), 4);
    }

    fn refused(code: Option<&str>) -> Result<Answer, ClientError> {
        answer(Verdict::Refused {
            code: code.map(str::to_string),
            message: "event 缺失".into(),
        })
    }

    #[test]
    fn a_refusal_is_retried_with_growing_delay_then_held() {
        let b = Backoff::default();
        // Refused after `before` earlier refusals (and nine attempts in all).
        let refused_again = |before, code| {
            decide(
                3,
                ReportKind::EntrySnapshot,
                9,
                before,
                &refused(code),
                &b,
                NOW,
                0.5,
            )
        };
        let mut dues = Vec::new();
        for before in 0..4 {
            let d = refused_again(before, None);
            assert!(!d.platform_trouble, "a refusal is not platform trouble");
            assert!(d.answered);
            assert_eq!(d.alarm, None);
            match d.outcome {
                Outcome::Refused {
                    id: 3,
                    due_at,
                    refusal,
                } => {
                    assert_eq!(refusal.code, None);
                    assert_eq!(refusal.message, "event 缺失");
                    dues.push(due_at.0 - NOW.0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dues, vec![240_000, 480_000, 960_000, 1_920_000]);
        assert!(
            dues.iter().sum::<i64>() <= 3_600_000,
            "5 tries in about an hour"
        );
        let d = refused_again(4, Some("X"));
        match d.outcome {
            Outcome::Held { id: 3, refusal } => assert_eq!(refusal.code.as_deref(), Some("X")),
            other => panic!("{other:?}"),
        }
        assert!(b.refused_delay_ms(40) <= MAX_REFUSED_DELAY_MS);
    }

    #[test]
    fn refusals_never_pause_the_platform_and_end_a_trouble_streak() {
        let b = Backoff::default();
        let mut t = Throttle::default();
        let fail = failed_with_503();
        t.note(&fail, &b, NOW, 0.0);
        t.note(&fail, &b, NOW, 0.0);
        for _ in 0..100 {
            let d = decide(2, ReportKind::Entry, 0, 0, &refused(None), &b, NOW, 0.0);
            assert_eq!(t.note(&d, &b, NOW, 0.0), None);
        }
        assert_eq!(t.consecutive_failures, 0);
        assert!(t.may_send(NOW));
        assert_eq!(t.in_flight_limit(&b, 4), 4);
    }
}
