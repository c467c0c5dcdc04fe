//! End to end in a real browser (issue 13): headless Chromium, driven over
//! WebDriver, uses the web console of a real cluster as an operator would —
//! opens a `ferry ui` login link, reads the pipelines page, is refused a
//! forged `Log out`, logs out with the button, and finds the used link
//! refused; an approver follows a running execution until its graph shows
//! it waiting for approval (live, without reloading), reads a log, approves
//! with a comment and sees the run succeed; a viewer sees no Approve button
//! and a forged decision is refused; an expired link is refused. The main
//! pages are kept as `docs/src/images/console-*.png` for the book.
//!
//! One test, a list of steps over one cluster and one browser: a new page of
//! the console gets its own step function, called from the list below in the
//! order an operator would go.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_tests::browser::Browser;
use ferry_tests::{Cluster, Repo, ensure_busybox_image};

/// How long a page may take to show what a step waits for.
const PAGE: Duration = Duration::from_secs(10);

/// What every step works with.
struct Console {
    c: Cluster,
    b: Browser,
    /// `https://HOST:PORT` of member 1's console.
    base: String,
    /// shop's execution that waits for approval `gate/ok`.
    waiting: String,
    _repo: Repo,
}

/// A release pipeline to follow: two parallel actions, then one that
/// needs their artifact, an approval, and a last stage.
const WEB: &str = r#"name: web
source: {git: REPO}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        commands: ["echo compiling web", "sleep 4", "mkdir -p dist && echo web-app > dist/app"]
        outputs: {app: [dist/]}
      - name: lint
        type: test
        image: ferry-local/busybox
        commands: ["echo lint ok"]
      - name: unit
        type: test
        run_order: 2
        image: ferry-local/busybox
        inputs: [app]
        commands: ["cat dist/app", "sleep 3", "echo 12 tests passed"]
  - name: gate
    actions:
      - name: release
        type: approval
        approvers: [approver]
        message: "Release web to production?"
  - name: publish
    actions:
      - name: announce
        type: build
        image: ferry-local/busybox
        commands: ["echo released"]
"#;

impl Console {
    /// A cluster with `vic` as a viewer and the pipelines the pages show,
    /// and a browser.
    fn start() -> Console {
        ensure_busybox_image();
        let mut c = Cluster::start("browser");
        c.add_agent("a", &["docker"]);
        c.grant("vic", "viewer");
        // Who started an execution may not approve it too (four-eyes rule).
        c.grant("ann", "approver");
        let repo = Repo::new();
        // A fixed date: the same revision, so the same screenshot, every run.
        repo.commit_dated(&[("README", "shop\n")], "first", "2025-01-01T12:00:00Z");
        c.apply(&format!(
            "name: shop\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval}}\n",
            repo.url()
        ));
        c.apply(&format!(
            "name: billing\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval}}\n",
            repo.url()
        ));
        // shop: one execution approved and finished, one waiting for approval.
        let first = c
            .ferry_ok(Some("admin"), &["run", "shop"])
            .trim()
            .to_string();
        let done = c.approve_and_finish("shop", &first, ("gate", "ok"), "ann");
        assert_eq!(done["status"], "Succeeded", "{done}");
        let second = c
            .ferry_ok(Some("admin"), &["run", "shop"])
            .trim()
            .to_string();
        c.wait_status("shop", &second, "the approval to wait", |v| {
            Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
        });
        c.apply(&WEB.replace("REPO", &repo.url()));
        let base = format!("https://{}", c.http_addr(1));
        Console {
            c,
            b: Browser::start(),
            base,
            waiting: second,
            _repo: repo,
        }
    }

