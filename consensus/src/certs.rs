//! Checking quorum and timeout certificates: structure, stake-weighted
//! quorum, then every signature in one parallel batch
//! ([`commons_types::batch`]); and the replica's certificates: the epoch's
//! root QC, the highest QC, and the QCs already checked.
//!
//! Rules (Jolteon, Gelashvili et al., FC 2022, §3 "certificates"; DiemBFT
//! v4 "BlockTree: qc_high"):
//!
//! - A QC is the epoch's signature-less root QC exactly, or votes of
//!   strictly more than two thirds of the epoch's power from distinct
//!   validators of the set for one vote data, every signature valid
//!   ([`verify_qc`]). A TC is the same over timeouts of one round, each
//!   signature over its own reported highest-QC round, every reported round
//!   below the TC's ([`verify_tc`]).
//! - Signers are listed in strictly increasing index order, one canonical
//!   form per certificate.
//! - The highest QC only rises ([`Certificates::raise`]); it is what a
//!   leader extends and what a timeout reports.
//! - A QC checked once is not checked again when an exact copy arrives
//!   ([`Certificates::verify_qc`]); the cache holds at most twice the
//!   pending tree's bound and forgets blocks that left the tree.

use std::collections::BTreeMap;

use commons_types::batch::{VerifyItem, verify_all_ok};
use commons_types::{ChainId, Epoch, Hash, ValidatorSet};

use crate::message::{QuorumCert, TimeoutCert};
use crate::tree::BlockTree;
use crate::{Reject, limits};

/// The root QC of the epoch, the highest QC, and the QCs already checked.
#[derive(Debug)]
pub(crate) struct Certificates {
    root_qc: QuorumCert,
    highest: QuorumCert,
    /// QCs already verified, by block id (only exact copies skip checks).
    verified: BTreeMap<Hash, QuorumCert>,
}

impl Certificates {
    pub(crate) fn new(root_qc: QuorumCert) -> Certificates {
        Certificates {
            highest: root_qc.clone(),
            root_qc,
            verified: BTreeMap::new(),
        }
    }

    pub(crate) fn root_qc(&self) -> &QuorumCert {
        &self.root_qc
    }

    pub(crate) fn highest(&self) -> &QuorumCert {
        &self.highest
    }

    /// Checks `qc` unless an exact copy was checked before; remembers it.
    pub(crate) fn verify_qc(
        &mut self,
        qc: &QuorumCert,
        chain: &ChainId,
        set: &ValidatorSet,
        epoch: Epoch,
    ) -> Result<(), Reject> {
        if self.verified.get(&qc.block_id()) == Some(qc) || *qc == self.root_qc {
            return Ok(());
        }
        verify_qc(qc, chain, set, epoch, &self.root_qc)?;
        if self.verified.len() < 2 * limits::MAX_PENDING_BLOCKS {
            self.verified.insert(qc.block_id(), qc.clone());
        }
        Ok(())
    }

    /// Remembers a QC known to be valid (formed here, or read back and
    /// checked).
    pub(crate) fn insert_verified(&mut self, qc: QuorumCert) {
        self.verified.insert(qc.block_id(), qc);
    }

    /// Makes `qc` the highest QC if it is higher; returns whether it was.
    pub(crate) fn raise(&mut self, qc: &QuorumCert) -> bool {
        if qc.round() > self.highest.round() {
            self.highest = qc.clone();
            true
        } else {
            false
        }
    }

    /// After a commit: forget QCs of blocks no longer in the tree.
    pub(crate) fn retain_tree(&mut self, tree: &BlockTree) {
        let root = tree.root().id;
        self.verified
            .retain(|id, _| *id == root || tree.contains(id));
    }
}

/// Strictly more than two thirds of the epoch's power (DESIGN "Quorum").
pub(crate) fn qc_has_quorum(set: &ValidatorSet, power: u64) -> bool {
    #[cfg(feature = "mutations")]
    if crate::mutations::is(crate::mutations::Mutation::QuorumTwoThirdsInclusive) {
        return 3 * u128::from(power) >= 2 * u128::from(set.total_power());
    }
    set.is_quorum(power)
}

