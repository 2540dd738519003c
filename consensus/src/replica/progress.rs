//! How certificates move the replica: the highest QC, the commit rule, the
//! rounds, the epoch's end and the next epoch, and proposing when this
//! replica leads.

use super::*;

impl Replica {
    // ----- certificates, rounds and commits ----------------------------

    pub(super) fn local_timeout(&mut self) {
        let round = self.pacemaker.round();
        let highest = self.certs.highest().round();
        self.pacemaker
            .restart_timer(self.now, &self.config, highest);
        let out = &mut self.out.messages;
        self.sync
            .probe_on_timeout(peers!(self), &self.blocks.tree, out);
        let Some(me) = self.me else { return };
        let tc = self.pacemaker.last_round_tc();
        let chain = &self.config.chain_id;
        let highest_qc = self.certs.highest();
        match (self.voter).timeout(self.epoch, round, highest_qc, tc, me, &self.key, chain) {
            TimeoutAction::Resend(t) => self.send(Destination::Broadcast, Message::Timeout(t)),
            TimeoutAction::New(t) => {
                let header = t.header();
                self.send(Destination::Broadcast, Message::Timeout(t));
                let current = self.pacemaker.round();
                if let Some(tc) = self
                    .votes
                    .add_timeout(header, current, &self.set, self.epoch)
                {
                    self.process_tc(tc);
                }
            }
            TimeoutAction::None => {}
        }
    }

    pub(super) fn advance_round(&mut self, round: Round, via_tc: Option<TimeoutCert>) {
        if self.epochs.is_awaiting() {
            return;
        }
        let highest = self.certs.highest().round();
        if !(self.pacemaker).enter(round, via_tc, self.now, &self.config, highest) {
            return;
        }
        self.voter.abandon_round();
        self.proposer.abandon_round();
        self.votes.prune(round);
        debug!(
            round = round.0,
            height = self.blocks.tree.root().height.0,
            "entered round"
        );
        if self.me.is_some() && self.leader(round) == self.me.unwrap_or_default() {
            self.start_proposal();
        }
    }

    pub(super) fn process_qc(&mut self, qc: QuorumCert, from: Option<PublicKey>) {
        debug_assert!(qc.data.epoch == self.epoch);
        if self.certs.raise(&qc) {
            self.voter.raise_qc_round(qc.round());
            self.out.persist.qcs.push(qc.clone());
            self.sync.saw_height(qc.data.height);
        }
        let tree = &self.blocks.tree;
        if qc.data.height > tree.root().height && !tree.contains(&qc.block_id()) {
            self.want(qc.block_id(), qc.data.height, from);
        }
        if let Some(target) = commit_rule(&qc.data) {
            if Height(qc.data.height.0.saturating_sub(1)) >= self.epoch_end_height() {
                // This QC commits the epoch's last block, and committing it
                // stops the rounds. Enter the next round first: its leader
                // proposes at once (an empty block above the epoch's end),
                // and that proposal is how the other replicas learn this QC
                // when its leader formed it. Otherwise they only learn it
                // by timing out the round and syncing.
                self.advance_round(qc.round().next(), None);
            }
            self.try_commit(target, &qc, from);
        }
        self.advance_round(qc.round().next(), None);
    }

    pub(super) fn process_tc(&mut self, tc: TimeoutCert) {
        if tc.round >= self.pacemaker.round() {
            let next = tc.round.next();
            self.advance_round(next, Some(tc));
        }
    }

    pub(super) fn try_commit(&mut self, target: Hash, qc: &QuorumCert, from: Option<PublicKey>) {
        if self.epochs.is_awaiting() {
            return;
        }
        match self.commit.plan(&mut self.blocks.tree, target, qc) {
            CommitStep::Chain(chain) => self.commit_chain(chain, qc),
            CommitStep::Missing { id, height } => self.want(id, height, from),
            CommitStep::Done | CommitStep::Conflicts => {}
        }
    }

