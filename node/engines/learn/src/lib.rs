//! The ifx learner: the digits data set and its seeded non-IID split (`data`), the candle MLP
//! and its bit-reproducible local training (`model`), serving the inference models (`infer`),
//! and accuracy plots (`plot`). The only crate
//! that links candle; the protocol side of federated rounds is `ifx_protocols::fl`.

pub mod data;
pub mod infer;
pub mod model;
pub mod plot;

/// Why learning could not be done; the message says where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    /// A data file or its contents (the message names the file and line).
    #[error("{0}")]
    Data(String),
    /// Parameters of the wrong length for the model.
    #[error("{got} parameters, expected {expected}")]
    Shape { got: usize, expected: usize },
    /// candle refused an operation.
    #[error("candle: {0}")]
    Candle(String),
    /// An output file could not be written.
    #[error("cannot write {0}")]
    Output(String),
}

impl LearnError {
    /// A data problem.
    pub fn data(why: impl Into<String>) -> Self {
        LearnError::Data(why.into())
    }
}
