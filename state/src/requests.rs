//! Requests with a request id (`StartExecution`, `Decide`, `StopExecution`,
//! `RetryStage`, `ApplyPipeline`): the first is applied, and the same id
//! from the same caller again answers the first result, refusal included,
//! instead of acting twice. So a client may repeat a write whose answer it
//! lost (a broken connection, a leader change) without a second execution.
//! Records are kept for [`REQUEST_TTL_MS`] and at most [`REQUESTS_KEPT`];
//! both are pruned by the commands' own times, never a clock.

use serde::{Deserialize, Serialize};

use super::apply::Applied;
use super::{ClusterState, Command, Output, Reason, Rejection};

/// How long a request id is remembered: a day, in milliseconds.
pub const REQUEST_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Most request ids remembered at once (the oldest go first).
pub const REQUESTS_KEPT: usize = 10_000;
/// Longest request id, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// What the state keeps of a request: what it asked and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub fingerprint: String,
    pub at: i64,
    pub result: Result<Output, Rejection>,
}

/// A request's identity as the wrapping command carries it.
pub(crate) struct Request {
    pub caller: String,
    pub id: String,
    pub fingerprint: String,
    pub at: i64,
}

/// The key of `caller`'s request `id` in [`ClusterState::requests`].
pub fn key(caller: &str, id: &str) -> String {
    format!("{caller}\n{id}")
}

/// Whether `id` is a request id the API accepts: 1 to
/// [`MAX_REQUEST_ID`] printable ASCII characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID {
        return Err(format!(
            "request_id must be 1 to {MAX_REQUEST_ID} characters"
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("request_id must be printable ASCII without spaces".into());
    }
    Ok(())
}

impl ClusterState {
    /// The first result of `caller`'s request `id`, if it is remembered and
    /// asked for the same thing; a refusal when the id was used for
    /// another request.
    pub fn remembered(&self, caller: &str, id: &str, fingerprint: &str) -> Option<Applied> {
        let record = self.requests.get(&key(caller, id))?;
        if record.fingerprint != fingerprint {
            return Some(Err(reused(id)));
        }
        Some(record.result.clone())
    }

    /// Applies `command` once for `request`.
    pub(super) fn apply_requested(&mut self, request: Request, command: Command) -> Applied {
        if matches!(command, Command::Requested { .. }) {
            return Err(Rejection::FailedPrecondition(
                "a request wraps one command, not another request".into(),
            ));
        }
        let now = request.at;
        self.requests
            .retain(|_, r| r.at > now.saturating_sub(REQUEST_TTL_MS));
        if let Some(first) = self.remembered(&request.caller, &request.id, &request.fingerprint) {
            return first;
        }
        let result = self.apply(command);
        self.requests.insert(
            key(&request.caller, &request.id),
            RequestRecord {
                fingerprint: request.fingerprint,
                at: now,
                result: result.clone(),
            },
        );
        super::keep_latest(&mut self.requests, REQUESTS_KEPT, |r| r.at);
        result
    }
}

fn reused(id: &str) -> Rejection {
    Rejection::Conflict(
        Reason::RequestIdReused,
        format!("request_id `{id}` was used for a different request; use a new id"),
    )
}
