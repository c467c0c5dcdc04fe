//! What an action leaves for people besides its exit code: when each output
//! is kept ([`OutputWhen`], GitLab's `artifacts:when`), which files are test
//! reports ([`Reports`]), and the summary of those reports an agent sends
//! back ([`TestSummary`]), bounded so that what a repository's tests wrote
//! stays small in the replicated state and on operators' terminals.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most report files one action may list.
pub const MAX_REPORT_FILES: usize = 16;

/// Largest report file an agent reads, in bytes (8 MiB); a larger one is
/// named in the summary's problems and not parsed.
pub const MAX_REPORT_BYTES: u64 = 8 * 1024 * 1024;

/// Most failed tests a summary lists by name (the counts cover all).
pub const MAX_LISTED_FAILURES: usize = 50;

/// Most lines of a failure's text kept in a summary.
pub const MAX_FAILURE_LINES: usize = 10;

/// Longest failure text kept, in bytes.
pub const MAX_FAILURE_TEXT: usize = 2 * 1024;

/// Longest suite or test name kept, in bytes.
pub const MAX_TEST_NAME: usize = 512;

/// Most problems (a missing or unreadable report) a summary lists.
pub const MAX_PROBLEMS: usize = 16;

/// When an action's output is kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OutputWhen {
    /// Only when the action succeeds (the default; a missing path fails it).
    #[default]
    OnSuccess,
    /// Only when the action's commands fail or time out.
    OnFailure,
    /// Whatever the outcome.
    Always,
}

impl OutputWhen {
    /// Every value, in documentation order.
    pub const ALL: [OutputWhen; 3] = [
        OutputWhen::OnSuccess,
        OutputWhen::OnFailure,
        OutputWhen::Always,
    ];

    /// The spelling used in pipeline YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputWhen::OnSuccess => "on_success",
            OutputWhen::OnFailure => "on_failure",
            OutputWhen::Always => "always",
        }
    }

    pub fn parse(text: &str) -> Option<OutputWhen> {
        OutputWhen::ALL.into_iter().find(|w| w.as_str() == text)
    }

    /// Whether the output is kept when the attempt `succeeded` (or failed).
    pub fn keeps(self, succeeded: bool) -> bool {
        match self {
            OutputWhen::OnSuccess => succeeded,
            OutputWhen::OnFailure => !succeeded,
            OutputWhen::Always => true,
        }
    }
}

impl fmt::Display for OutputWhen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The test reports an action writes (`reports: {junit: [...]}`), paths
/// relative to `/workspace`; read on the agent whatever the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reports {
    #[serde(default)]
    pub junit: Vec<String>,
}

impl Reports {
    pub fn is_empty(&self) -> bool {
        self.junit.is_empty()
    }
}

/// What an action's test reports say, summed over its files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestSummary {
    pub total: u64,
    pub passed: u64,
    /// Tests that failed an assertion (`<failure>`).
    pub failed: u64,
    /// Tests that broke otherwise (`<error>`).
    pub errors: u64,
    pub skipped: u64,
    /// The reports' own total time, in milliseconds.
    pub duration_ms: u64,
    /// The failed and broken tests, at most [`MAX_LISTED_FAILURES`], in
    /// report order.
    pub failures: Vec<TestFailure>,
    /// Reports that were missing, too large or did not parse.
    pub problems: Vec<String>,
}

/// One failed or broken test.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestFailure {
    pub suite: String,
    pub name: String,
    /// An `<error>` rather than a `<failure>`.
    pub error: bool,
    /// The first lines of its message and text.
    pub text: String,
}

impl TestFailure {
    /// `SUITE :: NAME`, or the name alone when the report gives no suite:
    /// how a failed test is named to people.
    pub fn title(&self) -> String {
        match self.suite.is_empty() {
            true => self.name.clone(),
            false => format!("{} :: {}", self.suite, self.name),
        }
    }
}

impl TestSummary {
    /// Failed and broken tests together.
    pub fn failing(&self) -> u64 {
        self.failed + self.errors
    }

