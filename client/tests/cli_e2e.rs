//! End-to-end: the `commons` binary against 4 real `commons-node` processes
//! on 127.0.0.1 (RocksDB on disk), and against a lying node in front of
//! them.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rules)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The CLI as one "machine": its own home (trust, config, keys).
struct Machine {
    home: PathBuf,
}

impl Machine {
    fn new(dir: &Path, name: &str, genesis: &Path, node: &str) -> Machine {
        let m = Machine {
            home: dir.join(name),
        };
        let out = m.ok(&[
            "init",
            "--genesis",
            genesis.to_str().unwrap(),
            "--node",
            node,
        ]);
        assert!(out.contains("trusting chain commons-devnet"), "{out}");
        m
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(CLI)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .env_remove("COMMONS_HOME")
            .env_remove("COMMONS_NODE")
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "commons {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Imports devnet demo account `i` (funded at genesis) under `name`.
    fn import_demo(&self, i: u32, name: &str) {
        let seed = self.home.join(format!("{name}.seed"));
        std::fs::create_dir_all(&self.home).unwrap();
        std::fs::write(&seed, hex::encode(demo_key(i).to_seed())).unwrap();
        self.ok(&[
            "keys",
            "import",
            name,
            "--seed-file",
            seed.to_str().unwrap(),
        ]);
        std::fs::remove_file(seed).unwrap();
    }

    fn public_key(&self, name: &str) -> String {
        self.json(&["keys", "show", name])["public_key"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A member joins, gets funds, bonds, proposes a parameter change; others
/// vote from their own machines; it passes and takes effect. Then a
/// settlement is signed by buyer and seller in two key directories and
/// commits. Everything through the CLI binary, every read verified.
#[test]
fn member_proposes_others_vote_change_takes_effect_and_two_machine_settlement() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::init(
        4,
        &[
            // Short epochs: the client follows several validator-set epochs.
            "--epoch-length",
            "20",
            "--param",
            "voting_period_blocks=40",
            "--param",
            "min_deposit=1000",
            "--param",
            "deposit_period_blocks=400",
        ],
    );
    cluster.start_all();
    cluster.wait_ready(0, 3);
    let genesis = cluster.nodes[0].home.join("genesis.json");
    let dir = cluster.dir.path().to_path_buf();
    let member = Machine::new(&dir, "member", &genesis, &cluster.endpoint(0));
    let bob = Machine::new(&dir, "bob", &genesis, &cluster.endpoint(1));
    let carol = Machine::new(&dir, "carol", &genesis, &cluster.endpoint(2));

    // Keys: a new one, a funded one, and the secret stays hidden.
    let created = member.ok(&["keys", "new", "alice"]);
    assert!(created.contains("public key:"), "{created}");
    let alice = member.public_key("alice");
    member.import_demo(0, "faucet");
    bob.import_demo(1, "bob");
    carol.import_demo(2, "carol");
    let listed = member.ok(&["keys", "list"]);
    assert!(
        listed.contains("alice") && listed.contains("faucet"),
        "{listed}"
    );
    let refused = member.run(&["keys", "export", "alice"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to show a secret"));
    assert!(!listed.contains(&hex::encode(demo_key(0).to_seed())));

    // Funds for the new member, then bonds.
    let before = member.json(&["balance", "alice"]);
    assert_eq!(before["exists"], false);
    assert!(before["verified"]["block_height"].as_u64().unwrap() > 0);
    let sent = member.json(&[
        "transfer", "--from", "faucet", "--to", "alice", "--amount", "50000000",
    ]);
    assert_eq!(sent["inclusion_verified"], true);
    assert_eq!(sent["inclusion"], "certified_block");
    let funded = member.json(&["balance", "alice"]);
    assert_eq!(funded["balance"], 50_000_000);
    member.ok(&["bond", "--from", "alice", "20000000"]);
    bob.ok(&["bond", "--from", "bob", "5000000"]);
    carol.ok(&["bond", "--from", "carol", "2000000"]);
    let bonded = member.json(&["query", "account", &alice]);
    assert_eq!(bonded["bonded"], 20_000_000);
    assert_eq!(bonded["nonce"], 1);

    // The proposal: double the base fee.
    let params = member.json(&["query", "params"]);
    assert_eq!(params["params"]["fee_base"], 1000);
    let proposed = member.json(&[
        "gov",
        "propose",
        "param",
        "--from",
        "alice",
        "--title",
        "Dearer fees",
        "--deposit",
        "1000",
        "--set",
        "fee_base=2000",
    ]);
    let id = proposed["proposal_id"].as_u64().expect("proposal id found");
    let id_s = id.to_string();
    member.ok(&["gov", "vote", "--from", "alice", &id_s, "yes"]);
    bob.ok(&[
        "gov",
        "vote",
        "--from",
        "bob",
        &id_s,
        "--weighted",
        "yes=700,no=300",
    ]);
    carol.ok(&["gov", "vote", "--from", "carol", &id_s, "no"]);

    // Live tally while voting (from a third machine, another node).
    let shown = carol.json(&["gov", "show", &id_s]);
    let phase_now = shown["proposal"]["status"].clone();
    if phase_now.get("VotingPeriod").is_some() {
        assert_eq!(shown["tally"]["yes"], 20_000_000 + 3_500_000);
        assert_eq!(shown["tally"]["no"], 1_500_000 + 2_000_000);
        assert_eq!(shown["projection"]["quorum_reached"], true);
        assert!(shown["blocks_left"].as_u64().is_some());
        let human = carol.ok(&["gov", "show", &id_s]);
        assert!(human.contains("quorum needs 33.4%: reached"), "{human}");
        assert!(human.contains("time left"), "{human}");
    }
    let voting = member.json(&["gov", "list", "--status", "all"]);
    assert!(
        voting["proposals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id),
        "{voting}"
    );

    // Wait for the tally (40 blocks of voting, ~4 blocks a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let p = bob.json(&["gov", "show", &id_s]);
        if p["proposal"]["status"].get("Finished").is_some() {
            break p;
        }
        assert!(Instant::now() < deadline, "proposal never finished: {p}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        finished["proposal"]["status"]["Finished"]["outcome"], "Passed",
        "{finished}"
    );
    let listed = member.json(&["gov", "list", "--status", "finished"]);
    assert_eq!(listed["proposals"][0]["id"], id);

    // It took effect: the parameter, and the fee a transaction now pays.
    let params = carol.json(&["query", "params"]);
    assert_eq!(params["params"]["fee_base"], 2000);
    let paid = member.json(&[
        "transfer", "--from", "alice", "--to", "faucet", "--amount", "1",
    ]);
    assert!(paid["fee"].as_u64().unwrap() >= 2000, "{paid}");

    // A settlement: buyer alice signs on the member's machine, seller bob on
    // his; bob submits through another node.
    member.ok(&["keys", "new", "market"]);
    let market = member.public_key("market");
    let bob_key = bob.public_key("bob");
    let trade = dir.join("trade.json");
    let trade_s = trade.to_str().unwrap();
    let created = member.ok(&[
        "settle",
        "create",
        "--buyer",
        "alice",
        "--seller",
        &bob_key,
        "--marketplace",
        "market",
        "--trade-id",
        "7",
        "--resource",
        "compute",
        "--quantity",
        "10",
        "--unit-price",
        "3",
        "--marketplace-fee",
        "1",
        "--out",
        trade_s,
    ]);
    assert!(created.contains("(missing)"), "{created}");
    // Unsigned by the seller, it cannot be submitted.
    let early = member.run(&["settle", "submit", trade_s]);
    assert_eq!(early.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&early.stderr).contains("signatures missing"));
    let signed = bob.ok(&["settle", "sign", trade_s, "--key", "bob"]);
    assert!(signed.contains("quantity     10"), "{signed}");
    let settled = bob.json(&["settle", "submit", trade_s]);
    assert_eq!(settled["settlement"]["exists"], true, "{settled}");
    assert_eq!(settled["settlement"]["quantity"], 10);
    // Another node may be a block behind bob's: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen = member.json(&["query", "settlement", &market, "7"]);
        if seen["exists"] == true || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(seen["buyer"], alice);
    assert_eq!(seen["seller"], bob_key);
    assert!(seen["verified"]["state_height"].as_u64().unwrap() >= seen["height"].as_u64().unwrap());
    // Settling the same trade twice is impossible.
    let again = bob.run(&["settle", "submit", trade_s]);
    assert_ne!(again.status.code(), Some(0));

    // A lease: alice escrows for bob, bob claims, alice closes.
    member.ok(&[
        "lease",
        "open",
        "--from",
        "alice",
        "--provider",
        &bob_key,
        "--resource",
        "storage",
        "--escrow",
        "10000",
        "--rate-per-block",
        "1000",
        "--duration-blocks",
        "400",
    ]);
    let lease = member.json(&["query", "lease", "0"]);
    assert_eq!(lease["buyer"], alice, "{lease}");
    assert_eq!(lease["escrow"], 10_000);
    bob.ok(&["lease", "claim", "--from", "bob", "0", "2500"]);
    assert_eq!(bob.json(&["query", "lease", "0"])["claimed"], 2500);
    member.ok(&["lease", "close", "--from", "alice", "0"]);
    assert_eq!(member.json(&["query", "lease", "0"])["exists"], false);
    // Unbonding starts a release at a later height.
    carol.ok(&["unbond", "--from", "carol", "1000"]);
    let c = carol.json(&["balance", "carol"]);
    assert_eq!(c["bonded"], 2_000_000 - 1000);
    assert_eq!(c["unbonding"][0]["amount"], 1000);

    // The client followed the epochs and saved what it learned.
    let trust: Value =
        serde_json::from_str(&std::fs::read_to_string(member.home.join("trust.json")).unwrap())
            .unwrap();
    assert!(trust["epochs"].as_array().unwrap().len() > 1, "{trust}");
    let block = member.json(&["query", "block", "5"]);
    assert!(block["verified"]["signers_power"].as_u64().unwrap() > 266);
    eprintln!("cli e2e took {:?}", started.elapsed());
}

/// A node that lies about a balance — in the answer's fields, in the proven
/// value, or with a forged state root — is refused with a clear error and
/// exit code 3; with --no-verify the lie goes through, loudly marked.
#[test]
fn lying_node_is_refused() {
    let _serial = serial();
    let mut cluster = Cluster::init(4, &[]);
    cluster.start_all();
    cluster.wait_ready(0, 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let genesis = cluster.nodes[0].home.join("genesis.json");
    let dir = cluster.dir.path().to_path_buf();
    let honest = Machine::new(&dir, "honest", &genesis, &cluster.endpoint(0));
    honest.import_demo(3, "demo");
    let truth = honest.json(&["balance", "demo"]);
    assert_eq!(truth["balance"], commons_node::devnet::DEVNET_DEMO_BALANCE);

    for (lie, expected) in [
        (Lie::Balance, "the balance"),
        (Lie::ProvenValue, "Merkle proof"),
        (Lie::StateRoot, "certified block says"),
        (Lie::Certificate, "signature does not verify"),
    ] {
        let proxy = rt.block_on(start_lying_proxy(cluster.endpoint(0), lie));
        let fooled = Machine {
            home: dir.join(format!("fooled-{lie:?}")),
        };
        let out = fooled.run(&[
            "init",
            "--genesis",
            genesis.to_str().unwrap(),
            "--node",
            &proxy,
        ]);
        assert!(out.status.success());
        fooled.import_demo(3, "demo");
        let out = fooled.run(&["balance", "demo"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{lie:?}: {stderr}");
        assert!(stderr.contains("REFUSED"), "{lie:?}: {stderr}");
        assert!(stderr.contains(expected), "{lie:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{lie:?}: nothing believed");
        if lie == Lie::Balance {
            assert!(
                stderr.contains(&format!("{}", commons_node::devnet::DEVNET_DEMO_BALANCE)),
                "the error names the proven balance: {stderr}"
            );
            // Without verification the lie gets through, loudly marked.
            let out = fooled.run(&["balance", "demo", "--no-verify"]);
            assert!(out.status.success());
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stdout.contains(&format!(
                    "{}",
                    commons_node::devnet::DEVNET_DEMO_BALANCE + LIE_AMOUNT
                )),
                "{stdout}"
            );
            assert!(stdout.contains("UNVERIFIED"), "{stdout}");
            assert!(stderr.contains("NOT VERIFIED"), "{stderr}");
        }
    }
}

/// Every command answers `--help` with an example.
#[test]
fn every_command_has_help_with_an_example() {
    let paths: &[&[&str]] = &[
        &[],
        &["init"],
        &["keys"],
        &["keys", "new"],
        &["keys", "list"],
        &["keys", "show"],
        &["keys", "import"],
        &["keys", "export"],
        &["balance"],
        &["transfer"],
        &["bond"],
        &["unbond"],
        &["lease"],
        &["lease", "open"],
        &["lease", "claim"],
        &["lease", "close"],
        &["settle"],
        &["settle", "create"],
        &["settle", "sign"],
        &["settle", "submit"],
        &["gov"],
        &["gov", "propose"],
        &["gov", "propose", "text"],
        &["gov", "propose", "param"],
        &["gov", "propose", "treasury-spend"],
        &["gov", "propose", "validators"],
        &["gov", "propose", "exclude"],
        &["gov", "propose", "reinstate"],
        &["gov", "propose", "upgrade"],
        &["gov", "deposit"],
        &["gov", "vote"],
        &["gov", "show"],
        &["gov", "list"],
        &["query"],
        &["query", "account"],
        &["query", "lease"],
        &["query", "settlement"],
        &["query", "proposal"],
        &["query", "vote"],
        &["query", "validators"],
        &["query", "params"],
        &["query", "block"],
        &["completions"],
    ];
    for path in paths {
        let out = Command::new(CLI)
            .args(*path)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path:?}");
        assert!(
            text.contains("Example:"),
            "{path:?} has no example:\n{text}"
        );
        assert!(text.contains("commons "), "{path:?}");
    }
    // Shell completions cover the tree.
    let out = Command::new(CLI)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("settle"));
    // A usage error is exit code 2 with a clear message.
    let out = Command::new(CLI).args(["gov", "vote"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
