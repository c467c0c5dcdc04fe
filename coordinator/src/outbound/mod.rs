//! Outgoing HTTP: the client notifications are delivered with (`client`),
//! reaching only where the egress policy allows (`egress`). Inbound HTTP
//! (webhooks, the console) is `crate::http`'s; the two share nothing.

pub mod client;
pub mod egress;

pub use client::{SendError, Sender, signature};
