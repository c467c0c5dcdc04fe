//! Console logins: the one-time link `ferry ui` asks for (the caller is
//! authenticated by their operator certificate), the browser session that
//! opening it begins, who a session acts for, and logging out. Secrets are
//! random, given out once and kept only as sha256 hashes in the state.

use std::time::Duration;

use ferry_certs::Identity;

use super::access::{acting, hash_token};
use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{Command, Need, Reason, Rejection, Role};

/// How long a login link lasts by default, and at most.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
pub const MAX_LINK_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a console session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// A login link's secret and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLink {
    pub secret: String,
    pub expires_at: i64,
}

/// A session that just began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub secret: String,
    pub operator: String,
    pub expires_at: i64,
}

/// Who a session acts for and the roles they hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub operator: String,
    pub roles: Vec<Role>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A fresh random secret with `prefix`.
fn secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The CSRF token of a session: forms carry it, and a cross-site page
/// cannot read it (it is derived from the HttpOnly cookie's secret).
pub fn csrf_token(session_secret: &str) -> String {
    hash_token(&format!("csrf:{session_secret}"))
}

impl Ops {
    /// Write: a one-time login link for the caller, valid for `ttl`
    /// (default [`LINK_TTL`], at most [`MAX_LINK_TTL`]).
    pub async fn create_login_link(
        &self,
        who: &Identity,
        cert: Option<String>,
        ttl: Option<Duration>,
    ) -> OpResult<LoginLink> {
        if who.kind != ferry_certs::IdentityKind::Operator {
            return Err(OpError::PermissionDenied(
                Reason::WrongIdentityKind,
                format!("{who} is not an operator: console links are for people"),
            ));
        }
        let ttl = ttl.unwrap_or(LINK_TTL);
        if ttl.is_zero() || ttl > MAX_LINK_TTL {
            return Err(OpError::Invalid(format!(
                "a login link lasts between 1 s and {} minutes",
                MAX_LINK_TTL.as_secs() / 60
            )));
        }
        let link = secret("ferry-login-");
        let now = now_ms();
        let expires_at = now.saturating_add(ms(ttl));
        self.write(Command::CreateLoginLink {
            hash: hash_token(&link),
            expires_at,
            by: acting(who),
            at: now,
            cert,
        })
        .await?;
        tracing::info!(operator = %who.name, "console login link created");
        Ok(LoginLink {
            secret: link,
            expires_at,
        })
    }

    /// Linearizable: the operator login link `link` logs in, while it is
    /// unused and has not expired (nothing is written: a link preview that
    /// fetches the link does not use it up).
    pub async fn login_link_operator(&self, link: &str) -> OpResult<String> {
        let hash = hash_token(link);
        let now = now_ms();
        self.read(|s| {
            s.login_links
                .get(&hash)
                .filter(|l| l.expires_at >= now)
                .filter(|l| !l.cert.as_deref().is_some_and(|fp| s.is_revoked(fp)))
                .map(|l| l.operator.clone())
        })
        .await?
        .ok_or_else(|| {
            OpError::PermissionDenied(
                Reason::BadLoginLink,
                "this login link is unknown, used or expired; run `ferry ui` for a new one".into(),
            )
        })
    }

    /// Write: opens login link `link` (once) and begins a session.
    pub async fn open_session(&self, link: &str) -> OpResult<Opened> {
        let hash = hash_token(link);
        let operator = self
            .read(|s| s.login_links.get(&hash).map(|l| l.operator.clone()))
            .await?
            .ok_or_else(|| {
                OpError::PermissionDenied(
                    Reason::BadLoginLink,
                    "this login link is unknown, used or expired; run `ferry ui` for a new one"
                        .into(),
                )
            })?;
        let session = secret("ferry-session-");
        let now = now_ms();
        let expires_at = now.saturating_add(ms(SESSION_TTL));
        self.write(Command::OpenSession {
            link: hash,
            session: hash_token(&session),
            expires_at,
            at: now,
        })
        .await
        .map_err(|e| match e {
            OpError::Rejected(Rejection::PermissionDenied(r, m)) => OpError::PermissionDenied(r, m),
            e => e,
        })?;
        tracing::info!(%operator, "console session opened");
        Ok(Opened {
            secret: session,
            operator,
            expires_at,
        })
    }

