//! JUnit XML test reports read into a [`TestSummary`]: what the repository's
//! tests wrote is data from outside, so a report is bounded in size before
//! it is read and in nesting depth before the parser (which recurses into
//! nested suites) sees it; counts come from the test cases themselves, not
//! from the attributes a report claims.

use ferry_pipeline::reports::{
    MAX_FAILURE_LINES, MAX_FAILURE_TEXT, MAX_LISTED_FAILURES, MAX_PROBLEMS, MAX_REPORT_BYTES,
    MAX_TEST_NAME, TestFailure, TestSummary, clean,
};
use junit_parser::{TestStatus, TestSuite};
use quick_xml::events::Event;
use thiserror::Error;

/// Deepest element nesting a report may have (suites in suites, cases,
/// failures): real reports use fewer than ten.
pub const MAX_XML_DEPTH: usize = 64;

/// Why one report was not read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("is larger than {} MiB", MAX_REPORT_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("nests elements deeper than {MAX_XML_DEPTH}")]
    TooDeep,
    #[error("is not JUnit XML: {0}")]
    Invalid(String),
}

/// Adds report `xml` to `summary`.
pub fn add_report(summary: &mut TestSummary, xml: &[u8]) -> Result<(), ReportError> {
    if xml.len() as u64 > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge);
    }
    check_depth(xml)?;
    let suites = junit_parser::from_reader(xml)
        .map_err(|e| ReportError::Invalid(clean(&e.to_string(), 200, 1)))?;
    let time = if suites.time > 0.0 {
        suites.time
    } else {
        suites.suites.iter().map(|s| s.time).sum()
    };
    summary.duration_ms += seconds_to_ms(time);
    for suite in &suites.suites {
        add_suite(summary, suite);
    }
    Ok(())
}

/// Records that a report could not be read (at most [`MAX_PROBLEMS`]).
pub fn add_problem(summary: &mut TestSummary, problem: String) {
    if summary.problems.len() < MAX_PROBLEMS {
        summary.problems.push(clean(&problem, MAX_FAILURE_TEXT, 1));
    }
}

fn add_suite(summary: &mut TestSummary, suite: &TestSuite) {
    for case in &suite.cases {
        summary.total += 1;
        let (error, failure) = match &case.status {
            TestStatus::Success => {
                summary.passed += 1;
                continue;
            }
            TestStatus::Skipped(_) => {
                summary.skipped += 1;
                continue;
            }
            TestStatus::Failure(f) => {
                summary.failed += 1;
                (false, (&f.message, &f.text))
            }
            TestStatus::Error(e) => {
                summary.errors += 1;
                (true, (&e.message, &e.text))
            }
        };
        if summary.failures.len() >= MAX_LISTED_FAILURES {
            continue;
        }
        let suite_name = match (&suite.name, &case.classname) {
            (name, _) if !name.is_empty() => name.as_str(),
            (_, Some(class)) => class.as_str(),
            _ => "",
        };
        let (message, text) = failure;
        let body = match (message.trim().is_empty(), text.trim().is_empty()) {
            (false, false) => format!("{}\n{}", message.trim(), text.trim()),
            (false, true) => message.clone(),
            _ => text.clone(),
        };
        summary.failures.push(TestFailure {
            suite: clean(suite_name, MAX_TEST_NAME, 1),
            // `name` is prefixed with the class; the report's own is kept.
            name: clean(&case.original_name, MAX_TEST_NAME, 1),
            error,
            text: clean(&body, MAX_FAILURE_TEXT, MAX_FAILURE_LINES),
        });
    }
    for inner in &suite.suites {
        add_suite(summary, inner);
    }
}

