//! Write-error handling shared by every output (each log file, the event
//! stream, extraction, ACE transcripts): a full disk or another write
//! error stops only the output it hits, is reported once, and what cannot
//! be written is counted; the output tries again after a back-off and
//! reports once that it writes again, with what was lost meanwhile.
//!
//! [`OutputHealth`] is the state machine (no I/O): the output asks
//! [`OutputHealth::due`] before trying, and tells it whether the try
//! [`failed`](OutputHealth::failed) or [`succeeded`](OutputHealth::succeeded);
//! the transitions come back as [`OutputNotice`]s for the owner's caller
//! to log.

use std::time::{Duration, Instant};

/// Default back-off between two tries of a failing output. The first try
/// after a failure is not delayed (a transient error costs nothing); every
/// later one waits this long.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Notices kept between two [`OutputHealth::take_notices`] calls; more are
/// counted in [`OutputHealth::notices_suppressed`], never kept.
const MAX_NOTICES: usize = 16;

/// A change of an output's state, to be logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputNotice {
    /// The output started failing. `error` names the file and the OS
    /// error.
    Failed { output: String, error: String },
    /// The output writes again: `lost` records (rows, events, messages,
    /// sessions) could not be written during the `after` it failed.
    Resumed {
        output: String,
        lost: u64,
        after: Duration,
    },
}

impl std::fmt::Display for OutputNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputNotice::Failed { output, error } => write!(
                f,
                "writing {output} failed: {error}; its records are counted as lost until it can be written again (retried every {} s)",
                RETRY_INTERVAL.as_secs()
            ),
            OutputNotice::Resumed {
                output,
                lost,
                after,
            } => write!(
                f,
                "writing {output} resumed after {:.1} s; {lost} records lost meanwhile",
                after.as_secs_f64()
            ),
        }
    }
}

/// What one output wrote and lost (for the run summary and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputReport {
    /// Short label: `smtp.log`, `events`, `extract`, `ace`.
    pub output: String,
    /// The file or directory, for messages.
    pub path: String,
    /// Records written: log rows, events, extracted messages, ACE sessions.
    pub written: u64,
    /// Records lost to write errors.
    pub lost: u64,
    /// Times the output started failing.
    pub failures: u64,
    /// The first write error (naming the file).
    pub first_error: Option<String>,
    /// Failing at the time of the report (at the end of a run: the last
    /// try failed too).
    pub failing: bool,
}

struct Failing {
    since: Instant,
    next_try: Instant,
    /// `lost` when the failure began.
    lost_before: u64,
}

/// One output's write-error state: healthy, or failing since some time
/// with a next try due; records lost, failures, the first error, and the
/// notices not yet taken.
pub struct OutputHealth {
    name: String,
    retry: Duration,
    failing: Option<Failing>,
    lost: u64,
    failures: u64,
    first_error: Option<String>,
    notices: Vec<OutputNotice>,
    notices_suppressed: u64,
}

impl OutputHealth {
    /// A healthy output named `name` (its path, for notices).
    pub fn new(name: impl Into<String>) -> Self {
        OutputHealth {
            name: name.into(),
            retry: RETRY_INTERVAL,
            failing: None,
            lost: 0,
            failures: 0,
            first_error: None,
            notices: Vec::new(),
            notices_suppressed: 0,
        }
    }

    /// Changes the back-off between tries (tests); a try already
    /// scheduled is due at most `d` from now.
    pub fn set_retry_interval(&mut self, d: Duration) {
        self.retry = d;
        if let Some(f) = self.failing.as_mut() {
            f.next_try = f.next_try.min(Instant::now() + d);
        }
    }

    /// The name notices use.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// Whether to try writing now: always when healthy; when failing, once
    /// the back-off has passed.
    pub fn due(&self, now: Instant) -> bool {
        self.failing.as_ref().is_none_or(|f| now >= f.next_try)
    }

    /// [`due`](Self::due) without reading the clock when healthy.
    pub fn due_now(&self) -> bool {
        self.failing.is_none() || self.due(Instant::now())
    }

    /// A try failed with `error`. Starting a failure it queues a
    /// [`OutputNotice::Failed`] and returns true (the caller may report
    /// the error once); the next try is allowed at once. A try that fails
    /// again while failing returns false and backs off.
    pub fn failed(&mut self, now: Instant, error: &std::io::Error) -> bool {
        match &mut self.failing {
            Some(f) => {
                f.next_try = now + self.retry;
                false
            }
            None => {
                self.failing = Some(Failing {
                    since: now,
                    next_try: now,
                    lost_before: self.lost,
                });
                self.failures += 1;
                let error = error.to_string();
                if self.first_error.is_none() {
                    self.first_error = Some(error.clone());
                }
                self.notice(OutputNotice::Failed {
                    output: self.name.clone(),
                    error,
                });
                true
            }
        }
    }

