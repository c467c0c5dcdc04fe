//! "Approvals": every approval waiting for a decision, oldest first, with
//! Approve and Reject for those the viewer may decide (the others say why
//! not). The forms post to the execution's `decide` route.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::executions::approval_form;
use super::layout::{execution_href, page, short};
use super::{Viewer, op_refused};
use crate::ops::Ops;

/// `GET /approvals`.
pub async fn list(State(ops): State<Ops>, viewer: Viewer) -> Response {
    let waiting = match ops.waiting_approvals(&viewer.user.operator).await {
        Ok(w) => w,
        Err(e) => return op_refused(e, "Cannot read the approvals"),
    };
    let (mine, others): (Vec<_>, Vec<_>) = waiting.iter().partition(|w| w.refused.is_none());
    let body = html! {
        h1 { "Approvals waiting for me" }
        @if mine.is_empty() { p { "Nothing waits for your decision." } }
        @for w in &mine {
            (approval_form(&viewer, w, true))
            p.small { a href=(execution_href(&w.pipeline, &w.execution)) { "execution " (short(&w.execution)) } }
        }
        @if !others.is_empty() {
            h2 { "Waiting for others" }
            ul {
                @for w in &others {
                    li {
                        a href=(execution_href(&w.pipeline, &w.execution)) { (w.pipeline) " " (short(&w.execution)) }
                        " " code { (w.action) }
                    }
                }
            }
        }
    };
    Html(page("Approvals", Some(&viewer), body).into_string()).into_response()
}
