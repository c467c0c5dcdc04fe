//! `ferry run NAME`: starts an execution and prints only its id, so scripts
//! can capture it (`id=$(ferry run hello)`). With `--wait` it follows the
//! execution to its end (a live table on a terminal, the final table or
//! JSON otherwise) and exits with its outcome.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, RunArgs};
use crate::client;
use crate::commands::status::{self, Show};
use crate::output;

#[derive(Serialize)]
struct StartedJson<'a> {
    execution_id: &'a str,
    revision: &'a str,
    pipeline_version: u64,
}

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<ExitCode> {
    let mut api = client::connect(global).await?;
    let reply = api
        .executions
        .start_execution(pb::StartExecutionRequest {
            request_id: String::new(),
            pipeline: args.name.clone(),
            revision: args.revision.clone().unwrap_or_default(),
            variables: args.vars.iter().cloned().collect(),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Table => output::print(&reply.execution_id)?,
        // With --wait the final execution (which has its id) is the JSON.
        Format::Json if args.wait => {}
        Format::Json => output::print_json(&StartedJson {
            execution_id: &reply.execution_id,
            revision: &reply.revision,
            pipeline_version: reply.pipeline_version,
        })?,
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let show = if global.output == Format::Table && std::io::stdout().is_terminal() {
        Show::Live
    } else {
        Show::Last
    };
    let request = pb::GetExecutionRequest {
        pipeline: args.name.clone(),
        execution_id: reply.execution_id.clone(),
    };
    status::follow(&mut api, request, global.output, show).await
}
