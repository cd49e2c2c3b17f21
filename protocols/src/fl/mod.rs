//! Federated learning, the sans-I/O part: the data set and its non-IID split (`data`), the
//! candle model and local training (`model`), and fixed-point aggregation (`aggregate`).
//! Rounds over the mesh, receipts and poisoners on live nodes are not built yet (issue #6).

pub mod aggregate;
pub mod data;
pub mod model;
