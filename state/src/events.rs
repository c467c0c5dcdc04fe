//! Events and the notification outbox, in the replicated state. `apply`
//! looks at the executions a command may touch before and after it
//! ([`ClusterState::observe`], [`ClusterState::emit`]) and records what
//! people care about as [`Event`]s: a run started or ended, an approval
//! waits or was decided, a deployment started or ended. Each event gets the
//! next id (so `ferry events` resumes from one), and one [`Delivery`] per
//! notification target whose filter takes it. Deliveries stay in the state
//! until the leader's notifier reports them delivered or gives up on them,
//! so a failover resends instead of dropping (at least once; the receiver
//! deduplicates with the event id); how often and how long to try is the
//! leader's to say, in the command. Everything here is a pure function of
//! the state and the command: the time is the command's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ferry_pipeline::execution::{ActionStatus, ExecutionStatus};
use ferry_pipeline::notify::{EventKind, NotificationTarget};
use ferry_pipeline::reports::TestFailure;
use ferry_pipeline::{ActionKind, Pipeline};
use serde::{Deserialize, Serialize};

use super::apply::{Applied, Output, Rejection};
use super::{ClusterState, Command};

/// Events kept for `ferry events` to resume from.
pub const EVENTS_KEPT: usize = 2000;
/// Deliveries given up on, kept for `ferry notify status`.
pub const GAVE_UP_KEPT: usize = 200;
/// Deliveries waiting at once; beyond it the oldest are given up.
pub const OUTBOX_MAX: usize = 10_000;
/// Cluster-wide notification targets.
pub const CLUSTER_TARGETS_MAX: usize = 20;

/// Something that happened, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event, cluster-wide.
    pub id: u64,
    pub at: i64,
    pub kind: EventKind,
    pub pipeline: String,
    pub execution: String,
    pub revision: String,
    /// `STAGE/ACTION` of an approval or deployment event.
    #[serde(default)]
    pub action: Option<String>,
    /// The environment of a deployment event.
    #[serde(default)]
    pub environment: Option<String>,
    /// Who caused it, when a person did (started, decided, stopped).
    #[serde(default)]
    pub by: Option<String>,
    /// One line for people.
    pub message: String,
    /// For an approval waiting: the command that approves it.
    #[serde(default)]
    pub command: Option<String>,
    /// For an approval waiting: the `url:` the approval asks to look at.
    #[serde(default)]
    pub url: Option<String>,
}

/// The recent events and the next id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub next_id: u64,
    pub recent: VecDeque<Event>,
}

/// Where a delivery's target was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetScope {
    Pipeline,
    Cluster,
}

/// One event on its way to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    pub event: Event,
    /// The target as it was when the event happened.
    pub target: NotificationTarget,
    pub scope: TargetScope,
    pub attempts: u32,
    /// When the next attempt is due (unix ms).
    pub next_at: i64,
    pub last_error: Option<String>,
    /// Set once it is given up on.
    pub gave_up_at: Option<i64>,
}

/// The notifier's report on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryResult {
    pub id: u64,
    /// None: delivered.
    pub error: Option<String>,
    /// When to try again (the leader's backoff); None: give up (the
    /// leader's bound on attempts).
    pub retry_at: Option<i64>,
}

/// The deliveries and their next id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub next_id: u64,
    pub deliveries: BTreeMap<u64, Delivery>,
}

/// What [`ClusterState::observe`] saw before a command.
pub(super) struct Observed {
    /// Executions in scope: status and every action's status.
    execs: Vec<(String, ExecutionStatus, Vec<Vec<ActionStatus>>)>,
    scope: Scope,
    at: i64,
}

/// Which executions a command may change: one pipeline's, or any.
enum Scope {
    Pipeline(String),
    All,
}

impl Scope {
    fn covers(&self, exec: &super::Execution) -> bool {
        match self {
            Scope::Pipeline(p) => exec.pipeline == *p,
            Scope::All => true,
        }
    }
}

fn snapshot(exec: &super::Execution) -> (String, ExecutionStatus, Vec<Vec<ActionStatus>>) {
    (
        exec.id.clone(),
        exec.state.status,
        exec.state
            .actions
            .iter()
            .map(|s| s.iter().map(|a| a.status()).collect())
            .collect(),
    )
}

