//! Ledger records as the gRPC API (`commons.v1`) carries them. The node
//! builds its answers with these, and the client rebuilds the same messages
//! from the proven bytes to compare with what a node said: one conversion,
//! so the two cannot drift apart.

use commons_types::tx::pb;

use commons_types::Height;

use super::state::{Account, Lease, Settlement, Unbonding};

pub fn account_pb(a: &Account) -> pb::Account {
    pb::Account {
        balance: a.balance,
        nonce: a.nonce,
        bonded: a.bonded,
        unbonding: a
            .unbonding
            .iter()
            .map(|u| pb::Unbonding {
                release_height: u.release.0,
                amount: u.amount,
            })
            .collect(),
        excluded: a.excluded,
        jailed: a.jailed,
    }
}

/// The inverse of [`account_pb`]: the record an answer's account stands for.
pub fn account_from_pb(a: &pb::Account) -> Account {
    Account {
        balance: a.balance,
        nonce: a.nonce,
        bonded: a.bonded,
        unbonding: a
            .unbonding
            .iter()
            .map(|u| Unbonding {
                release: Height(u.release_height),
                amount: u.amount,
            })
            .collect(),
        excluded: a.excluded,
        jailed: a.jailed,
    }
}

pub fn lease_pb(l: &Lease) -> pb::Lease {
    pb::Lease {
        buyer: l.buyer.0.to_vec().into(),
        provider: l.provider.0.to_vec().into(),
        resource: i32::from(l.resource.code()),
        escrow: l.escrow,
        claimed: l.claimed,
        rate_per_block: l.rate_per_block,
        start_height: l.start.0,
        end_height: l.end.0,
    }
}

pub fn settlement_pb(s: &Settlement) -> pb::Settlement {
    pb::Settlement {
        buyer: s.buyer.0.to_vec().into(),
        seller: s.seller.0.to_vec().into(),
        resource: i32::from(s.resource.code()),
        quantity: s.quantity,
        unit_price: s.unit_price,
        marketplace_fee: s.marketplace_fee,
        height: s.height.0,
    }
}
