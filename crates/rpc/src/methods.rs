//! The JSON-RPC methods. Everything here runs on a blocking thread.

use crate::{
    api::{ApiError, BlockRef, NodeApi},
    config::RpcConfig,
    jsonrpc::{as_u64, codes, parse_str, Params, RpcErr},
    monitor::Monitor,
};
use pouw_primitives::{decode_bounded, Address, Hash, TaskId, Transaction, MAX_TX_BYTES};
use serde::Serialize;
use serde_json::Value;

/// Every method, for `rpc_methods`-style listings and the docs.
pub(crate) const METHODS: &[&str] = &[
    "pouw_tip",
    "pouw_block",
    "pouw_account",
    "pouw_task",
    "pouw_sendTransaction",
    "pouw_peers",
    "pouw_health",
    "pouw_pendingOwnTransactions",
    "pouw_recentBlocks",
    "pouw_training",
    "admin_nodeInfo",
    "admin_peers",
    "admin_addPeer",
    "admin_removePeer",
    "pouw_supply",
    "pouw_security",
    "client_submitTask",
    "client_model",
    "pouw_accountTransactions",
];

/// Default and largest block count `pouw_accountTransactions` scans.
const DEFAULT_ACCOUNT_TX_BLOCKS: u64 = 1_000;
const MAX_ACCOUNT_TX_BLOCKS: u64 = 10_000;
/// Most transactions one `pouw_accountTransactions` answer holds.
const MAX_ACCOUNT_TXS: u32 = 1_000;

/// Default count of `pouw_recentBlocks`.
const DEFAULT_RECENT_BLOCKS: u32 = 10;

/// What a call needs besides its parameters.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) api: &'a dyn NodeApi,
    pub(crate) config: &'a RpcConfig,
    pub(crate) monitor: &'a Monitor,
    /// The caller may use admin methods.
    pub(crate) admin: bool,
}

