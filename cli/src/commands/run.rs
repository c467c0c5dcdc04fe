//! `ferry run NAME`: starts an execution and prints only its id, so scripts
//! can capture it (`id=$(ferry run hello)`).

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, RunArgs};
use crate::client;
use crate::output;

#[derive(Serialize)]
struct StartedJson<'a> {
    execution_id: &'a str,
    revision: &'a str,
    pipeline_version: u64,
}

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let reply = api
        .executions
        .start_execution(pb::StartExecutionRequest {
            pipeline: args.name.clone(),
            revision: args.revision.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Table => output::print(&reply.execution_id),
        Format::Json => output::print_json(&StartedJson {
            execution_id: &reply.execution_id,
            revision: &reply.revision,
            pipeline_version: reply.pipeline_version,
        }),
    }
}
