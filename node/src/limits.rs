//! Every bound the node enforces, with the reason for its value. A full
//! queue drops (and counts) or rejects; it never grows.

use commons_consensus::limits as consensus_limits;
use commons_state_machine::ledger::limits as ledger_limits;

/// Largest frame a peer may send. A frame holds one consensus message (at
/// most the consensus crate's `MAX_MESSAGE_BYTES`) or one batch of gossiped
/// transactions (well below that), plus a one-byte tag. A larger length
/// prefix closes the connection before anything is buffered.
pub const MAX_FRAME_BYTES: usize = consensus_limits::MAX_MESSAGE_BYTES + 1;

/// Frames waiting to be written to one peer. A slow or dead peer must not
/// make the node buffer without bound; consensus recovers lost messages by
/// timeouts and sync, so dropping the newest frame when full is safe.
/// 1024 frames cover several rounds of votes, timeouts and proposals.
pub const PEER_QUEUE_FRAMES: usize = 1024;

/// Inputs waiting for the driver (peer messages, client submissions,
/// answers). Readers wait (back-pressure on their TCP connection) when full,
/// so memory stays bounded while no input from an honest peer is lost.
pub const DRIVER_QUEUE_INPUTS: usize = 4096;

/// Time a peer has to finish the handshake. Honest peers answer in one round
/// trip; a connection that stalls longer is dropped so half-open sockets
/// cannot pile up.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// Largest handshake frame (version, chain id, key, challenge, signature):
/// a few hundred bytes; anything longer is not a handshake.
pub const MAX_HANDSHAKE_FRAME_BYTES: usize = 1024;

/// Inbound connections served at once. A validator set has at most a few
/// hundred members; this bounds sockets and reader tasks that unauthenticated
/// dialers can hold open.
pub const MAX_INBOUND_CONNECTIONS: usize = 256;

/// Reconnect backoff: first retry after this, doubling up to the max, so a
/// down peer costs one connection attempt every few seconds.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 100;
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 5_000;

/// Misbehaviour score at which a peer is disconnected. Each undecodable
/// frame costs `SCORE_BAD_FRAME`; a consensus message the core refuses as
/// malformed costs `SCORE_INVALID_MESSAGE`. Honest peers lose nothing (stale
/// or early messages are not penalised), so a few strikes are enough.
pub const PEER_SCORE_DISCONNECT: u32 = 100;
pub const SCORE_BAD_FRAME: u32 = 50;
pub const SCORE_INVALID_MESSAGE: u32 = 10;

/// Stored QCs of one height looked at when serving a committed range from
/// the store. Each round certifies at most one block, and rounds that
/// certified a block at a height that then did not commit are rare (a fork
/// of a round or two): a handful covers them; the scan stays cheap.
pub const QCS_PER_HEIGHT_SCANNED: usize = 16;

/// Transactions in one gossip frame. Keeps a frame far below
/// `MAX_FRAME_BYTES` (each tx at most `MAX_TX_BYTES`).
pub const GOSSIP_BATCH_TXS: usize = 512;

/// How often admitted transactions are flushed to peers: small enough that a
/// leader sees a transaction within a round, large enough to batch.
pub const GOSSIP_FLUSH_MS: u64 = 20;

/// Transactions gossiped but not yet flushed. Beyond this, new admissions are
/// not gossiped (peers still get them in blocks proposed by this node).
pub const GOSSIP_PENDING_TXS: usize = 16 * GOSSIP_BATCH_TXS;

/// The largest gRPC request a node decodes: one `SignedTx`, which may be at
/// most `MAX_TX_BYTES` encoded; every other request is far smaller. tonic's
/// default is 4 MiB, which let a client put 64 times the largest valid
/// transaction in memory per message (and 1,024 messages per SubmitBatch
/// step) before any size check ran.
pub const GRPC_MAX_REQUEST_BYTES: usize = commons_types::limits::MAX_TX_BYTES;

/// The largest message the transaction service decodes: four times the
/// largest valid transaction, so that a transaction a little too large (a
/// marketplace's mistake) is decoded and refused on its own, with its
/// reason, while the rest of its `SubmitBatch` stream goes on. A message
/// beyond this ends the stream with `OUT_OF_RANGE`.
pub const GRPC_MAX_TX_MESSAGE_BYTES: usize = 4 * commons_types::limits::MAX_TX_BYTES;

/// Bytes of transactions in one SubmitBatch admission step: with
/// `GRPC_MAX_TX_MESSAGE_BYTES`, what one stream holds in memory at once,
/// whatever the count (1,024 transactions of the largest kind would be
/// 64 MiB).
pub const SUBMIT_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Open gRPC connections at once: each may carry
/// `GRPC_MAX_STREAMS_PER_CONNECTION` calls of up to
/// `GRPC_MAX_TX_MESSAGE_BYTES` each, so the cap bounds what clients can make
/// the node hold, whatever they do.
pub const GRPC_MAX_CONNECTIONS: usize = 1_024;

