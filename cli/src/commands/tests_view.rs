//! How a test summary reads on a terminal, in `ferry status` and `ferry
//! exec` alike: the counts on one line, then each failed test with the
//! first lines of its failure, failures first as people look for them.

use ferry_pipeline::reports::TestSummary;

/// Most lines of one failure's text shown under its name.
const SHOWN_LINES: usize = 3;

/// The lines to print for `tests` (without indentation).
pub fn lines(tests: &TestSummary) -> Vec<String> {
    let mut out = vec![format!("tests: {}", tests.line())];
    for f in &tests.failures {
        let what = if f.error { "error" } else { "failed" };
        out.push(format!("  {what}: {}", f.title()));
        out.extend(
            f.text
                .lines()
                .take(SHOWN_LINES)
                .map(|l| format!("      {l}")),
        );
    }
    let unlisted = tests.failing().saturating_sub(tests.failures.len() as u64);
    if unlisted > 0 {
        out.push(format!("  ... and {unlisted} more failing tests"));
    }
    out.extend(tests.problems.iter().map(|p| format!("  problem: {p}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_pipeline::reports::TestFailure;

    #[test]
    fn failures_are_listed_under_the_counts() {
        let t = TestSummary {
            total: 120,
            passed: 100,
            failed: 20,
            duration_ms: 3_000,
            failures: vec![TestFailure {
                suite: "unit".into(),
                name: "adds".into(),
                error: false,
                text: "left: 1\nright: 2\nat src/lib.rs:3\nmore".into(),
            }],
            problems: vec!["report `x.xml`: does not exist in /workspace".into()],
            ..Default::default()
        };
        assert_eq!(
            lines(&t),
            vec![
                "tests: 100 passed, 20 failed (120 tests, 3.0 s)",
                "  failed: unit :: adds",
                "      left: 1",
                "      right: 2",
                "      at src/lib.rs:3",
                "  ... and 19 more failing tests",
                "  problem: report `x.xml`: does not exist in /workspace",
            ]
        );
    }
}
