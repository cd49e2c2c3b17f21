//! Link measurements (`/ifx/<net>/link/1`): a round trip and a bounded bulk transfer in each
//! direction over request-response, so that a verifier (or an operator, `POST /net/measure`)
//! learns a peer's round-trip time and throughput on the path they actually use (direct,
//! hole-punched or relayed).
//!
//! A request is the number of bytes wanted back (u32, little-endian) followed by any padding
//! (the upload); the answer is that many zero bytes. Both are capped at [`MAX_LINK_BYTES`]:
//! a stranger can make a node send at most that much per request, and the node's per-peer rate
//! for this protocol (one request per 5 s after a burst of 4) bounds what it costs per peer.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest upload or download of one measurement: 2 MiB lasts 0.8 s at 20 Mbit/s, long
/// enough that connection set-up and one round trip are a few percent of it.
pub const MAX_LINK_BYTES: u32 = 2 << 20;

/// A link request that cannot be served.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkError {
    #[error("link request of {0} bytes is shorter than its 4-byte header")]
    Short(usize),
    #[error("link request asks for {0} bytes back, over the {MAX_LINK_BYTES}-byte cap")]
    TooMuch(u32),
    #[error("link request carries {0} bytes, over the {MAX_LINK_BYTES}-byte cap")]
    TooLong(usize),
}

/// A request asking for `want` bytes back and carrying `upload` bytes.
pub fn request(want: u32, upload: u32) -> Vec<u8> {
    let mut v = vec![0u8; 4 + upload.min(MAX_LINK_BYTES) as usize];
    v[..4].copy_from_slice(&want.min(MAX_LINK_BYTES).to_le_bytes());
    v
}

/// How many bytes a request wants back.
pub fn wanted(bytes: &[u8]) -> Result<u32, LinkError> {
    let head: [u8; 4] = bytes.get(..4).and_then(|h| h.try_into().ok()).ok_or(LinkError::Short(bytes.len()))?;
    if bytes.len() - 4 > MAX_LINK_BYTES as usize {
        return Err(LinkError::TooLong(bytes.len() - 4));
    }
    let want = u32::from_le_bytes(head);
    if want > MAX_LINK_BYTES {
        return Err(LinkError::TooMuch(want));
    }
    Ok(want)
}

/// Throughput in kbit/s of `bytes` moved in `micros` (0 when no time was measured).
pub fn kbit_per_sec(bytes: u64, micros: u64) -> u64 {
    if micros == 0 {
        return 0;
    }
    (bytes as u128 * 8 * 1000 / micros as u128).min(u64::MAX as u128) as u64
}

/// Throughput in kbit/s of a transfer of `bytes` that took `total_us` in all, a round trip of
/// `rtt_us` taken out, but never more than half the total: on a fast link a small request's
/// round trip (scheduling noise included) can last as long as the whole transfer, and taking all
/// of it out would read as no throughput at all; the figure is then a lower bound.
pub fn transfer_kbit(bytes: u64, total_us: u64, rtt_us: u64) -> u64 {
    kbit_per_sec(bytes, total_us.saturating_sub(rtt_us).max(total_us / 2))
}

/// How a connection to a peer runs.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "kebab-case")]
pub enum LinkPath {
    /// Dialled directly (either side).
    #[default]
    Direct,
    /// Direct, after a hole punch upgraded a relayed connection.
    HolePunched,
    /// Through a Circuit Relay v2 relay.
    Relayed,
}

impl LinkPath {
    /// The name the API's JSON uses (`direct`, `hole-punched`, `relayed`).
    pub fn name(self) -> &'static str {
        match self {
            LinkPath::Direct => "direct",
            LinkPath::HolePunched => "hole-punched",
            LinkPath::Relayed => "relayed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_caps_hold() {
        assert_eq!(wanted(&request(1000, 10)).unwrap(), 1000);
        assert_eq!(request(7, 10).len(), 14);
        assert_eq!(wanted(&request(u32::MAX, 0)).unwrap(), MAX_LINK_BYTES);
        assert_eq!(wanted(&[1, 2]), Err(LinkError::Short(2)));
        let mut big = (MAX_LINK_BYTES + 1).to_le_bytes().to_vec();
        assert_eq!(wanted(&big), Err(LinkError::TooMuch(MAX_LINK_BYTES + 1)));
        big = vec![0u8; 5 + MAX_LINK_BYTES as usize];
        assert_eq!(wanted(&big), Err(LinkError::TooLong(MAX_LINK_BYTES as usize + 1)));
        // 2 MiB in one second is 16.78 Mbit/s.
        assert_eq!(kbit_per_sec(2 << 20, 1_000_000), 16_777);
        assert_eq!(kbit_per_sec(5, 0), 0);
        // The round trip comes off a slow transfer; at most half of a fast one.
        assert_eq!(transfer_kbit(2 << 20, 1_001_000, 1_000), 16_777);
        assert_eq!(transfer_kbit(2 << 20, 2_000_000, 3_000_000), 16_777);
    }
}
