//! Fuzzes the coordinator's git webhook reading
//! (`coordinator/src/http/webhook.rs`, compiled in as a module): the steps
//! `hooks.rs` runs on a request, `envelope` → `delivery_id` → `verify` (with
//! a fixed secret) → `parse`, where `parse` also runs when `verify` refuses,
//! so that arbitrary bodies reach it. Nothing may panic, and what comes back
//! must keep the promises the module makes (see `check_*` below).
//!
//! Input encoding, the shape of an HTTP request's head and body:
//!
//! ```text
//! name: value\n        header lines, the first 16 used (a trailing \r is dropped);
//! name: value\n        a line without `:` or an invalid name or value is
//! \n                   skipped; the first empty line ends the headers,
//! body...              and everything after it is the body, as is.
//! ```
//!
//! A value's `{{hmac}}` becomes the hex HMAC-SHA256 of the body under the
//! fixed secret, so `x-hub-signature-256: sha256={{hmac}}` signs the body
//! whatever the fuzzer makes of it; `{{secret}}` becomes the secret itself
//! (GitLab's `x-gitlab-token`). `content-type` is passed to `parse`. Seeds
//! are in `fuzz/seeds/git_webhook/`.
#![no_main]

#[path = "../../coordinator/src/http/webhook.rs"]
#[allow(dead_code)]
mod webhook;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use webhook::{Envelope, Format, HookEvent, MAX_DELIVERY_LEN, MAX_EVENT_LEN, MAX_REF_LEN};

const SECRET: &[u8] = b"ferry-fuzz-webhook-secret";
/// A different secret: whatever `SECRET` verifies, this must not.
const OTHER: &[u8] = b"ferry-fuzz-webhook-secreT";
const MAX_HEADERS: usize = 16;
const ZEROS: &str = "0000000000000000000000000000000000000000";

fuzz_target!(|data: &[u8]| {
    let (headers, body) = request(data);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());

    let envelope = match webhook::envelope(&headers) {
        Ok(e) => e,
        Err(e) => {
            check_message(&e.to_string());
            return;
        }
    };
    assert_eq!(
        webhook::envelope(&headers).as_ref(),
        Ok(&envelope),
        "envelope is not deterministic"
    );
    check_envelope(&envelope);

    let delivery = webhook::delivery_id(&envelope, body);
    check_delivery(&envelope, &delivery);

    let verified = webhook::verify(envelope.format, &headers, SECRET, body);
    match &verified {
        Ok(()) => assert!(
            webhook::verify(envelope.format, &headers, OTHER, body).is_err(),
            "a proof verified under two different secrets"
        ),
        Err(e) => check_message(&e.to_string()),
    }
    if signed(&headers, envelope.format, body) {
        assert_eq!(verified, Ok(()), "a correctly signed body was refused");
    }

    let event = webhook::parse(&envelope, content_type, body);
    assert_eq!(
        webhook::parse(&envelope, content_type, body),
        event,
        "parse is not deterministic"
    );
    match event {
        Ok(event) => check_event(&envelope, body, &event),
        Err(e) => check_message(&e.to_string()),
    }
});

/// Splits the input into headers and body (see the encoding above).
fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut lines = Vec::new();
    let mut at = 0;
    let body = loop {
        let end = data[at..].iter().position(|&b| b == b'\n').map(|i| at + i);
        let line = &data[at..end.unwrap_or(data.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match end {
            _ if line.is_empty() => break &data[end.map_or(data.len(), |e| e + 1)..],
            Some(e) => {
                lines.push(line);
                at = e + 1;
            }
            None => {
                lines.push(line);
                break &data[data.len()..];
            }
        }
    };
    let tag = hex::encode(hmac::sign(&key(), body));
    let secret = std::str::from_utf8(SECRET).expect("an ASCII secret");
    let mut headers = HeaderMap::new();
    for line in lines.into_iter().take(MAX_HEADERS) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
            continue;
        };
        let mut value = line[colon + 1..].trim_ascii_start().to_vec();
        if value.windows(2).any(|w| w == b"{{") {
            value = String::from_utf8_lossy(&value)
                .replace("{{hmac}}", &tag)
                .replace("{{secret}}", secret)
                .into_bytes();
        }
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    (headers, body)
}

fn key() -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, SECRET)
}

