//! Test summaries in their two wire forms: the agent's
//! (`ferry.internal.v1.TestSummary`, milliseconds) and the public API's
//! (`ferry.v1.TestSummary`, a Duration). Both are bounded on the way in: a
//! peer of another version, or a hostile one, sends what it likes.

use ferry_pipeline::reports::{TestFailure, TestSummary};

use crate::internal as wire;

/// One failed test to and from each wire form (their fields are the same).
macro_rules! failure_conversions {
    ($($wire:ty),*) => {$(
        impl From<TestFailure> for $wire {
            fn from(f: TestFailure) -> $wire {
                Self {
                    suite: f.suite,
                    name: f.name,
                    error: f.error,
                    text: f.text,
                }
            }
        }

        impl From<$wire> for TestFailure {
            fn from(f: $wire) -> TestFailure {
                TestFailure {
                    suite: f.suite,
                    name: f.name,
                    error: f.error,
                    text: f.text,
                }
            }
        }
    )*};
}

failure_conversions!(wire::TestFailure, crate::TestFailure);

impl From<TestSummary> for wire::TestSummary {
    fn from(t: TestSummary) -> wire::TestSummary {
        wire::TestSummary {
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            errors: t.errors,
            skipped: t.skipped,
            duration_ms: t.duration_ms,
            failures: t.failures.into_iter().map(Into::into).collect(),
            problems: t.problems,
        }
    }
}

/// What an agent sent, cut to the summary's bounds.
impl From<wire::TestSummary> for TestSummary {
    fn from(t: wire::TestSummary) -> TestSummary {
        TestSummary {
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            errors: t.errors,
            skipped: t.skipped,
            duration_ms: t.duration_ms,
            failures: t.failures.into_iter().map(Into::into).collect(),
            problems: t.problems,
        }
        .bounded()
    }
}

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
            failures: t.failures.into_iter().map(Into::into).collect(),
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
            failures: t.failures.into_iter().map(Into::into).collect(),
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

    #[test]
    fn a_test_summary_from_an_agent_is_bounded_on_the_way_in() {
        let wire = wire::TestSummary {
            total: 3,
            passed: 2,
            failed: 1,
            failures: vec![
                wire::TestFailure {
                    suite: "s".into(),
                    name: "t\u{1b}[2J".into(),
                    error: false,
                    text: "x\n".repeat(100),
                };
                ferry_pipeline::reports::MAX_LISTED_FAILURES + 1
            ],
            ..Default::default()
        };
        let back = TestSummary::from(wire.clone());
        assert_eq!(
            back.failures.len(),
            ferry_pipeline::reports::MAX_LISTED_FAILURES
        );
        assert_eq!(back.failures[0].name, "t[2J");
        assert_eq!(back.failures[0].text.lines().count(), 10);
        let again = wire::TestSummary::from(back.clone());
        assert_eq!(TestSummary::from(again), back);
    }
}
