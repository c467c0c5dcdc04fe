//! An action's log: the page shows what there is when it is asked for (so
//! it reads without JavaScript), and `…/log/live` streams the rest as
//! server-sent events while the action runs. The bytes are those `ferry
//! logs` gets, through the same adapter (the leader holds live lines; a
//! follower forwards): agents mask secrets before a byte leaves them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use ferry_proto as pb;
use futures::StreamExt;
use maud::html;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::layout::{action_word, badge, enc, execution_href, page, short};
use super::{Viewer, field, op_refused, query_of, refused, status_refused, viewer};
use crate::ops::Ops;
use crate::service::executions::stream_logs;
use crate::views;

/// Most of a log one page shows (its end is kept; `ferry logs` has it all).
const PAGE_LOG_BYTES: usize = 2 * 1024 * 1024;
/// How long a page waits for the log it shows.
const PAGE_LOG_WAIT: Duration = Duration::from_secs(10);

/// The log of `action` as it is now: its text (the end of it if it is
/// longer than [`PAGE_LOG_BYTES`]), and how many bytes came before that end.
async fn log_now(
    ops: &Ops,
    pipeline: &str,
    id: &str,
    action: &str,
) -> Result<(String, usize, usize), tonic::Status> {
    let req = tonic::Request::new(pb::LogsRequest {
        pipeline: pipeline.to_string(),
        execution_id: id.to_string(),
        action: action.to_string(),
        follow: false,
    });
    let mut stream = stream_logs(ops, req).await?.into_inner();
    let mut bytes: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            total += chunk.data.len();
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() > 2 * PAGE_LOG_BYTES {
                bytes.drain(..bytes.len() - PAGE_LOG_BYTES);
            }
        }
        Ok::<_, tonic::Status>(())
    };
    tokio::time::timeout(PAGE_LOG_WAIT, read)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("the log did not arrive in time"))??;
    let skipped = bytes.len().saturating_sub(PAGE_LOG_BYTES);
    let shown = &bytes[skipped..];
    let before = total - shown.len();
    Ok((String::from_utf8_lossy(shown).into_owned(), before, total))
}

/// `GET …/log?action=STAGE/ACTION`.
pub async fn show(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    uri: Uri,
    viewer: Viewer,
) -> Response {
    let query = query_of(&uri);
    let Some(action) = field(&query, "action").map(str::to_string) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Which log?",
            "Name the action: ?action=STAGE/ACTION",
        );
    };
    let view = match ops.get_execution(&pipeline, &id, views::execution).await {
        Ok(v) => v,
        Err(e) => return op_refused(e, "No such execution"),
    };
    let Some(a) = view.stages.iter().find_map(|s| {
        s.actions
            .iter()
            .find(|a| format!("{}/{}", s.name, a.name) == action)
    }) else {
        return refused(
            StatusCode::NOT_FOUND,
            "No such action",
            &format!("execution {id} has no action `{action}`"),
        );
    };
    let (text, before, total) = match log_now(&ops, &pipeline, &id, &action).await {
        Ok(t) => t,
        Err(e) => return status_refused(e, "Cannot read the log"),
    };
    // Only a pending or running action can log more.
    let running = matches!(
        a.status(),
        pb::ActionStatus::Pending | pb::ActionStatus::InProgress
    );
    let exec_href = execution_href(&pipeline, &id);
    let live =
        running.then(|| format!("{exec_href}/log/live?action={}&from={total}", enc(&action)));
    let body = html! {
        p.crumbs { a href="/" { "Pipelines" } " › "
            a href={ "/pipelines/" (enc(&pipeline)) } { (pipeline) } " › "
            a href=(exec_href) { "execution " (short(&id)) } " › log" }
        h1 { code { (action) } " " (badge(action_word(a.status()))) }
        p.small { "Attempt " (a.attempt) @if !a.agent.is_empty() { " on " (a.agent) } }
        @if before > 0 { p.muted { "The first " (before) " bytes are not shown here; " code { "ferry logs" } " has them all." } }
        pre #log data-live=[live] { (text) }
        @if running { p.muted #log-state { "Following the log while the action runs…" } }
    };
    Html(page(&format!("Log of {action}"), Some(&viewer), body).into_string()).into_response()
}

/// `GET …/log/live?action=STAGE/ACTION&from=N`: the log's bytes from
/// offset `N` (or the `Last-Event-ID` a reconnecting browser sends) as
/// `chunk` events, each a JSON string with the event id its end offset;
/// `end` once the action's log is complete.
pub async fn live(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Ok(viewer) = viewer(&ops, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let query = query_of(&uri);
    let action = field(&query, "action").unwrap_or_default().to_string();
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(field(&query, "from"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let req = tonic::Request::new(pb::LogsRequest {
        pipeline,
        execution_id: id,
        action,
        follow: true,
    });
    let mut upstream = match stream_logs(&ops, req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return status_refused(e, "Cannot read the log"),
    };
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        let mut text = Utf8Chunks::default();
        let mut offset = 0usize;
        loop {
            let chunk = tokio::select! {
                c = upstream.next() => c,
                _ = tx.closed() => return,
            };
            let chunk = match chunk {
                Some(Ok(chunk)) => chunk,
                // The log is complete.
                None => break,
                // Not the end: the browser reconnects and resumes.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "console: a live log broke off");
                    return;
                }
            };
            // A session logged out, revoked, or whose roles went stops here.
            if ops.console_user(&viewer.secret).is_err() {
                return;
            }
            let start = offset;
            offset += chunk.data.len();
            // Bytes the page already shows are skipped.
            let fresh = &chunk.data[from.saturating_sub(start).min(chunk.data.len())..];
            let piece = text.push(fresh);
            if piece.is_empty() {
                continue;
            }
            let data = serde_json::Value::String(piece).to_string();
            // The id is where the text sent so far ends: a character held
            // back for its next bytes is sent again after a reconnect.
            let event = Event::default()
                .event("chunk")
                .id((offset - text.held()).to_string())
                .data(data);
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Event::default().event("end").data("end"))).await;
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Turns a byte stream into text without splitting a UTF-8 character
/// across two pieces (an invalid byte becomes U+FFFD).
#[derive(Default)]
struct Utf8Chunks {
    carry: Vec<u8>,
}

impl Utf8Chunks {
    /// Bytes held back: the start of a character whose rest has not come.
    fn held(&self) -> usize {
        self.carry.len()
    }

    fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let complete = self.carry.len() - incomplete_tail(&self.carry);
        let rest = self.carry.split_off(complete);
        let text = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry = rest;
        text
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8
/// character still missing its continuation bytes (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 != 0b1000_0000 {
            // A lead byte: how long its character is.
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if len > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_are_not_split_across_pieces() {
        let mut t = Utf8Chunks::default();
        let bytes = "héllo".as_bytes();
        assert_eq!(t.push(&bytes[..2]), "h");
        assert_eq!(t.push(&bytes[2..]), "éllo");
        assert_eq!(t.push(&[0xff, b'a']), "\u{fffd}a");
        // An invalid byte does not break a character split at the end.
        let e = "é".as_bytes();
        assert_eq!(t.push(&[0xff, b'x', e[0]]), "\u{fffd}x");
        assert_eq!(t.held(), 1);
        assert_eq!(t.push(&e[1..]), "é");
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&"€".as_bytes()[..2]), 2);
    }
}
