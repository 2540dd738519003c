//! The DAO at the ledger level: proposals submitted, voted and executed by
//! transactions, with the outcome reaching consensus through the one
//! interface for it, `BlockOutcome::validator_set_change`, at the epoch
//! boundary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use commons_governance::{
    Param, ParamChange, Phase, ProposalAction, ProposalContent, ValidatorChange, VoteOption,
};
use commons_state_machine::ledger::gov::{gkey, load_proposal, load_tally};
use commons_state_machine::ledger::{
    BlockOutcome, Genesis, GenesisAccount, GenesisValidator, Ledger, NoneVerified, PreparedTx,
    Working,
};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, Height, PublicKey, SecretKey};
use prost::Message;

const CHAIN: &str = "gov-chain";

fn secret(i: u8) -> SecretKey {
    SecretKey::from_seed([i + 40; 32])
}

struct Chain {
    ledger: Ledger,
    nonces: BTreeMap<u8, u64>,
}

impl Chain {
    fn new() -> Chain {
        let mut params = BTreeMap::new();
        for (name, value) in [
            ("fee_base", 0),
            ("fee_per_byte", 0),
            ("min_deposit", 1_000),
            ("deposit_period_blocks", 5),
            ("voting_period_blocks", 10),
            ("epoch_length_blocks", 4),
            ("unbonding_period_blocks", 2),
        ] {
            params.insert(name.to_string(), value);
        }
        let genesis = Genesis {
            chain_id: ChainId::new(CHAIN).unwrap(),
            // Bonded stake 400, 300, 200, 100: the DAO's voting power.
            accounts: (0..4)
                .map(|i| GenesisAccount {
                    public_key: secret(i).public_key(),
                    balance: 10_000,
                    bonded: 400 - 100 * u64::from(i),
                })
                .collect(),
            validators: (0..4)
                .map(|i| GenesisValidator {
                    public_key: secret(i).public_key(),
                    power: 10,
                    address: format!("127.0.0.1:{}", 7000 + u16::from(i)),
                })
                .collect(),
            params,
            treasury: 50_000,
        };
        Chain {
            ledger: Ledger::in_memory(&genesis).unwrap(),
            nonces: BTreeMap::new(),
        }
    }

    fn tx(&mut self, signer: u8, kind: pb::action::Kind) -> PreparedTx {
        let nonce = self.nonces.entry(signer).or_insert(0);
        let body = pb::TxBody {
            chain_id: CHAIN.into(),
            nonce: *nonce,
            fee: 0,
            action: Some(pb::Action { kind: Some(kind) }),
        };
        *nonce += 1;
        PreparedTx::new(SignedTx::sign(
            body.encode_to_vec(),
            &ChainId::new(CHAIN).unwrap(),
            &[&secret(signer)],
        ))
    }

    fn propose(&mut self, signer: u8, action: ProposalAction, deposit: u64) -> PreparedTx {
        let content = ProposalContent {
            title: "A proposal".into(),
            description: "Tested at the ledger level.".into(),
            action,
        };
        self.tx(
            signer,
            pb::action::Kind::Propose(pb::Propose {
                content: content.encode().into(),
                deposit,
            }),
        )
    }

    fn vote(&mut self, signer: u8, id: u64, options: &[(VoteOption, u32)]) -> PreparedTx {
        self.tx(
            signer,
            pb::action::Kind::Vote(pb::Vote {
                proposal_id: id,
                options: options
                    .iter()
                    .map(|&(o, w)| pb::WeightedOption {
                        option: o.to_wire(),
                        weight_permille: w,
                    })
                    .collect(),
            }),
        )
    }

    fn block(&mut self, txs: Vec<PreparedTx>) -> BlockOutcome {
        let h = self.ledger.height().next();
        let executed = self.ledger.execute(h, &txs, &NoneVerified, &[]).unwrap();
        for r in &executed.outcome.receipts {
            assert_eq!(r.code, 0, "block {h}: {}", r.message);
        }
        executed.outcome
    }

    fn balance(&self, i: u8) -> u64 {
        self.ledger
            .account(&secret(i).public_key())
            .unwrap()
            .balance
    }
}

