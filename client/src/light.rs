//! Light-client verification: which validator set signs which epoch, whether
//! a certificate really certifies a block, and whether a Merkle proof shows a
//! value under the state root that block carries.
//!
//! # Trust
//!
//! A [`TrustStore`] starts from the genesis file (epoch 0's set) or from a
//! validator set the user trusts for some epoch, and learns later epochs'
//! sets as it meets them ([`TrustStore::learn`]).
//!
//! # A certified state root ([`TrustStore::verify_certified`])
//!
//! 1. The block and the QC decode in their canonical encodings.
//! 2. The QC names the block: `qc.block_id == SHA-256("commons/block/v1" ||
//!    block)` (the block id is hashed over the bytes as received), and
//!    agrees with it on epoch and height.
//! 3. The block carries the answer's `state_root`, and its payload names the
//!    answer's `state_height`.
//! 4. The QC has signers of strictly more than two thirds of the power of
//!    the set of its epoch, and every signature verifies, checked in one
//!    parallel batch ([`commons_types::batch::verify_all_ok`]).
//!
//! A QC is enough, without the 2-chain that commits the block: every honest
//! voter checked, before voting, that the block's `state_root` equals its
//! own root after executing the committed block `state_height`
//! (`state_machine::app`), and a quorum holds at least one honest voter.
//!
//! # Following epochs ([`TrustStore::learn`])
//!
//! Epoch `e + 1`'s set is the ledger's `VALIDATORS` value after the block
//! that ends epoch `e`. No block of epoch `e` attests that state (blocks
//! above the boundary carry empty payloads), so the outgoing set never signs
//! the incoming one. The client therefore uses the rule of Tendermint's
//! light client for skipping verification, with trust level 1/3: it accepts
//! a set `S'` for a later epoch `e'` from a `GetValidatorSet` answer when
//!
//! - the answer's QC is of epoch `e'` and has a quorum of `S'`,
//! - the Merkle proof shows `VALIDATORS = S'` under the block's state root,
//! - and the QC's signers that belong to the newest trusted set `S` hold
//!   strictly more than a third of `S`'s power.
//!
//! As long as less than a third of `S`'s power is faulty, some honest member
//! of `S` signed: it checked the state root, so `S'` is the real set of
//! `e'`. When more than two thirds of the power has changed hands since the
//! trusted epoch the rule refuses ([`VerifyError::TrustGap`]); trust must
//! then be renewed from a trusted source (`commons init`). Like any light
//! client, this assumes the trusted set's keys were not all sold off since;
//! keep the trust file fresh by using the client now and then.

use std::collections::BTreeMap;

use commons_consensus::{Block, QuorumCert};
use commons_proto::v1 as api;
use commons_state_machine::Payload;
use commons_state_machine::ledger::gov::decode_validator_set;
use commons_state_machine::ledger::state::key;
use commons_state_machine::store::{Proof, verify_proof};
use commons_types::batch::{VerifyItem, verify_all_ok};
use commons_types::{ChainId, Epoch, Hash, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::limits;

/// Why an answer was refused. Every variant means the node's answer cannot
/// be believed; none means a bug in the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the answer carries no {what}")]
    Missing { what: &'static str },
    #[error("{what} does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("the certificate is for block {qc_block}, not for the answered block {block}")]
    QcForOtherBlock { qc_block: Hash, block: Hash },
    #[error("the answer says {what} is {claimed}, but the certified block says {certified}")]
    HeaderMismatch {
        what: &'static str,
        claimed: String,
        certified: String,
    },
    #[error(
        "the answer is certified in epoch {epoch}, but this client trusts validator sets only for epochs {known}"
    )]
    UnknownEpoch { epoch: u64, known: String },
    #[error("the certificate has no signatures (only an epoch's root may, and it proves nothing)")]
    EmptyCertificate,
    #[error("certificate signer {index} is not in the validator set of epoch {epoch}")]
    SignerNotInSet { index: u16, epoch: u64 },
    #[error("certificate signers are not strictly increasing")]
    SignersNotCanonical,
    #[error("the certificate's signers hold {power} of {total} power; a quorum needs {needed}")]
    NoQuorum { power: u64, total: u64, needed: u64 },
    #[error("a certificate signature does not verify against the trusted validator set")]
    BadSignature,
    #[error("the proof is for key {got}, the client asked for {wanted}")]
    WrongKey { wanted: String, got: String },
    #[error(
        "the Merkle proof of key {key} does not verify against the certified state root: {reason}"
    )]
    BadProof { key: String, reason: String },
    #[error("the node answered {what} = {answered}, but its proven state says {proven}")]
    AnswerContradictsProof {
        what: &'static str,
        answered: String,
        proven: String,
    },
    #[error(
        "the validator set of epoch {epoch} shares only {power} of {total} power with trusted epoch {trusted}; \
         more than a third is needed to follow it (renew trust with `commons init`)"
    )]
    TrustGap {
        epoch: u64,
        trusted: u64,
        power: u64,
        total: u64,
    },
    #[error("the answer is for chain {got}, this client trusts chain {trusted}")]
    WrongChain { trusted: String, got: String },
}

