//! The contribution ledger: signed, hash-chained entries per author (`entry`), merged as a
//! set (`state`) whose homomorphic root (`root`) two nodes compare in 32 bytes, repaired by
//! anti-entropy (`sync`). Entry kinds land with the features that write them (`liveness`).

pub mod entry;
pub mod liveness;
pub mod receipt;
pub mod root;
pub mod state;
pub mod sync;

pub use entry::{Entry, EntryError, EntryId, EntryKind};
pub use liveness::{LivenessAttestation, PeerLiveness, PorVerdicts, WorkerVerdict};
pub use receipt::{FlReceipt, RenderReceipt};
pub use state::{IngestOutcome, Ledger};
pub use sync::{AuthorSummary, SyncRequest, SyncResponse};
