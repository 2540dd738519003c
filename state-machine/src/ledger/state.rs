//! The ledger's records in the Merkle store: their keys and canonical
//! encodings. Every value is encoded with `commons_types::codec`, so equal
//! state gives equal bytes, and so equal roots, on every machine.
//!
//! Key layout (a one-byte tag, then fixed-width fields, big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `a` ‖ account (32) | [`Account`] |
//! | `s` ‖ marketplace (32) ‖ trade id (8) | [`Settlement`] |
//! | `l` ‖ lease id (8) | [`Lease`] |
//! | `u` ‖ height (8) | accounts with an unbonding maturing at that height |
//! | `x` ‖ height (8) | leases expiring at that height |
//! | `m` ‖ name | ledger-wide counters: treasury, supply, next lease id, validators |

use commons_types::codec::{Reader, Writer};
use commons_types::{Height, PublicKey, TypesError};

use crate::ledger::limits;

pub mod key {
    use commons_types::{Height, PublicKey};

    pub fn account(id: &PublicKey) -> Vec<u8> {
        tagged(b'a', &[&id.0])
    }

    pub fn settlement(marketplace: &PublicKey, trade_id: u64) -> Vec<u8> {
        tagged(b's', &[&marketplace.0, &trade_id.to_be_bytes()])
    }

    pub fn lease(id: u64) -> Vec<u8> {
        tagged(b'l', &[&id.to_be_bytes()])
    }

    pub fn unbonding_due(height: Height) -> Vec<u8> {
        tagged(b'u', &[&height.0.to_be_bytes()])
    }

    pub fn leases_due(height: Height) -> Vec<u8> {
        tagged(b'x', &[&height.0.to_be_bytes()])
    }

    pub const TREASURY: &[u8] = b"mtreasury";
    pub const SUPPLY: &[u8] = b"msupply";
    pub const NEXT_LEASE_ID: &[u8] = b"mnext-lease-id";
    pub const PARAMS: &[u8] = b"mparams";
    pub const CHAIN_ID: &[u8] = b"mchain-id";
    /// The validator set consensus runs with now.
    pub const VALIDATORS: &[u8] = b"mvalidators";
    /// The validator set decided by governance or slashing, waiting for the
    /// next epoch boundary.
    pub const NEXT_VALIDATORS: &[u8] = b"mnext-validators";

    fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
        key.push(tag);
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }
}

/// An unbonding in flight: `amount` returns to the balance at `release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unbonding {
    pub release: Height,
    pub amount: u64,
}

/// An account, keyed by its ed25519 public key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// Stake that gives voting power in the DAO.
    pub bonded: u64,
    pub unbonding: Vec<Unbonding>,
    /// Excluded by a DAO vote: cannot send, settle or claim.
    pub excluded: bool,
    /// Jailed for equivocation: its stake was slashed and it left the
    /// validator set.
    pub jailed: bool,
}

impl Account {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(48 + 16 * self.unbonding.len());
        w.u64(self.balance).u64(self.nonce).u64(self.bonded);
        w.len(self.unbonding.len());
        for u in &self.unbonding {
            w.u64(u.release.0).u64(u.amount);
        }
        w.bool(self.excluded).bool(self.jailed);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Account, TypesError> {
        let mut r = Reader::new(bytes, "account");
        let balance = r.u64()?;
        let nonce = r.u64()?;
        let bonded = r.u64()?;
        let n = r.len(limits::MAX_UNBONDING_ENTRIES, 16)?;
        let mut unbonding = Vec::with_capacity(n);
        for _ in 0..n {
            unbonding.push(Unbonding {
                release: Height(r.u64()?),
                amount: r.u64()?,
            });
        }
        let excluded = r.bool()?;
        let jailed = r.bool()?;
        r.finish()?;
        Ok(Account {
            balance,
            nonce,
            bonded,
            unbonding,
            excluded,
            jailed,
        })
    }

    /// Everything the account holds: spendable, bonded and unbonding.
    pub fn holdings(&self) -> u128 {
        u128::from(self.balance)
            + u128::from(self.bonded)
            + self
                .unbonding
                .iter()
                .map(|u| u128::from(u.amount))
                .sum::<u128>()
    }
}

/// Kinds of resource traded, with their metering unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// GPU-seconds.
    Compute,
    /// GB-hours.
    Storage,
    /// Watt-hours.
    Energy,
}

impl Resource {
    pub fn code(self) -> u8 {
        match self {
            Resource::Compute => 1,
            Resource::Storage => 2,
            Resource::Energy => 3,
        }
    }

    pub fn from_code(code: i32) -> Option<Resource> {
        match code {
            1 => Some(Resource::Compute),
            2 => Some(Resource::Storage),
            3 => Some(Resource::Energy),
            _ => None,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Resource::Compute => "GPU-s",
            Resource::Storage => "GB-h",
            Resource::Energy => "Wh",
        }
    }
}

/// A settled trade, kept so the same `(marketplace, trade_id)` can never
/// settle twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub buyer: PublicKey,
    pub seller: PublicKey,
    pub resource: Resource,
    pub quantity: u64,
    pub unit_price: u64,
    pub marketplace_fee: u64,
    pub height: Height,
}

