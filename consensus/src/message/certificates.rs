//! Votes, timeouts and the certificates they form, with what each signs.

use commons_types::{
    ChainId, Domain, Epoch, Hash, Height, Round, SecretKey, Signature, ValidatorIndex,
    signing_bytes,
};

use super::{RootBlock, SignedTimeout, Wire, read_index, write_index};
use crate::limits;
use crate::wire::{DecodeError, Reader, Writer};

/// What a vote is for. Carrying the parent lets anyone apply the 2-chain
/// commit rule from a QC alone (a QC whose `round == parent_round + 1`
/// commits `parent_id`), which is what committed-range sync relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoteData {
    pub epoch: Epoch,
    pub round: Round,
    pub height: Height,
    pub block_id: Hash,
    pub parent_id: Hash,
    pub parent_round: Round,
}

impl VoteData {
    /// The bytes a vote signs, with the domain and chain prefix.
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        signing_bytes(Domain::Vote, chain, &self.encode())
    }
}

impl Wire for VoteData {
    const WHAT: &'static str = "vote data";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        w.u64(self.height.0);
        w.hash(&self.block_id);
        w.hash(&self.parent_id);
        w.u64(self.parent_round.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(VoteData {
            epoch: Epoch(r.u64("vote epoch")?),
            round: Round(r.u64("vote round")?),
            height: Height(r.u64("vote height")?),
            block_id: r.hash("vote block id")?,
            parent_id: r.hash("vote parent id")?,
            parent_round: Round(r.u64("vote parent round")?),
        })
    }
}

/// One validator's signed vote for a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    pub data: VoteData,
    pub voter: ValidatorIndex,
    pub signature: Signature,
}

impl Vote {
    pub fn sign(data: VoteData, voter: ValidatorIndex, key: &SecretKey, chain: &ChainId) -> Vote {
        let signature = key.sign_raw(&data.signing_bytes(chain));
        Vote {
            data,
            voter,
            signature,
        }
    }
}

impl Wire for Vote {
    const WHAT: &'static str = "vote";
    fn write(&self, w: &mut Writer) {
        self.data.write(w);
        write_index(w, self.voter);
        w.signature(&self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            data: VoteData::read(r)?,
            voter: read_index(r, "voter")?,
            signature: r.signature("vote signature")?,
        })
    }
}

/// A quorum certificate: votes of more than two thirds of the power for one
/// [`VoteData`]. Signatures are sorted by strictly increasing validator index
/// (one canonical form). The epoch's root QC has no signatures: it is the
/// agreed starting point of the epoch, accepted only if equal to the
/// replica's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumCert {
    pub data: VoteData,
    pub signatures: Vec<(ValidatorIndex, Signature)>,
}

impl QuorumCert {
    pub fn round(&self) -> Round {
        self.data.round
    }

    pub fn block_id(&self) -> Hash {
        self.data.block_id
    }

    /// The root QC of an epoch: certifies the epoch's root block at round 0.
    pub fn root(epoch: Epoch, root: &RootBlock) -> QuorumCert {
        QuorumCert {
            data: VoteData {
                epoch,
                round: Round::ZERO,
                height: root.height,
                block_id: root.id,
                parent_id: root.id,
                parent_round: Round::ZERO,
            },
            signatures: Vec::new(),
        }
    }

    pub fn signers(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.signatures.iter().map(|(i, _)| *i)
    }
}

fn write_sigs(w: &mut Writer, sigs: &[(ValidatorIndex, Signature)]) {
    w.len(sigs.len());
    for (i, s) in sigs {
        write_index(w, *i);
        w.signature(s);
    }
}

fn read_sigs(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<(ValidatorIndex, Signature)>, DecodeError> {
    let n = r.len(what, limits::MAX_CERT_SIGNERS, 2 + Signature::LEN)?;
    let mut out: Vec<(ValidatorIndex, Signature)> = Vec::with_capacity(n);
    for _ in 0..n {
        let i = read_index(r, what)?;
        let s = r.signature(what)?;
        if out.last().is_some_and(|(prev, _)| *prev >= i) {
            return Err(DecodeError::NotCanonical {
                what,
                reason: "signer indices must strictly increase",
            });
        }
        out.push((i, s));
    }
    Ok(out)
}

impl Wire for QuorumCert {
    const WHAT: &'static str = "quorum certificate";
    fn write(&self, w: &mut Writer) {
        self.data.write(w);
        write_sigs(w, &self.signatures);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(QuorumCert {
            data: VoteData::read(r)?,
            signatures: read_sigs(r, "QC signatures")?,
        })
    }
}

/// The bytes a timeout signs (DiemBFT v4 signs the round and the round of
/// the sender's highest QC, so that a TC aggregates signatures over
/// different high-QC rounds).
pub fn timeout_signing_bytes(
    chain: &ChainId,
    epoch: Epoch,
    round: Round,
    high_qc_round: Round,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(epoch.0);
    w.u64(round.0);
    w.u64(high_qc_round.0);
    signing_bytes(Domain::Timeout, chain, &w.into_bytes())
}

/// One signature inside a TC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutSignature {
    pub voter: ValidatorIndex,
    pub high_qc_round: Round,
    pub signature: Signature,
}

