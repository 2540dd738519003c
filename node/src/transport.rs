//! Validator transport over TCP.
//!
//! # Protocol
//!
//! Every frame is a 4-byte big-endian length and that many bytes
//! (`tokio_util::codec::LengthDelimitedCodec`); the first byte of a frame is
//! its kind. Until the handshake completes a frame may be at most
//! [`limits::MAX_HANDSHAKE_FRAME_BYTES`], after it
//! [`limits::MAX_FRAME_BYTES`]; a longer length prefix closes the connection
//! before anything is buffered.
//!
//! Handshake, the same on both sides, each side sending without waiting:
//!
//! 1. `Hello` = `0x10 ‖ version (u16) ‖ chain id (u32 length ‖ UTF-8) ‖
//!    public key (32) ‖ challenge (32 fresh random bytes)`.
//! 2. After reading the peer's `Hello` (same version and chain id, else
//!    close): `Auth` = `0x11 ‖ signature (64)` over
//!    `signing_bytes(Domain::PeerHandshake, chain_id, peer's challenge ‖ own
//!    key ‖ peer's key)`.
//! 3. Each side verifies the peer's `Auth` with the key from its `Hello`. A
//!    dialer also checks that the key is the one it meant to reach.
//!
//! The signature covers the verifier's fresh challenge, so a recorded
//! handshake cannot be replayed, and both keys, so it cannot be relayed to a
//! third party. The transport authenticates but does not encrypt: run
//! validators on a private network or a VPN when confidentiality matters
//! (see `docs/operators.md`); consensus messages and transactions carry their
//! own signatures.
//!
//! After the handshake: `0x01 ‖ consensus Message` (its canonical
//! encoding), or `0x02 ‖ count (u32) ‖ count × (u32 length ‖ SignedTx)` for
//! gossiped transactions.
//!
//! # Connections
//!
//! Each node dials every peer it knows (the genesis validators' addresses
//! and configured peers), reconnecting with exponential backoff, and accepts
//! any peer that completes the handshake. Messages to a peer go over the
//! connection this node dialed if there is one, else over the peer's inbound
//! connection (a validator that joined later and is not in this node's
//! list). The driver broadcasts consensus messages to every connected peer,
//! not only to the epoch's validators: a node outside the set (for example
//! one voted in and waiting for its epoch) follows the chain from the
//! proposals it receives, and votes from the epoch that includes it. The
//! inbound limit bounds how many such followers a validator serves.
//! Each connection has a bounded outbound queue; a full queue drops
//! the frame and counts it. A peer whose frames do not decode, or whose
//! messages the consensus core refuses as malformed, loses score and is
//! disconnected at [`limits::PEER_SCORE_DISCONNECT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use commons_consensus::Message;
use commons_types::codec::{Reader, Writer};
use commons_types::{ChainId, Domain, PublicKey, SecretKey, Signature, signing_bytes};
use futures::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use crate::limits;
use crate::metrics::Metrics;

pub const PROTOCOL_VERSION: u16 = 1;

const TAG_MESSAGE: u8 = 0x01;
const TAG_TXS: u8 = 0x02;
const TAG_HELLO: u8 = 0x10;
const TAG_AUTH: u8 = 0x11;

/// What a peer sent, for the driver.
// Events are moved through a channel once; boxing the message would only
// add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PeerEvent {
    Message { from: PublicKey, message: Message },
    Txs { from: PublicKey, txs: Vec<Vec<u8>> },
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("connection closed during the handshake")]
    Closed,
    #[error("malformed handshake: {0}")]
    Malformed(String),
    #[error("peer speaks protocol version {0}, this node {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("peer is on chain {got:?}, this node on {ours:?}")]
    WrongChain { got: String, ours: String },
    #[error("peer is {got}, expected {expected}")]
    WrongPeer { got: PublicKey, expected: PublicKey },
    #[error("peer's handshake signature does not verify")]
    BadSignature,
    #[error("peer presented this node's own key")]
    SelfConnection,
}

/// Encodes a consensus message as a frame.
pub fn message_frame(message: &Message) -> Bytes {
    let body = message.encode();
    let mut out = BytesMut::with_capacity(1 + body.len());
    out.put_u8(TAG_MESSAGE);
    out.put_slice(&body);
    out.freeze()
}

