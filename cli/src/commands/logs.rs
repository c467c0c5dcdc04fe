//! `ferry logs`: copies one action's log to stdout byte for byte, flushing
//! every chunk so `--follow` shows output as the build produces it.
//! `--execution latest` reads the pipeline's newest execution.

use anyhow::Result;
use ferry_proto as pb;

use crate::args::{GlobalArgs, LogsArgs};
use crate::client;
use crate::errors;
use crate::output;

use super::status::resolve_execution;

pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let execution_id = resolve_execution(&mut api, &args.name, &args.execution).await?;
    let mut stream = api
        .executions
        .stream_logs(pb::LogsRequest {
            pipeline: args.name.clone(),
            execution_id,
            action: args.action.clone(),
            follow: args.follow,
        })
        .await?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(errors::mid_stream)? {
        output::write_raw(&chunk.data)?;
    }
    Ok(())
}
