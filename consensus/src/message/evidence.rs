//! Equivocation evidence and the safety record.

use commons_types::{ChainId, Epoch, Round, Signature, ValidatorIndex, ValidatorSet};

use super::{
    RootBlock, SignedProposal, Timeout, Vote, Wire, read_index, timeout_signing_bytes, write_index,
};
use crate::Reject;
use crate::wire::{DecodeError, Reader, Writer};

/// The signed part of a timeout, enough to check an equivocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedTimeout {
    pub epoch: Epoch,
    pub round: Round,
    pub high_qc_round: Round,
    pub voter: ValidatorIndex,
    pub signature: Signature,
}

impl SignedTimeout {
    pub fn signing_bytes(&self, chain: &ChainId) -> Vec<u8> {
        timeout_signing_bytes(chain, self.epoch, self.round, self.high_qc_round)
    }
}

/// Proof that one validator signed two conflicting messages in one round of
/// one epoch. Anyone holding the epoch's validator set can check it with
/// [`Evidence::check`](crate::Evidence::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Two votes for different blocks.
    ConflictingVotes { first: Vote, second: Vote },
    /// Two proposals of different blocks.
    ConflictingProposals {
        first: SignedProposal,
        second: SignedProposal,
    },
    /// Two timeouts reporting different highest-QC rounds.
    ConflictingTimeouts {
        first: SignedTimeout,
        second: SignedTimeout,
    },
}

impl Evidence {
    /// Checks the evidence against the validator set of its epoch: one
    /// validator, one round, two different signed contents, both signatures
    /// valid. Returns the offender.
    pub fn check(&self, chain: &ChainId, set: &ValidatorSet) -> Result<ValidatorIndex, Reject> {
        let (who, round, differ, signed) = match self {
            Evidence::ConflictingVotes { first, second } => (
                (first.voter, second.voter),
                (
                    first.data.round,
                    second.data.round,
                    first.data.epoch,
                    second.data.epoch,
                ),
                first.data != second.data,
                [
                    (first.data.signing_bytes(chain), first.signature),
                    (second.data.signing_bytes(chain), second.signature),
                ],
            ),
            Evidence::ConflictingProposals { first, second } => (
                (first.proposer, second.proposer),
                (first.round, second.round, first.epoch, second.epoch),
                first.block_id != second.block_id,
                [
                    (first.signing_bytes(chain), first.signature),
                    (second.signing_bytes(chain), second.signature),
                ],
            ),
            Evidence::ConflictingTimeouts { first, second } => (
                (first.voter, second.voter),
                (first.round, second.round, first.epoch, second.epoch),
                first.high_qc_round != second.high_qc_round,
                [
                    (first.signing_bytes(chain), first.signature),
                    (second.signing_bytes(chain), second.signature),
                ],
            ),
        };
        let not_conflicting = Reject::Unexpected {
            what: "evidence",
            reason: "the two messages are not from one validator in one round with different content",
        };
        if who.0 != who.1 || round.0 != round.1 || round.2 != round.3 || !differ {
            return Err(not_conflicting);
        }
        let key = set
            .get(who.0)
            .ok_or(Reject::UnknownValidator {
                index: who.0,
                len: set.len(),
            })?
            .public_key;
        for (bytes, signature) in &signed {
            key.verify_raw(bytes, signature)
                .map_err(|_| Reject::BadSignature {
                    what: "evidence",
                    signer: who.0,
                })?;
        }
        Ok(who.0)
    }
}

fn write_signed_proposal(w: &mut Writer, p: &SignedProposal) {
    w.u64(p.epoch.0);
    w.u64(p.round.0);
    w.hash(&p.block_id);
    write_index(w, p.proposer);
    w.signature(&p.signature);
}

fn read_signed_proposal(r: &mut Reader<'_>) -> Result<SignedProposal, DecodeError> {
    Ok(SignedProposal {
        epoch: Epoch(r.u64("proposal epoch")?),
        round: Round(r.u64("proposal round")?),
        block_id: r.hash("proposal block id")?,
        proposer: read_index(r, "proposer")?,
        signature: r.signature("proposal signature")?,
    })
}

fn write_signed_timeout(w: &mut Writer, t: &SignedTimeout) {
    w.u64(t.epoch.0);
    w.u64(t.round.0);
    w.u64(t.high_qc_round.0);
    write_index(w, t.voter);
    w.signature(&t.signature);
}

