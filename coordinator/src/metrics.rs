//! Prometheus metrics of one coordinator member, served in the text format on
//! `GET /metrics` (plain HTTP) when `--metrics-listen` is given. Gauges are
//! computed at scrape time from the applied cluster state, the Raft status and
//! the leader's agent hub; the dispatch-latency histogram is observed by the
//! scheduler when it sends an assignment.

use std::collections::BTreeSet;
use std::sync::Mutex;

use ferry_pipeline::execution::{ActionRun, ExecutionStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use thiserror::Error;

use crate::ops::Ops;
use ferry_state::ClusterState;

/// Upper bounds (seconds) of the dispatch-latency buckets: from an idle
/// cluster (milliseconds) to actions that wait for capacity (up to an hour).
const DISPATCH_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("encoding the metrics failed")]
    Encode(#[from] std::fmt::Error),
}

/// One label, e.g. `state="connected"`.
type Label = [(&'static str, &'static str); 1];

/// The coordinator's metrics; lives in [`Ctx`].
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time refreshes and encodes the scrape-time gauges.
    scrape: Mutex<()>,
    queue_depth: Gauge,
    running_actions: Gauge,
    agents: Family<Label, Gauge>,
    raft_term: Gauge,
    raft_commit_index: Gauge,
    raft_applied_index: Gauge,
    raft_is_leader: Gauge,
    dispatch_latency: Histogram,
    executions: Family<Label, Gauge>,
    agent_cert_expiry: Family<Vec<(String, String)>, Gauge>,
    source_polls: Family<Label, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            queue_depth: Gauge::default(),
            running_actions: Gauge::default(),
            agents: Family::default(),
            raft_term: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_is_leader: Gauge::default(),
            dispatch_latency: Histogram::new(DISPATCH_BUCKETS),
            executions: Family::default(),
            agent_cert_expiry: Family::default(),
            source_polls: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "ferry_queue_depth",
            "Build and test actions waiting for an agent",
            m.queue_depth.clone(),
        );
        r.register(
            "ferry_running_actions",
            "Attempts assigned to an agent and not finished",
            m.running_actions.clone(),
        );
        r.register(
            "ferry_agents",
            "Enrolled agents by state (draining first; connected as seen by this member's hub, which only the leader fills)",
            m.agents.clone(),
        );
        r.register(
            "ferry_raft_term",
            "Current Raft term of this member",
            m.raft_term.clone(),
        );
        r.register(
            "ferry_raft_commit_index",
            "Highest Raft log index known committed on this member",
            m.raft_commit_index.clone(),
        );
        r.register(
            "ferry_raft_applied_index",
            "Highest Raft log index applied to this member's state",
            m.raft_applied_index.clone(),
        );
        r.register(
            "ferry_raft_is_leader",
            "1 if this member is the Raft leader, else 0",
            m.raft_is_leader.clone(),
        );
        r.register(
            "ferry_dispatch_latency_seconds",
            "Time from an action being queued to its assignment being sent to an agent (observed by the leader)",
            m.dispatch_latency.clone(),
        );
        r.register(
            "ferry_executions",
            "Executions in the cluster state by status",
            m.executions.clone(),
        );
        r.register(
            "ferry_agent_certificate_expiry_timestamp_seconds",
            "When each enrolled agent's certificate expires (unix seconds)",
            m.agent_cert_expiry.clone(),
        );
        r.register(
            "ferry_source_polls",
            "Source polls by this member while leading, by result (ok, error)",
            m.source_polls.clone(),
        );
        m
    }

    /// Counts one poll of a pipeline's source.
    pub fn observe_poll(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.source_polls.get_or_create(&[("result", result)]).inc();
    }

    /// Records one dispatch: queued at `queued_at_ms`, sent at `sent_at_ms` (unix ms).
    /// A negative span (clocks of different leaders) counts as zero.
    pub fn observe_dispatch(&self, queued_at_ms: i64, sent_at_ms: i64) {
        let ms = sent_at_ms.saturating_sub(queued_at_ms).max(0);
        self.dispatch_latency.observe(ms as f64 / 1000.0);
    }

    /// Refreshes the scrape-time gauges through `ops` (this member's own
    /// view, leader or not: a local read) and encodes everything.
    pub fn render(&self, ops: &Ops) -> Result<String, MetricsError> {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        // The hub's lock is taken apart from the state's, never inside it.
        let connected: BTreeSet<String> = ops.ctx().agents.connected().into_iter().collect();
        let status = ops.raft_status();
        let snap = ops.local_read(|s| Snapshot::of(s, &connected));

        self.queue_depth.set(count(snap.queued));
        self.running_actions.set(count(snap.running));
        for (state, n) in [
            ("connected", snap.connected),
            ("disconnected", snap.disconnected),
            ("draining", snap.draining),
        ] {
            self.agents.get_or_create(&[("state", state)]).set(count(n));
        }
        self.raft_term.set(index(status.term));
        self.raft_commit_index.set(index(status.commit));
        self.raft_applied_index.set(index(status.applied));
        self.raft_is_leader.set(i64::from(status.is_leader));
        for (state, n) in [
            ("succeeded", snap.succeeded),
            ("failed", snap.failed),
            ("in_progress", snap.in_progress),
            ("stopping", snap.stopping),
            ("stopped", snap.stopped),
            ("superseded", snap.superseded),
        ] {
            self.executions
                .get_or_create(&[("status", state)])
                .set(count(n));
        }
        let expiries: Vec<(String, i64)> = ops.local_read(|s| {
            s.agents
                .values()
                .filter_map(|a| {
                    a.cert
                        .as_ref()
                        .map(|c| (a.name.clone(), c.not_after / 1000))
                })
                .collect()
        });
        // Removed agents drop out of the family.
        self.agent_cert_expiry.clear();
        for (agent, at) in expiries {
            self.agent_cert_expiry
                .get_or_create(&vec![("agent".to_string(), agent)])
                .set(at);
        }
        self.encode()
    }

    fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn index(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// When a queued action joined the queue (unix ms): when the pipeline started
/// it, or when its last attempt ended (a retry, or a re-queue after its agent
/// was lost), whichever is later.
pub fn queued_since(run: &ActionRun) -> Option<i64> {
    let ended = run.history.last().and_then(|h| h.finished_at);
    run.started_at.max(ended)
}

/// The state-derived values of one scrape.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    queued: usize,
    running: usize,
    connected: usize,
    disconnected: usize,
    draining: usize,
    succeeded: usize,
    failed: usize,
    in_progress: usize,
    stopping: usize,
    stopped: usize,
    superseded: usize,
}