/// Whether the request carries a proof that `verify` must accept: the
/// signature header the format reads first (or GitLab's token) is right.
fn signed(headers: &HeaderMap, format: Format, body: &[u8]) -> bool {
    // As webhook.rs reads them: the whole header value trimmed, then
    // exactly 64 hex digits (after `sha256=` for X-Hub-Signature-256).
    let right = |hex_sig: &str| {
        hex::decode(hex_sig).is_ok_and(|tag| hmac::verify(&key(), body, &tag).is_ok())
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match format {
        Format::GitLab => headers
            .get("x-gitlab-token")
            .is_some_and(|v| v.as_bytes() == SECRET),
        _ if headers.contains_key("x-hub-signature-256") => text("x-hub-signature-256")
            .and_then(|t| t.trim().strip_prefix("sha256="))
            .is_some_and(right),
        Format::Gitea => text("x-gitea-signature").map(str::trim).is_some_and(right),
        Format::GitHub => false,
    }
}

fn check_envelope(e: &Envelope) {
    assert!(!e.event.is_empty(), "empty event accepted");
    assert!(
        e.event.len() <= MAX_EVENT_LEN,
        "event too long: {}",
        e.event.len()
    );
    assert!(
        e.event.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
        "event not printable ASCII: {:?}",
        e.event
    );
    assert_eq!(e.event, e.event.trim(), "event not trimmed");
    if let Some(d) = &e.delivery {
        assert!(!d.is_empty(), "empty delivery id kept");
    }
}

/// The delivery id: at most `MAX_DELIVERY_LEN` printable ASCII (`hooks.rs`
/// and the state key deliveries by it), the host's own when it sent one,
/// else `sha256:` and 64 lowercase hex digits.
fn check_delivery(e: &Envelope, id: &str) {
    assert!(!id.is_empty(), "empty delivery id");
    assert!(
        id.len() <= MAX_DELIVERY_LEN,
        "delivery id too long: {}",
        id.len()
    );
    assert!(
        id.bytes().all(|b| b.is_ascii_graphic()),
        "delivery id not printable ASCII: {id:?}"
    );
    match &e.delivery {
        Some(d) => assert_eq!(id, d, "delivery id is not the host's"),
        None => {
            let digest = id.strip_prefix("sha256:").expect("a digest delivery id");
            assert!(
                digest.len() == 64 && is_lower_hex(digest),
                "bad digest delivery id {id:?}"
            );
        }
    }
}

fn check_event(e: &Envelope, body: &[u8], event: &HookEvent) {
    match event {
        HookEvent::Ping => {
            assert_eq!((e.format, e.event.as_str()), (Format::GitHub, "ping"));
        }
        HookEvent::Other(name) => {
            if name != &e.event {
                let r = name
                    .strip_prefix("push ")
                    .expect("Other is the event or `push <ref>`");
                assert!(
                    !r.starts_with("refs/heads/") && !r.starts_with("refs/tags/"),
                    "a branch or tag push reported as {name:?}"
                );
                check_ref(r);
            }
        }
        HookEvent::Push(p) => {
            assert!(
                p.after.len() == 40 && is_lower_hex(&p.after),
                "after is not 40 lowercase hex: {:?}",
                p.after
            );
            if let Some(b) = &p.before {
                assert!(
                    b.len() == 40 && is_lower_hex(b) && b != ZEROS,
                    "bad before: {b:?}"
                );
            }
            if p.after == ZEROS {
                assert!(p.deleted, "after all zeros but not deleted");
            }
            check_ref(&p.name);
            // The name is the body's ref without its prefix (when the body
            // is an object with one `ref`; serde also reads arrays). It may
            // itself start with `refs/heads/`: git allows a branch named
            // `refs/heads/x` (ref `refs/heads/refs/heads/x`).
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body)
                && let Some(serde_json::Value::String(r)) = map.get("ref")
            {
                let prefix = match p.kind {
                    webhook::RefKind::Branch => "refs/heads/",
                    webhook::RefKind::Tag => "refs/tags/",
                };
                assert_eq!(r.strip_prefix(prefix), Some(p.name.as_str()), "name vs ref");
            }
        }
    }
}

/// What `check_ref_name` promises of an accepted name.
fn check_ref(name: &str) {
    assert!(!name.is_empty(), "empty ref name");
    assert!(
        name.len() <= MAX_REF_LEN,
        "ref name too long: {}",
        name.len()
    );
    assert!(
        !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c)),
        "bad character in ref name {name:?}"
    );
    assert!(
        !name.contains("..") && !name.contains("@{") && !name.ends_with(".lock"),
        "bad ref name {name:?}"
    );
    assert!(
        name.split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.')),
        "bad component in ref name {name:?}"
    );
}

/// Refusals are sent back and logged: they must stay short whatever the
/// request (the module clips outside text to 64 characters).
fn check_message(message: &str) {
    assert!(
        message.len() <= 1024,
        "refusal of {} bytes: {:?}…",
        message.len(),
        message.chars().take(200).collect::<String>()
    );
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
