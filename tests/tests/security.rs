//! Bad credentials and bad input: missing or foreign client certificates, an
//! agent certificate on the operator API, expired and used-up join tokens,
//! role checks, and invalid pipelines that must apply nothing.

use ferry_tests::Cluster;

#[test]
fn clients_without_valid_certificates_are_refused() {
    let c = Cluster::start("certs");
    // No client certificate at all.
    let r = c.ferry(None, &["pipeline", "list"]);
    assert!(!r.success);
    assert!(r.stderr.contains("client certificate"), "{}", r.stderr);

    // A certificate from another CA.
    let other = c.path().join("other-ca");
    let other_s = other.display().to_string();
    c.ferry_ok(None, &["certs", "init", "--dir", &other_s]);
    c.ferry_ok(
        None,
        &[
            "certs", "issue", "operator", "--ca-dir", &other_s, "--name", "mallory", "--out",
            &other_s,
        ],
    );
    let out = std::process::Command::new(ferry_tests::bin("ferry"))
        .args(["pipeline", "list"])
        .env("FERRY_COORDINATOR", &c.addr)
        .env("FERRY_CA", c.tls.join("ca.pem"))
        .env("FERRY_CERT", other.join("mallory.pem"))
        .env("FERRY_KEY", other.join("mallory-key.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");

    // Trusting the wrong CA for the server.
    let out = std::process::Command::new(ferry_tests::bin("ferry"))
        .args(["pipeline", "list"])
        .env("FERRY_COORDINATOR", &c.addr)
        .env("FERRY_CA", other.join("ca.pem"))
        .env("FERRY_CERT", c.users.join("admin.pem"))
        .env("FERRY_KEY", c.users.join("admin-key.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));

    // An operator with no role may not read; a viewer may not apply or administer.
    c.user("nobody");
    let r = c.ferry(Some("nobody"), &["pipeline", "list"]);
    assert!(!r.success && r.stderr.contains("may not"), "{}", r.stderr);
    c.grant("vic", "viewer");
    assert!(c.ferry(Some("vic"), &["pipeline", "list"]).success);
    let r = c.ferry(Some("vic"), &["token", "create"]);
    assert!(!r.success && r.stderr.contains("admin"), "{}", r.stderr);
    let r = c.ferry(Some("vic"), &["rbac", "grant", "vic", "admin"]);
    assert!(!r.success);
    let list = c.ferry_ok(Some("admin"), &["rbac", "list", "-o", "json"]);
    assert!(
        !list.contains("\"vic\",\"role\":\"admin\"")
            && !list.contains("admin\",\n    \"subject\": \"vic")
    );
}

#[test]
fn agent_certificate_cannot_call_operator_api() {
    let c = Cluster::start("agentcert");
    let token = c.token("10m", 1);
    let (ok, log, state) = c.enroll("a1", &token);
    assert!(ok, "{log}");
    let cert = state.join("agent.pem");
    let out = std::process::Command::new(ferry_tests::bin("ferry"))
        .args(["pipeline", "list"])
        .env("FERRY_COORDINATOR", &c.addr)
        .env("FERRY_CA", c.tls.join("ca.pem"))
        .env("FERRY_CERT", &cert)
        .env("FERRY_KEY", state.join("agent-key.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("operator certificate is required"), "{err}");
}

#[test]
fn expired_and_used_tokens_are_refused() {
    let c = Cluster::start("tokens");
    let created = std::time::SystemTime::now();
    let token = c.token("1s", 5);
    ferry_tests::wait_for(
        "the token's second to pass",
        std::time::Duration::from_secs(10),
        || (created.elapsed().ok()? > std::time::Duration::from_millis(1500)).then_some(()),
    );
    let (ok, log, state) = c.enroll("late", &token);
    assert!(!ok);
    assert!(log.contains("expired") || log.contains("invalid"), "{log}");
    assert!(!state.join("agent.pem").exists(), "no certificate issued");

    let token = c.token("10m", 1);
    let (ok, log, _) = c.enroll("first", &token);
    assert!(ok, "{log}");
    let (ok, log, state) = c.enroll("second", &token);
    assert!(!ok);
    assert!(log.contains("used up") || log.contains("invalid"), "{log}");
    assert!(!state.join("agent.pem").exists());

    // A made-up token.
    let (ok, _, state) = c.enroll("forged", "ferry-join-0000");
    assert!(!ok && !state.join("agent.pem").exists());
}

#[test]
fn invalid_pipelines_get_positions_and_apply_nothing() {
    let c = Cluster::start("lint");
    let path = c.path().join("bad.yml");
    std::fs::write(
        &path,
        "name: bad\nsource:\n  git: /tmp/x.git\nstages:\n  - name: build\n    actions:\n      - name: c\n        type: build\n        image: busybox\n        commands: [true]\n        inputs: [nothing]\n        colour: blue\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = path.display().to_string();
    let lint = c.ferry(None, &["pipeline", "lint", &p]);
    assert!(!lint.success);
    assert!(lint.stdout.contains(&format!("{p}:11:")), "{}", lint.stdout);
    assert!(lint.stdout.contains(&format!("{p}:12:")), "{}", lint.stdout);
    let apply = c.ferry(Some("admin"), &["pipeline", "apply", "-f", &p]);
    assert!(!apply.success);
    assert!(apply.stderr.contains(":12:"), "{}", apply.stderr);

    std::fs::write(&path, "name: [unclosed\n").unwrap_or_else(|e| panic!("{e}"));
    let lint = c.ferry(None, &["pipeline", "lint", &p]);
    assert!(!lint.success);
    assert!(lint.stdout.contains(&format!("{p}:")), "{}", lint.stdout);
    assert!(
        !c.ferry(Some("admin"), &["pipeline", "apply", "-f", &p])
            .success
    );

    let list = c.ferry_ok(Some("admin"), &["pipeline", "list", "-o", "json"]);
    assert!(!list.contains("bad"), "nothing applied: {list}");
}
