//! The client: a connection to one node, the trust store, and one method per
//! query whose answer is verified before it is returned (see [`crate::light`]).
//!
//! The node's answers carry convenience fields (an `Account` message next to
//! the proven bytes of the account). A verified read decodes the proven
//! bytes itself and refuses the answer if the convenience fields say
//! anything else ([`VerifyError::AnswerContradictsProof`]). With
//! verification off (`--no-verify`, debugging only) the convenience fields
//! are returned as the node sent them.

use std::future::Future;
use std::time::{Duration, Instant};

use commons_governance::ParamSet;
use commons_governance::{Proposal, TallyCounts, WeightedVote};
use commons_proto::v1 as api;
use commons_proto::v1::query_client::QueryClient;
use commons_proto::v1::tx_client::TxClient;
use commons_state_machine::executed_txs;
use commons_state_machine::ledger::api::{account_from_pb, account_pb, lease_pb, settlement_pb};
use commons_state_machine::ledger::gov::{decode_vote, gkey};
use commons_state_machine::ledger::params::decode_set;
use commons_state_machine::ledger::state::key;
use commons_state_machine::ledger::{Account, Lease, Resource, Settlement};
use commons_types::codec::Reader;
use commons_types::tx::SignedTx;
use commons_types::{Hash, Height, PublicKey, ValidatorSet};
use serde::Serialize;
use tonic::transport::Channel;

use crate::error::ClientError;
use crate::light::{TrustStore, VerifiedBlock, VerifiedRoot, VerifyError};
use crate::limits;
use crate::txbuild::FeeSchedule;

/// A value and the certified root it was checked against (`None` when
/// verification is off).
#[derive(Debug, Clone)]
pub struct Checked<T> {
    pub value: T,
    pub root: Option<VerifiedRoot>,
}

/// A committed block, checked against its certificate, with the
/// transactions the node listed for it.
#[derive(Debug, Clone)]
pub struct CheckedBlock {
    pub response: api::BlockResponse,
    /// `None` when verification is off.
    pub verified: Option<VerifiedBlock>,
}

/// A proposal with its running tally.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalView {
    pub proposal: Proposal,
    pub tally: TallyCounts,
}

#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    query: QueryClient<Channel>,
    tx: TxClient<Channel>,
    trust: TrustStore,
    verify: bool,
    trust_changed: bool,
}

