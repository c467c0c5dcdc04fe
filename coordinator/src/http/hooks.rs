//! The webhook routes: `POST /hooks/git/{pipeline}` receives a git host's
//! push and hands it, verified, to a [`HookSink`] (the coordinator's `Ops`,
//! or a fake in tests); `GET /healthz` says the listener is up.
//!
//! Each request goes: pipeline name checked → format and delivery headers
//! read → the pipeline's secret looked up → the body read (bounded) → its
//! signature or token verified → only then parsed → pushes handed on.

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use http::header::CONTENT_TYPE;

use super::server::{
    Answer, HttpLimits, RateLimit, RetryAfter, check_declared_length, peer_of, read_body, shown,
    status_of,
};
use super::webhook::{self, GitPush, HookEvent};
use crate::ops::{OpError, OpResult};

/// What the webhook routes need from the coordinator.
pub trait HookSink: Clone + Send + Sync + 'static {
    /// The secret the pipeline's source names in `webhook_secret` (plaintext
    /// bytes), or an OpError (NotFound for an unknown pipeline,
    /// FailedPrecondition when it sets none).
    fn webhook_secret(&self, pipeline: &str) -> impl Future<Output = OpResult<Vec<u8>>> + Send;

    /// A verified push: start what it triggers (or say why nothing).
    /// `delivery` is the host's delivery id (or `sha256:` and the body's
    /// digest, see [`webhook::delivery_id`]): at most 128 printable ASCII
    /// characters, the same when the host retries the delivery.
    fn push(
        &self,
        pipeline: &str,
        delivery: &str,
        push: GitPush,
    ) -> impl Future<Output = OpResult<HookAnswer>> + Send;
}

/// What a sink did with a push: `Started` answers 201, `AlreadyDelivered`
/// 200, `Ignored` 202.
pub use crate::ops::triggers::PushOutcome as HookAnswer;

/// Seconds a git host is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Clone)]
struct Hooks<S> {
    sink: S,
    body_bytes: usize,
}

/// The webhook routes over `sink`, rate limited per source address and
/// with bodies bounded by `limits` (`/healthz` is neither).
pub fn router<S: HookSink>(sink: S, limits: &HttpLimits) -> Router {
    let hooks = Router::new()
        .route("/hooks/git/{pipeline}", post(receive::<S>))
        .with_state(Hooks {
            sink,
            body_bytes: limits.body_bytes,
        })
        .layer(axum::middleware::from_fn_with_state(
            RateLimit::new(limits.per_minute),
            RateLimit::admit,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(hooks)
}

async fn receive<S: HookSink>(
    State(hooks): State<Hooks<S>>,
    Path(pipeline): Path<String>,
    req: Request,
) -> Response {
    let peer = shown(peer_of(&req));
    let refuse = |status: StatusCode, message: String| {
        if status.is_server_error() {
            tracing::warn!(%peer, %pipeline, %status, %message, "webhook refused");
        } else {
            tracing::info!(%peer, %pipeline, %status, %message, "webhook refused");
        }
        Answer::error(message).with_status(status)
    };
    if let Err(e) = ferry_pipeline::validate_name(&pipeline) {
        let shown: String = pipeline.chars().take(64).collect();
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{shown:?} is not a pipeline name: it {e}"),
        );
    }
    let (parts, body) = req.into_parts();
    let envelope = match webhook::envelope(&parts.headers) {
        Ok(e) => e,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    if let Err(e) = check_declared_length(&parts.headers, hooks.body_bytes) {
        return refuse(e.status(), e.to_string());
    }
    let secret = match hooks.sink.webhook_secret(&pipeline).await {
        Ok(s) if s.is_empty() => {
            return refuse(
                StatusCode::PRECONDITION_FAILED,
                format!("pipeline {pipeline}'s webhook secret is empty; set a non-empty one"),
            );
        }
        Ok(s) => s,
        Err(e) => return op_error(e, &refuse),
    };
    let body: Body = body;
    let body = match read_body(&parts.headers, body, hooks.body_bytes).await {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    if let Err(e) = webhook::verify(envelope.format, &parts.headers, &secret, &body) {
        tracing::warn!(
            %peer, %pipeline, format = envelope.format.as_str(), error = %e,
            "webhook refused: bad proof of the secret"
        );
        return Answer::error(e.to_string()).with_status(e.status());
    }
    drop(secret);
    let delivery = webhook::delivery_id(&envelope, &body);
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = match webhook::parse(&envelope, content_type, &body) {
        Ok(e) => e,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    let format = envelope.format.as_str();
    match event {
        HookEvent::Ping => {
            tracing::info!(%peer, %pipeline, format, %delivery, "webhook ping");
            Answer {
                ok: true,
                event: Some("ping".to_string()),
                ..Answer::default()
            }
            .with_status(StatusCode::OK)
        }
        HookEvent::Other(event) => {
            tracing::info!(%peer, %pipeline, format, %delivery, %event, "webhook event ignored");
            Answer {
                ok: true,
                message: Some(format!("{event} events start nothing; ignored")),
                event: Some(event),
                ..Answer::default()
            }
            .with_status(StatusCode::ACCEPTED)
        }
        HookEvent::Push(push) => {
            let git_ref = push.name.clone();
            let answer = match hooks.sink.push(&pipeline, &delivery, push).await {
                Ok(a) => a,
                Err(e) => return op_error(e, &refuse),
            };
            tracing::info!(%peer, %pipeline, format, %delivery, %git_ref, ?answer, "webhook push");
            let event = Some("push".to_string());
            match answer {
                HookAnswer::Started {
                    execution,
                    revision,
                } => Answer {
                    ok: true,
                    event,
                    message: Some(format!("started execution {execution} at {revision}")),
                    execution: Some(execution),
                    revision: Some(revision),
                }
                .with_status(StatusCode::CREATED),
                HookAnswer::AlreadyDelivered { execution } => Answer {
                    ok: true,
                    event,
                    message: Some(format!("delivery {delivery} was already received")),
                    execution,
                    ..Answer::default()
                }
                .with_status(StatusCode::OK),
                HookAnswer::Ignored(reason) => Answer {
                    ok: true,
                    event,
                    message: Some(reason),
                    ..Answer::default()
                }
                .with_status(StatusCode::ACCEPTED),
            }
        }
    }
}

/// An operation's error as an HTTP answer (503s say when to retry).
fn op_error(e: OpError, refuse: &impl Fn(StatusCode, String) -> Response) -> Response {
    let (status, message) = status_of(e);
    let answer = refuse(status, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        answer.retry_after(RETRY_AFTER_SECS)
    } else {
        answer
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
