//! Fuzzes the prost decoding of what crosses an agent session (both
//! directions) and of the deployment reports the coordinator keeps as
//! protobuf bytes: decoding never panics and round-trips.
#![no_main]

use ferry_fuzz::prost_round_trip;
use ferry_proto as pb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prost_round_trip::<pb::internal::AgentMessage>(data);
    prost_round_trip::<pb::internal::CoordinatorMessage>(data);
    prost_round_trip::<pb::internal::DeploymentReport>(data);
    prost_round_trip::<pb::EnrollRequest>(data);
    prost_round_trip::<pb::internal::RaftMessage>(data);
});
