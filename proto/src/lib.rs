//! Generated gRPC types and services for Ferry's wire protocol: every RPC
//! between the CLI, the coordinators and the agents, and ([`convert`]) the
//! one conversion between each domain type and its wire form. Behaviour
//! belongs to the crates that use it.
//!
//! Two protobuf packages, one Rust module each (prost writes one file per
//! package), laid out like the packages so that prost's relative paths
//! between them (`super::super::v1::…`) resolve:
//!
//! - `ferry.v1` ([`v1`], re-exported at the crate root, so `ferry_proto::X`):
//!   the public API, one service per resource (`Pipelines`, `Executions`,
//!   `Approvals`, `Agents`, `Environments`, `Deployments`, `Artifacts`,
//!   `Secrets`, `Access`, `Cluster`, `Enrollment`), e.g.
//!   `ferry_proto::pipelines_client::PipelinesClient`.
//! - `ferry.internal.v1` ([`internal::v1`], re-exported as
//!   `ferry_proto::internal::X`): what only members of a cluster speak to
//!   each other, `AgentSession`, `ArtifactPeer` and `RaftPeer`, and their
//!   messages. It uses a few public types (`Chunk`, `MemberRole`), never
//!   the other way round.
//!
//! The well-known types the API uses (`google.protobuf.Timestamp`,
//! `Duration`) are not generated here: prost-build maps `.google.protobuf`
//! to the `prost-types` crate (`prost_types::Timestamp`).
pub mod convert;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    //! Package `ferry.v1`: the public API.
    // What `tonic::include_proto!` expands to, spelled out so that the
    // messages build without tonic (the `grpc` feature off).
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
}
pub use v1::*;

/// The encoded `FileDescriptorSet` of the public package `ferry.v1` and
/// the files it imports: what gRPC server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferry_v1_descriptor.bin"));

#[allow(clippy::all, clippy::pedantic)]
pub mod internal {
    //! Package `ferry.internal.v1`: the services internal to a cluster.
    pub mod v1 {
        //! Package `ferry.internal.v1`.
        include!(concat!(env!("OUT_DIR"), "/ferry.internal.v1.rs"));
    }
    pub use v1::*;
}
