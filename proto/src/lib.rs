//! Generated gRPC types and services for Ferry (`ferry.v1`). Nothing but the
//! generated code lives here; behaviour belongs to the crates that use it.
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    // What `tonic::include_proto!` expands to, spelled out so that the
    // messages build without tonic (the `grpc` feature off).
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
}
pub use v1::*;
