//! A PoUW node: the chain, the mempool, the miner and the network, driven by one event loop
//! on its own thread.
//!
//! ```text
//!  network task (libp2p) ──NetEvent──► node loop ──► Chain (RwLock, readers: RPC, CLI)
//!        ▲                                │  ├─ gossip: blocks, txs, iterations, alerts
//!        └───────── NetworkHandle ◄───────┘  ├─ requests: status, headers, blocks+proofs
//!                                            ├─ sync: status → headers → blocks (replayed)
//!                                            └─ one miner step per turn when mining
//! ```

mod agent;
mod alert_hooks;
mod api;
mod bans;
mod config;
mod node;
mod own_txs;
mod priority;
mod ratelimit;
mod screening;
mod security;
mod stats;
mod sync;
mod tasks;
mod tiny_task;
mod verifier;

pub use agent::SubmitTaskError;
pub use alert_hooks::{alert_json, ExecHandler, WebhookHandler, WebhookUrl};
pub use api::account_view;
pub use config::{local_spec, Attack, NodeConfig, PeerLimits, Staking};
pub use node::{NodeCommand, NodeError, NodeHandle};
pub use ratelimit::RequestLimits;
pub use security::{
    AccusationView, Accusations, ScreeningView, SecurityHandler, SecurityHandlers, SecurityState,
    VerifiedAlert,
};
pub use stats::{ImportRecord, NodeCounters, NodeStats};