impl Settlement {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(105);
        w.key(&self.buyer)
            .key(&self.seller)
            .u8(self.resource.code());
        w.u64(self.quantity)
            .u64(self.unit_price)
            .u64(self.marketplace_fee);
        w.u64(self.height.0);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Settlement, TypesError> {
        let mut r = Reader::new(bytes, "settlement");
        let buyer = r.key()?;
        let seller = r.key()?;
        let resource = decode_resource(&mut r)?;
        let s = Settlement {
            buyer,
            seller,
            resource,
            quantity: r.u64()?,
            unit_price: r.u64()?,
            marketplace_fee: r.u64()?,
            height: Height(r.u64()?),
        };
        r.finish()?;
        Ok(s)
    }
}

fn decode_resource(r: &mut Reader<'_>) -> Result<Resource, TypesError> {
    let code = r.u8()?;
    Resource::from_code(i32::from(code)).ok_or_else(|| TypesError::Decode {
        what: "resource",
        reason: format!("unknown resource code {code}"),
    })
}

/// An escrow from a buyer to a provider, claimed against metered usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub buyer: PublicKey,
    pub provider: PublicKey,
    pub resource: Resource,
    /// Funds still held in escrow.
    pub escrow: u64,
    /// Funds the provider has claimed so far.
    pub claimed: u64,
    /// The most the provider may have claimed per elapsed block.
    pub rate_per_block: u64,
    pub start: Height,
    /// The lease expires at the start of this height.
    pub end: Height,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(113);
        w.key(&self.buyer)
            .key(&self.provider)
            .u8(self.resource.code());
        w.u64(self.escrow)
            .u64(self.claimed)
            .u64(self.rate_per_block);
        w.u64(self.start.0).u64(self.end.0);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Lease, TypesError> {
        let mut r = Reader::new(bytes, "lease");
        let buyer = r.key()?;
        let provider = r.key()?;
        let resource = decode_resource(&mut r)?;
        let lease = Lease {
            buyer,
            provider,
            resource,
            escrow: r.u64()?,
            claimed: r.u64()?,
            rate_per_block: r.u64()?,
            start: Height(r.u64()?),
            end: Height(r.u64()?),
        };
        r.finish()?;
        Ok(lease)
    }
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, TypesError> {
    let mut r = Reader::new(bytes, what);
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

/// A list of account ids (the unbonding index of one height).
pub fn encode_keys(keys: &[PublicKey]) -> Vec<u8> {
    let mut w = Writer::with_capacity(4 + 32 * keys.len());
    w.len(keys.len());
    for k in keys {
        w.key(k);
    }
    w.finish()
}

pub fn decode_keys(bytes: &[u8]) -> Result<Vec<PublicKey>, TypesError> {
    let mut r = Reader::new(bytes, "account list");
    let n = r.len(limits::MAX_DUE_PER_HEIGHT, 32)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(r.key()?);
    }
    r.finish()?;
    Ok(keys)
}

/// A list of ids (the lease-expiry index of one height).
pub fn encode_ids(ids: &[u64]) -> Vec<u8> {
    let mut w = Writer::with_capacity(4 + 8 * ids.len());
    w.len(ids.len());
    for id in ids {
        w.u64(*id);
    }
    w.finish()
}

pub fn decode_ids(bytes: &[u8]) -> Result<Vec<u64>, TypesError> {
    let mut r = Reader::new(bytes, "id list");
    let n = r.len(limits::MAX_DUE_PER_HEIGHT, 8)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.u64()?);
    }
    r.finish()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let account = Account {
            balance: 5,
            nonce: 2,
            bonded: 9,
            unbonding: vec![Unbonding {
                release: Height(40),
                amount: 3,
            }],
            excluded: true,
            jailed: false,
        };
        assert_eq!(Account::decode(&account.encode()).unwrap(), account);
        assert_eq!(account.holdings(), 17);
        let lease = Lease {
            buyer: PublicKey([1; 32]),
            provider: PublicKey([2; 32]),
            resource: Resource::Storage,
            escrow: 100,
            claimed: 4,
            rate_per_block: 2,
            start: Height(3),
            end: Height(53),
        };
        assert_eq!(Lease::decode(&lease.encode()).unwrap(), lease);
        let s = Settlement {
            buyer: PublicKey([1; 32]),
            seller: PublicKey([2; 32]),
            resource: Resource::Energy,
            quantity: 7,
            unit_price: 3,
            marketplace_fee: 1,
            height: Height(8),
        };
        assert_eq!(Settlement::decode(&s.encode()).unwrap(), s);
        assert_eq!(
            decode_keys(&encode_keys(&[PublicKey([4; 32])])).unwrap(),
            vec![PublicKey([4; 32])]
        );
        assert_eq!(decode_ids(&encode_ids(&[1, 2])).unwrap(), vec![1, 2]);
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let account = Account::default().encode();
        assert!(Account::decode(&account[..account.len() - 1]).is_err());
        let mut extra = account.clone();
        extra.push(0);
        assert!(Account::decode(&extra).is_err());
        let mut bad_resource = Settlement {
            buyer: PublicKey([1; 32]),
            seller: PublicKey([2; 32]),
            resource: Resource::Energy,
            quantity: 7,
            unit_price: 3,
            marketplace_fee: 1,
            height: Height(8),
        }
        .encode();
        bad_resource[64] = 9;
        assert!(Settlement::decode(&bad_resource).is_err());
    }
}
