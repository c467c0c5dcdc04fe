//! `ferry approve` and `ferry reject`: decide an approval action. The
//! coordinator checks that the caller may decide it.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{ApproveArgs, Format, GlobalArgs, RejectArgs};
use crate::client;
use crate::output;
use crate::wire;

#[derive(Serialize)]
struct DecidedJson {
    decision: &'static str,
    action_status: String,
    execution_status: String,
}

pub async fn approve(global: &GlobalArgs, args: &ApproveArgs) -> Result<()> {
    decide(
        global,
        pb::DecideRequest {
            request_id: String::new(),
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            action: args.action.clone(),
            decision: pb::ApprovalDecision::Approved.into(),
            comment: args.comment.clone().unwrap_or_default(),
        },
    )
    .await
}

pub async fn reject(global: &GlobalArgs, args: &RejectArgs) -> Result<()> {
    decide(
        global,
        pb::DecideRequest {
            request_id: String::new(),
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            action: args.action.clone(),
            decision: pb::ApprovalDecision::Rejected.into(),
            comment: args.comment.clone(),
        },
    )
    .await
}

async fn decide(global: &GlobalArgs, request: pb::DecideRequest) -> Result<()> {
    let decision = if request.decision() == pb::ApprovalDecision::Approved {
        "approved"
    } else {
        "rejected"
    };
    let mut api = client::connect(global).await?;
    let reply = api.approvals.decide(request).await?.into_inner();
    let action_status = wire::action_status(reply.action_status);
    let execution_status = wire::execution_status(reply.execution_status);
    match global.output {
        Format::Table => output::print(&format!(
            "{decision}: action {action_status}, execution {execution_status}"
        )),
        Format::Json => output::print_json(&DecidedJson {
            decision,
            action_status,
            execution_status,
        }),
    }
}
