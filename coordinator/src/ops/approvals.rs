//! Approvals: an operator's decision (the four-eyes rule checked early on
//! fresh state, and again by `apply`) and the leader's expiry of approvals
//! whose deadline passed.

use ferry_certs::{Identity, IdentityKind};
use ferry_pipeline::execution::{ActionStatus, ExecutionStatus};

use super::executions::{execution_of, locate_action};
use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{Command, Reason};

/// What a decision left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The approval action's status now (None if it is gone).
    pub action: Option<ActionStatus>,
    pub execution: ExecutionStatus,
}

/// One decision on an approval action.
#[derive(Debug, Clone)]
pub struct Decision {
    pub pipeline: String,
    pub execution: String,
    /// `STAGE/ACTION`.
    pub action: String,
    pub approve: bool,
    pub comment: String,
}

impl Ops {
    /// Write: records `who`'s decision. Checked first on linearizable state
    /// (`may_decide`), and again by `apply`.
    pub async fn decide(
        &self,
        who: &Identity,
        d: Decision,
        request: Option<&super::RequestId>,
    ) -> OpResult<Decided> {
        if who.kind != IdentityKind::Operator {
            return Err(OpError::PermissionDenied(
                Reason::WrongIdentityKind,
                format!("{who} is not an operator"),
            ));
        }
        if self.remembered(who, request)?.is_some() {
            return self.decided(&d);
        }
        let (stage, action) = self
            .read(|s| {
                let exec = execution_of(s, &d.pipeline, &d.execution)?;
                let (si, ai) = locate_action(s, exec, &d.action)?;
                s.may_decide(&who.name, exec, si, ai)?;
                Ok::<_, OpError>((si, ai))
            })
            .await??;
        let comment = super::steering::reason(&d.comment)?;
        if !d.approve && comment.is_empty() {
            return Err(OpError::Invalid(
                "a rejection needs a --comment saying why".into(),
            ));
        }
        self.write_requested(
            who,
            request,
            Command::Decide {
                execution: d.execution.clone(),
                stage,
                action,
                by: who.name.clone(),
                approve: d.approve,
                comment,
                at: now_ms(),
            },
        )
        .await?;
        tracing::info!(execution = %d.execution, action = %d.action, by = %who.name, approve = d.approve, "approval decided");
        self.decided(&d)
    }

    /// Local read (read-your-writes: the decision is applied here): the
    /// approval's and its execution's state after decision `d`.
    fn decided(&self, d: &Decision) -> OpResult<Decided> {
        self.local_read(|s| {
            let exec = execution_of(s, &d.pipeline, &d.execution)?;
            let (stage, action) = locate_action(s, exec, &d.action)?;
            Ok(Decided {
                action: exec.state.action(stage, action).map(|r| r.status()),
                execution: exec.state.status,
            })
        })
    }

    /// Leader loop (timers), local read then writes: expires the approvals
    /// whose deadline passed. Applying an expiry twice is a no-op.
    pub async fn expire_approvals(&self) {
        let now = now_ms();
        for (execution, stage, action) in self.local_read(|s| s.expired_approvals(now)) {
            tracing::info!(%execution, stage, action, "approval timed out");
            if let Err(e) = self.expire_approval(execution, stage, action, now).await {
                tracing::warn!(error = %e, "could not record an approval timeout");
            }
        }
    }

    /// Write: one approval timed out at `at`.
    pub async fn expire_approval(
        &self,
        execution: String,
        stage: usize,
        action: usize,
        at: i64,
    ) -> OpResult<()> {
        self.write(Command::ExpireApproval {
            execution,
            stage,
            action,
            at,
        })
        .await
        .map(drop)
    }
}
