//! Fuzzes the agent's test report reader (`engine/src/junit.rs`, compiled
//! in as a module): arbitrary bytes as a JUnit report. It must return, never
//! panic or overflow the stack (deep nesting is refused before the parser
//! recurses), and what it adds must stay within the summary's bounds.
#![no_main]

#[path = "../../engine/src/junit.rs"]
#[allow(dead_code)]
mod junit;

use ferry_pipeline::reports::{MAX_FAILURE_TEXT, MAX_LISTED_FAILURES, MAX_TEST_NAME, TestSummary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut summary = TestSummary::default();
    let added = junit::add_report(&mut summary, data);
    if added.is_err() {
        assert_eq!(
            summary,
            TestSummary::default(),
            "a refused report added nothing"
        );
        return;
    }
    assert_eq!(
        summary.total,
        summary.passed + summary.failed + summary.errors + summary.skipped,
        "every case is counted once"
    );
    assert!(summary.failures.len() <= MAX_LISTED_FAILURES);
    for f in &summary.failures {
        assert!(f.name.len() <= MAX_TEST_NAME && f.suite.len() <= MAX_TEST_NAME);
        assert!(f.text.len() <= MAX_FAILURE_TEXT);
        assert!(
            !f.text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
    }
});
