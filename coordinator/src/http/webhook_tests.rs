//! Unit tests of the webhook formats, with payloads trimmed from each host's
//! documentation.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

pub(crate) const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
  "repository": {
    "id": 1296269,
    "name": "Hello-World",
    "full_name": "octocat/Hello-World",
    "clone_url": "https://github.com/octocat/Hello-World.git"
  },
  "pusher": { "name": "octocat", "email": "octocat@github.com" },
  "sender": { "login": "octocat", "id": 1 },
  "created": false,
  "deleted": false,
  "forced": false,
  "base_ref": null,
  "compare": "https://github.com/octocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f",
  "commits": [
    {
      "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
      "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
      "distinct": true,
      "message": "Update README.md",
      "timestamp": "2015-05-05T19:40:15-04:00",
      "author": { "name": "Mona Octocat", "email": "octocat@github.com", "username": "octocat" }
    }
  ],
  "head_commit": {
    "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    "message": "Update README.md"
  }
}"#;

const GITHUB_TAG_PUSH: &str = r#"{
  "ref": "refs/tags/v1.2.0",
  "before": "0000000000000000000000000000000000000000",
  "after": "A10867B14BB761A232CD80139FBD4C0D33264240",
  "created": true,
  "deleted": false,
  "forced": false,
  "base_ref": "refs/heads/main",
  "commits": [],
  "repository": { "full_name": "octocat/Hello-World" }
}"#;

const GITHUB_BRANCH_DELETED: &str = r#"{
  "ref": "refs/heads/feature/old",
  "before": "a10867b14bb761a232cd80139fbd4c0d33264240",
  "after": "0000000000000000000000000000000000000000",
  "created": false,
  "deleted": true,
  "forced": false,
  "commits": [],
  "head_commit": null,
  "repository": { "full_name": "octocat/Hello-World" }
}"#;

const GITHUB_PING: &str = r#"{
  "zen": "Keep it logically awesome.",
  "hook_id": 109948940,
  "hook": { "type": "Repository", "id": 109948940, "active": true, "events": ["push"],
            "config": { "content_type": "json", "insecure_ssl": "0", "url": "https://ferry.example/hooks/git/web" } },
  "repository": { "full_name": "octocat/Hello-World" }
}"#;

pub(crate) const GITLAB_PUSH: &str = r#"{
  "object_kind": "push",
  "event_name": "push",
  "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
  "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
  "ref": "refs/heads/master",
  "ref_protected": true,
  "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
  "user_id": 4,
  "user_name": "John Smith",
  "user_username": "jsmith",
  "project_id": 15,
  "project": {
    "id": 15,
    "name": "Diaspora",
    "path_with_namespace": "mike/diaspora",
    "default_branch": "master",
    "git_http_url": "http://example.com/mike/diaspora.git"
  },
  "commits": [
    {
      "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      "message": "fixed readme",
      "timestamp": "2012-01-03T23:36:29+02:00",
      "author": { "name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)" },
      "added": ["CHANGELOG"],
      "modified": ["app/controller/application.rb"],
      "removed": []
    }
  ],
  "total_commits_count": 1
}"#;

const GITLAB_TAG_PUSH: &str = r#"{
  "object_kind": "tag_push",
  "event_name": "tag_push",
  "before": "0000000000000000000000000000000000000000",
  "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
  "ref": "refs/tags/v1.0.0",
  "ref_protected": true,
  "checkout_sha": "5937ac0a7beb003549fc5fd26fc247adbce4a52e",
  "user_id": 1,
  "project_id": 1,
  "project": { "id": 1, "path_with_namespace": "jsmith/example" },
  "commits": [],
  "total_commits_count": 0
}"#;

const GITLAB_BRANCH_DELETED: &str = r#"{
  "object_kind": "push",
  "event_name": "push",
  "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
  "after": "0000000000000000000000000000000000000000",
  "ref": "refs/heads/topic",
  "checkout_sha": null,
  "project_id": 15,
  "commits": [],
  "total_commits_count": 0
}"#;

pub(crate) const GITEA_PUSH: &str = r#"{
  "ref": "refs/heads/develop",
  "before": "28e1879d029cb852e4844d9c718537df08844e03",
  "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
  "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
  "commits": [
    {
      "id": "bffeb74224043ba2feb48d137756c8a9331c449a",
      "message": "Webhooks Yay!",
      "url": "http://localhost:3000/gitea/webhooks/commit/bffeb74224043ba2feb48d137756c8a9331c449a",
      "author": { "name": "Gitea", "email": "someone@gitea.io", "username": "gitea" },
      "timestamp": "2017-03-13T13:52:11-04:00"
    }
  ],
  "repository": {
    "id": 140,
    "owner": { "id": 1, "login": "gitea" },
    "name": "webhooks",
    "full_name": "gitea/webhooks",
    "clone_url": "http://localhost:3000/gitea/webhooks.git",
    "default_branch": "master"
  },
  "pusher": { "id": 1, "login": "gitea" },
  "sender": { "id": 1, "login": "gitea" }
}"#;

