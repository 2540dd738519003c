//! Typed transactions: a `SignedTx` whose body decoded into a [`TxBody`] with
//! every field checked for shape (key lengths, known enums, non-zero amounts).
//! What depends on state (balances, nonces, existing trades) is checked at
//! execution.

use commons_types::tx::{SignedTx, pb};
use commons_types::{PublicKey, limits as type_limits};

use crate::TxError;
use crate::ledger::state::Resource;

/// A decoded transaction body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    pub chain_id: String,
    pub nonce: u64,
    pub fee: u64,
    pub action: Action,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Transfer {
        to: PublicKey,
        amount: u64,
    },
    Bond {
        amount: u64,
    },
    Unbond {
        amount: u64,
    },
    /// Signed by buyer (first, pays the fee) and seller.
    Settle {
        marketplace: PublicKey,
        trade_id: u64,
        buyer: PublicKey,
        seller: PublicKey,
        resource: Resource,
        quantity: u64,
        unit_price: u64,
        marketplace_fee: u64,
    },
    OpenLease {
        provider: PublicKey,
        resource: Resource,
        escrow: u64,
        rate_per_block: u64,
        duration_blocks: u64,
    },
    Claim {
        lease_id: u64,
        amount: u64,
    },
    CloseLease {
        lease_id: u64,
    },
    Propose {
        content: Vec<u8>,
        deposit: u64,
    },
    Deposit {
        proposal_id: u64,
        amount: u64,
    },
    Vote {
        proposal_id: u64,
        options: Vec<(u32, u32)>,
    },
    /// The consensus crate's encoding of an `Evidence` value.
    Evidence {
        evidence: Vec<u8>,
    },
}

impl Action {
    /// How many signatures the action requires (the fee payer included).
    pub fn signers_needed(&self) -> usize {
        match self {
            Action::Settle { .. } => 2,
            _ => 1,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
            Action::Bond { .. } => "bond",
            Action::Unbond { .. } => "unbond",
            Action::Settle { .. } => "settle",
            Action::OpenLease { .. } => "open_lease",
            Action::Claim { .. } => "claim",
            Action::CloseLease { .. } => "close_lease",
            Action::Propose { .. } => "propose",
            Action::Deposit { .. } => "deposit",
            Action::Vote { .. } => "vote",
            Action::Evidence { .. } => "evidence",
        }
    }
}

fn key(bytes: &[u8], field: &'static str) -> Result<PublicKey, TxError> {
    PublicKey::from_slice(bytes)
        .map_err(|_| TxError::Malformed(format!("{field} must be a 32-byte public key")))
}

fn positive(v: u64, field: &'static str) -> Result<u64, TxError> {
    if v == 0 {
        Err(TxError::InvalidAction(format!("{field} must be positive")))
    } else {
        Ok(v)
    }
}

fn resource(code: i32) -> Result<Resource, TxError> {
    Resource::from_code(code)
        .ok_or_else(|| TxError::InvalidAction(format!("unknown resource {code}")))
}

/// Decodes and shape-checks the body of `tx`.
pub fn decode_body(tx: &SignedTx) -> Result<TxBody, TxError> {
    let body = tx.decode_body()?;
    if body.chain_id.len() > type_limits::MAX_CHAIN_ID_BYTES {
        return Err(TxError::Malformed("chain id too long".into()));
    }
    let kind = body
        .action
        .and_then(|a| a.kind)
        .ok_or_else(|| TxError::Malformed("no action".into()))?;
    use pb::action::Kind;
    let action = match kind {
        Kind::Transfer(t) => Action::Transfer {
            to: key(&t.to, "to")?,
            amount: positive(t.amount, "amount")?,
        },
        Kind::Bond(b) => Action::Bond {
            amount: positive(b.amount, "amount")?,
        },
        Kind::Unbond(u) => Action::Unbond {
            amount: positive(u.amount, "amount")?,
        },
        Kind::Settle(s) => Action::Settle {
            marketplace: key(&s.marketplace, "marketplace")?,
            trade_id: s.trade_id,
            buyer: key(&s.buyer, "buyer")?,
            seller: key(&s.seller, "seller")?,
            resource: resource(s.resource)?,
            quantity: positive(s.quantity, "quantity")?,
            unit_price: s.unit_price,
            marketplace_fee: s.marketplace_fee,
        },
        Kind::OpenLease(l) => Action::OpenLease {
            provider: key(&l.provider, "provider")?,
            resource: resource(l.resource)?,
            escrow: positive(l.escrow, "escrow")?,
            rate_per_block: positive(l.rate_per_block, "rate_per_block")?,
            duration_blocks: positive(l.duration_blocks, "duration_blocks")?,
        },
        Kind::Claim(c) => Action::Claim {
            lease_id: c.lease_id,
            amount: positive(c.amount, "amount")?,
        },
        Kind::CloseLease(c) => Action::CloseLease {
            lease_id: c.lease_id,
        },
        Kind::Propose(p) => Action::Propose {
            content: p.content.to_vec(),
            deposit: p.deposit,
        },
        Kind::Deposit(d) => Action::Deposit {
            proposal_id: d.proposal_id,
            amount: positive(d.amount, "amount")?,
        },
        Kind::Vote(v) => {
            if v.options.len() > 4 {
                return Err(TxError::InvalidAction(format!(
                    "a vote has at most 4 weighted options, got {}",
                    v.options.len()
                )));
            }
            Action::Vote {
                proposal_id: v.proposal_id,
                options: v
                    .options
                    .iter()
                    .map(|o| (o.option, o.weight_permille))
                    .collect(),
            }
        }
        Kind::Evidence(e) => Action::Evidence {
            evidence: e.evidence.to_vec(),
        },
    };
    Ok(TxBody {
        chain_id: body.chain_id,
        nonce: body.nonce,
        fee: body.fee,
        action,
    })
}
