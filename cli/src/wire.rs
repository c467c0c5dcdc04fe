//! The API's typed values as the CLI prints them, in one place: enums back to
//! the words the CLI has always shown (`InProgress`, `Succeeded`, `admin`,
//! `ssh`, ...), `google.protobuf.Timestamp` back to RFC 3339 with
//! milliseconds, `Duration` back to milliseconds; and the role words the CLI
//! accepts as the enum a request carries.
//!
//! prost hands enums over as `i32`. A value's UNSPECIFIED (0) prints as ""
//! (what an unset string printed before the API had enums; tables show `-`),
//! and a number this CLI does not know, from a newer coordinator, as
//! `Unknown(N)`: never a panic.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use ferry_proto as pb;
use ferry_state::Role;

/// 9999-12-31T23:59:59.999Z in unix milliseconds, the last time RFC 3339 can
/// write (humantime panics past it).
const LAST_SHOWABLE_MS: u64 = 253_402_300_799_999;

/// A time as RFC 3339 with milliseconds (`2024-05-01T10:00:00.000Z`); unset
/// is "". A time before 1970 also prints as "" and one past year 9999 as that
/// year's last millisecond, as the coordinator printed them when it sent text.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let (Ok(seconds), Ok(nanos)) = (u64::try_from(t.seconds), u64::try_from(t.nanos)) else {
        return String::new();
    };
    // Whole milliseconds, as sent: nanos are below 10^9 in a valid Timestamp
    // (more is clamped with the rest).
    let ms = seconds
        .saturating_mul(1000)
        .saturating_add(nanos / 1_000_000)
        .min(LAST_SHOWABLE_MS);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A length of time in whole milliseconds; unset or negative is 0.
pub fn millis(d: Option<&prost_types::Duration>) -> u64 {
    let Some(d) = d else { return 0 };
    let (Ok(seconds), Ok(nanos)) = (u64::try_from(d.seconds), u64::try_from(d.nanos)) else {
        return 0;
    };
    seconds
        .saturating_mul(1000)
        .saturating_add(nanos / 1_000_000)
}

/// A length of time for a request (e.g. a join token's ttl); one past
/// Duration's range is sent as its largest.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Below 10^9: fits an i32.
        nanos: d.subsec_nanos() as i32,
    }
}

/// The word for enum value `n` of `E`: "" for UNSPECIFIED, `Unknown(n)` for
/// a number `E` does not have.
fn word<E: TryFrom<i32>>(n: i32, text: fn(E) -> &'static str) -> String {
    match E::try_from(n) {
        Ok(value) => text(value).to_string(),
        Err(_) => format!("Unknown({n})"),
    }
}

/// An execution's status: `InProgress`, `Stopping`, `Succeeded`,
/// `Failed`, `Stopped` or `Superseded`.
pub fn execution_status(n: i32) -> String {
    word(n, |s: pb::ExecutionStatus| match s {
        pb::ExecutionStatus::Unspecified => "",
        pb::ExecutionStatus::InProgress => "InProgress",
        pb::ExecutionStatus::Succeeded => "Succeeded",
        pb::ExecutionStatus::Failed => "Failed",
        pb::ExecutionStatus::Stopping => "Stopping",
        pb::ExecutionStatus::Stopped => "Stopped",
        pb::ExecutionStatus::Superseded => "Superseded",
    })
}

/// An action's or a stage's status: `Pending`, `InProgress`,
/// `WaitingForApproval`, `Succeeded`, `Failed`, `Stopped` or `Skipped`.
pub fn action_status(n: i32) -> String {
    word(n, |s: pb::ActionStatus| match s {
        pb::ActionStatus::Unspecified => "",
        pb::ActionStatus::Pending => "Pending",
        pb::ActionStatus::InProgress => "InProgress",
        pb::ActionStatus::WaitingForApproval => "WaitingForApproval",
        pb::ActionStatus::Succeeded => "Succeeded",
        pb::ActionStatus::Failed => "Failed",
        pb::ActionStatus::Stopped => "Stopped",
        pb::ActionStatus::Skipped => "Skipped",
    })
}