    /// One line: "661 passed, 2 failed, 1 skipped (663 tests, 12.4 s)".
    pub fn line(&self) -> String {
        let mut parts = vec![format!("{} passed", self.passed)];
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.errors > 0 {
            parts.push(format!("{} errors", self.errors));
        }
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        let seconds = self.duration_ms as f64 / 1000.0;
        format!(
            "{} ({} tests, {seconds:.1} s)",
            parts.join(", "),
            self.total
        )
    }

    /// The summary cut to this module's bounds, with every text free of
    /// control characters but newline and tab: what the coordinator keeps
    /// of one an agent sent, whatever the agent's version.
    pub fn bounded(mut self) -> TestSummary {
        self.failures.truncate(MAX_LISTED_FAILURES);
        for f in &mut self.failures {
            f.suite = clean(&f.suite, MAX_TEST_NAME, 1);
            f.name = clean(&f.name, MAX_TEST_NAME, 1);
            f.text = clean(&f.text, MAX_FAILURE_TEXT, MAX_FAILURE_LINES);
        }
        self.problems.truncate(MAX_PROBLEMS);
        for p in &mut self.problems {
            *p = clean(p, MAX_FAILURE_TEXT, 1);
        }
        self
    }
}

/// `text` without control characters but newline and tab (a terminal
/// escape in a test name must not reach an operator's terminal), at most
/// `lines` lines and `max` bytes, trimmed.
pub fn clean(text: &str, max: usize, lines: usize) -> String {
    let mut out = String::new();
    for line in text.trim().lines().take(lines) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.extend(line.chars().filter(|c| !c.is_control() || *c == '\t'));
    }
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_when_reads_its_spellings_and_keeps_by_outcome() {
        for w in OutputWhen::ALL {
            assert_eq!(OutputWhen::parse(w.as_str()), Some(w));
            assert_eq!(
                serde_json::to_string(&w).ok(),
                Some(format!("\"{}\"", w.as_str()))
            );
        }
        assert_eq!(OutputWhen::parse("never"), None);
        assert!(OutputWhen::OnSuccess.keeps(true) && !OutputWhen::OnSuccess.keeps(false));
        assert!(!OutputWhen::OnFailure.keeps(true) && OutputWhen::OnFailure.keeps(false));
        assert!(OutputWhen::Always.keeps(true) && OutputWhen::Always.keeps(false));
    }

    #[test]
    fn a_summary_reads_in_one_line() {
        let s = TestSummary {
            total: 663,
            passed: 660,
            failed: 2,
            errors: 0,
            skipped: 1,
            duration_ms: 12_400,
            ..Default::default()
        };
        assert_eq!(
            s.line(),
            "660 passed, 2 failed, 1 skipped (663 tests, 12.4 s)"
        );
        assert_eq!(s.failing(), 2);
    }

    #[test]
    fn what_an_agent_sends_is_cut_to_the_bounds() {
        let failure = TestFailure {
            suite: "s\u{1b}[31m".into(),
            name: "n".repeat(2 * MAX_TEST_NAME),
            error: false,
            text: (0..40).map(|i| format!("line {i}\n")).collect(),
        };
        let s = TestSummary {
            failures: vec![failure; MAX_LISTED_FAILURES + 5],
            problems: vec!["p".into(); MAX_PROBLEMS + 1],
            ..Default::default()
        }
        .bounded();
        assert_eq!(s.failures.len(), MAX_LISTED_FAILURES);
        assert_eq!(s.problems.len(), MAX_PROBLEMS);
        let f = &s.failures[0];
        assert_eq!(f.suite, "s[31m", "no escape character survives");
        assert_eq!(f.name.len(), MAX_TEST_NAME);
        assert_eq!(f.text.lines().count(), MAX_FAILURE_LINES);
        assert!(f.text.starts_with("line 0\nline 1"));
    }

    #[test]
    fn cleaning_cuts_on_a_character_boundary() {
        assert_eq!(clean("ééé", 3, 1), "é");
        assert_eq!(clean("  a\r\nb\u{7}c  ", 100, 5), "a\nbc");
    }
}
