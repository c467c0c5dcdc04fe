//! The web console's login and first page, server-rendered with maud (no
//! JavaScript needed to read). A browser logs in by opening the one-time
//! link `ferry ui` prints (`GET /login/{secret}`): the link is used up and
//! an HttpOnly, Secure, SameSite=Strict session cookie is set. Every page
//! looks the session up and checks its operator's roles as `authz.rs` does
//! for gRPC; every state-changing form carries the session's CSRF token.
//!
//! Built so far: login, `Log out`, and the pipelines page. The execution,
//! approval, environment, agent and cluster pages of issue 13 are not.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferry_pipeline::execution::ExecutionStatus;
use maud::{DOCTYPE, Markup, html};

use super::server::status_of;
use super::webhook::same_secret;
use crate::ops::console::{ConsoleUser, PipelineRow, csrf_token};
use crate::ops::{OpError, Ops};
use crate::views::rfc3339;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_session";
/// Longest link or session secret read from a request.
const MAX_SECRET: usize = 128;

/// The console's routes over `ops`.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/", get(pipelines))
        .route("/login/{secret}", get(login))
        .route("/logout", post(logout))
        .with_state(ops)
}

/// The session secret in the request's cookie, if any.
fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() <= MAX_SECRET)
}

/// The page's frame: title, stylesheet, who is logged in and `Log out`.
fn page(title: &str, user: Option<(&ConsoleUser, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Ferry" }
                style { (STYLE) }
            }
            body {
                header {
                    a.brand href="/" { "Ferry" }
                    @if let Some((user, csrf)) = user {
                        span.who {
                            (user.operator) " ("
                            (user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                            ")"
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
header{display:flex;gap:1em;align-items:center;padding:.6em 1.2em;background:#14314f;color:#fff}\
header a.brand{color:#fff;font-weight:700;text-decoration:none}.who{margin-left:auto}\
form.logout{display:inline}main{padding:1.2em}table{border-collapse:collapse}\
td,th{padding:.35em .8em;text-align:left;border-bottom:1px solid #e3e6ec}\
.chip{display:inline-block;min-width:.9em;padding:.1em .45em;margin-right:.25em;border-radius:.6em;\
font-size:.8em;color:#fff}.InProgress,.Stopping{background:#2f6fd6}.Succeeded{background:#2e8540}\
.Failed{background:#c9302c}.Stopped,.Superseded{background:#6c757d}";

/// A refusal as a small page with its status.
fn refused(status: StatusCode, title: &str, why: &str) -> Response {
    let body = page(
        title,
        None,
        html! {
            h1 { (title) }
            p { (why) }
            p { "Ask for a login link with " code { "ferry ui" } " and open it in this browser." }
        },
    );
    (status, Html(body.into_string())).into_response()
}

/// An operation's error as a refusal page (`server::status_of`).
fn op_refused(e: OpError, title: &str) -> Response {
    let (status, message) = status_of(e);
    refused(status, title, &message)
}

/// `GET /login/{secret}`: uses the link up and sets the session cookie.
async fn login(State(ops): State<Ops>, Path(secret): Path<String>) -> Response {
    if secret.len() > MAX_SECRET || !secret.starts_with("ferry-login-") {
        return refused(
            StatusCode::FORBIDDEN,
            "Not a login link",
            "This is not a link `ferry ui` made.",
        );
    }
    match ops.open_session(&secret).await {
        Ok(opened) => {
            let max_age = (opened.expires_at - crate::views::now_ms()).max(0) / 1000;
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                opened.secret
            );
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => op_refused(e, "Login link refused"),
    }
}

/// The logged-in user and the session's secret, or the refusal page.
fn logged_in(ops: &Ops, headers: &HeaderMap) -> Result<(ConsoleUser, String), Box<Response>> {
    let Some(secret) = session_of(headers) else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "Not logged in",
            "This browser holds no Ferry session.",
        )));
    };
    match ops.console_user(&secret) {
        Ok(user) => Ok((user, secret)),
        Err(e) => Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "Not logged in",
            &e.to_string(),
        ))),
    }
}

/// `GET /`: every pipeline with its newest executions.
async fn pipelines(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    let (user, secret) = match logged_in(&ops, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let rows = match ops.console_pipelines().await {
        Ok(rows) => rows,
        Err(e) => return op_refused(e, "Cannot read the pipelines"),
    };
    let csrf = csrf_token(&secret);
    Html(page("Pipelines", Some((&user, &csrf)), pipelines_table(&rows)).into_string())
        .into_response()
}

fn pipelines_table(rows: &[PipelineRow]) -> Markup {
    html! {
        h1 { "Pipelines" }
        @if rows.is_empty() {
            p { "No pipelines yet: apply one with " code { "ferry pipeline apply -f FILE" } "." }
        } @else {
            table {
                thead { tr { th { "Pipeline" } th { "Version" } th { "Latest executions" }
                    th { "Revision" } th { "Started by" } th { "Duration" } } }
                tbody {
                    @for row in rows {
                        tr {
                            td { (row.name) }
                            td { (row.version) }
                            td {
                                @for e in &row.recent {
                                    span class={ "chip " (status_word(e.status)) }
                                        title={ (e.id) " " (status_word(e.status)) " " (rfc3339(e.started_at)) } { (initial(e.status)) }
                                }
                            }
                            @if let Some(last) = row.recent.first() {
                                td { code { (last.revision.chars().take(12).collect::<String>()) } }
                                td { (last.started_by.as_deref().unwrap_or(last.trigger.as_str())) }
                                td { (duration(last.started_at, last.finished_at)) }
                            } @else {
                                td { "-" } td { "-" } td { "-" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn status_word(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::InProgress => "InProgress",
        ExecutionStatus::Stopping => "Stopping",
        ExecutionStatus::Succeeded => "Succeeded",
        ExecutionStatus::Failed => "Failed",
        ExecutionStatus::Stopped => "Stopped",
        ExecutionStatus::Superseded => "Superseded",
    }
}

fn initial(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::InProgress | ExecutionStatus::Stopping => "…",
        ExecutionStatus::Succeeded => "✓",
        ExecutionStatus::Failed => "✗",
        ExecutionStatus::Stopped | ExecutionStatus::Superseded => "–",
    }
}

/// `1m 05s`, or `running` while it has not finished.
fn duration(started: i64, finished: Option<i64>) -> String {
    match finished {
        None => "running".into(),
        Some(f) => {
            let s = (f - started).max(0) / 1000;
            if s >= 60 {
                format!("{}m {:02}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        }
    }
}

/// `POST /logout`: ends the session (the form's CSRF token must match).
async fn logout(State(ops): State<Ops>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, secret) = match logged_in(&ops, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let sent = form_field(&body, "csrf").unwrap_or_default();
    if !same_secret(sent.as_bytes(), csrf_token(&secret).as_bytes()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's CSRF token is missing or wrong (a request from another site?).",
        );
    }
    if let Err(e) = ops.end_session(&secret).await {
        return op_refused(e, "Cannot log out");
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    let mut response = refused(StatusCode::OK, "Logged out", "The session is over.");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The value of field `name` in a URL-encoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_session=abc; b=2"),
        );
        assert_eq!(session_of(&h).as_deref(), Some("abc"));
        assert_eq!(session_of(&HeaderMap::new()), None);
    }

    #[test]
    fn durations_and_csrf_comparison() {
        assert_eq!(duration(0, Some(65_000)), "1m 05s");
        assert_eq!(duration(0, Some(9_999)), "9s");
        assert_eq!(duration(0, None), "running");
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