impl ClusterState {
    fn scope(&self, cmd: &Command) -> Option<(Scope, i64)> {
        let of = |execution: &str| {
            self.executions
                .get(execution)
                .map(|e| Scope::Pipeline(e.pipeline.clone()))
        };
        match cmd {
            Command::StartExecution { pipeline, at, .. }
            | Command::SetTransition { pipeline, at, .. } => {
                Some((Scope::Pipeline(pipeline.clone()), *at))
            }
            Command::Assign { execution, at, .. }
            | Command::Decide { execution, at, .. }
            | Command::StopExecution { execution, at, .. }
            | Command::RetryStage { execution, at, .. }
            | Command::ExpireApproval { execution, at, .. } => Some((of(execution)?, *at)),
            Command::FinishAttempt { epoch, at, .. } => {
                Some((of(&self.attempts.get(epoch)?.execution)?, *at))
            }
            Command::Redeploy { at, .. }
            | Command::AgentLost { at, .. }
            | Command::RemoveAgent { at, .. } => Some((Scope::All, *at)),
            _ => None,
        }
    }

    /// The executions `cmd` may change, as they are now.
    pub(super) fn observe(&self, cmd: &Command) -> Option<Observed> {
        let (scope, at) = self.scope(cmd)?;
        let execs = self
            .active
            .iter()
            .filter_map(|id| self.executions.get(id))
            .filter(|e| scope.covers(e))
            .map(snapshot)
            .collect();
        Some(Observed { execs, scope, at })
    }

    /// Records the events between `before` and now, and their deliveries.
    pub(super) fn emit(&mut self, before: Observed) {
        let Observed { execs, scope, at } = before;
        let known: BTreeSet<&str> = execs.iter().map(|(id, _, _)| id.as_str()).collect();
        let mut events: Vec<Event> = self
            .active
            .iter()
            .filter(|id| !known.contains(id.as_str()))
            .filter(|id| self.executions.get(*id).is_some_and(|e| scope.covers(e)))
            .flat_map(|id| self.changes(id, None, at))
            .collect();
        for (id, status, actions) in &execs {
            events.extend(self.changes(id, Some((*status, actions)), at));
        }
        for event in events {
            self.record_event(event);
        }
    }

    /// What changed in execution `id` since `old` (None: it is new).
    fn changes(
        &self,
        id: &str,
        old: Option<(ExecutionStatus, &[Vec<ActionStatus>])>,
        at: i64,
    ) -> Vec<Event> {
        let Some(exec) = self.executions.get(id) else {
            return Vec::new();
        };
        let Some(spec) = self.pipeline_of(exec) else {
            return Vec::new();
        };
        let base = Event {
            id: 0,
            at,
            kind: EventKind::ExecutionStarted,
            pipeline: exec.pipeline.clone(),
            execution: exec.id.clone(),
            revision: exec.revision.clone(),
            action: None,
            environment: None,
            by: None,
            message: String::new(),
            command: None,
            url: None,
        };
        let short: String = exec.revision.chars().take(12).collect();
        let mut out = Vec::new();
        let old_status = match old {
            None => {
                out.push(Event {
                    by: exec.started_by.clone(),
                    message: format!(
                        "{} {} started at {short} ({})",
                        exec.pipeline, exec.id, exec.trigger
                    ),
                    ..base.clone()
                });
                ExecutionStatus::InProgress
            }
            Some((s, _)) => s,
        };
        for (si, stage) in exec.state.actions.iter().enumerate() {
            for (ai, run) in stage.iter().enumerate() {
                let was = old
                    .and_then(|(_, a)| a.get(si).and_then(|s| s.get(ai)).copied())
                    .unwrap_or(ActionStatus::Pending);
                let now = run.status();
                if was == now {
                    continue;
                }
                if let Some(e) = action_event(spec, exec, (si, ai), (was, now), &base, self) {
                    out.push(e);
                }
            }
        }
        let status = exec.state.status;
        if status != old_status && status.is_final() {
            let (kind, word) = match status {
                ExecutionStatus::Succeeded => (EventKind::ExecutionSucceeded, "succeeded"),
                ExecutionStatus::Failed => (EventKind::ExecutionFailed, "failed"),
                ExecutionStatus::Stopped => (EventKind::ExecutionStopped, "was stopped"),
                _ => (EventKind::ExecutionSuperseded, "was superseded"),
            };
            let why = match status {
                ExecutionStatus::Stopped => exec
                    .state
                    .stop
                    .as_ref()
                    .map(|s| format!(" by {}: {}", s.by, s.reason))
                    .unwrap_or_default(),
                ExecutionStatus::Superseded => exec
                    .state
                    .superseded_by
                    .as_ref()
                    .map(|s| format!(" by {s}"))
                    .unwrap_or_default(),
                ExecutionStatus::Failed => failing_tests(spec, exec),
                _ => String::new(),
            };
            out.push(Event {
                kind,
                by: exec.state.stop.as_ref().map(|s| s.by.clone()),
                message: format!("{} {} {word}{why}", exec.pipeline, exec.id),
                ..base
            });
        }
        out
    }

