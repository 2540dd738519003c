//! Encoding round trips, canonical form, and fuzzing of every decoder.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chain, key};
use commons_consensus::{
    Block, BlockFields, Evidence, Message, Proposal, QuorumCert, RootBlock, SafetyRecord,
    SyncRequest, SyncResponse, Timeout, TimeoutCert, TimeoutSignature, Vote, VoteData,
};
use commons_types::{Epoch, Hash, Height, Round, Signature, ValidatorIndex};
use proptest::prelude::*;

fn vote_data(seed: u64) -> VoteData {
    VoteData {
        epoch: Epoch(seed % 3),
        round: Round(seed + 1),
        height: Height(seed),
        block_id: Hash::digest(&seed.to_be_bytes()),
        parent_id: Hash::digest(&(seed + 1).to_be_bytes()),
        parent_round: Round(seed),
    }
}

fn qc(seed: u64, signers: usize) -> QuorumCert {
    QuorumCert {
        data: vote_data(seed),
        signatures: (0..signers)
            .map(|i| (ValidatorIndex(i as u16 * 2), Signature([i as u8; 64])))
            .collect(),
    }
}

fn block(seed: u64, payload: Vec<u8>, with_tc: bool) -> Block {
    Block::new(BlockFields {
        epoch: Epoch(seed % 3),
        round: Round(seed + 2),
        height: Height(seed + 1),
        proposer: ValidatorIndex((seed % 7) as u16),
        timestamp_ms: seed * 1000,
        state_root: Hash::digest(b"root"),
        justify: qc(seed, 3),
        timeout_cert: with_tc.then(|| TimeoutCert {
            epoch: Epoch(seed % 3),
            round: Round(seed + 1),
            entries: vec![TimeoutSignature {
                voter: ValidatorIndex(1),
                high_qc_round: Round(seed),
                signature: Signature([7; 64]),
            }],
        }),
        payload,
    })
}

fn messages(seed: u64, payload: Vec<u8>, signers: usize, flag: bool) -> Vec<Message> {
    let k = key(0);
    let b = block(seed, payload, flag);
    let vote = Vote::sign(vote_data(seed), ValidatorIndex(3), &k, &chain());
    let timeout = Timeout::sign(
        Epoch(0),
        Round(seed + 5),
        qc(seed, signers),
        None,
        ValidatorIndex(2),
        &k,
        &chain(),
    );
    vec![
        Message::Proposal(Proposal::sign(b.clone(), &k, &chain())),
        Message::Vote(vote),
        Message::Timeout(timeout),
        Message::SyncRequest(SyncRequest::Ancestors {
            id: b.id(),
            count: 5,
        }),
        Message::SyncRequest(SyncRequest::Committed {
            epoch: Epoch(1),
            from_height: Height(seed),
        }),
        Message::SyncResponse(SyncResponse::Ancestors {
            blocks: vec![b.clone(), block(seed + 1, vec![], !flag)],
        }),
        Message::SyncResponse(SyncResponse::Committed {
            blocks: vec![b],
            commit_qc: qc(seed, signers),
        }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(seed in 0u64..1_000_000, payload in proptest::collection::vec(any::<u8>(), 0..300), signers in 0usize..20, flag: bool) {
        for m in messages(seed, payload.clone(), signers, flag) {
            let bytes = m.encode();
            let back = Message::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.encode(), bytes);
        }
    }

    #[test]
    fn decoded_block_id_is_the_hash_of_the_received_bytes(seed in 0u64..1_000_000, payload in proptest::collection::vec(any::<u8>(), 0..300), flag: bool) {
        let b = block(seed, payload, flag);
        let back = Block::decode(&b.encode()).unwrap();
        prop_assert_eq!(back.id(), b.id());
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Whatever decodes must be canonical: it re-encodes to the input.
        if let Ok(m) = Message::decode(&bytes) { prop_assert_eq!(m.encode(), bytes.clone()); }
        if let Ok(r) = SafetyRecord::decode(&bytes) {
            // A record of the format before `last_proposed_round` re-encodes
            // with that field appended, as zero.
            let mut old_format = bytes.clone();
            old_format.extend_from_slice(&0u64.to_be_bytes());
            let again = r.encode();
            prop_assert!(again == bytes || (r.last_proposed_round == Round::ZERO && again == old_format));
        }
        if let Ok(e) = Evidence::decode(&bytes) { prop_assert_eq!(e.encode(), bytes.clone()); }
        let _ = Block::decode(&bytes);
        let _ = QuorumCert::decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(seed in 0u64..1000, flip in 0usize..4000, cut in 0usize..4000) {
        for m in messages(seed, vec![1, 2, 3], 4, true) {
            let mut bytes = m.encode();
            let i = flip % bytes.len();
            bytes[i] ^= 0x5a;
            if let Ok(d) = Message::decode(&bytes) { prop_assert_eq!(d.encode(), bytes.clone()); }
            let c = cut % bytes.len();
            prop_assert!(Message::decode(&bytes[..c]).is_err());
        }
    }
}

#[test]
fn non_canonical_signer_order_is_refused() {
    let mut q = qc(1, 3);
    q.signatures.swap(0, 1);
    assert!(QuorumCert::decode(&q.encode()).is_err());
}

#[test]
fn safety_record_round_trips() {
    let k = key(1);
    let root = RootBlock::genesis(&chain(), Hash::digest(b"set"), Hash::ZERO, 0);
    let mut r = SafetyRecord::fresh(Epoch(2), root);
    r.last_voted_round = Round(9);
    r.last_vote = Some(Vote::sign(vote_data(3), ValidatorIndex(1), &k, &chain()));
    r.last_timeout = Some(Timeout::sign(
        Epoch(2),
        Round(9),
        qc(2, 3),
        None,
        ValidatorIndex(1),
        &k,
        &chain(),
    ));
    r.last_proposed_round = Round(8);
    assert_eq!(SafetyRecord::decode(&r.encode()).unwrap(), r);
    // A record written before `last_proposed_round` existed ends before it.
    let bytes = r.encode();
    let old = SafetyRecord::decode(&bytes[..bytes.len() - 8]).unwrap();
    assert_eq!(old.last_proposed_round, Round::ZERO);
    assert_eq!(old.last_voted_round, r.last_voted_round);
    // Anything but a whole round after the old end is refused.
    assert!(SafetyRecord::decode(&bytes[..bytes.len() - 3]).is_err());
}
