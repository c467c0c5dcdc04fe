//! The Python client (clients/python) against a real one-member cluster:
//! its own test file (clients/python/tests/test_cluster.py) tells a
//! four-eyes refusal from a missing role by the status's reason, reads a
//! lint failure's positions from its details, retries StartExecution and
//! Decide with the same request id without a second execution or
//! decision, lists the public services by server reflection, and checks
//! the server's SPIFFE id. `scripts/python-client` makes its venv (from
//! PyPI) and stubs; the test fails, never skips, when that cannot be done.

use std::process::Command;

use ferry_tests::{Cluster, Repo};

#[test]
fn the_python_client_runs_its_tests_against_a_real_cluster() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| panic!("the tests crate has a parent folder"))
        .to_path_buf();
    let made = Command::new(root.join("scripts/python-client"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/python-client: {e}"));
    assert!(
        made.status.success(),
        "scripts/python-client failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let python = String::from_utf8_lossy(&made.stdout).trim().to_string();

    let c = Cluster::start("pyclient");
    c.grant("bob", "operator");
    c.grant("carol", "operator");
    c.grant("carol", "approver");
    for user in ["admin", "bob", "carol"] {
        c.user(user);
    }
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "init");

    let out = Command::new(&python)
        .arg(root.join("clients/python/tests/test_cluster.py"))
        .current_dir(root.join("clients/python"))
        .env("FERRY_COORDINATOR", &c.addr)
        .env("FERRY_CA", c.tls.join("ca.pem"))
        .env("FERRY_USERS", &c.users)
        .env("FERRY_GIT_URL", repo.url())
        .env("FERRY_TRUST_DOMAIN", "ferry")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Every test ran (unittest reports them on stderr).
    assert!(stderr.contains("Ran 4 tests"), "{stderr}");
}
