//! Real-browser tests (issue 13): Debian's `chromedriver` started on a free
//! port as a child process, one headless Chromium session through it, and a
//! small blocking API over the `fantoccini` WebDriver client for the tests,
//! which are plain synchronous `#[test]` functions.
//!
//! Every call is bounded: a WebDriver command that does not answer within
//! [`COMMAND_TIMEOUT`] fails the test instead of hanging it. Failures panic
//! with the step, the page's URL and the start of its text, as the cluster
//! harness does. Dropping the [`Browser`] ends the session and kills
//! chromedriver's whole process group, Chromium included.

use std::future::Future;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::free_port;

/// Longest wait for one WebDriver command (a page load included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for chromedriver to listen and Chromium to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The browser window's size, so screenshots are the same on every machine.
pub const WINDOW: (u32, u32) = (1280, 900);
/// chromedriver's stdout and stderr, and its log, in the browser's folder.
const DRIVER_OUT: &str = "chromedriver.out";
const DRIVER_LOG: &str = "chromedriver.log";
/// How much of a page's text a failure message shows.
const TEXT_IN_ERRORS: usize = 1500;

/// A cookie as the browser holds it (WebDriver also shows HttpOnly ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, when the browser reports it.
    pub same_site: Option<String>,
}

/// Why a WebDriver step did not give its answer.
enum Failed {
    Error(String),
    Timeout,
}

/// A headless Chromium driven through its own chromedriver.
pub struct Browser {
    /// The WebDriver session; `Drop` closes it.
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    driver: Child,
    /// Chromium's profile and chromedriver's log.
    dir: tempfile::TempDir,
}

