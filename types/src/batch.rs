//! Parallel batch verification of ed25519 signatures, with bisection to find
//! exactly which items are bad.
//!
//! The items are first ordered by public key (see `KeyGrouped`: a key
//! that signs several items of one batch costs that batch one term, not
//! one per item), then cut into chunks of [`limits::BATCH_CHUNK_MIN`] to
//! [`limits::BATCH_CHUNK_MAX`] signatures, aiming at eight chunks per core so
//! that rayon's work stealing evens out a chunk that turns out to need
//! bisection. Each chunk is verified as one batch. When a batch fails, it is
//! cut into [`limits::BISECT_FANOUT`] parts that are batch-verified as tasks of
//! their own, so the other cores help with the search instead of waiting for
//! it; only the parts that fail are cut again. Below [`limits::BISECT_LEAF`]
//! items, each is checked on its own. One forged signature therefore costs
//! about one extra chunk's work, shared among the cores, not a
//! re-verification of the whole batch one by one.
//!
//! Batch verification draws random 128-bit coefficients from a ChaCha20
//! generator seeded from the operating system per chunk. The coefficients
//! must be unpredictable to a forger, so they are not seeded from the run's
//! seed; they cannot change any result: ed25519-consensus's batch equation
//! accepts exactly the signatures its single verification accepts, and any
//! failing batch is resolved by single verification at the leaves.

use ed25519_consensus::batch;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, SeedableRng};
use rayon::prelude::*;

use crate::{PublicKey, Signature, limits};

/// One signature to check: the key, the exact signed bytes (already
/// domain-prefixed, see [`crate::signing_bytes`]) and the signature.
#[derive(Clone, Copy, Debug)]
pub struct VerifyItem<'a> {
    pub public_key: PublicKey,
    pub signed: &'a [u8],
    pub signature: Signature,
}