/// Runs one method.
pub(crate) fn call(
    ctx: Context<'_>,
    method: &str,
    params: Option<&Value>,
) -> Result<Value, RpcErr> {
    let p = Params::new(params);
    match method {
        "pouw_tip" => {
            p.expect(&[])?;
            to_json(&ctx.api.tip())
        }
        "pouw_block" => {
            p.expect(&["block"])?;
            let at = block_ref(ctx.api, p.required(0, "block")?)?;
            to_json(&ctx.api.block(at).map_err(api_error)?)
        }
        "pouw_account" => {
            p.expect(&["address"])?;
            let address: Address = parse_str(p.required(0, "address")?, "address", "address")?;
            to_json(&ctx.api.account(address))
        }
        "pouw_task" => {
            p.expect(&["task_id"])?;
            let id: TaskId = parse_str(p.required(0, "task_id")?, "task_id", "task id")?;
            to_json(&ctx.api.task(id).map_err(api_error)?)
        }
        "pouw_sendTransaction" => {
            p.expect(&["tx"])?;
            let tx = transaction(p.required(0, "tx")?)?;
            tx.verify_signature().map_err(|e| rejected(&e.to_string()))?;
            to_json(&ctx.api.submit_transaction(tx).map_err(api_error)?)
        }
        "pouw_peers" => {
            p.expect(&[])?;
            to_json(&ctx.api.peers())
        }
        "pouw_health" => {
            p.expect(&[])?;
            let tip = ctx.api.tip();
            to_json(&ctx.monitor.health(&tip, ctx.api.status()))
        }
        "pouw_pendingOwnTransactions" => {
            p.expect(&[])?;
            to_json(&ctx.api.pending_own_transactions())
        }
        "pouw_recentBlocks" => {
            p.expect(&["count"])?;
            let count = match p.get(0, "count") {
                Some(v) => u32::try_from(as_u64(v, "count")?).unwrap_or(u32::MAX),
                None => DEFAULT_RECENT_BLOCKS,
            };
            let count = count.min(ctx.config.max_recent_blocks);
            let mut blocks = ctx.api.recent_blocks(count);
            blocks.truncate(count as usize);
            to_json(&blocks)
        }
        "pouw_training" => {
            p.expect(&["since", "limit"])?;
            let since = p.get(0, "since").map(|v| as_u64(v, "since")).transpose()?.unwrap_or(0);
            let max = ctx.config.max_training_points;
            let limit = match p.get(1, "limit") {
                Some(v) => u32::try_from(as_u64(v, "limit")?).unwrap_or(u32::MAX).min(max),
                None => max,
            };
            let mut points = ctx.api.training(since, limit);
            points.truncate(limit as usize);
            to_json(&points)
        }
        "pouw_accountTransactions" => {
            p.expect(&["address", "blocks"])?;
            let address: Address = parse_str(p.required(0, "address")?, "address", "address")?;
            let blocks = match p.get(1, "blocks") {
                Some(v) => as_u64(v, "blocks")?.min(MAX_ACCOUNT_TX_BLOCKS),
                None => DEFAULT_ACCOUNT_TX_BLOCKS,
            };
            let mut txs = ctx
                .api
                .account_transactions(address, blocks, MAX_ACCOUNT_TXS)
                .map_err(api_error)?;
            txs.truncate(MAX_ACCOUNT_TXS as usize);
            to_json(&txs)
        }
        "pouw_supply" => {
            p.expect(&[])?;
            to_json(&ctx.api.supply())
        }
        "pouw_security" => {
            p.expect(&[])?;
            Ok(ctx.api.security())
        }
        "client_submitTask" => {
            if !ctx.admin {
                return Err(RpcErr::new(
                    codes::UNAUTHORIZED,
                    "client_submitTask reads local files: it needs a loopback client or `Authorization: Bearer <token>`",
                ));
            }
            p.expect(&["path"])?;
            let path = p
                .required(0, "path")?
                .as_str()
                .ok_or_else(|| RpcErr::new(codes::INVALID_PARAMS, "`path` must be a string"))?;
            let id = ctx.api.submit_task(path).map_err(api_error)?;
            to_json(&serde_json::json!({ "task_id": id }))
        }
        "client_model" => {
            p.expect(&["task_id"])?;
            let id: TaskId = parse_str(p.required(0, "task_id")?, "task_id", "task id")?;
            let model = ctx.api.task_model(id).map_err(api_error)?;
            to_json(&model.map(|bytes| {
                serde_json::json!({ "bytes": bytes.len(), "safetensors_hex": hex::encode(bytes) })
            }))
        }
        "admin_nodeInfo" => {
            require_admin(ctx)?;
            p.expect(&[])?;
            to_json(&ctx.api.node_info())
        }
        "admin_peers" => {
            require_admin(ctx)?;
            p.expect(&[])?;
            to_json(&ctx.api.admin_peers())
        }
        "admin_addPeer" => {
            require_admin(ctx)?;
            p.expect(&["address"])?;
            let addr = p.required(0, "address")?;
            let addr = addr.as_str().ok_or_else(|| bad_param("address", "a multiaddr string"))?;
            ctx.api.add_peer(addr).map_err(api_error)?;
            to_json(&true)
        }
        "admin_removePeer" => {
            require_admin(ctx)?;
            p.expect(&["peer_id"])?;
            let peer = p.required(0, "peer_id")?;
            let peer = peer.as_str().ok_or_else(|| bad_param("peer_id", "a peer id string"))?;
            ctx.api.remove_peer(peer).map_err(api_error)?;
            to_json(&true)
        }
        _ => Err(RpcErr::new(codes::METHOD_NOT_FOUND, format!("method not found: {method}"))),
    }
}

fn require_admin(ctx: Context<'_>) -> Result<(), RpcErr> {
    if ctx.admin {
        return Ok(());
    }
    Err(RpcErr::new(
        codes::UNAUTHORIZED,
        "admin methods need a loopback client or `Authorization: Bearer <token>`",
    ))
}

