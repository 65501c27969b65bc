//! `pouw wallet balance|transfer|stake|unstake|history`: an account's coins from the command
//! line. Transactions are signed here with the key file (`--key`, the format `pouw keys`
//! writes) and submitted to a running node over JSON-RPC (`--rpc`, `pouw_sendTransaction`);
//! the command then waits until a canonical block holds the transaction, with a progress line
//! on stderr. Amounts are decimal coin strings (`5`, `0.25`; 10^8 base units a coin), parsed
//! exactly, never through floats.

use crate::rpc_client::RpcClient;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pouw_primitives::{
    encode, Address, Amount, ChainSpec, Hash, Keypair, Role, TicketPreferences, TxBody, TxKind,
};
use serde_json::{json, Value};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// The fee a wallet transaction pays unless `--fee` says otherwise (what the node pays for its
/// own transactions).
const DEFAULT_FEE: Amount = Amount(1_000);

/// How long a ticket bought with `wallet stake` lasts unless `--blocks` says otherwise (the
/// node's own tickets last as long; the chain caps it at its `max_ticket_blocks`).
const DEFAULT_TICKET_BLOCKS: u64 = 500_000;

/// `pouw wallet`.
#[derive(Debug, Args)]
pub(crate) struct WalletArgs {
    #[command(subcommand)]
    command: WalletCommand,
}

/// What every wallet command needs: the node and the key.
#[derive(Debug, Args)]
struct Common {
    /// JSON-RPC endpoint of a running node, e.g. `http://127.0.0.1:8645`.
    #[arg(long, env = "POUW_RPC")]
    rpc: String,
    /// Key file of the account (`pouw keys new`; a node's is `DATADIR/node.key`). Refused
    /// when group or others may read it.
    #[arg(long)]
    key: PathBuf,
    /// Chain spec (`devnet` or a TOML file): its chain id is used when the node does not tell
    /// it (`admin_nodeInfo` answers loopback clients only).
    #[arg(long, default_value = "devnet")]
    chain: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What a command that sends a transaction adds.
#[derive(Debug, Args)]
struct Send {
    /// Transaction fee to the block's miner, in coins.
    #[arg(long, default_value_t = DEFAULT_FEE)]
    fee: Amount,
    /// Give up waiting for a block after this many seconds (the transaction may still be
    /// included later).
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
    /// Submit and return at once, without waiting for a block.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// The account's balance, next nonce and locked stake.
    Balance {
        #[command(flatten)]
        common: Common,
    },
    /// Moves coins to another address.
    Transfer {
        /// Recipient address (64 hex characters).
        #[arg(long)]
        to: String,
        /// Amount in coins (`5`, `0.25`).
        #[arg(long)]
        amount: Amount,
        #[command(flatten)]
        send: Send,
        #[command(flatten)]
        common: Common,
    },
    /// Buys a staking ticket for a worker role (BuyTicket): the stake is locked until the
    /// ticket expires, and a larger stake is chosen more often.
    Stake {
        /// Role: miner, supervisor, evaluator or verifier.
        #[arg(long, value_parser = role_arg)]
        role: Role,
        /// Stake in coins (at least the chain's `min_ticket_stake`).
        #[arg(long)]
        amount: Amount,
        /// The worker has a GPU (tasks that need one can select it).
        #[arg(long)]
        gpu: bool,
        /// The smallest task fee the worker accepts, in coins.
        #[arg(long, default_value_t = Amount::ZERO)]
        min_fee: Amount,
        /// The largest model the worker accepts, in parameters (0 = any).
        #[arg(long, default_value_t = 0)]
        max_params: u64,
        /// Blocks until the ticket expires and its stake returns.
        #[arg(long, default_value_t = DEFAULT_TICKET_BLOCKS)]
        blocks: u64,
        #[command(flatten)]
        send: Send,
        #[command(flatten)]
        common: Common,
    },
    /// Returning a ticket's stake early: the chain has no such transaction (a ticket's stake
    /// returns when it expires); this command says so.
    Unstake {
        #[command(flatten)]
        common: Common,
    },
    /// The account's transactions (sent and received) in the node's recent blocks.
    History {
        /// How many recent blocks to scan (the node caps it; docs/rpc.md).
        #[arg(long, default_value_t = 1000)]
        blocks: u64,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_role(s: &str) -> Result<Role> {
    match s.to_ascii_lowercase().as_str() {
        "miner" => Ok(Role::Miner),
        "supervisor" => Ok(Role::Supervisor),
        "evaluator" => Ok(Role::Evaluator),
        "verifier" => Ok(Role::Verifier),
        _ => bail!("`{s}` is not a role: expected miner, supervisor, evaluator or verifier"),
    }
}

fn role_arg(s: &str) -> Result<Role, String> {
    parse_role(s).map_err(|e| e.to_string())
}

/// An account's state as `pouw_account` answers it.
struct Account {
    balance: Amount,
    nonce: u64,
    view: Value,
}

fn account(rpc: &RpcClient, address: &Address) -> Result<Account> {
    let view = rpc.call("pouw_account", json!([address.to_string()]))?;
    let balance = view
        .get("balance")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Amount>().ok())
        .ok_or_else(|| anyhow!("pouw_account answered without a valid `balance`: {view}"))?;
    let nonce = view
        .get("nonce")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("pouw_account answered without a valid `nonce`: {view}"))?;
    Ok(Account { balance, nonce, view })
}

/// The next nonce of `address`: the chain's, after the account's transactions that the node
/// still holds as pending (`pouw_pendingOwnTransactions`: its own and those sent to its RPC).
fn next_nonce(rpc: &RpcClient, address: &Address, chain_nonce: u64) -> Result<u64> {
    let pending = rpc.call("pouw_pendingOwnTransactions", json!([]))?;
    let me = address.to_string();
    let after_pending = pending
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t.get("sender").and_then(Value::as_str) == Some(me.as_str()))
        .filter_map(|t| t.get("nonce").and_then(Value::as_u64))
        .map(|n| n.saturating_add(1))
        .max()
        .unwrap_or(0);
    Ok(chain_nonce.max(after_pending))
}

