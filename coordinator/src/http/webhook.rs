//! Git webhooks in the GitHub, GitLab and Gitea formats, as pure functions
//! over a request's headers and raw body: which host sent it ([`Format`]),
//! which delivery it is, whether it carries the proof of the shared secret,
//! and — only once that proof holds — what it says ([`HookEvent`]).
//!
//! Nothing here does I/O; `hooks.rs` runs these steps in order and turns a
//! [`WebhookError`] into its HTTP status ([`WebhookError::status`]).

use std::sync::OnceLock;

use http::{HeaderMap, StatusCode};
use ring::hmac;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Longest delivery id accepted (GitHub's GUIDs have 36 characters).
pub const MAX_DELIVERY_LEN: usize = 128;
/// Longest event name accepted (`Merge Request Hook` is among the longest).
pub const MAX_EVENT_LEN: usize = 64;
/// Longest ref accepted in a push (git itself has no limit; hosts stay far below).
pub const MAX_REF_LEN: usize = 255;

/// A push, as the pipeline's triggers and `ops` take it. For GitLab `after`
/// is the commit (`checkout_sha`) when it is given; for GitHub and Gitea the
/// object the ref points at, which for an annotated tag is the tag object
/// (git peels it to its commit).
pub use ferry_pipeline::trigger::{GitPush, RefKind};

/// What a verified webhook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEvent {
    Push(GitPush),
    /// GitHub's `ping`, sent when a webhook is created.
    Ping,
    /// Any other event (its name), or a push to a ref that is neither a
    /// branch nor a tag (`push refs/...`).
    Other(String),
}

/// The git host whose webhook format a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GitHub,
    GitLab,
    Gitea,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::GitHub => "GitHub",
            Format::GitLab => "GitLab",
            Format::Gitea => "Gitea",
        }
    }
}

/// A webhook request's headers, read before anything else happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub format: Format,
    /// The event name as the host sends it (`push`, `Tag Push Hook`, ...).
    pub event: String,
    /// The host's delivery id, when it sends one ([`delivery_id`] falls
    /// back to the body's digest).
    pub delivery: Option<String>,
}

/// Why a webhook request is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error(
        "not a git webhook: no X-GitHub-Event, X-Gitea-Event or X-Gitlab-Event header \
         (GitHub, Gitea and GitLab webhooks are understood)"
    )]
    UnknownFormat,
    /// A header is present but unusable.
    #[error("header {header}: {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
    /// No signature or token at all: the webhook has no secret configured.
    #[error(
        "missing {header} header: set the webhook's secret to the value of the pipeline \
         source's webhook_secret"
    )]
    MissingProof { header: &'static str },
    /// A signature or token that does not match the pipeline's secret.
    #[error(
        "{what} does not match the pipeline's webhook secret (check the webhook's secret \
         against the pipeline source's webhook_secret)"
    )]
    BadProof { what: &'static str },
    /// GitHub can send `application/x-www-form-urlencoded` bodies.
    #[error("the body is form-encoded; set the webhook's content type to application/json")]
    FormEncoded,
    /// The body is not the JSON expected (the reason says what is missing).
    #[error("the {event} payload is not understood: {reason}")]
    Payload { event: String, reason: String },
}

