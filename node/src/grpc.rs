//! The `commons.v1` gRPC API: `Tx`, `Query` and `Subscribe` (see
//! `proto/commons/v1/api.proto` for the contract of each call).
//!
//! Reads take the application's read lock on a blocking thread; writes
//! (submissions) go to the driver, the application's only writer. Every
//! state answer comes with a Merkle proof against the state root carried by
//! a committed block and the QC certifying that block.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commons_consensus::Block;
use commons_proto::v1 as api;
use commons_state_machine::Application;
use commons_state_machine::ledger::api::{account_pb, lease_pb, settlement_pb};
use commons_state_machine::ledger::gov::{decode_validator_set, decode_vote, gkey};
use commons_state_machine::ledger::params::decode_set;
use commons_state_machine::ledger::state::key;
use commons_state_machine::ledger::{Account, Action, Lease, Receipt, Settlement, decode_body};
use commons_state_machine::{AdmitError, Payload, TxError};
use commons_types::codec::Reader;
use commons_types::tx::SignedTx;
use commons_types::{Hash, Height, PublicKey};
use futures::{FutureExt, StreamExt};
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::driver::{CommittedEvent, Shared, Submission, Verdict};
use crate::limits;
use crate::storage;

/// The three services over one shared state.
#[derive(Debug, Clone)]
pub struct Api {
    shared: Arc<Shared>,
}

impl Api {
    pub fn new(shared: Arc<Shared>) -> Api {
        Api { shared }
    }

    /// Runs `f` with the application under its read lock, off the async
    /// threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Application) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared.read_app()))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
    }

    async fn submit_raw(&self, txs: Vec<Vec<u8>>) -> Result<Vec<Verdict>, Status> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .submissions
            .send(Submission { txs, reply })
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        answer
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?
            .map_err(Status::internal)
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn key_arg(bytes: &[u8], what: &str) -> Result<PublicKey, Status> {
    PublicKey::from_slice(bytes).map_err(|_| {
        Status::invalid_argument(format!("{what} must be 32 bytes, got {}", bytes.len()))
    })
}

fn hash_arg(bytes: &[u8], what: &str) -> Result<Hash, Status> {
    Hash::from_slice(bytes).map_err(|_| {
        Status::invalid_argument(format!("{what} must be 32 bytes, got {}", bytes.len()))
    })
}

/// Why a transaction of `len` encoded bytes is refused before admission.
fn oversized_reason(len: usize) -> String {
    let limit = commons_types::limits::MAX_TX_BYTES;
    format!("transaction of {len} bytes is over the limit of {limit} bytes")
}

/// The verdict on a transaction over the size limit.
fn oversized(len: usize) -> Verdict {
    Verdict {
        tx_id: None,
        result: Err(AdmitError::Invalid(TxError::Malformed(oversized_reason(
            len,
        )))),
    }
}

fn submit_result(index: u64, verdict: &Verdict) -> api::SubmitResult {
    let (code, error) = match &verdict.result {
        Ok(()) => (api::SubmitCode::Accepted, String::new()),
        Err(e) => (
            match e {
                AdmitError::Invalid(_) => api::SubmitCode::Invalid,
                AdmitError::Duplicate(_) => api::SubmitCode::Duplicate,
                AdmitError::Full { .. } => api::SubmitCode::MempoolFull,
                AdmitError::NonceTooFarAhead { .. } => api::SubmitCode::NonceTooFar,
            },
            e.to_string(),
        ),
    };
    api::SubmitResult {
        index,
        tx_id: verdict
            .tx_id
            .map(|h| h.0.to_vec().into())
            .unwrap_or_default(),
        code: code as i32,
        error,
    }
}

fn receipt_pb(r: &Receipt) -> api::Receipt {
    api::Receipt {
        tx_id: r.tx_id.0.to_vec().into(),
        height: r.height.0,
        code: r.code,
        message: r.message.clone(),
        fee: r.fee,
    }
}