    /// A write went through. Ending a failure it queues an
    /// [`OutputNotice::Resumed`] and returns true.
    pub fn succeeded(&mut self, now: Instant) -> bool {
        match self.failing.take() {
            Some(f) => {
                self.notice(OutputNotice::Resumed {
                    output: self.name.clone(),
                    lost: self.lost.saturating_sub(f.lost_before),
                    after: now.saturating_duration_since(f.since),
                });
                true
            }
            None => false,
        }
    }

    /// `n` records could not be written.
    pub fn lose(&mut self, n: u64) {
        self.lost += n;
    }

    /// `n` records counted lost turned out not to be (they would not have
    /// been written anyway).
    pub fn forgive(&mut self, n: u64) {
        self.lost = self.lost.saturating_sub(n);
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The report, given what the output wrote.
    pub fn report(&self, output: &str, written: u64) -> OutputReport {
        OutputReport {
            output: output.to_string(),
            path: self.name.clone(),
            written,
            lost: self.lost,
            failures: self.failures,
            first_error: self.first_error.clone(),
            failing: self.failing.is_some(),
        }
    }

    fn notice(&mut self, n: OutputNotice) {
        if self.notices.len() < MAX_NOTICES {
            self.notices.push(n);
        } else {
            self.notices_suppressed += 1;
        }
    }

    /// Whether notices are waiting (cheap).
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// The notices since the last call, oldest first.
    pub fn take_notices(&mut self, into: &mut Vec<OutputNotice>) {
        into.append(&mut self.notices);
    }

    /// Notices dropped because too many were waiting.
    pub fn notices_suppressed(&self) -> u64 {
        self.notices_suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }

    #[test]
    fn fails_once_backs_off_and_resumes_with_the_losses() {
        let mut h = OutputHealth::new("/out/smtp.log");
        let t0 = Instant::now();
        assert!(h.due(t0) && !h.is_failing());
        assert!(!h.succeeded(t0), "healthy: nothing to report");
        // The first failure is reported; one immediate try is allowed.
        assert!(h.failed(t0, &enospc()));
        h.lose(3);
        assert!(h.due(t0));
        // Failing again: not reported again, and a back-off.
        assert!(!h.failed(t0, &enospc()));
        h.lose(2);
        assert!(!h.due(t0 + Duration::from_millis(999)));
        assert!(h.due(t0 + RETRY_INTERVAL));
        assert!(!h.failed(t0 + RETRY_INTERVAL, &enospc()));
        assert!(!h.due(t0 + RETRY_INTERVAL + Duration::from_millis(10)));
        assert!(h.succeeded(t0 + Duration::from_secs(3)));
        assert!(!h.is_failing() && h.due(t0));
        let mut n = Vec::new();
        h.take_notices(&mut n);
        assert_eq!(n.len(), 2);
        assert!(
            matches!(&n[0], OutputNotice::Failed { output, error }
                if output == "/out/smtp.log" && error.contains("No space left")),
            "{n:?}"
        );
        assert_eq!(
            n[1],
            OutputNotice::Resumed {
                output: "/out/smtp.log".into(),
                lost: 5,
                after: Duration::from_secs(3)
            }
        );
        assert!(n[1].to_string().contains("5 records lost"), "{}", n[1]);
        // A second outage: counted again, its own losses reported.
        h.failed(t0 + Duration::from_secs(10), &enospc());
        h.lose(1);
        h.succeeded(t0 + Duration::from_secs(11));
        let r = h.report("smtp.log", 40);
        assert_eq!(
            (r.written, r.lost, r.failures, r.failing),
            (40, 6, 2, false)
        );
        assert!(r.first_error.unwrap().contains("No space left"));
        let mut n = Vec::new();
        h.take_notices(&mut n);
        assert!(matches!(n[1], OutputNotice::Resumed { lost: 1, .. }));
    }

    #[test]
    fn notices_are_bounded() {
        let mut h = OutputHealth::new("x");
        for i in 0..100 {
            let t = Instant::now() + Duration::from_secs(i);
            h.failed(t, &enospc());
            h.succeeded(t);
        }
        let mut n = Vec::new();
        h.take_notices(&mut n);
        assert_eq!(n.len(), MAX_NOTICES);
        assert_eq!(h.notices_suppressed(), 200 - MAX_NOTICES as u64);
        assert_eq!(h.failures(), 100);
    }
}