fn bad_param(name: &str, expected: &str) -> RpcErr {
    RpcErr::invalid_params(format!("invalid {name}: expected {expected}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, RpcErr> {
    serde_json::to_value(value)
        .map_err(|e| RpcErr::new(codes::INTERNAL_ERROR, format!("internal error: {e}")))
}

fn rejected(reason: &str) -> RpcErr {
    RpcErr::new(codes::TX_REJECTED, format!("transaction rejected: {reason}"))
        .with_data(Value::String(reason.to_owned()))
}

fn api_error(e: ApiError) -> RpcErr {
    match e {
        ApiError::Rejected(reason) => rejected(&reason),
        ApiError::Unavailable(why) => {
            RpcErr::new(codes::UNAVAILABLE, format!("node unavailable: {why}"))
        }
        ApiError::Internal(why) => {
            RpcErr::new(codes::INTERNAL_ERROR, format!("internal error: {why}"))
        }
        ApiError::InvalidParams(why) => RpcErr::invalid_params(why),
    }
}

/// `pouw_block`'s parameter: a height (number or decimal string), a block hash, or `"latest"`.
fn block_ref(api: &dyn NodeApi, v: &Value) -> Result<BlockRef, RpcErr> {
    match v {
        Value::String(s) if s == "latest" => Ok(BlockRef::Height(api.tip().height)),
        Value::String(s) if s.len() >= 64 => {
            parse_str::<Hash>(v, "block", "block hash").map(BlockRef::Hash)
        }
        _ => as_u64(v, "block").map(BlockRef::Height).map_err(|_| {
            RpcErr::invalid_params(
                "`block`: expected a height, a 64-hex-character block hash or \"latest\"",
            )
        }),
    }
}

/// `pouw_sendTransaction`'s parameter: hex of the canonical encoding, or a JSON transaction.
fn transaction(v: &Value) -> Result<Transaction, RpcErr> {
    let bad = |why: String| RpcErr::invalid_params(format!("`tx`: {why}"));
    let tx: Transaction = match v {
        Value::String(s) => {
            let hex_str = s.strip_prefix("0x").unwrap_or(s);
            if hex_str.len() > 2 * MAX_TX_BYTES {
                return Err(bad(format!(
                    "{} bytes, over the limit of {MAX_TX_BYTES}",
                    hex_str.len() / 2
                )));
            }
            let bytes = hex::decode(hex_str).map_err(|e| bad(format!("not hex: {e}")))?;
            decode_bounded(&bytes, MAX_TX_BYTES).map_err(|e| bad(e.to_string()))?
        }
        Value::Object(_) => {
            let tx: Transaction =
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("invalid: {e}")))?;
            if tx.size() > MAX_TX_BYTES {
                return Err(bad(format!("{} bytes, over the limit of {MAX_TX_BYTES}", tx.size())));
            }
            tx
        }
        _ => return Err(bad("expected a hex string or a transaction object".into())),
    };
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::METHODS;
    use std::{collections::BTreeSet, path::Path};

    /// Names in the docs that look like methods but are not: a config key, a function, a bench.
    const NOT_METHODS: &[&str] = &["admin_token", "client_task", "client_models"];

    fn markdown_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                markdown_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }

    /// Every `pouw_x` / `admin_x` / `client_x` word (one underscore: metric names have more,
    /// crate paths are followed by `::`, file names by `.rs`) in the text.
    fn method_like_names(text: &str) -> BTreeSet<String> {
        let bytes = text.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut names = BTreeSet::new();
        let mut i = 0;
        while i < bytes.len() {
            if !word(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let w = &text[start..i];
            let rest = &text[i..];
            // A Rust path or call (`tasks::client_bond(fee, spec)`) is code, not a method.
            let prefixed = ["pouw_", "admin_", "client_"].iter().any(|p| w.starts_with(p));
            if prefixed
                && w.matches('_').count() == 1
                && !w.ends_with('_')
                && !rest.starts_with("::")
                && !rest.starts_with(".rs")
                && !rest.starts_with('(')
            {
                names.insert(w.to_string());
            }
        }
        names
    }

    /// CI keeps the docs and the server in step: every method the docs name exists, and every
    /// method that exists has its section in docs/rpc.md.
    #[test]
    fn docs_name_only_methods_that_exist_and_rpc_md_documents_every_method() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md")];
        markdown_files(&root.join("docs"), &mut files);
        let metrics: BTreeSet<&str> = crate::metrics::METRICS.iter().map(|m| m.0).collect();
        let methods: BTreeSet<&str> = METHODS.iter().copied().collect();
        let mut unknown = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for name in method_like_names(&text) {
                let known = methods.contains(name.as_str())
                    || metrics.contains(name.as_str())
                    || NOT_METHODS.contains(&name.as_str());
                if !known {
                    unknown.push(format!("{}: {name}", file.display()));
                }
            }
        }
        assert!(unknown.is_empty(), "the docs name RPC methods that do not exist: {unknown:#?}");

        let rpc_md = std::fs::read_to_string(root.join("docs/rpc.md")).unwrap();
        let undocumented: Vec<&str> =
            METHODS.iter().copied().filter(|m| !rpc_md.contains(&format!("#### `{m}`"))).collect();
        assert!(
            undocumented.is_empty(),
            "methods without a `#### `name`` section in docs/rpc.md: {undocumented:?}"
        );
        assert!(files.len() > 10, "the docs were not found: {files:?}");
    }

    #[test]
    fn method_like_names_skip_metrics_crates_and_files() {
        let names = method_like_names(
            "`pouw_tip`, pouw_blocks_mined_total, pouw_node::Staking, pouw_validator.rs, \
             admin_nodeInfo",
        );
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["admin_nodeInfo", "pouw_tip"]);
    }
}
