//! `ferry approve` and `ferry reject`: decide an approval action. The
//! coordinator checks that the caller may decide it.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{ApproveArgs, Format, GlobalArgs, RejectArgs};
use crate::client;
use crate::output;

#[derive(Serialize)]
struct DecidedJson<'a> {
    decision: &'a str,
    action_status: &'a str,
    execution_status: &'a str,
}

pub async fn approve(global: &GlobalArgs, args: &ApproveArgs) -> Result<()> {
    decide(
        global,
        pb::DecideRequest {
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            action: args.action.clone(),
            approve: true,
            comment: args.comment.clone().unwrap_or_default(),
        },
    )
    .await
}

pub async fn reject(global: &GlobalArgs, args: &RejectArgs) -> Result<()> {
    decide(
        global,
        pb::DecideRequest {
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            action: args.action.clone(),
            approve: false,
            comment: args.comment.clone(),
        },
    )
    .await
}

async fn decide(global: &GlobalArgs, request: pb::DecideRequest) -> Result<()> {
    let decision = if request.approve {
        "approved"
    } else {
        "rejected"
    };
    let mut api = client::connect(global).await?;
    let reply = api.approvals.decide(request).await?.into_inner();
    match global.output {
        Format::Table => output::print(&format!(
            "{decision}: action {}, execution {}",
            reply.action_status, reply.execution_status
        )),
        Format::Json => output::print_json(&DecidedJson {
            decision,
            action_status: &reply.action_status,
            execution_status: &reply.execution_status,
        }),
    }
}