/// Encodes gossiped transactions as a frame.
pub fn txs_frame(txs: &[Vec<u8>]) -> Bytes {
    let mut w = Writer::new();
    w.u8(TAG_TXS);
    w.len(txs.len());
    for tx in txs {
        w.bytes(tx);
    }
    Bytes::from(w.finish())
}

/// Decodes a post-handshake frame; `Err` is a reason to score the peer down.
pub fn decode_frame(from: PublicKey, frame: &[u8]) -> Result<PeerEvent, String> {
    match frame.first() {
        Some(&TAG_MESSAGE) => Message::decode(&frame[1..])
            .map(|message| PeerEvent::Message { from, message })
            .map_err(|e| e.to_string()),
        Some(&TAG_TXS) => {
            let mut r = Reader::new(&frame[1..], "gossiped transactions");
            let n = r
                .len(limits::GOSSIP_BATCH_TXS, 4)
                .map_err(|e| e.to_string())?;
            let mut txs = Vec::with_capacity(n);
            for _ in 0..n {
                let tx = r
                    .bytes(commons_types::limits::MAX_TX_BYTES)
                    .map_err(|e| e.to_string())?;
                txs.push(tx.to_vec());
            }
            r.finish().map_err(|e| e.to_string())?;
            Ok(PeerEvent::Txs { from, txs })
        }
        Some(tag) => Err(format!("unknown frame kind {tag:#04x}")),
        None => Err("empty frame".into()),
    }
}

struct Hello {
    chain: String,
    key: PublicKey,
    challenge: [u8; 32],
}

fn hello_frame(chain: &ChainId, key: &PublicKey, challenge: &[u8; 32]) -> Bytes {
    let mut w = Writer::new();
    w.u8(TAG_HELLO)
        .u16(PROTOCOL_VERSION)
        .str(chain.as_str())
        .key(key)
        .array(challenge);
    Bytes::from(w.finish())
}

fn decode_hello(frame: &[u8]) -> Result<Hello, HandshakeError> {
    let malformed = |e: commons_types::TypesError| HandshakeError::Malformed(e.to_string());
    let mut r = Reader::new(frame, "hello");
    if r.u8().map_err(malformed)? != TAG_HELLO {
        return Err(HandshakeError::Malformed("expected a hello frame".into()));
    }
    let version = r.u16().map_err(malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(version));
    }
    let chain = r
        .string(commons_types::limits::MAX_CHAIN_ID_BYTES)
        .map_err(malformed)?;
    let key = r.key().map_err(malformed)?;
    let challenge = r.array::<32>().map_err(malformed)?;
    r.finish().map_err(malformed)?;
    Ok(Hello {
        chain,
        key,
        challenge,
    })
}

fn auth_message(peer_challenge: &[u8; 32], own: &PublicKey, peer: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(peer_challenge);
    m.extend_from_slice(&own.0);
    m.extend_from_slice(&peer.0);
    m
}

type Conn = Framed<TcpStream, LengthDelimitedCodec>;

async fn next_frame(conn: &mut Conn) -> Result<BytesMut, HandshakeError> {
    match conn.next().await {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(e)) => Err(HandshakeError::Io(e)),
        None => Err(HandshakeError::Closed),
    }
}