/// Open gRPC connections from one address: a marketplace needs a handful,
/// and one address cannot take the whole door.
pub const GRPC_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Longest a gRPC call may take to answer: above `WAIT_COMMITTED_MS_MAX`,
/// the longest a call waits on purpose (a stream's body is not limited).
pub const GRPC_REQUEST_TIMEOUT_MS: u64 = 75_000;

/// HTTP/2 keepalive: a ping after this much silence on a connection...
pub const GRPC_KEEPALIVE_INTERVAL_MS: u64 = 30_000;

/// ...and the connection is closed if the ping is not answered in this.
pub const GRPC_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;

/// Concurrent gRPC streams (calls) per client connection.
pub const GRPC_MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Transactions in one SubmitBatch admission step: one parallel signature
/// batch, and one round trip through the driver.
pub const SUBMIT_BATCH_TXS: usize = 1024;

/// Queued inputs (gossip frames, consensus messages, submissions) the
/// driver takes in one wake-up to admit their transactions as one batch.
/// Bounded so that timers and the other select arms are served between
/// wake-ups.
pub const DRIVER_COALESCE_INPUTS: usize = 256;

/// Transactions admitted as one batch at most: 8,192 signatures of
/// settlements, about 0.1 s of verification on two cores, so consensus
/// messages wait no longer than a short round's fraction behind it.
pub const ADMIT_BATCH_TXS: usize = 4096;

/// Longest a transaction waits for others to be admitted with it, when the
/// driver is idle and fewer than `ADMIT_LINGER_TXS` are at hand: a fraction
/// of `GOSSIP_FLUSH_MS`, which it waits for anyway before peers see it.
pub const ADMIT_LINGER_MS: u64 = 5;

/// Transactions admitted at once without lingering: 256 signatures of
/// settlements, a batch whose cost per signature is close to the best.
pub const ADMIT_LINGER_TXS: usize = 128;

/// Rejected transaction ids remembered for GetTxStatus; oldest forgotten first.
pub const REJECTED_REMEMBERED: usize = 16_384;

/// Committed-block notifications buffered per subscriber before it is told it
/// lagged (it then resumes from the store).
pub const SUBSCRIBE_BUFFER_BLOCKS: usize = 256;

/// Longest WaitCommitted wait, so a client cannot park a task forever.
pub const WAIT_COMMITTED_MS_MAX: u64 = 60_000;
pub const WAIT_COMMITTED_MS_DEFAULT: u64 = 10_000;

/// How long a leader about to propose may hold back applying committed
/// blocks (see `Driver::proposal_due`): bounds how stale its state and
/// its clients' commit notices get when the round does not end soon.
pub const APPLY_DEFER_MS_MAX: u64 = 100;

/// Most threads `compute_threads` may ask for.
pub const MAX_COMPUTE_THREADS: usize = 1024;

/// Key file size: a hex seed and a newline. Anything bigger is not a key file.
pub const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Config file size: a few peers and addresses. Guards against a wrong path.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Validators a devnet starts: enough for tests with f = 3..10, few enough
/// that every process fits on one machine.
pub const MAX_DEVNET_VALIDATORS: usize = 32;

/// Funded demo accounts a devnet genesis may hold: enough for a load
/// generator to keep tens of thousands of transactions pending without
/// reaching the per-sender mempool bound, while the genesis file stays a
/// few megabytes and the total supply far below `u64::MAX`.
pub const MAX_DEVNET_DEMO_ACCOUNTS: u32 = 16_384;

/// Committed blocks read back at restart before the last applied one, for
/// leader reputation (the consensus core uses the last `REPUTATION_WINDOW`).
pub const RESTART_HISTORY_BLOCKS: u64 = consensus_limits::REPUTATION_WINDOW as u64;

/// Blocks above the last applied one read back at restart: at most what the
/// consensus core keeps pending.
pub const RESTART_PENDING_BLOCKS: usize = consensus_limits::MAX_PENDING_BLOCKS;

const _: () = assert!(GOSSIP_BATCH_TXS * commons_types::limits::MAX_TX_BYTES < MAX_FRAME_BYTES);
const _: () = assert!(RECONNECT_BACKOFF_MS_MIN <= RECONNECT_BACKOFF_MS_MAX);
const _: () = assert!(SUBMIT_BATCH_TXS <= ledger_limits::MAX_BLOCK_TXS * 4);
const _: () = assert!(SUBMIT_BATCH_TXS <= ADMIT_BATCH_TXS);
const _: () = assert!(GRPC_MAX_TX_MESSAGE_BYTES <= SUBMIT_BATCH_BYTES);
const _: () = assert!(GRPC_MAX_CONNECTIONS_PER_IP <= GRPC_MAX_CONNECTIONS);
const _: () = assert!(GRPC_REQUEST_TIMEOUT_MS > WAIT_COMMITTED_MS_MAX);
const _: () = assert!(ADMIT_LINGER_TXS <= ADMIT_BATCH_TXS);
const _: () = assert!(ADMIT_LINGER_MS < GOSSIP_FLUSH_MS);
const _: () = assert!(WAIT_COMMITTED_MS_DEFAULT <= WAIT_COMMITTED_MS_MAX);
