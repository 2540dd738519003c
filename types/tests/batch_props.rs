#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Batch verification against single verification: for batches with no,
//! one, or many forged signatures at any positions, the parallel and
//! one-thread batch paths return exactly the bad indices.

use commons_types::batch::{VerifyItem, verify_all, verify_all_ok, verify_all_one_thread};
use commons_types::{ChainId, Domain, SecretKey, signing_bytes};
use proptest::prelude::*;

/// How one item is broken, if at all.
#[derive(Clone, Copy, Debug)]
enum Forgery {
    FlipSignature(u8),
    AlterMessage,
    WrongKey,
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        (0u8..64).prop_map(Forgery::FlipSignature),
        Just(Forgery::AlterMessage),
        Just(Forgery::WrongKey),
    ]
}

/// A batch size and a map from index to forgery: none, one, or many.
fn case() -> impl Strategy<Value = (usize, Vec<(usize, Forgery)>)> {
    (1usize..700).prop_flat_map(|n| {
        let forged = prop_oneof![
            Just(Vec::new()),
            (0..n, forgery()).prop_map(|f| vec![f]),
            proptest::collection::vec((0..n, forgery()), 2..12),
        ];
        (Just(n), forged)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn batch_paths_return_exactly_the_bad_indices((n, forged) in case()) {
        let chain = ChainId::new("batch-props").unwrap();
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| {
                let mut seed = [7u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                SecretKey::from_seed(seed)
            })
            .collect();
        let mut messages: Vec<Vec<u8>> = (0..n)
            .map(|i| signing_bytes(Domain::Tx, &chain, format!("body {i}").as_bytes()))
            .collect();
        let mut signatures: Vec<_> = keys.iter().zip(&messages).map(|(k, m)| k.sign_raw(m)).collect();
        let mut public: Vec<_> = keys.iter().map(SecretKey::public_key).collect();
        let mut bad = vec![false; n];
        let mut seen = std::collections::BTreeSet::new();
        // One forgery per index: two bit flips of one byte would cancel.
        for &(i, f) in forged.iter().filter(|(i, _)| seen.insert(*i)) {
            match f {
                Forgery::FlipSignature(byte) => signatures[i].0[usize::from(byte)] ^= 0x01,
                Forgery::AlterMessage => messages[i].push(b'!'),
                Forgery::WrongKey => public[i] = keys[(i + 1) % n].public_key(),
            }
            // With one key in the batch, "someone else's key" is its own.
            bad[i] = !(matches!(f, Forgery::WrongKey) && n == 1);
        }
        let items: Vec<VerifyItem<'_>> = (0..n)
            .map(|i| VerifyItem { public_key: public[i], signed: &messages[i], signature: signatures[i] })
            .collect();
        // The oracle: each signature checked alone through the public key.
        let expected: Vec<bool> = items
            .iter()
            .map(|it| it.public_key.verify_raw(it.signed, &it.signature).is_ok())
            .collect();
        for (i, is_bad) in bad.iter().enumerate() {
            if *is_bad {
                prop_assert!(!expected[i], "forgery at {} verified alone", i);
            }
        }
        prop_assert_eq!(verify_all(&items), expected.clone());
        prop_assert_eq!(verify_all_one_thread(&items), expected.clone());
        prop_assert_eq!(verify_all_ok(&items), expected.iter().all(|ok| *ok));
    }
}
