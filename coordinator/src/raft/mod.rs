//! Consensus: a raft-rs `RawNode` driven on its own thread, its durable
//! storage, and the handle the rest of the coordinator proposes through.
//!
//! - `handle.rs`: [`RaftHandle`], proposals, forwarding to the leader, reads.
//! - `start.rs`: opening storage, bootstrapping or joining, starting the thread.
//! - `driver.rs`: the thread's loop, one raft-rs Ready at a time.
//! - `apply.rs`: committed entries into the state machine.
//! - `membership.rs`: membership changes, proposed and applied.
//! - `snapshot.rs`: taking, installing and serving snapshots.
//! - `restore.rs`: a new cluster's data dir from a backup.
//! - `storage.rs`, `transport.rs`: the log on disk and messages to peers.

mod apply;
mod driver;
mod handle;
mod logger;
mod membership;
#[cfg(test)]
mod node_tests;
pub mod restore;
mod snapshot;
mod start;
pub mod storage;
pub mod transport;

pub use driver::NodeError;
pub use handle::{ProposeError, RaftHandle, RaftStatus};
pub use membership::MembershipChange;
pub use start::{NodeConfig, StartError, start};
pub use transport::PeerTls;
