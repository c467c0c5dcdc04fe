//! The CLI's failover transport. Every call of [`crate::client::Api`] goes
//! through [`Failover`], a tower `Service` over one lazily connected channel
//! per `--coordinator` address, so that a command rides through a member
//! going away (a rolling upgrade restarts them one at a time) and through
//! the second or two after a leader change when no leader is elected.
//!
//! A call goes to the member that last answered. When it fails in a way
//! that provably left the request unapplied, it is sent again to the next
//! member, after a short backoff, for up to `--retry-for`:
//!
//! - the connection could not be opened (a transport connect error);
//! - the member answered UNAVAILABLE with the coordinator's not-applied
//!   mark ([`NOT_APPLIED`]), or with one of the texts v0.1 members answer the
//!   same conditions with, unmarked ([`answered_not_applied`]).
//!
//! Read-only calls and writes whose repetition has the effect of one
//! ([`METHODS`] says which) are also sent again after any UNAVAILABLE answer
//! or a connection that broke. A write whose connection
//! broke after it was sent is never sent again: it fails with
//! [`CallError::Ambiguous`], which says how to check whether it took effect.
//! A write goes to a member only once the member has answered something
//! (else a health check first), so a client certificate refused after the
//! TLS 1.3 handshake is not mistaken for a write lost in flight. A
//! certificate problem is not retried anywhere: it is the same for every
//! member. Every public call the CLI makes is unary or server-streaming, so
//! the request body is buffered and re-sent as it is; a streaming call is
//! retried only until its response headers arrive.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tonic::Code;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};

use crate::client::Target;
use crate::errors;

/// The error type of [`Failover`]: tonic turns it into the call's `Status`
/// (keeping it as the status's source, where `errors::render` finds it).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The metadata entry with which a coordinator marks an UNAVAILABLE status
/// whose request it did not apply and sent nowhere (value `1`). Part of the
/// API; the coordinator defines it as `service::NOT_APPLIED`
/// (coordinator/src/service/mod.rs), spelled the same.
pub const NOT_APPLIED: &str = "ferry-not-applied";

/// v0.1 members (one version back) answer "no leader" and "not the leader"
/// without the mark, in these words; the coordinator keeps them unchanged
/// for that reason. Frozen: never edit them here or there.
const V01_NO_LEADER: &str = "no leader is elected right now; retry shortly";
/// Followed by the leader's member id.
const V01_NOT_LEADER: &str = "this coordinator is not the leader; the leader is member ";

