//! Consensus: a raft-rs `RawNode` driven on its own thread, its durable
//! storage, and the handle the rest of the coordinator proposes through.

mod logger;
mod node;
#[cfg(test)]
mod node_tests;
pub mod storage;
pub mod transport;

pub use node::{
    MembershipChange, NodeConfig, NodeError, ProposeError, RaftHandle, RaftStatus, StartError,
    start,
};
pub use transport::PeerTls;
