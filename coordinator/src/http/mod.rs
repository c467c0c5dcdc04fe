//! The coordinator's HTTPS side, beside the gRPC API: git webhooks that
//! start pipelines (`hooks`, over the pure formats of `webhook`), the
//! listener that serves them (`server`), the coordinator's sink over `ops`
//! (`sink`), and the web console (`console`). Inbound only: outgoing HTTP
//! (notifications) is `crate::outbound`'s.
//!
//! Wiring: build the TLS config with
//! `ferry_certs::tls::https_server_config(member cert, key)` (no client
//! certificates), the app with [`hooks::router`] over a [`hooks::HookSink`],
//! and run [`server::serve`] on its own listener ([`server::serve_until`]
//! to stop it gracefully).

pub mod console;
pub mod hooks;
pub mod server;
pub mod sink;
pub mod webhook;

pub use hooks::{HookAnswer, HookSink, router};
pub use server::{HttpLimits, serve, serve_until};
pub use webhook::{GitPush, HookEvent, RefKind};
