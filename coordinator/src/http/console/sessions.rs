//! Logging in and out, and an admin's list of console sessions. A browser
//! logs in by opening the one-time link `ferry ui` prints
//! (`GET /login/{secret}`, a page that uses nothing up) and pressing
//! `Log in` (`POST`): the link is used up and an HttpOnly, Secure,
//! SameSite=Strict `__Host-` session cookie is set. `Log out` ends the session; an
//! admin can see every session and revoke any.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::layout::{page, time};
use super::{
    MAX_SECRET, Viewer, acting_form, field, form_viewer, from_another_site, op_refused, refused,
    see_other,
};
use crate::ops::Ops;
use ferry_state::Need;

/// The session cookie's name. `__Host-`: the browser keeps it only from
/// this exact origin, over HTTPS, for every path, so no sibling subdomain
/// can plant one.
pub const COOKIE: &str = "__Host-ferry_session";

/// Refuses what is not a link `ferry ui` made, and a browser another site
/// sent to one (it would log the browser in as someone else).
fn check_link(secret: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if secret.len() > MAX_SECRET || !secret.starts_with("ferry-login-") {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Not a login link",
            "This is not a link `ferry ui` made.",
        )));
    }
    if from_another_site(headers) {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Log in here",
            "Another site sent the browser to this login link; copy the link into the address bar instead.",
        )));
    }
    Ok(())
}

/// `GET /login/{secret}`: a page with a `Log in` button. Opening the link
/// uses nothing up: chat and mail previews fetch links, and a page of
/// another site could send a browser here to log it in as someone else.
pub async fn login_page(
    State(ops): State<Ops>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_link(&secret, &headers) {
        return *r;
    }
    let operator = match ops.login_link_operator(&secret).await {
        Ok(o) => o,
        Err(e) => return op_refused(e, "Login link refused"),
    };
    let action = format!("/login/{secret}");
    let body = html! {
        h1 { "Log in to Ferry" }
        p { "This link logs this browser in as " strong { (operator) } ", once." }
        form.login method="post" action=(action) {
            button.approve type="submit" { "Log in as " (operator) }
        }
    };
    Html(page("Log in", None, body).into_string()).into_response()
}

/// `POST /login/{secret}`: uses the link up and sets the session cookie.
pub async fn login(
    State(ops): State<Ops>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_link(&secret, &headers) {
        return *r;
    }
    match ops.open_session(&secret).await {
        Ok(opened) => {
            let max_age = (opened.expires_at - crate::views::now_ms()).max(0) / 1000;
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                opened.secret
            );
            let mut response = see_other("/");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => op_refused(e, "Login link refused"),
    }
}

/// `POST /logout`: ends the session (the form's CSRF token must match).
pub async fn logout(State(ops): State<Ops>, headers: HeaderMap, body: Bytes) -> Response {
    let (viewer, _) = match form_viewer(&ops, &headers, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(e) = ops.end_session(&viewer.secret).await {
        return op_refused(e, "Cannot log out");
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    let mut response = refused(StatusCode::OK, "Logged out", "The session is over.");
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /sessions` (admins): every console session that lasts.
pub async fn list(State(ops): State<Ops>, viewer: Viewer) -> Response {
    if !viewer.user.is_admin() {
        return refused(
            StatusCode::FORBIDDEN,
            "Admins only",
            "Only an admin can see the console's sessions.",
        );
    }
    let rows = match ops.list_sessions().await {
        Ok(r) => r,
        Err(e) => return op_refused(e, "Cannot read the sessions"),
    };
    let body = html! {
        h1 { "Console sessions" }
        table {
            thead { tr { th { "Session" } th { "Operator" } th { "Opened" } th { "Expires" } th {} } }
            tbody {
                @for r in &rows {
                    tr {
                        td { code { (r.id) } }
                        td { (r.operator) }
                        td { (time(Some(r.created_at))) }
                        td { (time(Some(r.expires_at))) }
                        td {
                            form.inline method="post" action="/sessions/revoke" {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                input type="hidden" name="session" value=(r.id);
                                button type="submit" { "Revoke" }
                            }
                        }
                    }
                }
            }
        }
    };
    Html(page("Sessions", Some(&viewer), body).into_string()).into_response()
}

/// `POST /sessions/revoke` (admins; `apply` checks the role again).
pub async fn revoke(State(ops): State<Ops>, headers: HeaderMap, body: Bytes) -> Response {
    let need = Some((Need::Admin, "revoke console sessions"));
    let (who, fields) = match acting_form(&ops, &headers, &body, need) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let id = field(&fields, "session").unwrap_or_default();
    match ops.revoke_session(&who, id).await {
        Ok(()) => see_other("/sessions"),
        Err(e) => op_refused(e, "Not revoked"),
    }
}