/// A state root the client has checked against a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerifiedRoot {
    pub epoch: u64,
    pub block_height: u64,
    pub state_height: u64,
    pub state_root: Hash,
    pub timestamp_ms: u64,
}

/// A block the client has checked against its certificate.
#[derive(Debug, Clone)]
pub struct VerifiedBlock {
    pub block: Block,
    pub signers_power: u64,
}

/// What a client persists: the chain and the validator sets it trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustFile {
    pub chain_id: ChainId,
    pub epochs: Vec<TrustedEpoch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustedEpoch {
    pub epoch: u64,
    pub validators: ValidatorSet,
}

/// The validator sets a client trusts, by epoch.
#[derive(Debug, Clone)]
pub struct TrustStore {
    chain: ChainId,
    sets: BTreeMap<u64, ValidatorSet>,
}

impl TrustStore {
    /// Trusts `set` for `epoch` of `chain` (epoch 0 and the genesis
    /// validators when starting from a genesis file).
    pub fn new(chain: ChainId, epoch: Epoch, set: ValidatorSet) -> TrustStore {
        let mut sets = BTreeMap::new();
        sets.insert(epoch.0, set);
        TrustStore { chain, sets }
    }

    pub fn from_file(file: TrustFile) -> Result<TrustStore, VerifyError> {
        let mut sets = BTreeMap::new();
        for e in file.epochs {
            sets.insert(e.epoch, e.validators);
        }
        if sets.is_empty() {
            return Err(VerifyError::Missing {
                what: "trusted validator set in the trust file",
            });
        }
        Ok(TrustStore {
            chain: file.chain_id,
            sets,
        })
    }

    pub fn to_file(&self) -> TrustFile {
        TrustFile {
            chain_id: self.chain.clone(),
            epochs: self
                .sets
                .iter()
                .map(|(e, s)| TrustedEpoch {
                    epoch: *e,
                    validators: s.clone(),
                })
                .collect(),
        }
    }

    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The newest trusted epoch and its set.
    pub fn latest(&self) -> (u64, &ValidatorSet) {
        // `new` and `from_file` never leave the map empty.
        self.sets
            .iter()
            .next_back()
            .map(|(e, s)| (*e, s))
            .unwrap_or_else(|| unreachable!("a trust store always holds a set"))
    }

    pub fn set_of(&self, epoch: u64) -> Option<&ValidatorSet> {
        self.sets.get(&epoch)
    }

    fn known(&self) -> String {
        let epochs: Vec<String> = self.sets.keys().map(|e| e.to_string()).collect();
        epochs.join(", ")
    }

    fn unknown(&self, epoch: u64) -> VerifyError {
        VerifyError::UnknownEpoch {
            epoch,
            known: self.known(),
        }
    }

    /// Checks `qc` with the set of its epoch. For an epoch the client
    /// skipped (older than its newest), the nearest trusted set stands in:
    /// if signers holding more than two thirds of a trusted set signed, some
    /// honest member of it checked the block (as in [`TrustStore::learn`],
    /// with a stricter share); if the sets differ, the signatures do not
    /// verify and the answer is refused. A newer epoch is reported as
    /// unknown, so the caller learns it first.
    fn check_qc_of_epoch(&self, qc: &QuorumCert) -> Result<u64, VerifyError> {
        let epoch = qc.data.epoch.0;
        if let Some(set) = self.sets.get(&epoch) {
            return check_qc(&self.chain, set, qc);
        }
        if epoch > self.latest().0 {
            return Err(self.unknown(epoch));
        }
        let stand_in = self
            .sets
            .range(..epoch)
            .next_back()
            .or_else(|| self.sets.range(epoch..).next())
            .map(|(_, s)| s)
            .ok_or_else(|| self.unknown(epoch))?;
        check_qc(&self.chain, stand_in, qc).map_err(|_| self.unknown(epoch))
    }

