//! The error of a configuration value out of range, shared by every config section (network
//! parameters, economics, the node's own config).

use thiserror::Error;

/// A configuration value that cannot be used; names the key so the user can fix it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{key}: {problem}")]
pub struct InvalidValue {
    /// Dotted config key, e.g. `network.epoch_secs`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

impl InvalidValue {
    /// An error for `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { key: key.into(), problem: problem.into() }
    }
}