/// An action's kind as in pipeline files: `build`, `test`, `approval`,
/// `deploy` or `plugin`.
pub fn action_kind(n: i32) -> String {
    word(n, |k: pb::ActionKind| match k {
        pb::ActionKind::Unspecified => "",
        pb::ActionKind::Build => "build",
        pb::ActionKind::Test => "test",
        pb::ActionKind::Approval => "approval",
        pb::ActionKind::Deploy => "deploy",
        pb::ActionKind::Plugin => "plugin",
    })
}

/// How an attempt ended: `Running`, `Succeeded`, `Failed`, `Lost` or `Stopped`.
pub fn attempt_outcome(n: i32) -> String {
    word(n, |o: pb::AttemptOutcome| match o {
        pb::AttemptOutcome::Unspecified => "",
        pb::AttemptOutcome::Running => "Running",
        pb::AttemptOutcome::Succeeded => "Succeeded",
        pb::AttemptOutcome::Failed => "Failed",
        pb::AttemptOutcome::Lost => "Lost",
        pb::AttemptOutcome::Stopped => "Stopped",
    })
}

/// A pipeline's execution mode as pipeline files spell it: `superseded`,
/// `queued` or `parallel`.
pub fn execution_mode(n: i32) -> String {
    word(n, |m: pb::ExecutionMode| match m {
        pb::ExecutionMode::Unspecified => "",
        pb::ExecutionMode::Superseded => "superseded",
        pb::ExecutionMode::Queued => "queued",
        pb::ExecutionMode::Parallel => "parallel",
    })
}

/// A decision on an approval: `Approved` or `Rejected`.
pub fn approval_decision(n: i32) -> String {
    word(n, |d: pb::ApprovalDecision| match d {
        pb::ApprovalDecision::Unspecified => "",
        pb::ApprovalDecision::Approved => "Approved",
        pb::ApprovalDecision::Rejected => "Rejected",
    })
}

/// An agent's state: `Enrolled`, `Connected`, `Disconnected` or `Draining`.
pub fn agent_state(n: i32) -> String {
    word(n, |s: pb::AgentState| match s {
        pb::AgentState::Unspecified => "",
        pb::AgentState::Enrolled => "Enrolled",
        pb::AgentState::Connected => "Connected",
        pb::AgentState::Disconnected => "Disconnected",
        pb::AgentState::Draining => "Draining",
    })
}

/// An operator's role: `admin`, `operator`, `approver` or `viewer` (the
/// words are `ferry_state::Role`'s, as the coordinator spells them).
pub fn role(n: i32) -> String {
    match pb::Role::try_from(n) {
        Ok(pb::Role::Unspecified) => String::new(),
        Ok(r) => Role::try_from(r).map_or_else(|_| format!("Unknown({n})"), |r| r.to_string()),
        Err(_) => format!("Unknown({n})"),
    }
}

/// A role word `ferry rbac` does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        write!(
            f,
            "unknown role `{}`; roles are: {}",
            self.0,
            words.join(", ")
        )
    }
}

impl std::error::Error for UnknownRole {}

/// The role a word names (`admin`, `operator`, `approver`, `viewer`), as a
/// request carries it.
pub fn parse_role(text: &str) -> Result<pb::Role, UnknownRole> {
    Role::parse(text)
        .map(pb::Role::from)
        .ok_or_else(|| UnknownRole(text.to_string()))
}

/// A member's Raft role: `Leader`, `Follower`, `Candidate` or
/// `PreCandidate`, and `Unreachable` for a member that did not answer.
pub fn member_role(m: &pb::MemberView) -> String {
    if !m.reachable {
        return "Unreachable".to_string();
    }
    word(m.role, |r: pb::MemberRole| match r {
        pb::MemberRole::Unspecified => "",
        pb::MemberRole::Leader => "Leader",
        pb::MemberRole::Follower => "Follower",
        pb::MemberRole::Candidate => "Candidate",
        pb::MemberRole::PreCandidate => "PreCandidate",
    })
}

/// How a deployment ended: `Succeeded`, `Failed` or `RolledBack`.
pub fn deployment_outcome(n: i32) -> String {
    word(n, |o: pb::DeploymentOutcome| match o {
        pb::DeploymentOutcome::Unspecified => "",
        pb::DeploymentOutcome::Succeeded => "Succeeded",
        pb::DeploymentOutcome::Failed => "Failed",
        pb::DeploymentOutcome::RolledBack => "RolledBack",
    })
}

