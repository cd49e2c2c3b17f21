//! Federated learning, the sans-I/O part: the data set and its non-IID split (`data`), the
//! candle model and local training (`model`), fixed-point aggregation with screening
//! (`aggregate`), and the wire messages and safetensors weights of rounds over the mesh
//! (`wire`). The node runs rounds in `node/src/fl.rs`.

pub mod aggregate;
pub mod data;
pub mod model;
pub mod plot;
pub mod wire;
