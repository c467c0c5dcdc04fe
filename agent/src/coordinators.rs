//! Asking "whichever coordinator answers" a one-off question (enrollment,
//! certificate renewal): each address in turn, verified as a coordinator; an
//! address that cannot be reached or answers UNAVAILABLE (no leader right
//! now) is skipped, any other refusal is final.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_certs::CertifiedKey;
use tonic::transport::Channel;

/// How long to wait for a connection to one coordinator.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `call` on the first coordinator of `coordinators` that answers it;
/// returns that coordinator's address and the answer. `refused` names the
/// call in the final error ("enrollment refused by ..."), `none` says what
/// could not be done when no coordinator answered.
pub async fn first_answer<T, F, Fut>(
    coordinators: &[String],
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
    request_timeout: Option<Duration>,
    (refused, none): (&str, &str),
    mut call: F,
) -> anyhow::Result<(String, T)>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut errors = Vec::new();
    for addr in coordinators {
        let mut endpoint = ferry_certs::tls::endpoint(
            addr,
            ca_pem,
            identity,
            ferry_certs::tls::Expected::Coordinator,
        )
        .with_context(|| format!("coordinator address {addr}"))?
        .connect_timeout(CONNECT_TIMEOUT);
        if let Some(t) = request_timeout {
            endpoint = endpoint.timeout(t);
        }
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{addr}: {e:#}"));
                continue;
            }
        };
        match call(channel).await {
            Ok(answer) => return Ok((addr.clone(), answer)),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                errors.push(format!("{addr}: {}", s.message()));
            }
            Err(s) => bail!("{refused} by {addr}: {}", s.message()),
        }
    }
    bail!("{none}: {}", errors.join("; "))
}
