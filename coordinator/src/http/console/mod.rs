//! The web console, served by every coordinator on its HTTPS listener:
//! server-rendered pages (maud) over the same `ops` as gRPC, a small
//! stylesheet and a little hand-written JavaScript for live updates (every
//! read-only page works without it).
//!
//! A browser logs in by opening the one-time link `ferry ui` prints
//! (`sessions.rs`). Every request then finds its [`Viewer`]: the session
//! cookie looked up in the replicated state and its operator's roles as they
//! are now, exactly as `authz.rs` checks gRPC callers. State-changing forms
//! carry the session's CSRF token and are refused when it is missing or
//! wrong, or when the browser says the request came from another site;
//! `apply` checks the operator's role again.
//!
//! Architecture invariant: handlers here only adapt HTTP to `ops` (or to the
//! gRPC adapters for what only the leader holds: agents and live logs) and
//! render the answer; they never touch Raft or decide who may do what.

mod approvals;
mod executions;
mod fleet;
mod graph;
mod layout;
mod logs;
mod pipelines;
mod sessions;
mod test_reports;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::server::{HttpLimits, RateLimit, status_of};
use super::webhook::same_secret;
use crate::ops::console::{ConsoleUser, csrf_token};
use crate::ops::{OpError, Ops};

pub use sessions::COOKIE;

/// Longest link or session secret read from a request.
const MAX_SECRET: usize = 128;

/// Largest form a console page sends (a comment of at most 1,000 bytes and
/// a few fields; read before the session is known).
const FORM_BYTES: usize = 16 * 1024;

/// The console's routes over `ops`. Logging in, the one thing anyone may
/// try without a session, is rate limited per source address as webhooks
/// are (`limits.per_minute`).
pub fn router(ops: Ops, limits: &HttpLimits) -> Router {
    let login = Router::new()
        .route(
            "/login/{secret}",
            get(sessions::login_page).post(sessions::login),
        )
        .with_state(ops.clone())
        .layer(axum::middleware::from_fn_with_state(
            RateLimit::new(limits.per_minute),
            RateLimit::admit,
        ));
    Router::new()
        .route("/", get(pipelines::list))
        .route("/pipelines/{pipeline}", get(pipelines::show))
        .route(
            "/pipelines/{pipeline}/executions/{id}",
            get(executions::show),
        )
        .route(
            "/pipelines/{pipeline}/executions/{id}/live",
            get(executions::live),
        )
        .route(
            "/pipelines/{pipeline}/executions/{id}/decide",
            post(executions::decide),
        )
        .route(
            "/pipelines/{pipeline}/executions/{id}/stop",
            post(executions::stop),
        )
        .route(
            "/pipelines/{pipeline}/executions/{id}/retry",
            post(executions::retry),
        )
        .route("/pipelines/{pipeline}/executions/{id}/log", get(logs::show))
        .route(
            "/pipelines/{pipeline}/executions/{id}/log/live",
            get(logs::live),
        )
        .route("/approvals", get(approvals::list))
        .route("/environments", get(fleet::environments))
        .route("/environments/{name}", get(fleet::environment))
        .route("/deployments/{id}", get(fleet::deployment))
        .route("/agents", get(fleet::agents))
        .route("/cluster", get(fleet::cluster))
        .route("/sessions", get(sessions::list))
        .route("/sessions/revoke", post(sessions::revoke))
        .route("/logout", post(sessions::logout))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .with_state(ops)
        .merge(login)
        .layer(DefaultBodyLimit::max(FORM_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers on every console answer: no framing (the approve button must not
/// be clickjacked), scripts and styles from this origin only, no referrer
/// (a login link is in a URL), nothing cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// Who is looking, and their session's CSRF token for the page's forms.
pub struct Viewer {
    pub user: ConsoleUser,
    pub csrf: String,
    secret: String,
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

/// A page's viewer as an extractor: handlers take `viewer: Viewer`, and a
/// request without a valid session gets the refusal page instead.
impl axum::extract::FromRequestParts<Ops> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ops: &Ops,
    ) -> Result<Viewer, Response> {
        viewer(ops, &parts.headers).map_err(|r| *r)
    }
}

/// The logged-in viewer, or the refusal page.
fn viewer(ops: &Ops, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
    let Some(secret) = session_of(headers) else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "Not logged in",
            "This browser holds no Ferry session.",
        )));
    };
    match ops.console_user(&secret) {
        Ok(user) => Ok(Viewer {
            user,
            csrf: csrf_token(&secret),
            secret,
        }),
        Err(e) => Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "Not logged in",
            &e.to_string(),
        ))),
    }
}