impl WebhookError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::MissingProof { .. } | WebhookError::BadProof { .. } => {
                StatusCode::UNAUTHORIZED
            }
            WebhookError::FormEncoded => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::UnknownFormat
            | WebhookError::BadHeader { .. }
            | WebhookError::Payload { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

const GITHUB_EVENT: &str = "x-github-event";
const GITEA_EVENT: &str = "x-gitea-event";
const GITLAB_EVENT: &str = "x-gitlab-event";
const GITHUB_DELIVERY: &str = "x-github-delivery";
const GITEA_DELIVERY: &str = "x-gitea-delivery";
const GITLAB_IDEMPOTENCY: &str = "idempotency-key";
const GITLAB_EVENT_UUID: &str = "x-gitlab-event-uuid";
const HUB_SIGNATURE: &str = "x-hub-signature-256";
const GITEA_SIGNATURE: &str = "x-gitea-signature";
const GITLAB_TOKEN: &str = "x-gitlab-token";

/// Reads the format, event and delivery id from the headers. Gitea (and
/// Forgejo) also send `X-GitHub-Event` for compatibility, so `X-Gitea-Event`
/// wins when both are present.
pub fn envelope(headers: &HeaderMap) -> Result<Envelope, WebhookError> {
    let (format, event_header) = if headers.contains_key(GITEA_EVENT) {
        (Format::Gitea, GITEA_EVENT)
    } else if headers.contains_key(GITLAB_EVENT) {
        (Format::GitLab, GITLAB_EVENT)
    } else if headers.contains_key(GITHUB_EVENT) {
        (Format::GitHub, GITHUB_EVENT)
    } else {
        return Err(WebhookError::UnknownFormat);
    };
    let event = header_text(headers, event_header, MAX_EVENT_LEN, true)?
        .ok_or(WebhookError::UnknownFormat)?;
    if event.is_empty() {
        return Err(WebhookError::BadHeader {
            header: canonical(event_header),
            reason: "it is empty".to_string(),
        });
    }
    // GitLab's Idempotency-Key is documented to stay the same when a
    // delivery is retried, so it comes before the event UUID.
    let delivery_headers: &[&'static str] = match format {
        Format::GitHub => &[GITHUB_DELIVERY],
        Format::Gitea => &[GITEA_DELIVERY, GITHUB_DELIVERY],
        Format::GitLab => &[GITLAB_IDEMPOTENCY, GITLAB_EVENT_UUID],
    };
    let mut delivery = None;
    for name in delivery_headers {
        if let Some(id) = header_text(headers, name, MAX_DELIVERY_LEN, false)? {
            if id.is_empty() {
                continue;
            }
            delivery = Some(id);
            break;
        }
    }
    Ok(Envelope {
        format,
        event,
        delivery,
    })
}

/// The delivery id: the host's own, or else `sha256:` and the hex SHA-256 of
/// the body. A host that sends no id sends the same body again when it
/// retries a delivery, so the digest makes a replay the same delivery
/// (and two different pushes never share one: their bodies differ).
pub fn delivery_id(envelope: &Envelope, body: &[u8]) -> String {
    match &envelope.delivery {
        Some(id) => id.clone(),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// Checks the request's proof of `secret` over the raw `body`, in constant
/// time: GitHub's and Gitea's `X-Hub-Signature-256: sha256=<hex>` (Gitea
/// also `X-Gitea-Signature: <hex>`), the HMAC-SHA256 of the body; GitLab's
/// `X-Gitlab-Token`, the secret itself. Run it before parsing the body.
pub fn verify(
    format: Format,
    headers: &HeaderMap,
    secret: &[u8],
    body: &[u8],
) -> Result<(), WebhookError> {
    match format {
        Format::GitHub | Format::Gitea => {
            let (header, hex_sig) = if let Some(v) = headers.get(HUB_SIGNATURE) {
                let sig = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().strip_prefix("sha256="))
                    .ok_or(WebhookError::BadProof {
                        what: "X-Hub-Signature-256 (expected sha256=<64 hex digits>)",
                    })?;
                (HUB_SIGNATURE, sig.to_string())
            } else if let (Format::Gitea, Some(v)) = (format, headers.get(GITEA_SIGNATURE)) {
                let sig = v.to_str().map_err(|_| WebhookError::BadProof {
                    what: "X-Gitea-Signature (expected 64 hex digits)",
                })?;
                (GITEA_SIGNATURE, sig.trim().to_string())
            } else {
                return Err(WebhookError::MissingProof {
                    header: match format {
                        Format::Gitea => "X-Hub-Signature-256 (or X-Gitea-Signature)",
                        _ => "X-Hub-Signature-256",
                    },
                });
            };
            let what = if header == HUB_SIGNATURE {
                "signature (X-Hub-Signature-256)"
            } else {
                "signature (X-Gitea-Signature)"
            };
            let tag = hex::decode(hex_sig).map_err(|_| WebhookError::BadProof { what })?;
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            hmac::verify(&key, body, &tag).map_err(|_| WebhookError::BadProof { what })
        }
        Format::GitLab => {
            let token = headers
                .get(GITLAB_TOKEN)
                .ok_or(WebhookError::MissingProof {
                    header: "X-Gitlab-Token",
                })?;
            if same_secret(token.as_bytes(), secret) {
                Ok(())
            } else {
                Err(WebhookError::BadProof {
                    what: "token (X-Gitlab-Token)",
                })
            }
        }
    }
}

/// Compares `given` with `secret` in constant time, whatever their lengths
/// (GitLab's token here, the console's CSRF token in `console.rs`):
/// both go through HMAC with a per-process random key and the tags are
/// compared by `ring::hmac::verify`, so neither the position of the first
/// differing byte nor the secret's length shows in the time taken.
pub fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()
    });
    match key {
        Some(key) => {
            let tag = hmac::sign(key, secret);
            hmac::verify(key, given, tag.as_ref()).is_ok()
        }
        // No randomness from the OS: refuse rather than compare unsafely.
        None => {
            tracing::error!("no randomness for comparing secrets; refusing");
            false
        }
    }
}

