//! Federated learning, the protocol part: the model's shape (`shape`), fixed-point aggregation
//! with screening (`aggregate`), client-level differential privacy (`dp`), and the wire messages and safetensors weights of rounds over the
//! mesh (`wire`). The candle learner (data, model, plots) is the `ifx-learn` engine crate; the
//! node runs rounds in `node/src/fl/`.

pub mod aggregate;
pub mod dp;
pub mod poison;
pub mod shape;
pub mod wire;

use crate::codec::DecodeError;

/// Why federated-learning input (a task spec, weights, an update, a message) cannot be used;
/// the message names the field or value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlError {
    /// A value out of its range or shape.
    #[error("{0}")]
    Invalid(String),
    /// Bytes that do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl FlError {
    /// A value out of range, with what is wrong.
    pub fn invalid(why: impl Into<String>) -> Self {
        FlError::Invalid(why.into())
    }
}
