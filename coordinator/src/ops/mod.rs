//! The application layer: every operation of the coordinator, one module per
//! aggregate, over plain Rust and state types (no generated `pb` types). The
//! gRPC services, the agent session and the leader's loops are adapters over
//! it, and nothing else touches the Raft handle.
//!
//! [`Ops`] offers exactly these ways to touch Raft, and each operation says in
//! its doc comment (and by which it uses) what consistency it gives:
//!
//! - [`Ops::read`] — linearizable: a Raft read index first, then a closure
//!   over the applied state. Every operator-facing read.
//! - [`Ops::write`] — proposes a command, forwarded to the leader if need be;
//!   it returns once the command is committed *and applied here*
//!   (read-your-writes). [`Ops::write_new`] is the same for a command that
//!   creates a record under a fresh random id, where `AlreadyExists` means a
//!   retried proposal that had committed after all, so it counts as success.
//! - [`Ops::leader`] — leader-only calls: says whether this member leads or
//!   gives a channel to the one that does (live logs, the agent list,
//!   membership changes, leader transfer); [`Ops::add_member`],
//!   [`Ops::remove_member`] and [`Ops::transfer_leader`] run on the leader
//!   only, and [`Ops::propose_forwarded`] serves a follower's forwarded
//!   proposal there.
//! - [`Ops::local_read`] — this member's applied state as it is, possibly
//!   stale. Used deliberately and only by:
//!   - the leader's own loops (scheduler, poller, timers, leases, replicator,
//!     retention, bootstrap) and the agent session, which run on the leader:
//!     whatever they propose is checked again by `apply`, and a barrier per
//!     round would cost a heartbeat each;
//!   - `whoami`, which shows the roles this member's `authz` layer checks
//!     calls against, and the source lookup of `start_execution` before it
//!     resolves the revision: `apply` checks the pipeline and the caller's
//!     role again, in log order (tests/authz_in_apply.rs relies on both);
//!   - enrollment's first token check (a refusal is only final after a
//!     barrier: [`Ops::may_enroll`]);
//!   - follow-ups of a stream that began with a linearizable read (watching
//!     an execution, following a log): they track this member's applied
//!     index, which only moves forward;
//!   - `ferry cluster status`, which must answer on a member cut off from
//!     the leader (that is when it is needed most), and likewise the
//!     health reports (`health.rs`) and the scrape-time gauges
//!     (`metrics.rs`): they report this member's own view, leader or not;
//!   - the `authz` layer's roles of the caller, before any handler: it
//!     must not wait on Raft, and `apply` checks the role again;
//!   - the console's session lookup (`console_user`), checked on every
//!     request as `authz.rs` checks gRPC callers, and the trust domain a
//!     console user's writes act in (set once, at bootstrap);
//!   - the answer an operation builds right after its own write (decide,
//!     role bindings, secrets, environments): the write was applied here.
//!
//! Nothing outside `ops` touches the Raft handle: `raft/` owns it and
//! `server.rs` only makes it and hands it to the application context
//! (`crate::app`).

pub mod access;
pub mod agents;
pub mod approvals;
pub mod artifacts;
pub mod caches;
pub mod cluster;
pub mod console;
pub mod deployments;
pub mod environments;
pub mod executions;
pub mod notify;
pub mod page;
pub mod pipelines;
pub mod secrets;
pub mod steering;
pub mod triggers;

#[cfg(test)]
mod tests;

use rand::Rng;
use thiserror::Error;

use crate::app::SharedCtx;
use crate::raft::{ProposeError, RaftStatus};
use ferry_certs::Identity;
use ferry_state::{ClusterState, Command, Output, Reason, Rejection};

/// Why an operation failed. Mapped to a gRPC status in one place
/// (`service::status`).
#[derive(Debug, Error)]
pub enum OpError {
    /// The request itself is wrong (bad name, file, limit, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Refused for `Reason` (the API's `ErrorInfo.reason`).
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// A pipeline or environment file with problems: the joined text, and
    /// each problem with its position (the API's `BadRequest` violations).
    #[error("{summary}")]
    Lint {
        summary: String,
        problems: Vec<LintProblem>,
    },
    /// Not possible right now (no leader, a peer or agent unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// Did not finish in time; it may finish later.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
    /// The state machine refused the command (or the early check did).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Raft could not take the command or the read.
    #[error(transparent)]
    Raft(ProposeError),
}