/// Reads what a verified webhook says. A form-encoded body (`content_type`
/// `application/x-www-form-urlencoded`) is refused: only JSON is read.
pub fn parse(
    envelope: &Envelope,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HookEvent, WebhookError> {
    let event = envelope.event.as_str();
    let is_push = match envelope.format {
        Format::GitHub => match event {
            "push" => true,
            "ping" => return Ok(HookEvent::Ping),
            _ => false,
        },
        Format::Gitea => event == "push",
        Format::GitLab => matches!(event, "Push Hook" | "Tag Push Hook"),
    };
    if !is_push {
        return Ok(HookEvent::Other(event.to_string()));
    }
    if content_type.is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    }) {
        return Err(WebhookError::FormEncoded);
    }
    let bad = |reason: String| WebhookError::Payload {
        event: event.to_string(),
        reason,
    };
    let payload: PushPayload = serde_json::from_slice(body).map_err(|e| bad(json_reason(&e)))?;
    push(envelope.format, payload).map_err(bad)
}

/// The fields of a push that Ferry reads; hosts send many more.
#[derive(Debug, Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    before: Option<String>,
    /// GitHub only; Gitea and GitLab show a deletion by `after` all zeros.
    #[serde(default)]
    deleted: Option<bool>,
    /// GitLab: the commit checked out at the ref (the commit even when
    /// `after` is an annotated tag's object); null when the ref was deleted.
    #[serde(default)]
    checkout_sha: Option<String>,
}

const ZEROS: &str = "0000000000000000000000000000000000000000";

fn push(format: Format, p: PushPayload) -> Result<HookEvent, String> {
    let (kind, name) = if let Some(name) = p.git_ref.strip_prefix("refs/heads/") {
        (RefKind::Branch, name)
    } else if let Some(name) = p.git_ref.strip_prefix("refs/tags/") {
        (RefKind::Tag, name)
    } else {
        check_ref_name(&p.git_ref).map_err(|e| format!("ref: {e}"))?;
        return Ok(HookEvent::Other(format!("push {}", p.git_ref)));
    };
    check_ref_name(name).map_err(|e| format!("ref {:?}: {e}", clip(&p.git_ref)))?;
    let after = p.after.ok_or("missing field `after`")?;
    let after = object_id(&after).map_err(|e| format!("after: {e}"))?;
    let before = match p.before {
        None => None,
        Some(b) => {
            let b = object_id(&b).map_err(|e| format!("before: {e}"))?;
            (b != ZEROS).then_some(b)
        }
    };
    let checkout = match (format, p.checkout_sha) {
        (Format::GitLab, Some(c)) => Some(object_id(&c).map_err(|e| format!("checkout_sha: {e}"))?),
        _ => None,
    };
    let deleted = p.deleted.unwrap_or(false) || after == ZEROS;
    let after = match checkout {
        Some(c) if !deleted && c != ZEROS => c,
        _ => after,
    };
    Ok(HookEvent::Push(GitPush {
        kind,
        name: name.to_string(),
        after,
        before,
        deleted,
    }))
}

