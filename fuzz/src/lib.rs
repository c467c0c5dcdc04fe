//! Checks shared by Ferry's fuzz targets: running a YAML reader the way a
//! tokio worker would (on a 2 MiB stack) and asserting what must hold for
//! any input, and decode/encode round trips for wire formats. A failed
//! check panics, which libFuzzer records as a crash with its input.

pub mod archive_oracle;

use std::fmt::Debug;

use ferry_pipeline::Diagnostic;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The stack of a tokio worker thread, where the coordinator parses.
pub const WORKER_STACK: usize = 2 << 20;

/// Runs `read` on the fuzz input (as text, invalid UTF-8 replaced) on a
/// worker-sized stack. Whatever the input: no panic, no stack overflow,
/// every diagnostic positioned at line and column 1 or later, and an
/// accepted document survives a JSON round trip of its model (how the
/// coordinator stores it).
pub fn check_reader<T>(data: &[u8], read: fn(&str) -> Result<T, Vec<Diagnostic>>)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Send + 'static,
{
    let text = String::from_utf8_lossy(data).into_owned();
    let joined = std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || match read(&text) {
            Ok(value) => {
                let json = serde_json::to_vec(&value).expect("the model serializes");
                let back: T = serde_json::from_slice(&json).expect("the model deserializes");
                assert_eq!(value, back, "JSON round trip changed the model");
            }
            Err(diags) => {
                assert!(!diags.is_empty(), "an error without a diagnostic");
                for d in &diags {
                    assert!(d.line >= 1 && d.column >= 1, "unpositioned: {d}");
                }
            }
        })
        .expect("spawn the reader thread")
        .join();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

/// Decodes a prost message; whatever decodes must encode and decode again
/// to the same value.
pub fn prost_round_trip<M: prost::Message + Default + PartialEq>(data: &[u8]) {
    if let Ok(message) = M::decode(data) {
        let bytes = message.encode_to_vec();
        let again = M::decode(bytes.as_slice()).expect("re-encoded message decodes");
        assert!(again == message, "prost round trip changed the message");
    }
}

/// The same for a rust-protobuf (raft-rs) message, compared after one
/// round trip: rust-protobuf may parse an emptied set of unknown fields
/// (`Some({})`) that encodes to nothing and compares unequal to none
/// (seed `raft_command/snapshot-emptied-unknown-fields`).
pub fn protobuf_round_trip<M: protobuf::Message + PartialEq + Debug>(data: &[u8]) {
    if let Ok(message) = M::parse_from_bytes(data) {
        let once = reparse(&message);
        let twice = reparse(&once);
        assert_eq!(twice, once, "protobuf round trip changed the message");
    }
}

fn reparse<M: protobuf::Message>(message: &M) -> M {
    let bytes = message.write_to_bytes().expect("a parsed message encodes");
    M::parse_from_bytes(&bytes).expect("re-encoded message parses")
}

/// The same for a JSON-encoded serde type.
pub fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let bytes = serde_json::to_vec(&value).expect("a decoded value encodes");
        let again: T = serde_json::from_slice(&bytes).expect("re-encoded value decodes");
        assert_eq!(again, value, "JSON round trip changed the value");
    }
}
