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
//! The batch equation is ed25519-consensus's (ZIP 215: cofactored, so it
//! accepts exactly what single verification accepts), computed here on the
//! same curve library so that a key's decompressed point can be kept: an
//! account that signs again costs its next batch one decompression (its
//! `R`) instead of two. Decompression is a fixed function of the key's
//! bytes, so the cache changes no verdict; keys that are not curve points
//! are never cached, and single verification at the bisection's leaves is
//! ed25519-consensus's own.
//!
//! Batch verification draws random 128-bit coefficients from a ChaCha20
//! generator seeded from the operating system per batch. The coefficients
//! must be unpredictable to a forger, so they are not seeded from the run's
//! seed; they cannot change any result: the batch equation accepts exactly
//! the signatures single verification accepts, and any failing batch is
//! resolved by single verification at the leaves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{LazyLock, RwLock};

use curve25519_dalek_ng::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek_ng::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek_ng::scalar::Scalar;
use curve25519_dalek_ng::traits::{IsIdentity, VartimeMultiscalarMul};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::{Digest, Sha512};

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
        let prepared: Vec<Prepared<'_>> = items.iter().map(Prepared::new).collect();
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

/// One signature ready for the batch equation: the item and its challenge
/// `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
struct Prepared<'a> {
    item: &'a VerifyItem<'a>,
    k: Scalar,
}

impl<'a> Prepared<'a> {
    fn new(item: &'a VerifyItem<'a>) -> Self {
        let digest = Sha512::new()
            .chain_update(&item.signature.0[..32])
            .chain_update(item.public_key.0)
            .chain_update(item.signed)
            .finalize();
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&digest);
        Prepared {
            item,
            k: Scalar::from_bytes_mod_order_wide(&wide),
        }
    }

    /// ed25519-consensus's single verification: the reference verdict.
    fn verify_single(&self) -> bool {
        self.item
            .public_key
            .verify_raw(self.item.signed, &self.item.signature)
            .is_ok()
    }
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
    let prepared: Vec<Prepared<'_>> = items.iter().map(Prepared::new).collect();
    if batch_ok(&prepared) {
        out.fill(true);
    } else {
        bisect_failing(&prepared, out, threads);
    }
}

/// `items` is known to hold at least one bad signature (its batch failed).
fn bisect_failing(items: &[Prepared<'_>], out: &mut [bool], threads: Threads) {
    assert_eq!(items.len(), out.len());
    if items.len() <= limits::BISECT_LEAF {
        for (item, result) in items.iter().zip(out.iter_mut()) {
            *result = item.verify_single();
        }
        return;
    }
    let part = items
        .len()
        .div_ceil(limits::BISECT_FANOUT)
        .max(limits::BISECT_LEAF);
    let search = |(out, items): (&mut [bool], &[Prepared<'_>])| {
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

/// The batch equation over `items`, true iff it holds:
/// `[8]([-Σ zᵢsᵢ]B + Σ_A [Σ_{i of A} zᵢkᵢ]A + Σ [zᵢ]Rᵢ) = 0` with random
/// 128-bit `zᵢ`, one term per distinct key. False also when an `s` is not
/// canonical or a point does not decompress (bisection then finds which).
fn batch_ok(items: &[Prepared<'_>]) -> bool {
    if items.is_empty() {
        return true;
    }
    let mut rng = ChaCha20Rng::from_rng(OsRng).unwrap_or_else(|_| fallback_rng());
    let mut key_term: HashMap<[u8; 32], usize> = HashMap::with_capacity(items.len());
    let mut a_points = Vec::with_capacity(items.len());
    let mut a_coeffs = Vec::with_capacity(items.len());
    let mut r_points = Vec::with_capacity(items.len());
    let mut r_coeffs = Vec::with_capacity(items.len());
    let mut b_coeff = Scalar::zero();
    for prepared in items {
        let signature = &prepared.item.signature.0;
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature[32..]);
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&signature[..32]);
        let Some(s) = Scalar::from_canonical_bytes(s_bytes) else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        let mut z_bytes = [0u8; 16];
        rng.fill_bytes(&mut z_bytes);
        let z = Scalar::from(u128::from_le_bytes(z_bytes));
        b_coeff -= z * s;
        r_points.push(r);
        r_coeffs.push(z);
        let term = match key_term.entry(prepared.item.public_key.0) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let Some(a) = key_point(entry.key()) else {
                    return false;
                };
                a_points.push(a);
                a_coeffs.push(Scalar::zero());
                *entry.insert(a_points.len() - 1)
            }
        };
        a_coeffs[term] += z * prepared.k;
    }
    let check = EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(&b_coeff)
            .chain(a_coeffs.iter())
            .chain(r_coeffs.iter()),
        std::iter::once(&ED25519_BASEPOINT_POINT)
            .chain(a_points.iter())
            .chain(r_points.iter()),
    );
    check.mul_by_cofactor().is_identity()
}

