//! Triggers: what starts an execution without a person — a verified git
//! webhook, a due schedule slot, a new branch head the poller saw. Each goes
//! through [`Ops::start_once`], whose command records what started it
//! (`state/triggers.rs`), so a redelivery, a retried proposal or a failover
//! starts nothing twice. The source's trigger filters (branches, tags,
//! paths) decide which pushes and heads start anything.

use ferry_pipeline::condition::SourceRef;
use ferry_pipeline::trigger::{GitPush, GitRefEvent, RefKind};
use ferry_pipeline::{Pipeline, Source};

use super::{OpError, OpResult, Ops, new_execution_id};
use crate::views::now_ms;
use ferry_state::{Command, DueSlot, Once, Rejection, ScheduleState};

/// How late a missed schedule slot may still fire in its turn (a short
/// failover); older missed slots collapse into one run.
const CATCH_UP_MS: i64 = 60_000;

/// An execution to start at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOnce {
    pub pipeline: String,
    /// The resolved commit.
    pub revision: String,
    pub trigger: String,
    pub source: Option<SourceRef>,
    pub once: Once,
}

/// What [`Ops::start_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    Started(String),
    /// It had happened already: the execution it started then, if known.
    AlreadyDone(Option<String>),
}

/// What a webhook push led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// An execution started for `revision`.
    Started { execution: String, revision: String },
    /// This delivery was seen before; the execution it started, if known.
    AlreadyDelivered { execution: Option<String> },
    /// Nothing to do, and why: no trigger takes it, a deleted ref, ...
    Ignored(String),
}

/// The branch or tag a ref event names.
fn source_ref(kind: RefKind, name: &str) -> SourceRef {
    match kind {
        RefKind::Branch => SourceRef::Branch(name.to_string()),
        RefKind::Tag => SourceRef::Tag(name.to_string()),
    }
}

/// Whether a branch event could need its changed files (a `paths` filter).
fn needs_paths(source: &Source, kind: RefKind) -> bool {
    kind == RefKind::Branch
        && source
            .effective_triggers()
            .iter()
            .any(|t| t.branches.is_some() && t.paths.is_some())
}

impl Ops {
    /// Write: starts an execution unless what `req.once` names already
    /// started one (or, for a schedule slot, is no longer due).
    pub async fn start_once(&self, req: StartOnce) -> OpResult<Begun> {
        let id = new_execution_id();
        let delivery = match &req.once {
            Once::Delivery(d) => Some(d.clone()),
            _ => None,
        };
        let is_slot = matches!(req.once, Once::Slot { .. });
        let pipeline = req.pipeline.clone();
        let out = self
            .write(Command::StartExecution {
                id: id.clone(),
                pipeline: req.pipeline,
                revision: req.revision,
                trigger: req.trigger,
                started_by: None,
                variables: Default::default(),
                source: req.source,
                once: Some(req.once),
                at: now_ms(),
            })
            .await;
        match out {
            Ok(_) => Ok(Begun::Started(id)),
            Err(OpError::Rejected(Rejection::AlreadyExists(_))) => {
                // Our own retried proposal that committed after all, or
                // what started an execution before.
                let earlier = self.local_read(|s| {
                    if s.executions.contains_key(&id) {
                        return Some(id.clone());
                    }
                    let d = delivery.as_deref()?;
                    Some(s.pipelines.get(&pipeline)?.delivery(d)?.execution.clone())
                });
                Ok(match earlier {
                    Some(e) if e == id => Begun::Started(id),
                    other => Begun::AlreadyDone(other),
                })
            }
            Err(OpError::Rejected(Rejection::FailedPrecondition(_))) if is_slot => {
                Ok(Begun::AlreadyDone(None))
            }
            Err(e) => Err(e),
        }
    }

    /// Linearizable: the latest definition of `pipeline`.
    async fn latest_spec(&self, pipeline: &str) -> OpResult<Pipeline> {
        self.read(|s| {
            s.pipelines
                .get(pipeline)
                .and_then(|p| p.latest())
                .map(|v| v.spec.clone())
                .ok_or_else(|| OpError::NotFound(format!("pipeline `{pipeline}` not found")))
        })
        .await?
    }