    /// Local read, as `authz.rs` checks gRPC callers: who session `secret`
    /// acts for and their roles, or PermissionDenied when it is unknown,
    /// over, or its operator holds no role (any more).
    pub fn console_user(&self, secret: &str) -> OpResult<ConsoleUser> {
        let hash = hash_token(secret);
        let now = now_ms();
        self.local_read(|s| {
            let operator = s.session_operator(&hash, now).ok_or_else(|| {
                OpError::PermissionDenied(
                    Reason::Unauthenticated,
                    "not logged in, or the session is over; run `ferry ui` for a login link".into(),
                )
            })?;
            let roles = s.roles_of(operator);
            if roles.is_empty() {
                return Err(OpError::PermissionDenied(
                    Reason::MissingRole,
                    format!("`{operator}` holds no role in this cluster"),
                ));
            }
            Ok(ConsoleUser {
                operator: operator.to_string(),
                roles,
            })
        })
    }

    /// Write: ends session `secret` (`Log out`).
    pub async fn end_session(&self, secret: &str) -> OpResult<()> {
        self.write(Command::EndSession {
            session: hash_token(secret),
        })
        .await
        .map(drop)
    }
}

/// One pipeline on the console's first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRow {
    pub name: String,
    pub version: u64,
    /// Newest first, at most [`RECENT_EXECUTIONS`].
    pub recent: Vec<ExecutionChip>,
}

/// One execution as a coloured chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionChip {
    pub id: String,
    pub status: ferry_pipeline::execution::ExecutionStatus,
    pub revision: String,
    pub started_by: Option<String>,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl ExecutionChip {
    /// The chip of execution `e`.
    pub fn of(e: &ferry_state::Execution) -> ExecutionChip {
        ExecutionChip {
            id: e.id.clone(),
            status: e.state.status,
            revision: e.revision.clone(),
            started_by: e.started_by.clone(),
            trigger: e.trigger.clone(),
            started_at: e.started_at,
            finished_at: e.state.finished_at,
        }
    }
}

/// Executions shown per pipeline on the first page.
pub const RECENT_EXECUTIONS: usize = 5;

impl Ops {
    /// Linearizable: every pipeline with its newest executions.
    pub async fn console_pipelines(&self) -> OpResult<Vec<PipelineRow>> {
        self.read(|s| {
            s.pipelines
                .values()
                .filter_map(|p| {
                    let version = p.latest()?.version;
                    let recent = p
                        .executions
                        .iter()
                        .rev()
                        .filter_map(|id| s.executions.get(id))
                        .take(RECENT_EXECUTIONS)
                        .map(ExecutionChip::of)
                        .collect();
                    Some(PipelineRow {
                        name: p.name.clone(),
                        version,
                        recent,
                    })
                })
                .collect()
        })
        .await
    }
}

/// A console session as an admin sees it: `id` is the start of the hash of
/// its secret (enough to name it, useless to present as a cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub operator: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Characters of a session's hash shown as its id.
pub const SESSION_ID_LEN: usize = 16;

/// One approval waiting for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingApproval {
    pub pipeline: String,
    pub execution: String,
    pub revision: String,
    /// `STAGE/ACTION`.
    pub action: String,
    /// What the approvers are asked (its `message:`).
    pub message: String,
    /// What they are asked to look at (its `url:`), if anything.
    pub url: String,
    pub since: Option<i64>,
    /// Why `operator` may not decide it (None: they may).
    pub refused: Option<String>,
}

impl ConsoleUser {
    /// Whether they hold one of `need`'s roles now.
    pub fn may(&self, need: Need) -> bool {
        self.roles.iter().any(|r| need.roles().contains(r))
    }

    /// The early check of a console write, as `authz.rs` makes it for gRPC
    /// before anything is proposed: a refusal costs no Raft entry. `apply`
    /// checks again on the state the command lands on.
    pub fn require(&self, need: Need, what: &str) -> OpResult<()> {
        if self.may(need) {
            return Ok(());
        }
        Err(OpError::PermissionDenied(
            Reason::MissingRole,
            format!(
                "`{}` may not {what} from the console: that needs {}",
                self.operator,
                need.describe()
            ),
        ))
    }

