//! The recorded progress of one action in one execution: its attempts and
//! how each ended, approvals, outputs, and the values its references
//! resolved to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ActionStatus;

/// A content-addressed blob and the agents that hold a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub digest: String,
    pub size: u64,
}

/// Whether `digest` names a blob as Ferry names them: `sha256:` and 64
/// lowercase hex digits. The one syntax check of a digest: the agent's
/// store, the agent protocol's bounds and `apply` all ask it.
pub fn is_blob_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// How one attempt of an action ended (or that it still runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// Its agent stopped answering; the action was re-queued or failed.
    Lost,
    /// A person stopped the execution and abandoned the attempt.
    Stopped,
}

/// One attempt of an action: which agent, under which fencing epoch, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub epoch: u64,
    pub agent: String,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub message: String,
}

/// One person's decision on an approval action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub approve: bool,
    pub comment: String,
    pub at: i64,
}

/// Recorded progress of one action in one execution.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionRun {
    pub status: Option<ActionStatus>,
    /// Number of attempts made so far (0 before the first assignment).
    pub attempt: u32,
    /// Fencing epoch of the current attempt; results from other epochs are refused.
    pub epoch: u64,
    pub agent: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Why the action failed, or what it waits for.
    pub message: String,
    pub approvals: Vec<Decision>,
    /// Approval deadline (unix ms).
    pub deadline: Option<i64>,
    pub outputs: BTreeMap<String, ArtifactRef>,
    pub log: Option<ArtifactRef>,
    /// Every attempt so far, oldest first.
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// Output variables its succeeded attempt wrote (`$FERRY_OUTPUT_VARS`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The values of the references in its texts, resolved once when it
    /// started (key: the text between `#{` and `}`).
    #[serde(default)]
    pub resolved: BTreeMap<String, String>,
    /// Where the current round begins in `history` and `approvals`: a
    /// retried action keeps its earlier attempts and decisions, and its
    /// retry budget and approval count start afresh from here.
    #[serde(default)]
    pub round: Round,
    /// What the test reports of its last attempt said (`reports:`); left
    /// out of the stored form when none, as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<crate::reports::TestSummary>,
}

/// The start of an action's current round (see [`ActionRun::round`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Round {
    pub history: usize,
    pub approvals: usize,
}

impl ActionRun {
    /// Attempts of the current round that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u32 {
        self.history
            .iter()
            .skip(self.round.history)
            .filter(|h| h.outcome == outcome)
            .count() as u32
    }

    /// Decisions of the current round.
    pub fn decisions(&self) -> &[Decision] {
        self.approvals.get(self.round.approvals..).unwrap_or(&[])
    }

    /// `text` (one of its action's texts) with the values its references
    /// resolved to when it started; as written while it has not started.
    pub fn resolved_text(&self, text: &str) -> String {
        crate::vars::substitute(text, |r| self.resolved.get(&r.key()).cloned())
            .unwrap_or_else(|_| text.to_string())
    }

    /// `text` (one of its action's texts) as people see it: with the values
    /// its references resolved to once the action started; before that, ""
    /// if it has references (their values are not known yet) and as
    /// written if it has none.
    pub fn shown_text(&self, text: &str) -> String {
        crate::vars::substitute(text, |r| self.resolved.get(&r.key()).cloned()).unwrap_or_default()
    }

    /// What `action` (its action) runs: its `commands` with their
    /// references as shell variables, and its environment — those
    /// variables with the values they resolved to when it started
    /// (`vars::commands_as_data`: values are data, never command text),
    /// then its `env` with references substituted.
    pub fn resolved_commands_and_env(
        &self,
        action: &crate::Action,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let (commands, mut env) = crate::vars::commands_as_data(&action.commands, |r| {
            self.resolved.get(&r.key()).cloned()
        });
        env.extend(
            action
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.resolved_text(v))),
        );
        (commands, env)
    }

    /// Whether an agent runs the current attempt right now.
    pub fn is_running(&self) -> bool {
        self.status() == ActionStatus::InProgress && self.agent.is_some()
    }

    /// Makes the action pending again for a new round, keeping its history.
    pub(super) fn reset(&mut self) {
        let history = std::mem::take(&mut self.history);
        let approvals = std::mem::take(&mut self.approvals);
        *self = ActionRun {
            attempt: self.attempt,
            round: Round {
                history: history.len(),
                approvals: approvals.len(),
            },
            history,
            approvals,
            ..ActionRun::default()
        };
    }

    /// Closes the record of the attempt with fencing epoch `epoch`.
    pub fn close_attempt(
        &mut self,
        epoch: u64,
        outcome: Outcome,
        exit_code: Option<i32>,
        message: &str,
        now: i64,
    ) {
        if let Some(h) = self.history.iter_mut().rev().find(|h| h.epoch == epoch) {
            h.outcome = outcome;
            h.exit_code = exit_code;
            h.finished_at = Some(now);
            h.message = message.to_string();
        }
    }

    /// Puts the action back in the queue for a new attempt; results from the
    /// old attempt no longer match (its epoch is gone).
    pub fn requeue(&mut self, message: String) {
        self.status = Some(ActionStatus::InProgress);
        self.agent = None;
        self.epoch = 0;
        self.exit_code = None;
        self.message = message;
    }

    pub fn status(&self) -> ActionStatus {
        self.status.unwrap_or(ActionStatus::Pending)
    }

    /// Queued: started by the pipeline but not yet given to an agent.
    pub fn is_queued(&self) -> bool {
        self.status() == ActionStatus::InProgress && self.agent.is_none()
    }
}