/// Runs the handshake on a fresh connection; returns the framed connection
/// (with the post-handshake frame limit) and the peer's proven key.
pub async fn handshake(
    stream: TcpStream,
    key: &SecretKey,
    chain: &ChainId,
    expected: Option<PublicKey>,
) -> Result<(Conn, PublicKey), HandshakeError> {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(limits::MAX_HANDSHAKE_FRAME_BYTES)
        .new_codec();
    let mut conn = Framed::new(stream, codec);
    let own = key.public_key();
    let work = async {
        let mut challenge = [0u8; 32];
        OsRng.fill_bytes(&mut challenge);
        conn.send(hello_frame(chain, &own, &challenge)).await?;
        let hello = decode_hello(&next_frame(&mut conn).await?)?;
        if hello.chain != chain.as_str() {
            return Err(HandshakeError::WrongChain {
                got: hello.chain,
                ours: chain.to_string(),
            });
        }
        if hello.key == own {
            return Err(HandshakeError::SelfConnection);
        }
        if let Some(expected) = expected
            && expected != hello.key
        {
            return Err(HandshakeError::WrongPeer {
                got: hello.key,
                expected,
            });
        }
        let signature = key.sign(
            Domain::PeerHandshake,
            chain,
            &auth_message(&hello.challenge, &own, &hello.key),
        );
        let mut w = Writer::new();
        w.u8(TAG_AUTH).signature(&signature);
        conn.send(Bytes::from(w.finish())).await?;
        let frame = next_frame(&mut conn).await?;
        if frame.len() != 65 || frame[0] != TAG_AUTH {
            return Err(HandshakeError::Malformed("expected an auth frame".into()));
        }
        let signature = Signature::from_slice(&frame[1..])
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let signed = signing_bytes(
            Domain::PeerHandshake,
            chain,
            &auth_message(&challenge, &hello.key, &own),
        );
        hello
            .key
            .verify_raw(&signed, &signature)
            .map_err(|_| HandshakeError::BadSignature)?;
        Ok(hello.key)
    };
    let peer = tokio::time::timeout(Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS), work)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    conn.codec_mut()
        .set_max_frame_length(limits::MAX_FRAME_BYTES);
    Ok((conn, peer))
}

#[derive(Debug)]
struct Slot {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    stop: watch::Sender<bool>,
    score: Arc<AtomicU32>,
}

#[derive(Debug, Default)]
struct Peers {
    dialed: HashMap<PublicKey, Slot>,
    accepted: HashMap<PublicKey, Slot>,
}

/// Sending side of the transport, shared by the driver and the tasks.
#[derive(Debug, Clone)]
pub struct TransportHandle {
    me: PublicKey,
    peers: Arc<Mutex<Peers>>,
    next_id: Arc<AtomicU64>,
    metrics: Metrics,
}

impl TransportHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `frame` for `to`; false if there is no connection or its queue
    /// is full (the frame is dropped and counted).
    pub fn send(&self, to: &PublicKey, frame: Bytes) -> bool {
        let peers = self.lock();
        let Some(slot) = peers.dialed.get(to).or_else(|| peers.accepted.get(to)) else {
            self.metrics.frames_dropped.inc();
            return false;
        };
        match slot.queue.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.frames_dropped.inc();
                false
            }
        }
    }

    /// Queues `frame` for each of `to`.
    pub fn send_all<'a>(&self, to: impl IntoIterator<Item = &'a PublicKey>, frame: Bytes) {
        for key in to {
            if *key != self.me {
                self.send(key, frame.clone());
            }
        }
    }

    /// Every peer with a live connection.
    pub fn connected(&self) -> Vec<PublicKey> {
        let peers = self.lock();
        let mut keys: Vec<PublicKey> = peers
            .dialed
            .keys()
            .chain(peers.accepted.keys())
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Scores `peer` down; disconnects it at the threshold.
    pub fn penalize(&self, peer: &PublicKey, points: u32, reason: &str) {
        let peers = self.lock();
        for slot in [peers.dialed.get(peer), peers.accepted.get(peer)]
            .into_iter()
            .flatten()
        {
            let score = slot.score.fetch_add(points, Ordering::Relaxed) + points;
            if score >= limits::PEER_SCORE_DISCONNECT {
                warn!(peer = %peer, score, reason, "disconnecting misbehaving peer");
                self.metrics.peers_disconnected_bad.inc();
                let _ = slot.stop.send(true);
            }
        }
    }

    fn update_peer_gauge(&self) {
        let n = self.connected().len();
        self.metrics.peers.set(n as i64);
    }
}

/// The transport's configuration.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub key: SecretKey,
    pub chain: ChainId,
    pub listen: SocketAddr,
    /// Peers to dial: key and `host:port`.
    pub dial: Vec<(PublicKey, String)>,
}