const KEY_CACHE_SHARDS: usize = 16;

/// One shard of the key cache: key bytes to their decompressed point.
type KeyShard = RwLock<HashMap<[u8; 32], EdwardsPoint>>;

/// Decompressed points of recently seen keys, in shards by the key's first
/// byte so that the verifying threads rarely meet on a lock.
static KEY_CACHE: LazyLock<Vec<KeyShard>> = LazyLock::new(|| {
    (0..KEY_CACHE_SHARDS)
        .map(|_| RwLock::new(HashMap::new()))
        .collect()
});

/// The curve point of a public key, or `None` if its bytes are not one;
/// from the cache when the key was seen recently.
fn key_point(key: &[u8; 32]) -> Option<EdwardsPoint> {
    let shard = &KEY_CACHE[usize::from(key[0]) % KEY_CACHE_SHARDS];
    if let Some(point) = shard
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(key)
    {
        return Some(*point);
    }
    let point = CompressedEdwardsY(*key).decompress()?;
    let mut cached = shard
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if cached.len() >= limits::VERIFY_KEY_CACHE_KEYS / KEY_CACHE_SHARDS {
        cached.clear();
    }
    cached.insert(*key, point);
    Some(point)
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
        keys[200] = PublicKey(off_curve_key()); // not a curve point
        let items = items(&keys, &msgs, &sigs);
        let expected: Vec<bool> = (0..300)
            .map(|i| ![0, 17, 150, 200, 299].contains(&i))
            .collect();
        assert_eq!(verify_all(&items), expected);
        assert_eq!(verify_all_one_thread(&items), expected);
        assert_eq!(verify_each(&items), expected);
        assert!(!verify_all_ok(&items));
    }

    /// The first encoding `[b, 0, …]` whose y has no x on the curve.
    fn off_curve_key() -> [u8; 32] {
        (2u8..=255)
            .map(|b| {
                let mut key = [0u8; 32];
                key[0] = b;
                key
            })
            .find(|key| CompressedEdwardsY(*key).decompress().is_none())
            .unwrap()
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// ZIP 215's corner cases: keys and `R`s of small order, and
    /// non-canonical encodings (y ≥ p). With s = 0 the cofactored equation
    /// holds for every pair, so single verification accepts them all; the
    /// batch equation computed here must accept the same, the first time
    /// (keys decompressed) and the second (keys from the cache).
    #[test]
    fn batch_equation_accepts_what_single_verification_accepts() {
        let small_order = [
            // identity (y = 1), order 2 (y = -1), order 4 (y = 0)
            hex32("0100000000000000000000000000000000000000000000000000000000000000"),
            hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            hex32("0000000000000000000000000000000000000000000000000000000000000000"),
            // order 8
            hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            // y = p + 1: a non-canonical encoding of the identity
            hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ];
        let messages: Vec<Vec<u8>> = (0..small_order.len() * small_order.len())
            .map(|i| format!("corner {i}").into_bytes())
            .collect();
        let mut items = Vec::new();
        for (i, key) in small_order.iter().enumerate() {
            for (j, r) in small_order.iter().enumerate() {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(r);
                items.push(VerifyItem {
                    public_key: PublicKey(*key),
                    signed: &messages[i * small_order.len() + j],
                    signature: Signature(signature),
                });
            }
        }
        assert!(verify_each(&items).iter().all(|ok| *ok));
        // One chunk: `verify_all_ok` is the batch equation itself.
        assert!(items.len() <= chunk_len(items.len(), rayon::current_num_threads()));
        assert!(verify_all_ok(&items), "first pass");
        assert!(verify_all_ok(&items), "keys from the cache");
        // A non-canonical s (s = ℓ) is refused by both.
        let mut bad = items[0];
        bad.signature.0[32..].copy_from_slice(&hex32(
            "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
        ));
        assert_eq!(verify_each(&[bad]), vec![false]);
        assert!(!verify_all_ok(&[bad]));
    }

    #[test]
    fn keys_off_the_curve_are_not_cached() {
        let not_a_point = off_curve_key();
        assert!(key_point(&not_a_point).is_none());
        let shard = &KEY_CACHE[usize::from(not_a_point[0]) % KEY_CACHE_SHARDS];
        assert!(!shard.read().unwrap().contains_key(&not_a_point));
        let key = SecretKey::from_seed([9; 32]).public_key();
        let point = key_point(&key.0).unwrap();
        assert_eq!(point.compress().to_bytes(), key.0);
        let shard = &KEY_CACHE[usize::from(key.0[0]) % KEY_CACHE_SHARDS];
        assert!(shard.read().unwrap().contains_key(&key.0));
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