/// What a method does to the cluster, which decides when it may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes nothing: sent again after any UNAVAILABLE answer or broken connection.
    Read,
    /// Changes state: sent again only when provably not applied. `check` is
    /// how an operator sees whether it took effect after an ambiguous failure.
    Write { check: &'static str },
    /// A write whose repetition has the effect of one (a role granted, a
    /// secret set to a value): sent again as a read is.
    Idempotent,
    /// A write the coordinator answers with a linearizable read or a call on
    /// the leader made after the write, whose "not applied" mark may come
    /// from that read although the write was applied: sent again only when
    /// the connection could not be opened.
    WriteThenRead { check: &'static str },
}

/// Every method of the public services the CLI's [`crate::client::Api`]
/// calls, by gRPC path. A unit test checks it against the `.proto` files,
/// so a new method fails the build's tests until it is classified here.
pub const METHODS: &[(&str, Kind)] = &[
    // Pipelines
    (
        "/ferry.v1.Pipelines/ApplyPipeline",
        Kind::Write {
            check: "ferry pipeline show NAME",
        },
    ),
    ("/ferry.v1.Pipelines/ListPipelines", Kind::Read),
    ("/ferry.v1.Pipelines/GetPipeline", Kind::Read),
    (
        "/ferry.v1.Pipelines/SetTransition",
        Kind::Write {
            check: "ferry pipeline show NAME",
        },
    ),
    // Executions
    (
        "/ferry.v1.Executions/StartExecution",
        Kind::Write {
            check: "ferry executions PIPELINE",
        },
    ),
    ("/ferry.v1.Executions/GetExecution", Kind::Read),
    ("/ferry.v1.Executions/WatchExecution", Kind::Read),
    ("/ferry.v1.Executions/ListExecutions", Kind::Read),
    ("/ferry.v1.Executions/StreamLogs", Kind::Read),
    (
        "/ferry.v1.Executions/StopExecution",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    (
        "/ferry.v1.Executions/RetryStage",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    // Approvals
    (
        "/ferry.v1.Approvals/Decide",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    // Agents: the three writes answer with the agent list, read after the write.
    ("/ferry.v1.Agents/ListAgents", Kind::Read),
    (
        "/ferry.v1.Agents/DrainAgent",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    (
        "/ferry.v1.Agents/RemoveAgent",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    (
        "/ferry.v1.Agents/SetAgentLabels",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    // Artifacts
    ("/ferry.v1.Artifacts/ListArtifacts", Kind::Read),
    ("/ferry.v1.Artifacts/GetArtifact", Kind::Read),
    // Cluster
    ("/ferry.v1.Cluster/ClusterStatus", Kind::Read),
    (
        "/ferry.v1.Cluster/AddMember",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    (
        "/ferry.v1.Cluster/RemoveMember",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    (
        "/ferry.v1.Cluster/TransferLeader",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    ("/ferry.v1.Cluster/Backup", Kind::Read),
    // Deployments
    ("/ferry.v1.Deployments/ListDeployments", Kind::Read),
    ("/ferry.v1.Deployments/GetDeployment", Kind::Read),
    (
        "/ferry.v1.Deployments/Rollback",
        Kind::Write {
            check: "ferry deployments list ENVIRONMENT",
        },
    ),
    // Environments
    (
        "/ferry.v1.Environments/ApplyEnvironment",
        Kind::Write {
            check: "ferry env show NAME",
        },
    ),
    ("/ferry.v1.Environments/ListEnvironments", Kind::Read),
    ("/ferry.v1.Environments/GetEnvironment", Kind::Read),
    // Secrets
    (
        "/ferry.v1.Secrets/SetSecret",
        // The same name set to the same value twice holds that value.
        Kind::Idempotent,
    ),
    ("/ferry.v1.Secrets/ListSecrets", Kind::Read),
    (
        "/ferry.v1.Secrets/RemoveSecret",
        Kind::Write {
            check: "ferry secret list",
        },
    ),
    // Notifications: the two writes answer with the status, read after the write.
    (
        "/ferry.v1.Notifications/SetTarget",
        Kind::WriteThenRead {
            check: "ferry notify status",
        },
    ),
    (
        "/ferry.v1.Notifications/RemoveTarget",
        Kind::WriteThenRead {
            check: "ferry notify status",
        },
    ),
    ("/ferry.v1.Notifications/NotifyStatus", Kind::Read),
    ("/ferry.v1.Notifications/WatchEvents", Kind::Read),
    // Access
    (
        "/ferry.v1.Access/RevokeCertificate",
        Kind::Write {
            check: "ferry certs revoke again: revoking a certificate twice changes nothing",
        },
    ),
    (
        "/ferry.v1.Access/RenewCertificate",
        Kind::Write {
            check: "ferry certs renew again: a certificate issued but never received is unused",
        },
    ),
    (
        "/ferry.v1.Access/CreateToken",
        Kind::Write {
            check: "ferry token create again: a token that was never received cannot be used",
        },
    ),
    (
        "/ferry.v1.Access/GrantRole",
        // A binding granted twice is granted once.
        Kind::Idempotent,
    ),
    (
        "/ferry.v1.Access/RevokeRole",
        Kind::Write {
            check: "ferry rbac list",
        },
    ),
    ("/ferry.v1.Access/ListRoleBindings", Kind::Read),
    ("/ferry.v1.Access/WhoAmI", Kind::Read),
    (
        "/ferry.v1.Access/CreateLoginLink",
        Kind::Write {
            check: "ferry ui again: a link that was never received cannot be used",
        },
    ),
];

/// The kind of the method at `path`; one not in [`METHODS`] counts as a write.
pub fn kind_of(path: &str) -> Kind {
    METHODS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Kind::Write { check: "" }, |(_, k)| *k)
}

/// Whether an answer with `code`, `message` and the not-applied `mark` may
/// be sent again to another member, for a method of `kind`.
pub fn may_resend_answer(kind: Kind, code: Code, message: &str, marked: bool) -> bool {
    if code != Code::Unavailable {
        return false;
    }
    match kind {
        Kind::Read | Kind::Idempotent => true,
        Kind::Write { .. } => marked || answered_not_applied(message),
        Kind::WriteThenRead { .. } => false,
    }
}

/// The unmarked texts of v0.1 members that mean nothing was proposed.
pub fn answered_not_applied(message: &str) -> bool {
    message == V01_NO_LEADER
        || message.strip_prefix(V01_NOT_LEADER).is_some_and(|id| {
            !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
        })
}

/// How a failed attempt failed, from the transport's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Nothing reached the member: the connection could not be opened, or
    /// the member refused the stream before processing it.
    Unsent,
    /// A certificate problem: the same for every member, not retried.
    Certificate,
    /// The request may have reached the member before the connection broke.
    Broken,
}

fn classify(err: &(dyn StdError + 'static)) -> Failure {
    let lower = errors::chain_text(err).to_lowercase();
    if errors::is_certificate_problem(&lower) {
        Failure::Certificate
    } else if has_connect_error(err)
        // HTTP/2 REFUSED_STREAM (h2's words): the server processed nothing.
        || lower.contains("refused stream before processing")
    {
        Failure::Unsent
    } else {
        Failure::Broken
    }
}

/// Whether tonic's connect error (TCP connect, TLS handshake) is in the chain.
fn has_connect_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// When a call (or connecting) that began now stops trying: `retry_for` from
/// now, or as far as the clock goes.
pub fn deadline(retry_for: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(retry_for)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}

/// The pause before attempt `n + 1` (after `n + 1` failures): 50 ms,
/// doubling, at most 1 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(1))
}

/// Why a call failed for good, rendered by `errors::render`.
#[derive(Debug)]
pub enum CallError {
    /// No member answered within `--retry-for`: each address with its last failure.
    NoAnswer {
        tried_for: Duration,
        failures: Vec<(String, String)>,
    },
    /// A write was sent and its connection broke before the answer: it may
    /// or may not have been applied, and was not sent again.
    Ambiguous {
        coordinator: String,
        method: String,
        check: &'static str,
        detail: String,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoAnswer {
                tried_for,
                failures,
            } => {
                if tried_for.is_zero() {
                    write!(f, "no coordinator answered (--retry-for 0: tried once):")?;
                } else {
                    write!(
                        f,
                        "no coordinator answered within --retry-for {} s:",
                        tried_for.as_secs()
                    )?;
                }
                for (addr, why) in failures {
                    write!(f, "\n  {addr}: {why}")?;
                }
                Ok(())
            }
            CallError::Ambiguous {
                coordinator,
                method,
                check,
                detail,
            } => {
                let call = method.rsplit('/').next().unwrap_or(method);
                write!(
                    f,
                    "the connection to coordinator {coordinator} broke after {call} was sent, \
                     so it may or may not have been applied; it was not sent again"
                )?;
                if check.is_empty() {
                    write!(f, ". Check the cluster before running the command again")?;
                } else {
                    write!(f, ". Check with `{check}` before running the command again")?;
                }
                write!(f, "\ncaused by: {detail}")
            }
        }
    }
}

impl StdError for CallError {}

/// One `--coordinator` address and its channel, opened on first use.
pub struct Member {
    target: Target,
    endpoint: Endpoint,
    channel: Mutex<Option<Channel>>,
    /// It has answered a call in this process (so its TLS handshake, our
    /// client certificate included, was accepted).
    answered: AtomicBool,
}

impl Member {
    /// A member connected on its first call.
    pub fn lazy(target: Target, endpoint: Endpoint) -> Self {
        Self {
            target,
            endpoint,
            channel: Mutex::new(None),
            answered: AtomicBool::new(false),
        }
    }

    /// A member already connected over `channel`.
    pub fn connected(target: Target, endpoint: Endpoint, channel: Channel) -> Self {
        Self {
            channel: Mutex::new(Some(channel)),
            ..Self::lazy(target, endpoint)
        }
    }

    fn channel(&self) -> Channel {
        let mut slot = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert_with(|| self.endpoint.connect_lazy())
            .clone()
    }

    async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        use tower::Service as _;
        let mut channel = self.channel();
        std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
        Ok(channel.call(request).await?)
    }

    /// Before the first write to this member, the standard health check
    /// (any answer will do): with TLS 1.3 a member refuses our client
    /// certificate only after the handshake, on the first call, often as a
    /// bare reset, which a write could not tell from the member dying with
    /// the write in flight. After this, a write goes over a connection the
    /// member accepted; a failure of the check itself is that of a read.
    async fn probe(&self) -> Result<(), BoxError> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let mut client = HealthClient::new(self.channel());
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(PROBE_TIMEOUT, check).await {
            Ok(Ok(_)) => Ok(()),
            // The member answered (a status it sent has no source).
            Ok(Err(status)) if status.source().is_none() => Ok(()),
            Ok(Err(status)) => Err(Box::new(status)),
            Err(_) => Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer to a health check within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            ))),
        }
    }
}

/// How long the check before a member's first write may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The transport of every client in [`crate::client::Api`]: cheap to clone,
/// all clones share the members and which of them answered last.
#[derive(Clone)]
pub struct Failover {
    shared: Arc<Shared>,
}

struct Shared {
    members: Vec<Member>,
    /// The member that answered last: the next call goes there first.
    current: AtomicUsize,
    retry_for: Duration,
}

impl Failover {
    /// Over `members` (in `--coordinator` order, not empty), starting with
    /// member `first`; a call is tried for up to `retry_for`.
    pub fn new(members: Vec<Member>, first: usize, retry_for: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                members,
                current: AtomicUsize::new(first),
                retry_for,
            }),
        }
    }
}

