//! Carrying out commands: each handler returns a [`Report`] with a text for
//! people and a JSON value for scripts.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use commons_client::client::{Committed, Inclusion, ProposalView};
use commons_client::home::{Config, Home};
use commons_client::keys::{KeyStore, parse_seed, read_limited, write_private};
use commons_client::light::{TrustFile, TrustStore};
use commons_client::txbuild::{self, PartialTx};
use commons_client::{Client, ClientError, VerifiedRoot, limits};
use commons_governance::{
    ParamChange, Phase, ProposalAction, ProposalContent, ProposalStatus, ValidatorChange,
    VoteOption, tally,
};
use commons_state_machine::ledger::Genesis;
use commons_types::tx::{SignedTx, pb};
use commons_types::{Amount, Epoch, Height, PublicKey, SecretKey};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::cli::*;

const WAIT_SECS_DEFAULT: u64 = 30;

/// What a command has to say.
struct Report {
    human: String,
    json: Value,
}

impl Report {
    fn new(human: impl Into<String>, json: Value) -> Report {
        Report {
            human: human.into(),
            json,
        }
    }
}

struct Ctx {
    home: Home,
    config: Config,
    global: Global,
    output: OutputFormat,
}

impl Ctx {
    fn keys(&self) -> KeyStore {
        self.home.keys()
    }

    fn node(&self) -> Result<String> {
        self.global
            .node
            .clone()
            .or_else(|| self.config.node.clone())
            .ok_or_else(|| {
                ClientError::Usage(
                    "no node to ask: pass --node URL or set `node` in config.toml (commons init --node URL)".into(),
                )
                .into()
            })
    }

    fn wait(&self) -> Duration {
        let secs = self
            .global
            .wait_secs
            .or(self.config.wait_secs)
            .unwrap_or(WAIT_SECS_DEFAULT)
            .min(limits::MAX_WAIT_SECS);
        Duration::from_secs(secs)
    }

    async fn client(&self) -> Result<Client> {
        let trust = self.home.trust()?;
        let verify = !self.global.no_verify;
        if !verify {
            eprintln!(
                "WARNING: --no-verify: answers below are NOT VERIFIED. A faulty or malicious node can make them say anything. Use only for debugging."
            );
        }
        Ok(Client::connect(&self.node()?, trust, verify).await?)
    }

    /// Saves validator sets learned on the way.
    fn save_trust(&self, client: &Client) -> Result<()> {
        if client.trust_changed() {
            self.home.write_trust(client.trust())?;
        }
        Ok(())
    }

    fn resolve(&self, name_or_key: &str) -> Result<PublicKey> {
        Ok(self.keys().resolve(name_or_key)?)
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let home = Home::new(cli.global.home.clone().unwrap_or_else(Home::default_dir));
    let config = home.config()?;
    let output = match (cli.global.output, config.output.as_deref()) {
        (Some(o), _) => o,
        (None, Some("json")) => OutputFormat::Json,
        (None, Some("human") | None) => OutputFormat::Human,
        (None, Some(other)) => bail!(ClientError::Usage(format!(
            "config.toml: output = {other:?}; use \"human\" or \"json\""
        ))),
    };
    let ctx = Ctx {
        home,
        config,
        global: cli.global.clone(),
        output,
    };
    let report = match cli.command {
        Command::Init(args) => init(&ctx, args)?,
        Command::Keys(cmd) => keys(&ctx, cmd)?,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "commons", &mut std::io::stdout());
            return Ok(());
        }
        Command::Balance { account } => balance(&ctx, &account).await?,
        Command::Query(q) => query(&ctx, q).await?,
        Command::Transfer {
            from,
            to,
            amount,
            fee,
        } => {
            let to = ctx.resolve(&to)?;
            let action = pb::action::Kind::Transfer(pb::Transfer {
                to: to.0.to_vec().into(),
                amount,
            });
            send(
                &ctx,
                &from,
                action,
                fee.fee,
                &format!("transferred {amount} to {to}"),
            )
            .await?
        }
        Command::Bond { from, amount, fee } => {
            let action = pb::action::Kind::Bond(pb::Bond { amount });
            send(&ctx, &from, action, fee.fee, &format!("bonded {amount}")).await?
        }
        Command::Unbond { from, amount, fee } => {
            let action = pb::action::Kind::Unbond(pb::Unbond { amount });
            send(
                &ctx,
                &from,
                action,
                fee.fee,
                &format!("started unbonding {amount}"),
            )
            .await?
        }
        Command::Lease(cmd) => lease(&ctx, cmd).await?,
        Command::Settle(cmd) => settle(&ctx, cmd).await?,
        Command::Gov(cmd) => gov(&ctx, cmd).await?,
    };
    match ctx.output {
        OutputFormat::Human => println!("{}", report.human.trim_end()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report.json)?),
    }
    Ok(())
}

// ----- setup and keys -----------------------------------------------------

