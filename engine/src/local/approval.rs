//! Approval actions of a local run: the [`Observer`](super::Observer)
//! decides (a person at the terminal, or `--approve`); the decision is
//! recorded as the coordinator records one, and the state machine goes on.
//! An approval nobody could be asked about is skipped, and so is every
//! deploy after it.

use ferry_pipeline::execution::{ActionStatus, Decision as Recorded, Gates, Started};

use super::driver::{Run, local_user, now_ms};
use super::{ApprovalAsk, Decision, lock};

impl Run<'_> {
    /// Asks the observer about an approval and records the answer.
    pub(super) fn decide(&mut self, at: (usize, usize)) -> Started {
        let name = self.name(at);
        let Some(action) = self
            .pipeline
            .stages
            .get(at.0)
            .and_then(|s| s.actions.get(at.1))
        else {
            return Started::default();
        };
        let Some(run) = self.state.action(at.0, at.1) else {
            return Started::default();
        };
        let ask = ApprovalAsk {
            name: name.clone(),
            message: run.resolved_text(&action.message),
            url: run.resolved_text(&action.url),
        };
        let decision = lock(&self.observer).approve(&ask);
        let now = now_ms();
        let by = local_user();
        let (approve, comment) = match decision {
            Decision::Approve => (true, String::new()),
            Decision::Reject(why) => (false, why),
            Decision::Skip(note) => {
                self.approval_skipped.get_or_insert(name.clone());
                if let Some(run) = self.state.action_mut(at.0, at.1) {
                    run.status = Some(ActionStatus::Skipped);
                    run.finished_at = Some(now);
                    run.deadline = None;
                    run.message = format!("skipped: {note}");
                }
                lock(&self.observer).note(&format!("{name} skipped: {note}"));
                return self.state.advance(self.pipeline, &Gates::open(), now);
            }
        };
        if let Some(run) = self.state.action_mut(at.0, at.1) {
            run.approvals.push(Recorded {
                by,
                approve,
                comment: comment.clone(),
                at: now,
            });
        }
        if approve && action.required > 1 {
            lock(&self.observer).note(&format!(
                "{name}: one decision here stands for the {} approvals it requires on a cluster",
                action.required
            ));
        }
        // Who decided and why is in `approvals`; the message only flags a
        // rejection (as the coordinator records it).
        let message = if approve {
            String::new()
        } else {
            "rejected".to_string()
        };
        self.state
            .finish_action(self.pipeline, at, approve, message, &Gates::open(), now)
    }
}
