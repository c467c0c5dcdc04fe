//! Triggers and notifications: a signed GitHub push webhook answered 201
//! (the execution committed) beside `ferry run --revision` of the same commit
//! and a bare `GET /healthz` over the same curl + TLS path; and an event
//! (`approval.waiting`) from its recorded time to the moment a real HTTP
//! receiver holds the notification, beside a plain HTTP POST of the same
//! bytes from this process to the same receiver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use super::ms;
use crate::receiver::Receiver;
use crate::{Cluster, Repo};

const HOOK_SECRET: &[u8] = b"bench webhook secret";
const NOTIFY_KEY: &[u8] = b"bench notification key";

/// p50, p90, max of a sample.
fn p50_p90_max(v: Vec<Duration>) -> [Duration; 3] {
    super::quantiles(v, [0.5, 0.9, 1.0])
}

/// A GitHub push of `after` on main, as the webhook receives it.
fn github_push(after: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": after,
        "deleted": false,
        "commits": [],
    })
    .to_string()
    .into_bytes()
}

/// `GET /healthz` on member 1's HTTPS listener with curl, the same flags
/// and CA as [`Cluster::post_https`]: curl's start, TLS and one HTTP/1.1
/// request, nothing of Ferry's.
fn get_healthz(c: &Cluster) -> anyhow::Result<()> {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(c.tls.join("ca.pem"))
        .arg(format!("https://{}/healthz", c.http_addr(1)))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        text.ends_with("\n200"),
        "GET /healthz: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// POSTs `body` to the receiver on a fresh TCP connection and reads the
/// answer (sent once the receiver has recorded the request).
fn post_plain(addr: &str, body: &[u8]) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST /bench HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    // The receiver keeps the connection open: read until its 2-byte body.
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "receiver closed the connection");
        answer.extend_from_slice(&buf[..n]);
    }
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "receiver answered {answer:?}"
    );
    Ok(())
}

pub fn run(rounds: usize) -> anyhow::Result<String> {
    let c = Cluster::start("bench-hooks");
    c.set_secret("hook", HOOK_SECRET);
    c.set_secret("notify-key", NOTIFY_KEY);
    let repo = Repo::new();
    let sha = repo.commit(&[("README", "bench\n")], "bench");
    repo.commit(&[("README", "head\n")], "head");
    let approval =
        "stages:\n  - name: approve\n    actions:\n      - {name: release, type: approval}\n";
    c.apply(&format!(
        "name: hooked\nexecution_mode: parallel\nsource:\n  git: {}\n  branch: main\n  webhook_secret: hook\n{approval}",
        repo.url()
    ));
    let receiver = Receiver::start();
    c.apply(&format!(
        "name: notified\nexecution_mode: parallel\nsource: {{git: {}}}\nnotifications:\n  - {{name: n, url: \"{}\", secret: notify-key}}\n{approval}",
        repo.url(),
        receiver.url("/ferry"),
    ));

    // 1. Webhook → execution committed.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET);
    let body = github_push(&sha);
    let signature = format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, &body).as_ref())
    );
    let hook = |delivery: &str| -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let (code, answer) = c.post_https(
            1,
            "/hooks/git/hooked",
            &[
                ("Content-Type", "application/json"),
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        );
        let took = t.elapsed();
        anyhow::ensure!(code == 201, "webhook answered {code}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer)?;
        let exec = v["execution"].as_str().unwrap_or_default().to_string();
        anyhow::ensure!(!exec.is_empty(), "no execution in {answer}");
        Ok((took, exec))
    };
    let cli = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        let r = c.ferry(Some("admin"), &["run", "hooked", "--revision", &sha]);
        let took = t.elapsed();
        anyhow::ensure!(r.success, "ferry run failed: {}", r.stderr);
        Ok(took)
    };
    let health = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        get_healthz(&c)?;
        Ok(t.elapsed())
    };
    // Warm-up: the git cache, the pipeline's secret, both TLS paths.
    let (_, warm) = hook("bench-warm-up")?;
    let status = c.status("hooked", &warm);
    anyhow::ensure!(
        status["revision"] == sha.as_str(),
        "the webhook's execution is not at {sha}: {status}"
    );
    cli()?;
    health()?;
    let (mut hooks, mut clis, mut healths) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        healths.push(health()?);
        hooks.push(hook(&format!("bench-{i}"))?.0);
        clis.push(cli()?);
    }

    // 2. Event → notification received.
    let appears = |exec: &str, from: usize| -> anyhow::Result<(SystemTime, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = receiver.received();
            if let Some(r) = got.iter().skip(from).find(|r| {
                let v = r.json();
                v["kind"] == "approval.waiting" && v["execution"] == exec
            }) {
                let seen = SystemTime::now();
                anyhow::ensure!(r.signed_with(NOTIFY_KEY), "notification not signed");
                return Ok((seen, r.body.clone()));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no approval.waiting notification for execution {exec}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let notified = |from: usize| -> anyhow::Result<(Duration, Vec<u8>)> {
        let exec = c.ferry_ok(Some("admin"), &["run", "notified"]);
        let (seen, body) = appears(exec.trim(), from)?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let at = humantime::parse_rfc3339(v["at"].as_str().unwrap_or_default())?;
        Ok((seen.duration_since(at).unwrap_or_default(), body))
    };
    let (_, sample) = notified(0)?;
    let (mut events, mut plains) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // The notifier looks for due deliveries on a timer: without a pause
        // every run would start at the same point of its period, just after
        // the tick that delivered the previous one. Spread the starts over
        // 0–200 ms, in a shuffled order.
        let spread = (i * 7 + 3) % rounds.max(1);
        std::thread::sleep(Duration::from_millis((spread * 200 / rounds.max(1)) as u64));
        let from = receiver.received().len();
        events.push(notified(from)?.0);
        let t = Instant::now();
        post_plain(&receiver.addr, &sample)?;
        plains.push(t.elapsed());
    }

    let row = |name: &str, v: Vec<Duration>| {
        let [p50, p90, max] = p50_p90_max(v);
        format!("| {name} | {} | {} | {} |\n", ms(p50), ms(p90), ms(max))
    };
    let hook_p50 = p50_p90_max(hooks.clone())[0];
    let health_p50 = p50_p90_max(healths.clone())[0];
    let cli_p50 = p50_p90_max(clis.clone())[0];
    let mut out = format!(
        "| webhook → execution committed ({rounds} rounds) | p50 | p90 | max |\n| --- | --- | --- | --- |\n"
    );
    out.push_str(&row("curl `GET /healthz`, HTTPS (baseline)", healths));
    out.push_str(&row(
        "`ferry run --revision SHA`, CLI over mTLS (baseline)",
        clis,
    ));
    out.push_str(&row(
        "signed GitHub push webhook, curl → 201 committed",
        hooks,
    ));
    out.push_str(&format!(
        "\nwebhook body {} bytes; p50 webhook − healthz = {}; p50 webhook / ferry run = {:.2}\n\n",
        body.len(),
        ms(hook_p50.saturating_sub(health_p50)),
        hook_p50.as_secs_f64() / cli_p50.as_secs_f64().max(1e-9)
    ));
    out.push_str(&format!(
        "| event → notification received ({rounds} rounds) | p50 | p90 | max |\n| --- | --- | --- | --- |\n"
    ));
    out.push_str(&row(
        "plain HTTP POST of the same bytes, new connection (baseline)",
        plains,
    ));
    out.push_str(&row(
        "`approval.waiting`: event `at` → receiver holds it",
        events,
    ));
    out.push_str(&format!("\nnotification body {} bytes\n", sample.len()));
    Ok(out)
}