fn init(ctx: &Ctx, args: InitArgs) -> Result<Report> {
    if ctx.home.has_trust() && !args.force {
        bail!(ClientError::Usage(format!(
            "{} already trusts a chain; pass --force to replace its trust file",
            ctx.home.dir().display()
        )));
    }
    let trust = match (&args.genesis, &args.trust_file) {
        (Some(path), None) => {
            let text = read_limited(path)?;
            let genesis = Genesis::from_json(&text)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            let set = genesis
                .validator_set()
                .map_err(|e| ClientError::Usage(e.to_string()))?;
            TrustStore::new(genesis.chain_id.clone(), Epoch(0), set)
        }
        (None, Some(path)) => {
            let text = read_limited(path)?;
            let file: TrustFile = serde_json::from_str(&text)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            TrustStore::from_file(file)?
        }
        _ => bail!(ClientError::Usage(
            "pass --genesis GENESIS.json (or --trust-file TRUST.json)".into()
        )),
    };
    ctx.home.write_trust(&trust)?;
    let mut config = ctx.config.clone();
    if let Some(node) = &ctx.global.node {
        config.node = Some(node.clone());
    }
    ctx.home.write_config(&config)?;
    let (epoch, set) = trust.latest();
    Ok(Report::new(
        format!(
            "initialized {}\ntrusting chain {} from epoch {epoch}: {} validators, total power {}\nnode: {}",
            ctx.home.dir().display(),
            trust.chain(),
            set.len(),
            set.total_power(),
            config.node.as_deref().unwrap_or("(none; pass --node)")
        ),
        json!({
            "home": ctx.home.dir(),
            "chain_id": trust.chain().to_string(),
            "epoch": epoch,
            "validators": set.len(),
            "node": config.node,
        }),
    ))
}

fn keys(ctx: &Ctx, cmd: KeysCmd) -> Result<Report> {
    let store = ctx.keys();
    Ok(match cmd {
        KeysCmd::New { name } => {
            let info = store.generate(&name)?;
            Report::new(
                format!(
                    "created key {} (stored owner-only in {})\npublic key: {}",
                    info.name,
                    store.dir().display(),
                    info.public_key
                ),
                json!(info),
            )
        }
        KeysCmd::List => {
            let list = store.list()?;
            let human = if list.is_empty() {
                format!("no keys in {}", store.dir().display())
            } else {
                list.iter()
                    .map(|k| format!("{:<20} {}", k.name, k.public_key))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Report::new(human, json!(list))
        }
        KeysCmd::Show { name } => {
            let info = store.info(&name)?;
            Report::new(
                format!("{}\npublic key: {}", info.name, info.public_key),
                json!(info),
            )
        }
        KeysCmd::Import { name, seed_file } => {
            let text = match seed_file {
                Some(path) => read_limited(&path)?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .take(1024)
                        .read_to_string(&mut s)
                        .context("reading the seed from stdin")?;
                    s
                }
            };
            let key = parse_seed(&text)?;
            let info = store.add(&name, &key)?;
            Report::new(
                format!(
                    "imported key {}\npublic key: {}",
                    info.name, info.public_key
                ),
                json!(info),
            )
        }
        KeysCmd::Export {
            name,
            out,
            print_secret,
        } => {
            let seed = store.export_seed(&name)?;
            match (out, print_secret) {
                (Some(path), _) => {
                    write_private(&path, format!("{seed}\n").as_bytes())?;
                    Report::new(
                        format!(
                            "wrote the secret key of {name} to {} (owner-only)",
                            path.display()
                        ),
                        json!({"name": name, "file": path}),
                    )
                }
                (None, true) => Report::new(seed.clone(), json!({"name": name, "seed": seed})),
                (None, false) => bail!(ClientError::Usage(
                    "refusing to show a secret key: pass --out FILE, or --print-secret to print it"
                        .into()
                )),
            }
        }
    })
}

// ----- verified reads -----------------------------------------------------

fn verified_json(root: &Option<VerifiedRoot>) -> Value {
    match root {
        Some(r) => json!({
            "block_height": r.block_height,
            "epoch": r.epoch,
            "state_height": r.state_height,
            "state_root": r.state_root.to_hex(),
        }),
        None => json!(false),
    }
}

fn verified_line(root: &Option<VerifiedRoot>) -> String {
    match root {
        Some(r) => format!(
            "verified: state at height {} (root {}…), certified by block {} of epoch {}",
            r.state_height,
            &r.state_root.to_hex()[..12],
            r.block_height,
            r.epoch
        ),
        None => "UNVERIFIED (--no-verify): the node may be lying".to_string(),
    }
}

fn with_verified(mut json: Value, root: &Option<VerifiedRoot>) -> Value {
    if let Value::Object(map) = &mut json {
        map.insert("verified".into(), verified_json(root));
    }
    json
}

async fn balance(ctx: &Ctx, account: &str) -> Result<Report> {
    let id = ctx.resolve(account)?;
    let mut client = ctx.client().await?;
    let checked = client.account(id).await?;
    ctx.save_trust(&client)?;
    Ok(account_report(id, &checked.value, &checked.root))
}

fn account_report(
    id: PublicKey,
    account: &Option<commons_state_machine::ledger::Account>,
    root: &Option<VerifiedRoot>,
) -> Report {
    match account {
        None => Report::new(
            format!(
                "account {id} does not exist (no funds)\n{}",
                verified_line(root)
            ),
            with_verified(json!({"account": id, "exists": false}), root),
        ),
        Some(a) => {
            let unbonding: Vec<Value> = a
                .unbonding
                .iter()
                .map(|u| json!({"release_height": u.release.0, "amount": u.amount}))
                .collect();
            let mut human = format!(
                "account  {id}\nbalance  {}\nbonded   {}\nnonce    {}\n",
                a.balance, a.bonded, a.nonce
            );
            for u in &a.unbonding {
                human.push_str(&format!(
                    "unbonding {} (released at height {})\n",
                    u.amount, u.release.0
                ));
            }
            if a.excluded {
                human.push_str("EXCLUDED by a DAO vote\n");
            }
            if a.jailed {
                human.push_str("JAILED for equivocation\n");
            }
            human.push_str(&verified_line(root));
            Report::new(
                human,
                with_verified(
                    json!({
                        "account": id,
                        "exists": true,
                        "balance": a.balance,
                        "bonded": a.bonded,
                        "nonce": a.nonce,
                        "unbonding": unbonding,
                        "excluded": a.excluded,
                        "jailed": a.jailed,
                    }),
                    root,
                ),
            )
        }
    }
}

