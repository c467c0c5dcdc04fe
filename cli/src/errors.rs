//! Turning failures into one message for `error: ...` on stderr. A status
//! the coordinator sent is shown as its message alone (the server writes them
//! for people); transport and TLS failures are recognised from their error
//! chain and explained in terms of --ca, --cert and --key; a call the
//! failover transport gave up on is shown as its error explains it (every
//! address tried, or how to check a write that may have been applied).

use std::error::Error as StdError;

use tonic::Status;

use crate::client::Target;

/// Shown when the server dropped the connection because of our client certificate.
pub const CLIENT_CERT_REFUSED: &str = "the coordinator refused the TLS handshake: your client certificate is missing or not signed by this cluster's CA (check --cert/--key/--ca)";
/// Shown when the server's certificate does not chain to --ca.
pub const SERVER_NOT_TRUSTED: &str =
    "the coordinator's certificate is not signed by the CA in --ca; is --ca this cluster's ca.pem?";

/// The message for a failed command (without the `error: ` prefix).
pub fn render(err: &anyhow::Error) -> String {
    let mid_stream = err.downcast_ref::<MidStream>().is_some();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<Status>() {
            return render_status(status, mid_stream);
        }
    }
    format!("{err:#}")
}

/// Marks a status that ended a stream after the coordinator had answered:
/// the TLS handshake certainly succeeded, so a broken connection is just that.
#[derive(Debug)]
pub struct MidStream;

impl std::fmt::Display for MidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream from the coordinator broke off")
    }
}

/// For `stream.message().await.map_err(errors::mid_stream)`.
pub fn mid_stream(status: Status) -> anyhow::Error {
    anyhow::Error::new(status).context(MidStream)
}

/// What to do about a refusal, in the CLI's own terms: the API's messages
/// name no CLI command or flag, the status's reason (`ErrorInfo`) says
/// which advice fits.
fn hint(status: &Status) -> Option<&'static str> {
    use ferry_client::{Reason, Refusal};
    Some(match Refusal::of(status).reason {
        Reason::MissingRole => "an admin grants roles with `ferry rbac grant NAME ROLE`",
        Reason::NotAnApprover => {
            "the approval's `approvers:` says who may decide it (`ferry pipeline show PIPELINE`)"
        }
        Reason::Unauthenticated if status.message().starts_with("no client certificate") => {
            "pass --cert and --key, or set FERRY_CERT and FERRY_KEY"
        }
        Reason::BadToken => "an admin makes a new join token with `ferry token create`",
        Reason::BadLoginLink => "`ferry ui` makes a new login link",
        _ => return None,
    })
}

/// A gRPC status: the server's own words, or an explained transport failure.
pub fn render_status(status: &Status, mid_stream: bool) -> String {
    // The failover transport gave up: its error says why, address by address.
    if let Some(failed) = status
        .source()
        .and_then(|s| s.downcast_ref::<crate::failover::CallError>())
    {
        return failed.to_string();
    }
    let Some(source) = status.source() else {
        // Sent by the coordinator (or synthesised by tonic without a cause).
        return if status.message().is_empty() {
            format!(
                "the coordinator answered {:?}: {}",
                status.code(),
                status.code().description()
            )
        } else {
            match hint(status) {
                Some(hint) => format!("{}\nhint: {hint}", status.message()),
                None => status.message().to_string(),
            }
        };
    };
    let detail = chain_text(source);
    let lower = detail.to_lowercase();
    if mid_stream {
        return format!("lost the connection to the coordinator: {detail}");
    }
    if let Some(explained) = server_cert_problem(&lower, None) {
        return format!("{explained}\ncaused by: {detail}");
    }
    if client_cert_refused(&lower, true) {
        return format!("{CLIENT_CERT_REFUSED}\ncaused by: {detail}");
    }
    format!("the call to the coordinator failed: {detail}")
}