    pub(super) fn commit_chain(&mut self, chain: Vec<Block>, qc: &QuorumCert) {
        let end = self.epoch_end_height();
        let election = self.proposer.election_mut();
        let committed = &mut self.out.committed;
        commit_chain(
            &mut self.blocks.tree,
            election,
            &self.set,
            chain,
            qc,
            end,
            committed,
        );
        if !self.out.persist.qcs.contains(qc) {
            self.out.persist.qcs.push(qc.clone());
        }
        self.certs.retain_tree(&self.blocks.tree);
        let root_height = self.blocks.tree.root().height;
        self.commit.committed_up_to(root_height);
        self.sync.committed_up_to(root_height);
        self.blocks.committed_up_to(root_height);
        if root_height >= end {
            self.enter_epoch_end();
        }
    }

    pub(super) fn on_vote_outcome(&mut self, outcome: VoteOutcome) {
        if let Some(qc) = outcome.qc {
            self.certs.insert_verified(qc.clone());
            self.process_qc(qc, None);
        }
    }

    // ----- epochs ----------------------------------------------------------

    pub(super) fn enter_epoch_end(&mut self) {
        let root = *self.blocks.tree.root();
        debug!(height = root.height.0, epoch = self.epoch.0, "epoch ends");
        let request = self.epochs.begin_wait(self.epoch, root);
        self.pacemaker.stop();
        self.voter.abandon_round();
        self.proposer.stop();
        self.out.requests.push(request);
    }

    pub(super) fn on_epoch_change(
        &mut self,
        epoch: Epoch,
        block_id: Hash,
        new_set: ValidatorSet,
    ) -> Result<(), Reject> {
        let root = self.epochs.accept_change(self.epoch, epoch, block_id)?;
        debug!(
            epoch = epoch.0,
            height = root.height.0,
            validators = new_set.len(),
            "new epoch"
        );
        self.epoch = epoch;
        self.me = new_set.index_of(&self.public_key);
        self.set = new_set;
        self.voter.new_epoch(epoch, root);
        self.blocks.tree.restart_epoch(root);
        self.blocks.clear_orphans();
        self.certs = Certificates::new(QuorumCert::root(epoch, &root));
        self.pacemaker.reset();
        self.proposer.reset(epoch);
        self.votes.clear();
        self.commit.clear();
        self.sync = Sync::default();
        self.advance_round(Round(1), None);
        let highest = self.certs.highest().round();
        self.pacemaker
            .restart_timer(self.now, &self.config, highest);
        for (from, message) in self.epochs.take_buffered() {
            if let Err(e) = self.on_message(from, message) {
                trace!(error = %e, "buffered message refused");
            }
        }
        Ok(())
    }

    // ----- proposing -----------------------------------------------------

    pub(super) fn start_proposal(&mut self) {
        let round = self.pacemaker.round();
        let highest = self.certs.highest();
        let parent = self.blocks.tree.parent_info(&highest.block_id());
        let (tc, end) = (self.pacemaker.tc_for(round), self.epoch_end_height());
        let record = self.voter.record();
        match (self.proposer).plan(round, record, highest, parent, tc, end) {
            Plan::Skip => {}
            Plan::FetchParent { id, height } => self.want(id, height, None),
            Plan::Empty(pending) => {
                let state_root = pending.parent.state_root;
                self.propose(pending, Vec::new(), state_root);
            }
            Plan::AskPayload(request) => self.out.requests.push(request),
        }
    }

    pub(super) fn propose(&mut self, pending: PendingProposal, payload: Vec<u8>, state_root: Hash) {
        let Some(me) = self.me else { return };
        assert_eq!(pending.round, self.pacemaker.round());
        // Persisted before the proposal leaves (`poll_ready` checks it).
        if !self.voter.note_proposed(pending.round) {
            return;
        }
        let block = build_block(pending, self.epoch, me, self.now, payload, state_root);
        let proposal = Proposal::sign(block.clone(), &self.key, &self.config.chain_id);
        debug!(
            height = block.height().0,
            round = block.round().0,
            validator = me.0,
            "propose"
        );
        self.votes.note_own_proposal(proposal.header());
        self.send(Destination::Broadcast, Message::Proposal(proposal));
        let from = self.public_key;
        match self.accept_block(block.clone(), from, None) {
            Ok(true) => {
                if let Err(e) = self.maybe_vote(&block) {
                    debug!(round = block.round().0, error = %e, "no vote for own block");
                }
            }
            Ok(false) => {}
            Err(e) => debug!(round = block.round().0, error = %e, "own block refused"),
        }
    }
}
