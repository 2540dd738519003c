//! `commons-node`: the validator process.
//!
//! The validator itself (`init`, `start`, `devnet`) arrives with issue 9.
//! Until then the binary offers `demo`, which exercises what exists: signing
//! transactions and verifying them in parallel batches, forged ones included.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use commons_types::batch::{self, VerifyItem};
use commons_types::tx::{SignedTx, pb};
use commons_types::{ChainId, SecretKey};
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "commons-node", version, about = "The Commons validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sign settlements between random parties, forge a few, and find the
    /// forged ones with parallel batch verification.
    ///
    /// Example: commons-node demo --transactions 20000 --forged 3
    Demo {
        /// Transactions to sign and verify (two signatures each).
        #[arg(long, default_value_t = 10_000)]
        transactions: usize,
        /// Signatures to corrupt after signing.
        #[arg(long, default_value_t = 3)]
        forged: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            transactions,
            forged,
        } => demo(transactions, forged),
    }
}

fn demo(transactions: usize, forged: usize) -> Result<()> {
    if transactions == 0 || transactions > 1_000_000 {
        bail!("--transactions must be between 1 and 1000000, got {transactions}");
    }
    if forged > transactions {
        bail!("--forged ({forged}) cannot exceed --transactions ({transactions})");
    }
    let chain = ChainId::new("commons-demo").context("chain id")?;
    println!("Commons demo: {transactions} settlements, 2 signatures each, {forged} forged");

    let started = Instant::now();
    let mut txs = Vec::with_capacity(transactions);
    for i in 0..transactions {
        let buyer = SecretKey::from_seed(seed(2 * i));
        let seller = SecretKey::from_seed(seed(2 * i + 1));
        let body = pb::TxBody {
            chain_id: chain.to_string(),
            nonce: 1,
            fee: 10,
            action: Some(pb::Action {
                kind: Some(pb::action::Kind::Settle(pb::Settle {
                    marketplace: vec![0xaa; 32].into(),
                    trade_id: i as u64,
                    buyer: buyer.public_key().0.to_vec().into(),
                    seller: seller.public_key().0.to_vec().into(),
                    resource: pb::Resource::Compute as i32,
                    quantity: 3600,
                    unit_price: 2,
                    marketplace_fee: 5,
                })),
            }),
        };
        txs.push(SignedTx::sign(
            body.encode_to_vec(),
            &chain,
            &[&buyer, &seller],
        ));
    }
    println!("signed in {:.2?}", started.elapsed());

    // Corrupt signatures spread over the set, deterministically.
    let mut expected_bad = Vec::new();
    for k in 0..forged {
        let tx_index = (k * 7919 + 13) % transactions;
        let sig_index = k % 2;
        let tx = &mut txs[tx_index];
        tx.signatures[sig_index].1.0[7] ^= 0x10;
        expected_bad.push(2 * tx_index + sig_index);
    }
    expected_bad.sort_unstable();
    expected_bad.dedup();

    let signed: Vec<Vec<u8>> = txs.iter().map(|tx| tx.signed_bytes(&chain)).collect();
    let items: Vec<VerifyItem<'_>> = txs
        .iter()
        .zip(&signed)
        .flat_map(|(tx, signed)| tx.verify_items(signed))
        .collect();

    let started = Instant::now();
    let results = batch::verify_all(&items);
    let elapsed = started.elapsed();
    let found: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, ok)| !**ok)
        .map(|(i, _)| i)
        .collect();
    println!(
        "verified {} signatures in {:.2?} on {} threads: {:.0} signatures/s",
        items.len(),
        elapsed,
        rayon_threads(),
        items.len() as f64 / elapsed.as_secs_f64()
    );
    for index in &found {
        println!(
            "  forged: transaction {} signature {}",
            index / 2,
            index % 2
        );
    }
    if found != expected_bad {
        bail!("verification found {found:?}, expected {expected_bad:?}");
    }
    println!(
        "all {} forged signatures found, every other one accepted",
        found.len()
    );
    println!("The validator node and its devnet are not built yet (issue 9).");
    Ok(())
}

fn seed(i: usize) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[8] = 0xde;
    seed
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
