//! Steering executions: stop one (letting running actions finish, or
//! abandoning them), retry a stage of a failed or stopped one, and close or
//! open the way into a stage (a change freeze). Each is a write; `apply`
//! checks the caller's role and the execution's state again
//! (`state/steering.rs`), so what the early checks here let through on a
//! lagging member is still refused there.

use ferry_certs::Identity;

use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::Command;

/// Longest reason a stop or a transition change (or an approval's
/// comment) may carry.
pub const MAX_REASON_LEN: usize = 1_000;

/// A person's reason or comment, trimmed, refused when longer than
/// [`MAX_REASON_LEN`] bytes (it goes into the log and every view).
pub(super) fn reason(text: &str) -> OpResult<String> {
    if text.len() > MAX_REASON_LEN {
        return Err(OpError::Invalid(format!(
            "the reason is longer than {MAX_REASON_LEN} bytes"
        )));
    }
    Ok(text.trim().to_string())
}

impl Ops {
    /// Write: stops execution `id` of `pipeline`. Running attempts finish,
    /// or with `abandon` their agents are told to cancel them (the leader's
    /// agent sessions do that as soon as the stop is applied).
    pub async fn stop_execution(
        &self,
        who: &Identity,
        pipeline: &str,
        id: &str,
        why: &str,
        abandon: bool,
        request: Option<&super::RequestId>,
    ) -> OpResult<()> {
        let why = reason(why)?;
        if self.remembered(who, request)?.is_some() {
            return Ok(());
        }
        self.read(|s| super::executions::execution_of(s, pipeline, id).map(|_| ()))
            .await??;
        self.write_requested(
            who,
            request,
            Command::StopExecution {
                execution: id.to_string(),
                reason: why,
                abandon,
                by: super::access::acting(who),
                at: now_ms(),
            },
        )
        .await?;
        tracing::info!(%pipeline, execution = %id, abandon, by = %who.name, "execution stopped");
        Ok(())
    }

    /// Write: runs stage `stage` of execution `id` again, its actions that
    /// did not succeed (or, with `all`, every one).
    pub async fn retry_stage(
        &self,
        who: &Identity,
        pipeline: &str,
        id: &str,
        stage: &str,
        all: bool,
        request: Option<&super::RequestId>,
    ) -> OpResult<()> {
        if self.remembered(who, request)?.is_some() {
            return Ok(());
        }
        self.read(|s| super::executions::execution_of(s, pipeline, id).map(|_| ()))
            .await??;
        self.write_requested(
            who,
            request,
            Command::RetryStage {
                execution: id.to_string(),
                stage: stage.to_string(),
                all,
                by: super::access::acting(who),
                at: now_ms(),
            },
        )
        .await?;
        tracing::info!(%pipeline, execution = %id, %stage, all, by = %who.name, "stage retried");
        Ok(())
    }

    /// Write: enables or disables the transition into `stage` of `pipeline`.
    pub async fn set_transition(
        &self,
        who: &Identity,
        pipeline: &str,
        stage: &str,
        enabled: bool,
        why: &str,
    ) -> OpResult<()> {
        let why = reason(why)?;
        self.write(Command::SetTransition {
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            enabled,
            reason: why,
            by: super::access::acting(who),
            at: now_ms(),
        })
        .await?;
        tracing::info!(%pipeline, %stage, enabled, by = %who.name, "transition changed");
        Ok(())
    }
}
