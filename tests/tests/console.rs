//! End to end: logging in to the web console (issue 13, first part) — a
//! one-time link from `ferry ui`, the session cookie's flags, the pipelines
//! page, a used or expired link refused, roles checked on every request, and
//! `Log out` that needs the form's CSRF token; the execution page's graph,
//! approving from it (approvers only: a viewer has no button and a forged
//! POST is refused), logs with secrets masked, live updates, the fleet
//! pages, and an admin revoking a session. Over curl, so every answer's
//! status and headers are checked; `browser.rs` drives a real browser.

use std::time::Duration;

use ferry_tests::{Cluster, HttpAnswer, Repo, ensure_busybox_image};

/// `ferry ui` as `user`: the login URL.
fn login_link(c: &Cluster, user: &str, ttl: &str) -> String {
    let out = c.ferry_ok(Some(user), &["ui", "--ttl", ttl]);
    out.lines().next().unwrap_or_default().trim().to_string()
}

/// Opens a login link as a browser does: the page (twice: looking uses
/// nothing up), then its `Log in` button. The button's answer.
fn open_link(c: &Cluster, link: &str) -> HttpAnswer {
    for _ in 0..2 {
        let page = c.https_url("GET", link, &[], None);
        assert_eq!(page.status, 200, "{page:?}");
        assert!(page.body.contains("Log in as"), "{}", page.body);
    }
    c.https_url("POST", link, &[], None)
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
    // A page of another site cannot log a browser in (login CSRF).
    let forced = c.https_url("POST", &link, &[("Sec-Fetch-Site", "cross-site")], None);
    assert_eq!(forced.status, 403, "{forced:?}");
    let opened = open_link(&c, &link);
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
    assert!(cookie.starts_with("__Host-ferry_session="), "{cookie}");

    // The pipelines page, as vic.
    let page = c.https(1, "GET", "/", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("shop"), "{}", page.body);
    assert!(page.body.contains("vic (viewer)"), "{}", page.body);
    assert!(page.body.contains("chip InProgress"), "{}", page.body);

    // The link works once; no cookie, no page.
    let again = c.https_url("GET", &link, &[], None);
    assert_eq!(again.status, 403, "{again:?}");
    assert_eq!(c.https_url("POST", &link, &[], None).status, 403);
    assert!(again.body.contains("ferry ui"), "{}", again.body);
    let anonymous = c.https(1, "GET", "/", &[], None);
    assert_eq!(anonymous.status, 401);

    // An expired link is refused.
    let short = login_link(&c, "vic", "1s");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.https_url("GET", &short, &[], None).status, 403);
    assert_eq!(c.https_url("POST", &short, &[], None).status, 403);

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
    let cookie = cookie_of(&open_link(&c, &link));
    assert_eq!(
        c.https(1, "GET", "/", &[("Cookie", &cookie)], None).status,
        200
    );
    c.ferry_ok(Some("admin"), &["rbac", "revoke", "vic", "viewer"]);
    let denied = c.https(1, "GET", "/", &[("Cookie", &cookie)], None);
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert!(denied.body.contains("holds no role"), "{}", denied.body);
}

/// Logs `user` in: their session cookie.
fn log_in(c: &Cluster, user: &str) -> String {
    let link = login_link(c, user, "5m");
    let opened = open_link(c, &link);
    assert_eq!(opened.status, 303, "{opened:?}");
    cookie_of(&opened)
}

/// GETs `path` on member 1 with `cookie`.
fn get(c: &Cluster, cookie: &str, path: &str) -> HttpAnswer {
    c.https(1, "GET", path, &[("Cookie", cookie)], None)
}

/// POSTs a form to `path` on member 1 with `cookie`.
fn post_form(c: &Cluster, cookie: &str, path: &str, form: &str) -> HttpAnswer {
    c.https(
        1,
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(form.as_bytes()),
    )
}

