//! Starts a pipeline with a request id, retries the start once with the
//! same id (as a client that lost the answer would), and waits for the
//! execution to end; a refusal is printed with its reason.
//!
//! ```sh
//! cargo run -p ferry-client --example start_and_wait -- \
//!     127.0.0.1:7400 ca.pem alice.pem alice-key.pem hello
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use ferry_client::{Api, Config, Refusal, connect, request_id, wait_for_execution};
use ferry_proto as pb;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ferry_certs::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, ca, cert, key, pipeline] = args.as_slice() else {
        bail!("usage: start_and_wait ADDRESS CA CERT KEY PIPELINE");
    };
    let config = Config::from_files(address, ca, cert, key)?;
    let mut api = Api::new(connect(&config).await?);
    let request = pb::StartExecutionRequest {
        pipeline: pipeline.clone(),
        request_id: request_id(),
        ..Default::default()
    };
    let started = match api.executions.start_execution(request.clone()).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let refusal = Refusal::of(&status);
            bail!("refused ({}): {}", refusal.reason, refusal.message);
        }
    };
    // The same request again: the same execution, not a second one.
    let again = api
        .executions
        .start_execution(request)
        .await
        .context("repeating the start")?
        .into_inner();
    assert_eq!(again.execution_id, started.execution_id);
    println!("started {} at {}", started.execution_id, started.revision);
    let done = wait_for_execution(
        &mut api,
        pipeline,
        &started.execution_id,
        Duration::from_secs(3600),
    )
    .await?;
    println!("{}: {:?}", done.execution_id, done.status());
    Ok(())
}