/// Starts listening and dialing; peer events go to `events`.
pub async fn start(
    config: TransportConfig,
    events: mpsc::Sender<PeerEvent>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<TransportHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    info!(address = %config.listen, "p2p listening");
    let handle = TransportHandle {
        me: config.key.public_key(),
        peers: Arc::new(Mutex::new(Peers::default())),
        next_id: Arc::new(AtomicU64::new(1)),
        metrics,
    };
    let config = Arc::new(config);
    {
        let handle = handle.clone();
        let config = config.clone();
        let events = events.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(limits::MAX_INBOUND_CONNECTIONS));
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = shutdown.changed() => return,
                };
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    debug!(%addr, "too many inbound connections; refused");
                    continue;
                };
                let handle = handle.clone();
                let config = config.clone();
                let events = events.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = stream.set_nodelay(true);
                    match handshake(stream, &config.key, &config.chain, None).await {
                        Ok((conn, peer)) => {
                            debug!(%addr, peer = %peer, "inbound peer connected");
                            run_connection(handle, conn, peer, false, events, shutdown).await;
                        }
                        Err(e) => debug!(%addr, error = %e, "inbound handshake failed"),
                    }
                });
            }
        });
    }
    for (peer, address) in config.dial.clone() {
        let handle = handle.clone();
        let config = config.clone();
        let events = events.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff = limits::RECONNECT_BACKOFF_MS_MIN;
            loop {
                let attempt = async {
                    let stream = TcpStream::connect(address.as_str()).await?;
                    let _ = stream.set_nodelay(true);
                    handshake(stream, &config.key, &config.chain, Some(peer)).await
                };
                let result = tokio::select! {
                    r = attempt => r,
                    _ = shutdown.changed() => return,
                };
                match result {
                    Ok((conn, key)) => {
                        debug!(peer = %key, address, "dialed peer connected");
                        backoff = limits::RECONNECT_BACKOFF_MS_MIN;
                        run_connection(
                            handle.clone(),
                            conn,
                            key,
                            true,
                            events.clone(),
                            shutdown.clone(),
                        )
                        .await;
                        debug!(peer = %key, "dialed peer disconnected");
                    }
                    Err(e) => debug!(peer = %peer, address, error = %e, "dial failed"),
                }
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff)) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(limits::RECONNECT_BACKOFF_MS_MAX);
            }
        });
    }
    // Keep the gauge fresh even when nothing connects.
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                handle.update_peer_gauge();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }
    Ok(handle)
}