/// The node's chain id (`admin_nodeInfo`), else the one of the `--chain` spec.
fn chain_id(rpc: &RpcClient, chain: &str) -> Result<u64> {
    if let Ok(info) = rpc.call("admin_nodeInfo", json!([])) {
        if let Some(id) = info.get("chain_id").and_then(Value::as_u64) {
            return Ok(id);
        }
    }
    Ok(ChainSpec::load(chain)?.chain_id)
}

/// Height of the node's canonical tip.
fn tip_height(rpc: &RpcClient) -> Result<u64> {
    let tip = rpc.call("pouw_tip", json!([]))?;
    tip.get("height").and_then(Value::as_u64).ok_or_else(|| anyhow!("pouw_tip without a height"))
}

/// A transaction sent and, unless `--no-wait`, the block that holds it.
struct Sent {
    hash: Hash,
    nonce: u64,
    fee: Amount,
    block: Option<(u64, String)>,
}

/// Signs `kind` with the next nonce, submits it and waits for a block to hold it.
fn send(
    rpc: &RpcClient,
    common: &Common,
    send: &Send,
    key: &Keypair,
    kind: TxKind,
) -> Result<Sent> {
    let me = key.public();
    let acct = account(rpc, &me)?;
    let nonce = next_nonce(rpc, &me, acct.nonce)?;
    let body =
        TxBody { chain_id: chain_id(rpc, &common.chain)?, sender: me, nonce, fee: send.fee, kind };
    let tx = body.sign(key);
    let hash = tx.hash();
    let answered = rpc
        .call("pouw_sendTransaction", json!([hex::encode(encode(&tx))]))
        .context("the node refused the transaction")?;
    if answered.as_str() != Some(hash.to_string().as_str()) {
        bail!("the node answered transaction id {answered}, expected {hash}");
    }
    if send.no_wait {
        return Ok(Sent { hash, nonce, fee: send.fee, block: None });
    }
    let block = wait_for_inclusion(rpc, &me, hash, nonce, Duration::from_secs(send.wait_secs))?;
    Ok(Sent { hash, nonce, fee: send.fee, block: Some(block) })
}

