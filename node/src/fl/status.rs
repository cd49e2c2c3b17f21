//! What the API shows of federated learning (an owned task's status, the audits' tally): the
//! protocol's API types.

pub use ifx_protocols::api::{AuditStats, RunState, TaskStatus};
