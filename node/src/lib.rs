//! The ifx node: configuration, identity, the libp2p swarm and its event loop, gossip
//! validation, the heartbeat service and the local HTTP API. `Node::start` wires them together;
//! the `ifx` binary (src/main.rs) and the in-process tests both use it.

pub mod api;
pub mod attack;
pub mod blob;
pub mod capacity;
pub mod compute;
pub mod config;
pub mod faults;
pub mod fl;
pub mod heartbeat;
pub mod identity;
pub mod infer;
pub mod ledger;
pub mod links;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pause;
pub mod por;
pub mod render;
pub mod router;
pub mod settle;
pub mod supervisor;

pub use config::{ConfigError, NodeConfig, Overrides};
pub use node::{Node, NodeError};
pub use supervisor::ServiceFailed;

/// Wall-clock time in Unix microseconds (0 if the clock is before 1970).
pub fn unix_time_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
