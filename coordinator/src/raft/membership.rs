//! Membership changes, one at a time: how a [`MembershipChange`] becomes a
//! Raft `ConfChange` entry, and how a committed one changes the voters, the
//! members' addresses and the replicated membership.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry};

use super::driver::{Driver, NodeError};
use super::handle::ProposeError;
use ferry_state::{Output, Rejection};

/// A change of Raft membership, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member serving gRPC at this address; it catches up
    /// without counting towards any quorum.
    AddLearner(String),
    /// Make a learner a voter.
    Promote,
    /// Remove a member.
    Remove,
}

impl MembershipChange {
    /// The entry that proposes this change for member `id`; `address_of`
    /// gives the address already known for a member.
    pub(super) fn conf_change(
        self,
        id: u64,
        address_of: impl FnOnce(u64) -> Option<String>,
    ) -> ConfChange {
        let mut cc = ConfChange {
            node_id: id,
            ..Default::default()
        };
        match self {
            Self::AddLearner(a) => {
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.context = a.into_bytes().into();
            }
            Self::Promote => {
                cc.set_change_type(ConfChangeType::AddNode);
                // The address is already known; carried again so the entry stands alone.
                if let Some(a) = address_of(id) {
                    cc.context = a.into_bytes().into();
                }
            }
            Self::Remove => cc.set_change_type(ConfChangeType::RemoveNode),
        }
        cc
    }
}

impl Driver {
    pub(super) fn apply_conf_change(
        &mut self,
        entry: &Entry,
    ) -> Result<Result<Output, ProposeError>, NodeError> {
        if entry.index <= self.old_conf_changes_until {
            tracing::warn!(
                index = entry.index,
                "a membership change of the cluster this one was forced out of: not applied"
            );
            return Ok(Ok(Output::None));
        }
        let cc = ConfChange::parse_from_bytes(entry.get_data()).map_err(|source| {
            NodeError::ConfChange {
                index: entry.index,
                source,
            }
        })?;
        let cs = match self.node.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(e) => {
                let why =
                    Rejection::FailedPrecondition(format!("membership change not applied: {e}"));
                return Ok(Err(ProposeError::Rejected(why)));
            }
        };
        self.store.set_conf_state(&cs)?;
        let id = cc.node_id;
        let address = match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let known = self
                    .addresses
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned();
                match (cc.get_context(), known) {
                    // A promotion may carry no address; keep the one we have.
                    ([], Some(known)) => Some(known),
                    (context, _) => Some(String::from_utf8_lossy(context).into_owned()),
                }
            }
            ConfChangeType::RemoveNode => None,
        };
        {
            let mut a = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            match &address {
                Some(addr) => {
                    a.insert(id, addr.clone());
                }
                None => {
                    a.remove(&id);
                }
            }
        }
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply_membership(id, address.clone());
        if address.is_none() {
            self.transport.forget(id);
            if id == self.id {
                tracing::warn!("this member was removed from the cluster; it stops serving");
                self.removed = true;
            }
        }
        tracing::info!(member = id, ?address, voters = ?cs.voters, "membership changed");
        Ok(Ok(Output::None))
    }
}
