//! `ferry token create`: a join token for enrolling agents, and the labels
//! it grants them. Only the token goes to stdout; its expiry and labels go
//! to stderr.

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
            output::print(&reply.token)
        }
        Format::Json => output::print_json(&TokenJson {
            token: &reply.token,
            expires_at: wire::time(reply.expires_at.as_ref()),
            labels: &reply.labels,
        }),
    }
}