/// `sha256=<hex>` of `body` under `secret`, as GitHub computes it.
pub(crate) fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    h
}

/// Runs every step as `hooks.rs` does: headers, proof, then the body.
fn receive(h: &HeaderMap, secret: &[u8], body: &str) -> Result<(String, HookEvent), WebhookError> {
    let env = envelope(h)?;
    verify(env.format, h, secret, body.as_bytes())?;
    let id = delivery_id(&env, body.as_bytes());
    let event = parse(&env, Some("application/json"), body.as_bytes())?;
    Ok((id, event))
}

const SECRET: &[u8] = b"s3cret-of-the-pipeline";

#[test]
fn github_documented_signature_vector() {
    // From GitHub's "Validating webhook deliveries".
    assert_eq!(
        github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let h = headers(&[
        ("X-GitHub-Event", "push"),
        (
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    ]);
    assert_eq!(
        verify(
            Format::GitHub,
            &h,
            b"It's a Secret to Everybody",
            b"Hello, World!"
        ),
        Ok(())
    );
}

#[test]
fn github_branch_push() {
    let sig = github_signature(SECRET, GITHUB_PUSH.as_bytes());
    let h = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", &sig),
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
    ]);
    let (id, event) = receive(&h, SECRET, GITHUB_PUSH).expect("accepted");
    assert_eq!(id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(
        event,
        HookEvent::Push(GitPush {
            kind: RefKind::Branch,
            name: "main".to_string(),
            after: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".to_string(),
            before: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_string()),
            deleted: false,
        })
    );
}

#[test]
fn github_tag_push_is_a_push_to_refs_tags() {
    let sig = github_signature(SECRET, GITHUB_TAG_PUSH.as_bytes());
    let h = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d1"),
        ("X-Hub-Signature-256", &sig),
    ]);
    let (_, event) = receive(&h, SECRET, GITHUB_TAG_PUSH).expect("accepted");
    assert_eq!(
        event,
        HookEvent::Push(GitPush {
            kind: RefKind::Tag,
            name: "v1.2.0".to_string(),
            // Lowercased.
            after: "a10867b14bb761a232cd80139fbd4c0d33264240".to_string(),
            // All zeros: the tag is new.
            before: None,
            deleted: false,
        })
    );
}

#[test]
fn github_deleted_branch() {
    let sig = github_signature(SECRET, GITHUB_BRANCH_DELETED.as_bytes());
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
    let (_, event) = receive(&h, SECRET, GITHUB_BRANCH_DELETED).expect("accepted");
    let HookEvent::Push(push) = event else {
        panic!("not a push: {event:?}")
    };
    assert!(push.deleted);
    assert_eq!(push.name, "feature/old");
    assert_eq!(push.after, ZEROS);
}

#[test]
fn github_ping_and_other_events() {
    let sig = github_signature(SECRET, GITHUB_PING.as_bytes());
    let h = headers(&[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)]);
    assert_eq!(
        receive(&h, SECRET, GITHUB_PING).expect("ok").1,
        HookEvent::Ping
    );

    let body = r#"{"action":"opened","number":2}"#;
    let sig = github_signature(SECRET, body.as_bytes());
    let h = headers(&[
        ("X-GitHub-Event", "pull_request"),
        ("X-Hub-Signature-256", &sig),
    ]);
    assert_eq!(
        receive(&h, SECRET, body).expect("ok").1,
        HookEvent::Other("pull_request".to_string())
    );
}