impl Client {
    /// Connects to `url`; `verify = false` only for debugging.
    pub async fn connect(
        url: &str,
        trust: TrustStore,
        verify: bool,
    ) -> Result<Client, ClientError> {
        let connect_err = |reason: String| ClientError::Connect {
            url: url.to_string(),
            reason,
        };
        let endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| connect_err(format!("not a valid URL: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_err(error_chain(&e)))?;
        Ok(Client {
            url: url.to_string(),
            query: QueryClient::new(channel.clone())
                .max_decoding_message_size(limits::MAX_RESPONSE_BYTES),
            tx: TxClient::new(channel).max_decoding_message_size(limits::MAX_RESPONSE_BYTES),
            trust,
            verify,
            trust_changed: false,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// True if the client learned a new epoch's set (the caller persists it).
    pub fn trust_changed(&self) -> bool {
        self.trust_changed
    }

    pub fn verifying(&self) -> bool {
        self.verify
    }

    /// Asks the node for its validator set and learns it if it is of a
    /// newer epoch (see [`TrustStore::learn`]).
    pub async fn sync_trust(&mut self) -> Result<(), ClientError> {
        let r = self
            .query
            .clone()
            .get_validator_set(api::ValidatorSetRequest {})
            .await?
            .into_inner();
        if self.trust.learn(&r)?.is_some() {
            self.trust_changed = true;
        }
        Ok(())
    }

    /// Fetches an answer with `fetch` and verifies `proof_of(answer)` for
    /// `k`. An answer of an epoch the client does not know yet makes it
    /// learn newer sets and ask again, a bounded number of times.
    async fn fetch_verified<R, Fut>(
        &mut self,
        k: &[u8],
        fetch: impl Fn(QueryClient<Channel>) -> Fut,
        proof_of: impl Fn(&R) -> Option<&api::StateProof>,
    ) -> Result<(R, Option<VerifiedRoot>, Option<Vec<u8>>), ClientError>
    where
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            let r = fetch(self.query.clone()).await?.into_inner();
            let p = proof_of(&r).ok_or(VerifyError::Missing {
                what: "state proof",
            })?;
            if !self.verify {
                let value = p.present.then(|| p.value.to_vec());
                return Ok((r, None, value));
            }
            match self.trust.verify_state(p, k) {
                Ok((root, value)) => return Ok((r, Some(root), value)),
                Err(VerifyError::UnknownEpoch { epoch, .. })
                    if attempt < limits::EPOCH_SYNC_ATTEMPTS && epoch > self.trust.latest().0 =>
                {
                    attempt += 1;
                    self.sync_trust().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Verifies a second proof against the certificate of a first one.
    fn also_verify(
        &self,
        p: Option<&api::StateProof>,
        k: &[u8],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let p = p.ok_or(VerifyError::Missing {
            what: "second state proof",
        })?;
        if !self.verify {
            return Ok(p.present.then(|| p.value.to_vec()));
        }
        Ok(self.trust.verify_state(p, k)?.1)
    }

    pub async fn account(
        &mut self,
        id: PublicKey,
    ) -> Result<Checked<Option<Account>>, ClientError> {
        let req = api::AccountRequest {
            account: id.0.to_vec().into(),
        };
        let (r, root, value) = self
            .fetch_verified(
                &key::account(&id),
                move |mut q| {
                    let req = req.clone();
                    async move { q.get_account(req).await }
                },
                |r: &api::AccountResponse| r.proof.as_ref(),
            )
            .await?;
        if !self.verify {
            return Ok(Checked {
                value: r.account.as_ref().map(account_from_pb),
                root,
            });
        }
        let proven = value
            .map(|v| decode("account", Account::decode(&v)))
            .transpose()?;
        let proven_pb = proven.as_ref().map(account_pb);
        if proven_pb != r.account {
            return Err(account_contradiction(
                r.account.as_ref(),
                proven_pb.as_ref(),
            ));
        }
        Ok(Checked {
            value: proven,
            root,
        })
    }

    pub async fn lease(&mut self, id: u64) -> Result<Checked<Option<Lease>>, ClientError> {
        let req = api::LeaseRequest { lease_id: id };
        let (r, root, value) = self
            .fetch_verified(
                &key::lease(id),
                move |mut q| async move { q.get_lease(req).await },
                |r: &api::LeaseResponse| r.proof.as_ref(),
            )
            .await?;
        if !self.verify {
            let lease = r.lease.as_ref().map(lease_of_pb).transpose()?;
            return Ok(Checked { value: lease, root });
        }
        let proven = value
            .map(|v| decode("lease", Lease::decode(&v)))
            .transpose()?;
        let proven_pb = proven.as_ref().map(lease_pb);
        if proven_pb != r.lease {
            return Err(contradiction("the lease", &r.lease, &proven_pb));
        }
        Ok(Checked {
            value: proven,
            root,
        })
    }

    pub async fn settlement(
        &mut self,
        marketplace: PublicKey,
        trade_id: u64,
    ) -> Result<Checked<Option<Settlement>>, ClientError> {
        let req = api::SettlementRequest {
            marketplace: marketplace.0.to_vec().into(),
            trade_id,
        };
        let (r, root, value) = self
            .fetch_verified(
                &key::settlement(&marketplace, trade_id),
                move |mut q| {
                    let req = req.clone();
                    async move { q.get_settlement(req).await }
                },
                |r: &api::SettlementResponse| r.proof.as_ref(),
            )
            .await?;
        if !self.verify {
            let s = r.settlement.as_ref().map(settlement_of_pb).transpose()?;
            return Ok(Checked { value: s, root });
        }
        let proven = value
            .map(|v| decode("settlement", Settlement::decode(&v)))
            .transpose()?;
        let proven_pb = proven.as_ref().map(settlement_pb);
        if proven_pb != r.settlement {
            return Err(contradiction("the settlement", &r.settlement, &proven_pb));
        }
        Ok(Checked {
            value: proven,
            root,
        })
    }

    pub async fn proposal(
        &mut self,
        id: u64,
    ) -> Result<Checked<Option<ProposalView>>, ClientError> {
        let req = api::ProposalRequest { proposal_id: id };
        let (r, root, value) = self
            .fetch_verified(
                &gkey::proposal(id),
                move |mut q| async move { q.get_proposal(req).await },
                |r: &api::ProposalResponse| r.proof.as_ref(),
            )
            .await?;
        let tally_value = self.also_verify(r.tally_proof.as_ref(), &gkey::tally(id))?;
        let (json, tally) = if self.verify {
            let json = value
                .map(|v| {
                    String::from_utf8(v).map_err(|e| VerifyError::Decode {
                        what: "proposal",
                        reason: e.to_string(),
                    })
                })
                .transpose()?
                .unwrap_or_default();
            if json != r.proposal_json {
                return Err(contradiction("the proposal", &r.proposal_json, &json));
            }
            let tally = match tally_value {
                Some(v) => decode_tally(&v)?,
                None => TallyCounts::default(),
            };
            let answered = r.tally.unwrap_or_default();
            if tally_pb(&tally) != answered {
                return Err(contradiction("the tally", &answered, &tally_pb(&tally)));
            }
            (json, tally)
        } else {
            let t = r.tally.unwrap_or_default();
            (
                r.proposal_json.clone(),
                TallyCounts {
                    yes: t.yes,
                    no: t.no,
                    abstain: t.abstain,
                    no_with_veto: t.no_with_veto,
                },
            )
        };
        if json.is_empty() {
            return Ok(Checked { value: None, root });
        }
        let proposal: Proposal = serde_json::from_str(&json).map_err(|e| VerifyError::Decode {
            what: "proposal",
            reason: e.to_string(),
        })?;
        if proposal.id().0 != id {
            return Err(contradiction("the proposal id", &id, &proposal.id().0));
        }
        Ok(Checked {
            value: Some(ProposalView { proposal, tally }),
            root,
        })
    }

    pub async fn vote_of(
        &mut self,
        id: u64,
        voter: PublicKey,
    ) -> Result<Checked<Option<WeightedVote>>, ClientError> {
        let req = api::VotesRequest {
            proposal_id: id,
            voter: voter.0.to_vec().into(),
        };
        let (r, root, value) = self
            .fetch_verified(
                &gkey::vote(id, &voter),
                move |mut q| {
                    let req = req.clone();
                    async move { q.get_votes(req).await }
                },
                |r: &api::VotesResponse| r.proof.as_ref(),
            )
            .await?;
        if !self.verify {
            let entries = r.options.iter().map(|o| (o.option, o.weight_permille));
            let vote = if r.options.is_empty() {
                None
            } else {
                Some(
                    WeightedVote::from_wire(entries)
                        .map_err(|e| ClientError::Rpc(e.to_string()))?,
                )
            };
            return Ok(Checked { value: vote, root });
        }
        let vote = value.map(|v| decode("vote", decode_vote(&v))).transpose()?;
        let proven_pb: Vec<api::WeightedOption> = vote
            .as_ref()
            .map(|v| {
                v.entries()
                    .iter()
                    .map(|(o, w)| api::WeightedOption {
                        option: o.to_wire(),
                        weight_permille: u32::from(*w),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if proven_pb != r.options {
            return Err(contradiction("the vote", &r.options, &proven_pb));
        }
        Ok(Checked { value: vote, root })
    }

    pub async fn params(&mut self) -> Result<Checked<ParamSet>, ClientError> {
        let (r, root, value) = self
            .fetch_verified(
                key::PARAMS,
                |mut q| async move { q.get_params(api::ParamsRequest {}).await },
                |r: &api::ParamsResponse| r.proof.as_ref(),
            )
            .await?;
        if !self.verify {
            let map: std::collections::BTreeMap<String, u64> = r.params.into_iter().collect();
            let set = ParamSet::try_from(map).map_err(|e| ClientError::Rpc(e.to_string()))?;
            return Ok(Checked { value: set, root });
        }
        let bytes = value.ok_or(VerifyError::Missing {
            what: "parameters in the proven state",
        })?;
        let set = decode("parameters", decode_set(&bytes))?;
        let proven: std::collections::BTreeMap<String, u64> = set.clone().into();
        let answered: std::collections::BTreeMap<String, u64> = r.params.into_iter().collect();
        if proven != answered {
            return Err(contradiction("the parameters", &answered, &proven));
        }
        Ok(Checked { value: set, root })
    }

    pub async fn fee_schedule(&mut self) -> Result<FeeSchedule, ClientError> {
        let set = self.params().await?.value;
        Ok(FeeSchedule {
            fee_base: set.get(commons_governance::Param::FeeBase),
            fee_per_byte: set.get(commons_governance::Param::FeePerByte),
        })
    }

    /// The validator set in force, proven, and the node's own (unproven)
    /// consensus epoch.
    pub async fn validator_set(&mut self) -> Result<Checked<(ValidatorSet, u64)>, ClientError> {
        let (r, root, value) = self
            .fetch_verified(
                key::VALIDATORS,
                |mut q| async move { q.get_validator_set(api::ValidatorSetRequest {}).await },
                |r: &api::ValidatorSetResponse| r.proof.as_ref(),
            )
            .await?;
        let set = if self.verify {
            let bytes = value.ok_or(VerifyError::Missing {
                what: "validator set in the proven state",
            })?;
            let set = decode(
                "validator set",
                commons_state_machine::ledger::gov::decode_validator_set(&bytes),
            )?;
            if crate::light::validators_pb(&set) != r.validators {
                return Err(contradiction(
                    "the validator set",
                    &r.validators.len(),
                    &set.len(),
                ));
            }
            set
        } else {
            ValidatorSet::new(
                r.validators
                    .iter()
                    .map(|v| {
                        Ok(commons_types::Validator {
                            public_key: PublicKey::from_slice(&v.public_key)?,
                            power: v.power,
                        })
                    })
                    .collect::<Result<Vec<_>, commons_types::TypesError>>()
                    .map_err(|e| ClientError::Rpc(e.to_string()))?,
            )
            .map_err(|e| ClientError::Rpc(e.to_string()))?
        };
        Ok(Checked {
            value: (set, r.consensus_epoch),
            root,
        })
    }

    /// A committed block with its certificate checked, and every transaction
    /// the node lists for it found in the certified payload.
    pub async fn block(&mut self, height: u64) -> Result<CheckedBlock, ClientError> {
        let mut attempt = 0;
        loop {
            let r = self
                .query
                .clone()
                .get_block(api::BlockRequest { height })
                .await?
                .into_inner();
            if !self.verify {
                return Ok(CheckedBlock {
                    response: r,
                    verified: None,
                });
            }
            match self.trust.verify_block(&r) {
                Ok(v) => {
                    let ids: std::collections::BTreeSet<Hash> =
                        executed_txs(&v.block).iter().map(|t| t.id).collect();
                    for t in &r.txs {
                        let id = Hash::from_slice(&t.tx_id).map_err(|e| VerifyError::Decode {
                            what: "tx id",
                            reason: e.to_string(),
                        })?;
                        // The id the node names must be the listed
                        // transaction's own (body and signers).
                        let own_id =
                            t.tx.clone()
                                .and_then(|tx| SignedTx::from_proto(tx).ok())
                                .map(|tx| tx.id())
                                .unwrap_or(Hash::ZERO);
                        if !ids.contains(&id) || own_id != id {
                            return Err(VerifyError::AnswerContradictsProof {
                                what: "the block's transactions",
                                answered: format!("transaction {id}"),
                                proven: "not in the certified block".into(),
                            }
                            .into());
                        }
                    }
                    return Ok(CheckedBlock {
                        response: r,
                        verified: Some(v),
                    });
                }
                Err(VerifyError::UnknownEpoch { epoch, .. })
                    if attempt < limits::EPOCH_SYNC_ATTEMPTS && epoch > self.trust.latest().0 =>
                {
                    attempt += 1;
                    self.sync_trust().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The newest certified state root the node has, verified.
    pub async fn latest(&mut self) -> Result<(u64, Option<VerifiedRoot>), ClientError> {
        let mut attempt = 0;
        loop {
            let r = self
                .query
                .clone()
                .get_latest_commit(api::LatestCommitRequest {})
                .await?
                .into_inner();
            let Some(c) = r.certified.as_ref() else {
                return Ok((r.height, None));
            };
            if !self.verify {
                return Ok((r.height, None));
            }
            match self.trust.verify_certified(c) {
                Ok(root) => return Ok((r.height, Some(root))),
                Err(VerifyError::UnknownEpoch { epoch, .. })
                    if attempt < limits::EPOCH_SYNC_ATTEMPTS && epoch > self.trust.latest().0 =>
                {
                    attempt += 1;
                    self.sync_trust().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The number of proposals ever submitted: ids run from 0 without gaps
    /// and are never deleted, so the first absent id is the count, found
    /// with O(log n) verified queries.
    pub async fn proposal_count(&mut self) -> Result<u64, ClientError> {
        let mut hi = 1u64;
        while self.proposal(hi - 1).await?.value.is_some() {
            if hi >= limits::MAX_LISTED_PROPOSALS {
                return Ok(hi);
            }
            hi = (hi * 2).min(limits::MAX_LISTED_PROPOSALS);
        }
        // Proposal hi - 1 is absent; find the first absent id in [lo, hi).
        let mut lo = hi / 2;
        if lo == 0 {
            return Ok(0);
        }
        // Invariant: lo - 1 present, hi - 1 absent.
        while lo < hi - 1 {
            let mid = lo + (hi - lo) / 2;
            if self.proposal(mid).await?.value.is_some() {
                lo = mid + 1;
            } else {
                hi = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Next nonce of `account` (0 if it does not exist yet).
    pub async fn next_nonce(&mut self, account: PublicKey) -> Result<u64, ClientError> {
        Ok(self
            .account(account)
            .await?
            .value
            .map(|a| a.nonce)
            .unwrap_or(0))
    }

    /// Submits a signed transaction; returns its id.
    pub async fn submit(&mut self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let r = self
            .tx
            .clone()
            .submit(tx.to_proto())
            .await
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument | tonic::Code::AlreadyExists => {
                    ClientError::Rejected(s.message().to_string())
                }
                tonic::Code::ResourceExhausted => {
                    ClientError::Rejected(format!("{} (retry later)", s.message()))
                }
                _ => ClientError::from(s),
            })?;
        let r = r.into_inner();
        if r.code != api::SubmitCode::Accepted as i32 {
            return Err(ClientError::Rejected(r.error));
        }
        Ok(tx.id())
    }

    /// Waits until `tx` is committed (at most `timeout`) and its effect is
    /// in the newest certified state, then checks that it is really in:
    /// the including block's certificate shows this exact envelope in the
    /// block, or, for a block whose certificate the node does not keep (an
    /// epoch's last), the verified state shows the payer's nonce consumed
    /// (the weaker [`Inclusion::PayerNonceConsumed`]). Returns the receipt
    /// (its code and message are the node's word: blocks carry no receipt
    /// root to check them against) and how inclusion was checked.
    pub async fn wait_committed(
        &mut self,
        tx: &SignedTx,
        timeout: Duration,
    ) -> Result<Committed, ClientError> {
        let id = tx.id();
        let deadline = Instant::now() + timeout;
        let status = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().clamp(1, 60_000) as u32;
            let status = self
                .tx
                .clone()
                .wait_committed(api::WaitCommittedRequest {
                    tx_id: id.0.to_vec().into(),
                    timeout_ms: ms,
                })
                .await?
                .into_inner();
            if status.state == api::TxState::Committed as i32
                || status.state == api::TxState::Rejected as i32
                || Instant::now() >= deadline
            {
                break status;
            }
        };
        let state = api::TxState::try_from(status.state).unwrap_or(api::TxState::Unknown);
        match state {
            api::TxState::Committed => {}
            api::TxState::Rejected => return Err(ClientError::Rejected(status.reason)),
            other => {
                return Err(ClientError::Timeout {
                    tx_id: id.to_hex(),
                    secs: timeout.as_secs(),
                    state: format!("{other:?}").to_lowercase(),
                });
            }
        }
        let receipt = status.receipt.ok_or(VerifyError::Missing {
            what: "receipt of the committed transaction",
        })?;
        // Return once the effect is provable: reads right after this see it.
        loop {
            let (height, root) = self.latest().await?;
            let provable = root.map(|r| r.state_height).unwrap_or(height);
            if provable >= receipt.height {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    tx_id: id.to_hex(),
                    secs: timeout.as_secs(),
                    state: format!(
                        "committed at height {}, but the node proves state only up to {provable}",
                        receipt.height
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let inclusion = if self.verify {
            self.check_inclusion(tx, &receipt).await?
        } else {
            Inclusion::Unverified
        };
        if receipt.code != 0 {
            return Err(ClientError::TxFailed {
                tx_id: id.to_hex(),
                height: receipt.height,
                message: receipt.message.clone(),
            });
        }
        Ok(Committed { receipt, inclusion })
    }

    async fn check_inclusion(
        &mut self,
        tx: &SignedTx,
        receipt: &api::Receipt,
    ) -> Result<Inclusion, ClientError> {
        // By envelope: the id leaves the signatures out, and the same
        // transaction may be in the block under a forged signature.
        let (_, envelope) = tx.id_and_envelope_hash();
        let refuse = |proven: &str| -> ClientError {
            VerifyError::AnswerContradictsProof {
                what: "the transaction's commit",
                answered: format!("committed in block {}", receipt.height),
                proven: proven.to_string(),
            }
            .into()
        };
        match self.block(receipt.height).await {
            Ok(block) => {
                let included = block.verified.as_ref().is_some_and(|v| {
                    executed_txs(&v.block)
                        .iter()
                        .any(|t| t.envelope == envelope)
                });
                if included {
                    Ok(Inclusion::CertifiedBlock)
                } else {
                    Err(refuse("the certified block does not contain it"))
                }
            }
            Err(ClientError::Verify(VerifyError::Missing { .. })) => {
                let payer = tx.fee_payer().ok_or_else(|| refuse("it has no signer"))?;
                let nonce = tx
                    .decode_body()
                    .map_err(|e| ClientError::Usage(e.to_string()))?
                    .nonce;
                let account = self.account(payer).await?.value;
                if account.is_some_and(|a| a.nonce > nonce) {
                    Ok(Inclusion::PayerNonceConsumed)
                } else {
                    Err(refuse(
                        "the payer's nonce is not consumed in the certified state",
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// A committed transaction: its receipt, and how its inclusion was checked.
#[derive(Clone, Debug)]
pub struct Committed {
    pub receipt: api::Receipt,
    pub inclusion: Inclusion,
}

/// How [`Client::wait_committed`] checked that a transaction is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inclusion {
    /// The certified block at the receipt's height carries this exact
    /// envelope (body and signatures).
    CertifiedBlock,
    /// The block has no certificate the node keeps (an epoch's last): the
    /// certified state shows the payer's nonce consumed. Some transaction
    /// of that payer and nonce committed, not necessarily this one.
    PayerNonceConsumed,
    /// Not checked: verification is off.
    Unverified,
}

impl Inclusion {
    /// What a report says of it.
    pub fn describe(self) -> &'static str {
        match self {
            Inclusion::CertifiedBlock => "inclusion verified against the block's certificate",
            Inclusion::PayerNonceConsumed => {
                "the payer's nonce is consumed in certified state (the block, an epoch's last, has no certificate to show this transaction in it)"
            }
            Inclusion::Unverified => "UNVERIFIED (--no-verify)",
        }
    }

    /// Its name in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Inclusion::CertifiedBlock => "certified_block",
            Inclusion::PayerNonceConsumed => "payer_nonce_consumed",
            Inclusion::Unverified => "unverified",
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn decode<T>(
    what: &'static str,
    r: Result<T, commons_types::TypesError>,
) -> Result<T, VerifyError> {
    r.map_err(|e| VerifyError::Decode {
        what,
        reason: e.to_string(),
    })
}

fn contradiction(
    what: &'static str,
    answered: &impl std::fmt::Debug,
    proven: &impl std::fmt::Debug,
) -> ClientError {
    VerifyError::AnswerContradictsProof {
        what,
        answered: format!("{answered:?}"),
        proven: format!("{proven:?}"),
    }
    .into()
}

/// Names the fields a lying node changed, e.g. "the balance = 1000100
/// answered, 100 proven".
fn account_contradiction(
    answered: Option<&api::Account>,
    proven: Option<&api::Account>,
) -> ClientError {
    let (what, answered, proven) = match (answered, proven) {
        (Some(a), Some(p)) if a.balance != p.balance => {
            ("the balance", a.balance.to_string(), p.balance.to_string())
        }
        (Some(a), Some(p)) if a.bonded != p.bonded => (
            "the bonded stake",
            a.bonded.to_string(),
            p.bonded.to_string(),
        ),
        (Some(a), Some(p)) if a.nonce != p.nonce => {
            ("the nonce", a.nonce.to_string(), p.nonce.to_string())
        }
        (a, p) => ("the account", format!("{a:?}"), format!("{p:?}")),
    };
    VerifyError::AnswerContradictsProof {
        what,
        answered,
        proven,
    }
    .into()
}

fn decode_tally(bytes: &[u8]) -> Result<TallyCounts, VerifyError> {
    let mut r = Reader::new(bytes, "tally");
    let counts = (|| {
        let t = TallyCounts {
            yes: r.u64()?,
            no: r.u64()?,
            abstain: r.u64()?,
            no_with_veto: r.u64()?,
        };
        Ok::<_, commons_types::TypesError>(t)
    })();
    let counts = decode("tally", counts)?;
    decode("tally", r.finish())?;
    Ok(counts)
}

fn tally_pb(t: &TallyCounts) -> api::Tally {
    api::Tally {
        yes: t.yes,
        no: t.no,
        abstain: t.abstain,
        no_with_veto: t.no_with_veto,
    }
}

fn key_of(bytes: &[u8]) -> Result<PublicKey, ClientError> {
    PublicKey::from_slice(bytes).map_err(|e| ClientError::Rpc(e.to_string()))
}

fn resource_of(code: i32) -> Result<Resource, ClientError> {
    Resource::from_code(code).ok_or_else(|| ClientError::Rpc(format!("unknown resource {code}")))
}

fn lease_of_pb(l: &api::Lease) -> Result<Lease, ClientError> {
    Ok(Lease {
        buyer: key_of(&l.buyer)?,
        provider: key_of(&l.provider)?,
        resource: resource_of(l.resource)?,
        escrow: l.escrow,
        claimed: l.claimed,
        rate_per_block: l.rate_per_block,
        start: Height(l.start_height),
        end: Height(l.end_height),
    })
}

fn settlement_of_pb(s: &api::Settlement) -> Result<Settlement, ClientError> {
    Ok(Settlement {
        buyer: key_of(&s.buyer)?,
        seller: key_of(&s.seller)?,
        resource: resource_of(s.resource)?,
        quantity: s.quantity,
        unit_price: s.unit_price,
        marketplace_fee: s.marketplace_fee,
        height: Height(s.height),
    })
}
