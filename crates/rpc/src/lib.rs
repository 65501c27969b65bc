//! pouw-rpc: the node's HTTP surface: JSON-RPC 2.0, Prometheus metrics, health, dashboard.
//!
//! The node implements [`NodeApi`] (a small, blocking, serde-friendly view of the chain,
//! mempool, network and miner) and hands it to [`serve`] (on its own runtime) or [`spawn`]
//! (own thread and runtime, returns an [`RpcServer`] with `shutdown()`). This crate never
//! sees the node's internals: everything it answers with is a plain view struct of [`api`].
//!
//! Routes (`docs/rpc.md` has every method, error code, metric and health field):
//! - `POST /`, `POST /rpc`: JSON-RPC 2.0 (single, batch, notifications), body and batch
//!   limits; `admin_*` methods only from loopback or with the bearer token;
//! - `GET /metrics`: Prometheus text format;
//! - `GET /health`: JSON report, HTTP 200 when ok, 503 when degraded (syncing, no peers);
//! - `GET /` (with `Accept: text/html`), `GET /dashboard` and asset paths: the embedded
//!   dashboard files of [`RpcConfig::assets`].
//!
//! Every node call runs on a blocking thread with a timeout, and a panicking call answers
//! with an internal error: a bad request or a stuck node never stops the server.
//!
//! ```no_run
//! use pouw_rpc::{NodeApi, RpcConfig, RpcError};
//! use std::sync::Arc;
//!
//! fn start(api: Arc<dyn NodeApi>) -> Result<(), RpcError> {
//!     let addr = "127.0.0.1:8545".parse().expect("a socket address");
//!     let server = pouw_rpc::spawn(addr, api, RpcConfig::default())?;
//!     let _bound = server.local_addr(); // the real port when `addr` has port 0
//!     // ... run the node ...
//!     server.shutdown();
//!     Ok(())
//! }
//! ```

pub mod api;
mod config;
mod jsonrpc;
mod methods;
mod metrics;
mod monitor;
mod server;

pub use api::{
    AccountTxView, AccountView, ApiError, BlockRef, BlockView, NodeApi, NodeInfo, NodeStatus,
    OwnTxView, ProofSummary, SupplyView, TicketView, TipView, TrainingPoint, TxSummary,
};
pub use config::{Asset, RpcConfig};
pub use jsonrpc::codes;
pub use monitor::{ProcessSample, ProcessStats};
pub use server::{serve, serve_with_shutdown, spawn, RpcError, RpcServer};

/// The JSON-RPC methods this server answers.
pub const METHODS: &[&str] = methods::METHODS;
/// The metric names `/metrics` exposes, with their Prometheus type and help text.
pub const METRICS: &[(&str, &str, &str)] = metrics::METRICS;