    /// Numbers `event`, keeps it, and queues it for every target that takes it.
    fn record_event(&mut self, mut event: Event) {
        self.events.next_id += 1;
        event.id = self.events.next_id;
        let pipeline_targets = self
            .pipelines
            .get(&event.pipeline)
            .and_then(|p| p.latest())
            .map(|v| v.spec.notifications.as_slice())
            .unwrap_or_default();
        let targets: Vec<(NotificationTarget, TargetScope)> = pipeline_targets
            .iter()
            .map(|t| (t, TargetScope::Pipeline))
            .chain(
                self.notify_targets
                    .values()
                    .map(|t| (t, TargetScope::Cluster)),
            )
            .filter(|(t, _)| t.wants(event.kind))
            .map(|(t, scope)| (t.clone(), scope))
            .collect();
        for (target, scope) in targets {
            self.outbox.next_id += 1;
            let id = self.outbox.next_id;
            self.outbox.deliveries.insert(
                id,
                Delivery {
                    id,
                    event: event.clone(),
                    target,
                    scope,
                    attempts: 0,
                    next_at: event.at,
                    last_error: None,
                    gave_up_at: None,
                },
            );
        }
        self.bound_outbox(event.at);
        self.events.recent.push_back(event);
        while self.events.recent.len() > EVENTS_KEPT {
            self.events.recent.pop_front();
        }
    }

    /// Gives up the oldest pending deliveries beyond [`OUTBOX_MAX`] and
    /// forgets the oldest given-up ones beyond [`GAVE_UP_KEPT`].
    fn bound_outbox(&mut self, at: i64) {
        if self.outbox.deliveries.len() <= GAVE_UP_KEPT.min(OUTBOX_MAX) {
            return; // neither bound can be passed
        }
        let pending: Vec<u64> = self
            .outbox
            .deliveries
            .values()
            .filter(|d| d.gave_up_at.is_none())
            .map(|d| d.id)
            .collect();
        for id in pending
            .iter()
            .take(pending.len().saturating_sub(OUTBOX_MAX))
        {
            if let Some(d) = self.outbox.deliveries.get_mut(id) {
                d.gave_up_at = Some(at);
                d.last_error = Some("given up: too many deliveries waiting".into());
            }
        }
        let gave_up: Vec<u64> = self
            .outbox
            .deliveries
            .values()
            .filter(|d| d.gave_up_at.is_some())
            .map(|d| d.id)
            .collect();
        for id in gave_up
            .iter()
            .take(gave_up.len().saturating_sub(GAVE_UP_KEPT))
        {
            self.outbox.deliveries.remove(id);
        }
    }

    /// The notifier tried these deliveries.
    pub(super) fn notify_attempted(&mut self, results: Vec<DeliveryResult>, at: i64) -> Applied {
        let mut gave_up = false;
        for r in results {
            let Some(d) = self.outbox.deliveries.get_mut(&r.id) else {
                continue; // delivered and reported twice, or forgotten
            };
            if d.gave_up_at.is_some() {
                continue;
            }
            d.attempts += 1;
            match r.error {
                None => {
                    self.outbox.deliveries.remove(&r.id);
                }
                Some(error) => {
                    d.last_error = Some(error);
                    match r.retry_at {
                        Some(next) => d.next_at = next,
                        None => {
                            d.gave_up_at = Some(at);
                            gave_up = true;
                        }
                    }
                }
            }
        }
        if gave_up {
            self.bound_outbox(at);
        }
        Ok(Output::None)
    }

    /// `ferry notify set`: adds or replaces a cluster-wide target.
    pub(super) fn set_notify_target(&mut self, target: NotificationTarget) -> Applied {
        target.check().map_err(Rejection::FailedPrecondition)?;
        if !self.notify_targets.contains_key(&target.name)
            && self.notify_targets.len() >= CLUSTER_TARGETS_MAX
        {
            return Err(Rejection::FailedPrecondition(format!(
                "at most {CLUSTER_TARGETS_MAX} cluster-wide notification targets"
            )));
        }
        self.notify_targets.insert(target.name.clone(), target);
        Ok(Output::None)
    }

    /// `ferry notify remove`; waiting deliveries to it are still sent.
    pub(super) fn remove_notify_target(&mut self, name: &str) -> Applied {
        self.notify_targets
            .remove(name)
            .map(|_| Output::None)
            .ok_or_else(|| Rejection::NotFound(format!("notification target `{name}`")))
    }