/// Checks a QC of `epoch`: either exactly the epoch's root QC, or a quorum of
/// valid, distinct signers.
pub(crate) fn verify_qc(
    qc: &QuorumCert,
    chain: &ChainId,
    set: &ValidatorSet,
    epoch: Epoch,
    root_qc: &QuorumCert,
) -> Result<(), Reject> {
    let round = qc.round();
    if qc.data.epoch != epoch {
        return Err(Reject::WrongEpoch {
            got: qc.data.epoch,
            current: epoch,
        });
    }
    if qc.signatures.is_empty() {
        return if qc == root_qc {
            Ok(())
        } else {
            Err(Reject::MalformedCertificate {
                what: "quorum",
                round,
                reason: "no signatures and not the epoch's root QC",
            })
        };
    }
    if qc.data.parent_round >= round {
        return Err(Reject::MalformedCertificate {
            what: "quorum",
            round,
            reason: "parent round is not below the round",
        });
    }
    let power = signer_power(set, qc.signers(), "quorum", round)?;
    if !qc_has_quorum(set, power) {
        return Err(Reject::NoQuorum {
            what: "QC",
            power,
            needed: set.quorum_power(),
        });
    }
    let signed = qc.data.signing_bytes(chain);
    let items = qc
        .signatures
        .iter()
        .filter_map(|(i, s)| {
            set.get(*i).map(|v| VerifyItem {
                public_key: v.public_key,
                signed: &signed,
                signature: *s,
            })
        })
        .collect::<Vec<_>>();
    if verify_all_ok(&items) {
        Ok(())
    } else {
        Err(Reject::MalformedCertificate {
            what: "quorum",
            round,
            reason: "a signature does not verify",
        })
    }
}

/// Checks a TC of `epoch`: a quorum of distinct signers, each signature over
/// its own reported highest-QC round.
pub(crate) fn verify_tc(
    tc: &TimeoutCert,
    chain: &ChainId,
    set: &ValidatorSet,
    epoch: Epoch,
) -> Result<(), Reject> {
    let round = tc.round;
    if tc.epoch != epoch {
        return Err(Reject::WrongEpoch {
            got: tc.epoch,
            current: epoch,
        });
    }
    if tc.entries.iter().any(|e| e.high_qc_round >= round) {
        return Err(Reject::MalformedCertificate {
            what: "timeout",
            round,
            reason: "a reported QC round is not below the TC round",
        });
    }
    let power = signer_power(set, tc.entries.iter().map(|e| e.voter), "timeout", round)?;
    if !qc_has_quorum(set, power) {
        return Err(Reject::NoQuorum {
            what: "TC",
            power,
            needed: set.quorum_power(),
        });
    }
    let signed: Vec<Vec<u8>> = tc
        .entries
        .iter()
        .map(|e| crate::message::timeout_signing_bytes(chain, tc.epoch, round, e.high_qc_round))
        .collect();
    let items = tc
        .entries
        .iter()
        .zip(&signed)
        .filter_map(|(e, bytes)| {
            set.get(e.voter).map(|v| VerifyItem {
                public_key: v.public_key,
                signed: bytes,
                signature: e.signature,
            })
        })
        .collect::<Vec<_>>();
    if verify_all_ok(&items) {
        Ok(())
    } else {
        Err(Reject::MalformedCertificate {
            what: "timeout",
            round,
            reason: "a signature does not verify",
        })
    }
}

fn signer_power(
    set: &ValidatorSet,
    signers: impl Iterator<Item = commons_types::ValidatorIndex>,
    what: &'static str,
    round: commons_types::Round,
) -> Result<u64, Reject> {
    // Decoding already required strictly increasing indices (so distinct);
    // certificates built in memory are checked again here.
    let mut last = None;
    let mut indices = Vec::new();
    for i in signers {
        if last.is_some_and(|l| l >= i) {
            return Err(Reject::MalformedCertificate {
                what,
                round,
                reason: "signers are not strictly increasing",
            });
        }
        last = Some(i);
        indices.push(i);
    }
    set.power_of_set(indices)
        .ok_or(Reject::MalformedCertificate {
            what,
            round,
            reason: "a signer is not in the validator set",
        })
}
