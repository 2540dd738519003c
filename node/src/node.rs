//! `commons-node start`: opens the store, restores consensus, and runs the
//! transport, the driver, the gRPC API and the metrics endpoint until
//! SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use commons_consensus::{Config, Replica};
use commons_governance::Param;
use commons_state_machine::Application;
use commons_state_machine::ledger::{Ledger, LedgerParams};
use commons_state_machine::store::{MerkleStore, StoreConfig};
use futures::StreamExt as _;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{error, info};

use crate::config::Home;
use crate::door::{Caps, Door};
use crate::driver::{Driver, RejectedCache, Shared};
use crate::grpc::Api;
use crate::limits;
use crate::metrics::{self, Metrics};
use crate::storage;
use crate::transport::{self, TransportConfig};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the store at {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("restoring consensus: {0}")]
    Restore(String),
    #[error("binding {what} on {address}: {source}")]
    Bind {
        what: &'static str,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the driver stopped: {0}")]
    Driver(String),
    #[error("gRPC server: {0}")]
    Grpc(String),
}

/// Runs the validator until a signal; returns an error if it could not start
/// or stopped on a fatal error.
pub async fn run(home: Home) -> Result<(), StartError> {
    let key = home.key.clone();
    let genesis = home.genesis.clone();
    let chain = genesis.chain_id.clone();
    let db_path = home.data_dir().join("db");
    std::fs::create_dir_all(&db_path).map_err(|e| StartError::Store {
        path: db_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let store_config = StoreConfig {
        extra_column_families: storage::column_families(),
        ..StoreConfig::default()
    };
    let store =
        MerkleStore::open_rocksdb(&db_path, &store_config).map_err(|e| StartError::Store {
            path: db_path.display().to_string(),
            reason: e.to_string(),
        })?;
    storage::check_format(&store).map_err(|e| StartError::Store {
        path: db_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let ledger = Ledger::open(store, &genesis).map_err(|e| StartError::Genesis(e.to_string()))?;
    let genesis_root = ledger
        .store()
        .root(0)
        .map_err(|e| StartError::Genesis(e.to_string()))?;
    let restart =
        storage::load_restart(ledger.store()).map_err(|e| StartError::Restore(e.to_string()))?;
    let set = match &restart {
        Some(r) if r.record.epoch.0 > 0 => storage::epoch_set(ledger.store(), r.record.epoch)
            .map_err(|e| StartError::Restore(e.to_string()))?
            .ok_or_else(|| {
                StartError::Restore(format!(
                    "no validator set stored for epoch {}",
                    r.record.epoch
                ))
            })?,
        _ => genesis
            .validator_set()
            .map_err(|e| StartError::Genesis(e.to_string()))?,
    };
    let params = LedgerParams::from_overrides(&genesis.params)
        .map_err(|e| StartError::Genesis(e.to_string()))?;
    let mut config = Config::new(chain.clone());
    config.round_timeout_ms = home
        .config
        .consensus
        .round_timeout_ms
        .unwrap_or(params.set.get(Param::RoundTimeoutMsBase));
    config.round_timeout_ms_max = home
        .config
        .consensus
        .round_timeout_ms_max
        .unwrap_or(params.set.get(Param::RoundTimeoutMsMax))
        .max(config.round_timeout_ms);
    config.epoch_length_blocks = params.set.get(Param::EpochLengthBlocks).max(1);
    config.sync_retry_ms = home.config.consensus.sync_retry_ms;
    config.genesis_state_root = genesis_root;
    config.genesis_timestamp_ms = 0;
    let restarted = restart.is_some();
    let replica = Replica::new(config, key.clone(), set, restart)
        .map_err(|e| StartError::Restore(e.to_string()))?;
    info!(
        chain = %chain,
        validator = %key.public_key(),
        height = ledger.height().0,
        epoch = replica.epoch().0,
        restarted,
        "starting"
    );

    let metrics = Metrics::new();
    metrics.height.set(ledger.height().0 as i64);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (events, _) = broadcast::channel(limits::SUBSCRIBE_BUFFER_BLOCKS);
    let (submit_tx, submit_rx) = mpsc::channel(limits::DRIVER_QUEUE_INPUTS);
    let (peer_tx, peer_rx) = mpsc::channel(limits::DRIVER_QUEUE_INPUTS);
    let shared = Arc::new(Shared {
        app: RwLock::new(Application::new(ledger)),
        chain: chain.clone(),
        events,
        rejected: Mutex::new(RejectedCache::default()),
        submissions: submit_tx,
        metrics: metrics.clone(),
        epoch: AtomicU64::new(replica.epoch().0),
        round: AtomicU64::new(0),
    });

    // Peers: the genesis validators' addresses and the configured peers.
    let me = key.public_key();
    let mut dial: BTreeMap<commons_types::PublicKey, String> = BTreeMap::new();
    if home.config.p2p.dial_genesis_validators {
        for v in &genesis.validators {
            dial.insert(v.public_key, v.address.clone());
        }
    }
    for p in &home.config.p2p.peers {
        dial.insert(p.public_key, p.address.clone());
    }
    dial.remove(&me);
    let transport = transport::start(
        TransportConfig {
            key: key.clone(),
            chain: chain.clone(),
            listen: home.config.p2p.listen,
            dial: dial.into_iter().collect(),
        },
        peer_tx,
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| StartError::Bind {
        what: "p2p",
        address: home.config.p2p.listen,
        source,
    })?;

    if let Some(m) = &home.config.metrics {
        let listener_check =
            std::net::TcpListener::bind(m.listen).map_err(|source| StartError::Bind {
                what: "metrics",
                address: m.listen,
                source,
            })?;
        drop(listener_check);
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let listen = m.listen;
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listen, metrics, shutdown).await {
                error!(error = %e, "metrics server stopped");
            }
        });
    }

    let driver = Driver::new(
        replica,
        key,
        shared.clone(),
        transport,
        home.config.consensus.empty_block_interval_ms,
        home.config.consensus.min_block_interval_ms,
    );
    let mut driver_task = tokio::spawn(driver.run(peer_rx, submit_rx, shutdown.clone()));

    let grpc_listener = tokio::net::TcpListener::bind(home.config.grpc.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "gRPC",
            address: home.config.grpc.listen,
            source,
        })?;
    info!(address = %home.config.grpc.listen, "gRPC listening");
    let grpc_task = tokio::spawn(serve_grpc(
        grpc_listener,
        Api::new(shared.clone()),
        shutdown.clone(),
    ));

    let outcome = tokio::select! {
        r = &mut driver_task => Some(r),
        _ = shutdown_signal() => None,
    };
    let _ = shutdown_tx.send(true);
    let driver_result = match outcome {
        Some(r) => r,
        None => driver_task.await,
    };
    let _ = grpc_task.await;
    info!("stopped");
    match driver_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StartError::Driver(e.to_string())),
        Err(e) => Err(StartError::Driver(e.to_string())),
    }
}

