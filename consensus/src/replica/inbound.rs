//! How each message is routed: proposals through acceptance and voting,
//! votes and timeouts through the vote keeper, sync through sync.

use super::*;

impl Replica {
    // ----- messages --------------------------------------------------------

    pub(super) fn on_message(&mut self, from: PublicKey, message: Message) -> Result<(), Reject> {
        if self.epochs.is_awaiting() {
            return match self
                .epochs
                .on_message_while_waiting(self.epoch, from, message)?
            {
                WhileWaiting::Serve(request) => self.on_sync_request(from, request),
                WhileWaiting::Buffered => Ok(()),
            };
        }
        match message {
            Message::Proposal(p) => self.on_proposal(from, p),
            Message::Vote(v) => self.on_vote(from, v),
            Message::Timeout(t) => self.on_timeout(from, t),
            Message::SyncRequest(req) => self.on_sync_request(from, req),
            Message::SyncResponse(resp) => self.on_sync_response(from, resp),
        }
    }

    pub(super) fn on_proposal(
        &mut self,
        from: PublicKey,
        proposal: Proposal,
    ) -> Result<(), Reject> {
        let block = &proposal.block;
        let round = block.round();
        self.check_epoch(block.epoch(), from)?;
        let proposer = block.proposer();
        let proposer_key = self.key_of(proposer)?;
        // No round window here: a proposal far ahead is how a replica that
        // fell behind learns it did. Its certificates are checked before
        // they count, and a QC already checked costs nothing again.
        let (chain, max) = (&self.config.chain_id, self.config.payload_bytes_max);
        check_proposal(&proposal, &proposer_key, chain, self.epoch, max)?;
        self.verify_qc(block.justify())?;
        if let Some(tc) = block.timeout_cert() {
            self.verify_tc(tc)?;
        }
        // Certificates count whoever carried them.
        self.process_qc(block.justify().clone(), Some(from));
        if let Some(tc) = block.timeout_cert() {
            self.process_tc(tc.clone());
        }
        if self.epochs.is_awaiting() {
            return Err(Reject::AwaitingEpochChange {
                next: self.epoch.next(),
            });
        }
        self.pacemaker.check_window("proposal", round)?;
        // Equivocation: two signed proposals of one proposer in one round.
        let seen = self
            .votes
            .note_proposal(proposal.header(), &mut self.out.evidence)?;
        if seen == crate::vote_keeper::ProposalSeen::Again && self.blocks.tree.contains(&block.id())
        {
            return Ok(());
        }
        let leader = self.leader(round);
        if proposer != leader {
            let out = &mut self.out.messages;
            (self.sync).probe_commits(peers!(self), &self.blocks.tree, proposer_key, out);
            return Err(Reject::WrongLeader {
                round,
                proposer,
                leader,
            });
        }
        let block = proposal.block.clone();
        if !self.accept_block(block.clone(), from, Some(proposal.signature))? {
            return Ok(());
        }
        self.maybe_vote(&block)
    }