#[test]
fn github_missing_and_wrong_signatures() {
    let h = headers(&[("X-GitHub-Event", "push")]);
    let err = receive(&h, SECRET, GITHUB_PUSH).expect_err("no signature");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(
        err.to_string().starts_with("missing X-Hub-Signature-256"),
        "{err}"
    );

    let wrong = github_signature(b"another secret", GITHUB_PUSH.as_bytes());
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)]);
    let err = receive(&h, SECRET, GITHUB_PUSH).expect_err("wrong secret");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(err.to_string().starts_with("signature"), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");

    // Right secret, body changed after signing.
    let sig = github_signature(SECRET, GITHUB_PUSH.as_bytes());
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
    let tampered = GITHUB_PUSH.replace("refs/heads/main", "refs/heads/prod");
    assert!(matches!(
        receive(&h, SECRET, &tampered),
        Err(WebhookError::BadProof { .. })
    ));

    // Not hex, no prefix, the old SHA-1 scheme's prefix, truncated.
    for bad in [
        "sha256=zz",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        &sig[..sig.len() - 2],
        "",
    ] {
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", bad)]);
        assert!(
            matches!(
                receive(&h, SECRET, GITHUB_PUSH),
                Err(WebhookError::BadProof { .. })
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn verification_comes_before_parsing() {
    // An unsigned body that is not even JSON is refused for its signature.
    let h = headers(&[("X-GitHub-Event", "push")]);
    assert!(matches!(
        receive(&h, SECRET, "{not json"),
        Err(WebhookError::MissingProof { .. })
    ));
}

#[test]
fn gitlab_push_with_token() {
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", "s3cret-of-the-pipeline"),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
        ("X-Gitlab-Instance", "https://gitlab.example.com"),
    ]);
    let (id, event) = receive(&h, SECRET, GITLAB_PUSH).expect("accepted");
    assert_eq!(id, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    assert_eq!(
        event,
        HookEvent::Push(GitPush {
            kind: RefKind::Branch,
            name: "master".to_string(),
            after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_string(),
            before: Some("95790bf891e76fee5e1747ab589903a6a1f80f22".to_string()),
            deleted: false,
        })
    );
}

#[test]
fn gitlab_prefers_the_idempotency_key() {
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", "s3cret-of-the-pipeline"),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
        ("Idempotency-Key", "f5e5f7f0-0c5d-4a3b-9b0e-2f2f7b7f4a11"),
    ]);
    let (id, _) = receive(&h, SECRET, GITLAB_PUSH).expect("accepted");
    assert_eq!(id, "f5e5f7f0-0c5d-4a3b-9b0e-2f2f7b7f4a11");
}

#[test]
fn gitlab_tag_push_uses_the_checked_out_commit() {
    let h = headers(&[
        ("X-Gitlab-Event", "Tag Push Hook"),
        ("X-Gitlab-Token", "s3cret-of-the-pipeline"),
    ]);
    let (_, event) = receive(&h, SECRET, GITLAB_TAG_PUSH).expect("accepted");
    assert_eq!(
        event,
        HookEvent::Push(GitPush {
            kind: RefKind::Tag,
            name: "v1.0.0".to_string(),
            after: "5937ac0a7beb003549fc5fd26fc247adbce4a52e".to_string(),
            before: None,
            deleted: false,
        })
    );
}

#[test]
fn gitlab_deleted_branch() {
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", "s3cret-of-the-pipeline"),
    ]);
    let (_, event) = receive(&h, SECRET, GITLAB_BRANCH_DELETED).expect("accepted");
    let HookEvent::Push(push) = event else {
        panic!("not a push: {event:?}")
    };
    assert!(push.deleted);
    assert_eq!(push.after, ZEROS);
    assert_eq!(push.name, "topic");
}

#[test]
fn gitlab_token_missing_or_wrong() {
    let h = headers(&[("X-Gitlab-Event", "Push Hook")]);
    let err = receive(&h, SECRET, GITLAB_PUSH).expect_err("no token");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(
        err.to_string().starts_with("missing X-Gitlab-Token"),
        "{err}"
    );
    for wrong in [
        "s3cret-of-the-pipelinE",
        "s3cret-of-the-pipeline-and-more",
        "s3cret",
        "",
    ] {
        let h = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", wrong)]);
        assert!(
            matches!(
                receive(&h, SECRET, GITLAB_PUSH),
                Err(WebhookError::BadProof { .. })
            ),
            "{wrong:?} accepted"
        );
    }
    // A GitHub-style signature is no GitLab token.
    let sig = github_signature(SECRET, GITLAB_PUSH.as_bytes());
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Hub-Signature-256", &sig),
    ]);
    assert!(matches!(
        receive(&h, SECRET, GITLAB_PUSH),
        Err(WebhookError::MissingProof { .. })
    ));
}

#[test]
fn gitlab_other_events() {
    let body = r#"{"object_kind":"merge_request"}"#;
    let h = headers(&[
        ("X-Gitlab-Event", "Merge Request Hook"),
        ("X-Gitlab-Token", "s3cret-of-the-pipeline"),
    ]);
    assert_eq!(
        receive(&h, SECRET, body).expect("ok").1,
        HookEvent::Other("Merge Request Hook".to_string())
    );
}