async fn run_connection(
    handle: TransportHandle,
    conn: Conn,
    peer: PublicKey,
    dialed: bool,
    events: mpsc::Sender<PeerEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = conn.split();
    let (queue_tx, mut queue_rx) = mpsc::channel::<Bytes>(limits::PEER_QUEUE_FRAMES);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let score = Arc::new(AtomicU32::new(0));
    let id = handle.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut peers = handle.lock();
        let map = if dialed {
            &mut peers.dialed
        } else {
            &mut peers.accepted
        };
        if let Some(old) = map.insert(
            peer,
            Slot {
                id,
                queue: queue_tx,
                stop: stop_tx,
                score: score.clone(),
            },
        ) {
            // A newer connection replaces the old one.
            let _ = old.stop.send(true);
        }
    }
    handle.update_peer_gauge();
    let mut writer_stop = stop_rx.clone();
    let mut writer_shutdown = shutdown.clone();
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = queue_rx.recv() => f,
                _ = writer_stop.changed() => None,
                _ = writer_shutdown.changed() => None,
            };
            let Some(frame) = frame else { break };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = stop_rx.changed() => break,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                // Oversized length prefix or i/o error.
                debug!(peer = %peer, error = %e, "connection error");
                handle.metrics.bad_frames.inc();
                break;
            }
            None => break,
        };
        match decode_frame(peer, &frame) {
            Ok(event) => {
                if events.send(event).await.is_err() {
                    break;
                }
            }
            Err(reason) => {
                handle.metrics.bad_frames.inc();
                let total = score.fetch_add(limits::SCORE_BAD_FRAME, Ordering::Relaxed)
                    + limits::SCORE_BAD_FRAME;
                debug!(peer = %peer, reason, score = total, "undecodable frame");
                if total >= limits::PEER_SCORE_DISCONNECT {
                    warn!(peer = %peer, "disconnecting peer that sends undecodable frames");
                    handle.metrics.peers_disconnected_bad.inc();
                    break;
                }
            }
        }
    }
    {
        let mut peers = handle.lock();
        let map = if dialed {
            &mut peers.dialed
        } else {
            &mut peers.accepted
        };
        if map.get(&peer).is_some_and(|s| s.id == id)
            && let Some(slot) = map.remove(&peer)
        {
            let _ = slot.stop.send(true);
        }
    }
    writer.abort();
    handle.update_peer_gauge();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let from = PublicKey([7; 32]);
        let txs = vec![vec![1, 2, 3], vec![]];
        match decode_frame(from, &txs_frame(&txs)) {
            Ok(PeerEvent::Txs { txs: got, .. }) => assert_eq!(got, txs),
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode_frame(from, &[]).is_err());
        assert!(decode_frame(from, &[0x7f, 1, 2]).is_err());
        assert!(decode_frame(from, &[TAG_MESSAGE, 0xff, 0xff]).is_err());
        // A count far above the limit is refused before allocating.
        let mut w = Writer::new();
        w.u8(TAG_TXS).u32(u32::MAX);
        assert!(decode_frame(from, &w.finish()).is_err());
    }

    #[tokio::test]
    async fn handshake_proves_keys_and_refuses_the_wrong_peer() {
        let chain = ChainId::new("test-chain").unwrap();
        let a = SecretKey::from_seed([1; 32]);
        let b = SecretKey::from_seed([2; 32]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b2 = b.clone();
        let chain2 = chain.clone();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            handshake(s, &b2, &chain2, None).await.map(|(_, k)| k)
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let (_, got) = handshake(s, &a, &chain, Some(b.public_key()))
            .await
            .unwrap();
        assert_eq!(got, b.public_key());
        assert_eq!(server.await.unwrap().unwrap(), a.public_key());

        // Dialing expecting someone else fails.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chain3 = chain.clone();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let _ = handshake(s, &b, &chain3, None).await;
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let wrong = SecretKey::from_seed([3; 32]).public_key();
        assert!(matches!(
            handshake(s, &a, &chain, Some(wrong)).await,
            Err(HandshakeError::WrongPeer { .. })
        ));
    }

    /// Decoders of bytes from unauthenticated or misbehaving peers, fed
    /// arbitrary and mutated input: they return errors, never panic, and
    /// whatever they accept is canonical (re-encodes to the same bytes).
    mod fuzz {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use tokio::io::AsyncWriteExt;

        fn chain() -> ChainId {
            ChainId::new("fuzz-chain").unwrap()
        }

        /// Writes `frames` length-prefixed, then `tail` raw, then closes
        /// the write side; returns what the handshake on the other end said.
        fn handshake_against(
            frames: Vec<Vec<u8>>,
            tail: Vec<u8>,
        ) -> Result<PublicKey, HandshakeError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    for f in frames {
                        let _ = s.write_all(&(f.len() as u32).to_be_bytes()).await;
                        let _ = s.write_all(&f).await;
                    }
                    let _ = s.write_all(&tail).await;
                    let _ = s.shutdown().await;
                    // Keep reading until the node closes, so its writes
                    // never fail for lack of a reader.
                    let mut sink = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink).await;
                });
                let (stream, _) = listener.accept().await.unwrap();
                let key = SecretKey::from_seed([9; 32]);
                let result = handshake(stream, &key, &chain(), None)
                    .await
                    .map(|(_, k)| k);
                drop(peer);
                result
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            #[test]
            fn frames_of_arbitrary_bytes_are_refused_or_canonical(bytes in vec(any::<u8>(), 0..2048)) {
                let from = PublicKey([3; 32]);
                match decode_frame(from, &bytes) {
                    Ok(PeerEvent::Txs { txs, .. }) => prop_assert_eq!(txs_frame(&txs).to_vec(), bytes),
                    Ok(PeerEvent::Message { message, .. }) => prop_assert_eq!(message_frame(&message).to_vec(), bytes),
                    Err(reason) => prop_assert!(!reason.is_empty()),
                }
            }

            #[test]
            fn tagged_garbage_is_refused_or_canonical(tag in prop_oneof![Just(TAG_MESSAGE), Just(TAG_TXS)], count in 0u32..600, rest in vec(any::<u8>(), 0..2048)) {
                // A plausible start (the right tag, a small count) reaches
                // the inner decoders instead of failing on the first byte.
                let mut bytes = vec![tag];
                if tag == TAG_TXS {
                    bytes.extend_from_slice(&count.to_be_bytes());
                }
                bytes.extend_from_slice(&rest);
                match decode_frame(PublicKey([3; 32]), &bytes) {
                    Ok(PeerEvent::Txs { txs, .. }) => {
                        prop_assert!(txs.len() <= limits::GOSSIP_BATCH_TXS);
                        prop_assert_eq!(txs_frame(&txs).to_vec(), bytes);
                    }
                    Ok(PeerEvent::Message { message, .. }) => prop_assert_eq!(message_frame(&message).to_vec(), bytes),
                    Err(_) => {}
                }
            }

            #[test]
            fn gossip_frames_round_trip_and_truncations_are_refused(txs in vec(vec(any::<u8>(), 0..64), 0..20), cut in 0usize..10_000) {
                let frame = txs_frame(&txs);
                match decode_frame(PublicKey([3; 32]), &frame) {
                    Ok(PeerEvent::Txs { txs: got, .. }) => prop_assert_eq!(got, txs),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
                let cut = cut % frame.len();
                prop_assert!(decode_frame(PublicKey([3; 32]), &frame[..cut]).is_err());
            }

            #[test]
            fn hellos_of_arbitrary_bytes_are_refused_or_canonical(bytes in vec(any::<u8>(), 0..300)) {
                // Any UTF-8 name within the limit decodes; the handshake
                // then refuses a chain other than its own.
                if let Ok(h) = decode_hello(&bytes)
                    && let Ok(chain) = ChainId::new(h.chain.clone())
                {
                    prop_assert_eq!(hello_frame(&chain, &h.key, &h.challenge).to_vec(), bytes);
                }
            }

            #[test]
            fn mutated_hellos_are_refused_or_canonical(flip in 0usize..1000, bit in 0u8..8, cut in 0usize..1000) {
                let good = hello_frame(&chain(), &PublicKey([4; 32]), &[5; 32]).to_vec();
                let mut bytes = good.clone();
                let i = flip % bytes.len();
                bytes[i] ^= 1 << bit;
                if let Ok(h) = decode_hello(&bytes)
                    && let Ok(chain) = ChainId::new(h.chain.clone())
                {
                    prop_assert_eq!(hello_frame(&chain, &h.key, &h.challenge).to_vec(), bytes);
                }
                let cut = cut % good.len();
                prop_assert!(decode_hello(&good[..cut]).is_err());
            }
        }

        proptest! {
            // Each case is a real TCP connection: fewer cases.
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn handshake_refuses_arbitrary_streams(raw in vec(any::<u8>(), 0..600)) {
                prop_assert!(handshake_against(Vec::new(), raw).is_err());
            }

            #[test]
            fn handshake_refuses_arbitrary_frames(frames in vec(vec(any::<u8>(), 0..200), 0..3)) {
                prop_assert!(handshake_against(frames, Vec::new()).is_err());
            }

            #[test]
            fn handshake_refuses_a_valid_hello_with_a_forged_auth(auth in vec(any::<u8>(), 0..100), as_auth: bool) {
                // A hello for another key, then an auth frame that is not
                // that key's signature over this node's challenge.
                let hello = hello_frame(&chain(), &SecretKey::from_seed([8; 32]).public_key(), &[1; 32]).to_vec();
                let mut auth = auth;
                if as_auth {
                    auth.insert(0, TAG_AUTH);
                    auth.resize(65, 0);
                }
                let result = handshake_against(vec![hello, auth], Vec::new());
                prop_assert!(
                    matches!(result, Err(HandshakeError::BadSignature | HandshakeError::Malformed(_) | HandshakeError::Closed | HandshakeError::Io(_))),
                    "{:?}", result
                );
            }
        }
    }
}
