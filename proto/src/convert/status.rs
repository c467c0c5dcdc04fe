//! Statuses, kinds and roles: each domain enum and its API enum, both ways
//! where a request carries one (a role to grant, an event kind to show).

use ferry_pipeline::execution::{ActionStatus, ExecutionStatus, Outcome};
use ferry_pipeline::{ActionKind, EventKind, ExecutionMode};
use ferry_state::Role;

use super::UnknownWord;
use crate as pb;

impl From<ExecutionStatus> for pb::ExecutionStatus {
    fn from(s: ExecutionStatus) -> pb::ExecutionStatus {
        match s {
            ExecutionStatus::InProgress => pb::ExecutionStatus::InProgress,
            ExecutionStatus::Succeeded => pb::ExecutionStatus::Succeeded,
            ExecutionStatus::Failed => pb::ExecutionStatus::Failed,
            ExecutionStatus::Stopping => pb::ExecutionStatus::Stopping,
            ExecutionStatus::Stopped => pb::ExecutionStatus::Stopped,
            ExecutionStatus::Superseded => pb::ExecutionStatus::Superseded,
        }
    }
}

/// An action's (or a stage's) status.
impl From<ActionStatus> for pb::ActionStatus {
    fn from(s: ActionStatus) -> pb::ActionStatus {
        match s {
            ActionStatus::Pending => pb::ActionStatus::Pending,
            ActionStatus::InProgress => pb::ActionStatus::InProgress,
            ActionStatus::WaitingForApproval => pb::ActionStatus::WaitingForApproval,
            ActionStatus::Succeeded => pb::ActionStatus::Succeeded,
            ActionStatus::Failed => pb::ActionStatus::Failed,
            ActionStatus::Stopped => pb::ActionStatus::Stopped,
            ActionStatus::Skipped => pb::ActionStatus::Skipped,
        }
    }
}

impl From<ActionKind> for pb::ActionKind {
    fn from(k: ActionKind) -> pb::ActionKind {
        match k {
            ActionKind::Build => pb::ActionKind::Build,
            ActionKind::Test => pb::ActionKind::Test,
            ActionKind::Approval => pb::ActionKind::Approval,
            ActionKind::Deploy => pb::ActionKind::Deploy,
            ActionKind::Plugin => pb::ActionKind::Plugin,
        }
    }
}

/// How an attempt ended.
impl From<Outcome> for pb::AttemptOutcome {
    fn from(o: Outcome) -> pb::AttemptOutcome {
        match o {
            Outcome::Running => pb::AttemptOutcome::Running,
            Outcome::Succeeded => pb::AttemptOutcome::Succeeded,
            Outcome::Failed => pb::AttemptOutcome::Failed,
            Outcome::Lost => pb::AttemptOutcome::Lost,
            Outcome::Stopped => pb::AttemptOutcome::Stopped,
        }
    }
}

impl From<ExecutionMode> for pb::ExecutionMode {
    fn from(m: ExecutionMode) -> pb::ExecutionMode {
        match m {
            ExecutionMode::Superseded => pb::ExecutionMode::Superseded,
            ExecutionMode::Queued => pb::ExecutionMode::Queued,
            ExecutionMode::Parallel => pb::ExecutionMode::Parallel,
        }
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> pb::Role {
        match r {
            Role::Admin => pb::Role::Admin,
            Role::Operator => pb::Role::Operator,
            Role::Approver => pb::Role::Approver,
            Role::Viewer => pb::Role::Viewer,
        }
    }
}

/// The role a request names; UNSPECIFIED is not a role. (A number this
/// version does not know fails `pb::Role::try_from(i32)` before.)
impl TryFrom<pb::Role> for Role {
    type Error = UnknownWord;

    fn try_from(r: pb::Role) -> Result<Role, UnknownWord> {
        match r {
            pb::Role::Admin => Ok(Role::Admin),
            pb::Role::Operator => Ok(Role::Operator),
            pb::Role::Approver => Ok(Role::Approver),
            pb::Role::Viewer => Ok(Role::Viewer),
            pb::Role::Unspecified => Err(UnknownWord::new("role", r.as_str_name())),
        }
    }
}

impl From<EventKind> for pb::EventKind {
    fn from(k: EventKind) -> pb::EventKind {
        match k {
            EventKind::ExecutionStarted => pb::EventKind::ExecutionStarted,
            EventKind::ExecutionSucceeded => pb::EventKind::ExecutionSucceeded,
            EventKind::ExecutionFailed => pb::EventKind::ExecutionFailed,
            EventKind::ExecutionStopped => pb::EventKind::ExecutionStopped,
            EventKind::ExecutionSuperseded => pb::EventKind::ExecutionSuperseded,
            EventKind::ApprovalWaiting => pb::EventKind::ApprovalWaiting,
            EventKind::ApprovalDecided => pb::EventKind::ApprovalDecided,
            EventKind::DeploymentStarted => pb::EventKind::DeploymentStarted,
            EventKind::DeploymentSucceeded => pb::EventKind::DeploymentSucceeded,
            EventKind::DeploymentFailed => pb::EventKind::DeploymentFailed,
            EventKind::DeploymentRolledBack => pb::EventKind::DeploymentRolledBack,
        }
    }
}

/// An event's kind, for its dotted name; UNSPECIFIED is none.
impl TryFrom<pb::EventKind> for EventKind {
    type Error = UnknownWord;

    fn try_from(k: pb::EventKind) -> Result<EventKind, UnknownWord> {
        EventKind::ALL
            .into_iter()
            .find(|known| pb::EventKind::from(*known) == k)
            .ok_or_else(|| UnknownWord::new("event kind", k.as_str_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's name of a variant: `PREFIX_` and the variant's words in
    /// capitals (`InProgress` → `EXECUTION_STATUS_IN_PROGRESS`).
    fn wire_name(prefix: &str, variant: &str) -> String {
        let mut out = format!("{prefix}_");
        for (i, c) in variant.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn every_role_and_event_kind_goes_to_the_api_and_back() {
        for r in Role::ALL {
            let wire = pb::Role::from(r);
            assert_eq!(
                wire.as_str_name(),
                wire_name("ROLE", &format!("{r:?}")),
                "{r:?}"
            );
            assert_eq!(Role::try_from(wire), Ok(r));
        }
        assert!(Role::try_from(pb::Role::Unspecified).is_err());
        for k in EventKind::ALL {
            let wire = pb::EventKind::from(k);
            assert_eq!(
                wire.as_str_name(),
                wire_name("EVENT_KIND", &format!("{k:?}")),
                "{k:?}"
            );
            assert_eq!(EventKind::try_from(wire), Ok(k));
        }
        assert!(EventKind::try_from(pb::EventKind::Unspecified).is_err());
    }

    #[test]
    fn statuses_keep_their_names() {
        for s in [ExecutionStatus::InProgress, ExecutionStatus::Superseded] {
            assert_eq!(
                pb::ExecutionStatus::from(s).as_str_name(),
                wire_name("EXECUTION_STATUS", &format!("{s:?}"))
            );
        }
        assert_eq!(
            pb::ActionStatus::from(ActionStatus::WaitingForApproval).as_str_name(),
            "ACTION_STATUS_WAITING_FOR_APPROVAL"
        );
    }
}