fn seconds_to_ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// Refuses a document nested deeper than [`MAX_XML_DEPTH`], reading it as a
/// stream (no tree, no recursion).
fn check_depth(xml: &[u8]) -> Result<(), ReportError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > MAX_XML_DEPTH {
                    return Err(ReportError::TooDeep);
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(ReportError::Invalid(clean(&e.to_string(), 200, 1))),
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites time="1.5">
  <testsuite name="unit" tests="4" failures="1" errors="1" skipped="1">
    <testcase classname="unit" name="adds" time="0.1"/>
    <testcase classname="unit" name="subtracts" time="0.2">
      <failure message="assertion failed: 1 == 2" type="assert">left: 1
right: 2</failure>
    </testcase>
    <testcase classname="unit" name="divides"><error message="panicked"/></testcase>
    <testcase classname="unit" name="later"><skipped/></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn counts_come_from_the_cases_with_each_failure_named() {
        let mut s = TestSummary::default();
        assert_eq!(add_report(&mut s, REPORT.as_bytes()), Ok(()));
        assert_eq!(
            (s.total, s.passed, s.failed, s.errors, s.skipped),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(s.duration_ms, 1_500);
        assert_eq!(s.failures.len(), 2);
        assert_eq!(s.failures[0].suite, "unit");
        assert_eq!(s.failures[0].name, "subtracts");
        assert!(!s.failures[0].error);
        assert_eq!(
            s.failures[0].text,
            "assertion failed: 1 == 2\nleft: 1\nright: 2"
        );
        assert!(s.failures[1].error);
        assert_eq!(s.failures[1].text, "panicked");
        // A second report adds to the first.
        assert_eq!(add_report(&mut s, REPORT.as_bytes()), Ok(()));
        assert_eq!((s.total, s.failing()), (8, 4));
    }

    #[test]
    fn a_lone_suite_and_nested_suites_are_read() {
        let xml = r#"<testsuite name="outer" time="2"><testsuite name="inner">
            <testcase name="a"/><testcase name="b"><failure>boom</failure></testcase>
            </testsuite><testcase name="c"/></testsuite>"#;
        let mut s = TestSummary::default();
        assert_eq!(add_report(&mut s, xml.as_bytes()), Ok(()));
        assert_eq!((s.total, s.passed, s.failed), (3, 2, 1));
        assert_eq!(s.failures[0].suite, "inner");
        assert_eq!(s.duration_ms, 2_000);
    }

    #[test]
    fn hostile_reports_are_refused_before_parsing() {
        let mut s = TestSummary::default();
        let deep = format!(
            "{}{}",
            "<testsuite>".repeat(100_000),
            "</testsuite>".repeat(100_000)
        );
        assert_eq!(
            add_report(&mut s, deep.as_bytes()),
            Err(ReportError::TooDeep)
        );
        let big = vec![b' '; MAX_REPORT_BYTES as usize + 1];
        assert_eq!(add_report(&mut s, &big), Err(ReportError::TooLarge));
        assert!(matches!(
            add_report(&mut s, b"<testsuite><testcase></testsuite>"),
            Err(ReportError::Invalid(_))
        ));
        assert_eq!(s, TestSummary::default(), "nothing was added");
    }

    #[test]
    fn no_more_failures_are_listed_than_the_bound() {
        let cases: String = (0..MAX_LISTED_FAILURES + 10)
            .map(|i| format!("<testcase name=\"t{i}\"><failure>x</failure></testcase>"))
            .collect();
        let mut s = TestSummary::default();
        let xml = format!("<testsuite name=\"s\">{cases}</testsuite>");
        assert_eq!(add_report(&mut s, xml.as_bytes()), Ok(()));
        assert_eq!(s.failed, (MAX_LISTED_FAILURES + 10) as u64);
        assert_eq!(s.failures.len(), MAX_LISTED_FAILURES);
    }

    #[test]
    fn an_external_entity_is_not_fetched() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>
            <testsuite name="s"><testcase name="&x;"/></testsuite>"#;
        let mut s = TestSummary::default();
        let _ = add_report(&mut s, xml.as_bytes());
        assert!(!format!("{s:?}").contains("root:"));
    }
}