impl tower::Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each attempt waits for its own member's channel.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.call(request).await })
    }
}

/// The status a response's headers carry, if it is a trailers-only error.
struct Answer {
    code: Code,
    message: String,
    marked: bool,
}

impl Answer {
    fn of(headers: &http::HeaderMap) -> Option<Answer> {
        let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
        if code == Code::Ok {
            return None;
        }
        let message = headers
            .get("grpc-message")
            .map(|v| percent_decode(v.as_bytes()))
            .unwrap_or_default();
        let marked = headers
            .get(NOT_APPLIED)
            .is_some_and(|v| v.as_bytes() == b"1");
        Some(Answer {
            code,
            message,
            marked,
        })
    }
}

/// grpc-message is percent-encoded (gRPC over HTTP/2); invalid escapes are kept as they are.
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last failure of a call that may still be given up on.
enum Last {
    /// An answer that allowed another attempt: returned as it is.
    Answer(http::Response<Body>),
    /// A failure without an answer.
    Failed,
}

impl Shared {
    async fn call(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map_err(Box::new)?.to_bytes();
        let method = parts.uri.path().to_string();
        let kind = kind_of(&method);
        let attempt_request = || {
            let mut r = http::Request::new(Body::new(Full::new(body.clone())));
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.version_mut() = parts.version;
            *r.headers_mut() = parts.headers.clone();
            *r.extensions_mut() = parts.extensions.clone();
            r
        };
        let n = self.members.len();
        let give_up_at = deadline(self.retry_for);
        let first = self.current.load(Ordering::Relaxed) % n.max(1);
        let mut at = first;
        let mut failures: Vec<Option<String>> = vec![None; n];
        let mut reset_on_first_call = vec![false; n];
        let mut attempt = 0u32;
        let last = loop {
            let Some(member) = self.members.get(at) else {
                break Last::Failed;
            };
            // A write goes only over a connection the member accepted; the
            // check before it fails as a read would.
            let sent = if kind != Kind::Read && !member.answered.load(Ordering::Relaxed) {
                match member.probe().await {
                    Ok(()) => {
                        member.answered.store(true, Ordering::Relaxed);
                        member.send(attempt_request()).await.map_err(|e| (e, kind))
                    }
                    Err(e) => Err((e, Kind::Read)),
                }
            } else {
                member.send(attempt_request()).await.map_err(|e| (e, kind))
            };
            let last = match sent {
                Ok(response) => {
                    member.answered.store(true, Ordering::Relaxed);
                    match Answer::of(response.headers()) {
                        Some(a) if may_resend_answer(kind, a.code, &a.message, a.marked) => {
                            tracing::debug!(
                                coordinator = %member.target.authority,
                                %method,
                                message = %a.message,
                                "answered UNAVAILABLE; trying another member"
                            );
                            failures[at] = Some(a.message);
                            Last::Answer(response)
                        }
                        _ => {
                            if at != first {
                                tracing::info!(
                                    from = %self.members[first].target.authority,
                                    to = %member.target.authority,
                                    %method,
                                    "moved to another coordinator"
                                );
                            }
                            self.current.store(at, Ordering::Relaxed);
                            return Ok(response);
                        }
                    }
                }
                Err((err, as_kind)) => match classify(&*err) {
                    Failure::Certificate => return Err(err),
                    Failure::Unsent => {
                        tracing::debug!(
                            coordinator = %member.target.authority,
                            %method,
                            error = %errors::chain_text(&*err),
                            "not sent; trying another member"
                        );
                        failures[at] = Some(errors::describe_connect_error(&*err, &member.target));
                        Last::Failed
                    }
                    Failure::Broken => {
                        let detail = errors::chain_text(&*err);
                        if let Kind::Write { check } | Kind::WriteThenRead { check } = as_kind {
                            return Err(Box::new(CallError::Ambiguous {
                                coordinator: member.target.authority.clone(),
                                method,
                                check,
                                detail,
                            }));
                        }
                        // A read may go elsewhere, unless every member broke
                        // off its first call the way a refused client
                        // certificate does: then it is that, everywhere.
                        let first_call = !member.answered.load(Ordering::Relaxed);
                        if first_call && errors::client_cert_refused(&detail.to_lowercase(), true) {
                            reset_on_first_call[at] = true;
                            if reset_on_first_call.iter().all(|r| *r) {
                                return Err(err);
                            }
                        }
                        tracing::debug!(
                            coordinator = %member.target.authority,
                            %method,
                            error = %detail,
                            "a read lost its connection; trying another member"
                        );
                        failures[at] = Some(format!("lost the connection: {detail}"));
                        Last::Failed
                    }
                },
            };
            let now = Instant::now();
            if now >= give_up_at {
                break last;
            }
            tokio::time::sleep(backoff(attempt).min(give_up_at - now)).await;
            attempt = attempt.saturating_add(1);
            at = (at + 1) % n;
        };
        match last {
            Last::Answer(response) => Ok(response),
            Last::Failed => Err(Box::new(CallError::NoAnswer {
                tried_for: self.retry_for,
                failures: self
                    .members
                    .iter()
                    .zip(failures)
                    .filter_map(|(m, why)| Some((m.target.authority.clone(), why?)))
                    .collect(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: Kind = Kind::Write { check: "" };

    /// `service NAME {` and `rpc NAME(` of every public `.proto` file.
    fn proto_methods() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto/ferry/v1");
        let mut methods = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "proto"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
            let mut service = None;
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().map(str::to_string);
                } else if let Some(rest) = line.strip_prefix("rpc ")
                    && let (Some(s), Some(name)) = (&service, rest.split('(').next())
                {
                    methods.push((s.clone(), name.trim().to_string()));
                }
            }
        }
        methods
    }

    #[test]
    fn every_method_of_the_clis_services_is_classified() {
        // The services `Api` holds a client of (Enrollment is the agents').
        let services = [
            "Pipelines",
            "Executions",
            "Approvals",
            "Agents",
            "Environments",
            "Deployments",
            "Artifacts",
            "Secrets",
            "Notifications",
            "Access",
            "Cluster",
        ];
        let methods = proto_methods();
        assert!(methods.len() > 40, "{methods:?}");
        let ours: Vec<String> = methods
            .iter()
            .filter(|(s, _)| services.contains(&s.as_str()))
            .map(|(s, m)| format!("/ferry.v1.{s}/{m}"))
            .collect();
        for path in &ours {
            assert!(
                METHODS.iter().any(|(p, _)| p == path),
                "{path} is not classified in METHODS"
            );
        }
        for (path, _) in METHODS {
            assert!(ours.contains(&path.to_string()), "{path} is no such method");
        }
        assert_eq!(ours.len(), METHODS.len(), "a method is listed twice");
    }

    #[test]
    fn reads_are_the_get_list_watch_stream_and_status_calls() {
        let reads: Vec<&str> = METHODS
            .iter()
            .filter(|(_, k)| *k == Kind::Read)
            .filter_map(|(p, _)| p.rsplit('/').next())
            .collect();
        assert_eq!(
            reads,
            [
                "ListPipelines",
                "GetPipeline",
                "GetExecution",
                "WatchExecution",
                "ListExecutions",
                "StreamLogs",
                "ListAgents",
                "ListArtifacts",
                "GetArtifact",
                "ClusterStatus",
                "Backup",
                "ListDeployments",
                "GetDeployment",
                "ListEnvironments",
                "GetEnvironment",
                "ListSecrets",
                "NotifyStatus",
                "WatchEvents",
                "ListRoleBindings",
                "WhoAmI",
            ]
        );
        // Every write says how to check it.
        for (path, kind) in METHODS {
            if let Kind::Write { check } | Kind::WriteThenRead { check } = kind {
                assert!(check.starts_with("ferry "), "{path}: {check:?}");
            }
        }
        assert_eq!(
            kind_of("/ferry.v1.Access/RevokeRole"),
            Kind::Write {
                check: "ferry rbac list"
            }
        );
        assert_eq!(kind_of("/ferry.v1.Access/WhoAmI"), Kind::Read);
        // Only writes whose repetition is harmless are sent again like reads.
        let idempotent: Vec<&str> = METHODS
            .iter()
            .filter(|(_, k)| *k == Kind::Idempotent)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(
            idempotent,
            ["/ferry.v1.Secrets/SetSecret", "/ferry.v1.Access/GrantRole"]
        );
        assert!(may_resend_answer(
            Kind::Idempotent,
            Code::Unavailable,
            "could not reach the leader",
            false
        ));
        // An unknown method counts as a write.
        assert_eq!(kind_of("/ferry.v1.Pipelines/Frobnicate"), WRITE);
    }

    #[test]
    fn writes_go_elsewhere_only_when_not_applied() {
        let write = WRITE;
        // Marked by the coordinator.
        assert!(may_resend_answer(
            write,
            Code::Unavailable,
            "anything",
            true
        ));
        // Unmarked: only v0.1's frozen texts.
        assert!(may_resend_answer(
            write,
            Code::Unavailable,
            "no leader is elected right now; retry shortly",
            false
        ));
        assert!(may_resend_answer(
            write,
            Code::Unavailable,
            "this coordinator is not the leader; the leader is member 3",
            false
        ));
        for unmarked in [
            "this coordinator has stopped serving",
            "could not reach the leader: connection reset",
            "this coordinator is not the leader; the leader is member ",
            "this coordinator is not the leader; the leader is member 3x",
            "no leader is elected right now; retry shortly!",
            "",
        ] {
            assert!(
                !may_resend_answer(write, Code::Unavailable, unmarked, false),
                "{unmarked:?}"
            );
        }
        // Only UNAVAILABLE, even marked.
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::NotFound,
        ] {
            assert!(
                !may_resend_answer(write, code, V01_NO_LEADER, true),
                "{code:?}"
            );
        }
        // A write answered with a read after it: the mark may be the read's.
        let then_read = Kind::WriteThenRead { check: "" };
        assert!(!may_resend_answer(then_read, Code::Unavailable, "x", true));
        assert!(!may_resend_answer(
            then_read,
            Code::Unavailable,
            V01_NO_LEADER,
            false
        ));
    }

    #[test]
    fn reads_go_elsewhere_on_any_unavailable() {
        assert!(may_resend_answer(
            Kind::Read,
            Code::Unavailable,
            "this coordinator has stopped serving",
            false
        ));
        assert!(may_resend_answer(Kind::Read, Code::Unavailable, "", false));
        assert!(!may_resend_answer(
            Kind::Read,
            Code::PermissionDenied,
            "may not",
            false
        ));
        assert!(!may_resend_answer(
            Kind::Read,
            Code::NotFound,
            V01_NO_LEADER,
            true
        ));
    }

    #[test]
    fn answers_are_read_from_trailers_only_headers() {
        let mut h = http::HeaderMap::new();
        assert!(Answer::of(&h).is_none(), "no status: a response begins");
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(Answer::of(&h).is_none());
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "no%20leader%20is%20elected%20right%20now;%20retry%20shortly",
            ),
        );
        let a = Answer::of(&h).expect("status");
        assert_eq!(a.code, Code::Unavailable);
        assert_eq!(a.message, V01_NO_LEADER);
        assert!(!a.marked);
        h.insert(NOT_APPLIED, http::HeaderValue::from_static("1"));
        assert!(Answer::of(&h).is_some_and(|a| a.marked));
        h.insert(NOT_APPLIED, http::HeaderValue::from_static("yes"));
        assert!(Answer::of(&h).is_some_and(|a| !a.marked));
    }

    #[test]
    fn the_status_a_coordinator_sends_round_trips() {
        // What tonic's server writes for a marked status, read back here.
        let mut status = tonic::Status::unavailable(
            "this coordinator is not the leader; the leader is member 12",
        );
        status.metadata_mut().insert(
            NOT_APPLIED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let response = status.into_http::<Body>();
        let a = Answer::of(response.headers()).expect("status");
        assert_eq!(a.code, Code::Unavailable);
        assert!(a.marked);
        assert!(answered_not_applied(&a.message), "{}", a.message);
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode(b"a%20b%3Bc"), "a b;c");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9".as_bytes()), "café");
    }

    #[test]
    fn any_retry_for_has_a_deadline() {
        let now = Instant::now();
        assert!(deadline(Duration::ZERO) >= now);
        assert!(deadline(Duration::from_secs(2)) >= now + Duration::from_secs(2));
        assert!(deadline(Duration::from_secs(u64::MAX)) > now + Duration::from_secs(86_400));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(50));
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(5), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn failures_name_every_address_and_how_to_check() {
        let e = CallError::NoAnswer {
            tried_for: Duration::from_secs(2),
            failures: vec![
                ("a:1".into(), "tcp connect error: Connection refused".into()),
                ("b:2".into(), V01_NO_LEADER.into()),
            ],
        };
        assert_eq!(
            e.to_string(),
            "no coordinator answered within --retry-for 2 s:\n  a:1: tcp connect error: Connection refused\n  b:2: no leader is elected right now; retry shortly"
        );
        let e = CallError::Ambiguous {
            coordinator: "a:1".into(),
            method: "/ferry.v1.Access/GrantRole".into(),
            check: "ferry rbac list",
            detail: "connection reset".into(),
        };
        let text = e.to_string();
        assert!(text.starts_with("the connection to coordinator a:1 broke after GrantRole was sent, so it may or may not have been applied"), "{text}");
        assert!(text.contains("Check with `ferry rbac list`"), "{text}");
        assert!(!text.contains("client certificate"), "{text}");
    }
}