/// Verifies every item, in parallel across rayon's pool, and returns one
/// result per item in the same order: `true` where the signature is valid.
pub fn verify_all(items: &[VerifyItem<'_>]) -> Vec<bool> {
    let mut results = vec![false; items.len()];
    let chunk = chunk_len(items.len(), rayon::current_num_threads());
    if items.len() <= chunk {
        // One chunk is one batch, whose terms are summed by key wherever
        // its items sit: no grouping. Verified on the calling thread,
        // sparing the hand-off to a pool thread and back (a failing batch
        // is still searched with the pool's help).
        verify_chunk(items, &mut results, Threads::All);
        return results;
    }
    let grouped = KeyGrouped::new(items);
    results
        .par_chunks_mut(chunk)
        .zip(grouped.items.par_chunks(chunk))
        .for_each(|(out, items)| verify_chunk(items, out, Threads::All));
    grouped.in_caller_order(&results)
}

/// The same algorithm as [`verify_all`] on the calling thread only: the
/// baseline that shows what parallelism adds.
pub fn verify_all_one_thread(items: &[VerifyItem<'_>]) -> Vec<bool> {
    let grouped = KeyGrouped::new(items);
    let mut results = vec![false; items.len()];
    let chunk = chunk_len(items.len(), rayon::current_num_threads());
    for (out, items) in results.chunks_mut(chunk).zip(grouped.items.chunks(chunk)) {
        verify_chunk(items, out, Threads::One);
    }
    grouped.in_caller_order(&results)
}

/// The items in the order they are batched: grouped by public key, so that
/// a key signing several items of a batch lands in as few chunks as it can.
/// ed25519-consensus's batch equation has one term per distinct key of a
/// batch (the key's coefficients are summed) and one per signature; a key's
/// term carries a full 253-bit scalar where a signature's `R` term carries a
/// 128-bit one, and each distinct key is decompressed once per batch. So
/// when keys repeat (an account's transfers, a provider's settlements),
/// batching them together makes the multiscalar multiplication markedly
/// smaller; when every key is distinct it changes nothing but the order.
struct KeyGrouped<'a> {
    items: Vec<VerifyItem<'a>>,
    /// `order[k]`: the caller's index of `items[k]`.
    order: Vec<usize>,
}

impl<'a> KeyGrouped<'a> {
    fn new(items: &[VerifyItem<'a>]) -> Self {
        let mut order: Vec<usize> = (0..items.len()).collect();
        // Stable: items of one key keep the caller's order.
        order.sort_by(|&a, &b| items[a].public_key.0.cmp(&items[b].public_key.0));
        KeyGrouped {
            items: order.iter().map(|&i| items[i]).collect(),
            order,
        }
    }

    /// `grouped_results` (one per grouped item) in the caller's order.
    fn in_caller_order(&self, grouped_results: &[bool]) -> Vec<bool> {
        let mut results = vec![false; grouped_results.len()];
        for (&caller_index, &ok) in self.order.iter().zip(grouped_results) {
            results[caller_index] = ok;
        }
        results
    }
}

/// Each item checked on its own, no batching: the reference the batch paths
/// must agree with.
pub fn verify_each(items: &[VerifyItem<'_>]) -> Vec<bool> {
    items
        .iter()
        .map(|item| {
            item.public_key
                .verify_raw(item.signed, &item.signature)
                .is_ok()
        })
        .collect()
}

/// True iff every item verifies. Cheaper than [`verify_all`] when only the
/// verdict matters (a quorum certificate is either valid or not).
pub fn verify_all_ok(items: &[VerifyItem<'_>]) -> bool {
    let chunk = chunk_len(items.len(), rayon::current_num_threads());
    let chunk_ok = |items: &[VerifyItem<'_>]| {
        let prepared: Vec<batch::Item> = items.iter().map(prepare).collect();
        batch_ok(&prepared)
    };
    if items.len() <= chunk {
        // One chunk: on the calling thread, as in `verify_all`.
        return chunk_ok(items);
    }
    items.par_chunks(chunk).all(chunk_ok)
}

fn chunk_len(n: usize, threads: usize) -> usize {
    // Eight chunks per thread lets work stealing absorb one chunk that needs
    // bisection; the bounds keep batches efficient and bisection cheap.
    // With one thread there is nothing to steal or share: chunks as large
    // as the bound allows, since a batch's cost per signature falls with
    // its size (BENCHMARKS.md, "Signature verification").
    let per_chunk = if threads <= 1 {
        n
    } else {
        n.div_ceil(threads * 8)
    };
    per_chunk.clamp(limits::BATCH_CHUNK_MIN, limits::BATCH_CHUNK_MAX)
}

fn prepare(item: &VerifyItem<'_>) -> batch::Item {
    batch::Item::from((
        item.public_key.to_key_bytes(),
        item.signature.to_ed25519(),
        item.signed,
    ))
}

/// Whether a failing batch is searched with the help of rayon's pool, or on
/// the calling thread alone (the one-thread baseline).
#[derive(Clone, Copy)]
enum Threads {
    All,
    One,
}

fn verify_chunk(items: &[VerifyItem<'_>], out: &mut [bool], threads: Threads) {
    assert_eq!(items.len(), out.len());
    let prepared: Vec<batch::Item> = items.iter().map(prepare).collect();
    if batch_ok(&prepared) {
        out.fill(true);
    } else {
        bisect_failing(&prepared, out, threads);
    }
}

/// `items` is known to hold at least one bad signature (its batch failed).
fn bisect_failing(items: &[batch::Item], out: &mut [bool], threads: Threads) {
    assert_eq!(items.len(), out.len());
    if items.len() <= limits::BISECT_LEAF {
        for (item, result) in items.iter().zip(out.iter_mut()) {
            *result = item.clone().verify_single().is_ok();
        }
        return;
    }
    let part = items
        .len()
        .div_ceil(limits::BISECT_FANOUT)
        .max(limits::BISECT_LEAF);
    let search = |(out, items): (&mut [bool], &[batch::Item])| {
        if batch_ok(items) {
            out.fill(true);
        } else {
            bisect_failing(items, out, threads);
        }
    };
    match threads {
        Threads::All => out
            .par_chunks_mut(part)
            .zip(items.par_chunks(part))
            .for_each(search),
        Threads::One => out
            .chunks_mut(part)
            .zip(items.chunks(part))
            .for_each(search),
    }
}

fn batch_ok(items: &[batch::Item]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut verifier = batch::Verifier::new();
    for item in items {
        verifier.queue(item.clone());
    }
    verifier
        .verify(ChaCha20Rng::from_rng(OsRng).unwrap_or_else(|_| fallback_rng()))
        .is_ok()
}

/// Used only if the OS generator fails, which Linux's getrandom does not do
/// once the system is booted. Seeding from the address of a stack value and
/// a counter is weak but still unknown in advance to a remote forger.
fn fallback_rng() -> ChaCha20Rng {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let marker = 0u8;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(std::ptr::addr_of!(marker) as usize as u64).to_le_bytes());
    seed[8..16].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    ChaCha20Rng::from_seed(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainId, Domain, SecretKey, signing_bytes};

    fn signed_batch(n: usize) -> (Vec<PublicKey>, Vec<Vec<u8>>, Vec<Signature>) {
        let chain = ChainId::new("batch-test").unwrap();
        let mut keys = Vec::new();
        let mut messages = Vec::new();
        let mut sigs = Vec::new();
        for i in 0..n {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = SecretKey::from_seed(seed);
            let msg = signing_bytes(Domain::Tx, &chain, format!("tx {i}").as_bytes());
            sigs.push(key.sign_raw(&msg));
            keys.push(key.public_key());
            messages.push(msg);
        }
        (keys, messages, sigs)
    }

    fn items<'a>(
        keys: &[PublicKey],
        msgs: &'a [Vec<u8>],
        sigs: &[Signature],
    ) -> Vec<VerifyItem<'a>> {
        keys.iter()
            .zip(msgs)
            .zip(sigs)
            .map(|((k, m), s)| VerifyItem {
                public_key: *k,
                signed: m,
                signature: *s,
            })
            .collect()
    }

    #[test]
    fn chunks_stay_within_bounds() {
        assert_eq!(chunk_len(0, 2), limits::BATCH_CHUNK_MIN);
        assert_eq!(chunk_len(4096, 2), 256);
        assert_eq!(chunk_len(8192, 2), limits::BATCH_CHUNK_MAX);
        assert_eq!(chunk_len(1_000_000, 2), limits::BATCH_CHUNK_MAX);
        assert_eq!(chunk_len(100, 64), limits::BATCH_CHUNK_MIN);
        // One thread: one batch as large as the bound allows.
        assert_eq!(chunk_len(300, 1), 300);
        assert_eq!(chunk_len(10, 1), limits::BATCH_CHUNK_MIN);
        assert_eq!(chunk_len(4096, 1), limits::BATCH_CHUNK_MAX);
    }

    #[test]
    fn empty_batch_is_empty() {
        assert!(verify_all(&[]).is_empty());
        assert!(verify_all_ok(&[]));
    }

    #[test]
    fn every_kind_of_forgery_is_found_at_its_index() {
        let (keys, mut msgs, mut sigs) = signed_batch(300);
        let mut keys = keys;
        sigs[0].0[0] ^= 1; // flipped bit in R
        msgs[17].push(0); // message altered after signing
        keys[150] = keys[151]; // someone else's key
        sigs[299] = Signature([0xff; 64]); // garbage, s out of range
        keys[200] = PublicKey([0xff; 32]); // not a curve point
        let items = items(&keys, &msgs, &sigs);
        let expected: Vec<bool> = (0..300)
            .map(|i| ![0, 17, 150, 200, 299].contains(&i))
            .collect();
        assert_eq!(verify_all(&items), expected);
        assert_eq!(verify_all_one_thread(&items), expected);
        assert_eq!(verify_each(&items), expected);
        assert!(!verify_all_ok(&items));
    }

    /// Keys that sign several items, interleaved (so grouping by key
    /// reorders them), with forgeries among one key's items: every verdict
    /// comes back at the caller's index.
    #[test]
    fn repeated_keys_keep_each_verdict_at_its_index() {
        let chain = ChainId::new("batch-test").unwrap();
        let signers: Vec<SecretKey> = (0..5u8)
            .map(|i| SecretKey::from_seed([i + 1; 32]))
            .collect();
        let mut keys = Vec::new();
        let mut msgs = Vec::new();
        let mut sigs = Vec::new();
        for i in 0..700 {
            let key = &signers[i % signers.len()];
            let msg = signing_bytes(Domain::Tx, &chain, format!("item {i}").as_bytes());
            sigs.push(key.sign_raw(&msg));
            keys.push(key.public_key());
            msgs.push(msg);
        }
        // Items 3, 8, 13, ... are the fourth signer's; forge two of them
        // and one of another signer's.
        let forged = [8, 443, 611];
        for &i in &forged {
            msgs[i].push(1);
        }
        let items = items(&keys, &msgs, &sigs);
        let expected: Vec<bool> = (0..700).map(|i| !forged.contains(&i)).collect();
        assert_eq!(verify_each(&items), expected);
        assert_eq!(verify_all(&items), expected);
        assert_eq!(verify_all_one_thread(&items), expected);
        let grouped = KeyGrouped::new(&items);
        assert!(
            grouped
                .items
                .windows(2)
                .all(|w| w[0].public_key.0 <= w[1].public_key.0)
        );
        // Few enough for one chunk, verified on the calling thread.
        let few = &items[..40];
        assert!(few.len() <= chunk_len(few.len(), rayon::current_num_threads()));
        assert_eq!(verify_all(few), expected[..40]);
        assert!(!verify_all_ok(few));
        assert!(verify_all_ok(&items[..8]));
    }
}