    /// Linearizable: the plain value of the secret `pipeline`'s source
    /// names in `webhook_secret`, which a git host's request must prove.
    pub async fn webhook_secret(&self, pipeline: &str) -> OpResult<Vec<u8>> {
        let spec = self.latest_spec(pipeline).await?;
        let name = spec.source.webhook_secret.ok_or_else(|| {
            OpError::FailedPrecondition(format!(
                "pipeline `{pipeline}` takes no webhooks: its source sets no `webhook_secret`"
            ))
        })?;
        self.local_secret_value(&name).map_err(|e| match e {
            OpError::NotFound(_) => OpError::FailedPrecondition(format!(
                "the webhook secret `{name}` of pipeline `{pipeline}` is not set (`ferry secret set {name}`)"
            )),
            e => e,
        })
    }

    /// Write: what a verified webhook push starts. The delivery id is
    /// recorded with the execution; the execution builds exactly the
    /// pushed commit, fetched into this member's mirror. A push the
    /// triggers take starts only when the repository agrees with it: the
    /// commit is on the branch it names (its head or an ancestor of it, the
    /// branch fetched just now) or is the commit the tag points at — else
    /// the run would be treated as that branch (`when: {branch: main}`)
    /// for a commit that never was on it, and nothing starts (`Invalid`,
    /// 400 to the git host).
    pub async fn git_push(
        &self,
        pipeline: &str,
        delivery: &str,
        push: GitPush,
    ) -> OpResult<PushOutcome> {
        let spec = self.latest_spec(pipeline).await?;
        let earlier = self.local_read(|s| {
            s.pipelines
                .get(pipeline)
                .and_then(|p| p.delivery(delivery))
                .map(|d| d.execution.clone())
        });
        if let Some(execution) = earlier {
            return Ok(PushOutcome::AlreadyDelivered {
                execution: Some(execution),
            });
        }
        let what = match push.kind {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        };
        if push.deleted {
            return Ok(PushOutcome::Ignored(format!(
                "{what} `{}` was deleted",
                push.name
            )));
        }
        let url = &spec.source.git;
        let git = &self.ctx().git;
        let revision = git
            .resolve(url, &push.after)
            .await
            .map_err(|e| OpError::Unavailable(format!("fetching {}: {e}", push.after)))?;
        let changed = if needs_paths(&spec.source, push.kind) {
            Some(
                git.changed_paths(url, push.before.as_deref(), &revision)
                    .await
                    .map_err(|e| OpError::Unavailable(e.to_string()))?,
            )
        } else {
            None
        };
        let event = GitRefEvent {
            kind: push.kind,
            name: &push.name,
            changed_paths: changed.as_deref(),
        };
        if let Err(why) = spec.source.trigger_for(&event) {
            tracing::info!(%pipeline, %delivery, reason = %why, "webhook push starts nothing");
            return Ok(PushOutcome::Ignored(why));
        }
        let source = source_ref(push.kind, &push.name);
        let holds = git
            .ref_holds(url, &source, &revision)
            .await
            .map_err(|e| OpError::Unavailable(format!("checking {what} `{}`: {e}", push.name)))?;
        let short: String = revision.chars().take(12).collect();
        if !holds {
            tracing::warn!(%pipeline, %delivery, %revision, git_ref = %push.name, "webhook push refused: the commit is not on the ref it names");
            let relation = match push.kind {
                RefKind::Branch => "reachable from the head of",
                RefKind::Tag => "the commit of",
            };
            return Err(OpError::Invalid(format!(
                "commit {short} is not {relation} {what} `{}` in the pipeline's repository; \
                 nothing started",
                push.name
            )));
        }
        let begun = self
            .start_once(StartOnce {
                pipeline: pipeline.to_string(),
                revision: revision.clone(),
                trigger: format!("webhook: push of {short} to {what} {}", push.name),
                source: Some(source),
                once: Once::Delivery(delivery.to_string()),
            })
            .await?;
        Ok(match begun {
            Begun::Started(execution) => {
                tracing::info!(%pipeline, %execution, %revision, %delivery, "execution started by a webhook");
                PushOutcome::Started {
                    execution,
                    revision,
                }
            }
            Begun::AlreadyDone(execution) => PushOutcome::AlreadyDelivered { execution },
        })
    }