/// How a deployment ended on a host: `Deployed`, `Failed`, `RolledBack`,
/// `RollbackFailed` or `Skipped`.
pub fn host_outcome(n: i32) -> String {
    word(n, |o: pb::HostOutcome| match o {
        pb::HostOutcome::Unspecified => "",
        pb::HostOutcome::Deployed => "Deployed",
        pb::HostOutcome::Failed => "Failed",
        pb::HostOutcome::RolledBack => "RolledBack",
        pb::HostOutcome::RollbackFailed => "RollbackFailed",
        pb::HostOutcome::Skipped => "Skipped",
    })
}

/// Why a deploy step ran: `deploy` or `rollback`.
pub fn hook_phase(n: i32) -> String {
    word(n, |p: pb::HookPhase| match p {
        pb::HookPhase::Unspecified => "",
        pb::HookPhase::Deploy => "deploy",
        pb::HookPhase::Rollback => "rollback",
    })
}

/// How a deploy target is reached: `ssh` or `docker`.
pub fn host_kind(n: i32) -> String {
    word(n, |k: pb::HostKind| match k {
        pb::HostKind::Unspecified => "",
        pb::HostKind::Ssh => "ssh",
        pb::HostKind::Docker => "docker",
    })
}

/// Test input: the Timestamp of an RFC 3339 text.
#[cfg(test)]
pub fn at(text: &str) -> Option<prost_types::Timestamp> {
    let t = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    Some(t.into())
}

#[cfg(test)]
mod tests {
    use ferry_pipeline::ActionKind;
    use ferry_pipeline::execution::{ActionStatus, ExecutionStatus, Outcome};

    use super::*;

    /// Every value of an enum (0 up to the first number it does not have).
    fn all<E: TryFrom<i32>>() -> Vec<i32> {
        (0..).take_while(|n| E::try_from(*n).is_ok()).collect()
    }

    /// `words` has one entry per value of `E` (UNSPECIFIED is ""), and a
    /// number past them prints as `Unknown(N)`.
    fn check<E: TryFrom<i32>>(show: fn(i32) -> String, words: &[(i32, &str)]) {
        let numbers = all::<E>();
        assert_eq!(numbers.len(), words.len() + 1, "one word per value");
        assert_eq!(show(0), "", "UNSPECIFIED");
        for (n, text) in words {
            assert_eq!(show(*n), *text, "value {n}");
        }
        let unknown = numbers.len() as i32;
        assert_eq!(show(unknown), format!("Unknown({unknown})"));
        assert_eq!(show(-1), "Unknown(-1)");
    }

    #[test]
    fn execution_statuses_read_as_the_pipeline_crate_writes_them() {
        let pairs = [
            (pb::ExecutionStatus::InProgress, ExecutionStatus::InProgress),
            (pb::ExecutionStatus::Succeeded, ExecutionStatus::Succeeded),
            (pb::ExecutionStatus::Failed, ExecutionStatus::Failed),
            (pb::ExecutionStatus::Stopping, ExecutionStatus::Stopping),
            (pb::ExecutionStatus::Stopped, ExecutionStatus::Stopped),
            (pb::ExecutionStatus::Superseded, ExecutionStatus::Superseded),
        ];
        let words: Vec<(i32, String)> = pairs
            .iter()
            .map(|(wire, state)| (*wire as i32, state.to_string()))
            .collect();
        let words: Vec<(i32, &str)> = words.iter().map(|(n, w)| (*n, w.as_str())).collect();
        check::<pb::ExecutionStatus>(execution_status, &words);
        assert_eq!(execution_status(1), "InProgress");
    }

    #[test]
    fn action_statuses_read_as_the_pipeline_crate_writes_them() {
        let pairs = [
            (pb::ActionStatus::Pending, ActionStatus::Pending),
            (pb::ActionStatus::InProgress, ActionStatus::InProgress),
            (
                pb::ActionStatus::WaitingForApproval,
                ActionStatus::WaitingForApproval,
            ),
            (pb::ActionStatus::Succeeded, ActionStatus::Succeeded),
            (pb::ActionStatus::Failed, ActionStatus::Failed),
            (pb::ActionStatus::Stopped, ActionStatus::Stopped),
            (pb::ActionStatus::Skipped, ActionStatus::Skipped),
        ];
        let words: Vec<(i32, String)> = pairs
            .iter()
            .map(|(wire, state)| (*wire as i32, state.to_string()))
            .collect();
        let words: Vec<(i32, &str)> = words.iter().map(|(n, w)| (*n, w.as_str())).collect();
        check::<pb::ActionStatus>(action_status, &words);
        assert_eq!(action_status(3), "WaitingForApproval");
    }