/// The transport against in-process members (plain HTTP/2, no TLS): which
/// failures move a call to the next member, and which end it.
#[cfg(test)]
mod transport_tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use ferry_proto as pb;
    use tokio::io::AsyncReadExt;

    use super::*;

    /// What a fake member answers, in turn (then OK).
    #[derive(Clone, Copy)]
    enum Reply {
        Ok,
        Status(Code, &'static str, bool),
        /// Drops the call unanswered (the stream is reset).
        Break,
    }

    /// A member that answers every call from its script, except health
    /// checks, which it answers at once (they are not counted).
    #[derive(Clone)]
    struct Fake {
        script: Arc<Mutex<VecDeque<Reply>>>,
        calls: Arc<AtomicUsize>,
    }

    impl tower::Service<http::Request<Body>> for Fake {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let reply = if req.uri().path() == "/grpc.health.v1.Health/Check" {
                Reply::Ok
            } else {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.script
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front()
                    .unwrap_or(Reply::Ok)
            };
            Box::pin(async move {
                Ok(match reply {
                    Reply::Ok => {
                        // One empty message (flag 0, length 0), then status OK.
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let body = Full::new(tonic::codegen::Bytes::from_static(&[0; 5]))
                            .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
                        let mut response = http::Response::new(Body::new(body));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        response
                    }
                    Reply::Status(code, message, marked) => {
                        let mut status = tonic::Status::new(code, message);
                        if marked {
                            status.metadata_mut().insert(
                                NOT_APPLIED,
                                tonic::metadata::MetadataValue::from_static("1"),
                            );
                        }
                        status.into_http()
                    }
                    // Unwinding ends the task that serves the stream
                    // (without the panic hook's message).
                    Reply::Break => std::panic::resume_unwind(Box::new("break the stream")),
                })
            })
        }
    }

    async fn fake(script: &[Reply]) -> (SocketAddr, Arc<AtomicUsize>) {
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = incoming
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let fake = Fake {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let calls = fake.calls.clone();
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(fake, incoming));
        (addr, calls)
    }

    /// A member that takes the request and drops the connection unanswered.
    async fn breaker() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                // Read until the client has been quiet for a moment: its
                // request has arrived.
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(300), socket.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                }
            }
        });
        addr
    }

    /// An address nothing listens on.
    async fn nothing() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"))
    }

    fn failover(addrs: &[SocketAddr], retry_for: Duration) -> Failover {
        let members = addrs
            .iter()
            .map(|a| {
                let endpoint = Endpoint::from_shared(format!("http://{a}"))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .connect_timeout(Duration::from_secs(2));
                let target = Target {
                    authority: a.to_string(),
                    host: a.ip().to_string(),
                };
                Member::lazy(target, endpoint)
            })
            .collect();
        Failover::new(members, 0, retry_for)
    }

    /// A write that is not idempotent.
    async fn revoke(f: &Failover) -> Result<(), tonic::Status> {
        pb::access_client::AccessClient::new(f.clone())
            .revoke_role(pb::RoleRequest::default())
            .await
            .map(drop)
    }

    async fn list(f: &Failover) -> Result<(), tonic::Status> {
        pb::access_client::AccessClient::new(f.clone())
            .list_role_bindings(pb::ListRoleBindingsRequest::default())
            .await
            .map(drop)
    }

    fn call_error(status: &tonic::Status) -> &CallError {
        status
            .source()
            .and_then(|s| s.downcast_ref::<CallError>())
            .unwrap_or_else(|| panic!("not the transport's own error: {status:?}"))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_member_that_cannot_be_reached_is_passed_over_and_the_next_call_starts_at_the_one_that_answered()
     {
        let down = nothing().await;
        let (up, calls) = fake(&[]).await;
        let f = failover(&[down, up], 10 * SECOND);
        revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.shared.current.load(Ordering::SeqCst), 1);
        list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_moves_on_only_when_marked_or_in_v01_words() {
        let (a, a_calls) = fake(&[
            Reply::Status(Code::Unavailable, "anything", true),
            Reply::Status(Code::Unavailable, V01_NO_LEADER, false),
        ])
        .await;
        let (b, b_calls) = fake(&[Reply::Status(
            Code::Unavailable,
            "this coordinator is not the leader; the leader is member 3",
            false,
        )])
        .await;
        let f = failover(&[a, b], 10 * SECOND);
        // a (marked) → b (v0.1's words) → a (v0.1's words) → b: answers.
        revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(a_calls.load(Ordering::SeqCst), 2);
        assert_eq!(b_calls.load(Ordering::SeqCst), 2);

        let (a, a_calls) = fake(&[Reply::Status(
            Code::Unavailable,
            "could not reach the leader",
            false,
        )])
        .await;
        let (b, b_calls) = fake(&[]).await;
        let f = failover(&[a, b], 10 * SECOND);
        let status = revoke(&f).await.expect_err("not sent again");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "could not reach the leader");
        assert_eq!(
            (
                a_calls.load(Ordering::SeqCst),
                b_calls.load(Ordering::SeqCst)
            ),
            (1, 0)
        );
    }

    #[tokio::test]
    async fn a_read_moves_on_after_any_unavailable_but_not_after_other_answers() {
        let (a, _) = fake(&[
            Reply::Status(
                Code::Unavailable,
                "this coordinator has stopped serving",
                false,
            ),
            Reply::Status(Code::PermissionDenied, "may not", false),
        ])
        .await;
        let (b, b_calls) = fake(&[]).await;
        let f = failover(&[a, b], 10 * SECOND);
        list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(b_calls.load(Ordering::SeqCst), 1);
        // b answered last: the next call starts there.
        f.shared.current.store(0, Ordering::SeqCst);
        let status = list(&f).await.expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_broken_write_is_ambiguous_and_not_sent_again_but_a_read_is() {
        let (broken, _) = fake(&[Reply::Break, Reply::Break]).await;
        let (up, calls) = fake(&[]).await;
        let f = failover(&[broken, up], 10 * SECOND);
        let status = revoke(&f).await.expect_err("ambiguous");
        let CallError::Ambiguous {
            coordinator, check, ..
        } = call_error(&status)
        else {
            panic!("{status:?}")
        };
        assert_eq!(
            (coordinator.as_str(), *check),
            (broken.to_string().as_str(), "ferry rbac list")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not sent again");
        list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_member_that_breaks_off_the_first_call_gets_no_write() {
        // As a member that refuses our client certificate after the
        // handshake does: the write goes to the next member.
        let broken = breaker().await;
        let (up, calls) = fake(&[]).await;
        let f = failover(&[broken, up], 10 * SECOND);
        revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Only such members: it is the certificate, everywhere.
        let f = failover(&[breaker().await, breaker().await], 10 * SECOND);
        let started = std::time::Instant::now();
        let status = revoke(&f).await.expect_err("refused");
        assert!(started.elapsed() < 5 * SECOND);
        let text = crate::errors::render(&status.into());
        assert!(
            text.starts_with(crate::errors::CLIENT_CERT_REFUSED),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_write_answered_with_a_read_after_it_does_not_trust_the_mark() {
        let (a, _) = fake(&[Reply::Status(Code::Unavailable, V01_NO_LEADER, true)]).await;
        let (b, b_calls) = fake(&[]).await;
        let f = failover(&[a, b], 10 * SECOND);
        let status = pb::agents_client::AgentsClient::new(f.clone())
            .drain_agent(pb::AgentRequest::default())
            .await
            .expect_err("not sent again");
        assert_eq!(status.message(), V01_NO_LEADER);
        assert_eq!(b_calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn nothing_answering_fails_after_the_bound_naming_every_address() {
        let (a, b) = (nothing().await, nothing().await);
        let f = failover(&[a, b], SECOND);
        let started = std::time::Instant::now();
        let status = revoke(&f).await.expect_err("nothing answers");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < 5 * SECOND,
            "{elapsed:?}"
        );
        let text = crate::errors::render(&status.into());
        assert!(
            text.starts_with("no coordinator answered within --retry-for 1 s:"),
            "{text}"
        );
        for addr in [a, b] {
            assert!(text.contains(&format!("\n  {addr}: ")), "{text}");
        }
        // --retry-for 0: one attempt, at once.
        let f = failover(&[a, b], Duration::ZERO);
        let started = std::time::Instant::now();
        let status = revoke(&f).await.expect_err("nothing answers");
        assert!(started.elapsed() < SECOND);
        let CallError::NoAnswer { failures, .. } = call_error(&status) else {
            panic!("{status:?}")
        };
        assert_eq!(failures.len(), 1, "{failures:?}");
    }
}
