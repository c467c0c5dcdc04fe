//! Fuzzes the decoding of what coordinators exchange and log through Raft:
//! raft-rs messages (rust-protobuf, as `service/peer.rs` and
//! `raft/storage.rs` read them) and the JSON of Raft entries: as the
//! pipeline-crate types that commands carry (`Pipeline`, execution state)
//! and as `ferry_state::Command` itself (its own crate since issue 22, so
//! it builds under the fuzzer without the coordinator's stack).
#![no_main]

use ferry_fuzz::{json_round_trip, protobuf_round_trip};
use libfuzzer_sys::fuzz_target;
use raft_proto::eraftpb;

fuzz_target!(|data: &[u8]| {
    protobuf_round_trip::<eraftpb::Message>(data);
    protobuf_round_trip::<eraftpb::Entry>(data);
    protobuf_round_trip::<eraftpb::ConfChange>(data);
    protobuf_round_trip::<eraftpb::ConfChangeV2>(data);
    protobuf_round_trip::<eraftpb::Snapshot>(data);
    protobuf_round_trip::<eraftpb::HardState>(data);
    json_round_trip::<ferry_pipeline::Pipeline>(data);
    json_round_trip::<ferry_pipeline::execution::ExecutionState>(data);
    if let Ok(command) = ferry_state::Command::decode(data) {
        let again =
            ferry_state::Command::decode(&command.encode().expect("a decoded command encodes"))
                .expect("an encoded command decodes");
        assert_eq!(again, command, "JSON round trip changed the command");
    }
});
