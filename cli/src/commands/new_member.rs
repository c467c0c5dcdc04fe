//! What an operator runs on a new coordinator member's host before `ferry
//! cluster add` can add it: its certificate, the cluster's TLS files, the
//! package, and its flags with the current members as `--peers` — printed by
//! `ferry cluster add --print-command`, and when the member does not answer.

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::{Result, bail};
use ferry_proto as pb;

/// The steps for member `id` at `address` (HOST:PORT), joining `members`.
pub fn setup(id: u64, address: &str, members: &[pb::MemberView]) -> Result<String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        bail!("--address {address:?}: give HOST:PORT");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.parse::<u16>().is_err() {
        bail!("--address {address:?}: give HOST:PORT");
    }
    if members.iter().any(|m| m.id == id) {
        bail!("member {id} is already in the cluster; pick an id it has not used");
    }
    // A member listens on an IP address; a host name listens on every interface.
    let listen = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        Ok(IpAddr::V4(_)) => format!("{host}:{port}"),
        Err(_) => format!("0.0.0.0:{port}"),
    };
    let mut peers: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.id, m.address))
        .collect();
    peers.push(format!("{id}={address}"));
    let flags = format!(
        "--id {id} --listen {listen} --join --peers {}",
        peers.join(",")
    );
    let version = env!("CARGO_PKG_VERSION");
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "To add member {id} at {address}:\n\n\
         1. Issue its certificate where the cluster's CA is kept (the tls/ folder of `ferry certs init`):\n\n\
         \x20    ferry certs issue coordinator --ca-dir tls --id {id} --san {host} --out tls\n\n\
         2. On {host}, install the package and the cluster's files (the same CA, CA key and\n\
         \x20  secrets key as every member) with its own pair:\n\n\
         \x20    sudo apt install ./ferry-coordinator_{version}_amd64.deb\n\
         \x20    sudo install -o root -g ferry-coordinator -m 0640 tls/ca.pem tls/ca-key.pem tls/secrets.key \\\n\
         \x20      tls/coordinator-{id}.pem tls/coordinator-{id}-key.pem /etc/ferry/tls/\n\n\
         3. Give it these flags in /etc/ferry/coordinator.env, and start it:\n\n\
         \x20    FERRY_COORDINATOR_OPTS=\"{flags}\"\n\n\
         \x20    sudo systemctl enable --now ferry-coordinator\n\n\
         \x20  (without the package: ferry-coordinator {flags} --data-dir DIR --tls-dir DIR)\n\n\
         4. Add it; it joins as a learner and votes once it has caught up:\n\n\
         \x20    ferry cluster add --id {id} --address {address}"
    );
    Ok(out)
}

/// Whether the cluster refused to add a member because it does not answer
/// (nothing was changed), as opposed to any other refusal.
pub fn not_running(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message().contains("does not answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, address: &str) -> pb::MemberView {
        pb::MemberView {
            id,
            address: address.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_command_lists_the_current_members_and_the_new_one_as_peers() {
        let members = [member(1, "10.0.0.1:7400"), member(2, "10.0.0.2:7400")];
        let text = setup(3, "10.0.0.3:7400", &members).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains(
                "FERRY_COORDINATOR_OPTS=\"--id 3 --listen 10.0.0.3:7400 --join --peers \
                 1=10.0.0.1:7400,2=10.0.0.2:7400,3=10.0.0.3:7400\""
            ),
            "{text}"
        );
        assert!(text.contains("--id 3 --san 10.0.0.3 --out tls"), "{text}");
        assert!(
            text.contains("tls/coordinator-3.pem tls/coordinator-3-key.pem"),
            "{text}"
        );
        assert!(
            text.contains("ferry cluster add --id 3 --address 10.0.0.3:7400"),
            "{text}"
        );
    }

    #[test]
    fn a_host_name_listens_everywhere_and_ipv6_keeps_its_brackets() {
        let text = setup(4, "coord4.example:7400", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("--listen 0.0.0.0:7400"), "{text}");
        assert!(text.contains("--san coord4.example"), "{text}");
        let text = setup(4, "[fd00::4]:7400", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("--listen [fd00::4]:7400"), "{text}");
        assert!(text.contains("--san fd00::4"), "{text}");
    }

    #[test]
    fn bad_addresses_and_used_ids_are_refused() {
        for bad in ["10.0.0.3", ":7400", "10.0.0.3:port", "10.0.0.3:70000"] {
            assert!(setup(3, bad, &[]).is_err(), "{bad}");
        }
        let used = setup(1, "10.0.0.3:7400", &[member(1, "10.0.0.1:7400")]);
        assert!(used.is_err_and(|e| e.to_string().contains("already in the cluster")));
    }
}