    /// A one-time login link from `ferry ui` as `user`.
    fn login_link(&self, user: &str) -> String {
        let out = self.c.ferry_ok(Some(user), &["ui", "--ttl", "5m"]);
        let link = out.lines().next().unwrap_or_default().trim().to_string();
        assert!(link.starts_with(&format!("{}/login/", self.base)), "{link}");
        link
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Runs one step and prints how long it took (`--nocapture` shows it).
fn step(name: &str, f: impl FnOnce()) {
    let started = Instant::now();
    f();
    eprintln!("step {name:?}: {:.1?}", started.elapsed());
}

/// Where a screenshot for the book goes.
fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/src/images")
        .join(file)
}

#[test]
fn the_console_in_a_real_browser() {
    ferry_certs::install_crypto_provider();
    let started = Instant::now();
    let t = Console::start();
    eprintln!("cluster, pipelines and browser: {:.1?}", started.elapsed());
    let admin = t.login_link("admin");
    let viewer = t.login_link("vic");

    step("the admin's link opens a session", || {
        opens_a_session(&t, &admin, "admin (admin)")
    });
    step("the pipelines page", || pipelines_page(&t));
    step("screenshot", || {
        t.b.screenshot(&docs("console-pipelines.png"))
    });
    step("a forged Log out is refused", || forged_logout_refused(&t));
    step("Log out", || {
        t.b.click("form.logout button");
        logged_out(&t)
    });
    step("the used link is refused", || used_link_refused(&t, &admin));

    // An approver follows a release from the pipelines page.
    let web =
        t.c.ferry_ok(Some("admin"), &["run", "web"])
            .trim()
            .to_string();
    let approver = t.login_link("ann");
    step("the approver's link opens a session", || {
        opens_a_session(&t, &approver, "ann (approver)")
    });
    step("a running action's log, followed live", || {
        follows_a_log(&t, &web)
    });
    step("from the pipelines page to the running execution", || {
        to_the_execution(&t, &web)
    });
    step("the graph follows the run to the approval, live", || {
        follows_live(&t)
    });
    step("a node's log", || reads_a_log(&t, &web));
    step("approve with a comment; the run succeeds", || {
        approves(&t, &web)
    });
    step("the fleet pages", || fleet_pages(&t));

    step("the viewer's link opens a session", || {
        opens_a_session(&t, &viewer, "vic (viewer)")
    });
    step("the pipelines page, as the viewer", || pipelines_page(&t));
    step(
        "a viewer has no Approve button, and a forged one is refused",
        || viewer_cannot_approve(&t),
    );
    step("Log out, as the viewer (the form submitted)", || {
        t.b.submit("form.logout");
        logged_out(&t)
    });
    step("the viewer's used link is refused", || {
        used_link_refused(&t, &viewer)
    });
    step("an expired link is refused", || {
        let out = t.c.ferry_ok(Some("vic"), &["ui", "--ttl", "1s"]);
        let link = out.lines().next().unwrap_or_default().trim().to_string();
        std::thread::sleep(Duration::from_millis(2_100));
        used_link_refused(&t, &link)
    });
    eprintln!("whole test: {:.1?}", started.elapsed());
}

/// Opening the link lands on the pipelines page, logged in as `who`, with
/// the session in an HttpOnly, Secure, SameSite=Strict cookie.
fn opens_a_session(t: &Console, link: &str, who: &str) {
    t.b.goto(link);
    t.b.wait_for("form.login button", PAGE);
    t.b.click("form.login button");
    t.b.wait_for("span.who", PAGE);
    assert_eq!(t.b.current_url(), t.url("/"), "the link redirects to /");
    assert_eq!(t.b.text_of("span.who"), who);
    let cookies = t.b.cookies();
    let session = cookies
        .iter()
        .find(|c| c.name == "__Host-ferry_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
}

/// The table lists both pipelines with shop's two executions as chips.
fn pipelines_page(t: &Console) {
    assert_eq!(t.b.text_of("h1"), "Pipelines");
    let table = t.b.text_of("table");
    for name in ["shop", "billing"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(t.b.exists("a.chip.Succeeded"), "{}", t.b.source());
    assert!(t.b.exists("a.chip.InProgress"), "{}", t.b.source());
    assert!(t.b.exists("form.logout button"));
}

/// A `Log out` POST without the form's token, from the page itself, is
/// refused; a form another site submits, even with the right token,
/// carries no cookie (SameSite=Strict). The session survives both.
fn forged_logout_refused(t: &Console) {
    let status = t.b.execute(
        "return fetch('/logout', {method: 'POST', \
         headers: {'Content-Type': 'application/x-www-form-urlencoded'}, \
         body: 'csrf=guess'}).then(r => r.status)",
    );
    assert_eq!(status, 403, "a Log out without the CSRF token");

    let token =
        t.b.execute("return document.querySelector('input[name=csrf]').value");
    let token = token.as_str().unwrap_or_default().to_string();
    assert!(!token.is_empty(), "no CSRF token in the Log out form");
    // The classic attack: a page of another site (here a data: URL, an
    // opaque origin) submits a form to the console. Even with the right
    // token the browser sends no cookie (SameSite=Strict), so no session.
    let attack = format!(
        "data:text/html,<form method=post action='{}'><input name=csrf value='{token}'></form>",
        t.url("/logout")
    );
    t.b.goto(&attack);
    t.b.execute("document.forms[0].submit(); return null");
    t.b.wait_for_text("Not logged in", PAGE);
    t.b.goto(&t.url("/"));
    t.b.wait_for("span.who", PAGE);
}

/// After `Log out`: the "Logged out" page, no cookie, and the pipelines
/// page asks for a login again.
fn logged_out(t: &Console) {
    t.b.wait_for_text("Logged out", PAGE);
    assert_eq!(t.b.text_of("h1"), "Logged out");
    assert!(
        t.b.cookies()
            .iter()
            .all(|c| c.name != "__Host-ferry_session"),
        "{:?}",
        t.b.cookies()
    );
    t.b.goto(&t.url("/"));
    t.b.wait_for_text("Not logged in", PAGE);
}

/// A link works once: opened again it is refused and opens no session.
fn used_link_refused(t: &Console, link: &str) {
    t.b.goto(link);
    t.b.wait_for_text("Login link refused", PAGE);
    assert!(t.b.text_of("body").contains("ferry ui"));
    assert!(!t.b.exists("span.who"));
    assert!(
        t.b.cookies()
            .iter()
            .all(|c| c.name != "__Host-ferry_session")
    );
}

/// Pipelines page → the pipeline (its definition shown) → the execution.
fn to_the_execution(t: &Console, id: &str) {
    t.b.goto(&t.url("/"));
    t.b.click("a[href='/pipelines/web']");
    t.b.wait_for("pre.yaml", PAGE);
    assert!(t.b.text_of("pre.yaml").contains("approvers: [approver]"));
    t.b.click(&format!("a[href='/pipelines/web/executions/{id}']"));
    t.b.wait_for("svg.graph", PAGE);
    assert!(t.b.current_url().ends_with(&format!("/executions/{id}")));
}

/// The execution page updates itself (no reload: a mark set on the page
/// survives) until the approval node waits; the approval form appears.
fn follows_live(t: &Console) {
    t.b.execute("window.ferryMark = 'still the same page'; return null");
    t.b.wait_for(
        "g.node.WaitingForApproval[data-action='gate/release']",
        Duration::from_secs(90),
    );
    assert_eq!(
        t.b.execute("return window.ferryMark || null"),
        "still the same page",
        "the page was reloaded instead of updated"
    );
    for done in ["build/compile", "build/lint", "build/unit"] {
        assert!(
            t.b.exists(&format!("g.node.Succeeded[data-action='{done}']")),
            "{done} not green: {}",
            t.b.source()
        );
    }
    t.b.wait_for("form.decide button.approve", PAGE);
    assert!(
        t.b.text_of("#approvals")
            .contains("Release web to production?")
    );
    t.b.screenshot(&docs("console-execution.png"));
}

/// The compile action's log, opened while it runs: the rest arrives on
/// the page by itself, and the page says when the log is complete.
fn follows_a_log(t: &Console, id: &str) {
    t.b.goto(&t.url(&format!(
        "/pipelines/web/executions/{id}/log?action=build%2Fcompile"
    )));
    t.b.wait_for("pre#log[data-live]", PAGE);
    t.b.wait_for_text("[ferry] output app", Duration::from_secs(60));
    t.b.wait_for_text("The action's log is complete.", PAGE);
    assert!(t.b.text_of("pre#log").contains("compiling web"));
}

/// The compile action's log, from the actions table.
fn reads_a_log(t: &Console, id: &str) {
    t.b.click("a[href$='log?action=build%2Fcompile']");
    t.b.wait_for("pre#log", PAGE);
    assert!(t.b.text_of("pre#log").contains("compiling web"));
    t.b.screenshot(&docs("console-log.png"));
    t.b.goto(&t.url(&format!("/pipelines/web/executions/{id}")));
    t.b.wait_for("form.decide", PAGE);
}

/// Approve with a comment: back on the execution, which goes on to succeed.
fn approves(t: &Console, id: &str) {
    t.b.fill("form.decide textarea[name=comment]", "checked on staging");
    t.b.click("form.decide button.approve");
    t.b.wait_for("#summary .badge.Succeeded", Duration::from_secs(60));
    assert!(t.b.exists("g.node.Succeeded[data-action='publish/announce']"));
    assert!(
        t.b.text_of("#actions")
            .contains("ann approved: “checked on staging”"),
        "{}",
        t.b.text_of("#actions")
    );
    let status = t.c.status("web", id);
    assert_eq!(status["status"], "Succeeded", "{status}");
    t.b.screenshot(&docs("console-succeeded.png"));
}

/// Agents and cluster pages show what they should.
fn fleet_pages(t: &Console) {
    t.b.click("nav a[href='/agents']");
    t.b.wait_for_text("Connected", PAGE);
    t.b.click("nav a[href='/cluster']");
    t.b.wait_for_text("Reachable", PAGE);
}

/// On the execution waiting for approval, a viewer sees why they cannot
/// decide and no button; a decision forged with their own CSRF token (as
/// a script could) is refused by the server, and the approval still waits.
fn viewer_cannot_approve(t: &Console) {
    let page = format!("/pipelines/shop/executions/{}", t.waiting);
    t.b.goto(&t.url(&page));
    t.b.wait_for("#approvals .approval", PAGE);
    assert!(!t.b.exists("button.approve"), "{}", t.b.source());
    assert!(t.b.text_of("#approvals").contains("You cannot decide it"));
    let status = t.b.execute(&format!(
        "const csrf = document.querySelector('input[name=csrf]').value; \
         return fetch('{page}/decide', {{method: 'POST', \
         headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
         body: 'csrf=' + csrf + '&action=gate%2Fok&decision=approve'}}).then(r => r.status)"
    ));
    assert_eq!(status, 403, "a viewer's forged decision");
    let now = t.c.status("shop", &t.waiting);
    assert_eq!(
        Cluster::action(&now, "gate", "ok")["status"],
        "WaitingForApproval",
        "{now}"
    );
}