/// A timeout certificate: timeouts of more than two thirds of the power for
/// one round, each with the round of its sender's highest QC. Entries sorted
/// by strictly increasing voter index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutCert {
    pub epoch: Epoch,
    pub round: Round,
    pub entries: Vec<TimeoutSignature>,
}

impl TimeoutCert {
    /// The highest QC round any signer reported: a block justified by this
    /// TC must extend a QC at least this high (Jolteon's locking rule).
    pub fn highest_qc_round(&self) -> Round {
        self.entries
            .iter()
            .map(|e| e.high_qc_round)
            .max()
            .unwrap_or(Round::ZERO)
    }
}

impl Wire for TimeoutCert {
    const WHAT: &'static str = "timeout certificate";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        w.len(self.entries.len());
        for e in &self.entries {
            write_index(w, e.voter);
            w.u64(e.high_qc_round.0);
            w.signature(&e.signature);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = Epoch(r.u64("TC epoch")?);
        let round = Round(r.u64("TC round")?);
        let n = r.len(
            "TC entries",
            limits::MAX_CERT_SIGNERS,
            2 + 8 + Signature::LEN,
        )?;
        let mut entries: Vec<TimeoutSignature> = Vec::with_capacity(n);
        for _ in 0..n {
            let e = TimeoutSignature {
                voter: read_index(r, "TC voter")?,
                high_qc_round: Round(r.u64("TC high QC round")?),
                signature: r.signature("TC signature")?,
            };
            if entries.last().is_some_and(|prev| prev.voter >= e.voter) {
                return Err(DecodeError::NotCanonical {
                    what: "TC entries",
                    reason: "voter indices must strictly increase",
                });
            }
            entries.push(e);
        }
        Ok(TimeoutCert {
            epoch,
            round,
            entries,
        })
    }
}

/// A validator's signed timeout for a round, with its highest QC (so the next
/// leader can extend it) and, when it entered the round by a TC, that TC (so a
/// replica that missed it can catch up; DiemBFT v4 `last_round_tc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub epoch: Epoch,
    pub round: Round,
    pub high_qc: QuorumCert,
    pub voter: ValidatorIndex,
    pub signature: Signature,
    pub last_round_tc: Option<TimeoutCert>,
}

impl Timeout {
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        timeout_signing_bytes(chain, self.epoch, self.round, self.high_qc.round())
    }

    pub fn sign(
        epoch: Epoch,
        round: Round,
        high_qc: QuorumCert,
        last_round_tc: Option<TimeoutCert>,
        voter: ValidatorIndex,
        key: &SecretKey,
        chain: &ChainId,
    ) -> Timeout {
        let signature = key.sign_raw(&timeout_signing_bytes(chain, epoch, round, high_qc.round()));
        Timeout {
            epoch,
            round,
            high_qc,
            voter,
            signature,
            last_round_tc,
        }
    }

    pub fn header(&self) -> SignedTimeout {
        SignedTimeout {
            epoch: self.epoch,
            round: self.round,
            high_qc_round: self.high_qc.round(),
            voter: self.voter,
            signature: self.signature,
        }
    }
}

impl Wire for Timeout {
    const WHAT: &'static str = "timeout";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        w.u64(self.round.0);
        self.high_qc.write(w);
        write_index(w, self.voter);
        w.signature(&self.signature);
        match &self.last_round_tc {
            None => w.u8(0),
            Some(tc) => {
                w.u8(1);
                tc.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Timeout {
            epoch: Epoch(r.u64("timeout epoch")?),
            round: Round(r.u64("timeout round")?),
            high_qc: QuorumCert::read(r)?,
            voter: read_index(r, "timeout voter")?,
            signature: r.signature("timeout signature")?,
            last_round_tc: if r.flag("timeout last TC")? {
                Some(TimeoutCert::read(r)?)
            } else {
                None
            },
        })
    }
}
