//! Generated gRPC types and services for Ferry (`ferry.v1`). Nothing but the
//! generated code lives here; behaviour belongs to the crates that use it.
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("ferry.v1");
}
pub use v1::*;