#[test]
fn an_approver_follows_and_approves_a_run_and_nobody_else_can() {
    ensure_busybox_image();
    let mut c = Cluster::start("console-run");
    let agent = c.add_agent("a", &["docker"]);
    c.set_secret("api-token", b"s3cr3t-console-value");
    c.grant("ann", "approver");
    c.grant("vic", "viewer");
    c.grant("opal", "operator");
    let repo = Repo::new();
    repo.commit(&[("README", "console\n")], "first");
    c.apply(&format!(
        r#"name: shop
source: {{git: {}}}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        secrets: {{TOKEN: api-token}}
        commands: ["echo hello-from-build", "echo token=$TOKEN"]
      - name: lint
        type: test
        image: ferry-local/busybox
        commands: ["echo lint-ok"]
  - name: gate
    actions:
      - name: release
        type: approval
        approvers: [approver]
        message: "Ship <b>shop</b> to production?"
        url: "https://staging.example.invalid/"
"#,
        repo.url()
    ));
    let id = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    c.wait_status("shop", &id, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    let page_path = format!("/pipelines/shop/executions/{id}");

    // The approver's page: the graph, coloured by status, and the buttons.
    let ann = log_in(&c, "ann");
    let page = get(&c, &ann, &page_path);
    assert_eq!(page.status, 200, "{}", page.body);
    for part in [
        "<svg",
        r#"class="node Succeeded" data-action="build/compile""#,
        r#"class="node WaitingForApproval" data-action="gate/release""#,
        r#"class="approve""#,
        "Ship &lt;b&gt;shop&lt;/b&gt; to production?",
        r#"href="https://staging.example.invalid/""#,
        &agent,
    ] {
        assert!(page.body.contains(part), "no {part} in {}", page.body);
    }
    let headers = page.headers.to_ascii_lowercase();
    for h in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
    ] {
        assert!(headers.contains(h), "no {h} in {headers}");
    }
    // An approver is no operator: no stop button.
    assert!(!page.body.contains("Stop execution"), "{}", page.body);

    // The log, with the secret masked as everywhere.
    let log = get(&c, &ann, &format!("{page_path}/log?action=build%2Fcompile"));
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(log.body.contains("hello-from-build"), "{}", log.body);
    assert!(log.body.contains("token=***"), "{}", log.body);
    assert!(!log.body.contains("s3cr3t-console-value"), "{}", log.body);

    // A viewer sees the run but no button, and a forged decision with the
    // viewer's own valid CSRF token is refused by the server.
    let vic = log_in(&c, "vic");
    let seen = get(&c, &vic, &page_path);
    assert_eq!(seen.status, 200);
    assert!(!seen.body.contains(r#"class="approve""#), "{}", seen.body);
    assert!(seen.body.contains("You cannot decide it"), "{}", seen.body);
    let forged = post_form(
        &c,
        &vic,
        &format!("{page_path}/decide"),
        &format!(
            "csrf={}&action=gate%2Frelease&decision=approve",
            csrf_of(&seen.body)
        ),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("approver"), "{}", forged.body);
    // Nor may a viewer stop it.
    let stop = post_form(
        &c,
        &vic,
        &format!("{page_path}/stop"),
        &format!("csrf={}", csrf_of(&seen.body)),
    );
    assert_eq!(stop.status, 403, "{}", stop.body);
    // Refused before anything is proposed (apply's refusal would name the
    // state the command was applied to): no Raft entry for a viewer's POST.
    assert!(stop.body.contains("from the console"), "{}", stop.body);
    // An operator has the stop button.
    let opal = log_in(&c, "opal");
    assert!(get(&c, &opal, &page_path).body.contains("Stop execution"));

    // The approver's form without its CSRF token (what another site could
    // send) is refused, and so is one the browser marks as cross-site.
    let no_token = post_form(
        &c,
        &ann,
        &format!("{page_path}/decide"),
        "action=gate%2Frelease&decision=approve",
    );
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let form = format!(
        "csrf={}&action=gate%2Frelease&decision=approve&comment=ship+it",
        csrf_of(&page.body)
    );
    let cross = c.https(
        1,
        "POST",
        &format!("{page_path}/decide"),
        &[
            ("Cookie", &ann),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert_eq!(
        Cluster::action(&c.status("shop", &id), "gate", "release")["status"],
        "WaitingForApproval"
    );

    // The approvals page lists it for the approver.
    let approvals = get(&c, &ann, "/approvals");
    assert!(
        approvals.body.contains("gate/release"),
        "{}",
        approvals.body
    );

    // A comment is bounded like a stop's reason.
    let long = post_form(
        &c,
        &ann,
        &format!("{page_path}/decide"),
        &format!(
            "csrf={}&action=gate%2Frelease&decision=approve&comment={}",
            csrf_of(&page.body),
            "x".repeat(1_001)
        ),
    );
    assert_eq!(long.status, 400, "{}", long.body);

    // Approving works, then the run succeeds.
    let done = post_form(&c, &ann, &format!("{page_path}/decide"), &form);
    assert_eq!(done.status, 303, "{}", done.body);
    let end = c.wait_status("shop", &id, "the run to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(end["status"], "Succeeded", "{end}");
    let page = get(&c, &ann, &page_path);
    assert!(
        page.body.contains("ann approved: “ship it”"),
        "{}",
        page.body
    );

    // The live stream of a finished run: its last state, then `end`.
    let live = get(&c, &ann, &format!("{page_path}/live"));
    assert_eq!(live.status, 200, "{}", live.body);
    assert!(
        live.headers
            .to_ascii_lowercase()
            .contains("text/event-stream")
    );
    assert!(live.body.contains("event: update"), "{}", live.body);
    assert!(live.body.contains("event: end"), "{}", live.body);
    let log_live = get(
        &c,
        &ann,
        &format!("{page_path}/log/live?action=build%2Fcompile&from=0"),
    );
    assert!(
        log_live.body.contains("hello-from-build"),
        "{}",
        log_live.body
    );

    // An operator stops a run from the console, then retries its stage.
    let second = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    let second_path = format!("/pipelines/shop/executions/{second}");
    c.wait_status("shop", &second, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    let opal_page = get(&c, &opal, &second_path);
    let stopped = post_form(
        &c,
        &opal,
        &format!("{second_path}/stop"),
        &format!("csrf={}&reason=wrong+commit", csrf_of(&opal_page.body)),
    );
    assert_eq!(stopped.status, 303, "{}", stopped.body);
    let end = c.wait_status("shop", &second, "the stop", |v| v["status"] == "Stopped");
    assert!(end.to_string().contains("wrong commit"), "{end}");
    let retry_page = get(&c, &opal, &second_path);
    assert!(
        retry_page.body.contains("Retry stage"),
        "{}",
        retry_page.body
    );
    let retried = post_form(
        &c,
        &opal,
        &format!("{second_path}/retry"),
        &format!("csrf={}&stage=gate", csrf_of(&retry_page.body)),
    );
    assert_eq!(retried.status, 303, "{}", retried.body);
    c.wait_status("shop", &second, "the retry", |v| {
        v["status"] == "InProgress"
    });

    // The pipeline, fleet and cluster pages.
    for (path, wanted) in [
        ("/", "shop"),
        ("/pipelines/shop", "approvers"),
        ("/agents", agent.as_str()),
        ("/cluster", "Reachable"),
        ("/environments", "Environments"),
    ] {
        let p = get(&c, &ann, path);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert!(p.body.contains(wanted), "{path}: no {wanted} in {}", p.body);
    }
    assert_eq!(get(&c, &ann, "/pipelines/nope").status, 404);

    // Sessions: only an admin sees them, and revoking one ends it at once.
    assert_eq!(get(&c, &ann, "/sessions").status, 403);
    let admin = log_in(&c, "admin");
    let sessions = get(&c, &admin, "/sessions");
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    let ann_row = sessions
        .body
        .split("<tr>")
        .find(|row| row.contains("<td>ann</td>"))
        .unwrap_or_else(|| panic!("no session of ann: {}", sessions.body));
    let sid = ann_row
        .split("name=\"session\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string();
    // A viewer cannot revoke (refused before proposing; apply checks too).
    let not_admin = post_form(
        &c,
        &vic,
        "/sessions/revoke",
        &format!("csrf={}&session={sid}", csrf_of(&seen.body)),
    );
    assert_eq!(not_admin.status, 403, "{}", not_admin.body);
    assert!(
        not_admin.body.contains("from the console"),
        "{}",
        not_admin.body
    );
    let revoked = post_form(
        &c,
        &admin,
        "/sessions/revoke",
        &format!("csrf={}&session={sid}", csrf_of(&sessions.body)),
    );
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(get(&c, &ann, "/").status, 401);
}

/// The session is in the replicated state: it works on every member, and
/// after the leader is killed a surviving member serves the pages and
/// takes the approval (forwarded to the new leader).
#[test]
fn a_session_survives_a_leader_failover() {
    let mut c = Cluster::start_members("console-ha", 3, ferry_tests::Options::default());
    c.grant("ann", "approver");
    let repo = Repo::new();
    repo.commit(&[("README", "ha\n")], "first");
    c.apply(&format!(
        "name: shop\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval}}\n",
        repo.url()
    ));
    let id = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    c.wait_status("shop", &id, "the approval to wait", |v| {
        Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
    });
    let ann = log_in(&c, "ann");
    let page_path = format!("/pipelines/shop/executions/{id}");
    for member in 1..=3 {
        let page = c.https(member, "GET", &page_path, &[("Cookie", &ann)], None);
        assert_eq!(page.status, 200, "member {member}: {}", page.body);
    }

    let leader = c.leader();
    c.kill_member(leader);
    let survivor = (1..=3).find(|m| *m != leader).unwrap_or(1);
    let page = ferry_tests::wait_for(
        "a surviving member to serve the page",
        Duration::from_secs(30),
        || {
            let p = c.https(survivor, "GET", &page_path, &[("Cookie", &ann)], None);
            (p.status == 200).then_some(p)
        },
    );
    assert!(page.body.contains("ann (approver)"), "{}", page.body);
    let form = format!(
        "csrf={}&action=gate%2Fok&decision=approve",
        csrf_of(&page.body)
    );
    let decided = c.https(
        survivor,
        "POST",
        &format!("{page_path}/decide"),
        &[
            ("Cookie", &ann),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(decided.status, 303, "{}", decided.body);
    let end = c.wait_status("shop", &id, "the run to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(end["status"], "Succeeded", "{end}");
}
