//! A miniature ledger that drives the governance rules the way the state
//! machine will: it escrows deposits, keeps one vote per voter, snapshots
//! stake copy-on-write, runs the end-of-block step and executes outcomes.
//! Shared by the table tests and the property tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use commons_governance::*;
use commons_types::{Amount, Height, PublicKey, Validator, ValidatorSet};

pub fn key(i: u8) -> PublicKey {
    PublicKey([i; 32])
}

pub fn change(name: &str, value: u64) -> ParamChange {
    ParamChange {
        name: name.into(),
        value,
    }
}

/// Short periods and small amounts so tests read easily: deposit period 10,
/// voting period 10, min deposit 100 (25 up front), at most 3 active.
pub fn test_params() -> ParamSet {
    ParamSet::default()
        .with_changes(&[
            change("deposit_period_blocks", 10),
            change("voting_period_blocks", 10),
            change("min_deposit", 100),
            change("min_initial_deposit_permille", 250),
            change("quorum_permille", 334),
            change("threshold_permille", 500),
            change("veto_permille", 334),
            change("max_active_proposals", 3),
        ])
        .expect("test parameters are in range")
}

pub fn content(action: ProposalAction) -> ProposalContent {
    ProposalContent {
        title: "A proposal".into(),
        description: "Why it matters.\nSecond line.".into(),
        action,
    }
}

#[derive(Debug)]
pub struct Chain {
    pub height: Height,
    pub params: ParamSet,
    pub validators: ValidatorSet,
    /// Current bonded stake.
    pub stake: BTreeMap<PublicKey, u64>,
    /// Pre-change stake, recorded on the first change of an account's stake
    /// while a proposal is in voting.
    pub cow: BTreeMap<(ProposalId, PublicKey), u64>,
    pub proposals: BTreeMap<ProposalId, Proposal>,
    pub votes: BTreeMap<ProposalId, BTreeMap<PublicKey, WeightedVote>>,
    pub next_id: u64,
    pub treasury: u64,
    pub excluded: BTreeSet<PublicKey>,
    pub upgrades: Vec<(String, Height)>,
    pub resolutions: Vec<Resolution>,
    /// Escrowed deposits per proposal and depositor, kept by the test and
    /// not read from the proposal record.
    pub escrow: BTreeMap<ProposalId, BTreeMap<PublicKey, u64>>,
    pub deposited: u128,
    pub returned: u128,
    pub burned: u128,
    pub execution_failures: Vec<(ProposalId, GovError)>,
}

impl StakeSnapshot for Chain {
    fn power_at_voting_start(&self, id: ProposalId, voter: &PublicKey) -> u64 {
        match self.cow.get(&(id, *voter)) {
            Some(&recorded) => recorded,
            None => self.stake.get(voter).copied().unwrap_or(0),
        }
    }
}

impl Chain {
    pub fn new(stakes: &[(u8, u64)]) -> Chain {
        let validators = ValidatorSet::new(
            (1..=4)
                .map(|i| Validator {
                    public_key: key(200 + i),
                    power: 10,
                })
                .collect(),
        )
        .expect("four validators of power 10 form a valid set");
        Chain {
            height: Height(1),
            params: test_params(),
            validators,
            stake: stakes.iter().map(|&(k, s)| (key(k), s)).collect(),
            cow: BTreeMap::new(),
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            next_id: 1,
            treasury: 1_000,
            excluded: BTreeSet::new(),
            upgrades: Vec::new(),
            resolutions: Vec::new(),
            escrow: BTreeMap::new(),
            deposited: 0,
            returned: 0,
            burned: 0,
            execution_failures: Vec::new(),
        }
    }

    pub fn gov(&self) -> GovParams {
        self.params.gov()
    }

    pub fn bonded_total(&self) -> u64 {
        self.stake.values().sum()
    }

    pub fn active(&self) -> u64 {
        self.proposals.values().filter(|p| p.is_active()).count() as u64
    }

    pub fn proposal(&self, id: ProposalId) -> &Proposal {
        &self.proposals[&id]
    }

    pub fn submit(
        &mut self,
        proposer: u8,
        content: ProposalContent,
        deposit: u64,
    ) -> Result<(ProposalId, DepositEffect), GovError> {
        // As the ledger does: the content arrives as bytes.
        let content = ProposalContent::decode(&content.encode())?;
        let id = ProposalId(self.next_id);
        let ctx = SubmitContext {
            height: self.height,
            params: &self.params,
            validators: &self.validators,
            active_proposals: self.active(),
            bonded_total: self.bonded_total(),
        };
        let (proposal, effect) =
            Proposal::submit(id, key(proposer), content, Amount(deposit), &ctx)?;
        assert_eq!(proposal.check(), Ok(()));
        self.next_id += 1;
        self.proposals.insert(id, proposal);
        self.escrow
            .entry(id)
            .or_default()
            .insert(key(proposer), deposit);
        self.deposited += u128::from(deposit);
        Ok((id, effect))
    }