    /// Checks a certified state root (module doc, steps 1 to 4).
    pub fn verify_certified(&self, c: &api::Certified) -> Result<VerifiedRoot, VerifyError> {
        let (block, qc) = decode_certified(&c.block, &c.qc)?;
        check_links(&block, &qc)?;
        let state_root = hash_field(&c.state_root, "state root")?;
        if block.state_root() != state_root {
            return Err(mismatch("the state root", state_root, block.state_root()));
        }
        if block.height().0 != c.block_height {
            return Err(mismatch(
                "the block height",
                c.block_height,
                block.height().0,
            ));
        }
        if block.epoch().0 != c.epoch {
            return Err(mismatch("the epoch", c.epoch, block.epoch().0));
        }
        let payload = Payload::decode(block.payload()).map_err(|e| VerifyError::Decode {
            what: "block payload",
            reason: e.to_string(),
        })?;
        if payload.state_height.0 != c.state_height {
            return Err(mismatch(
                "the state height",
                c.state_height,
                payload.state_height.0,
            ));
        }
        self.check_qc_of_epoch(&qc)?;
        Ok(VerifiedRoot {
            epoch: block.epoch().0,
            block_height: block.height().0,
            state_height: payload.state_height.0,
            state_root,
            timestamp_ms: block.timestamp_ms(),
        })
    }

    /// Checks a state answer for `key`: the certificate, then the Merkle
    /// proof of the value (or of its absence) under the certified root.
    /// Returns the proven value.
    pub fn verify_state(
        &self,
        p: &api::StateProof,
        key: &[u8],
    ) -> Result<(VerifiedRoot, Option<Vec<u8>>), VerifyError> {
        let c = p.certified.as_ref().ok_or(VerifyError::Missing {
            what: "certificate",
        })?;
        let root = self.verify_certified(c)?;
        let value = check_proof(p, key, &root.state_root)?;
        Ok((root, value))
    }

    /// Checks a block answer: the block decodes to the id the node named, and
    /// its QC certifies it with a quorum of its epoch's set.
    pub fn verify_block(&self, b: &api::BlockResponse) -> Result<VerifiedBlock, VerifyError> {
        if b.qc.is_empty() {
            return Err(VerifyError::Missing {
                what: "certificate for the block (the node has none yet, or the block ends an epoch, \
                       whose certificate only uncommitted blocks carry)",
            });
        }
        let (block, qc) = decode_certified(&b.block, &b.qc)?;
        check_links(&block, &qc)?;
        let id = hash_field(&b.block_id, "block id")?;
        if id != block.id() {
            return Err(mismatch("the block id", id, block.id()));
        }
        if b.height != block.height().0 {
            return Err(mismatch("the block height", b.height, block.height().0));
        }
        let signers_power = self.check_qc_of_epoch(&qc)?;
        Ok(VerifiedBlock {
            block,
            signers_power,
        })
    }

