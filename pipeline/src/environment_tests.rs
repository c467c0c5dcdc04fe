//! End-to-end tests of `parse_environment`: whole YAML documents in, an
//! environment or positioned diagnostics out.

use crate::environment::{
    DockerTarget, Environment, Host, HostKey, SshTarget, Target, parse_environment,
};
use crate::test_support::{doc, expect_errors, expect_ok};

const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKqKeBW1/+wBEjL+rdG9x6rO+ivJQVWWCRHUo4b6i9UP";
const ECDSA256: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLfxCjxiLFrxCJ6Dc0rZW39KslnZJGb58kaHt6XoiGFL5Yrkzf/Uxmfg5QyV3Ae6yJpHAUkNR2R6o3ZKJZaigm4=";
const FINGERPRINT: &str = "SHA256:S75VLRBByCaAQto2FYoRxxi2Vc+sirNnedkiiPEHTL8";

fn errors(text: &str) -> Vec<String> {
    expect_errors(parse_environment(text))
}

fn parse_ok(text: &str) -> Environment {
    expect_ok(parse_environment(text))
}

/// A valid environment whose single host's `ssh` mapping is `ssh` (lines
/// 5 onwards), each line indented under `ssh:`.
fn with_ssh(ssh: &[&str]) -> String {
    let mut lines = vec![
        "name: staging".to_string(),
        "hosts:".to_string(),
        "  - name: web1".to_string(),
        "    ssh:".to_string(),
    ];
    lines.extend(ssh.iter().map(|line| format!("      {line}")));
    doc(&lines.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The lines of a valid `ssh` mapping, with `replace` swapping in lines
/// that start with the same key (or appended when the key is new).
fn ssh_lines(replace: &[&str]) -> Vec<String> {
    let mut lines = vec![
        "address: 10.0.0.11:22".to_string(),
        "user: deploy".to_string(),
        format!("host_key: \"ssh-ed25519 {ED25519}\""),
        "key_secret: staging-ssh".to_string(),
    ];
    for new in replace {
        let key = new.split(':').next().unwrap_or_default();
        match lines
            .iter_mut()
            .find(|line| line.split(':').next() == Some(key))
        {
            Some(line) => *line = new.to_string(),
            None => lines.push(new.to_string()),
        }
    }
    lines
}

/// Errors of an environment whose ssh mapping is the valid one with
/// `replace` applied; lines are 5 (address), 6 (user), 7 (host_key),
/// 8 (key_secret), then added keys.
fn ssh_errors(replace: &[&str]) -> Vec<String> {
    let lines = ssh_lines(replace);
    errors(&with_ssh(
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
}

fn ssh_target(replace: &[&str]) -> SshTarget {
    let lines = ssh_lines(replace);
    let environment = parse_ok(&with_ssh(
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    match environment.hosts.into_iter().next().map(|h| h.target) {
        Some(Target::Ssh(ssh)) => ssh,
        other => panic!("expected an ssh target, got {other:?}"),
    }
}

/// A valid environment whose single host's `docker` mapping is `docker`
/// (lines 5 onwards).
fn with_docker(docker: &[&str]) -> String {
    let mut lines = vec!["name: staging", "hosts:", "  - name: api1", "    docker:"];
    let indented: Vec<String> = docker.iter().map(|line| format!("      {line}")).collect();
    lines.extend(indented.iter().map(String::as_str));
    doc(&lines)
}

// ---- valid environments ---------------------------------------------------

fn full_example() -> String {
    format!(
        "\
name: staging                 # same name rule as pipelines
hosts:
  - name: web1
    ssh:
      address: 10.0.0.11:22
      user: deploy
      host_key: \"ssh-ed25519 {ED25519} deploy@ci\"
      key_secret: staging-ssh
      path: /srv/app
  - name: web2
    ssh:
      address: web2.internal.example.com
      user: _deploy-2
      host_key: {FINGERPRINT}
      key_secret: staging-ssh
  - name: web3
    ssh:
      address: \"[2001:db8::3]:2222\"
      user: deploy
      host_key: ecdsa-sha2-nistp256 {ECDSA256}
      key_secret: staging-ssh
  - name: api1
    docker:
      endpoint: tcp://10.0.0.20:2376
      tls_secret: docker-tls
  - name: local
    docker:
      endpoint: unix:///var/run/docker.sock
"
    )
}

#[test]
fn full_example_parses_with_defaults() {
    let ssh = |host: &str, port, user: &str, host_key, path: &str| {
        Target::Ssh(SshTarget {
            host: host.to_string(),
            port,
            user: user.to_string(),
            host_key,
            key_secret: "staging-ssh".to_string(),
            path: path.to_string(),
        })
    };
    let ed25519 = HostKey::PublicKey {
        algorithm: "ssh-ed25519".to_string(),
        base64: ED25519.to_string(),
    };
    let ecdsa = HostKey::PublicKey {
        algorithm: "ecdsa-sha2-nistp256".to_string(),
        base64: ECDSA256.to_string(),
    };
    let fingerprint = HostKey::Fingerprint(FINGERPRINT.to_string());
    let host = |name: &str, target| Host {
        name: name.to_string(),
        target,
    };
    let expected = Environment {
        name: "staging".to_string(),
        hosts: vec![
            host("web1", ssh("10.0.0.11", 22, "deploy", ed25519, "/srv/app")),
            host(
                "web2",
                ssh(
                    "web2.internal.example.com",
                    22,
                    "_deploy-2",
                    fingerprint,
                    "/srv/staging",
                ),
            ),
            host(
                "web3",
                ssh("2001:db8::3", 2222, "deploy", ecdsa, "/srv/staging"),
            ),
            host(
                "api1",
                Target::Docker(DockerTarget {
                    endpoint: "tcp://10.0.0.20:2376".to_string(),
                    tls_secret: Some("docker-tls".to_string()),
                }),
            ),
            host(
                "local",
                Target::Docker(DockerTarget {
                    endpoint: "unix:///var/run/docker.sock".to_string(),
                    tls_secret: None,
                }),
            ),
        ],
    };
    assert_eq!(parse_ok(&full_example()), expected);
}

#[test]
fn serde_round_trip() {
    let environment = parse_ok(&full_example());
    let json = serde_json::to_string(&environment).expect("serialize");
    assert!(json.contains("\"ssh\":{"), "{json}");
    assert!(json.contains("\"public_key\":{"), "{json}");
    assert!(json.contains("\"fingerprint\":"), "{json}");
    let back: Environment = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, environment);
}

#[test]
fn default_port_and_path() {
    let ssh = ssh_target(&["address: deploy.example.com"]);
    assert_eq!((ssh.host.as_str(), ssh.port), ("deploy.example.com", 22));
    assert_eq!(ssh.path, "/srv/staging");
}

#[test]
fn accepted_addresses() {
    for (address, host, port) in [
        ("10.0.0.11", "10.0.0.11", 22),
        ("10.0.0.11:2222", "10.0.0.11", 2222),
        ("localhost", "localhost", 22),
        ("Web-1.Example.com:65535", "Web-1.Example.com", 65535),
        ("\"[::1]\"", "::1", 22),
        ("\"[fe80::1]:22\"", "fe80::1", 22),
    ] {
        let ssh = ssh_target(&[&format!("address: {address}")]);
        assert_eq!((ssh.host.as_str(), ssh.port), (host, port), "{address}");
    }
}

#[test]
fn accepted_host_keys() {
    let rsa_blob = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7";
    // A truncated RSA blob still names its type; only the prefix is checked.
    let rsa_blob = format!("{rsa_blob}{}", "A".repeat(4 - rsa_blob.len() % 4));
    for line in [
        format!("host_key: ssh-ed25519 {ED25519}"),
        format!("host_key: \"ssh-ed25519 {ED25519} a comment with spaces\""),
        format!("host_key: ssh-rsa {rsa_blob}"),
        format!("host_key: {FINGERPRINT}"),
    ] {
        ssh_target(&[&line]);
    }
}

// ---- errors -----------------------------------------------------------------

#[test]
fn unknown_keys() {
    let text = doc(&[
        "name: staging",
        "region: eu",
        "hosts:",
        "  - name: web1",
        "    labels: [a]",
        "    docker:",
        "      endpoint: tcp://10.0.0.20:2376",
        "      tls: yes",
    ]);
    assert_eq!(
        errors(&text),
        [
            "2:1: unknown key `region` in environment; expected one of: name, hosts",
            "5:5: unknown key `labels` in host; expected one of: name, ssh, docker",
            "8:7: unknown key `tls` in docker; expected one of: endpoint, tls_secret",
        ]
    );
    assert_eq!(
        ssh_errors(&["port: 22"]),
        ["9:7: unknown key `port` in ssh; expected one of: \
          address, user, host_key, key_secret, path"]
    );
}

#[test]
fn missing_target() {
    let text = doc(&[
        "name: staging",
        "hosts:",
        "  - name: web1",
        "  - name: web2",
    ]);
    assert_eq!(
        errors(&text),
        [
            "3:5: a host needs exactly one of `ssh` or `docker`; found neither",
            "4:5: a host needs exactly one of `ssh` or `docker`; found neither",
        ]
    );
}

#[test]
fn both_targets() {
    let text = doc(&[
        "name: staging",
        "hosts:",
        "  - name: web1",
        "    docker:",
        "      endpoint: tcp://10.0.0.20:2376",
        "    ssh:",
        "      address: 10.0.0.11",
        "      user: Deploy",
        "      host_key: SHA256:abc",
        "      key_secret: staging-ssh",
    ]);
    // Both mappings are still read: the errors inside ssh are reported too.
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        "6:5: a host needs exactly one of `ssh` or `docker`; found both"
    );
    assert!(
        errors[1].starts_with("8:13: invalid user \"Deploy\""),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("9:17: invalid `host_key`"),
        "{errors:#?}"
    );
}

#[test]
fn bad_addresses() {
    for (address, column, reason) in [
        ("10.0.0.256", 16, "`10.0.0.256` is not a valid IPv4 address"),
        (
            "10.0.0.11:0",
            16,
            "the port must be a number from 1 to 65535, found \"0\"",
        ),
        (
            "10.0.0.11:65536",
            16,
            "the port must be a number from 1 to 65535, found \"65536\"",
        ),
        (
            "\"10.0.0.11:\"",
            16,
            "the port must be a number from 1 to 65535, found \"\"",
        ),
        ("\":22\"", 16, "the host is empty"),
        (
            "web_1.example.com",
            16,
            "`web_1.example.com` is not a valid host name: contains '_'; \
             only letters, digits, '-' and '.' are allowed",
        ),
        (
            "\"2001:db8::1\"",
            16,
            "an IPv6 address must be written in brackets, like [2001:db8::1]:22",
        ),
        (
            "\"[2001:db8::zz]:22\"",
            16,
            "`2001:db8::zz` is not a valid IPv6 address",
        ),
        ("\"[::1]22\"", 16, "expected `:PORT` after ']'"),
    ] {
        let shown = address.trim_matches('"');
        assert_eq!(
            ssh_errors(&[&format!("address: {address}")]),
            [format!("5:{column}: invalid address {shown:?}: {reason}")],
            "{address}"
        );
    }
}

#[test]
fn bad_users() {
    assert_eq!(
        ssh_errors(&["user: Deploy"]),
        ["6:13: invalid user \"Deploy\": must start with a lowercase letter (a-z) or '_'"]
    );
    assert_eq!(
        ssh_errors(&["user: de.ploy"]),
        ["6:13: invalid user \"de.ploy\": contains '.'; \
          only lowercase letters, digits, '_' and '-' are allowed"]
    );
    let long = "u".repeat(33);
    assert_eq!(
        ssh_errors(&[&format!("user: {long}")]),
        [format!(
            "6:13: invalid user {long:?}: must be at most 32 characters long (it has 33)"
        )]
    );
    ssh_target(&[&format!("user: {}", "u".repeat(32))]);
    assert_eq!(
        ssh_errors(&["user:"]),
        ["6:7: `user` must be a string, found nothing (null)"]
    );
}

#[test]
fn bad_host_key_types() {
    assert_eq!(
        ssh_errors(&["host_key: \"ssh-dss AAAAB3NzaC1kc3M=\""]),
        [
            "7:17: invalid `host_key`: unsupported key type `ssh-dss`; expected one of: \
          ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa"
        ]
    );
    // The declared type must match the type inside the key data.
    assert_eq!(
        ssh_errors(&[&format!("host_key: \"ssh-rsa {ED25519}\"")]),
        ["7:17: invalid `host_key`: the key data is a `ssh-ed25519` key, not `ssh-rsa`"]
    );
    for (data, reason) in [
        (
            "AAAAC3NzaC1lZDI1NTE5AAAAI!",
            "the key data is not valid base64",
        ),
        (
            "AAAAC3NzaC1lZDI1NTE5AAA",
            "the key data is not valid base64",
        ),
        ("QUJD", "the key data is not an OpenSSH public key"),
    ] {
        assert_eq!(
            ssh_errors(&[&format!("host_key: \"ssh-ed25519 {data}\"")]),
            [format!("7:17: invalid `host_key`: {reason}")],
            "{data}"
        );
    }
    assert_eq!(
        ssh_errors(&["host_key: ssh-ed25519"]),
        [
            "7:17: invalid `host_key`: expected a public key `TYPE BASE64 [COMMENT]` \
          or a fingerprint `SHA256:...`"
        ]
    );
}

#[test]
fn bad_fingerprints() {
    let reason = "a fingerprint must be SHA256: followed by 43 base64 characters \
                  without padding (as printed by `ssh-keygen -l`)";
    let digest = FINGERPRINT.trim_start_matches("SHA256:");
    for bad in [
        "SHA256:".to_string(),
        format!("SHA256:{}", &digest[..42]),
        format!("SHA256:{digest}="),
        format!("SHA256:{}!", &digest[..42]),
        // The last character carries 2 bits that must be zero.
        format!("SHA256:{}9", &digest[..42]),
    ] {
        assert_eq!(
            ssh_errors(&[&format!("host_key: \"{bad}\"")]),
            [format!("7:17: invalid `host_key`: {reason}")],
            "{bad}"
        );
    }
    assert_eq!(
        ssh_errors(&["host_key: \"MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48\""]),
        [
            "7:17: invalid `host_key`: only SHA256 fingerprints are accepted, like \
          SHA256:<43 base64 characters> (as printed by `ssh-keygen -l`)"
        ]
    );
}

#[test]
fn relative_path() {
    assert_eq!(
        ssh_errors(&["path: srv/app"]),
        ["9:13: `path` must be an absolute path, found \"srv/app\""]
    );
}

#[test]
fn path_with_dot_dot() {
    assert_eq!(
        ssh_errors(&["path: /srv/../etc"]),
        ["9:13: `path` must not contain a `..` component, found \"/srv/../etc\""]
    );
    assert_eq!(ssh_target(&["path: /srv/a..b/"]).path, "/srv/a..b/");
}

#[test]
fn duplicate_host_names() {
    let text = doc(&[
        "name: staging",
        "hosts:",
        "  - name: web1",
        "    docker: {endpoint: \"tcp://10.0.0.20:2376\"}",
        "  - name: web1",
        "    docker: {endpoint: \"tcp://10.0.0.21:2376\"}",
    ]);
    assert_eq!(
        errors(&text),
        ["5:11: host `web1` is listed twice (first at 3:11)"]
    );
}

#[test]
fn bad_names() {
    let text = doc(&[
        "name: Staging",
        "hosts:",
        "  - name: web_1",
        "    docker: {endpoint: \"tcp://10.0.0.20:2376\"}",
    ]);
    assert_eq!(
        errors(&text),
        [
            "1:7: invalid environment name \"Staging\": must start with a lowercase letter (a-z)",
            "3:11: invalid host name \"web_1\": contains '_'; \
             only lowercase letters, digits and '-' are allowed",
        ]
    );
}

#[test]
fn bad_key_secret() {
    assert_eq!(
        ssh_errors(&["key_secret: Staging/ssh"]),
        ["8:19: invalid secret name \"Staging/ssh\": \
          must start with a lowercase letter (a-z) or a digit"]
    );
}

#[test]
fn bad_docker_endpoints() {
    for (endpoint, reason) in [
        (
            "http://10.0.0.20:2376",
            "expected tcp://HOST:PORT or unix:///PATH".to_string(),
        ),
        (
            "tcp://10.0.0.20:port",
            "the port must be a number from 1 to 65535, found \"port\"".to_string(),
        ),
        (
            "tcp://10.0.0.20:2376/",
            "the port must be a number from 1 to 65535, found \"2376/\"".to_string(),
        ),
        (
            "unix://var/run/docker.sock",
            "a unix:// endpoint needs an absolute socket path, like \
             unix:///var/run/docker.sock"
                .to_string(),
        ),
    ] {
        assert_eq!(
            errors(&with_docker(&[&format!("endpoint: {endpoint}")])),
            [format!(
                "5:17: invalid docker endpoint {endpoint:?}: {reason}"
            )],
            "{endpoint}"
        );
    }
    assert_eq!(
        errors(&with_docker(&[
            "endpoint: unix:///var/run/docker.sock",
            "tls_secret: docker-tls",
        ])),
        ["6:19: `tls_secret` is only for tcp:// endpoints; a unix:// socket does not use TLS"]
    );
    assert_eq!(
        errors(&with_docker(&[
            "endpoint: tcp://10.0.0.20:2376",
            "tls_secret: Docker",
        ])),
        ["6:19: invalid secret name \"Docker\": \
          must start with a lowercase letter (a-z) or a digit"]
    );
    assert_eq!(
        errors(&with_docker(&["tls_secret: docker-tls"])),
        ["5:7: missing required key `endpoint` in docker"]
    );
}

#[test]
fn empty_hosts() {
    assert_eq!(
        errors("name: staging\nhosts: []\n"),
        ["2:8: `hosts` must list at least one host"]
    );
    assert_eq!(
        errors("name: staging\nhosts:\n"),
        ["2:1: `hosts` must be a list, found nothing (null)"]
    );
    assert_eq!(
        errors("name: staging\n"),
        ["1:1: missing required key `hosts` in environment"]
    );
}

#[test]
fn missing_ssh_keys_all_reported() {
    assert_eq!(
        errors(&with_ssh(&["path: /srv/app"])),
        [
            "5:7: missing required key `address` in ssh",
            "5:7: missing required key `user` in ssh",
            "5:7: missing required key `host_key` in ssh",
            "5:7: missing required key `key_secret` in ssh",
        ]
    );
}

#[test]
fn errors_are_sorted_across_hosts() {
    let text = doc(&[
        "name: staging",
        "hosts:",
        "  - name: web1",
        "    ssh:",
        "      address: 10.0.0.11:99999",
        "      user: deploy",
        &format!("      host_key: {FINGERPRINT}"),
        "      key_secret: s",
        "      path: relative",
        "  - name: api1",
        "    docker: {endpoint: \"ftp://x\", extra: 1}",
        "bogus: 1",
    ]);
    let lines: Vec<String> = errors(&text)
        .iter()
        .map(|e| e.split(": ").next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(lines, ["5:16", "9:13", "11:24", "11:35", "12:1"]);
}

#[test]
fn whole_file_problems() {
    assert_eq!(
        errors("# nothing\n"),
        ["1:1: the environment file is empty; expected a mapping with `name` and `hosts`"]
    );
    assert_eq!(
        errors("- a\n"),
        ["1:1: an environment file must be a mapping with `name` and `hosts` at the top level"]
    );
    let second = format!("{}---\nname: other\n", full_example());
    assert_eq!(
        errors(&second),
        ["29:1: an environment file must contain a single YAML document"]
    );
    let duplicate = "name: a\nname: b\nhosts: []\n";
    assert_eq!(
        errors(duplicate),
        ["2:1: duplicate key `name` (first defined at 1:1)"]
    );
}