fn tx_status(app: &Application, shared: &Shared, id: Hash) -> Result<api::TxStatus, Status> {
    let mut status = api::TxStatus {
        tx_id: id.0.to_vec().into(),
        state: api::TxState::Unknown as i32,
        receipt: None,
        reason: String::new(),
    };
    if let Some(r) = storage::receipt_of(app.ledger().store(), &id).map_err(internal)? {
        status.state = api::TxState::Committed as i32;
        status.receipt = Some(receipt_pb(&r));
    } else if app.mempool().contains(&id) {
        status.state = api::TxState::Pending as i32;
    } else if let Some(reason) = shared
        .rejected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
    {
        status.state = api::TxState::Rejected as i32;
        status.reason = reason.clone();
    }
    Ok(status)
}

#[tonic::async_trait]
impl api::tx_server::Tx for Api {
    async fn submit(
        &self,
        request: Request<api::SignedTx>,
    ) -> Result<Response<api::SubmitResult>, Status> {
        let raw = request.into_inner().encode_to_vec();
        if raw.len() > commons_types::limits::MAX_TX_BYTES {
            return Err(Status::out_of_range(oversized_reason(raw.len())));
        }
        let verdicts = self.submit_raw(vec![raw]).await?;
        let Some(verdict) = verdicts.first() else {
            return Err(Status::internal("no verdict for the transaction"));
        };
        match &verdict.result {
            Ok(()) => Ok(Response::new(submit_result(0, verdict))),
            Err(AdmitError::Full { .. }) => Err(Status::resource_exhausted(
                verdict
                    .result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )),
            Err(e @ AdmitError::Duplicate(_)) => Err(Status::already_exists(e.to_string())),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    type SubmitBatchStream = ReceiverStream<Result<api::SubmitResult, Status>>;

    async fn submit_batch(
        &self,
        request: Request<Streaming<api::SignedTx>>,
    ) -> Result<Response<Self::SubmitBatchStream>, Status> {
        let mut incoming = request.into_inner();
        let (out, rx) = mpsc::channel(4);
        let api = self.clone();
        tokio::spawn(async move {
            let mut index = 0u64;
            // One step: the messages at hand, up to a count and a byte
            // bound. Each transaction gets its own result, in order: one
            // over the size limit is refused here, on its own.
            while let Some(first) = incoming.next().await {
                let mut step = vec![first];
                let mut bytes = 0usize;
                let mut end = None;
                let mut slots = Vec::new();
                let mut raw = Vec::new();
                loop {
                    for item in step.drain(..) {
                        match item {
                            Ok(tx) => {
                                let encoded = tx.encode_to_vec();
                                bytes += encoded.len();
                                // `None`: its verdict comes from admission.
                                if encoded.len() > commons_types::limits::MAX_TX_BYTES {
                                    slots.push(Some(oversized(encoded.len())));
                                } else {
                                    slots.push(None);
                                    raw.push(encoded);
                                }
                            }
                            // A frame that does not decode (over the
                            // message bound, or not a `SignedTx`) leaves
                            // the stream unreadable: answer what came
                            // before it, then end with its status.
                            Err(status) => end = Some(status),
                        }
                    }
                    if end.is_some()
                        || slots.len() >= limits::SUBMIT_BATCH_TXS
                        || bytes >= limits::SUBMIT_BATCH_BYTES
                    {
                        break;
                    }
                    match incoming.next().now_or_never() {
                        Some(Some(item)) => step.push(item),
                        _ => break,
                    }
                }
                let mut verdicts = if raw.is_empty() {
                    Vec::new()
                } else {
                    match api.submit_raw(raw).await {
                        Ok(v) => v,
                        Err(status) => {
                            let _ = out.send(Err(status)).await;
                            return;
                        }
                    }
                }
                .into_iter();
                for slot in slots {
                    let Some(verdict) = slot.or_else(|| verdicts.next()) else {
                        let lost = Status::internal("admission lost a verdict");
                        let _ = out.send(Err(lost)).await;
                        return;
                    };
                    let result = submit_result(index, &verdict);
                    if out.send(Ok(result)).await.is_err() {
                        return;
                    }
                    index += 1;
                }
                if let Some(status) = end {
                    let _ = out.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_tx_status(
        &self,
        request: Request<api::TxStatusRequest>,
    ) -> Result<Response<api::TxStatus>, Status> {
        let id = hash_arg(&request.into_inner().tx_id, "tx_id")?;
        let shared = self.shared.clone();
        let status = self.read(move |app| tx_status(app, &shared, id)).await?;
        Ok(Response::new(status))
    }

    async fn wait_committed(
        &self,
        request: Request<api::WaitCommittedRequest>,
    ) -> Result<Response<api::TxStatus>, Status> {
        let request = request.into_inner();
        let id = hash_arg(&request.tx_id, "tx_id")?;
        let timeout_ms = match request.timeout_ms {
            0 => limits::WAIT_COMMITTED_MS_DEFAULT,
            ms => u64::from(ms).min(limits::WAIT_COMMITTED_MS_MAX),
        };
        // Subscribe before looking, so a commit in between is not missed.
        let mut events = self.shared.events.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let shared = self.shared.clone();
            let status = self.read(move |app| tx_status(app, &shared, id)).await?;
            if status.state == api::TxState::Committed as i32 {
                return Ok(Response::new(status));
            }
            // Wait for a block with the transaction (or any sign of loss).
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Err(_) => return Ok(Response::new(status)),
                    Ok(Ok(event)) => {
                        if event.txs.iter().any(|(t, _)| *t == id) {
                            break;
                        }
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(Status::unavailable("the node is shutting down"));
                    }
                }
            }
        }
    }
}

/// The newest committed block whose certificate this node stores and whose
/// payload attests a state root, with that root's version.
fn certified(app: &Application) -> Result<api::Certified, Status> {
    let store = app.ledger().store();
    let Some((last, _)) = storage::last_applied(store).map_err(internal)? else {
        return Err(Status::unavailable(
            "no block committed yet; state proofs need a certified block",
        ));
    };
    // The certificate of height h is stored with block h + 1; blocks after an
    // epoch's end carry no payload. A few heights back always has one.
    for h in (last.0.saturating_sub(16).max(1)..last.0).rev() {
        let (Some(block), Some(qc)) = (
            storage::block_at(store, Height(h)).map_err(internal)?,
            storage::cert_at(store, Height(h)).map_err(internal)?,
        ) else {
            continue;
        };
        if block.payload().is_empty() || qc.block_id() != block.id() {
            continue;
        }
        let Ok(payload) = Payload::decode(block.payload()) else {
            continue;
        };
        let root = store.root(payload.state_height.0).map_err(internal)?;
        if root != block.state_root() {
            return Err(Status::internal(format!(
                "block {h} attests a state root this node does not have"
            )));
        }
        return Ok(api::Certified {
            state_height: payload.state_height.0,
            state_root: root.0.to_vec().into(),
            block_height: h,
            block: block.encode().into(),
            qc: qc.encode().into(),
            epoch: block.epoch().0,
        });
    }
    Err(Status::unavailable(
        "no certified block yet; state proofs need one (retry after a few blocks)",
    ))
}

fn state_proof(
    app: &Application,
    certified: &api::Certified,
    k: Vec<u8>,
) -> Result<(Option<Vec<u8>>, api::StateProof), Status> {
    let (value, proof) = app
        .ledger()
        .store()
        .get_with_proof(certified.state_height, &k)
        .map_err(internal)?;
    let proof = api::StateProof {
        key: k.into(),
        present: value.is_some(),
        value: value.clone().unwrap_or_default().into(),
        proof: proof.to_bytes().into(),
        certified: Some(certified.clone()),
    };
    Ok((value, proof))
}

fn tally_of(
    app: &Application,
    certified: &api::Certified,
    id: u64,
) -> Result<(api::Tally, api::StateProof), Status> {
    let (value, proof) = state_proof(app, certified, gkey::tally(id))?;
    let mut tally = api::Tally::default();
    if let Some(bytes) = value {
        let mut r = Reader::new(&bytes, "tally");
        let mut read = || r.u64().map_err(internal);
        tally.yes = read()?;
        tally.no = read()?;
        tally.abstain = read()?;
        tally.no_with_veto = read()?;
    }
    Ok((tally, proof))
}

#[tonic::async_trait]
impl api::query_server::Query for Api {
    async fn get_account(
        &self,
        request: Request<api::AccountRequest>,
    ) -> Result<Response<api::AccountResponse>, Status> {
        let id = key_arg(&request.into_inner().account, "account")?;
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, key::account(&id))?;
                let account = match value {
                    None => None,
                    Some(bytes) => {
                        let a = Account::decode(&bytes).map_err(internal)?;
                        Some(account_pb(&a))
                    }
                };
                Ok(api::AccountResponse {
                    account,
                    proof: Some(proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_lease(
        &self,
        request: Request<api::LeaseRequest>,
    ) -> Result<Response<api::LeaseResponse>, Status> {
        let id = request.into_inner().lease_id;
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, key::lease(id))?;
                let lease = match value {
                    None => None,
                    Some(bytes) => {
                        let l = Lease::decode(&bytes).map_err(internal)?;
                        Some(lease_pb(&l))
                    }
                };
                Ok(api::LeaseResponse {
                    lease,
                    proof: Some(proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_settlement(
        &self,
        request: Request<api::SettlementRequest>,
    ) -> Result<Response<api::SettlementResponse>, Status> {
        let request = request.into_inner();
        let marketplace = key_arg(&request.marketplace, "marketplace")?;
        let trade_id = request.trade_id;
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, key::settlement(&marketplace, trade_id))?;
                let settlement = match value {
                    None => None,
                    Some(bytes) => {
                        let s = Settlement::decode(&bytes).map_err(internal)?;
                        Some(settlement_pb(&s))
                    }
                };
                Ok(api::SettlementResponse {
                    settlement,
                    proof: Some(proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_proposal(
        &self,
        request: Request<api::ProposalRequest>,
    ) -> Result<Response<api::ProposalResponse>, Status> {
        let id = request.into_inner().proposal_id;
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, gkey::proposal(id))?;
                let (tally, tally_proof) = tally_of(app, &c, id)?;
                Ok(api::ProposalResponse {
                    proposal_json: value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default(),
                    proof: Some(proof),
                    tally: Some(tally),
                    tally_proof: Some(tally_proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_votes(
        &self,
        request: Request<api::VotesRequest>,
    ) -> Result<Response<api::VotesResponse>, Status> {
        let request = request.into_inner();
        let voter = key_arg(&request.voter, "voter")?;
        let id = request.proposal_id;
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, gkey::vote(id, &voter))?;
                let options = match value {
                    None => Vec::new(),
                    Some(bytes) => decode_vote(&bytes)
                        .map_err(internal)?
                        .entries()
                        .iter()
                        .map(|(option, weight)| api::WeightedOption {
                            option: option.to_wire(),
                            weight_permille: u32::from(*weight),
                        })
                        .collect(),
                };
                let (tally, tally_proof) = tally_of(app, &c, id)?;
                Ok(api::VotesResponse {
                    options,
                    proof: Some(proof),
                    tally: Some(tally),
                    tally_proof: Some(tally_proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_params(
        &self,
        _request: Request<api::ParamsRequest>,
    ) -> Result<Response<api::ParamsResponse>, Status> {
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, key::PARAMS.to_vec())?;
                let bytes = value.ok_or_else(|| Status::internal("no parameters in state"))?;
                let set = decode_set(&bytes).map_err(internal)?;
                let params: std::collections::HashMap<String, u64> =
                    set.iter().map(|(p, v)| (p.name().to_string(), v)).collect();
                Ok(api::ParamsResponse {
                    params,
                    proof: Some(proof),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_validator_set(
        &self,
        _request: Request<api::ValidatorSetRequest>,
    ) -> Result<Response<api::ValidatorSetResponse>, Status> {
        let epoch = self.shared.epoch.load(std::sync::atomic::Ordering::Relaxed);
        let response = self
            .read(move |app| {
                let c = certified(app)?;
                let (value, proof) = state_proof(app, &c, key::VALIDATORS.to_vec())?;
                let bytes = value.ok_or_else(|| Status::internal("no validator set in state"))?;
                let set = decode_validator_set(&bytes).map_err(internal)?;
                Ok(api::ValidatorSetResponse {
                    validators: set
                        .validators()
                        .iter()
                        .map(|v| api::ValidatorInfo {
                            public_key: v.public_key.0.to_vec().into(),
                            power: v.power,
                        })
                        .collect(),
                    proof: Some(proof),
                    consensus_epoch: epoch,
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_block(
        &self,
        request: Request<api::BlockRequest>,
    ) -> Result<Response<api::BlockResponse>, Status> {
        let height = Height(request.into_inner().height);
        if height.0 == 0 {
            return Err(Status::invalid_argument(
                "height 0 is the genesis state, not a block; heights start at 1",
            ));
        }
        let response = self
            .read(move |app| {
                let store = app.ledger().store();
                let Some(block) = storage::block_at(store, height).map_err(internal)? else {
                    return Err(Status::not_found(format!(
                        "no committed block at height {height} (last: {})",
                        app.ledger().height()
                    )));
                };
                let qc = storage::cert_at(store, height).map_err(internal)?;
                let receipts = storage::receipts_at(store, height).map_err(internal)?;
                let txs = committed_txs(&block, &receipts, &Filter::default());
                Ok(api::BlockResponse {
                    height: height.0,
                    block_id: block.id().0.to_vec().into(),
                    block: block.encode().into(),
                    qc: qc.map(|q| q.encode()).unwrap_or_default().into(),
                    epoch: block.epoch().0,
                    round: block.round().0,
                    timestamp_ms: block.timestamp_ms(),
                    state_root_after: store.root(height.0).map_err(internal)?.0.to_vec().into(),
                    txs,
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_latest_commit(
        &self,
        _request: Request<api::LatestCommitRequest>,
    ) -> Result<Response<api::LatestCommitResponse>, Status> {
        let response = self
            .read(move |app| {
                let store = app.ledger().store();
                let (height, id) = storage::last_applied(store)
                    .map_err(internal)?
                    .unwrap_or((Height(0), Hash::ZERO));
                Ok(api::LatestCommitResponse {
                    height: height.0,
                    block_id: id.0.to_vec().into(),
                    state_root: store.root(height.0).map_err(internal)?.0.to_vec().into(),
                    certified: certified(app).ok(),
                })
            })
            .await?;
        Ok(Response::new(response))
    }
}

/// Which transactions of a block a subscriber wants.
#[derive(Debug, Clone, Default)]
struct Filter {
    account: Option<PublicKey>,
    marketplace: Option<PublicKey>,
}

impl Filter {
    fn matches(&self, tx: &SignedTx) -> bool {
        if self.account.is_none() && self.marketplace.is_none() {
            return true;
        }
        let Ok(body) = decode_body(tx) else {
            return false;
        };
        if let Some(account) = &self.account {
            let signed = tx.signatures.iter().any(|(k, _)| k == account);
            let named = match &body.action {
                Action::Transfer { to, .. } => to == account,
                Action::Settle {
                    buyer,
                    seller,
                    marketplace,
                    ..
                } => buyer == account || seller == account || marketplace == account,
                Action::OpenLease { provider, .. } => provider == account,
                _ => false,
            };
            if !signed && !named {
                return false;
            }
        }
        if let Some(m) = &self.marketplace {
            match &body.action {
                Action::Settle { marketplace, .. } if marketplace == m => {}
                _ => return false,
            }
        }
        true
    }
}

fn committed_txs(block: &Block, receipts: &[Receipt], filter: &Filter) -> Vec<api::CommittedTx> {
    let txs = commons_state_machine::app::executed_txs(block);
    let by_id: BTreeMap<Hash, &Receipt> = receipts.iter().map(|r| (r.tx_id, r)).collect();
    txs.iter()
        .filter(|t| filter.matches(&t.tx))
        .map(|t| api::CommittedTx {
            tx_id: t.id.0.to_vec().into(),
            tx: Some(t.tx.to_proto()),
            receipt: by_id.get(&t.id).map(|r| receipt_pb(r)),
        })
        .collect()
}

fn event_pb(event: &CommittedEvent, filter: &Filter) -> api::CommittedBlock {
    let by_id: BTreeMap<Hash, &Receipt> = event.receipts.iter().map(|r| (r.tx_id, r)).collect();
    api::CommittedBlock {
        height: event.block.height().0,
        block_id: event.block.id().0.to_vec().into(),
        state_root_after: event.state_root.0.to_vec().into(),
        timestamp_ms: event.block.timestamp_ms(),
        txs: event
            .txs
            .iter()
            .filter(|(_, tx)| filter.matches(tx))
            .map(|(id, tx)| api::CommittedTx {
                tx_id: id.0.to_vec().into(),
                tx: Some(tx.to_proto()),
                receipt: by_id.get(id).map(|r| receipt_pb(r)),
            })
            .collect(),
    }
}

fn stored_block_pb(
    app: &Application,
    height: Height,
    filter: &Filter,
) -> Result<Option<api::CommittedBlock>, Status> {
    let store = app.ledger().store();
    let Some(block) = storage::block_at(store, height).map_err(internal)? else {
        return Ok(None);
    };
    let receipts = storage::receipts_at(store, height).map_err(internal)?;
    Ok(Some(api::CommittedBlock {
        height: height.0,
        block_id: block.id().0.to_vec().into(),
        state_root_after: store.root(height.0).map_err(internal)?.0.to_vec().into(),
        timestamp_ms: block.timestamp_ms(),
        txs: committed_txs(&block, &receipts, filter),
    }))
}

#[tonic::async_trait]
impl api::subscribe_server::Subscribe for Api {
    type BlocksStream = ReceiverStream<Result<api::CommittedBlock, Status>>;

    async fn blocks(
        &self,
        request: Request<api::SubscribeRequest>,
    ) -> Result<Response<Self::BlocksStream>, Status> {
        let request = request.into_inner();
        let filter = Filter {
            account: if request.account.is_empty() {
                None
            } else {
                Some(key_arg(&request.account, "account")?)
            },
            marketplace: if request.marketplace.is_empty() {
                None
            } else {
                Some(key_arg(&request.marketplace, "marketplace")?)
            },
        };
        let (out, rx) = mpsc::channel(limits::SUBSCRIBE_BUFFER_BLOCKS);
        let mut events = self.shared.events.subscribe();
        let api = self.clone();
        // The next height to send; 0 = start with the next live block.
        let mut next = request.from_height;
        tokio::spawn(async move {
            loop {
                // Replay from the store up to what is applied.
                if next > 0 {
                    loop {
                        let f = filter.clone();
                        let h = Height(next);
                        let block = match api.read(move |app| stored_block_pb(app, h, &f)).await {
                            Ok(b) => b,
                            Err(status) => {
                                let _ = out.send(Err(status)).await;
                                return;
                            }
                        };
                        let Some(block) = block else { break };
                        if out.send(Ok(block)).await.is_err() {
                            return;
                        }
                        next += 1;
                    }
                }
                // Then follow live commits.
                loop {
                    match events.recv().await {
                        Ok(event) => {
                            let h = event.block.height().0;
                            if next == 0 {
                                next = h;
                            }
                            if h < next {
                                continue;
                            }
                            if h > next {
                                // A gap (this subscriber lagged): replay it.
                                break;
                            }
                            if out.send(Ok(event_pb(&event, &filter))).await.is_err() {
                                return;
                            }
                            next += 1;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