fn resource_name(r: commons_state_machine::ledger::Resource) -> String {
    format!("{r:?}").to_lowercase()
}

async fn query(ctx: &Ctx, q: QueryCmd) -> Result<Report> {
    // Resolve names before connecting, so a typo fails fast.
    let mut client;
    let report = match q {
        QueryCmd::Account { account } => {
            let id = ctx.resolve(&account)?;
            client = ctx.client().await?;
            let c = client.account(id).await?;
            account_report(id, &c.value, &c.root)
        }
        QueryCmd::Lease { id } => {
            client = ctx.client().await?;
            let c = client.lease(id).await?;
            match &c.value {
                None => Report::new(
                    format!("no lease {id}\n{}", verified_line(&c.root)),
                    with_verified(json!({"lease_id": id, "exists": false}), &c.root),
                ),
                Some(l) => Report::new(
                    format!(
                        "lease {id}\nbuyer     {}\nprovider  {}\nresource  {} ({})\nescrow    {}\nclaimed   {}\nrate      {} per block\nheights   {}..{}\n{}",
                        l.buyer,
                        l.provider,
                        resource_name(l.resource),
                        l.resource.unit(),
                        l.escrow,
                        l.claimed,
                        l.rate_per_block,
                        l.start.0,
                        l.end.0,
                        verified_line(&c.root)
                    ),
                    with_verified(
                        json!({
                            "lease_id": id, "exists": true, "buyer": l.buyer, "provider": l.provider,
                            "resource": resource_name(l.resource), "escrow": l.escrow, "claimed": l.claimed,
                            "rate_per_block": l.rate_per_block, "start_height": l.start.0, "end_height": l.end.0,
                        }),
                        &c.root,
                    ),
                ),
            }
        }
        QueryCmd::Settlement {
            marketplace,
            trade_id,
        } => {
            let m = ctx.resolve(&marketplace)?;
            client = ctx.client().await?;
            let c = client.settlement(m, trade_id).await?;
            settlement_report(m, trade_id, &c.value, &c.root)
        }
        QueryCmd::Proposal { id } => {
            client = ctx.client().await?;
            return gov_show(ctx, &mut client, id).await;
        }
        QueryCmd::Vote { id, voter } => {
            let v = ctx.resolve(&voter)?;
            client = ctx.client().await?;
            let c = client.vote_of(id, v).await?;
            let entries: Vec<Value> = c
                .value
                .as_ref()
                .map(|w| {
                    w.entries()
                        .iter()
                        .map(|(o, p)| json!({"option": o.to_string(), "permille": p}))
                        .collect()
                })
                .unwrap_or_default();
            let human = match &c.value {
                None => format!("{v} has not voted on proposal {id}"),
                Some(w) => format!(
                    "{v} on proposal {id}: {}",
                    w.entries()
                        .iter()
                        .map(|(o, p)| format!("{o} {p}‰"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            Report::new(
                format!("{human}\n{}", verified_line(&c.root)),
                with_verified(
                    json!({"proposal_id": id, "voter": v, "vote": entries}),
                    &c.root,
                ),
            )
        }
        QueryCmd::Validators => {
            client = ctx.client().await?;
            let c = client.validator_set().await?;
            let (set, node_epoch) = &c.value;
            let mut human = format!(
                "{} validators, total power {} (node's consensus epoch {node_epoch})\n",
                set.len(),
                set.total_power()
            );
            for v in set.validators() {
                human.push_str(&format!("  {}  power {}\n", v.public_key, v.power));
            }
            human.push_str(&verified_line(&c.root));
            Report::new(
                human,
                with_verified(
                    json!({"validators": set.validators(), "total_power": set.total_power(), "node_epoch": node_epoch}),
                    &c.root,
                ),
            )
        }
        QueryCmd::Params => {
            client = ctx.client().await?;
            let c = client.params().await?;
            let map: std::collections::BTreeMap<String, u64> = c.value.clone().into();
            let mut human = String::new();
            for (k, v) in &map {
                human.push_str(&format!("{k:<32} {v}\n"));
            }
            human.push_str(&verified_line(&c.root));
            Report::new(human, with_verified(json!({"params": map}), &c.root))
        }
        QueryCmd::Block { height } => {
            client = ctx.client().await?;
            let b = client.block(height).await?;
            let r = &b.response;
            let txs: Vec<Value> = r
                .txs
                .iter()
                .map(|t| {
                    json!({
                        "tx_id": hex::encode(&t.tx_id),
                        "code": t.receipt.as_ref().map(|x| x.code),
                        "message": t.receipt.as_ref().map(|x| x.message.clone()),
                    })
                })
                .collect();
            let verified = match &b.verified {
                Some(v) => format!(
                    "verified: certificate of epoch {} signed by validators holding {} power",
                    v.block.epoch().0,
                    v.signers_power
                ),
                None => "UNVERIFIED (--no-verify): the node may be lying".into(),
            };
            let mut human = format!(
                "block {}\nid         {}\nepoch      {}\nround      {}\ntimestamp  {} ms\ntxs        {}\n",
                r.height,
                hex::encode(&r.block_id),
                r.epoch,
                r.round,
                r.timestamp_ms,
                r.txs.len()
            );
            for t in &r.txs {
                let code = t.receipt.as_ref().map(|x| x.code).unwrap_or(u32::MAX);
                human.push_str(&format!("  {} code {code}\n", hex::encode(&t.tx_id)));
            }
            human.push_str(&verified);
            human.push_str("\n(receipt codes are the node's word: blocks carry no receipt root)");
            Report::new(
                human,
                json!({
                    "height": r.height,
                    "block_id": hex::encode(&r.block_id),
                    "epoch": r.epoch,
                    "round": r.round,
                    "timestamp_ms": r.timestamp_ms,
                    "txs": txs,
                    "verified": b.verified.as_ref().map(|v| json!({"signers_power": v.signers_power})).unwrap_or(json!(false)),
                }),
            )
        }
    };
    ctx.save_trust(&client)?;
    Ok(report)
}

fn settlement_report(
    m: PublicKey,
    trade_id: u64,
    s: &Option<commons_state_machine::ledger::Settlement>,
    root: &Option<VerifiedRoot>,
) -> Report {
    match s {
        None => Report::new(
            format!(
                "no settlement {trade_id} of marketplace {m}\n{}",
                verified_line(root)
            ),
            with_verified(
                json!({"marketplace": m, "trade_id": trade_id, "exists": false}),
                root,
            ),
        ),
        Some(s) => Report::new(
            format!(
                "settlement {trade_id} of marketplace {m}\nbuyer     {}\nseller    {}\nresource  {} ({})\nquantity  {}\nprice     {} per unit\nmkt fee   {}\nheight    {}\n{}",
                s.buyer,
                s.seller,
                resource_name(s.resource),
                s.resource.unit(),
                s.quantity,
                s.unit_price,
                s.marketplace_fee,
                s.height.0,
                verified_line(root)
            ),
            with_verified(
                json!({
                    "marketplace": m, "trade_id": trade_id, "exists": true, "buyer": s.buyer,
                    "seller": s.seller, "resource": resource_name(s.resource), "quantity": s.quantity,
                    "unit_price": s.unit_price, "marketplace_fee": s.marketplace_fee, "height": s.height.0,
                }),
                root,
            ),
        ),
    }
}

// ----- transactions -------------------------------------------------------

/// Submits `tx` and waits for its finality behind a spinner.
async fn submit_and_wait(ctx: &Ctx, client: &mut Client, tx: &SignedTx) -> Result<Committed> {
    let id = client.submit(tx).await?;
    debug_assert_eq!(id, tx.id());
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(format!("waiting for finality of {}…", &id.to_hex()[..16]));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = client.wait_committed(tx, ctx.wait()).await;
    spinner.finish_and_clear();
    Ok(result?)
}

fn tx_report(what: &str, committed: &Committed, extra: Value) -> Report {
    let receipt = &committed.receipt;
    let tx_id = hex::encode(&receipt.tx_id);
    let inclusion = committed.inclusion.describe();
    let mut json = json!({
        "tx_id": tx_id,
        "height": receipt.height,
        "fee": receipt.fee,
        "code": receipt.code,
        "inclusion_verified": committed.inclusion == Inclusion::CertifiedBlock,
        "inclusion": committed.inclusion.name(),
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut json, extra) {
        map.extend(more);
    }
    Report::new(
        format!(
            "{what}\ntx {tx_id}\ncommitted in block {} (fee {}); {inclusion}",
            receipt.height, receipt.fee
        ),
        json,
    )
}

async fn send_signed(
    ctx: &Ctx,
    client: &mut Client,
    key: &SecretKey,
    action: pb::action::Kind,
    fee: Option<u64>,
) -> Result<Committed> {
    let chain = client.trust().chain().clone();
    let nonce = client.next_nonce(key.public_key()).await?;
    let schedule = client.fee_schedule().await?;
    let body = txbuild::body(&chain, nonce, fee, schedule, action, 1);
    let tx = txbuild::sign(&chain, body, &[key]);
    submit_and_wait(ctx, client, &tx).await
}

async fn send(
    ctx: &Ctx,
    from: &str,
    action: pb::action::Kind,
    fee: Option<u64>,
    what: &str,
) -> Result<Report> {
    let key = ctx.keys().load(from)?;
    let mut client = ctx.client().await?;
    let committed = send_signed(ctx, &mut client, &key, action, fee).await?;
    ctx.save_trust(&client)?;
    Ok(tx_report(what, &committed, json!({})))
}

fn resource_pb(r: ResourceArg) -> i32 {
    (match r {
        ResourceArg::Compute => pb::Resource::Compute,
        ResourceArg::Storage => pb::Resource::Storage,
        ResourceArg::Energy => pb::Resource::Energy,
    }) as i32
}

async fn lease(ctx: &Ctx, cmd: LeaseCmd) -> Result<Report> {
    match cmd {
        LeaseCmd::Open {
            from,
            provider,
            resource,
            escrow,
            rate_per_block,
            duration_blocks,
            fee,
        } => {
            let provider = ctx.resolve(&provider)?;
            let action = pb::action::Kind::OpenLease(pb::OpenLease {
                provider: provider.0.to_vec().into(),
                resource: resource_pb(resource),
                escrow,
                rate_per_block,
                duration_blocks,
            });
            send(
                ctx,
                &from,
                action,
                fee.fee,
                &format!("opened a lease of {escrow} for {provider}"),
            )
            .await
        }
        LeaseCmd::Claim {
            from,
            lease_id,
            amount,
            fee,
        } => {
            let action = pb::action::Kind::Claim(pb::Claim { lease_id, amount });
            send(
                ctx,
                &from,
                action,
                fee.fee,
                &format!("claimed {amount} from lease {lease_id}"),
            )
            .await
        }
        LeaseCmd::Close {
            from,
            lease_id,
            fee,
        } => {
            let action = pb::action::Kind::CloseLease(pb::CloseLease { lease_id });
            send(
                ctx,
                &from,
                action,
                fee.fee,
                &format!("closed lease {lease_id}"),
            )
            .await
        }
    }
}

fn read_partial(path: &Path) -> Result<PartialTx> {
    let text = read_limited(path)?;
    Ok(serde_json::from_str(&text).map_err(|e| {
        ClientError::Usage(format!(
            "{}: not a partially signed transaction: {e}",
            path.display()
        ))
    })?)
}

fn write_partial(path: &Path, p: &PartialTx, replace: bool) -> Result<()> {
    let text = serde_json::to_string_pretty(p)?;
    if replace {
        std::fs::write(path, text).map_err(|e| ClientError::io(path, e))?;
    } else {
        write_private(path, text.as_bytes())?;
    }
    Ok(())
}

fn settle_terms(p: &PartialTx) -> Result<(String, Value)> {
    let body = p.decoded_body()?;
    let Some(pb::Action {
        kind: Some(pb::action::Kind::Settle(s)),
    }) = &body.action
    else {
        bail!(ClientError::Usage(
            "this file does not hold a settlement".into()
        ));
    };
    let key = |b: &[u8]| {
        PublicKey::from_slice(b)
            .map(|k| k.to_hex())
            .unwrap_or_else(|_| "?".into())
    };
    let resource = pb::Resource::try_from(s.resource)
        .map(|r| format!("{r:?}").to_lowercase())
        .unwrap_or_else(|_| "?".into());
    let human = format!(
        "settlement on chain {}\nmarketplace  {}\ntrade id     {}\nbuyer        {}\nseller       {}\nresource     {resource}\nquantity     {}\nunit price   {}\nmkt fee      {}\ntx fee       {} (paid by the buyer)\nsigned by    {}",
        body.chain_id,
        key(&s.marketplace),
        s.trade_id,
        key(&s.buyer),
        key(&s.seller),
        s.quantity,
        s.unit_price,
        s.marketplace_fee,
        body.fee,
        p.signers
            .iter()
            .map(|x| format!(
                "{}{}",
                &x.public_key.to_hex()[..12],
                if x.signature.is_some() {
                    " (signed)"
                } else {
                    " (missing)"
                }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let json = json!({
        "chain_id": body.chain_id,
        "marketplace": key(&s.marketplace),
        "trade_id": s.trade_id,
        "buyer": key(&s.buyer),
        "seller": key(&s.seller),
        "resource": resource,
        "quantity": s.quantity,
        "unit_price": s.unit_price,
        "marketplace_fee": s.marketplace_fee,
        "fee": body.fee,
        "missing_signatures": p.missing(),
    });
    Ok((human, json))
}

async fn settle(ctx: &Ctx, cmd: SettleCmd) -> Result<Report> {
    match cmd {
        SettleCmd::Create {
            buyer,
            seller,
            marketplace,
            trade_id,
            resource,
            quantity,
            unit_price,
            marketplace_fee,
            out,
            fee,
        } => {
            let buyer_key = ctx.keys().load(&buyer)?;
            let seller = ctx.resolve(&seller)?;
            let marketplace = ctx.resolve(&marketplace)?;
            if out.exists() {
                bail!(ClientError::Usage(format!(
                    "{} exists; choose another --out",
                    out.display()
                )));
            }
            let mut client = ctx.client().await?;
            let chain = client.trust().chain().clone();
            let nonce = client.next_nonce(buyer_key.public_key()).await?;
            let schedule = client.fee_schedule().await?;
            ctx.save_trust(&client)?;
            let action = pb::action::Kind::Settle(pb::Settle {
                marketplace: marketplace.0.to_vec().into(),
                trade_id,
                buyer: buyer_key.public_key().0.to_vec().into(),
                seller: seller.0.to_vec().into(),
                resource: resource_pb(resource),
                quantity,
                unit_price,
                marketplace_fee,
            });
            let body = txbuild::body(&chain, nonce, fee.fee, schedule, action, 2);
            let mut partial = PartialTx::new(&chain, body, &[buyer_key.public_key(), seller]);
            partial.sign_with(&buyer_key)?;
            write_partial(&out, &partial, false)?;
            let (terms, json) = settle_terms(&partial)?;
            Ok(Report::new(
                format!(
                    "{terms}\nwrote {}; the seller signs it with `commons settle sign {} --key NAME`",
                    out.display(),
                    out.display()
                ),
                json,
            ))
        }
        SettleCmd::Sign { file, key, out } => {
            let key = ctx.keys().load(&key)?;
            let mut partial = read_partial(&file)?;
            let trust_chain = ctx.home.trust().ok().map(|t| t.chain().clone());
            if let Some(chain) = trust_chain
                && chain != partial.chain_id
            {
                bail!(ClientError::Usage(format!(
                    "the settlement is for chain {}, this home trusts chain {chain}",
                    partial.chain_id
                )));
            }
            settle_terms(&partial)?;
            partial.sign_with(&key)?;
            let target = out.unwrap_or_else(|| file.clone());
            write_partial(&target, &partial, target == file)?;
            let (terms, json) = settle_terms(&partial)?;
            Ok(Report::new(
                format!(
                    "{terms}\nsigned as {}; wrote {}",
                    key.public_key(),
                    target.display()
                ),
                json,
            ))
        }
        SettleCmd::Submit { file } => {
            let partial = read_partial(&file)?;
            let (terms, mut json) = settle_terms(&partial)?;
            let tx = partial.complete()?;
            let mut client = ctx.client().await?;
            if client.trust().chain() != &partial.chain_id {
                bail!(ClientError::Usage(format!(
                    "the settlement is for chain {}, this home trusts chain {}",
                    partial.chain_id,
                    client.trust().chain()
                )));
            }
            let committed = submit_and_wait(ctx, &mut client, &tx).await?;
            // Read the settlement back, verified.
            let body = partial.decoded_body()?;
            let mut stored = None;
            if let Some(pb::Action {
                kind: Some(pb::action::Kind::Settle(s)),
            }) = &body.action
            {
                let m = PublicKey::from_slice(&s.marketplace)?;
                let c = client.settlement(m, s.trade_id).await?;
                stored = Some(settlement_report(m, s.trade_id, &c.value, &c.root));
            }
            ctx.save_trust(&client)?;
            let report = tx_report(&format!("{terms}\nsettled"), &committed, json!({}));
            if let Value::Object(map) = &mut json {
                if let Value::Object(more) = report.json {
                    map.extend(more);
                }
                if let Some(s) = &stored {
                    map.insert("settlement".into(), s.json.clone());
                }
            }
            let human = match stored {
                Some(s) => format!("{}\n{}", report.human, s.human),
                None => report.human,
            };
            Ok(Report::new(human, json))
        }
    }
}

// ----- governance ---------------------------------------------------------

fn parse_key_power(s: &str, ctx: &Ctx) -> Result<(PublicKey, u64)> {
    let (k, p) = s
        .split_once('=')
        .ok_or_else(|| ClientError::Usage(format!("{s:?}: expected KEY=POWER")))?;
    let power = p
        .parse()
        .map_err(|e| ClientError::Usage(format!("{s:?}: power: {e}")))?;
    Ok((ctx.resolve(k)?, power))
}

fn proposal_content(ctx: &Ctx, kind: ProposeKind) -> Result<(ProposeCommon, ProposalContent)> {
    let (common, action) = match kind {
        ProposeKind::Text { common } => (common, ProposalAction::Text),
        ProposeKind::Param { common, set } => {
            let mut changes = Vec::new();
            for s in set {
                let (name, value) = s.split_once('=').ok_or_else(|| {
                    ClientError::Usage(format!("--set {s:?}: expected NAME=VALUE"))
                })?;
                let value = value
                    .parse()
                    .map_err(|e| ClientError::Usage(format!("--set {s:?}: value: {e}")))?;
                changes.push(ParamChange {
                    name: name.to_string(),
                    value,
                });
            }
            (common, ProposalAction::ParamChange(changes))
        }
        ProposeKind::TreasurySpend {
            common,
            recipient,
            amount,
        } => (
            common,
            ProposalAction::TreasurySpend {
                recipient: ctx.resolve(&recipient)?,
                amount: Amount(amount),
            },
        ),
        ProposeKind::Validators {
            common,
            add,
            remove,
            reweight,
        } => {
            let mut changes = Vec::new();
            for a in add {
                let (key, power) = parse_key_power(&a, ctx)?;
                changes.push(ValidatorChange::Add { key, power });
            }
            for r in remove {
                changes.push(ValidatorChange::Remove {
                    key: ctx.resolve(&r)?,
                });
            }
            for r in reweight {
                let (key, power) = parse_key_power(&r, ctx)?;
                changes.push(ValidatorChange::Reweight { key, power });
            }
            (common, ProposalAction::ValidatorChange(changes))
        }
        ProposeKind::Exclude { common, account } => (
            common,
            ProposalAction::ExcludeAccount {
                account: ctx.resolve(&account)?,
            },
        ),
        ProposeKind::Reinstate { common, account } => (
            common,
            ProposalAction::ReinstateAccount {
                account: ctx.resolve(&account)?,
            },
        ),
        ProposeKind::Upgrade {
            common,
            name,
            height,
            info,
        } => (
            common,
            ProposalAction::SoftwareUpgrade {
                name,
                height: Height(height),
                info,
            },
        ),
    };
    let content = ProposalContent {
        title: common.title.clone(),
        description: common.description.clone(),
        action,
    };
    Ok((common, content))
}

fn describe_action(a: &ProposalAction) -> String {
    match a {
        ProposalAction::Text => "text (signal only)".into(),
        ProposalAction::ParamChange(c) => format!(
            "parameter change: {}",
            c.iter()
                .map(|c| format!("{} = {}", c.name, c.value))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ProposalAction::TreasurySpend { recipient, amount } => {
            format!("treasury spend of {amount} to {recipient}")
        }
        ProposalAction::ValidatorChange(c) => format!("validator-set change ({} changes)", c.len()),
        ProposalAction::ExcludeAccount { account } => format!("exclude account {account}"),
        ProposalAction::ReinstateAccount { account } => format!("reinstate account {account}"),
        ProposalAction::SoftwareUpgrade { name, height, .. } => {
            format!("software upgrade {name} at height {}", height.0)
        }
    }
}

fn vote_options(
    option: Option<VoteChoice>,
    weighted: Option<String>,
) -> Result<Vec<pb::WeightedOption>> {
    let parse_option = |s: &str| -> Result<VoteOption> {
        Ok(match s {
            "yes" => VoteOption::Yes,
            "no" => VoteOption::No,
            "abstain" => VoteOption::Abstain,
            "veto" | "no-with-veto" => VoteOption::NoWithVeto,
            other => bail!(ClientError::Usage(format!(
                "vote option {other:?}: use yes, no, abstain or veto"
            ))),
        })
    };
    let entries: Vec<(VoteOption, u32)> = match (option, weighted) {
        (Some(c), None) => vec![(
            match c {
                VoteChoice::Yes => VoteOption::Yes,
                VoteChoice::No => VoteOption::No,
                VoteChoice::Abstain => VoteOption::Abstain,
                VoteChoice::Veto => VoteOption::NoWithVeto,
            },
            1000,
        )],
        (None, Some(w)) => {
            let mut out = Vec::new();
            for part in w.split(',') {
                let (o, p) = part.split_once('=').ok_or_else(|| {
                    ClientError::Usage(format!("--weighted {part:?}: expected OPTION=PERMILLE"))
                })?;
                let p: u32 = p
                    .trim()
                    .parse()
                    .map_err(|e| ClientError::Usage(format!("--weighted {part:?}: {e}")))?;
                out.push((parse_option(o.trim())?, p));
            }
            out
        }
        _ => bail!(ClientError::Usage("give one option, or --weighted".into())),
    };
    // Checked here with the DAO's own rules so a bad vote fails before it costs a fee.
    commons_governance::WeightedVote::from_wire(entries.iter().map(|(o, p)| (o.to_wire(), *p)))
        .map_err(|e| ClientError::Usage(format!("vote: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|(o, p)| pb::WeightedOption {
            option: o.to_wire(),
            weight_permille: p,
        })
        .collect())
}

async fn gov(ctx: &Ctx, cmd: GovCmd) -> Result<Report> {
    match cmd {
        GovCmd::Propose(kind) => {
            let (common, content) = proposal_content(ctx, kind)?;
            let key = ctx.keys().load(&common.from)?;
            let mut client = ctx.client().await?;
            // Check against the verified parameters before paying a fee.
            let params = client.params().await?;
            let (set, _) = client.validator_set().await?.value;
            let height = Height(params.root.map(|r| r.state_height + 1).unwrap_or(0));
            content
                .validate(&params.value, &set, height)
                .map_err(|e| ClientError::Usage(format!("the proposal would be refused: {e}")))?;
            let action = pb::action::Kind::Propose(pb::Propose {
                content: content.encode().into(),
                deposit: common.deposit,
            });
            let committed = send_signed(ctx, &mut client, &key, action, common.fee.fee).await?;
            // Find the new proposal's id: the newest one by this proposer
            // submitted in that block.
            let count = client.proposal_count().await?;
            let mut found = None;
            for id in (count.saturating_sub(16)..count).rev() {
                if let Some(v) = client.proposal(id).await?.value
                    && *v.proposal.proposer() == key.public_key()
                    && v.proposal.submitted_at().0 == committed.receipt.height
                {
                    found = Some(id);
                    break;
                }
            }
            ctx.save_trust(&client)?;
            let what = match found {
                Some(id) => format!(
                    "submitted proposal {id}: {}",
                    describe_action(&content.action)
                ),
                None => format!("submitted a proposal: {}", describe_action(&content.action)),
            };
            Ok(tx_report(&what, &committed, json!({"proposal_id": found})))
        }
        GovCmd::Deposit {
            from,
            id,
            amount,
            fee,
        } => {
            let action = pb::action::Kind::Deposit(pb::Deposit {
                proposal_id: id,
                amount,
            });
            send(
                ctx,
                &from,
                action,
                fee.fee,
                &format!("deposited {amount} on proposal {id}"),
            )
            .await
        }
        GovCmd::Vote {
            from,
            id,
            option,
            weighted,
            fee,
        } => {
            let options = vote_options(option, weighted)?;
            let shown = options
                .iter()
                .map(|o| {
                    let name = VoteOption::from_wire(o.option)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    format!("{name} {}‰", o.weight_permille)
                })
                .collect::<Vec<_>>()
                .join(", ");
            let action = pb::action::Kind::Vote(pb::Vote {
                proposal_id: id,
                options,
            });
            send(
                ctx,
                &from,
                action,
                fee.fee,
                &format!("voted on proposal {id}: {shown}"),
            )
            .await
        }
        GovCmd::Show { id } => {
            let mut client = ctx.client().await?;
            let r = gov_show(ctx, &mut client, id).await;
            ctx.save_trust(&client)?;
            r
        }
        GovCmd::List { status } => {
            let mut client = ctx.client().await?;
            let count = client.proposal_count().await?;
            let mut rows = Vec::new();
            let mut human = String::new();
            let mut root = None;
            for id in 0..count {
                let c = client.proposal(id).await?;
                root = c.root;
                let Some(v) = c.value else { continue };
                let phase = v.proposal.phase();
                let keep = match status {
                    StatusFilter::All => true,
                    StatusFilter::Deposit => phase == Phase::DepositPeriod,
                    StatusFilter::Voting => phase == Phase::VotingPeriod,
                    StatusFilter::Finished => phase == Phase::Finished,
                };
                if !keep {
                    continue;
                }
                let outcome = status_text(v.proposal.status());
                human.push_str(&format!(
                    "{id:>4}  {:<9} {:<30} {}\n",
                    phase.to_string(),
                    v.proposal.content().title,
                    outcome
                ));
                rows.push(json!({
                    "id": id,
                    "phase": phase.to_string(),
                    "title": v.proposal.content().title,
                    "status": outcome,
                }));
            }
            if root.is_none() {
                root = client.latest().await?.1;
            }
            ctx.save_trust(&client)?;
            if rows.is_empty() {
                human.push_str("no proposals match\n");
            }
            human.push_str(&verified_line(&root));
            Ok(Report::new(
                human,
                with_verified(json!({"proposals": rows}), &root),
            ))
        }
    }
}

fn status_text(s: &ProposalStatus) -> String {
    match s {
        ProposalStatus::DepositPeriod => "collecting deposits".into(),
        ProposalStatus::VotingPeriod(w) => format!("voting until height {}", w.end.0),
        ProposalStatus::Finished { at, outcome, .. } => {
            format!(
                "{} at height {}",
                format!("{outcome:?}").to_lowercase(),
                at.0
            )
        }
    }
}

fn permille(part: u128, total: u128) -> String {
    if total == 0 {
        return "0.0%".into();
    }
    let tenths = part * 1000 / total;
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// `gov show`: the proposal, its live tally against the verified
/// parameters, and the time left at the recent block rate.
async fn gov_show(ctx: &Ctx, client: &mut Client, id: u64) -> Result<Report> {
    let c = client.proposal(id).await?;
    let Some(ProposalView {
        proposal,
        tally: counts,
    }) = c.value
    else {
        ctx.save_trust(client)?;
        return Ok(Report::new(
            format!("no proposal {id}\n{}", verified_line(&c.root)),
            with_verified(json!({"id": id, "exists": false}), &c.root),
        ));
    };
    let params = client.params().await?.value;
    let gov = params.gov();
    let now = c.root.map(|r| r.state_height).unwrap_or(0);
    let mut human = format!(
        "proposal {id}: {}\naction    {}\nproposer  {}\nstatus    {}\ndeposit   {} of {}\n",
        proposal.content().title,
        describe_action(&proposal.content().action),
        proposal.proposer(),
        status_text(proposal.status()),
        proposal.deposit_total().0,
        proposal.min_deposit().0
    );
    if !proposal.content().description.is_empty() {
        human.push_str(&format!("about     {}\n", proposal.content().description));
    }
    let mut json = json!({
        "id": id,
        "exists": true,
        "proposal": proposal,
        "tally": counts,
    });
    let window = match proposal.status() {
        ProposalStatus::VotingPeriod(w) => Some(*w),
        ProposalStatus::Finished { voting, .. } => *voting,
        ProposalStatus::DepositPeriod => None,
    };
    if let Some(w) = window {
        let projected = tally::decide(&counts, w.power_total, &gov);
        let turnout = counts.turnout();
        human.push_str(&format!(
            "tally     yes {}  no {}  abstain {}  veto {}\nturnout   {} of {} power ({}); quorum needs {}.{}%: {}\n",
            counts.yes,
            counts.no,
            counts.abstain,
            counts.no_with_veto,
            turnout,
            w.power_total,
            permille(turnout, u128::from(w.power_total)),
            gov.quorum_permille / 10,
            gov.quorum_permille % 10,
            if projected.quorum_reached { "reached" } else { "not reached" }
        ));
        if proposal.phase() == Phase::VotingPeriod {
            human.push_str(&format!(
                "if it ended now: {}\n",
                format!("{:?}", projected.outcome).to_lowercase()
            ));
        }
        if let Value::Object(map) = &mut json {
            map.insert(
                "projection".into(),
                json!({
                    "quorum_reached": projected.quorum_reached,
                    "threshold_reached": projected.threshold_reached,
                    "vetoed": projected.vetoed,
                    "outcome": format!("{:?}", projected.outcome),
                    "power_total": w.power_total,
                    "quorum_permille": gov.quorum_permille,
                }),
            );
        }
    }
    if let Some(left) = proposal.blocks_left(Height(now)) {
        let ms_per_block = block_interval_ms(client, &c.root).await;
        let eta = ms_per_block
            .map(|ms| format!(", about {} s", left.saturating_mul(ms) / 1000))
            .unwrap_or_default();
        human.push_str(&format!(
            "time left {left} blocks in this period (at height {now}{eta})\n"
        ));
        if let Value::Object(map) = &mut json {
            map.insert("blocks_left".into(), json!(left));
            map.insert(
                "seconds_left".into(),
                json!(ms_per_block.map(|ms| left.saturating_mul(ms) / 1000)),
            );
        }
    }
    human.push_str(&verified_line(&c.root));
    Ok(Report::new(human, with_verified(json, &c.root)))
}

/// The recent block interval, from the verified root's block and a block
/// some heights back; `None` if that cannot be had (an estimate only, for
/// "time left").
async fn block_interval_ms(client: &mut Client, root: &Option<VerifiedRoot>) -> Option<u64> {
    const SPAN: u64 = 20;
    let root = (*root)?;
    // An epoch's last block has no certificate to check; try a neighbour.
    for span in [SPAN, SPAN + 1] {
        let h = root.block_height.checked_sub(span).filter(|h| *h > 0)?;
        if let Ok(older) = client.block(h).await {
            let dt = root
                .timestamp_ms
                .saturating_sub(older.response.timestamp_ms);
            return Some((dt / span).max(1));
        }
    }
    None
}