    /// Learns the validator set of a later epoch from a `GetValidatorSet`
    /// answer (module doc, "Following epochs"). Returns the epoch learned,
    /// or `None` if the answer is of an epoch already trusted (after
    /// checking it like any other answer).
    pub fn learn(&mut self, r: &api::ValidatorSetResponse) -> Result<Option<u64>, VerifyError> {
        let p = r.proof.as_ref().ok_or(VerifyError::Missing {
            what: "state proof",
        })?;
        let c = p.certified.as_ref().ok_or(VerifyError::Missing {
            what: "certificate",
        })?;
        let (trusted_epoch, _) = self.latest();
        if c.epoch <= trusted_epoch {
            let (_, value) = self.verify_state(p, key::VALIDATORS)?;
            let proven = decode_set_value(value)?;
            compare_validators(&r.validators, &proven)?;
            return Ok(None);
        }
        let (block, qc) = decode_certified(&c.block, &c.qc)?;
        check_links(&block, &qc)?;
        let state_root = hash_field(&c.state_root, "state root")?;
        if block.state_root() != state_root {
            return Err(mismatch("the state root", state_root, block.state_root()));
        }
        if block.epoch().0 != c.epoch {
            return Err(mismatch("the epoch", c.epoch, block.epoch().0));
        }
        let value = check_proof(p, key::VALIDATORS, &state_root)?;
        let claimed = decode_set_value(value)?;
        compare_validators(&r.validators, &claimed)?;
        check_qc(&self.chain, &claimed, &qc)?;
        // Trust level 1/3 against the newest trusted set, by public key.
        let (trusted_epoch, trusted) = self.latest();
        let mut overlap: u64 = 0;
        for (index, _) in &qc.signatures {
            let Some(v) = claimed.get(*index) else {
                return Err(VerifyError::SignerNotInSet {
                    index: index.0,
                    epoch: c.epoch,
                });
            };
            if let Some(i) = trusted.index_of(&v.public_key) {
                overlap = overlap.saturating_add(trusted.power_of(i));
            }
        }
        if !trusted.is_validity(overlap) {
            return Err(VerifyError::TrustGap {
                epoch: c.epoch,
                trusted: trusted_epoch,
                power: overlap,
                total: trusted.total_power(),
            });
        }
        self.sets.insert(c.epoch, claimed);
        while self.sets.len() > limits::TRUSTED_EPOCHS_KEPT {
            self.sets.pop_first();
        }
        Ok(Some(c.epoch))
    }

    /// Refuses answers about another chain (checked on the proven
    /// `CHAIN_ID` value by callers that read it).
    pub fn check_chain(&self, got: &str) -> Result<(), VerifyError> {
        if got == self.chain.as_str() {
            Ok(())
        } else {
            Err(VerifyError::WrongChain {
                trusted: self.chain.to_string(),
                got: got.to_string(),
            })
        }
    }
}

fn mismatch(what: &'static str, claimed: impl ToString, certified: impl ToString) -> VerifyError {
    VerifyError::HeaderMismatch {
        what,
        claimed: claimed.to_string(),
        certified: certified.to_string(),
    }
}

fn hash_field(bytes: &[u8], what: &'static str) -> Result<Hash, VerifyError> {
    Hash::from_slice(bytes).map_err(|e| VerifyError::Decode {
        what,
        reason: e.to_string(),
    })
}

fn decode_certified(block: &[u8], qc: &[u8]) -> Result<(Block, QuorumCert), VerifyError> {
    let block = Block::decode(block).map_err(|e| VerifyError::Decode {
        what: "certified block",
        reason: e.to_string(),
    })?;
    let qc = QuorumCert::decode(qc).map_err(|e| VerifyError::Decode {
        what: "quorum certificate",
        reason: e.to_string(),
    })?;
    Ok((block, qc))
}

/// The QC names this block, in its epoch, at its height.
fn check_links(block: &Block, qc: &QuorumCert) -> Result<(), VerifyError> {
    if qc.data.block_id != block.id() {
        return Err(VerifyError::QcForOtherBlock {
            qc_block: qc.data.block_id,
            block: block.id(),
        });
    }
    if qc.data.epoch != block.epoch() {
        return Err(mismatch(
            "the certificate's epoch",
            qc.data.epoch.0,
            block.epoch().0,
        ));
    }
    if qc.data.height != block.height() {
        return Err(mismatch(
            "the certificate's height",
            qc.data.height.0,
            block.height().0,
        ));
    }
    Ok(())
}