fn read_signed_timeout(r: &mut Reader<'_>) -> Result<SignedTimeout, DecodeError> {
    Ok(SignedTimeout {
        epoch: Epoch(r.u64("timeout epoch")?),
        round: Round(r.u64("timeout round")?),
        high_qc_round: Round(r.u64("timeout high QC round")?),
        voter: read_index(r, "timeout voter")?,
        signature: r.signature("timeout signature")?,
    })
}

impl Wire for Evidence {
    const WHAT: &'static str = "evidence";
    fn write(&self, w: &mut Writer) {
        match self {
            Evidence::ConflictingVotes { first, second } => {
                w.u8(1);
                first.write(w);
                second.write(w);
            }
            Evidence::ConflictingProposals { first, second } => {
                w.u8(2);
                write_signed_proposal(w, first);
                write_signed_proposal(w, second);
            }
            Evidence::ConflictingTimeouts { first, second } => {
                w.u8(3);
                write_signed_timeout(w, first);
                write_signed_timeout(w, second);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("evidence tag")? {
            1 => Evidence::ConflictingVotes {
                first: Vote::read(r)?,
                second: Vote::read(r)?,
            },
            2 => Evidence::ConflictingProposals {
                first: read_signed_proposal(r)?,
                second: read_signed_proposal(r)?,
            },
            3 => Evidence::ConflictingTimeouts {
                first: read_signed_timeout(r)?,
                second: read_signed_timeout(r)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "evidence",
                    tag,
                });
            }
        })
    }
}

/// What a replica must have on stable storage before any vote, timeout or
/// proposal it signed leaves it (see [`crate::Ready`]). With it, a restarted
/// replica never signs two different votes, timeouts or proposals for one
/// round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyRecord {
    pub epoch: Epoch,
    /// The block the epoch started from.
    pub epoch_root: RootBlock,
    /// Highest round voted in, or timed out in (a replica that timed out a
    /// round no longer votes in it; DiemBFT v4 `highest_vote_round`).
    pub last_voted_round: Round,
    /// Highest QC round seen: the 2-chain lock. A timeout never reports a
    /// lower one.
    pub highest_qc_round: Round,
    /// Highest round this replica signed a timeout for.
    pub highest_timeout_round: Round,
    /// The last vote signed, resent unchanged rather than re-signed.
    pub last_vote: Option<Vote>,
    /// The last timeout signed, resent unchanged rather than re-signed.
    pub last_timeout: Option<Timeout>,
    /// Highest round this replica proposed a block in. A second, different
    /// proposal for one round is evidence of equivocation against its
    /// signer, so a replica restarted in a round it already proposed in
    /// leaves that round to time out. Encoded last and read as zero when
    /// absent, so records written before it was added still decode.
    pub last_proposed_round: Round,
}

impl SafetyRecord {
    /// The record of a replica that has never voted in `epoch`.
    pub fn fresh(epoch: Epoch, epoch_root: RootBlock) -> SafetyRecord {
        SafetyRecord {
            epoch,
            epoch_root,
            last_voted_round: Round::ZERO,
            highest_qc_round: Round::ZERO,
            highest_timeout_round: Round::ZERO,
            last_vote: None,
            last_timeout: None,
            last_proposed_round: Round::ZERO,
        }
    }
}

impl Wire for SafetyRecord {
    const WHAT: &'static str = "safety record";
    fn write(&self, w: &mut Writer) {
        w.u64(self.epoch.0);
        self.epoch_root.write(w);
        w.u64(self.last_voted_round.0);
        w.u64(self.highest_qc_round.0);
        w.u64(self.highest_timeout_round.0);
        match &self.last_vote {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                v.write(w);
            }
        }
        match &self.last_timeout {
            None => w.u8(0),
            Some(t) => {
                w.u8(1);
                t.write(w);
            }
        }
        w.u64(self.last_proposed_round.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SafetyRecord {
            epoch: Epoch(r.u64("record epoch")?),
            epoch_root: RootBlock::read(r)?,
            last_voted_round: Round(r.u64("record last voted round")?),
            highest_qc_round: Round(r.u64("record highest QC round")?),
            highest_timeout_round: Round(r.u64("record highest timeout round")?),
            last_vote: if r.flag("record last vote")? {
                Some(Vote::read(r)?)
            } else {
                None
            },
            last_timeout: if r.flag("record last timeout")? {
                Some(Timeout::read(r)?)
            } else {
                None
            },
            last_proposed_round: if r.remaining() == 0 {
                Round::ZERO
            } else {
                Round(r.u64("record last proposed round")?)
            },
        })
    }
}