/// Polls the node until a canonical block holds `hash`: its height and hash. Fails when the
/// account's nonce moved past `nonce` without it (another transaction took the nonce) or
/// after `limit`.
fn wait_for_inclusion(
    rpc: &RpcClient,
    me: &Address,
    hash: Hash,
    nonce: u64,
    limit: Duration,
) -> Result<(u64, String)> {
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let id = hash.to_string();
    // Blocks above `scanned` are not looked at yet; one below the submission's tip cannot
    // hold it, except after a reorganisation, which the nonce check below catches.
    let mut scanned = tip_height(rpc)?.saturating_sub(1);
    let result = loop {
        let tip = tip_height(rpc)?;
        progress.set_message(format!("waiting for a block to include {id:.16}… (tip {tip})"));
        let mut found = None;
        let mut h = scanned.saturating_add(1);
        while h <= tip {
            let block = rpc.call("pouw_block", json!([h]))?;
            let holds = block.get("transactions").and_then(Value::as_array).is_some_and(|txs| {
                txs.iter().any(|t| t.get("hash").and_then(Value::as_str) == Some(&id))
            });
            if holds {
                let bhash = block.get("hash").and_then(Value::as_str).unwrap_or("").to_string();
                found = Some((h, bhash));
                break;
            }
            scanned = h;
            h = h.saturating_add(1);
        }
        if let Some(f) = found {
            break Ok(f);
        }
        if account(rpc, me)?.nonce > nonce {
            // The nonce is used: by ours in a block scanned before a reorganisation, or by
            // another transaction. Look once more from a little below.
            scanned = scanned.saturating_sub(10);
            let again = (scanned.saturating_add(1)..=tip).find_map(|h| {
                let block = rpc.call("pouw_block", json!([h])).ok()?;
                let txs = block.get("transactions")?.as_array()?;
                txs.iter().any(|t| t.get("hash").and_then(Value::as_str) == Some(&id)).then(|| {
                    (h, block.get("hash").and_then(Value::as_str).unwrap_or("").to_string())
                })
            });
            break again.ok_or_else(|| {
                anyhow!(
                    "transaction {id} was not included: another transaction of this account \
                     used nonce {nonce}"
                )
            });
        }
        if started.elapsed() >= limit {
            break Err(anyhow!(
                "transaction {id} is not in a block after {}s (it may still be included: see \
                 `pouw_pendingOwnTransactions` on the node, or raise --wait-secs)",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    progress.finish_and_clear();
    result
}

fn print_sent(json_out: bool, what: &str, sent: &Sent, mut extra: Value) {
    let block = sent.block.as_ref();
    if json_out {
        if let Some(o) = extra.as_object_mut() {
            o.insert("hash".into(), json!(sent.hash));
            o.insert("nonce".into(), json!(sent.nonce));
            o.insert("fee".into(), json!(sent.fee));
            o.insert("included".into(), json!(block.is_some()));
            o.insert("block_height".into(), json!(block.map(|b| b.0)));
            o.insert("block_hash".into(), json!(block.map(|b| b.1.clone())));
        }
        println!("{extra}");
    } else {
        match block {
            Some((h, bh)) => {
                println!("{what}: transaction {} included in block {h} {bh}", sent.hash)
            }
            None => {
                println!("{what}: transaction {} submitted (not waiting for a block)", sent.hash)
            }
        }
    }
}

pub(crate) fn run(args: WalletArgs) -> Result<()> {
    match args.command {
        WalletCommand::Balance { common } => {
            let key = crate::keys::read_key(&common.key)?;
            let rpc = RpcClient::new(&common.rpc)?;
            let acct = account(&rpc, &key.public())?;
            if common.json {
                println!("{}", acct.view);
            } else {
                let locked = acct.view.get("locked_stake").and_then(Value::as_str).unwrap_or("0");
                println!(
                    "{}: balance {} coins, locked stake {locked}, next nonce {}",
                    key.public(),
                    acct.balance,
                    acct.nonce
                );
            }
            Ok(())
        }
        WalletCommand::Transfer { to, amount, send: s, common } => {
            let to: Address = to
                .trim()
                .strip_prefix("0x")
                .unwrap_or(to.trim())
                .parse()
                .map_err(|_| anyhow!("`{to}` is not an address (64 hex characters)"))?;
            if amount.is_zero() {
                bail!("--amount must be above 0");
            }
            let key = crate::keys::read_key(&common.key)?;
            let rpc = RpcClient::new(&common.rpc)?;
            let sent = send(&rpc, &common, &s, &key, TxKind::Transfer { to, amount })?;
            let extra = json!({ "from": key.public(), "to": to, "amount": amount });
            print_sent(common.json, &format!("transfer of {amount} to {to}"), &sent, extra);
            Ok(())
        }
        WalletCommand::Stake {
            role,
            amount,
            gpu,
            min_fee,
            max_params,
            blocks,
            send: s,
            common,
        } => {
            let key = crate::keys::read_key(&common.key)?;
            let rpc = RpcClient::new(&common.rpc)?;
            let expires_at = tip_height(&rpc)?.saturating_add(blocks.max(1));
            let preferences = TicketPreferences { has_gpu: gpu, max_params, min_fee };
            let kind = TxKind::BuyTicket { role, stake: amount, preferences, expires_at };
            let sent = send(&rpc, &common, &s, &key, kind)?;
            let extra = json!({
                "staker": key.public(), "role": role, "stake": amount, "expires_at": expires_at,
                "gpu": gpu, "min_fee": min_fee, "max_params": max_params,
            });
            print_sent(common.json, &format!("ticket of {amount} for {role:?}"), &sent, extra);
            Ok(())
        }
        WalletCommand::Unstake { common } => {
            let _ = common;
            bail!(
                "the chain has no transaction that returns a ticket early: a ticket's stake is \
                 locked until the height it expires at (its BuyTicket's `expires_at`) and then \
                 returns to the account by itself (docs/wallet.md)"
            )
        }
        WalletCommand::History { blocks, common } => {
            let key = crate::keys::read_key(&common.key)?;
            let rpc = RpcClient::new(&common.rpc)?;
            let me = key.public().to_string();
            let txs = rpc.call("pouw_accountTransactions", json!([me, blocks]))?;
            if common.json {
                println!("{txs}");
            } else {
                let list = txs.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no transactions of {me} in the last {blocks} blocks");
                }
                for t in list {
                    let field = |k: &str| match t.get(k) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) if !v.is_null() => v.to_string(),
                        _ => "-".into(),
                    };
                    println!(
                        "block {:>6}  {:<14} {}  from {:.16}  to {:.16}  amount {}  fee {}",
                        field("height"),
                        field("kind"),
                        field("hash"),
                        field("sender"),
                        field("to"),
                        field("amount"),
                        field("fee"),
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_amounts_parse_exactly() {
        assert_eq!(parse_role("Miner").unwrap(), Role::Miner);
        assert!(parse_role("boss").unwrap_err().to_string().contains("not a role"));
        let a: Amount = "5".parse().unwrap();
        assert_eq!(a.units(), 500_000_000);
        let a: Amount = "0.00001".parse().unwrap();
        assert_eq!(a, DEFAULT_FEE);
        assert!("0.000000001".parse::<Amount>().is_err());
    }
}