async fn serve_grpc(
    listener: tokio::net::TcpListener,
    api: Api,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StartError> {
    use commons_proto::v1::{query_server, subscribe_server, tx_server};
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<tx_server::TxServer<Api>>().await;
    health.set_serving::<query_server::QueryServer<Api>>().await;
    health
        .set_serving::<subscribe_server::SubscribeServer<Api>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(commons_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Grpc(e.to_string()))?;
    let door = Door::new(Caps {
        total: limits::GRPC_MAX_CONNECTIONS,
        per_ip: limits::GRPC_MAX_CONNECTIONS_PER_IP,
    });
    // A connection over a cap is dropped (closed) as soon as it is accepted.
    let incoming =
        tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(move |accepted| {
            let admitted = match accepted {
                Ok(stream) => door.admit(stream).map(Ok),
                Err(e) => Some(Err(e)),
            };
            std::future::ready(admitted)
        });
    let max = limits::GRPC_MAX_REQUEST_BYTES;
    let ms = std::time::Duration::from_millis;
    tonic::transport::Server::builder()
        .timeout(ms(limits::GRPC_REQUEST_TIMEOUT_MS))
        .http2_keepalive_interval(Some(ms(limits::GRPC_KEEPALIVE_INTERVAL_MS)))
        .http2_keepalive_timeout(Some(ms(limits::GRPC_KEEPALIVE_TIMEOUT_MS)))
        .max_concurrent_streams(limits::GRPC_MAX_STREAMS_PER_CONNECTION)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            tx_server::TxServer::new(api.clone())
                .max_decoding_message_size(limits::GRPC_MAX_TX_MESSAGE_BYTES),
        )
        .add_service(query_server::QueryServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(subscribe_server::SubscribeServer::new(api).max_decoding_message_size(max))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await
        .map_err(|e| {
            error!(error = %e, "gRPC server stopped");
            StartError::Grpc(e.to_string())
        })
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutdown requested");
}
