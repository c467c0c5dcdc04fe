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

mod methods;
pub use methods::*;

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
mod tests;

/// The transport against in-process members (plain HTTP/2, no TLS): which
/// failures move a call to the next member, and which end it.
#[cfg(test)]
mod transport_tests;