/// The first executable called `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Chromium binary itself: Debian's `/usr/bin/chromium` is a shell
/// launcher that reads `/etc/chromium.d` and adds flags of its own.
fn chromium_binary() -> PathBuf {
    let real = PathBuf::from("/usr/lib/chromium/chromium");
    if real.is_file() {
        return real;
    }
    on_path("chromium").unwrap_or_else(|| {
        panic!(
            "chromium is missing: the browser tests need Debian's `chromium` and \
             `chromium-driver` packages (scripts/test installs them)"
        )
    })
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; fails (never
    /// skips) when either is not installed.
    pub fn start() -> Browser {
        let driver_bin = on_path("chromedriver").unwrap_or_else(|| {
            panic!(
                "chromedriver is missing: the browser tests need Debian's `chromium` and \
                 `chromium-driver` packages (scripts/test installs them)"
            )
        });
        let chromium = chromium_binary();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        // Its own messages (start, port in use) go to stdout and stderr, the
        // WebDriver commands and answers to the log.
        let out = dir.path().join(DRIVER_OUT);
        let out_file =
            std::fs::File::create(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join(DRIVER_LOG).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                out_file
                    .try_clone()
                    .unwrap_or_else(|e| panic!("{}: {e}", out.display())),
            ))
            .stderr(Stdio::from(out_file))
            // Its own process group: Drop kills Chromium with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        let mut browser = Browser {
            client: None,
            rt,
            driver,
            dir,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before listening:\n{}",
                    browser.driver_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within {START_TIMEOUT:?}:\n{}",
                browser.driver_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let profile = browser.dir.path().join("profile");
        let caps = json!({
            "browserName": "chrome",
            // The console's certificate is signed by the test's own CA.
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 20_000, "script": 20_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    // Tests run as root, where Chromium's sandbox refuses to start.
                    "--no-sandbox",
                    // /dev/shm is small in containers (64 MiB under Docker) and
                    // Chromium's renderers crash when it fills: use /tmp instead.
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--password-store=basic",
                    "--use-mock-keychain",
                    "--lang=en-US",
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("the capabilities are a JSON object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let connected = browser.rt.block_on(async {
            tokio::time::timeout(
                START_TIMEOUT,
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url),
            )
            .await
        });
        match connected {
            Ok(Ok(client)) => browser.client = Some(client),
            Ok(Err(e)) => panic!(
                "chromedriver could not start Chromium ({}): {e}\n{}",
                chromium.display(),
                browser.driver_log()
            ),
            Err(_) => panic!(
                "no Chromium session within {START_TIMEOUT:?}\n{}",
                browser.driver_log()
            ),
        }
        browser.fit_viewport();
        browser
    }

    /// Makes the page's viewport [`WINDOW`] (screenshots are the viewport):
    /// headless Chromium takes `--window-size` as the outer size and keeps
    /// room for a toolbar it does not draw (1280x900 gave a 1280x757 page).
    fn fit_viewport(&self) {
        let inner = self.execute("return [window.innerWidth, window.innerHeight]");
        let size = |i: usize| {
            inner[i]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_else(|| panic!("the viewport's size is not a number: {inner}"))
        };
        let (width, height) = (size(0), size(1));
        if (width, height) == WINDOW {
            return;
        }
        let (outer_w, outer_h) =
            self.run("reading the window size", self.client().get_window_size());
        let grow = |outer: u64, want: u32, got: u32| {
            u32::try_from(outer)
                .unwrap_or(want)
                .saturating_add(want)
                .saturating_sub(got)
        };
        self.run(
            "resizing the window",
            self.client().set_window_size(
                grow(outer_w, WINDOW.0, width),
                grow(outer_h, WINDOW.1, height),
            ),
        );
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .unwrap_or_else(|| panic!("the browser session is closed"))
    }

    /// chromedriver's output and the last lines of its log (for failure
    /// messages).
    fn driver_log(&self) -> String {
        let read = |name| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let log = read(DRIVER_LOG);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- chromedriver output ---\n{}--- chromedriver log (last lines) ---\n{}",
            read(DRIVER_OUT),
            tail.join("\n")
        )
    }

    /// Runs one WebDriver step with [`COMMAND_TIMEOUT`]; its error or a
    /// timeout fails the test with `what` and where the browser is.
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, E>>,
    ) -> T {
        match self.attempt(step) {
            Ok(v) => v,
            Err(Failed::Error(e)) => {
                panic!("browser: {what} failed: {e}\n{}", self.where_we_are())
            }
            Err(Failed::Timeout) => panic!(
                "browser: {what} did not finish within {COMMAND_TIMEOUT:?}\n{}",
                self.driver_log()
            ),
        }
    }

    /// One WebDriver step with [`COMMAND_TIMEOUT`], its failure returned.
    fn attempt<T, E: std::fmt::Display>(
        &self,
        step: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Failed> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, step).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failed::Error(e.to_string())),
            Err(_) => Err(Failed::Timeout),
        }
    }

    /// The current URL and the start of the page's text, for failure
    /// messages; bounded, and never panicking itself.
    fn where_we_are(&self) -> String {
        let Some(client) = self.client.as_ref() else {
            return String::new();
        };
        let found = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                let url = client.current_url().await.ok()?;
                let text = client
                    .find(Locator::Css("body"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                Some((url, text))
            })
            .await
        });
        match found {
            Ok(Some((url, text))) => {
                let text: String = text.chars().take(TEXT_IN_ERRORS).collect();
                format!("at {url}, the page reads:\n{text}")
            }
            _ => "(the page could not be read)".into(),
        }
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn goto(&self, url: &str) {
        self.run(&format!("opening {url}"), self.client().goto(url));
    }

    /// The URL the browser shows now.
    pub fn current_url(&self) -> String {
        self.run("reading the URL", self.client().current_url())
            .to_string()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.run("reading the page source", self.client().source())
    }

    /// Whether an element matches `css` now (no waiting).
    pub fn exists(&self, css: &str) -> bool {
        let all = self.run(
            &format!("looking for {css}"),
            self.client().find_all(Locator::Css(css)),
        );
        !all.is_empty()
    }

    /// The rendered text of the first element matching `css`.
    pub fn text_of(&self, css: &str) -> String {
        let client = self.client();
        self.run(&format!("reading the text of {css}"), async {
            client.find(Locator::Css(css)).await?.text().await
        })
    }

    /// Clicks the first element matching `css` (waiting for a page it opens).
    pub fn click(&self, css: &str) {
        let client = self.client();
        self.run(&format!("clicking {css}"), async {
            client.find(Locator::Css(css)).await?.click().await
        });
    }

    /// Replaces the value of the input matching `css` with `text`, typed.
    /// An element a live page swapped out between finding and typing
    /// ("stale element reference") is found again, a few times.
    pub fn fill(&self, css: &str, text: &str) {
        let client = self.client();
        let what = format!("filling {css}");
        for _ in 0..5 {
            let typed = self.attempt(async {
                let input = client.find(Locator::Css(css)).await?;
                input.clear().await?;
                input.send_keys(text).await
            });
            match typed {
                Ok(()) => return,
                Err(Failed::Error(e)) if e.contains("stale element") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(_) => break,
            }
        }
        self.run(&what, async {
            let input = client.find(Locator::Css(css)).await?;
            input.clear().await?;
            input.send_keys(text).await
        });
    }

    /// Submits the form matching `css` by clicking its first submit button
    /// (`button[type=submit]` or `input[type=submit]`).
    pub fn submit(&self, css: &str) {
        let client = self.client();
        self.run(&format!("submitting {css}"), async {
            client.form(Locator::Css(css)).await?.submit().await
        });
    }

    /// Waits until an element matches `css`; fails after `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) {
        let client = self.client();
        self.poll(&format!("an element matching {css}"), timeout, || {
            self.attempt(client.find_all(Locator::Css(css)))
                .is_ok_and(|all| !all.is_empty())
        });
    }

    /// Waits until the page's text contains `text`; fails after `timeout`.
    pub fn wait_for_text(&self, text: &str, timeout: Duration) {
        let client = self.client();
        self.poll(&format!("the text {text:?}"), timeout, || {
            self.attempt(async { client.find(Locator::Css("body")).await?.text().await })
                .is_ok_and(|body| body.contains(text))
        });
    }

    /// Checks `ready` until it holds; fails after `timeout`. A check that
    /// errs counts as not ready: while a page loads, an element found a
    /// moment ago may be gone ("stale element reference").
    fn poll(&self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if Instant::now() >= deadline {
                panic!(
                    "browser: timed out after {timeout:?} waiting for {what}\n{}",
                    self.where_we_are()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The cookies the browser holds for the current page's site.
    pub fn cookies(&self) -> Vec<Cookie> {
        let all = self.run("reading cookies", self.client().get_all_cookies());
        all.iter()
            .map(|c| Cookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect()
    }

    /// Runs `js` as a function body in the page and returns its value; a
    /// returned Promise is awaited (e.g. `return fetch(...).then(r => r.status)`).
    pub fn execute(&self, js: &str) -> Value {
        self.run("running a script", self.client().execute(js, Vec::new()))
    }

    /// Saves a PNG of the window's viewport at `path` (folders made).
    pub fn screenshot(&self, path: &Path) {
        let png = self.run("taking a screenshot", self.client().screenshot());
        assert!(
            png.starts_with(b"\x89PNG"),
            "the screenshot is not a PNG ({} bytes)",
            png.len()
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.driver_log());
        }
        if let Some(client) = self.client.take() {
            // Ends the session: chromedriver stops Chromium.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // Whatever is left of chromedriver and Chromium: the process group
        // the driver leads (its id is the driver's own).
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
