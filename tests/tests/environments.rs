//! Deployment environments: positioned lint errors, applying versions, who may
//! apply, host keys shown pinned, and hosts whose credentials' secret is missing.

use ferry_tests::Cluster;
use serde_json::Value;

const ENV: &str = r#"name: staging
hosts:
  - name: web1
    ssh:
      address: 10.213.9.11:22
      user: deploy
      host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOSBhkCi9dTMPOeOdkfYpg2Dq7AKV+/DxWO6Pp2t4a7R"
      key_secret: staging-ssh
  - name: web2
    ssh:
      address: "[fd00::12]"
      user: deploy
      host_key: SHA256:8aZHypyWLhkHJVNKsC6A5UCqcYuaFQryRgfhINmjdLo
      key_secret: staging-ssh
      path: /srv/web
"#;

#[test]
fn environments_are_linted_applied_and_shown() {
    let c = Cluster::start("envs");
    c.grant("vic", "viewer");
    c.grant("olga", "operator");
    let file = c.path().join("staging.yml");
    let f = file.display().to_string();

    std::fs::write(
        &file,
        ENV.replace(
            "user: deploy\n      host_key: SHA256",
            "user: Deploy!\n      host_key: SHA256",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let lint = c.ferry(None, &["env", "lint", &f]);
    assert!(!lint.success);
    assert!(
        lint.stdout.contains(&format!("{f}:12:13:")),
        "positioned: {}",
        lint.stdout
    );
    assert!(
        !c.ferry(Some("olga"), &["env", "apply", "-f", &f]).success,
        "nothing invalid is applied"
    );

    std::fs::write(&file, ENV).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.ferry(None, &["env", "lint", &f]).success);
    assert!(
        !c.ferry(Some("vic"), &["env", "apply", "-f", &f]).success,
        "a viewer may not apply"
    );
    let out = c.ferry_ok(Some("olga"), &["env", "apply", "-f", &f]);
    assert!(out.contains("version 1"), "{out}");
    assert!(
        out.contains("staging-ssh") && out.contains("not set"),
        "missing secret flagged: {out}"
    );
    let again = c.ferry_ok(Some("olga"), &["env", "apply", "-f", &f]);
    assert!(again.contains("unchanged"), "{again}");

    let show = c.ferry_ok(Some("vic"), &["env", "show", "staging", "-o", "json"]);
    let v: Value = serde_json::from_str(&show).unwrap_or_default();
    let hosts = v[0]["hosts"].as_array().cloned().unwrap_or_default();
    assert_eq!(hosts.len(), 2, "{show}");
    assert_eq!(hosts[0]["address"], "10.213.9.11:22");
    assert_eq!(hosts[0]["path"], "/srv/staging", "default path");
    assert_eq!(hosts[1]["address"], "[fd00::12]:22", "default port");
    assert_eq!(
        hosts[1]["host_key"],
        "SHA256:8aZHypyWLhkHJVNKsC6A5UCqcYuaFQryRgfhINmjdLo"
    );
    assert_eq!(hosts[0]["missing_secrets"][0], "staging-ssh");

    // With the secret set, nothing is missing; a change makes version 2.
    c.set_secret("staging-ssh", b"not a real key, only a value");
    std::fs::write(&file, ENV.replace("path: /srv/web", "path: /srv/web2"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = c.ferry_ok(Some("olga"), &["env", "apply", "-f", &f]);
    assert!(
        out.contains("version 2") && !out.contains("not set"),
        "{out}"
    );
    let list = c.ferry_ok(Some("vic"), &["env", "list"]);
    assert!(
        list.contains("web2") && list.contains("/srv/web2"),
        "{list}"
    );
}
