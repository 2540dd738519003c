//! The command tree. Every command's help ends with an example (checked by
//! a test that walks the whole tree).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "commons",
    version,
    about = "The Commons command line: keys, transfers, settlements, leases, the DAO, and verified queries",
    after_help = "Example:\n  commons init --genesis genesis.json --node http://127.0.0.1:26601\n  commons keys new alice\n  commons balance alice"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Home directory: config.toml, trust.json, keys/ (default ~/.commons).
    #[arg(long, global = true, env = "COMMONS_HOME")]
    pub home: Option<PathBuf>,
    /// gRPC URL of the node to ask (default: `node` in config.toml).
    #[arg(long, global = true, env = "COMMONS_NODE")]
    pub node: Option<String>,
    /// Output for people, or JSON for scripts (default: `output` in config.toml, else human).
    #[arg(long, global = true, value_enum)]
    pub output: Option<OutputFormat>,
    /// DEBUGGING ONLY: believe the node without checking proofs and certificates.
    #[arg(long, global = true)]
    pub no_verify: bool,
    /// Seconds to wait for a transaction's finality (default 30).
    #[arg(long, global = true)]
    pub wait_secs: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set up the home: the chain and validator set to trust, and defaults.
    #[command(
        after_help = "Example:\n  commons init --genesis genesis.json --node http://127.0.0.1:26601"
    )]
    Init(InitArgs),
    /// Manage keys (stored owner-only; secrets shown only when asked).
    #[command(subcommand, after_help = "Example:\n  commons keys new alice")]
    Keys(KeysCmd),
    /// Show an account's spendable balance, bonded stake and nonce (verified).
    #[command(after_help = "Example:\n  commons balance alice")]
    Balance {
        /// Key name or 64-hex public key.
        account: String,
    },
    /// Send funds to another account.
    #[command(after_help = "Example:\n  commons transfer --from alice --to bob --amount 1000")]
    Transfer {
        #[arg(long)]
        from: String,
        /// Key name or 64-hex public key.
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Bond stake: voting power in the DAO.
    #[command(after_help = "Example:\n  commons bond --from alice 5000000")]
    Bond {
        #[arg(long)]
        from: String,
        amount: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Start unbonding stake (spendable after the unbonding period).
    #[command(after_help = "Example:\n  commons unbond --from alice 1000")]
    Unbond {
        #[arg(long)]
        from: String,
        amount: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Leases: escrow for a provider who claims metered usage.
    #[command(
        subcommand,
        after_help = "Example:\n  commons lease open --from alice --provider bob --resource storage --escrow 1000 --rate-per-block 10 --duration-blocks 100"
    )]
    Lease(LeaseCmd),
    /// Two-party settlements, signed by buyer and seller, possibly on different machines.
    #[command(
        subcommand,
        after_help = "Example:\n  commons settle create --buyer alice --seller BOBKEY --marketplace MKTKEY --trade-id 7 --resource compute --quantity 10 --unit-price 3 --out trade.json\n  commons settle sign trade.json --key bob     # on the seller's machine\n  commons settle submit trade.json"
    )]
    Settle(SettleCmd),
    /// The DAO: proposals, deposits, votes and tallies.
    #[command(
        subcommand,
        after_help = "Example:\n  commons gov vote --from alice 0 yes"
    )]
    Gov(GovCmd),
    /// Verified queries of the ledger's state and blocks.
    #[command(subcommand, after_help = "Example:\n  commons query account alice")]
    Query(QueryCmd),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  commons completions bash > /etc/bash_completion.d/commons")]
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Genesis file of the chain: trust its validators for epoch 0.
    #[arg(long, conflicts_with = "trust_file")]
    pub genesis: Option<PathBuf>,
    /// A trust file (trust.json of another home you trust) instead of a genesis.
    #[arg(long)]
    pub trust_file: Option<PathBuf>,
    /// Replace an existing trust file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct FeeArg {
    /// Fee to pay (default: the least the verified fee parameters require).
    #[arg(long)]
    pub fee: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Generate a key from the OS's randomness.
    #[command(after_help = "Example:\n  commons keys new alice")]
    New { name: String },
    /// List stored keys (public keys only).
    #[command(after_help = "Example:\n  commons keys list")]
    List,
    /// Show a key's public key.
    #[command(after_help = "Example:\n  commons keys show alice")]
    Show { name: String },
    /// Import a secret key (32-byte seed in hex) from a file or stdin.
    #[command(after_help = "Example:\n  commons keys import alice --seed-file alice.seed")]
    Import {
        name: String,
        /// File holding the seed in hex; without it, the seed is read from stdin.
        #[arg(long)]
        seed_file: Option<PathBuf>,
    },
    /// Export a secret key: to a new owner-only file, or printed only with --print-secret.
    #[command(after_help = "Example:\n  commons keys export alice --out alice.seed")]
    Export {
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the secret seed on stdout.
        #[arg(long)]
        print_secret: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceArg {
    Compute,
    Storage,
    Energy,
}

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Open a lease: escrow funds a provider may claim up to a rate per block.
    #[command(
        after_help = "Example:\n  commons lease open --from alice --provider bob --resource storage --escrow 1000 --rate-per-block 10 --duration-blocks 100"
    )]
    Open {
        #[arg(long)]
        from: String,
        #[arg(long)]
        provider: String,
        #[arg(long, value_enum)]
        resource: ResourceArg,
        #[arg(long)]
        escrow: u64,
        #[arg(long)]
        rate_per_block: u64,
        #[arg(long)]
        duration_blocks: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Claim metered usage of a lease (as its provider).
    #[command(after_help = "Example:\n  commons lease claim --from bob 0 250")]
    Claim {
        #[arg(long)]
        from: String,
        lease_id: u64,
        amount: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Close a lease; the unclaimed escrow returns to the buyer.
    #[command(after_help = "Example:\n  commons lease close --from alice 0")]
    Close {
        #[arg(long)]
        from: String,
        lease_id: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum SettleCmd {
    /// Build a settlement as the buyer, sign it, and write it to a file for the seller.
    #[command(
        after_help = "Example:\n  commons settle create --buyer alice --seller 3b6a...e1 --marketplace 9f2c...07 --trade-id 7 --resource compute --quantity 10 --unit-price 3 --marketplace-fee 1 --out trade.json"
    )]
    Create {
        /// The buyer's key name (signs first and pays the fee).
        #[arg(long)]
        buyer: String,
        /// The seller: key name or 64-hex public key.
        #[arg(long)]
        seller: String,
        /// The marketplace: key name or 64-hex public key.
        #[arg(long)]
        marketplace: String,
        #[arg(long)]
        trade_id: u64,
        #[arg(long, value_enum)]
        resource: ResourceArg,
        #[arg(long)]
        quantity: u64,
        #[arg(long)]
        unit_price: u64,
        #[arg(long, default_value_t = 0)]
        marketplace_fee: u64,
        /// Where to write the partially signed settlement.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Show a partially signed settlement's terms and add a signature to it.
    #[command(after_help = "Example:\n  commons settle sign trade.json --key bob")]
    Sign {
        file: PathBuf,
        /// The signing key's name (buyer or seller).
        #[arg(long)]
        key: String,
        /// Write the result here instead of back into FILE.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Submit a fully signed settlement and wait for its finality.
    #[command(after_help = "Example:\n  commons settle submit trade.json")]
    Submit { file: PathBuf },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteChoice {
    Yes,
    No,
    Abstain,
    Veto,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Deposit,
    Voting,
    Finished,
}

#[derive(Subcommand, Debug)]
pub enum GovCmd {
    /// Submit a proposal with an initial deposit.
    #[command(
        subcommand,
        after_help = "Example:\n  commons gov propose param --from alice --title 'Cheaper fees' --deposit 1000 --set fee_base=500"
    )]
    Propose(ProposeKind),
    /// Add to a proposal's deposit (voting starts when it reaches the minimum).
    #[command(after_help = "Example:\n  commons gov deposit --from bob 0 5000")]
    Deposit {
        #[arg(long)]
        from: String,
        id: u64,
        amount: u64,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Vote on a proposal: one option, or weights in permille.
    #[command(
        after_help = "Example:\n  commons gov vote --from alice 0 yes\n  commons gov vote --from alice 0 --weighted yes=700,no=300"
    )]
    Vote {
        #[arg(long)]
        from: String,
        id: u64,
        #[arg(value_enum, required_unless_present = "weighted")]
        option: Option<VoteChoice>,
        /// Weighted vote, OPTION=PERMILLE,... summing to 1000.
        #[arg(long, conflicts_with = "option")]
        weighted: Option<String>,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Show a proposal with its live tally, quorum and time left (verified).
    #[command(after_help = "Example:\n  commons gov show 0")]
    Show { id: u64 },
    /// List proposals (verified), optionally by status.
    #[command(after_help = "Example:\n  commons gov list --status voting")]
    List {
        #[arg(long, value_enum, default_value_t = StatusFilter::All)]
        status: StatusFilter,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ProposeCommon {
    /// The proposer's key name (pays the initial deposit).
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Initial deposit.
    #[arg(long)]
    pub deposit: u64,
    #[command(flatten)]
    pub fee: FeeArg,
}

#[derive(Subcommand, Debug)]
pub enum ProposeKind {
    /// A signal: passing changes nothing on chain.
    #[command(
        after_help = "Example:\n  commons gov propose text --from alice --title 'Adopt the charter' --deposit 1000"
    )]
    Text {
        #[command(flatten)]
        common: ProposeCommon,
    },
    /// Change registered parameters.
    #[command(
        after_help = "Example:\n  commons gov propose param --from alice --title 'Cheaper fees' --deposit 1000 --set fee_base=500 --set fee_per_byte=5"
    )]
    Param {
        #[command(flatten)]
        common: ProposeCommon,
        /// NAME=VALUE (repeatable).
        #[arg(long = "set", required = true)]
        set: Vec<String>,
    },
    /// Pay from the treasury.
    #[command(
        after_help = "Example:\n  commons gov propose treasury-spend --from alice --title 'Fund the docs' --deposit 1000 --recipient bob --amount 50000"
    )]
    TreasurySpend {
        #[command(flatten)]
        common: ProposeCommon,
        #[arg(long)]
        recipient: String,
        #[arg(long)]
        amount: u64,
    },
    /// Change the validator set (effective at the next epoch boundary).
    #[command(
        after_help = "Example:\n  commons gov propose validators --from alice --title 'Add carol' --deposit 1000 --add 5d1f...aa=100"
    )]
    Validators {
        #[command(flatten)]
        common: ProposeCommon,
        /// KEY=POWER (repeatable).
        #[arg(long)]
        add: Vec<String>,
        /// KEY (repeatable).
        #[arg(long)]
        remove: Vec<String>,
        /// KEY=POWER (repeatable).
        #[arg(long)]
        reweight: Vec<String>,
    },
    /// Bar an account from sending, settling and claiming.
    #[command(
        after_help = "Example:\n  commons gov propose exclude --from alice --title 'Exclude a spammer' --deposit 1000 --account 7c3e...19"
    )]
    Exclude {
        #[command(flatten)]
        common: ProposeCommon,
        #[arg(long)]
        account: String,
    },
    /// Lift an exclusion.
    #[command(
        after_help = "Example:\n  commons gov propose reinstate --from alice --title 'Reinstate' --deposit 1000 --account 7c3e...19"
    )]
    Reinstate {
        #[command(flatten)]
        common: ProposeCommon,
        #[arg(long)]
        account: String,
    },
    /// Signal a software upgrade at a height.
    #[command(
        after_help = "Example:\n  commons gov propose upgrade --from alice --title 'v2' --deposit 1000 --name v2 --height 500000 --info https://example.org/v2"
    )]
    Upgrade {
        #[command(flatten)]
        common: ProposeCommon,
        #[arg(long)]
        name: String,
        #[arg(long)]
        height: u64,
        #[arg(long, default_value = "")]
        info: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueryCmd {
    /// An account (verified).
    #[command(after_help = "Example:\n  commons query account alice")]
    Account { account: String },
    /// A lease (verified).
    #[command(after_help = "Example:\n  commons query lease 0")]
    Lease { id: u64 },
    /// A settlement by marketplace and trade id (verified).
    #[command(after_help = "Example:\n  commons query settlement 9f2c...07 7")]
    Settlement { marketplace: String, trade_id: u64 },
    /// A proposal and its tally (verified).
    #[command(after_help = "Example:\n  commons query proposal 0")]
    Proposal { id: u64 },
    /// One voter's vote on a proposal (verified).
    #[command(after_help = "Example:\n  commons query vote 0 alice")]
    Vote { id: u64, voter: String },
    /// The validator set in force (verified).
    #[command(after_help = "Example:\n  commons query validators")]
    Validators,
    /// The parameters in force (verified).
    #[command(after_help = "Example:\n  commons query params")]
    Params,
    /// A committed block and its certificate (verified).
    #[command(after_help = "Example:\n  commons query block 42")]
    Block { height: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let help = cmd
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !help.contains("Example:") || !help.contains("commons ") {
            missing.push(path.to_string());
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_command_has_an_example() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "commons", &mut missing);
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }
}
