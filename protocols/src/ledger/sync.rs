//! Anti-entropy messages: a node sends what it holds per author (chain length, tip, forks
//! seen) and receives the entries it lacks, in bounded chunks.

use bincode::{Decode, Encode};
use thiserror::Error;

use super::entry::{EntryId, MAX_ENTRY_BYTES};

/// Largest encoded request (about 14,000 authors).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Largest encoded response.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// What a requester asks for per response by default.
pub const DEFAULT_CHUNK_BYTES: u32 = 1 << 20;
/// The most entry bytes a responder puts in one response, whatever `max_bytes` asks: the
/// response limit less room for framing and one more chain step (a seq's entries are never
/// split), so an answer always decodes at the requester.
pub const MAX_CHUNK_BYTES: usize = MAX_RESPONSE_BYTES - 4 * MAX_ENTRY_BYTES;

/// One author's chain as the sender holds it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuthorSummary {
    pub author: [u8; 32],
    /// Chain length (entries at seqs 0..len).
    pub len: u64,
    /// Smallest id at `len - 1` (zeros for an empty chain).
    pub tip: EntryId,
    /// Seqs at which the sender holds more than one entry.
    pub equivocated: u32,
}

/// "Here is what I have; send what I lack, up to `max_bytes`."
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncRequest {
    pub summaries: Vec<AuthorSummary>,
    pub max_bytes: u32,
    /// Where the previous, incomplete response stopped (`SyncResponse::next`).
    pub resume: Option<([u8; 32], u64)>,
}

/// Encoded entries the requester lacks. `next` is set when the byte budget cut the response
/// short: ask again with it as `resume`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncResponse {
    pub entries: Vec<Vec<u8>>,
    pub next: Option<([u8; 32], u64)>,
}

impl SyncResponse {
    /// Whether nothing was left out.
    pub fn complete(&self) -> bool {
        self.next.is_none()
    }
}

/// A sync message that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncError {
    #[error("sync message of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed sync message: {0}")]
    Malformed(#[source] crate::codec::DecodeError),
}

fn decode<T: Decode<()>, const MAX: usize>(bytes: &[u8]) -> Result<T, SyncError> {
    if bytes.len() > MAX {
        return Err(SyncError::TooLarge { len: bytes.len(), max: MAX });
    }
    crate::codec::decode::<T, MAX>(bytes).map_err(SyncError::Malformed)
}

impl SyncRequest {
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes with the request size limit; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        decode::<Self, MAX_REQUEST_BYTES>(bytes)
    }
}

impl SyncResponse {
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes with the response size limit (each entry within the entry limit); never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        let r: Self = decode::<Self, MAX_RESPONSE_BYTES>(bytes)?;
        if let Some(e) = r.entries.iter().find(|e| e.len() > MAX_ENTRY_BYTES) {
            return Err(SyncError::TooLarge { len: e.len(), max: MAX_ENTRY_BYTES });
        }
        Ok(r)
    }
}