/// A git object id: 40 hex digits, returned in lowercase.
fn object_id(s: &str) -> Result<String, String> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{:?} is not a commit id (40 hex digits)", clip(s)))
    }
}

/// The parts of git's ref name rules that matter here: non-empty, bounded,
/// no control characters, spaces or `~^:?*[\`, no `..`, no `@{`, no empty
/// or dot-led component, and no `.lock` or `/` at the end.
fn check_ref_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.len() > MAX_REF_LEN {
        return Err(format!("longer than {MAX_REF_LEN} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || " ~^:?*[\\".contains(c))
    {
        return Err(format!("contains {c:?}"));
    }
    if name.contains("..") || name.contains("@{") || name == "@" {
        return Err("contains `..` or `@{`".to_string());
    }
    if name.ends_with('/') || name.ends_with(".lock") || name.ends_with('.') {
        return Err("ends with `/`, `.` or `.lock`".to_string());
    }
    if name.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
        return Err("has an empty component or one starting with `.`".to_string());
    }
    Ok(())
}

/// Longest refusal reason taken from a JSON error: serde quotes the
/// offending value in type errors, which may be as long as the body.
const MAX_JSON_REASON: usize = 200;

/// A serde_json error without echoing more than a little of the body.
fn json_reason(e: &serde_json::Error) -> String {
    let reason = match e.classify() {
        serde_json::error::Category::Data => e.to_string(),
        serde_json::error::Category::Eof => "the JSON ends early".to_string(),
        _ => format!("not valid JSON ({e})"),
    };
    if reason.len() <= MAX_JSON_REASON {
        return reason;
    }
    let mut cut = MAX_JSON_REASON;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}... (line {}, column {})",
        &reason[..cut],
        e.line(),
        e.column()
    )
}

/// A header's value as text: visible ASCII only (spaces too for event
/// names, `Tag Push Hook`), at most `max` characters. `None` when absent.
fn header_text(
    headers: &HeaderMap,
    name: &'static str,
    max: usize,
    spaces: bool,
) -> Result<Option<String>, WebhookError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let bad = |reason: String| WebhookError::BadHeader {
        header: canonical(name),
        reason,
    };
    let bytes = value.as_bytes();
    if bytes.len() > max {
        return Err(bad(format!("longer than {max} characters")));
    }
    if let Some(b) = bytes
        .iter()
        .find(|&&b| !(b.is_ascii_graphic() || (spaces && b == b' ')))
    {
        return Err(bad(format!(
            "contains byte 0x{b:02x}; only printable ASCII is accepted"
        )));
    }
    // Only ASCII is left, so this is lossless.
    Ok(Some(String::from_utf8_lossy(bytes).trim().to_string()))
}

/// The usual spelling of a header name, for messages.
fn canonical(name: &'static str) -> &'static str {
    match name {
        GITHUB_EVENT => "X-GitHub-Event",
        GITEA_EVENT => "X-Gitea-Event",
        GITLAB_EVENT => "X-Gitlab-Event",
        GITHUB_DELIVERY => "X-GitHub-Delivery",
        GITEA_DELIVERY => "X-Gitea-Delivery",
        GITLAB_IDEMPOTENCY => "Idempotency-Key",
        GITLAB_EVENT_UUID => "X-Gitlab-Event-UUID",
        other => other,
    }
}

/// At most 64 characters of outside text, for messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
pub(crate) mod tests;