    /// Leader loop (schedules), local read then writes: arms the schedule
    /// of every pipeline whose latest version changed it, from `now`.
    pub async fn arm_schedules(&self, now: i64) {
        let changed = self.local_read(|s| s.schedules_to_arm());
        for (pipeline, wanted) in changed {
            let schedule = wanted.map(|w| ScheduleState {
                next: w.next_after(now),
                cron: w.cron,
                timezone: w.timezone,
            });
            if let Err(e) = self
                .write(Command::ArmSchedule {
                    pipeline: pipeline.clone(),
                    schedule,
                })
                .await
            {
                tracing::warn!(%pipeline, error = %e, "could not arm the schedule");
            }
        }
    }

    /// Leader loop (schedules): starts one execution per due slot, at the
    /// head of the pipeline's branch; the slot moves on in the same command.
    /// Pipelines in `resting` are left for now; returns those whose branch
    /// could not be read (the slot stays due, to be tried again later).
    pub async fn fire_schedules(
        &self,
        now: i64,
        resting: &std::collections::HashSet<String>,
    ) -> Vec<String> {
        let due: Vec<DueSlot> = self.local_read(|s| s.due_schedules(now));
        let mut failed = Vec::new();
        for slot in due.into_iter().filter(|d| !resting.contains(&d.pipeline)) {
            let pipeline = slot.pipeline.clone();
            let head = match self.ctx().git.branch_head(&slot.url, &slot.branch).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(%pipeline, error = %e, "scheduled run cannot read its branch; retrying");
                    failed.push(pipeline);
                    continue;
                }
            };
            // Slots missed in a short failover still fire, one by one; after
            // a long outage only one run starts and the next is after now.
            let next = match slot.schedule.next_after(slot.slot) {
                Some(n) if n >= now - CATCH_UP_MS => Some(n),
                _ => slot.schedule.next_after(now),
            };
            let begun = self
                .start_once(StartOnce {
                    pipeline: pipeline.clone(),
                    revision: head.clone(),
                    trigger: format!(
                        "schedule `{}` ({}), slot {}",
                        slot.schedule.cron,
                        slot.schedule.timezone,
                        crate::views::rfc3339(slot.slot)
                    ),
                    source: Some(SourceRef::Branch(slot.branch.clone())),
                    once: Once::Slot {
                        slot: slot.slot,
                        next,
                    },
                })
                .await;
            match begun {
                Ok(Begun::Started(id)) => {
                    tracing::info!(%pipeline, execution = %id, revision = %head, slot = slot.slot, "execution started by its schedule")
                }
                Ok(Begun::AlreadyDone(_)) => {}
                Err(e) => {
                    tracing::warn!(%pipeline, error = %e, "scheduled run did not start");
                    failed.push(pipeline);
                }
            }
        }
        failed
    }

    /// The poller saw `head` on `branch`: start an execution if the
    /// source's triggers take it (the files it changed since `seen`), or
    /// only record it.
    pub async fn polled_head(
        &self,
        pipeline: &str,
        (url, branch): (&str, &str),
        seen: Option<&str>,
        head: &str,
    ) -> OpResult<Option<String>> {
        let spec = self.latest_spec(pipeline).await?;
        let changed = if needs_paths(&spec.source, RefKind::Branch) {
            self.ctx().git.resolve(url, head).await.ok();
            self.ctx().git.changed_paths(url, seen, head).await.ok()
        } else {
            None
        };
        let event = GitRefEvent {
            kind: RefKind::Branch,
            name: branch,
            changed_paths: changed.as_deref(),
        };
        if let Err(why) = spec.source.trigger_for(&event) {
            tracing::info!(%pipeline, %head, reason = %why, "new head starts nothing");
            self.record_source_seen(pipeline, head).await?;
            return Ok(None);
        }
        let begun = self
            .start_once(StartOnce {
                pipeline: pipeline.to_string(),
                revision: head.to_string(),
                trigger: format!("new commit on {branch}"),
                source: Some(SourceRef::Branch(branch.to_string())),
                once: Once::Head(head.to_string()),
            })
            .await?;
        Ok(match begun {
            Begun::Started(id) => Some(id),
            Begun::AlreadyDone(_) => None,
        })
    }
}