    /// Puts a block whose QC is verified into the tree, or among the orphans
    /// if its parent is missing. Returns true if it is in the tree.
    pub(super) fn accept_block(
        &mut self,
        block: Block,
        from: PublicKey,
        signature: Option<Signature>,
    ) -> Result<bool, Reject> {
        let id = block.id();
        let justify = signature.is_none().then(|| block.justify().clone());
        let (round, end) = (self.pacemaker.round(), self.epoch_end_height());
        let persist = &mut self.out.persist.blocks;
        match (self.blocks).place(block, from, signature, round, end, persist)? {
            Placed::Known => return Ok(true),
            Placed::Orphaned {
                parent,
                parent_height,
            } => {
                self.want(parent, parent_height, Some(from));
                return Ok(false);
            }
            Placed::Inserted => {}
        }
        self.sync.got(&id);
        // A block fetched by sync (not proposed to this replica) carries a
        // QC for its parent that this replica may never have seen, and that
        // QC may be the only one that commits the grandparent: a replica
        // that missed those rounds (crashed, partitioned) would otherwise
        // stay behind the others' commits, refuse every payload attesting
        // state it has not executed, and disagree on leaders (reputation
        // comes from the committed chain) until some later QC happened to
        // commit further. A proposal's QC is processed in `on_proposal`.
        if let Some(qc) = justify
            && qc.data.epoch == self.epoch
            && self.verify_qc(&qc).is_ok()
        {
            self.process_qc(qc, Some(from));
        }
        // Children that were waiting for this block.
        for child in self.blocks.children_of(&id) {
            let Some(orphan) = self.blocks.take_orphan(&child) else {
                continue;
            };
            let result = match orphan.signature {
                Some(signature) => self.on_proposal(
                    orphan.from,
                    Proposal {
                        block: orphan.block,
                        signature,
                    },
                ),
                None => self
                    .accept_block(orphan.block, orphan.from, None)
                    .map(|_| ()),
            };
            if let Err(e) = result {
                trace!(error = %e, "orphan refused");
            }
        }
        // A commit or a proposal that waited for blocks may go on now.
        if let Some((target, qc)) = self.commit.retry(&self.blocks.tree) {
            self.try_commit(target, &qc, None);
        }
        let (tree, highest) = (&self.blocks.tree, self.certs.highest());
        let parent_known = || tree.parent_info(&highest.block_id()).is_some();
        if self.proposer.take_waiting(parent_known) {
            self.start_proposal();
        }
        Ok(true)
    }

    pub(super) fn maybe_vote(&mut self, block: &Block) -> Result<(), Reject> {
        let (round, drift) = (self.pacemaker.round(), self.config.clock_drift_ms_max);
        let end = self.epoch_end_height();
        match (self.voter).decide(block, round, self.now, drift, self.me, end)? {
            Decision::Nothing => {}
            Decision::Vote => self.vote(block),
            Decision::Validate => self.out.requests.push(Request::ValidatePayload {
                block: block.clone(),
            }),
        }
        Ok(())
    }

    pub(super) fn vote(&mut self, block: &Block) {
        let Some(me) = self.me else { return };
        let vote = (self.voter).sign_vote(block, me, &self.key, &self.config.chain_id);
        let data = vote.data;
        let next = self.leader(data.round.next());
        debug!(
            height = data.height.0,
            round = data.round.0,
            validator = me.0,
            "vote"
        );
        if next == me {
            let outcome = (self.votes).add_vote(vote, true, &self.set, &self.config.chain_id);
            self.on_vote_outcome(outcome);
        } else if let Ok(key) = self.key_of(next) {
            self.send(Destination::To(key), Message::Vote(vote));
        }
    }

    pub(super) fn on_vote(&mut self, from: PublicKey, vote: Vote) -> Result<(), Reject> {
        let round = vote.data.round;
        self.check_epoch(vote.data.epoch, from)?;
        let key = self.key_of(vote.voter)?;
        let (proposer, set, me) = (&self.proposer, &self.set, self.me);
        let leads_next = || Some(proposer.leader(set, round.next())) == me;
        let (current, chain) = (self.pacemaker.round(), &self.config.chain_id);
        let evidence = &mut self.out.evidence;
        let outcome =
            (self.votes).on_vote(vote, &key, current, leads_next, &self.set, chain, evidence)?;
        self.on_vote_outcome(outcome);
        Ok(())
    }

