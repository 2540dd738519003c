//! Checking quorum and timeout certificates: structure, stake-weighted
//! quorum, then every signature in one parallel batch
//! ([`commons_types::batch`]).

use commons_types::batch::{VerifyItem, verify_all_ok};
use commons_types::{ChainId, Epoch, ValidatorSet};

use crate::Reject;
use crate::message::{QuorumCert, TimeoutCert};

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
