//! The blob protocol (`/ifx/<net>/blob/1`): content-addressed bytes (a render job's assets:
//! its scene file, meshes, buffers, images) fetched by BLAKE3 hash in chunks, from any peer
//! that holds them. A fetch is a sequence of `(hash, offset)` requests, so it resumes at the
//! next offset with another peer when one goes away; the whole is checked against its hash
//! before anything reads it.

use bincode::{Decode, Encode};

use crate::codec::DecodeError;

/// Bytes in one chunk: 512 KiB, a few milliseconds on a home uplink's worth of buffering and
/// few enough round trips (512 for the largest asset) that a fetch is not latency-bound.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Largest request on the wire (a hash and an offset, with room for framing).
pub const MAX_REQUEST_BYTES: usize = 64;
/// Largest response on the wire: a chunk and its framing.
pub const MAX_RESPONSE_BYTES: usize = CHUNK_BYTES + 64;

/// Asks for up to [`CHUNK_BYTES`] of blob `hash` from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BlobRequest {
    pub hash: [u8; 32],
    pub offset: u64,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum BlobResponse {
    /// Bytes from the asked offset (empty at or past the end) and the blob's whole length.
    Chunk { total: u64, bytes: Vec<u8> },
    /// This peer does not hold the blob.
    NotHeld,
    /// This peer holds it but cannot read it now (why).
    Error(String),
}

impl BlobRequest {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_REQUEST_BYTES>(b)
    }
}

impl BlobResponse {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_RESPONSE_BYTES>(b)
    }
}

/// A fetch in progress: how far one blob has come, whoever sent it. Sans I/O and without the
/// bytes: the caller sends [`Fetch::request`] to a peer, feeds the answer to [`Fetch::accept`]
/// and keeps the chunk it returns where it likes (the node writes it to its blob store, so
/// that a fetch a restart interrupted goes on from what was kept: [`Fetch::held`]). A peer
/// that fails or does not hold the blob is replaced by another, and the fetch goes on from the
/// same offset. The hash is checked as the bytes pass, once, at [`Fetch::finish`].
#[derive(Debug)]
pub struct Fetch {
    hash: [u8; 32],
    /// The length the asset's reference announced (the spec binds it with the hash).
    len: u64,
    received: u64,
    hasher: blake3::Hasher,
}

/// Why a chunk was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The peer does not hold the blob: ask another.
    #[error("the peer does not hold it")]
    NotHeld,
    /// The peer said why it cannot serve it now: ask another.
    #[error("the peer cannot serve it: {0}")]
    Refused(String),
    /// The peer sent something no honest holder sends: do not ask it again.
    #[error("the peer sent a bad chunk: {0}")]
    Bad(String),
}

impl Fetch {
    /// A fetch of `hash`, announced as `len` bytes. The caller bounds `len` (it comes from a
    /// job's spec, checked against the asset limits); nothing is allocated for it here.
    pub fn new(hash: [u8; 32], len: u64) -> Self {
        Self { hash, len, received: 0, hasher: blake3::Hasher::new() }
    }

    /// The hash asked for.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The request for the next chunk.
    pub fn request(&self) -> BlobRequest {
        BlobRequest { hash: self.hash, offset: self.received }
    }

    /// Bytes so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether every announced byte is here.
    pub fn complete(&self) -> bool {
        self.received == self.len
    }

    /// Counts `bytes` as the next ones, from an earlier fetch that kept them (they are hashed
    /// like the rest: bytes a liar sent before a restart fail [`Fetch::finish`] as they would
    /// have without it). More than the announced length is refused.
    pub fn held(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() as u64 > self.len - self.received {
            return Err(format!("{} bytes held past offset {}; the blob is {}", bytes.len(), self.received, self.len));
        }
        self.hasher.update(bytes);
        self.received += bytes.len() as u64;
        Ok(())
    }

    /// Takes one answer to [`Fetch::request`]; returns the chunk's bytes, which belong at
    /// the offset that request named.
    pub fn accept(&mut self, answer: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let bad = |m: String| Err(ChunkError::Bad(m));
        match BlobResponse::decode(answer) {
            Err(e) => bad(format!("undecodable: {e}")),
            Ok(BlobResponse::NotHeld) => Err(ChunkError::NotHeld),
            Ok(BlobResponse::Error(why)) => Err(ChunkError::Refused(why.chars().take(200).collect())),
            Ok(BlobResponse::Chunk { total, bytes }) => {
                if total != self.len {
                    return bad(format!("says the blob is {total} bytes; its reference says {}", self.len));
                }
                let want = (self.len - self.received).min(CHUNK_BYTES as u64) as usize;
                if bytes.len() != want {
                    return bad(format!("sent {} bytes at offset {}; {want} were due", bytes.len(), self.received));
                }
                self.hasher.update(&bytes);
                self.received += bytes.len() as u64;
                Ok(bytes)
            }
        }
    }