    pub(super) fn on_timeout(&mut self, from: PublicKey, timeout: Timeout) -> Result<(), Reject> {
        let round = timeout.round;
        self.check_epoch(timeout.epoch, from)?;
        let key = self.key_of(timeout.voter)?;
        if round < self.pacemaker.round() {
            return Err(Reject::OldRound {
                what: "timeout",
                round,
                current: self.pacemaker.round(),
            });
        }
        if let Err(e) = self.pacemaker.check_window("timeout", round) {
            // Too far ahead to keep, but its QC (if valid) still tells this
            // replica how far behind it is.
            if self.verify_qc(&timeout.high_qc).is_ok() {
                self.process_qc(timeout.high_qc, Some(from));
            }
            return Err(e);
        }
        if timeout.high_qc.round() >= round {
            return Err(Reject::MalformedCertificate {
                what: "timeout",
                round,
                reason: "highest QC is not below the timeout's round",
            });
        }
        let header = timeout.header();
        let chain = &self.config.chain_id;
        let evidence = &mut self.out.evidence;
        if self.votes.check_timeout(header, &key, chain, evidence)? == TimeoutSeen::Duplicate {
            return Ok(());
        }
        self.verify_qc(&timeout.high_qc)?;
        if let Some(tc) = &timeout.last_round_tc {
            if tc.round.next() != round {
                return Err(Reject::MalformedCertificate {
                    what: "timeout",
                    round: tc.round,
                    reason: "last-round TC is not for the round before",
                });
            }
            self.verify_tc(tc)?;
        }
        self.process_qc(timeout.high_qc, Some(from));
        if let Some(tc) = timeout.last_round_tc {
            self.process_tc(tc);
        }
        if self.epochs.is_awaiting() {
            return Ok(());
        }
        let current = self.pacemaker.round();
        if let Some(tc) = self
            .votes
            .add_timeout(header, current, &self.set, self.epoch)
        {
            self.process_tc(tc);
        }
        // Jolteon Fig. 3, pacemaker: join a round's timeout once more than
        // a third of the power (at least one honest) has timed out, so timers
        // that drifted apart still produce a TC.
        if round == self.pacemaker.round()
            && self.voter.record().highest_timeout_round < round
            && let Some(power) = self.votes.timeout_power(round, &self.set)
            && self.set.is_validity(power)
        {
            self.local_timeout();
        }
        Ok(())
    }

    // ----- sync -----------------------------------------------------------

    pub(super) fn on_sync_request(
        &mut self,
        from: PublicKey,
        request: SyncRequest,
    ) -> Result<(), Reject> {
        let awaiting = self.epochs.is_awaiting();
        let out = &mut self.out.messages;
        let tree = &self.blocks.tree;
        self.sync
            .serve(peers!(self), tree, awaiting, from, request, out)
    }

    pub(super) fn on_sync_response(
        &mut self,
        from: PublicKey,
        response: SyncResponse,
    ) -> Result<(), Reject> {
        match response {
            SyncResponse::Ancestors { blocks } => {
                let mut accepted = 0usize;
                for block in blocks {
                    // Only ids this replica asked for, each certified by a
                    // verified QC or hash-linked to one: the id check is the
                    // verification.
                    if !self.sync.claim(&block.id()) {
                        continue;
                    }
                    accepted += 1;
                    let root = self.blocks.tree.root().height;
                    if block.epoch() != self.epoch || block.height() <= root {
                        continue;
                    }
                    if let Err(e) = self.accept_block(block, from, None) {
                        trace!(error = %e, "synced block refused");
                    }
                }
                if accepted == 0 {
                    return Err(Reject::Unsolicited {
                        what: "ancestor blocks",
                    });
                }
                Ok(())
            }
            SyncResponse::Committed { blocks, commit_qc } => {
                let asked = self.sync.claim_committed(from)?;
                let result = self.on_committed_range(from, blocks, commit_qc);
                if result.is_err()
                    && asked
                    && let Some(next) = peers!(self).next(&from)
                {
                    // The range asked for did not check out: ask the next
                    // peer now rather than after the retry period.
                    let out = &mut self.out.messages;
                    (self.sync).start_committed(peers!(self), &self.blocks.tree, next, out);
                }
                result
            }
        }
    }

    pub(super) fn on_committed_range(
        &mut self,
        from: PublicKey,
        blocks: Vec<Block>,
        commit_qc: QuorumCert,
    ) -> Result<(), Reject> {
        self.check_epoch(commit_qc.data.epoch, from)?;
        self.verify_qc(&commit_qc)?;
        let target = commit_target(&commit_qc)?;
        let blocks = check_range(blocks, self.blocks.tree.root(), target)?;
        // Hash-linked to a verified commit QC: these are the committed blocks.
        let persist = &mut self.out.persist.blocks;
        for id in self.blocks.insert_committed(blocks, persist)? {
            self.sync.got(&id);
        }
        self.process_qc(commit_qc, Some(from));
        if !self.epochs.is_awaiting() && self.sync.far_behind(self.blocks.tree.root().height) {
            let out = &mut self.out.messages;
            (self.sync).start_committed(peers!(self), &self.blocks.tree, from, out);
        }
        Ok(())
    }
}
