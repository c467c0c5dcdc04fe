//! Ferry's action engine: runs one prepared attempt of an action to its end,
//! behind one interface ([`runner::ActionRunner`]). Build and test actions
//! run in Docker containers ([`executor`]); deploy actions roll an artifact
//! out to target hosts over SSH or a remote Docker Engine ([`deploy`]).
//! Artifacts live in a content-addressed [`store`] (build caches in a
//! [`cache_store`] of their own), logs are masked
//! (`ferry_pipeline::mask`), and [`local`] drives the same engine without a cluster for
//! `ferry exec`.
//!
//! The engine knows nothing about coordinators, the agent protocol or
//! certificates: the agent turns assignments into [`runner::ActionSpec`]s
//! (`ferry_pipeline::spec`) and results back into messages.

pub mod archive;
pub mod cache_store;
pub mod deploy;
pub mod executor;
pub mod junit;
pub mod local;
pub mod runner;
pub mod source;
pub mod ssh;
pub mod store;
pub mod unpack;
