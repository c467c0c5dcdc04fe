//! Test summaries as the public API shows them (`ferry.v1.TestSummary`,
//! with a Duration); the agent's form is in `action`.

use ferry_pipeline::reports::{TestFailure, TestSummary};

impl From<TestSummary> for crate::TestSummary {
    fn from(t: TestSummary) -> crate::TestSummary {
        crate::TestSummary {
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            errors: t.errors,
            skipped: t.skipped,
            duration: Some(prost_types::Duration {
                seconds: (t.duration_ms / 1000).min(i64::MAX as u64) as i64,
                nanos: ((t.duration_ms % 1000) * 1_000_000) as i32,
            }),
            failures: t
                .failures
                .into_iter()
                .map(|f| crate::TestFailure {
                    suite: f.suite,
                    name: f.name,
                    error: f.error,
                    text: f.text,
                })
                .collect(),
            problems: t.problems,
        }
    }
}

/// What a client reads: bounded like the agent's form (a server of another
/// version, or a hostile one, sends what it likes).
impl From<crate::TestSummary> for TestSummary {
    fn from(t: crate::TestSummary) -> TestSummary {
        let duration_ms = t.duration.map_or(0, |d| {
            (d.seconds.max(0) as u64)
                .saturating_mul(1000)
                .saturating_add((d.nanos.max(0) / 1_000_000) as u64)
        });
        TestSummary {
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            errors: t.errors,
            skipped: t.skipped,
            duration_ms,
            failures: t
                .failures
                .into_iter()
                .map(|f| TestFailure {
                    suite: f.suite,
                    name: f.name,
                    error: f.error,
                    text: f.text,
                })
                .collect(),
            problems: t.problems,
        }
        .bounded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_goes_public_and_back() {
        let t = TestSummary {
            total: 3,
            passed: 1,
            failed: 1,
            errors: 1,
            skipped: 0,
            duration_ms: 1_250,
            failures: vec![TestFailure {
                suite: "s".into(),
                name: "n".into(),
                error: true,
                text: "boom".into(),
            }],
            problems: vec!["report `x`: does not exist in /workspace".into()],
        };
        let public = crate::TestSummary::from(t.clone());
        assert_eq!(
            public.duration,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 250_000_000
            })
        );
        assert_eq!(TestSummary::from(public), t);
    }
}
