//! `ferry token create`: a join token for enrolling agents, and the labels
//! it grants them. Only the token goes to stdout; its expiry and labels go
//! to stderr, with the line to paste on a build machine:
//! `ferry-agent install --coordinator ADDR --token TOKEN --ca-sha256 HEX`,
//! where ADDR is this CLI's `--coordinator` and HEX the sha256 of the CA it
//! trusts (its `--ca`), which the agent pins before it trusts anything.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, TokenCreateArgs};
use crate::client;
use crate::output;
use crate::wire;

#[derive(Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    expires_at: String,
    labels: &'a [String],
    ca_sha256: &'a str,
    install_command: &'a str,
}

/// The sha256 (hex) of the DER of the first certificate in `pem`.
fn ca_sha256(pem: &str) -> Result<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow::anyhow!("--ca holds no certificate"))?
        .map_err(|e| anyhow::anyhow!("--ca cannot be read: {e}"))?;
    Ok(ferry_certs::fingerprint(der.as_ref()))
}

/// The `ferry-agent install` line for `token`.
fn install_command(
    coordinators: &[String],
    token: &str,
    ca_sha256: &str,
    labels: &[String],
) -> String {
    let mut line = format!(
        "ferry-agent install --coordinator {} --token {token} --ca-sha256 {ca_sha256}",
        coordinators.join(",")
    );
    if !labels.is_empty() {
        line.push_str(&format!(" --labels {}", labels.join(",")));
    }
    line
}

pub async fn create(global: &GlobalArgs, args: &TokenCreateArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let reply = api
        .access
        .create_token(pb::CreateTokenRequest {
            ttl: Some(wire::duration(args.ttl)),
            uses: args.uses,
            labels: args.labels.clone(),
        })
        .await?
        .into_inner();
    let ca_sha256 = ca_sha256(&client::load_ca(global.ca.as_deref())?)?;
    let install = install_command(&global.coordinator, &reply.token, &ca_sha256, &reply.labels);
    match global.output {
        Format::Table => {
            eprintln!(
                "token valid for {} enrollment(s) until {}; {}",
                args.uses,
                wire::time(reply.expires_at.as_ref()),
                if reply.labels.is_empty() {
                    "agents are bound to the --labels they ask for".to_string()
                } else {
                    format!("grants labels {}", reply.labels.join(","))
                }
            );
            eprintln!("on a build machine (with the ferry-agent package), run:\n  {install}");
            output::print(&reply.token)
        }
        Format::Json => output::print_json(&TokenJson {
            token: &reply.token,
            expires_at: wire::time(reply.expires_at.as_ref()),
            labels: &reply.labels,
            ca_sha256: &ca_sha256,
            install_command: &install,
        }),
    }
}