#[test]
fn gitea_push_prefers_gitea_headers() {
    let hub = github_signature(SECRET, GITEA_PUSH.as_bytes());
    let plain = hub.trim_start_matches("sha256=").to_string();
    // Gitea sends GitHub's and Gogs' headers too.
    let h = headers(&[
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
        ("X-Gitea-Signature", &plain),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "another-id"),
        ("X-Gogs-Event", "push"),
        ("X-Hub-Signature-256", &hub),
    ]);
    let env = envelope(&h).expect("envelope");
    assert_eq!(env.format, Format::Gitea);
    let (id, event) = receive(&h, SECRET, GITEA_PUSH).expect("accepted");
    assert_eq!(id, "f6266f16-1bf3-46a5-9ea4-602e06ead473");
    assert_eq!(
        event,
        HookEvent::Push(GitPush {
            kind: RefKind::Branch,
            name: "develop".to_string(),
            after: "bffeb74224043ba2feb48d137756c8a9331c449a".to_string(),
            before: Some("28e1879d029cb852e4844d9c718537df08844e03".to_string()),
            deleted: false,
        })
    );
}

#[test]
fn gitea_signature_alone_and_wrong() {
    let hub = github_signature(SECRET, GITEA_PUSH.as_bytes());
    let plain = hub.trim_start_matches("sha256=").to_string();
    let h = headers(&[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &plain)]);
    assert!(receive(&h, SECRET, GITEA_PUSH).is_ok());

    let h = headers(&[("X-Gitea-Event", "push"), ("X-Gitea-Signature", "00")]);
    assert!(matches!(
        receive(&h, SECRET, GITEA_PUSH),
        Err(WebhookError::BadProof { .. })
    ));
    let h = headers(&[("X-Gitea-Event", "push")]);
    let err = receive(&h, SECRET, GITEA_PUSH).expect_err("unsigned");
    assert!(
        err.to_string().starts_with("missing X-Hub-Signature-256"),
        "{err}"
    );
    // X-Gitea-Signature means nothing to a GitHub webhook.
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Gitea-Signature", &plain)]);
    assert!(matches!(
        receive(&h, SECRET, GITEA_PUSH),
        Err(WebhookError::MissingProof { .. })
    ));
}

#[test]
fn gitea_create_and_delete_events_are_other() {
    let body =
        r#"{"sha":"bffeb74224043ba2feb48d137756c8a9331c449a","ref":"v1.0","ref_type":"tag"}"#;
    let sig = github_signature(SECRET, body.as_bytes());
    let h = headers(&[("X-Gitea-Event", "create"), ("X-Hub-Signature-256", &sig)]);
    assert_eq!(
        receive(&h, SECRET, body).expect("ok").1,
        HookEvent::Other("create".to_string())
    );
}

#[test]
fn delivery_falls_back_to_the_body_digest() {
    let sig = github_signature(SECRET, GITHUB_PUSH.as_bytes());
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
    let (a, _) = receive(&h, SECRET, GITHUB_PUSH).expect("accepted");
    let (b, _) = receive(&h, SECRET, GITHUB_PUSH).expect("accepted");
    assert_eq!(a, b, "a replay of the same body is the same delivery");
    assert!(a.starts_with("sha256:"));
    assert_eq!(a.len(), "sha256:".len() + 64);
    assert!(a.len() <= MAX_DELIVERY_LEN);
    let other = GITHUB_PUSH.replace("Update README.md", "Update README");
    let sig = github_signature(SECRET, other.as_bytes());
    let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
    let (c, _) = receive(&h, SECRET, &other).expect("accepted");
    assert_ne!(a, c);
}

#[test]
fn bad_headers_are_refused() {
    assert_eq!(
        envelope(&headers(&[("Content-Type", "application/json")])),
        Err(WebhookError::UnknownFormat)
    );
    let long = "a".repeat(MAX_DELIVERY_LEN + 1);
    let err = envelope(&headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", &long),
    ]))
    .expect_err("too long");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("X-GitHub-Delivery"), "{err}");
    // Exactly the limit is fine.
    let fine = "a".repeat(MAX_DELIVERY_LEN);
    let env = envelope(&headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", &fine),
    ]))
    .expect("at the limit");
    assert_eq!(env.delivery.as_deref(), Some(fine.as_str()));
    // Spaces and non-ASCII bytes in a delivery id.
    let err = envelope(&headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "a b"),
    ]))
    .expect_err("space");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let mut h = headers(&[("X-GitHub-Event", "push")]);
    h.insert(
        "x-github-delivery",
        HeaderValue::from_bytes(b"id-\xc3\xa9").expect("value"),
    );
    assert!(matches!(envelope(&h), Err(WebhookError::BadHeader { .. })));
    // An empty or overlong event name.
    assert!(matches!(
        envelope(&headers(&[("X-GitHub-Event", "")])),
        Err(WebhookError::BadHeader { .. })
    ));
    let long_event = "e".repeat(MAX_EVENT_LEN + 1);
    assert!(matches!(
        envelope(&headers(&[("X-GitHub-Event", &long_event)])),
        Err(WebhookError::BadHeader { .. })
    ));
}