impl From<ProposeError> for OpError {
    fn from(e: ProposeError) -> OpError {
        match e {
            ProposeError::Rejected(r) => OpError::Rejected(r),
            e => OpError::Raft(e),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Where a leader-only call runs.
pub enum Leader {
    /// This member leads: run it here.
    Here,
    /// Member `id` leads: forward the call over `channel`.
    At {
        id: u64,
        channel: tonic::transport::Channel,
    },
}

/// The application layer's handle: cheap to clone.
#[derive(Clone)]
pub struct Ops(pub SharedCtx);

impl Ops {
    pub fn new(ctx: SharedCtx) -> Ops {
        Ops(ctx)
    }

    /// Everything else the coordinator holds (CA, hubs, git, settings).
    pub fn ctx(&self) -> &SharedCtx {
        &self.0
    }

    /// Linearizable read: waits for a Raft read index, then runs `f` on the
    /// applied state.
    pub async fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> OpResult<R> {
        self.0.raft.read_barrier().await?;
        Ok(self.0.raft.read(f))
    }

    /// Possibly stale read of this member's applied state; see the module
    /// documentation for who may use it and why.
    pub fn local_read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.0.raft.read(f)
    }

    /// Proposes `cmd`; returns once it is committed and applied on this member.
    /// A command that some member could not apply (newer than the cluster
    /// version) is refused here, before it reaches the log; first the
    /// members are asked once whether the cluster version may rise (a new
    /// cluster, or one whose last member was just upgraded, may not have
    /// raised it yet).
    pub async fn write(&self, cmd: Command) -> OpResult<Output> {
        if self.local_read(|s| s.can_propose(&cmd)).is_err()
            && cmd.since() <= ferry_state::version::Version::this_build()
        {
            // Boxed: raising the version is itself a write.
            if let Err(e) = Box::pin(self.raise_cluster_version()).await {
                tracing::debug!(error = %e, "could not raise the cluster version");
            }
        }
        self.local_read(|s| s.can_propose(&cmd))?;
        Ok(self.0.raft.propose(cmd).await?)
    }

    /// The first result of `who`'s request (`request_id`), when the state
    /// remembers it: the answer to a repeated write, which is not applied
    /// again. An id used before for another request is refused.
    pub fn remembered(
        &self,
        who: &Identity,
        request: Option<&RequestId>,
    ) -> OpResult<Option<Output>> {
        let Some(r) = request else { return Ok(None) };
        match self.local_read(|s| s.remembered(&who.name, &r.id, &r.fingerprint)) {
            None => Ok(None),
            Some(Ok(out)) => Ok(Some(out)),
            Some(Err(refused)) => Err(OpError::Rejected(refused)),
        }
    }

    /// [`Ops::write`], once per request id when there is one: the command
    /// goes in wrapped (`Command::Requested`), so that `apply` answers a
    /// repeated id with the first result instead of applying it again.
    pub async fn write_requested(
        &self,
        who: &Identity,
        request: Option<&RequestId>,
        cmd: Command,
    ) -> OpResult<Output> {
        let Some(r) = request else {
            return self.write(cmd).await;
        };
        self.write(Command::Requested {
            caller: who.name.clone(),
            request_id: r.id.clone(),
            fingerprint: r.fingerprint.clone(),
            at: crate::views::now_ms(),
            command: Box::new(cmd),
        })
        .await
    }

    /// [`Ops::write`] for a command creating a record under a fresh random
    /// id: `AlreadyExists` is a retried proposal that committed after all (the
    /// id is random, so an existing one is ours) and counts as success.
    pub async fn write_new(&self, cmd: Command) -> OpResult<Option<Output>> {
        match self.write(cmd).await {
            Ok(out) => Ok(Some(out)),
            Err(OpError::Rejected(Rejection::AlreadyExists(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where a leader-only call runs: here, or at the leader over a channel.
    pub fn leader(&self) -> OpResult<Leader> {
        let status = self.0.raft.status();
        if status.is_leader {
            return Ok(Leader::Here);
        }
        let leader = status.leader_id;
        if leader == 0 {
            return Err(OpError::Unavailable(
                "no leader is elected right now; retry shortly".into(),
            ));
        }
        let addr = self.0.raft.address_of(leader).ok_or_else(|| {
            OpError::Unavailable(format!(
                "the leader is member {leader}, whose address is unknown"
            ))
        })?;
        let channel = self
            .0
            .raft
            .tls()
            .channel(leader, &addr)
            .map_err(|e| OpError::Unavailable(e.to_string()))?;
        Ok(Leader::At {
            id: leader,
            channel,
        })
    }

    /// Leader-only (the Raft transport's server side): proposes a command a
    /// follower forwarded. Outer error: not proposed for want of a leader;
    /// inner: the command's own outcome, and the log index it took.
    pub async fn propose_forwarded(
        &self,
        cmd: Command,
    ) -> Result<(Result<Output, ProposeError>, u64), ProposeError> {
        self.0.raft.propose_local(cmd).await
    }

    /// Steps a Raft message a peer sent (the Raft transport's server side).
    pub fn step(&self, msg: raft::eraftpb::Message) -> Result<(), ProposeError> {
        self.0.raft.step(msg)
    }

    /// This member's Raft status (no state read).
    pub fn raft_status(&self) -> RaftStatus {
        self.0.raft.status()
    }

    /// This member's Raft status as it changes.
    pub fn status_watch(&self) -> tokio::sync::watch::Receiver<RaftStatus> {
        self.0.raft.status_watch()
    }

    /// Ticks whenever this member applied more of the log.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.raft.applied()
    }

    /// Waits up to `limit` until this member's Raft status satisfies `done`.
    pub async fn wait_for_status(
        &self,
        limit: std::time::Duration,
        done: impl Fn(&RaftStatus) -> bool,
    ) -> bool {
        let mut w = self.0.raft.status_watch();
        let wait = async {
            while !done(&w.borrow()) {
                if w.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }
}

/// A fresh execution id: 10 characters without look-alikes.
pub fn new_execution_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh cluster id: 16 random bytes in hex (at bootstrap and restore).
pub fn new_cluster_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Most items one list call returns (and its default).
const MAX_LIST_LIMIT: u32 = 1_000;
const DEFAULT_LIST_LIMIT: u32 = 20;

/// A list call's `limit`: 0 means the default; more than the maximum is refused.
pub fn list_limit(limit: u32) -> OpResult<usize> {
    match limit {
        0 => Ok(DEFAULT_LIST_LIMIT as usize),
        n if n > MAX_LIST_LIMIT => Err(OpError::Invalid(format!(
            "--limit is at most {MAX_LIST_LIMIT}"
        ))),
        n => Ok(n as usize),
    }
}

/// A file that failed validation: every problem as FILE:LINE:COL: message.
pub fn invalid(kind: &str, file: &str, diags: &[ferry_pipeline::Diagnostic]) -> OpError {
    let file = if file.is_empty() { "<input>" } else { file };
    let lines: Vec<String> = diags.iter().map(|d| format!("{file}:{d}")).collect();
    OpError::Lint {
        summary: format!(
            "{kind} is invalid; nothing was applied:\n{}",
            lines.join("\n")
        ),
        problems: diags
            .iter()
            .map(|d| LintProblem {
                file: file.to_string(),
                line: d.line,
                column: d.column,
                message: d.message.clone(),
            })
            .collect(),
    }
}

/// One problem of a file that was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintProblem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A write's `request_id` and what the request asked, hashed
/// (`fingerprint`): the same id with another request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    pub id: String,
    pub fingerprint: String,
}

impl RequestId {
    /// None for an empty id (no request id); `parts` are the request's
    /// fields that say what it asks, in a fixed order.
    pub fn new(id: &str, method: &str, parts: &[&str]) -> OpResult<Option<RequestId>> {
        use sha2::Digest;
        if id.is_empty() {
            return Ok(None);
        }
        ferry_state::requests::check_id(id).map_err(OpError::Invalid)?;
        let mut hash = sha2::Sha256::new();
        for part in std::iter::once(method).chain(parts.iter().copied()) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Ok(Some(RequestId {
            id: id.to_string(),
            fingerprint: hex::encode(hash.finalize()),
        }))
    }
}