/// Quorum of distinct signers of `set`, then all signatures in one batch.
/// Returns the signers' power.
fn check_qc(chain: &ChainId, set: &ValidatorSet, qc: &QuorumCert) -> Result<u64, VerifyError> {
    if qc.signatures.is_empty() {
        return Err(VerifyError::EmptyCertificate);
    }
    let mut last = None;
    for (i, _) in &qc.signatures {
        if last.is_some_and(|l| l >= *i) {
            return Err(VerifyError::SignersNotCanonical);
        }
        last = Some(*i);
    }
    let power = set
        .power_of_set(qc.signers())
        .ok_or_else(|| VerifyError::SignerNotInSet {
            index: qc
                .signers()
                .find(|i| set.get(*i).is_none())
                .map(|i| i.0)
                .unwrap_or(0),
            epoch: qc.data.epoch.0,
        })?;
    if !set.is_quorum(power) {
        return Err(VerifyError::NoQuorum {
            power,
            total: set.total_power(),
            needed: set.quorum_power(),
        });
    }
    let signed = qc.data.signing_bytes(chain);
    let mut items = Vec::with_capacity(qc.signatures.len());
    for (i, signature) in &qc.signatures {
        let v = set.get(*i).ok_or(VerifyError::SignerNotInSet {
            index: i.0,
            epoch: qc.data.epoch.0,
        })?;
        items.push(VerifyItem {
            public_key: v.public_key,
            signed: &signed,
            signature: *signature,
        });
    }
    if !verify_all_ok(&items) {
        return Err(VerifyError::BadSignature);
    }
    Ok(power)
}

/// The Merkle proof of `p` for `key` under `root`; returns the proven value.
fn check_proof(
    p: &api::StateProof,
    key: &[u8],
    root: &Hash,
) -> Result<Option<Vec<u8>>, VerifyError> {
    if p.key.as_ref() != key {
        return Err(VerifyError::WrongKey {
            wanted: hex::encode(key),
            got: hex::encode(&p.key),
        });
    }
    let proof = Proof::from_bytes(&p.proof).map_err(|e| VerifyError::Decode {
        what: "Merkle proof",
        reason: e.to_string(),
    })?;
    let value = p.present.then(|| p.value.to_vec());
    verify_proof(&root.0, key, value.as_deref(), &proof).map_err(|e| VerifyError::BadProof {
        key: hex::encode(key),
        reason: e.to_string(),
    })?;
    Ok(value)
}

fn decode_set_value(value: Option<Vec<u8>>) -> Result<ValidatorSet, VerifyError> {
    let bytes = value.ok_or(VerifyError::Missing {
        what: "validator set in the proven state",
    })?;
    decode_validator_set(&bytes).map_err(|e| VerifyError::Decode {
        what: "validator set",
        reason: e.to_string(),
    })
}

fn compare_validators(
    answered: &[api::ValidatorInfo],
    proven: &ValidatorSet,
) -> Result<(), VerifyError> {
    let proven_pb: Vec<api::ValidatorInfo> = validators_pb(proven);
    if answered != proven_pb.as_slice() {
        return Err(VerifyError::AnswerContradictsProof {
            what: "the validator set",
            answered: format!("{} validators", answered.len()),
            proven: format!("{} validators (or other keys/powers)", proven_pb.len()),
        });
    }
    Ok(())
}

