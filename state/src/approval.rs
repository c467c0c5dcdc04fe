//! Who may decide an approval: the four-eyes rule, stated once and checked
//! twice — early by the gRPC handler (after a read barrier) for a fast error,
//! and again inside `apply` against the state the decision lands on, so a
//! member with stale state or a replayed command cannot let a decision
//! through. Pure functions of the state; never reads a clock.

use crate::reason::Reason;
use ferry_pipeline::ActionKind;

use super::{ClusterState, Execution, Rejection, Role};

impl ClusterState {
    /// Whether operator `by` may approve or reject action (`stage`, `action`) of
    /// execution `exec`:
    /// - `by` holds the `approver` or `admin` role (naming someone in
    ///   `approvers:` grants nothing by itself);
    /// - the action's `approvers:` list narrows who among them may decide, by
    ///   operator name or role (`approver`, the default, admits admins too);
    /// - `by` neither started the execution nor applied the pipeline version it
    ///   runs, unless the approval says `allow_self_approval: true` (which only
    ///   an admin can apply, see [`ClusterState::may_apply_pipeline`]).
    pub fn may_decide(
        &self,
        by: &str,
        exec: &Execution,
        stage: usize,
        action: usize,
    ) -> Result<(), Rejection> {
        let version = self
            .pipelines
            .get(&exec.pipeline)
            .and_then(|p| p.version(exec.version))
            .ok_or_else(|| {
                Rejection::NotFound(format!(
                    "pipeline {} version {}",
                    exec.pipeline, exec.version
                ))
            })?;
        let spec = version
            .spec
            .stages
            .get(stage)
            .and_then(|s| s.actions.get(action))
            .ok_or_else(|| Rejection::NotFound("action".into()))?;
        if spec.kind != ActionKind::Approval {
            return Err(Rejection::FailedPrecondition(format!(
                "action `{}` is a {} action, not an approval",
                spec.name, spec.kind
            )));
        }
        let roles = self.roles_of(by);
        let is_admin = roles.contains(&Role::Admin);
        if !is_admin && !roles.contains(&Role::Approver) {
            return Err(Rejection::denied(
                Reason::MissingRole,
                format!(
                    "operator `{by}` may not decide approvals: that needs the approver role, \
                 which an admin can grant"
                ),
            ));
        }
        let listed = spec.approvers.iter().any(|a| {
            a == by
                || roles.iter().any(|r| r.as_str() == a)
                || (is_admin && a == Role::Approver.as_str())
        });
        if !listed {
            return Err(Rejection::denied(
                Reason::NotAnApprover,
                format!(
                    "operator `{by}` is not among this approval's approvers ({})",
                    spec.approvers.join(", ")
                ),
            ));
        }
        if spec.allow_self_approval {
            return Ok(());
        }
        if exec.started_by.as_deref() == Some(by) {
            return Err(Rejection::denied(
                Reason::FourEyes,
                format!(
                    "operator `{by}` started execution {} and may not approve it too: \
                 another approver must decide (four-eyes rule)",
                    exec.id
                ),
            ));
        }
        if version.applied_by == by {
            return Err(Rejection::denied(
                Reason::FourEyes,
                format!(
                    "operator `{by}` applied version {} of pipeline `{}` and may not approve \
                 its executions: another approver must decide (four-eyes rule)",
                    version.version, exec.pipeline
                ),
            ));
        }
        Ok(())
    }

    /// Whether operator `by` may apply `spec`: an approval that allows
    /// self-approval weakens the four-eyes rule, so only an admin may apply it.
    pub fn may_apply_pipeline(
        &self,
        by: &str,
        spec: &ferry_pipeline::Pipeline,
    ) -> Result<(), Rejection> {
        let relaxed = spec
            .stages
            .iter()
            .flat_map(|s| &s.actions)
            .find(|a| a.allow_self_approval);
        match relaxed {
            Some(a) if !self.roles_of(by).contains(&Role::Admin) => Err(Rejection::denied(
                Reason::MissingRole,
                format!(
                    "only an admin may apply a pipeline whose approval `{}` sets \
                     allow_self_approval (operator `{by}` is not an admin)",
                    a.name
                ),
            )),
            _ => Ok(()),
        }
    }
}
