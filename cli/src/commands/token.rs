//! `ferry token create`: a join token for enrolling agents. Only the token
//! goes to stdout; its expiry goes to stderr.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, TokenCreateArgs};
use crate::client;
use crate::output;

#[derive(Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    expires_at: &'a str,
}

pub async fn create(global: &GlobalArgs, args: &TokenCreateArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let reply = api
        .access
        .create_token(pb::CreateTokenRequest {
            ttl_seconds: args.ttl.as_secs(),
            uses: args.uses,
        })
        .await?
        .into_inner();
    match global.output {
        Format::Table => {
            eprintln!(
                "token valid for {} enrollment(s) until {}",
                args.uses, reply.expires_at
            );
            output::print(&reply.token)
        }
        Format::Json => output::print_json(&TokenJson {
            token: &reply.token,
            expires_at: &reply.expires_at,
        }),
    }
}
