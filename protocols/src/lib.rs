//! ifx wire types and protocol state machines.
//!
//! Everything here is free of sockets and clocks: callers pass bytes and times in and get
//! decisions out, so every rule is tested deterministically. The node crate does the I/O.

pub mod api;
pub mod blob;
pub mod codec;
pub mod envelope;
pub mod fl;
pub mod gossip;
pub mod heartbeat;
pub mod infer;
pub mod invalid;
pub mod ledger;
pub mod link;
pub mod merkle;
pub mod modes;
pub mod net_id;
pub mod network;
pub mod por;
pub mod render;
pub mod replay;
pub mod settle;
pub mod stats;

pub use envelope::{EnvelopeError, Kind, SignedEnvelope};
pub use heartbeat::{Capacity, Heartbeat, Observed, PeerTable, Role};
pub use invalid::InvalidValue;
pub use network::NetworkConfig;
pub use replay::ReplayGuard;
