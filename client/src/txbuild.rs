//! Building transactions: the body, a fee that covers the encoded size, and
//! signatures; and the partially signed file that carries a two-party
//! settlement from one signer's machine to the other's.

use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Domain, PublicKey, SecretKey, Signature, signing_bytes};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// The fee schedule in force (from the verified parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeSchedule {
    pub fee_base: u64,
    pub fee_per_byte: u64,
}

impl FeeSchedule {
    /// `fee_base + fee_per_byte × size`, as the ledger computes it.
    pub fn required(&self, encoded_len: usize) -> u64 {
        self.fee_base
            .saturating_add(self.fee_per_byte.saturating_mul(encoded_len as u64))
    }
}

/// Encoded size of a transaction with `body` and `signers` signatures.
fn encoded_len(body: &[u8], signers: usize) -> usize {
    SignedTx {
        body: body.to_vec(),
        signatures: vec![(PublicKey([0; 32]), Signature([0; 64])); signers],
    }
    .encode()
    .len()
}

/// The body of a transaction paying the least fee that covers its own
/// encoded size with `signers` signatures (or `fee` if given). The fee's
/// varint length changes the size, so this iterates to a fixed point.
pub fn body(
    chain: &ChainId,
    nonce: u64,
    fee: Option<u64>,
    schedule: FeeSchedule,
    action: pb::action::Kind,
    signers: usize,
) -> Vec<u8> {
    let make = |fee: u64| {
        pb::TxBody {
            chain_id: chain.to_string(),
            nonce,
            fee,
            action: Some(pb::Action {
                kind: Some(action.clone()),
            }),
        }
        .encode_to_vec()
    };
    if let Some(fee) = fee {
        return make(fee);
    }
    let mut fee = schedule.required(0);
    // The size grows by at most 10 bytes (a u64 varint), so a few rounds
    // always reach the fixed point.
    for _ in 0..8 {
        let needed = schedule.required(encoded_len(&make(fee), signers));
        if needed <= fee {
            break;
        }
        fee = needed;
    }
    make(fee)
}

pub fn sign(chain: &ChainId, body: Vec<u8>, signers: &[&SecretKey]) -> SignedTx {
    SignedTx::sign(body, chain, signers)
}

/// A transaction being signed by several parties, as a file. Signatures
/// are kept in the order the action needs (buyer first for a settlement);
/// `None` marks one still missing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialTx {
    pub chain_id: ChainId,
    /// The body in hex, exactly as signed.
    pub body: String,
    pub signers: Vec<PartialSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialSignature {
    pub public_key: PublicKey,
    pub signature: Option<Signature>,
}

impl PartialTx {
    pub fn new(chain: &ChainId, body: Vec<u8>, signers: &[PublicKey]) -> PartialTx {
        PartialTx {
            chain_id: chain.clone(),
            body: hex::encode(body),
            signers: signers
                .iter()
                .map(|k| PartialSignature {
                    public_key: *k,
                    signature: None,
                })
                .collect(),
        }
    }

    pub fn body_bytes(&self) -> Result<Vec<u8>, ClientError> {
        hex::decode(&self.body).map_err(|e| ClientError::Usage(format!("body is not hex: {e}")))
    }

    pub fn decoded_body(&self) -> Result<pb::TxBody, ClientError> {
        pb::TxBody::decode(self.body_bytes()?.as_slice())
            .map_err(|e| ClientError::Usage(format!("body does not decode: {e}")))
    }

    /// Adds `key`'s signature in its slot; refuses a key that is not a
    /// signer of this transaction, and checks every signature present.
    pub fn sign_with(&mut self, key: &SecretKey) -> Result<(), ClientError> {
        let body = self.body_bytes()?;
        let me = key.public_key();
        let slot = self
            .signers
            .iter_mut()
            .find(|s| s.public_key == me)
            .ok_or_else(|| {
                ClientError::Usage(format!("key {me} is not a signer of this transaction"))
            })?;
        slot.signature = Some(key.sign(Domain::Tx, &self.chain_id, &body));
        self.check_signatures()
    }

    /// Every present signature verifies over the body.
    pub fn check_signatures(&self) -> Result<(), ClientError> {
        let signed = signing_bytes(Domain::Tx, &self.chain_id, &self.body_bytes()?);
        for s in &self.signers {
            if let Some(sig) = &s.signature
                && s.public_key.verify_raw(&signed, sig).is_err()
            {
                return Err(ClientError::Usage(format!(
                    "the signature of {} does not verify over this body",
                    s.public_key
                )));
            }
        }
        Ok(())
    }

    pub fn missing(&self) -> Vec<PublicKey> {
        self.signers
            .iter()
            .filter(|s| s.signature.is_none())
            .map(|s| s.public_key)
            .collect()
    }

    /// The complete transaction, once every party has signed.
    pub fn complete(&self) -> Result<SignedTx, ClientError> {
        self.check_signatures()?;
        let missing = self.missing();
        if !missing.is_empty() {
            let keys: Vec<String> = missing.iter().map(|k| k.to_hex()).collect();
            return Err(ClientError::Usage(format!(
                "signatures missing from: {}",
                keys.join(", ")
            )));
        }
        Ok(SignedTx {
            body: self.body_bytes()?,
            signatures: self
                .signers
                .iter()
                .filter_map(|s| s.signature.map(|sig| (s.public_key, sig)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_covers_the_encoded_size() {
        let chain = ChainId::new("t").unwrap();
        let schedule = FeeSchedule {
            fee_base: 1000,
            fee_per_byte: 10,
        };
        let key = SecretKey::from_seed([1; 32]);
        let b = body(
            &chain,
            0,
            None,
            schedule,
            pb::action::Kind::Bond(pb::Bond { amount: 5 }),
            1,
        );
        let tx = sign(&chain, b.clone(), &[&key]);
        let fee = pb::TxBody::decode(b.as_slice()).unwrap().fee;
        assert_eq!(fee, schedule.required(tx.encode().len()));
    }

    #[test]
    fn two_party_signing_in_either_order() {
        let chain = ChainId::new("t").unwrap();
        let buyer = SecretKey::from_seed([1; 32]);
        let seller = SecretKey::from_seed([2; 32]);
        let mut p = PartialTx::new(
            &chain,
            b"body".to_vec(),
            &[buyer.public_key(), seller.public_key()],
        );
        p.sign_with(&seller).unwrap();
        assert!(p.complete().is_err());
        let text = serde_json::to_string(&p).unwrap();
        let mut q: PartialTx = serde_json::from_str(&text).unwrap();
        q.sign_with(&buyer).unwrap();
        let tx = q.complete().unwrap();
        assert_eq!(
            tx,
            SignedTx::sign(b"body".to_vec(), &chain, &[&buyer, &seller])
        );
        assert!(q.sign_with(&SecretKey::from_seed([3; 32])).is_err());
        // A tampered body breaks the signatures already there.
        q.body = hex::encode(b"bodz");
        assert!(q.complete().is_err());
    }
}