    #[test]
    fn action_kinds_read_as_pipeline_files_spell_them() {
        let pairs = [
            (pb::ActionKind::Build, ActionKind::Build),
            (pb::ActionKind::Test, ActionKind::Test),
            (pb::ActionKind::Approval, ActionKind::Approval),
            (pb::ActionKind::Deploy, ActionKind::Deploy),
            (pb::ActionKind::Plugin, ActionKind::Plugin),
        ];
        let words: Vec<(i32, &str)> = pairs
            .iter()
            .map(|(wire, kind)| (*wire as i32, kind.as_str()))
            .collect();
        check::<pb::ActionKind>(action_kind, &words);
        assert_eq!(ActionKind::ALL.len(), pairs.len());
    }

    #[test]
    fn execution_modes_read_as_pipeline_files_spell_them() {
        let words: Vec<(i32, &str)> = ferry_pipeline::ExecutionMode::ALL
            .iter()
            .map(|m| {
                let wire = match m {
                    ferry_pipeline::ExecutionMode::Superseded => pb::ExecutionMode::Superseded,
                    ferry_pipeline::ExecutionMode::Queued => pb::ExecutionMode::Queued,
                    ferry_pipeline::ExecutionMode::Parallel => pb::ExecutionMode::Parallel,
                };
                (wire as i32, m.as_str())
            })
            .collect();
        check::<pb::ExecutionMode>(execution_mode, &words);
    }

    #[test]
    fn attempt_outcomes_read_as_the_pipeline_crate_names_them() {
        let pairs = [
            (pb::AttemptOutcome::Running, Outcome::Running),
            (pb::AttemptOutcome::Succeeded, Outcome::Succeeded),
            (pb::AttemptOutcome::Failed, Outcome::Failed),
            (pb::AttemptOutcome::Lost, Outcome::Lost),
            (pb::AttemptOutcome::Stopped, Outcome::Stopped),
        ];
        // The coordinator printed them with `{:?}`.
        let words: Vec<(i32, String)> = pairs
            .iter()
            .map(|(wire, outcome)| (*wire as i32, format!("{outcome:?}")))
            .collect();
        let words: Vec<(i32, &str)> = words.iter().map(|(n, w)| (*n, w.as_str())).collect();
        check::<pb::AttemptOutcome>(attempt_outcome, &words);
    }

    /// `ferry exec` turns its local state into the API's view with
    /// `ferry_proto`'s conversions, as the coordinator does: every value
    /// prints as the pipeline crate names it, so `ferry exec` and `ferry
    /// status` show a status alike.
    #[test]
    fn pipeline_values_print_through_their_wire_value_as_the_pipeline_crate_names_them() {
        use ExecutionStatus as E;
        for s in [
            E::InProgress,
            E::Stopping,
            E::Succeeded,
            E::Failed,
            E::Stopped,
            E::Superseded,
        ] {
            let wire = pb::ExecutionStatus::from(s) as i32;
            assert_eq!(execution_status(wire), s.to_string());
        }
        use ActionStatus as A;
        for s in [
            A::Pending,
            A::InProgress,
            A::WaitingForApproval,
            A::Succeeded,
            A::Failed,
            A::Stopped,
            A::Skipped,
        ] {
            assert_eq!(
                action_status(pb::ActionStatus::from(s) as i32),
                s.to_string()
            );
        }
        for k in ActionKind::ALL {
            assert_eq!(action_kind(pb::ActionKind::from(k) as i32), k.as_str());
        }
        use Outcome as O;
        for o in [O::Running, O::Succeeded, O::Failed, O::Lost, O::Stopped] {
            let wire = pb::AttemptOutcome::from(o) as i32;
            assert_eq!(attempt_outcome(wire), format!("{o:?}"));
        }
    }