#[test]
fn validator_set_change_passed_by_vote_reaches_consensus_at_the_epoch_boundary() {
    let mut chain = Chain::new();
    let newcomer = SecretKey::from_seed([99; 32]).public_key();
    let propose = chain.propose(
        0,
        ProposalAction::ValidatorChange(vec![
            ValidatorChange::Add {
                key: newcomer,
                power: 10,
            },
            ValidatorChange::Remove {
                key: secret(3).public_key(),
            },
        ]),
        1_000,
    );
    // Block 1: the full deposit starts voting at once (window 1..=11).
    assert!(chain.block(vec![propose]).validator_set_change.is_none());
    assert_eq!(chain.balance(0), 9_000, "the deposit is escrowed");

    // Block 2: 400 yes, 300 split 70% yes / 30% abstain, 100 no.
    let votes = vec![
        chain.vote(0, 0, &[(VoteOption::Yes, 1000)]),
        chain.vote(1, 0, &[(VoteOption::Yes, 700), (VoteOption::Abstain, 300)]),
        chain.vote(3, 0, &[(VoteOption::No, 1000)]),
    ];
    chain.block(votes);

    // Block 3: accounts 3 and 2 unbond all their stake mid-vote. Account 3
    // voted before, account 2 votes after: both count with their snapshot
    // power (100 and 200), not their current stake of zero.
    let unbond3 = chain.tx(3, pb::action::Kind::Unbond(pb::Unbond { amount: 100 }));
    let unbond2 = chain.tx(2, pb::action::Kind::Unbond(pb::Unbond { amount: 200 }));
    chain.block(vec![unbond3, unbond2]);
    assert_eq!(
        chain
            .ledger
            .account(&secret(2).public_key())
            .unwrap()
            .bonded,
        0
    );
    // Block 4 is an epoch boundary, but nothing is decided yet.
    let late_vote = chain.vote(2, 0, &[(VoteOption::Yes, 1000)]);
    assert!(chain.block(vec![late_vote]).validator_set_change.is_none());

    // Block 5..=10: account 1 changes its vote in block 10.
    for _ in 5..10 {
        assert!(chain.block(vec![]).validator_set_change.is_none());
    }
    let changed = chain.vote(1, 0, &[(VoteOption::Yes, 1000)]);
    chain.block(vec![changed]);
    {
        let view = chain.ledger.view();
        let mut w = Working::new(&view);
        let counts = load_tally(&mut w, 0).unwrap();
        assert_eq!(
            (counts.yes, counts.no, counts.abstain, counts.no_with_veto),
            (900, 100, 0, 0)
        );
    }
    // Block 11: the tally runs and passes; the new set waits for the boundary.
    assert!(chain.block(vec![]).validator_set_change.is_none());
    assert_eq!(chain.balance(0), 10_000, "the deposit came back");
    {
        let view = chain.ledger.view();
        let mut w = Working::new(&view);
        let proposal = load_proposal(&mut w, 0).unwrap().unwrap();
        assert_eq!(proposal.phase(), Phase::Finished);
        assert!(w.get(&gkey::execution_failure(0)).unwrap().is_none());
    }
    // Block 12 is the boundary: consensus is handed the new set.
    let set = chain
        .block(vec![])
        .validator_set_change
        .expect("the epoch change");
    assert!(set.index_of(&newcomer).is_some());
    assert!(set.index_of(&secret(3).public_key()).is_none());
    assert_eq!(set.len(), 4);
    assert_eq!(chain.ledger.validator_set_in_force().unwrap(), set);
    // And only once.
    assert!(chain.block(vec![]).validator_set_change.is_none());
}

#[test]
fn parameter_change_takes_effect_and_invalid_change_is_refused_at_submission() {
    let mut chain = Chain::new();
    let bad = chain.propose(
        0,
        ProposalAction::ParamChange(vec![ParamChange {
            name: "fee_bsae".into(),
            value: 1,
        }]),
        1_000,
    );
    let h = chain.ledger.height().next();
    let executed = chain.ledger.execute(h, &[bad], &NoneVerified, &[]).unwrap();
    let receipt = &executed.outcome.receipts[0];
    assert_eq!(receipt.code, 17, "{}", receipt.message);
    assert!(receipt.message.contains("fee_bsae"), "{}", receipt.message);
    assert_eq!(
        chain.balance(0),
        10_000,
        "a refused proposal escrows nothing"
    );

    let good = chain.propose(
        0,
        ProposalAction::ParamChange(vec![ParamChange {
            name: "fee_base".into(),
            value: 3,
        }]),
        1_000,
    );
    chain.block(vec![good]);
    let votes = vec![
        chain.vote(0, 0, &[(VoteOption::Yes, 1000)]),
        chain.vote(1, 0, &[(VoteOption::Yes, 1000)]),
    ];
    chain.block(votes);
    while chain.ledger.height() < Height(12) {
        chain.block(vec![]);
    }
    let view = chain.ledger.view();
    let mut w = Working::new(&view);
    let params = commons_state_machine::ledger::LedgerParams::load(&mut w).unwrap();
    assert_eq!(params.set.get(Param::FeeBase), 3);
    assert_eq!(params.fee_base, 3);
    let _ = PublicKey([0; 32]);
}