/// Explains why connecting to `target` failed.
pub fn describe_connect_error(err: &(dyn StdError + 'static), target: &Target) -> String {
    let detail = chain_text(err);
    let lower = detail.to_lowercase();
    if let Some(explained) = server_cert_problem(&lower, Some(&target.host)) {
        return format!("{explained} ({detail})");
    }
    if client_cert_refused(&lower, false) {
        return format!("{CLIENT_CERT_REFUSED} ({detail})");
    }
    if lower.contains("timed out") || lower.contains("elapsed") {
        return format!("no answer within the connect timeout ({detail})");
    }
    detail
}

/// Explains a client TLS configuration that cannot be built from --ca/--cert/--key.
pub fn describe_tls_settings_error(err: &(dyn StdError + 'static)) -> String {
    let detail = chain_text(err);
    let lower = detail.to_lowercase();
    if lower.contains("keymismatch") || lower.contains("keys may not be consistent") {
        format!("the private key in --key does not belong to the certificate in --cert ({detail})")
    } else {
        format!("cannot use --ca/--cert/--key for TLS: {detail}")
    }
}

/// Whether a transport failure (its [`chain_text`], lowercased) is a
/// certificate problem: our verification of the server's certificate, or
/// the server's TLS alert over ours. Such a failure is the same for every
/// member, so the failover transport does not try another.
pub fn is_certificate_problem(lower: &str) -> bool {
    server_cert_problem(lower, None).is_some()
        || client_cert_refused(lower, false)
        || lower.contains("received fatal alert")
}

/// Messages of errors that only wrap a more specific cause.
const WRAPPERS: [&str; 2] = ["transport error", "operation was canceled"];

/// Every message in the chain, joined by `: `, skipping repeats (hyper and
/// tonic often wrap an error in one that displays the same text).
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = match e.downcast_ref::<Status>() {
            Some(status) => status.message().to_string(),
            None => e.to_string(),
        };
        let wrapper = WRAPPERS.contains(&text.as_str()) && e.source().is_some();
        if !text.is_empty() && !wrapper && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Our verification of the server's certificate failed.
fn server_cert_problem(lower: &str, host: Option<&str>) -> Option<String> {
    if lower.contains("refusing to talk to it") {
        return Some(
            "the server is not a coordinator of this cluster: its certificate is from the cluster's CA \
             but names another identity (an agent's, say), so nothing was sent to it; check --coordinator"
                .to_string(),
        );
    }
    if !lower.contains("invalid peer certificate") {
        return None;
    }
    Some(
        if [
            "unknownissuer",
            "unknown issuer",
            "badsignature",
            "bad signature",
        ]
        .iter()
        .any(|s| lower.contains(s))
        {
            SERVER_NOT_TRUSTED.to_string()
        } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            match host {
                Some(host) => format!(
                    "the coordinator's certificate is not valid for {host:?}: connect with a host name or IP address listed in its --san"
                ),
                None => "the coordinator's certificate is not valid for the address used: connect with a host name or IP address listed in its --san".to_string(),
            }
        } else if lower.contains("expired") || lower.contains("notvalidyet") {
            "the coordinator's certificate is expired or not yet valid (check the clocks, or issue a new one)".to_string()
        } else {
            "the coordinator's certificate was rejected".to_string()
        },
    )
}

/// The server ended the handshake or connection over our client certificate.
/// With TLS 1.3 the client finishes its side of the handshake first, so the
/// server's refusal arrives on the first call, often as a bare reset.
pub fn client_cert_refused(lower: &str, after_connect: bool) -> bool {
    let alert = lower.contains("received fatal alert")
        && [
            "certificate",
            "unknownca",
            "unknown ca",
            "accessdenied",
            "decrypterror",
        ]
        .iter()
        .any(|s| lower.contains(s));
    alert
        || (after_connect
            && [
                "received fatal alert",
                "connection reset",
                "broken pipe",
                "connection closed",
                "tls",
                "certificate",
                "handshake",
            ]
            .iter()
            .any(|s| lower.contains(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Io(std::io::Error);
    impl std::fmt::Display for Io {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }
    impl StdError for Io {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn transport_status(io: std::io::Error) -> Status {
        Status::from_error(Box::new(Io(io)))
    }

    #[test]
    fn server_statuses_are_shown_as_sent() {
        let status = Status::unauthenticated(
            "no client certificate presented: this call needs mutual TLS (pass --cert and --key, or set FERRY_CERT and FERRY_KEY)",
        );
        let err = anyhow::Error::new(status).context("WhoAmI");
        assert_eq!(
            render(&err),
            "no client certificate presented: this call needs mutual TLS (pass --cert and --key, or set FERRY_CERT and FERRY_KEY)"
        );
        let status = Status::invalid_argument(
            "pipeline is invalid; nothing was applied:\np.yaml:3:5: unknown key `stagez`",
        );
        assert_eq!(
            render(&status.into()),
            "pipeline is invalid; nothing was applied:\np.yaml:3:5: unknown key `stagez`"
        );
        assert!(render(&Status::unimplemented("").into()).contains("Unimplemented"));
    }

    #[test]
    fn a_refusal_with_a_reason_gets_the_cli_s_hint() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = Status::with_error_details(
            tonic::Code::PermissionDenied,
            "operator `bob` may not administer the cluster (needs role admin)",
            ErrorDetails::with_error_info(
                "MISSING_ROLE",
                "ferry.v1",
                std::collections::HashMap::new(),
            ),
        );
        assert_eq!(
            render(&status.into()),
            "operator `bob` may not administer the cluster (needs role admin)\n\
             hint: an admin grants roles with `ferry rbac grant NAME ROLE`"
        );
    }

    #[test]
    fn reset_after_handshake_means_client_cert_refused() {
        let status = transport_status(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "Connection reset by peer (os error 104)",
        ));
        assert!(status.source().is_some(), "tonic keeps the cause");
        let text = render(&status.into());
        assert!(text.starts_with(CLIENT_CERT_REFUSED), "{text}");
        assert!(text.contains("Connection reset by peer"), "{text}");
    }

    #[test]
    fn a_stream_that_breaks_later_is_not_blamed_on_certificates() {
        let status = transport_status(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "Connection reset by peer (os error 104)",
        ));
        let text = render(&mid_stream(status));
        assert!(
            text.starts_with("lost the connection to the coordinator:"),
            "{text}"
        );
        // A status the server sent mid-stream is still shown as sent.
        let text = render(&mid_stream(Status::unavailable(
            "the log is kept by agents that cannot be reached now",
        )));
        assert_eq!(text, "the log is kept by agents that cannot be reached now");
    }

    #[test]
    fn other_transport_failures_keep_their_chain() {
        let status = transport_status(std::io::Error::other("stream closed because of EOF"));
        let text = render(&status.into());
        assert!(
            text.starts_with("the call to the coordinator failed:"),
            "{text}"
        );
        assert!(text.contains("stream closed because of EOF"), "{text}");
    }

    #[test]
    fn tls_texts_are_classified() {
        assert_eq!(
            server_cert_problem("invalid peer certificate: unknownissuer", None).as_deref(),
            Some(SERVER_NOT_TRUSTED)
        );
        assert!(
            server_cert_problem(
                "invalid peer certificate: certificate not valid for name \"10.0.0.9\"",
                Some("10.0.0.9")
            )
            .is_some_and(|m| m.contains("not valid for \"10.0.0.9\""))
        );
        assert!(server_cert_problem("connection refused", None).is_none());
        assert!(client_cert_refused(
            "tls handshake: received fatal alert: unknownca",
            false
        ));
        assert!(client_cert_refused(
            "received fatal alert: certificaterequired",
            false
        ));
        assert!(!client_cert_refused(
            "tcp connect error: connection refused",
            false
        ));
        assert!(!client_cert_refused("connection reset by peer", false));
        assert!(client_cert_refused("connection reset by peer", true));
    }

    #[test]
    fn certificate_problems_are_told_from_unreachable_members() {
        for tls in [
            "transport error: invalid peer certificate: unknownissuer",
            "invalid peer certificate: certificate not valid for name \"10.0.0.9\"",
            "the server names another identity, refusing to talk to it",
            "received fatal alert: certificaterequired",
            "received fatal alert: decrypterror",
        ] {
            assert!(is_certificate_problem(tls), "{tls}");
        }
        for other in [
            "tcp connect error: connection refused (os error 111)",
            "connection reset by peer (os error 104)",
            "timed out",
        ] {
            assert!(!is_certificate_problem(other), "{other}");
        }
    }

    #[test]
    fn a_failover_that_gave_up_is_shown_as_it_explains_itself() {
        let failed = crate::failover::CallError::NoAnswer {
            tried_for: std::time::Duration::from_secs(2),
            failures: vec![("a:1".into(), "tcp connect error".into())],
        };
        // As tonic makes a status of a transport's error.
        let status = Status::from_error(Box::new(failed));
        assert_eq!(
            render(&status.into()),
            "no coordinator answered within --retry-for 2 s:\n  a:1: tcp connect error"
        );
    }

    #[test]
    fn plain_errors_print_their_chain() {
        let err = anyhow::anyhow!("no such file").context("cannot read p.yaml");
        assert_eq!(render(&err), "cannot read p.yaml: no such file");
    }
}