    #[test]
    fn the_other_enums_read_as_before() {
        check::<pb::ApprovalDecision>(approval_decision, &[(1, "Approved"), (2, "Rejected")]);
        check::<pb::AgentState>(
            agent_state,
            &[
                (1, "Enrolled"),
                (2, "Connected"),
                (3, "Disconnected"),
                (4, "Draining"),
            ],
        );
        check::<pb::Role>(
            role,
            &[
                (1, "admin"),
                (2, "operator"),
                (3, "approver"),
                (4, "viewer"),
            ],
        );
        check::<pb::DeploymentOutcome>(
            deployment_outcome,
            &[(1, "Succeeded"), (2, "Failed"), (3, "RolledBack")],
        );
        check::<pb::HostOutcome>(
            host_outcome,
            &[
                (1, "Deployed"),
                (2, "Failed"),
                (3, "RolledBack"),
                (4, "RollbackFailed"),
                (5, "Skipped"),
            ],
        );
        check::<pb::HookPhase>(hook_phase, &[(1, "deploy"), (2, "rollback")]);
        check::<pb::HostKind>(host_kind, &[(1, "ssh"), (2, "docker")]);
    }

    #[test]
    fn member_roles_read_as_raft_names_them_and_silence_as_unreachable() {
        fn member(role: i32, reachable: bool) -> pb::MemberView {
            pb::MemberView {
                role,
                reachable,
                ..Default::default()
            }
        }
        fn show(n: i32) -> String {
            member_role(&member(n, true))
        }
        check::<pb::MemberRole>(
            show,
            &[
                (1, "Leader"),
                (2, "Follower"),
                (3, "Candidate"),
                (4, "PreCandidate"),
            ],
        );
        assert_eq!(member_role(&member(0, false)), "Unreachable");
        assert_eq!(member_role(&member(1, false)), "Unreachable");
    }

    #[test]
    fn role_words_round_trip() {
        for r in Role::ALL {
            let wire = pb::Role::from(r);
            assert_eq!(parse_role(r.as_str()), Ok(wire));
            assert_eq!(role(wire as i32), r.as_str());
        }
        let err = parse_role("overlord").err();
        assert_eq!(err, Some(UnknownRole("overlord".into())));
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "unknown role `overlord`; roles are: admin, operator, approver, viewer"
        );
        assert!(parse_role("Admin").is_err(), "words are lower case");
        assert!(parse_role("").is_err());
    }

    fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    #[test]
    fn times_print_as_rfc3339_millis() {
        assert_eq!(time(None), "");
        assert_eq!(time(at(0, 0).as_ref()), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            time(at(1_714_557_600, 123_999_999).as_ref()),
            "2024-05-01T10:00:00.123Z"
        );
        // Before 1970: "" as before; past year 9999: its last millisecond.
        assert_eq!(time(at(-1, 999_000_000).as_ref()), "");
        assert_eq!(time(at(0, -1).as_ref()), "");
        assert_eq!(
            time(at(253_402_300_799, 999_000_000).as_ref()),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            time(at(i64::MAX, i32::MAX).as_ref()),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn the_coordinators_old_text_and_the_new_wire_agree() {
        // What views::ts printed for unix milliseconds, through a Timestamp.
        for ms in [0_i64, 1, 999, 1_000, 1_714_557_600_123, 253_402_300_799_999] {
            let t = prost_types::Timestamp {
                seconds: ms.div_euclid(1000),
                nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
            };
            let old =
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64))
                    .to_string();
            assert_eq!(time(Some(&t)), old, "{ms} ms");
        }
    }

    #[test]
    fn durations_print_as_whole_milliseconds() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        assert_eq!(millis(None), 0);
        assert_eq!(millis(d(0, 0).as_ref()), 0);
        assert_eq!(millis(d(1, 250_000_000).as_ref()), 1_250);
        assert_eq!(millis(d(0, 999_999).as_ref()), 0);
        assert_eq!(millis(d(-1, 0).as_ref()), 0);
        assert_eq!(millis(d(i64::MAX, 0).as_ref()), u64::MAX);
        let ttl = duration(Duration::from_millis(3_600_250));
        assert_eq!((ttl.seconds, ttl.nanos), (3_600, 250_000_000));
        assert_eq!(millis(Some(&ttl)), 3_600_250);
        assert_eq!(duration(Duration::MAX).seconds, i64::MAX);
    }
}
