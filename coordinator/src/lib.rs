//! Ferry's coordinator: Raft-replicated cluster state and everything the leader
//! does with it (scheduling, source polling, timers), behind mTLS gRPC services.
pub mod app;
pub mod authz;
pub mod deployments;
pub mod git;
pub mod health;
pub mod http;
pub mod hub;
pub mod leader;
pub mod links;
pub mod member_cert;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod peer;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod views;

pub use server::{CoordinatorConfig, run};
