//! A Rust client of Ferry's gRPC API (package `ferry.v1`), so that Rust
//! tools need not copy the CLI: [`Api`], one typed client per public
//! service over any transport; [`connect`], a channel over mutual TLS that
//! checks the server is a *coordinator* of the cluster's CA (not merely a
//! holder of one of its certificates); [`Refusal`], a status read for its
//! stable reason and a lint failure's positions; [`request_id`]; [`pages`];
//! and [`wait_for_execution`].
//!
//! ```no_run
//! use ferry_client::{Api, Config, connect, request_id, wait_for_execution};
//! use ferry_proto as pb;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! ferry_certs::install_crypto_provider();
//! let config = Config::from_files("127.0.0.1:7400", "ca.pem", "alice.pem", "alice-key.pem")?;
//! let mut api = Api::new(connect(&config).await?);
//! let started = api
//!     .executions
//!     .start_execution(pb::StartExecutionRequest {
//!         pipeline: "hello".into(),
//!         request_id: request_id(),
//!         ..Default::default()
//!     })
//!     .await?
//!     .into_inner();
//! let done = wait_for_execution(&mut api, "hello", &started.execution_id,
//!     std::time::Duration::from_secs(600)).await?;
//! println!("{:?}", done.status());
//! # Ok(()) }
//! ```
//!
//! It knows nothing of the CLI (flags, output) nor of the coordinator's
//! insides: only the wire protocol and the certificates.

mod api;
mod connect;
mod refusal;
mod wait;

pub use api::{Api, MAX_MESSAGE};
pub use connect::{Config, ConnectError, connect};
pub use ferry_state::Reason;
pub use refusal::{Refusal, Violation};
pub use wait::{WaitError, pages, wait_for_execution};

/// A fresh request id for a write that must not happen twice
/// (`StartExecution`, `Decide`, `StopExecution`, `RetryStage`,
/// `ApplyPipeline`): send the same id with every retry of one request.
pub fn request_id() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_fresh_and_accepted_by_the_api() {
        let (a, b) = (super::request_id(), super::request_id());
        assert_ne!(a, b);
        assert!(ferry_state::requests::check_id(&a).is_ok());
    }
}