/// Runs a proposal with `action` from submission to execution: proposed in
/// the next block, accounts 0 and 1 (700 of 1,000 power) vote yes, and
/// blocks run until its tally has executed.
fn pass(chain: &mut Chain, id: u64, action: ProposalAction) {
    let propose = chain.propose(0, action, 1_000);
    chain.block(vec![propose]);
    let votes = vec![
        chain.vote(0, id, &[(VoteOption::Yes, 1000)]),
        chain.vote(1, id, &[(VoteOption::Yes, 1000)]),
    ];
    chain.block(votes);
    let end = chain.ledger.height().0 - 1 + 10;
    while chain.ledger.height().0 < end {
        chain.block(vec![]);
    }
    let view = chain.ledger.view();
    let mut w = Working::new(&view);
    let proposal = load_proposal(&mut w, id).unwrap().unwrap();
    assert_eq!(proposal.phase(), Phase::Finished, "proposal {id}");
    assert!(
        w.get(&gkey::execution_failure(id)).unwrap().is_none(),
        "proposal {id} executed"
    );
}

#[test]
fn treasury_spend_exclusion_reinstatement_and_upgrade_execute() {
    let mut chain = Chain::new();
    let recipient = SecretKey::from_seed([77; 32]).public_key();

    pass(
        &mut chain,
        0,
        ProposalAction::TreasurySpend {
            recipient,
            amount: commons_types::Amount(12_345),
        },
    );
    assert_eq!(chain.ledger.account(&recipient).unwrap().balance, 12_345);
    let treasury = chain
        .ledger
        .store()
        .get(chain.ledger.height().0, b"mtreasury")
        .unwrap()
        .unwrap();
    assert_eq!(
        u64::from_be_bytes(treasury.try_into().unwrap()),
        50_000 - 12_345
    );

    let excluded = secret(3).public_key();
    pass(
        &mut chain,
        1,
        ProposalAction::ExcludeAccount { account: excluded },
    );
    assert!(chain.ledger.account(&excluded).unwrap().excluded);
    // An excluded account cannot send: its transfer is refused whole.
    let transfer = chain.tx(
        3,
        pb::action::Kind::Transfer(pb::Transfer {
            to: recipient.0.to_vec().into(),
            amount: 1,
        }),
    );
    let h = chain.ledger.height().next();
    let executed = chain
        .ledger
        .execute(h, &[transfer], &NoneVerified, &[])
        .unwrap();
    assert_eq!(
        executed.outcome.receipts[0].code, 10,
        "{}",
        executed.outcome.receipts[0].message
    );
    assert_eq!(
        chain.ledger.account(&excluded).unwrap().nonce,
        0,
        "nothing changed"
    );
    chain.nonces.insert(3, 0);

    pass(
        &mut chain,
        2,
        ProposalAction::ReinstateAccount { account: excluded },
    );
    assert!(!chain.ledger.account(&excluded).unwrap().excluded);
    let transfer = chain.tx(
        3,
        pb::action::Kind::Transfer(pb::Transfer {
            to: recipient.0.to_vec().into(),
            amount: 1,
        }),
    );
    chain.block(vec![transfer]);
    assert_eq!(chain.ledger.account(&recipient).unwrap().balance, 12_346);

    let at = Height(chain.ledger.height().0 + 100);
    pass(
        &mut chain,
        3,
        ProposalAction::SoftwareUpgrade {
            name: "v2".into(),
            height: at,
            info: "notes".into(),
        },
    );
    let stored = chain
        .ledger
        .store()
        .get(chain.ledger.height().0, gkey::UPGRADE)
        .unwrap();
    assert!(stored.is_some_and(|s| s.windows(2).any(|w| w == b"v2")));

    pass(&mut chain, 4, ProposalAction::Text);
}