    /// Deliveries due at `now`, oldest first (not given up).
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Vec<Delivery> {
        self.outbox
            .deliveries
            .values()
            .filter(|d| d.gave_up_at.is_none() && d.next_at <= now)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Events after `after` (of `pipeline`, when not empty), oldest first, at
    /// most `limit`; and whether events after `after` were already dropped.
    pub fn events_after(&self, after: u64, pipeline: &str, limit: usize) -> (Vec<Event>, bool) {
        let dropped = after > 0
            && self
                .events
                .recent
                .front()
                .is_some_and(|first| first.id > after + 1);
        let events = self
            .events
            .recent
            .iter()
            .filter(|e| e.id > after)
            .filter(|e| pipeline.is_empty() || e.pipeline == pipeline)
            .take(limit)
            .cloned()
            .collect();
        (events, dropped)
    }
}

/// The event an action's change from `was` to `now` makes, if any.
fn action_event(
    spec: &Pipeline,
    exec: &super::Execution,
    (si, ai): (usize, usize),
    (was, now): (ActionStatus, ActionStatus),
    base: &Event,
    state: &ClusterState,
) -> Option<Event> {
    let stage = spec.stages.get(si)?;
    let action = stage.actions.get(ai)?;
    let run = exec.state.action(si, ai)?;
    let path = format!("{}/{}", stage.name, action.name);
    let base = Event {
        action: Some(path.clone()),
        ..base.clone()
    };
    match action.kind {
        ActionKind::Approval => {
            if now == ActionStatus::WaitingForApproval {
                let asks = Some(&action.message)
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {}", run.resolved_text(m)))
                    .unwrap_or_default();
                Some(Event {
                    kind: EventKind::ApprovalWaiting,
                    message: format!(
                        "{} {} waits for approval at {path}{asks}",
                        exec.pipeline, exec.id
                    ),
                    command: Some(format!(
                        "ferry approve {} --execution {} --action {path}",
                        exec.pipeline, exec.id
                    )),
                    url: Some(&action.url)
                        .filter(|u| !u.is_empty())
                        .map(|u| run.resolved_text(u)),
                    ..base
                })
            } else if was == ActionStatus::WaitingForApproval && now.is_final() {
                let last = run.approvals.last();
                let decision = match (now, last) {
                    (ActionStatus::Succeeded, Some(d)) => {
                        format!("approved by {}", d.by)
                    }
                    (ActionStatus::Failed, Some(d)) if !d.approve => {
                        format!("rejected by {}: {}", d.by, d.comment)
                    }
                    _ => run.message.clone(),
                };
                Some(Event {
                    kind: EventKind::ApprovalDecided,
                    by: last.map(|d| d.by.clone()),
                    message: format!("{} {} {path}: {decision}", exec.pipeline, exec.id),
                    ..base
                })
            } else {
                None
            }
        }
        ActionKind::Deploy => {
            let environment = action.deploy.as_ref().map(|d| d.environment.clone());
            let env = environment.clone().unwrap_or_default();
            let base = Event {
                environment,
                ..base
            };
            let (kind, word) = match now {
                ActionStatus::InProgress if was == ActionStatus::Pending => {
                    (EventKind::DeploymentStarted, "started")
                }
                ActionStatus::Succeeded => (EventKind::DeploymentSucceeded, "succeeded"),
                ActionStatus::Failed | ActionStatus::Stopped => {
                    let rolled_back = state
                        .deployments
                        .values()
                        .rev()
                        .find(|d| d.execution == exec.id && d.stage == si && d.action == ai)
                        .is_some_and(|d| {
                            d.finished_at == base.at
                                && d.outcome == ferry_pipeline::spec::DeployOutcome::RolledBack
                        });
                    if rolled_back {
                        (
                            EventKind::DeploymentRolledBack,
                            "failed and was rolled back",
                        )
                    } else {
                        (EventKind::DeploymentFailed, "failed")
                    }
                }
                _ => return None,
            };
            let detail = if now.is_final() && !run.message.is_empty() {
                format!(": {}", run.message)
            } else {
                String::new()
            };
            Some(Event {
                kind,
                message: format!(
                    "{} {} deployment to {env} {word}{detail}",
                    exec.pipeline, exec.id
                ),
                ..base
            })
        }
        ActionKind::Build | ActionKind::Test | ActionKind::Plugin => None,
    }
}

/// Most failed tests named in an `execution.failed` message.
const NAMED_FAILURES: usize = 5;

/// For an `execution.failed` message: each action whose test reports had
/// failures, its counts and the first failed tests' names.
fn failing_tests(spec: &Pipeline, exec: &crate::Execution) -> String {
    let mut parts = Vec::new();
    for (stage, runs) in spec.stages.iter().zip(&exec.state.actions) {
        for (action, run) in stage.actions.iter().zip(runs) {
            let Some(tests) = run.tests.as_ref().filter(|t| t.failing() > 0) else {
                continue;
            };
            let names: Vec<String> = tests
                .failures
                .iter()
                .take(NAMED_FAILURES)
                .map(TestFailure::title)
                .collect();
            let more = tests.failing().saturating_sub(names.len() as u64);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            parts.push(format!(
                "{}/{} tests {}; failed: {}{more}",
                stage.name,
                action.name,
                tests.line(),
                names.join(", ")
            ));
        }
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!(": {}", parts.join("; ")),
    }
}
