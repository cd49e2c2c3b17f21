//! What the API shows of federated learning: an owned task's status, and the audits' tally.

use std::collections::BTreeMap;

use ifx_protocols::fl::wire::TaskSpec;
use serde::Serialize;

/// What `GET /fl/{task}` shows.
#[derive(Clone, Debug, Serialize)]
pub struct TaskStatus {
    pub task_id: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub spec: TaskSpec,
    pub aggregator: String,
    /// Rounds completed.
    pub rounds_done: u32,
    pub accuracy_by_round: Vec<f64>,
    pub loss_by_round: Vec<f32>,
    /// Valid updates aggregated per round (before screening).
    pub clients_by_round: Vec<usize>,
    /// Accepted updates per worker peer id.
    pub accepted: BTreeMap<String, u64>,
    /// Rejected updates per worker peer id, with the reasons (the last few).
    pub rejected: BTreeMap<String, Vec<String>>,
    /// Rejected updates per worker peer id (all of them).
    pub rejected_count: BTreeMap<String, u64>,
    /// Workers the owner stopped asking (peer id: when and why): rejected `BAN_STRIKES`
    /// times within their last `BAN_WINDOW` updates (see `round.rs`).
    pub banned: BTreeMap<String, String>,
    /// Clients that did not deliver in time (timeouts, disconnects) per peer id.
    pub dropped: BTreeMap<String, u64>,
    /// FL receipts written to the ledger.
    pub receipts: u64,
    /// BLAKE3 of the current weights (safetensors bytes).
    pub global_hash: String,
    pub final_accuracy: Option<f64>,
    /// Final weights (safetensors) and the accuracy plot (PNG), once done.
    pub weights: Option<String>,
    pub plot: Option<String>,
    pub secs: f64,
    pub error: Option<String>,
}

/// What this node's audits of other owners' rounds found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditStats {
    /// Rounds recomputed to the announced hash.
    pub matched: u64,
    /// Rounds whose recomputed weights differ from the announcement.
    pub mismatched: u64,
    /// Rounds that could not be recomputed (inputs unavailable).
    pub failed: u64,
    pub last_error: Option<String>,
}
