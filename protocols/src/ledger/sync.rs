//! Anti-entropy messages: a node sends what it holds per author (chain length, tip, forks
//! seen) and receives the entries it lacks, in bounded chunks. Authors go in pages of at most
//! [`MAX_SUMMARIES`] (issue #16: one request of every author passed the 1 MiB request limit
//! near 14,000 authors, and sync stopped for good); each request covers a range of authors,
//! and the responder answers for that range only.

use bincode::{Decode, Encode};
use thiserror::Error;

use super::entry::{EntryId, MAX_ENTRY_BYTES};

/// Largest encoded request.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Authors summarized in one request: a summary encodes to at most 78 bytes, so 8,192 of them
/// (639 KiB) always fit [`MAX_REQUEST_BYTES`].
pub const MAX_SUMMARIES: usize = 8192;
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
    /// 0 if the sender holds no fork of this author; else a fingerprint of the two siblings
    /// it keeps at the fork (never 0), so two nodes holding different pairs notice.
    pub fork: u32,
}

/// "Here is what I have of the authors in this range; send what I lack there, up to
/// `max_bytes`."
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncRequest {
    /// The range starts after this author (`None`: at the first).
    pub after: Option<[u8; 32]>,
    /// The range ends with this author, inclusive (`None`: at the last).
    pub until: Option<[u8; 32]>,
    /// The requester's authors within the range.
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

impl SyncRequest {
    /// Whether `author` lies in the requested range.
    pub fn covers(&self, author: &[u8; 32]) -> bool {
        self.after.is_none_or(|a| *author > a) && self.until.is_none_or(|u| *author <= u)
    }
}

impl SyncResponse {
    /// Whether nothing was left out.
    pub fn complete(&self) -> bool {
        self.next.is_none()
    }
}

/// Where a pull stands: which page of authors, where within it. Sans I/O: the caller sends
/// [`Pull::request`], ingests the answer's entries and hands its `next` to [`Pull::advance`],
/// until `request` returns `None`.
#[derive(Debug, Default)]
pub struct Pull {
    after: Option<[u8; 32]>,
    page: Option<SyncRequest>,
    done: bool,
}

impl Pull {
    /// A pull from the first author.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next request to send (the page's summaries are read from `ledger` when the page
    /// starts), or `None` once the pull is complete.
    pub fn request(&mut self, ledger: &super::Ledger, max_bytes: u32) -> Option<&SyncRequest> {
        if self.done {
            return None;
        }
        let after = self.after;
        Some(self.page.get_or_insert_with(|| ledger.sync_request(after, max_bytes)))
    }

    /// Takes an answer's `next`. A `next` outside the page or not past the previous one is a
    /// responder trying to run the pull in circles: the pull ends with an error.
    pub fn advance(&mut self, next: Option<([u8; 32], u64)>) -> Result<(), SyncError> {
        let Some(page) = self.page.as_mut() else { return Ok(()) };
        match next {
            Some(n) if page.covers(&n.0) && page.resume.is_none_or(|r| n > r) => page.resume = Some(n),
            Some(_) => {
                self.done = true;
                return Err(SyncError::BadResume);
            }
            None => match page.until {
                Some(last) => {
                    self.after = Some(last);
                    self.page = None;
                }
                None => self.done = true,
            },
        }
        Ok(())
    }
}

/// A sync message that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncError {
    #[error("sync message of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed sync message: {0}")]
    Malformed(#[source] crate::codec::DecodeError),
    #[error("the answer's resume point is outside the requested range or runs backwards")]
    BadResume,
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
