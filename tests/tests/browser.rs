//! End to end in a real browser (issue 13): headless Chromium, driven over
//! WebDriver, uses the web console of a real cluster as an operator would —
//! opens a `ferry ui` login link, reads the pipelines page, is refused a
//! forged `Log out`, logs out with the button, and finds the used link
//! refused; then the same as a viewer. The pipelines page is kept as
//! `docs/console-pipelines.png` for the README.
//!
//! One test, a list of steps over one cluster and one browser: a new page of
//! the console gets its own step function, called from the list below in the
//! order an operator would go.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_tests::browser::Browser;
use ferry_tests::{Cluster, Repo};

/// How long a page may take to show what a step waits for.
const PAGE: Duration = Duration::from_secs(10);

/// What every step works with.
struct Console {
    c: Cluster,
    b: Browser,
    /// `https://HOST:PORT` of member 1's console.
    base: String,
    _repo: Repo,
}

impl Console {
    /// A cluster with `vic` as a viewer and the pipelines the pages show,
    /// and a browser.
    fn start() -> Console {
        let c = Cluster::start("browser");
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
        let base = format!("https://{}", c.http_addr(1));
        Console {
            c,
            b: Browser::start(),
            base,
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

/// Where a screenshot for the README goes.
fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
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
    // The pages still to come (executions and their graph, approvals as
    // `ann`, environments, agents) get their steps here, each a function
    // below, with a screenshot into docs/ where the README shows one.

    step("the viewer's link opens a session", || {
        opens_a_session(&t, &viewer, "vic (viewer)")
    });
    step("the pipelines page, as the viewer", || pipelines_page(&t));
    step("Log out, as the viewer (the form submitted)", || {
        t.b.submit("form.logout");
        logged_out(&t)
    });
    step("the viewer's used link is refused", || {
        used_link_refused(&t, &viewer)
    });
    eprintln!("whole test: {:.1?}", started.elapsed());
}

/// Opening the link lands on the pipelines page, logged in as `who`, with
/// the session in an HttpOnly, Secure, SameSite=Strict cookie.
fn opens_a_session(t: &Console, link: &str, who: &str) {
    t.b.goto(link);
    t.b.wait_for("span.who", PAGE);
    assert_eq!(t.b.current_url(), t.url("/"), "the link redirects to /");
    assert_eq!(t.b.text_of("span.who"), who);
    let cookies = t.b.cookies();
    let session = cookies
        .iter()
        .find(|c| c.name == "ferry_session")
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
    assert!(t.b.exists("span.chip.Succeeded"), "{}", t.b.source());
    assert!(t.b.exists("span.chip.InProgress"), "{}", t.b.source());
    assert!(t.b.exists("form.logout button"));
}

/// A `Log out` POST without the form's token, from the page itself, is
/// refused; one with the right token from another site (localhost instead
/// of 127.0.0.1) carries no cookie (SameSite=Strict). The session survives
/// both.
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
    let other_site = t.url("/").replace("127.0.0.1", "localhost");
    assert_ne!(other_site, t.url("/"), "the console is not on 127.0.0.1");
    t.b.goto(&other_site);
    t.b.wait_for_text("Not logged in", PAGE);
    let sent = t.b.execute(&format!(
        "return fetch('{}', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
         body: 'csrf={token}'}}).then(r => r.type)",
        t.url("/logout")
    ));
    assert_eq!(sent, "opaque", "the cross-site POST was sent");

    t.b.goto(&t.url("/"));
    t.b.wait_for("span.who", PAGE);
}

/// After `Log out`: the "Logged out" page, no cookie, and the pipelines
/// page asks for a login again.
fn logged_out(t: &Console) {
    t.b.wait_for_text("Logged out", PAGE);
    assert_eq!(t.b.text_of("h1"), "Logged out");
    assert!(
        t.b.cookies().iter().all(|c| c.name != "ferry_session"),
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
    assert!(t.b.cookies().iter().all(|c| c.name != "ferry_session"));
}