/// A state-changing form's viewer: logged in, the form's CSRF token right,
/// and not sent from another site. Returns the form's fields.
fn form_viewer(
    ops: &Ops,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Viewer, Fields), Box<Response>> {
    let viewer = viewer(ops, headers)?;
    let fields: Fields = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sent = field(&fields, "csrf").unwrap_or_default();
    if from_another_site(headers) || !same_secret(sent.as_bytes(), viewer.csrf.as_bytes()) {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's CSRF token is missing or wrong, or it was sent from another site.",
        )));
    }
    Ok((viewer, fields))
}

/// A state-changing form acting for its viewer, as `form_viewer` checks it,
/// with their role checked first when the write needs one (`need`, to do
/// `what`): a refusal here costs no Raft entry. The identity the write
/// acts for, and the form's fields.
fn acting_form(
    ops: &Ops,
    headers: &HeaderMap,
    body: &Bytes,
    need: Option<(ferry_state::Need, &str)>,
) -> Result<(ferry_certs::Identity, Fields), Box<Response>> {
    let (viewer, fields) = form_viewer(ops, headers, body)?;
    if let Some((need, what)) = need
        && let Err(e) = viewer.user.require(need, what)
    {
        return Err(Box::new(op_refused(e, "Refused")));
    }
    Ok((ops.console_identity(&viewer.user), fields))
}

/// Whether a request says it comes from another site (browsers send
/// `Sec-Fetch-Site`; other clients do not, and are no browser to trick).
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

/// A parsed form or query: its fields in order.
type Fields = Vec<(String, String)>;

/// Field `name` of a parsed form or query.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The fields of a request's query string.
fn query_of(uri: &axum::http::Uri) -> Fields {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A refusal as a small page with its status.
fn refused(status: StatusCode, title: &str, why: &str) -> Response {
    let body = layout::page(
        title,
        None,
        html! {
            h1 { (title) }
            p.error { (why) }
            @if status == StatusCode::UNAUTHORIZED {
                p { "Ask for a login link with " code { "ferry ui" } " and open it in this browser." }
            }
        },
    );
    (status, Html(body.into_string())).into_response()
}

/// An operation's error as a refusal page (`server::status_of`).
fn op_refused(e: OpError, title: &str) -> Response {
    let (status, message) = status_of(e);
    refused(status, title, &message)
}

/// A gRPC adapter's error as a refusal page.
fn status_refused(e: tonic::Status, title: &str) -> Response {
    use tonic::Code;
    let status = match e.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refused(status, title, e.message())
}

/// After a form did its work: back to `to` (Post/Redirect/Get).
fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::SEE_OTHER.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-ferry_session=abc; b=2"),
        );
        assert_eq!(session_of(&h).as_deref(), Some("abc"));
        assert_eq!(session_of(&HeaderMap::new()), None);
    }

    #[test]
    fn fields_are_found_by_name() {
        let fields = vec![("a".to_string(), "1".to_string())];
        assert_eq!(field(&fields, "a"), Some("1"));
        assert_eq!(field(&fields, "b"), None);
        let uri: axum::http::Uri = "/x?action=build%2Fcompile&n=2".parse().expect("uri");
        assert_eq!(field(&query_of(&uri), "action"), Some("build/compile"));
    }
}
