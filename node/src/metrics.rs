//! Prometheus metrics, served as text at `/metrics` by a small axum server.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

/// The node's metrics. Cheap to clone: every field is a shared handle.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub height: Gauge,
    pub round: Gauge,
    pub epoch: Gauge,
    pub peers: Gauge,
    pub mempool_txs: Gauge,
    pub mempool_rejects: Counter,
    pub committed_blocks: Counter,
    pub committed_txs: Counter,
    pub commit_latency_seconds: Histogram,
    pub frames_dropped: Counter,
    pub bad_frames: Counter,
    pub invalid_messages: Counter,
    pub peers_disconnected_bad: Counter,
    pub evidence: Counter,
    pub round_timeouts: Counter,
    pub admission_batch_txs: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("commons");
        let height = Gauge::default();
        let round = Gauge::default();
        let epoch = Gauge::default();
        let peers = Gauge::default();
        let mempool_txs = Gauge::default();
        let mempool_rejects = Counter::default();
        let committed_blocks = Counter::default();
        let committed_txs = Counter::default();
        let commit_latency_seconds =
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]);
        let frames_dropped = Counter::default();
        let bad_frames = Counter::default();
        let invalid_messages = Counter::default();
        let peers_disconnected_bad = Counter::default();
        let evidence = Counter::default();
        let round_timeouts = Counter::default();
        let admission_batch_txs =
            Histogram::new([1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0]);
        registry.register(
            "height",
            "Last committed and executed height",
            height.clone(),
        );
        registry.register("round", "Current consensus round", round.clone());
        registry.register("epoch", "Current consensus epoch", epoch.clone());
        registry.register("peers", "Peers with a live connection", peers.clone());
        registry.register(
            "mempool_txs",
            "Transactions in the mempool",
            mempool_txs.clone(),
        );
        registry.register(
            "mempool_rejects",
            "Transactions refused at admission",
            mempool_rejects.clone(),
        );
        registry.register(
            "committed_blocks",
            "Blocks committed and executed",
            committed_blocks.clone(),
        );
        registry.register(
            "committed_txs",
            "Transactions in committed blocks (rate() gives tx/s)",
            committed_txs.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "From a block's timestamp to its execution here",
            commit_latency_seconds.clone(),
        );
        registry.register(
            "peer_frames_dropped",
            "Frames dropped because a peer's queue was full or it was not connected",
            frames_dropped.clone(),
        );
        registry.register(
            "peer_bad_frames",
            "Frames from peers that did not decode",
            bad_frames.clone(),
        );
        registry.register(
            "peer_invalid_messages",
            "Consensus messages refused as malformed or badly signed",
            invalid_messages.clone(),
        );
        registry.register(
            "peers_disconnected_misbehaving",
            "Peers disconnected for a low score",
            peers_disconnected_bad.clone(),
        );
        registry.register(
            "evidence",
            "Equivocation evidence reported by consensus",
            evidence.clone(),
        );
        registry.register(
            "round_timeouts",
            "Rounds this validator timed out (no certified proposal in time)",
            round_timeouts.clone(),
        );
        registry.register(
            "admission_batch_txs",
            "Transactions whose signatures were verified together at admission",
            admission_batch_txs.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            height,
            round,
            epoch,
            peers,
            mempool_txs,
            mempool_rejects,
            committed_blocks,
            committed_txs,
            commit_latency_seconds,
            frames_dropped,
            bad_frames,
            invalid_messages,
            peers_disconnected_bad,
            evidence,
            round_timeouts,
            admission_batch_txs,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Serves `/metrics` until `shutdown` fires.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    info!(address = %listen, "metrics listening");
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}
