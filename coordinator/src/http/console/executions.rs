//! The execution page: its summary, the stage graph (`graph.rs`), the
//! approvals waiting in it with Approve and Reject for those who may decide
//! them, stop and retry for operators, and every action with its attempts
//! and artifacts. `…/live` streams the page's changing parts as server-sent
//! events while the execution runs (`console.js` swaps them in).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use ferry_proto as pb;
use maud::{Markup, html};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::layout::{
    action_word, badge, duration, enc, execution_href, ms, page, short, size, time,
    wire_execution_word,
};
use super::{Viewer, acting_form, field, graph, op_refused, see_other, viewer};
use crate::ops::Ops;
use crate::ops::approvals::Decision;
use crate::ops::console::WaitingApproval;
use crate::views::{self, now_ms};
use ferry_state::Need;

/// How often a live page hears from the server when nothing changed
/// (keeps the connection and idle deadlines alive).
const LIVE_KEEPALIVE: Duration = Duration::from_secs(15);

/// A short digest of what the page's changing parts show: the execution
/// and its waiting approvals (not their rendering, whose running durations
/// change by the second).
fn fingerprint(view: &pb::ExecutionView, waiting: &[WaitingApproval]) -> String {
    use prost::Message;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(view.encode_to_vec());
    for w in waiting.iter().filter(|w| w.execution == view.execution_id) {
        h.update(format!("{w:?}").as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// The parts of the page that change while it runs, by element id.
fn parts(
    viewer: &Viewer,
    view: &pb::ExecutionView,
    waiting: &[WaitingApproval],
) -> Vec<(&'static str, Markup)> {
    let now = now_ms();
    let base = execution_href(&view.pipeline, &view.execution_id);
    vec![
        ("summary", summary(view, now)),
        ("graph", graph::render(view, &format!("{base}/log"), now)),
        ("approvals", approvals(viewer, view, waiting)),
        ("steer", steer(viewer, view)),
        ("tests", super::test_reports::render(view)),
        ("actions", actions(view, &base, now)),
    ]
}

/// `GET /pipelines/{pipeline}/executions/{id}`.
pub async fn show(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    viewer: Viewer,
) -> Response {
    let view = match ops.get_execution(&pipeline, &id, views::execution).await {
        Ok(v) => v,
        Err(e) => return op_refused(e, "No such execution"),
    };
    let waiting = match ops.waiting_approvals(&viewer.user.operator).await {
        Ok(w) => w,
        Err(e) => return op_refused(e, "Cannot read the approvals"),
    };
    let seen = fingerprint(&view, &waiting);
    let parts = parts(&viewer, &view, &waiting);
    // The live stream starts from what this page shows: nothing is sent
    // again (and nothing swapped under the reader's cursor) until it changes.
    let live = (!is_final(&view)).then(|| {
        format!(
            "{}/live?seen={seen}",
            execution_href(&view.pipeline, &view.execution_id),
        )
    });
    let title = format!("{} {}", view.pipeline, short(&view.execution_id));
    let body = html! {
        p.crumbs { a href="/" { "Pipelines" } " › "
            a href={ "/pipelines/" (enc(&view.pipeline)) } { (view.pipeline) } " › execution" }
        h1 { (view.pipeline) " · " code { (short(&view.execution_id)) } }
        div #execution data-live=[live] {
            @for (id, part) in parts {
                section id=(id) { (part) }
            }
        }
    };
    Html(page(&title, Some(&viewer), body).into_string()).into_response()
}

fn is_final(view: &pb::ExecutionView) -> bool {
    !matches!(
        view.status(),
        pb::ExecutionStatus::InProgress | pb::ExecutionStatus::Stopping
    )
}

fn summary(view: &pb::ExecutionView, now: i64) -> Markup {
    let started = ms(&view.started_at);
    html! {
        dl.facts {
            dt { "Status" } dd { (badge(wire_execution_word(view.status()))) }
            dt { "Revision" } dd { code { (view.revision) } @if !view.source.is_empty() { " (" (view.source) ")" } }
            dt { "Pipeline version" } dd { (view.pipeline_version) }
            dt { "Started by" } dd { (view.trigger) }
            dt { "Started" } dd { (time(started)) }
            dt { "Duration" } dd { (duration(started, ms(&view.finished_at), now)) }
            @if !view.waiting.is_empty() { dt { "Waiting" } dd { (view.waiting) } }
            @if let Some(stop) = &view.stop {
                dt { "Stopped" } dd { "by " (stop.by) @if !stop.reason.is_empty() { ": " (stop.reason) } }
            }
            @for (label, runs) in [("Upstream", &view.upstream), ("Started downstream", &view.downstream)] {
                @if !runs.is_empty() {
                    dt { (label) }
                    dd { @for run in runs.iter() {
                        @if let Some((p, id)) = run.split_once('/') {
                            a href=(execution_href(p, id)) { (p) " " (short(id)) } " "
                        }
                    } }
                }
            }
            @if !view.superseded_by.is_empty() {
                dt { "Superseded by" } dd { a href=(execution_href(&view.pipeline, &view.superseded_by)) { (short(&view.superseded_by)) } }
            }
        }
    }
}

/// The approvals of this execution that wait, each with its form for
/// those who may decide it (the server checks again when it is sent).
fn approvals(viewer: &Viewer, view: &pb::ExecutionView, waiting: &[WaitingApproval]) -> Markup {
    let here: Vec<&WaitingApproval> = waiting
        .iter()
        .filter(|w| w.execution == view.execution_id)
        .collect();
    html! {
        @for w in here {
            (approval_form(viewer, w, false))
        }
    }
}

/// One waiting approval: what it asks, and Approve / Reject with a comment
/// when `viewer` may decide it (no buttons otherwise). `on_approvals`: the
/// form is on the approvals page, where the browser returns after it.
pub fn approval_form(viewer: &Viewer, w: &WaitingApproval, on_approvals: bool) -> Markup {
    let action = format!("{}/decide", execution_href(&w.pipeline, &w.execution));
    html! {
        div.approval data-action=(w.action) {
            h2 { "Approval " code { (w.action) } " waits" }
            @if !w.message.is_empty() { p.message { (w.message) } }
            // Only web links: a `javascript:` URL would run on click.
            @if w.url.starts_with("https://") || w.url.starts_with("http://") {
                p { "Look at: " a href=(w.url) rel="noopener noreferrer" target="_blank" { (w.url) } }
            }
            p.small { "Pipeline " (w.pipeline) ", revision " code { (short(&w.revision)) } ", waiting since " (time(w.since)) }
            @match &w.refused {
                None => {
                    form.decide method="post" action=(action) {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="action" value=(w.action);
                        @if on_approvals { input type="hidden" name="back" value="/approvals"; }
                        label { "Comment " textarea name="comment" rows="2" cols="50" placeholder="why (needed to reject)" {} }
                        div.buttons {
                            button.approve type="submit" name="decision" value="approve" { "Approve" }
                            button.reject type="submit" name="decision" value="reject" { "Reject" }
                        }
                    }
                }
                Some(why) => { p.muted { "You cannot decide it: " (why) } }
            }
        }
    }
}

/// Stop (while it runs) and retry (a failed or stopped stage), for
/// operators and admins only.
fn steer(viewer: &Viewer, view: &pb::ExecutionView) -> Markup {
    if !viewer.user.may_operate() {
        return html! {};
    }
    let base = execution_href(&view.pipeline, &view.execution_id);
    let retryable: Vec<&pb::StageView> = view
        .stages
        .iter()
        .filter(|s| {
            is_final(view)
                && matches!(
                    s.status(),
                    pb::ActionStatus::Failed | pb::ActionStatus::Stopped
                )
        })
        .collect();
    html! {
        @if !is_final(view) {
            form.inline method="post" action={ (base) "/stop" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="text" name="reason" placeholder="reason for stopping" maxlength="1000";
                button.stop type="submit" { "Stop execution" }
            }
        }
        @for s in retryable {
            form.inline method="post" action={ (base) "/retry" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="stage" value=(s.name);
                button type="submit" { "Retry stage " (s.name) }
            }
        }
    }
}

/// Every action: status, attempts, agent, duration, message, artifacts.
fn actions(view: &pb::ExecutionView, base: &str, now: i64) -> Markup {
    html! {
        h2 { "Actions" }
        table.actions {
            thead { tr { th { "Action" } th { "Status" } th { "Attempt" } th { "Agent" }
                th { "Duration" } th { "Message" } th { "Artifacts" } th { "Log" } } }
            tbody {
                @for s in &view.stages {
                    @for a in &s.actions {
                        @let name = format!("{}/{}", s.name, a.name);
                        @if let Some((base, summary)) = matrix_group(s, a) {
                            tr.matrix { td colspan="8" { code { (s.name) "/" (base) } " · matrix: " (summary) } }
                        }
                        tr {
                            td { code { (name) } }
                            td { (badge(action_word(a.status()))) }
                            td { (a.attempt) }
                            td { (a.agent) }
                            td { (duration(ms(&a.started_at), ms(&a.finished_at), now)) }
                            td.message {
                                (a.message)
                                @if let Some(t) = &a.tests {
                                    div { a href="#tests" { "tests: " (t.passed) " passed, " (t.failed + t.errors) " failed" } }
                                }
                                @for d in &a.approvals {
                                    div { (d.by) " "
                                        (if d.decision() == pb::ApprovalDecision::Approved { "approved" } else { "rejected" })
                                        @if !d.comment.is_empty() { ": “" (d.comment) "”" } }
                                }
                            }
                            td {
                                @for o in &a.outputs {
                                    div.artifact title=(o.digest) { (o.name) " " code { (short(o.digest.trim_start_matches("sha256:"))) } " " (size(o.size)) }
                                }
                            }
                            td { @if a.attempt > 0 { a href={ (base) "/log?action=" (enc(&name)) } { "log" } } }
                        }
                    }
                }
            }
        }
    }
}

/// When `a` is the first cell of a matrix in stage `s`: the matrix's name
/// and its cells counted by status.
fn matrix_group<'a>(s: &pb::StageView, a: &'a pb::ActionView) -> Option<(&'a str, String)> {
    let cells = s
        .actions
        .iter()
        .map(|c| (c.name.as_str(), action_word(c.status())));
    ferry_pipeline::matrix::group_summary(&a.name, cells)
}

/// `GET …/live`: the changing parts as server-sent events (`update`: a
/// JSON object of element id → HTML) until the execution ends (`end`).
/// The session is checked again before every update.
pub async fn live(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    // What the page already shows (`fingerprint`): not sent again.
    let mut seen = super::field(&super::query_of(&uri), "seen").map(str::to_string);
    let Ok(viewer) = viewer(&ops, &headers) else {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    };
    // Linearizable first; later views follow this member's applied index.
    if let Err(e) = ops.get_execution(&pipeline, &id, |_, _| ()).await {
        return op_refused(e, "No such execution");
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(8);
    tokio::spawn(async move {
        let mut applied = ops.applied();
        let mut last: Option<pb::ExecutionView> = None;
        loop {
            if ops.console_user(&viewer.secret).is_err() {
                return;
            }
            let Ok(view) = ops.local_execution(&pipeline, &id, views::execution) else {
                return;
            };
            if last.as_ref() != Some(&view) {
                let waiting = ops
                    .waiting_approvals(&viewer.user.operator)
                    .await
                    .unwrap_or_default();
                if seen
                    .take()
                    .is_some_and(|s| s == fingerprint(&view, &waiting))
                {
                    last = Some(view);
                    continue;
                }
                let update: serde_json::Map<String, serde_json::Value> =
                    parts(&viewer, &view, &waiting)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.into_string().into()))
                        .collect();
                let data = serde_json::Value::Object(update).to_string();
                if tx
                    .send(Ok(Event::default().event("update").data(data)))
                    .await
                    .is_err()
                {
                    return;
                }
                if is_final(&view) {
                    let _ = tx.send(Ok(Event::default().event("end").data("end"))).await;
                    return;
                }
                last = Some(view);
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(LIVE_KEEPALIVE) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(LIVE_KEEPALIVE))
        .into_response()
}

/// Where a form sends the browser back to: the approvals page when it
/// came from there, else the execution (never an address the form names:
/// no open redirect).
fn back_to(fields: &[(String, String)], pipeline: &str, id: &str) -> String {
    match field(fields, "back") {
        Some("/approvals") => "/approvals".to_string(),
        _ => execution_href(pipeline, id),
    }
}

/// `POST …/decide`: approve or reject (`decision`) the approval `action`
/// with `comment`. `ops.decide` checks who may, and `apply` again.
pub async fn decide(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, fields) = match acting_form(&ops, &headers, &body, None) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let approve = match field(&fields, "decision") {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            return op_refused(
                crate::ops::OpError::Invalid("the decision must be approve or reject".into()),
                "Not decided",
            );
        }
    };
    let decision = Decision {
        pipeline: pipeline.clone(),
        execution: id.clone(),
        action: field(&fields, "action").unwrap_or_default().to_string(),
        approve,
        comment: field(&fields, "comment").unwrap_or_default().to_string(),
    };
    match ops.decide(&who, decision, None).await {
        Ok(_) => see_other(&back_to(&fields, &pipeline, &id)),
        Err(e) => op_refused(e, "Not decided"),
    }
}

/// `POST …/stop`: stops the execution (running actions finish).
pub async fn stop(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let need = Some((Need::Operate, "stop executions"));
    let (who, fields) = match acting_form(&ops, &headers, &body, need) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let reason = field(&fields, "reason").unwrap_or_default();
    match ops
        .stop_execution(&who, &pipeline, &id, reason, false, None)
        .await
    {
        Ok(()) => see_other(&back_to(&fields, &pipeline, &id)),
        Err(e) => op_refused(e, "Not stopped"),
    }
}

/// `POST …/retry`: runs a failed or stopped `stage` again.
pub async fn retry(
    State(ops): State<Ops>,
    Path((pipeline, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let need = Some((Need::Operate, "retry stages"));
    let (who, fields) = match acting_form(&ops, &headers, &body, need) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let stage = field(&fields, "stage").unwrap_or_default();
    match ops
        .retry_stage(&who, &pipeline, &id, stage, false, None)
        .await
    {
        Ok(()) => see_other(&back_to(&fields, &pipeline, &id)),
        Err(e) => op_refused(e, "Not retried"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_returns_only_to_the_console() {
        let f = |back: &str| vec![("back".to_string(), back.to_string())];
        assert_eq!(back_to(&f("/approvals"), "p", "e"), "/approvals");
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
        ] {
            assert_eq!(
                back_to(&f(evil), "p", "e"),
                "/pipelines/p/executions/e",
                "{evil}"
            );
        }
    }
}