pub fn validators_pb(set: &ValidatorSet) -> Vec<api::ValidatorInfo> {
    set.validators()
        .iter()
        .map(|v| api::ValidatorInfo {
            public_key: v.public_key.0.to_vec().into(),
            power: v.power,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use commons_consensus::{BlockFields, Vote};
    use commons_state_machine::ledger::gov::encode_validator_set;
    use commons_state_machine::store::MerkleStore;
    use commons_types::{Height, Round, SecretKey, Validator, ValidatorIndex};

    use super::*;

    fn chain() -> ChainId {
        ChainId::new("light-test").unwrap()
    }

    fn keys(seed: u8, n: u8) -> Vec<SecretKey> {
        (0..n)
            .map(|i| SecretKey::from_seed([seed + i; 32]))
            .collect()
    }

    fn set_of(keys: &[SecretKey]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    public_key: k.public_key(),
                    power: 100,
                })
                .collect(),
        )
        .unwrap()
    }

    /// A state holding `VALIDATORS = set` and one more key, at version 0.
    fn state(set: &ValidatorSet) -> MerkleStore {
        let mut store = MerkleStore::open_memory();
        let mut writes = BTreeMap::new();
        writes.insert(key::VALIDATORS.to_vec(), Some(encode_validator_set(set)));
        writes.insert(b"other".to_vec(), Some(b"value".to_vec()));
        store.apply(0, &writes).unwrap();
        store
    }

    /// A block of `epoch` carrying `root`, and a QC for it signed by
    /// `signers` (indices into `keys`).
    fn certified(
        epoch: u64,
        root: Hash,
        keys: &[SecretKey],
        signers: &[u16],
        sign_chain: &ChainId,
    ) -> api::Certified {
        let genesis =
            commons_consensus::message::RootBlock::genesis(&chain(), Hash::ZERO, Hash::ZERO, 0);
        let justify = QuorumCert::root(Epoch(epoch), &genesis);
        let payload = Payload {
            state_height: Height(0),
            txs: Vec::new(),
        };
        let block = Block::new(BlockFields {
            epoch: Epoch(epoch),
            round: Round(1),
            height: Height(1),
            proposer: ValidatorIndex(0),
            timestamp_ms: 1,
            state_root: root,
            justify,
            timeout_cert: None,
            payload: payload.encode(),
        });
        let data = block.vote_data();
        let signatures = signers
            .iter()
            .map(|i| {
                let v = Vote::sign(data, ValidatorIndex(*i), &keys[*i as usize], sign_chain);
                (v.voter, v.signature)
            })
            .collect();
        let qc = QuorumCert { data, signatures };
        api::Certified {
            state_height: 0,
            state_root: root.0.to_vec().into(),
            block_height: 1,
            block: block.encode().into(),
            qc: qc.encode().into(),
            epoch,
        }
    }

    fn proof_of(store: &MerkleStore, k: &[u8], c: api::Certified) -> api::StateProof {
        let (value, proof) = store.get_with_proof(0, k).unwrap();
        api::StateProof {
            key: k.to_vec().into(),
            present: value.is_some(),
            value: value.unwrap_or_default().into(),
            proof: proof.to_bytes().into(),
            certified: Some(c),
        }
    }

    #[test]
    fn certificates_and_proofs_are_checked() {
        let ks = keys(1, 4);
        let set = set_of(&ks);
        let store = state(&set);
        let root = store.root(0).unwrap();
        let trust = TrustStore::new(chain(), Epoch(0), set.clone());
        let good = certified(0, root, &ks, &[0, 1, 2], &chain());

        // (what changes, expected verdict)
        type Case = (&'static str, api::StateProof, Result<(), &'static str>);
        let mut cases: Vec<Case> =
            vec![("honest", proof_of(&store, b"other", good.clone()), Ok(()))];
        cases.push((
            "two of four signers",
            proof_of(&store, b"other", certified(0, root, &ks, &[0, 1], &chain())),
            Err("NoQuorum"),
        ));
        cases.push((
            "signed for another chain",
            proof_of(
                &store,
                b"other",
                certified(0, root, &ks, &[0, 1, 2], &ChainId::new("other").unwrap()),
            ),
            Err("BadSignature"),
        ));
        let mut wrong_root = good.clone();
        wrong_root.state_root = vec![9; 32].into();
        cases.push((
            "root not in the block",
            proof_of(&store, b"other", wrong_root),
            Err("HeaderMismatch"),
        ));
        let mut other_block = good.clone();
        other_block.block = certified(0, Hash([7; 32]), &ks, &[0, 1, 2], &chain()).block;
        cases.push((
            "QC of another block",
            proof_of(&store, b"other", other_block),
            Err("QcForOtherBlock"),
        ));
        cases.push((
            "unknown epoch",
            proof_of(
                &store,
                b"other",
                certified(5, root, &ks, &[0, 1, 2], &chain()),
            ),
            Err("UnknownEpoch"),
        ));
        let mut forged_value = proof_of(&store, b"other", good.clone());
        forged_value.value = b"valuf".to_vec().into();
        cases.push(("forged value", forged_value, Err("BadProof")));
        let mut hidden = proof_of(&store, b"other", good.clone());
        hidden.present = false;
        cases.push(("value hidden", hidden, Err("BadProof")));
        cases.push((
            "absent key",
            proof_of(&store, b"missing", good.clone()),
            Ok(()),
        ));
        for (name, p, expected) in cases {
            let k = p.key.to_vec();
            let got = trust.verify_state(&p, &k).map(|_| ());
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(variant)) => {
                    assert!(format!("{e:?}").starts_with(variant), "{name}: {e:?}")
                }
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
        // The proof must be for the key asked.
        let p = proof_of(&store, b"other", good);
        assert!(matches!(
            trust.verify_state(&p, b"another"),
            Err(VerifyError::WrongKey { .. })
        ));
    }

    fn set_answer(
        store: &MerkleStore,
        set: &ValidatorSet,
        c: api::Certified,
    ) -> api::ValidatorSetResponse {
        api::ValidatorSetResponse {
            validators: validators_pb(set),
            proof: Some(proof_of(store, key::VALIDATORS, c)),
            consensus_epoch: 0,
        }
    }

    #[test]
    fn later_epochs_are_learned_with_a_third_of_trusted_power() {
        let old = keys(1, 4);
        let old_set = set_of(&old);
        // Epoch 3: two old validators stay, two new join (half the trusted
        // power signs, more than a third).
        let mut next_keys = old[..2].to_vec();
        next_keys.extend(keys(50, 2));
        let next_set = set_of(&next_keys);
        let store = state(&next_set);
        let root = store.root(0).unwrap();
        let mut trust = TrustStore::new(chain(), Epoch(0), old_set.clone());
        let answer = set_answer(
            &store,
            &next_set,
            certified(3, root, &next_keys, &[0, 1, 2], &chain()),
        );
        assert_eq!(trust.learn(&answer), Ok(Some(3)));
        assert_eq!(trust.latest().0, 3);
        // Known now: answers of epoch 3 verify, and relearning is a no-op.
        assert_eq!(trust.learn(&answer), Ok(None));

        // Epoch 4: an entirely new set: no trusted validator vouches for it.
        let stranger_keys = keys(90, 4);
        let strangers = set_of(&stranger_keys);
        let store = state(&strangers);
        let root = store.root(0).unwrap();
        let answer = set_answer(
            &store,
            &strangers,
            certified(4, root, &stranger_keys, &[0, 1, 2, 3], &chain()),
        );
        assert!(matches!(
            trust.learn(&answer),
            Err(VerifyError::TrustGap {
                epoch: 4,
                trusted: 3,
                ..
            })
        ));
        // Signed by the old validators only for show: only 1 of the 4 signers
        // (a quarter of trusted power) is trusted.
        let mut mixed_keys = next_keys[..1].to_vec();
        mixed_keys.extend(keys(120, 3));
        let mixed = set_of(&mixed_keys);
        let store = state(&mixed);
        let root = store.root(0).unwrap();
        let answer = set_answer(
            &store,
            &mixed,
            certified(4, root, &mixed_keys, &[0, 1, 2, 3], &chain()),
        );
        assert!(matches!(
            trust.learn(&answer),
            Err(VerifyError::TrustGap { .. })
        ));

        // The answer's validator list must be what the proof shows.
        let store = state(&next_set);
        let root = store.root(0).unwrap();
        let mut lying = set_answer(
            &store,
            &next_set,
            certified(5, root, &next_keys, &[0, 1, 2], &chain()),
        );
        lying.validators.pop();
        assert!(matches!(
            trust.learn(&lying),
            Err(VerifyError::AnswerContradictsProof { .. })
        ));
        // A trust file round-trips.
        let back = TrustStore::from_file(
            serde_json::from_str(&serde_json::to_string(&trust.to_file()).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(back.latest().0, 3);
        assert_eq!(back.set_of(0), Some(&old_set));
    }

    #[test]
    fn a_skipped_epoch_with_the_same_set_verifies_with_a_stand_in() {
        let ks = keys(1, 4);
        let set = set_of(&ks);
        let store = state(&set);
        let root = store.root(0).unwrap();
        let mut trust = TrustStore::new(chain(), Epoch(0), set.clone());
        trust
            .learn(&set_answer(
                &store,
                &set,
                certified(9, root, &ks, &[0, 1, 2], &chain()),
            ))
            .unwrap();
        let p = proof_of(
            &store,
            b"other",
            certified(4, root, &ks, &[1, 2, 3], &chain()),
        );
        assert!(trust.verify_state(&p, b"other").is_ok());
        // Too few stand-in signers: refused as an unknown epoch.
        let p = proof_of(&store, b"other", certified(4, root, &ks, &[1, 2], &chain()));
        assert!(matches!(
            trust.verify_state(&p, b"other"),
            Err(VerifyError::UnknownEpoch { epoch: 4, .. })
        ));
    }
}