fn parse_github(body: &str) -> Result<HookEvent, WebhookError> {
    let env = Envelope {
        format: Format::GitHub,
        event: "push".to_string(),
        delivery: None,
    };
    parse(&env, Some("application/json"), body.as_bytes())
}

#[test]
fn malformed_payloads_say_what_is_wrong() {
    let err = parse_github("{not json").expect_err("malformed");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    let err = parse_github(r#"{"ref":"refs/heads/main""#).expect_err("truncated");
    assert!(err.to_string().contains("ends early"), "{err}");

    let err = parse_github(r#"{"after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}"#)
        .expect_err("no ref");
    assert!(err.to_string().contains("missing field `ref`"), "{err}");

    let err = parse_github(r#"{"ref":"refs/heads/main"}"#).expect_err("no after");
    assert!(err.to_string().contains("missing field `after`"), "{err}");

    let err = parse_github(r#"{"ref":"refs/heads/main","after":"abc"}"#).expect_err("short");
    assert!(err.to_string().contains("after:"), "{err}");

    let err = parse_github(
        r#"{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","before":"x"}"#,
    )
    .expect_err("bad before");
    assert!(err.to_string().contains("before:"), "{err}");

    let err = parse_github(r#"{"ref":7,"after":"x"}"#).expect_err("wrong type");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);

    let err = parse_github("[]").expect_err("array");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn ref_names_are_checked() {
    let sha = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    for bad in [
        "refs/heads/",
        "refs/heads/a..b",
        "refs/heads/a b",
        "refs/heads/a\u{7f}b",
        "refs/heads/x.lock",
        "refs/heads/.hidden",
        "refs/heads/a//b",
        "refs/heads/a~1",
        "refs/tags/v1^{}",
        "refs/heads/@{-1}",
    ] {
        let body = serde_json::json!({"ref": bad, "after": sha}).to_string();
        assert!(
            matches!(parse_github(&body), Err(WebhookError::Payload { .. })),
            "{bad:?} accepted"
        );
    }
    let long = format!("refs/heads/{}", "b".repeat(MAX_REF_LEN + 1));
    let body = serde_json::json!({"ref": long, "after": sha}).to_string();
    assert!(parse_github(&body).is_err());

    // Nested branch names keep their slashes.
    let body = serde_json::json!({"ref": "refs/heads/release/2.x", "after": sha}).to_string();
    let Ok(HookEvent::Push(push)) = parse_github(&body) else {
        panic!("refused")
    };
    assert_eq!(push.name, "release/2.x");
    assert_eq!(push.before, None, "absent before");

    // A push to another namespace is not a branch or tag push.
    let body = serde_json::json!({"ref": "refs/notes/commits", "after": sha}).to_string();
    assert_eq!(
        parse_github(&body),
        Ok(HookEvent::Other("push refs/notes/commits".to_string()))
    );
}

#[test]
fn form_encoded_github_bodies_are_refused() {
    let env = Envelope {
        format: Format::GitHub,
        event: "push".to_string(),
        delivery: None,
    };
    let err = parse(
        &env,
        Some("application/x-www-form-urlencoded"),
        b"payload=%7B%7D",
    )
    .expect_err("form");
    assert_eq!(err, WebhookError::FormEncoded);
}

#[test]
fn same_secret_is_exact() {
    assert!(same_secret(b"abc", b"abc"));
    assert!(!same_secret(b"abc", b"abd"));
    assert!(!same_secret(b"abc", b"abcd"));
    assert!(!same_secret(b"", b"abc"));
}

/// Found by the `git_webhook` fuzz target: serde quotes a mistyped value in
/// its error, so a refusal could repeat a body-sized string.
#[test]
fn a_refusal_never_repeats_a_long_value_of_the_body() {
    let body = format!(
        r#"{{"ref":"refs/heads/a","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","deleted":"{}"}}"#,
        "A".repeat(3000)
    );
    let sig = github_signature(SECRET, body.as_bytes());
    let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
    let err = receive(&h, SECRET, &body).expect_err("a string where a boolean belongs");
    let text = err.to_string();
    assert!(text.len() < 400, "{} bytes: {text}", text.len());
    assert!(text.contains("line 1"), "{text}");
}
