//! End to end: logging in to the web console (issue 13, first part) — a
//! one-time link from `ferry ui`, the session cookie's flags, the pipelines
//! page, a used or expired link refused, roles checked on every request, and
//! `Log out` that needs the form's CSRF token. Over curl; `browser.rs` goes
//! through the same in headless Chromium.

use std::time::Duration;

use ferry_tests::{Cluster, HttpAnswer, Repo};

/// `ferry ui` as `user`: the login URL.
fn login_link(c: &Cluster, user: &str, ttl: &str) -> String {
    let out = c.ferry_ok(Some(user), &["ui", "--ttl", ttl]);
    out.lines().next().unwrap_or_default().trim().to_string()
}

/// The session cookie a login answer sets (`name=value`).
fn cookie_of(answer: &HttpAnswer) -> String {
    answer
        .headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The CSRF token in a page's `Log out` form.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_login_link_opens_a_session_once_and_the_session_obeys_roles() {
    let c = Cluster::start("console");
    c.grant("vic", "viewer");
    let repo = Repo::new();
    repo.commit(&[("README", "console\n")], "first");
    c.apply(&format!(
        "name: shop\nexecution_mode: parallel\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval}}\n",
        repo.url()
    ));
    c.ferry_ok(Some("admin"), &["run", "shop"]);

    // Nobody without a role gets a link.
    c.user("nobody");
    assert!(!c.ferry(Some("nobody"), &["ui"]).success);

    let link = login_link(&c, "vic", "5m");
    assert!(link.starts_with("https://"), "{link}");
    let opened = c.https_url("GET", &link, &[], None);
    assert_eq!(opened.status, 303, "{opened:?}");
    let set = opened.headers.to_ascii_lowercase();
    for flag in ["httponly", "secure", "samesite=strict"] {
        assert!(
            set.contains(flag),
            "cookie without {flag}: {}",
            opened.headers
        );
    }
    let cookie = cookie_of(&opened);
    assert!(cookie.starts_with("ferry_session="), "{cookie}");

    // The pipelines page, as vic.
    let page = c.https(1, "GET", "/", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("shop"), "{}", page.body);
    assert!(page.body.contains("vic (viewer)"), "{}", page.body);
    assert!(page.body.contains("chip InProgress"), "{}", page.body);

    // The link works once; no cookie, no page.
    let again = c.https_url("GET", &link, &[], None);
    assert_eq!(again.status, 403, "{again:?}");
    assert!(again.body.contains("ferry ui"), "{}", again.body);
    let anonymous = c.https(1, "GET", "/", &[], None);
    assert_eq!(anonymous.status, 401);

    // An expired link is refused.
    let short = login_link(&c, "vic", "1s");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.https_url("GET", &short, &[], None).status, 403);

    // Log out needs the form's CSRF token (a cross-site form has none).
    let forged = c.https(
        1,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(b"csrf=guess"),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        c.https(1, "GET", "/", &[("Cookie", &cookie)], None).status,
        200
    );
    let form = format!("csrf={}", csrf_of(&page.body));
    let out = c.https(
        1,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        c.https(1, "GET", "/", &[("Cookie", &cookie)], None).status,
        401
    );

    // A new session stops working when the operator's role is revoked.
    let link = login_link(&c, "vic", "5m");
    let cookie = cookie_of(&c.https_url("GET", &link, &[], None));
    assert_eq!(
        c.https(1, "GET", "/", &[("Cookie", &cookie)], None).status,
        200
    );
    c.ferry_ok(Some("admin"), &["rbac", "revoke", "vic", "viewer"]);
    let denied = c.https(1, "GET", "/", &[("Cookie", &cookie)], None);
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert!(denied.body.contains("holds no role"), "{}", denied.body);
}