    pub fn deposit(
        &mut self,
        id: ProposalId,
        who: u8,
        amount: u64,
    ) -> Result<DepositEffect, GovError> {
        let gov = self.gov();
        let bonded_total = self.bonded_total();
        let height = self.height;
        let proposal = self.proposals.get_mut(&id).expect("known proposal");
        let effect = proposal.add_deposit(height, key(who), Amount(amount), &gov, bonded_total)?;
        assert_eq!(proposal.check(), Ok(()));
        *self
            .escrow
            .entry(id)
            .or_default()
            .entry(key(who))
            .or_default() += amount;
        self.deposited += u128::from(amount);
        Ok(effect)
    }

    pub fn vote(&mut self, id: ProposalId, who: u8, vote: WeightedVote) -> Result<(), GovError> {
        let power = self.power_at_voting_start(id, &key(who));
        self.proposal(id)
            .check_vote(self.height, &key(who), power)?;
        self.votes.entry(id).or_default().insert(key(who), vote);
        Ok(())
    }

    /// Bond or unbond: records the pre-change stake for every proposal in
    /// voting that has no record for this account yet.
    pub fn set_stake(&mut self, who: u8, stake: u64) {
        let account = key(who);
        let before = self.stake.get(&account).copied().unwrap_or(0);
        for (id, p) in &self.proposals {
            if p.phase() == Phase::VotingPeriod {
                self.cow.entry((*id, account)).or_insert(before);
            }
        }
        self.stake.insert(account, stake);
    }

    /// The end-of-block step at the current height, then the next height.
    pub fn end_block(&mut self) -> Vec<Resolution> {
        let gov = self.gov();
        let height = self.height;
        let ids: Vec<ProposalId> = self.proposals.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            let due = self.proposals[&id].due(height);
            let resolution = match due {
                None => continue,
                Some(Due::DepositLapse) => self
                    .proposals
                    .get_mut(&id)
                    .expect("known proposal")
                    .lapse(height),
                Some(Due::Tally) => {
                    let empty = BTreeMap::new();
                    let votes = self.votes.get(&id).unwrap_or(&empty);
                    let counts = self.proposals[&id]
                        .count_votes(votes, &*self)
                        .expect("the snapshot is consistent with its total");
                    self.proposals
                        .get_mut(&id)
                        .expect("known proposal")
                        .conclude(height, counts, &gov)
                }
            }
            .expect("a due proposal resolves");
            self.settle(&resolution);
            out.push(resolution);
        }
        self.height = self.height.next();
        self.resolutions.extend(out.iter().cloned());
        out
    }

    fn settle(&mut self, r: &Resolution) {
        let escrow = self.escrow.remove(&r.id).unwrap_or_default();
        let escrowed: u64 = escrow.values().sum();
        let refunded: u64 = r.deposits.refunds.iter().map(|(_, a)| a.0).sum();
        assert_eq!(
            refunded + r.deposits.burned.0,
            escrowed,
            "conservation in {:?}",
            r.id
        );
        if !r.deposits.refunds.is_empty() {
            // Each depositor gets back exactly what the test saw it deposit.
            let back: BTreeMap<PublicKey, u64> =
                r.deposits.refunds.iter().map(|(k, a)| (*k, a.0)).collect();
            assert_eq!(back, escrow);
        }
        self.returned += u128::from(refunded);
        self.burned += u128::from(r.deposits.burned.0);
        self.cow.retain(|(id, _), _| *id != r.id);
        let Some(action) = &r.execute else {
            return;
        };
        let result = match action {
            ProposalAction::Text => Ok(()),
            ProposalAction::ParamChange(changes) => {
                self.params.with_changes(changes).map(|p| self.params = p)
            }
            ProposalAction::TreasurySpend { amount, .. } => {
                if amount.0 <= self.treasury {
                    self.treasury -= amount.0;
                    Ok(())
                } else {
                    Err(GovError::Overflow { what: "treasury" })
                }
            }
            ProposalAction::ValidatorChange(changes) => {
                apply_validator_changes(&self.validators, changes).map(|v| self.validators = v)
            }
            ProposalAction::ExcludeAccount { account } => {
                self.excluded.insert(*account);
                Ok(())
            }
            ProposalAction::ReinstateAccount { account } => {
                self.excluded.remove(account);
                Ok(())
            }
            ProposalAction::SoftwareUpgrade { name, height, .. } => {
                self.upgrades.push((name.clone(), *height));
                Ok(())
            }
        };
        if let Err(e) = result {
            self.execution_failures.push((r.id, e));
        }
    }

    /// Runs end-of-block steps until `id` finishes (at most 100 blocks).
    pub fn run_until_finished(&mut self, id: ProposalId) -> Resolution {
        for _ in 0..100 {
            if let Some(r) = self.end_block().into_iter().find(|r| r.id == id) {
                return r;
            }
        }
        panic!("proposal {id} did not finish");
    }

    /// Runs end-of-block steps until the current height is `height`.
    pub fn advance_to(&mut self, height: u64) {
        while self.height.0 < height {
            self.end_block();
        }
    }
}