impl Snapshot {
    /// Each enrolled agent counts once: draining, else connected (an open
    /// session in `connected`), else disconnected.
    fn of(s: &ClusterState, connected: &BTreeSet<String>) -> Snapshot {
        let mut snap = Snapshot {
            queued: s.queued().len(),
            ..Snapshot::default()
        };
        snap.running = s
            .running_counts()
            .iter()
            .filter(|(a, _)| s.agents.contains_key(**a))
            .map(|(_, n)| n)
            .sum();
        for a in s.agents.values() {
            if a.draining {
                snap.draining += 1;
            } else if connected.contains(&a.name) {
                snap.connected += 1;
            } else {
                snap.disconnected += 1;
            }
        }
        for e in s.executions.values() {
            match e.state.status {
                ExecutionStatus::Succeeded => snap.succeeded += 1,
                ExecutionStatus::Failed => snap.failed += 1,
                ExecutionStatus::InProgress => snap.in_progress += 1,
                ExecutionStatus::Stopping => snap.stopping += 1,
                ExecutionStatus::Stopped => snap.stopped += 1,
                ExecutionStatus::Superseded => snap.superseded += 1,
            }
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use ferry_pipeline::execution::{AttemptRecord, Outcome};

    use super::*;

    #[test]
    fn queued_since_is_the_later_of_start_and_last_attempt_end() {
        let mut run = ActionRun {
            started_at: Some(1_000),
            ..ActionRun::default()
        };
        assert_eq!(queued_since(&run), Some(1_000));
        run.started_at = Some(2_000); // the lost attempt's assignment
        run.history.push(AttemptRecord {
            attempt: 1,
            epoch: 1,
            agent: "a".into(),
            outcome: Outcome::Lost,
            exit_code: None,
            started_at: 2_000,
            finished_at: Some(5_000),
            message: String::new(),
        });
        assert_eq!(queued_since(&run), Some(5_000));
        assert_eq!(queued_since(&ActionRun::default()), None);
    }

    #[test]
    fn latency_is_never_negative() {
        let m = Metrics::new();
        m.observe_dispatch(2_000, 1_500);
        m.observe_dispatch(1_000, 1_250);
        let text = m.encode().unwrap_or_else(|e| panic!("{e}"));
        for line in [
            "ferry_dispatch_latency_seconds_count 2",
            "ferry_dispatch_latency_seconds_sum 0.25",
            "ferry_dispatch_latency_seconds_bucket{le=\"0.01\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn empty_state_snapshot_is_zero() {
        let snap = Snapshot::of(&ClusterState::default(), &BTreeSet::new());
        assert_eq!(snap, Snapshot::default());
    }
}