    /// May start, stop and retry runs (`operator` or `admin`).
    pub fn may_operate(&self) -> bool {
        self.may(Need::Operate)
    }

    pub fn is_admin(&self) -> bool {
        self.may(Need::Admin)
    }
}

impl Ops {
    /// The identity a console user's writes act for: the operator of this
    /// trust domain the session is bound to (`apply` checks its roles).
    pub fn console_identity(&self, user: &ConsoleUser) -> Identity {
        Identity {
            // Set once, at bootstrap.
            trust_domain: self.local_read(|s| s.trust_domain.clone()),
            kind: ferry_certs::IdentityKind::Operator,
            name: user.operator.clone(),
        }
    }

    /// Linearizable: the console sessions that last at `now`, newest first.
    pub async fn list_sessions(&self) -> OpResult<Vec<SessionRow>> {
        let now = now_ms();
        self.read(|s| {
            let mut rows: Vec<SessionRow> = s
                .console_sessions
                .iter()
                .filter(|(_, v)| v.expires_at >= now)
                .map(|(hash, v)| SessionRow {
                    id: hash.chars().take(SESSION_ID_LEN).collect(),
                    operator: v.operator.clone(),
                    created_at: v.created_at,
                    expires_at: v.expires_at,
                })
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            rows
        })
        .await
    }

    /// Write: an admin ends the session whose id is `id` (see [`SessionRow`]).
    pub async fn revoke_session(&self, who: &Identity, id: &str) -> OpResult<()> {
        let id = id.to_ascii_lowercase();
        let id = id.as_str();
        if id.len() != SESSION_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OpError::Invalid(format!("`{id}` is not a session id")));
        }
        let hash = self
            .read(|s| {
                s.console_sessions
                    .range(id.to_string()..)
                    .next()
                    .filter(|(h, _)| h.starts_with(id))
                    .map(|(h, _)| h.clone())
            })
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no console session `{id}`")))?;
        self.write(Command::RevokeSession {
            session: hash,
            by: acting(who),
        })
        .await?;
        tracing::info!(session = %id, by = %who.name, "console session revoked");
        Ok(())
    }

    /// Linearizable: every approval waiting for a decision, oldest first,
    /// and whether `operator` may decide it (`may_decide`, as `apply`
    /// checks it again).
    pub async fn waiting_approvals(&self, operator: &str) -> OpResult<Vec<WaitingApproval>> {
        use ferry_pipeline::execution::ActionStatus;
        self.read(|s| {
            let mut out = Vec::new();
            for exec in s.executions.values().filter(|e| !e.state.status.is_final()) {
                let spec = s.pipeline_of(exec);
                for (si, runs) in exec.state.actions.iter().enumerate() {
                    let stage = spec.and_then(|p| p.stages.get(si));
                    for (ai, run) in runs.iter().enumerate() {
                        if run.status() != ActionStatus::WaitingForApproval {
                            continue;
                        }
                        let action = stage.and_then(|st| st.actions.get(ai));
                        out.push(WaitingApproval {
                            pipeline: exec.pipeline.clone(),
                            execution: exec.id.clone(),
                            revision: exec.revision.clone(),
                            action: format!(
                                "{}/{}",
                                stage.map_or("?", |st| st.name.as_str()),
                                action.map_or("?", |a| a.name.as_str())
                            ),
                            message: action
                                .map(|a| run.shown_text(&a.message))
                                .unwrap_or_default(),
                            url: action.map(|a| run.shown_text(&a.url)).unwrap_or_default(),
                            since: run.started_at,
                            // As `apply` decides it: who may, and each person once.
                            refused: if run.decisions().iter().any(|d| d.by == operator) {
                                Some("you have decided it already; each person counts once".into())
                            } else {
                                s.may_decide(operator, exec, si, ai)
                                    .err()
                                    .map(|e| e.to_string())
                            },
                        });
                    }
                }
            }
            out.sort_by_key(|w| w.since);
            out
        })
        .await
    }
}