    /// `Ok` once complete, and only if the bytes hash to the asked hash.
    pub fn finish(&self) -> Result<(), String> {
        if !self.complete() {
            return Err(format!("{} of {} bytes", self.received, self.len));
        }
        if *self.hasher.finalize().as_bytes() != self.hash {
            return Err("the bytes do not hash to the asked hash".into());
        }
        Ok(())
    }
}

/// What a holder answers to `req` given the blob's chunk lookup (`(total, bytes)` of up to
/// [`CHUNK_BYTES`] from the offset, `None` when not held).
pub fn answer(
    req: &[u8],
    lookup: impl FnOnce(&[u8; 32], u64) -> Result<Option<(u64, Vec<u8>)>, String>,
) -> BlobResponse {
    match BlobRequest::decode(req) {
        Err(e) => BlobResponse::Error(format!("bad request: {e}")),
        Ok(r) => match lookup(&r.hash, r.offset) {
            Ok(Some((total, bytes))) => BlobResponse::Chunk { total, bytes },
            Ok(None) => BlobResponse::NotHeld,
            Err(e) => BlobResponse::Error(e.chars().take(200).collect()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(blob: &[u8]) -> impl Fn(&BlobRequest) -> Vec<u8> + '_ {
        move |r| {
            answer(&r.encode(), |h, off| {
                Ok((*h == *blake3::hash(blob).as_bytes()).then(|| {
                    let s = (off as usize).min(blob.len());
                    (blob.len() as u64, blob[s..(s + CHUNK_BYTES).min(blob.len())].to_vec())
                }))
            })
            .encode()
        }
    }

    #[test]
    fn a_fetch_resumes_at_its_offset_with_another_holder_and_checks_the_hash() {
        let blob: Vec<u8> = (0..CHUNK_BYTES * 2 + 1000).map(|i| (i * 7 % 251) as u8).collect();
        let hash = *blake3::hash(&blob).as_bytes();
        let (a, b) = (serve(&blob), serve(&blob));
        let mut f = Fetch::new(hash, blob.len() as u64);
        let mut got = f.accept(&a(&f.request())).unwrap();
        assert_eq!(f.received(), CHUNK_BYTES as u64);
        // The first holder went away: the second goes on from the same offset.
        while !f.complete() {
            got.extend(f.accept(&b(&f.request())).unwrap());
        }
        f.finish().unwrap();
        assert_eq!(got, blob);
        // A fetch that goes on from what an earlier one kept hashes those bytes too: the same
        // blob finishes, and bytes a liar sent before the restart are caught at the end.
        let mut g = Fetch::new(hash, blob.len() as u64);
        g.held(&blob[..CHUNK_BYTES]).unwrap();
        assert_eq!(g.request().offset, CHUNK_BYTES as u64);
        while !g.complete() {
            g.accept(&b(&g.request())).unwrap();
        }
        g.finish().unwrap();
        let mut lied = Fetch::new(hash, blob.len() as u64);
        lied.held(&vec![0u8; CHUNK_BYTES]).unwrap();
        while !lied.complete() {
            lied.accept(&b(&lied.request())).unwrap();
        }
        assert!(lied.finish().unwrap_err().contains("hash"));
        assert!(Fetch::new(hash, 3).held(&[0; 4]).unwrap_err().contains("the blob is 3"));
        // A holder of nothing says so.
        let other = serve(b"something else");
        let f = Fetch::new(hash, blob.len() as u64);
        assert_eq!(Fetch::new(hash, 3).accept(&other(&f.request())), Err(ChunkError::NotHeld));
    }

    #[test]
    fn lying_holders_are_caught_before_anything_reads_the_bytes() {
        let blob = vec![5u8; 3000];
        let hash = *blake3::hash(&blob).as_bytes();
        let chunk = |total: u64, bytes: Vec<u8>| BlobResponse::Chunk { total, bytes }.encode();
        // Another length than the reference says.
        assert!(matches!(Fetch::new(hash, 3000).accept(&chunk(3001, vec![5; 3000])), Err(ChunkError::Bad(_))));
        // Short, long or empty chunks.
        for n in [0, 2999, 3001] {
            assert!(matches!(Fetch::new(hash, 3000).accept(&chunk(3000, vec![5; n])), Err(ChunkError::Bad(_))), "{n}");
        }
        // Garbage.
        assert!(matches!(Fetch::new(hash, 3000).accept(&[0xff; 40]), Err(ChunkError::Bad(_))));
        // The right length, other bytes: refused at the end.
        let mut f = Fetch::new(hash, 3000);
        f.accept(&chunk(3000, vec![6; 3000])).unwrap();
        assert!(f.finish().unwrap_err().contains("hash"));
        // A response over the limit is not decoded.
        assert!(BlobResponse::decode(&vec![0u8; MAX_RESPONSE_BYTES + 1]).is_err());
        // A bad request gets an error answer, not a panic.
        assert!(matches!(answer(&[1, 2, 3], |_, _| unreachable!()), BlobResponse::Error(_)));
    }
}
