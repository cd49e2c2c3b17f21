//! Blobs between peers: weights and updates move as content-addressed blobs, fetched in
//! chunks of at most `CHUNK_BYTES` over the `fl` protocol and checked against their BLAKE3
//! hash; and one selected client's part of a round, as the owner sees it.

use ifx_protocols::fl::FlError;
use ifx_protocols::fl::aggregate::{Update, to_fixed};
use ifx_protocols::fl::wire::{CHUNK_BYTES, FlRequest, FlResponse, MAX_WEIGHTS_BYTES, from_safetensors};
use libp2p::PeerId;

use super::TaskError;
use super::round::{Miss, clip_reason};
use crate::network::{NetHandle, Proto};

/// Fetches the blob `hash` of `len` bytes from `peer` in chunks and checks its hash.
pub(super) async fn fetch(net: &NetHandle, peer: PeerId, hash: [u8; 32], len: usize) -> Result<Vec<u8>, Miss> {
    if len > MAX_WEIGHTS_BYTES {
        return Err(Miss::Rejected {
            update: hash,
            reason: format!("{len} bytes announced, the limit is {MAX_WEIGHTS_BYTES}"),
        });
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len || len == 0 {
        let req = FlRequest::Fetch { hash, offset: out.len() as u32 }.encode();
        let bytes = match net.request(Proto::Fl, peer, req).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(Miss::Dropped(format!("fetch failed: {e}"))),
            Err(_) => return Err(Miss::Dropped("the network stopped".into())),
        };
        match FlResponse::decode(&bytes) {
            Ok(FlResponse::Chunk { total, bytes }) => {
                if total as usize != len {
                    return Err(Miss::Rejected {
                        update: hash,
                        reason: format!("blob is {total} bytes, {len} were announced"),
                    });
                }
                if bytes.is_empty() || bytes.len() > CHUNK_BYTES || out.len() + bytes.len() > len {
                    return Err(Miss::Rejected { update: hash, reason: "malformed chunk".into() });
                }
                out.extend_from_slice(&bytes);
            }
            Ok(FlResponse::Error(e)) => return Err(Miss::Dropped(format!("fetch refused: {}", clip_reason(e)))),
            Ok(_) => return Err(Miss::Rejected { update: hash, reason: "unexpected response to a fetch".into() }),
            Err(e) => return Err(Miss::Rejected { update: hash, reason: format!("undecodable chunk: {e}") }),
        }
        if len == 0 {
            break;
        }
    }
    if *blake3::hash(&out).as_bytes() != hash {
        return Err(Miss::Rejected { update: hash, reason: "bytes do not match the announced hash".into() });
    }
    Ok(out)
}

/// Parses and checks an update's safetensors bytes into fixed point.
pub(super) fn parse_update(bytes: &[u8], examples: u64) -> Result<Update, FlError> {
    let delta = from_safetensors(bytes)?;
    Ok(Update { values: to_fixed(&delta)?, examples })
}

/// Fetches the blob `hash` from `peer` in chunks (at most [`MAX_WEIGHTS_BYTES`]), checking
/// its hash: what task owners, clients and auditors do to move weights and updates.
pub async fn fetch_blob(net: &NetHandle, peer: PeerId, hash: [u8; 32]) -> Result<Vec<u8>, TaskError> {
    fetch_any(net, peer, hash).await.map_err(|m| TaskError::Peer(m.reason()))
}

/// Fetches a blob whose length is not known in advance (the first chunk tells it).
pub(super) async fn fetch_any(net: &NetHandle, peer: PeerId, hash: [u8; 32]) -> Result<Vec<u8>, Miss> {
    let req = FlRequest::Fetch { hash, offset: 0 }.encode();
    let total = match net.request(Proto::Fl, peer, req).await {
        Ok(Ok(b)) => match FlResponse::decode(&b) {
            Ok(FlResponse::Chunk { total, .. }) => total as usize,
            Ok(FlResponse::Error(e)) => return Err(Miss::Dropped(e)),
            _ => return Err(Miss::Dropped("unexpected response to a fetch".into())),
        },
        Ok(Err(e)) => return Err(Miss::Dropped(e.to_string())),
        Err(_) => return Err(Miss::Dropped("the network stopped".into())),
    };
    fetch(net, peer, hash, total).await
}

/// A client's gradient as the owner received it: its safetensors bytes and its values.
pub(super) type Grad = (Vec<u8>, Update);

/// One selected client's part of a round, from the owner's side: the update's bytes and values,
/// the client's loss and, for a task with `scaffold`, its gradient (an answer without one, or
/// with a malformed one, is rejected whole).
pub(super) async fn client(
    net: &NetHandle,
    peer: PeerId,
    req: Vec<u8>,
    scaffold: bool,
) -> Result<(Vec<u8>, Update, f32, Option<Grad>), Miss> {
    let bytes = match net.request(Proto::Fl, peer, req).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(Miss::Dropped(e.to_string())),
        Err(_) => return Err(Miss::Dropped("the network stopped".into())),
    };
    match FlResponse::decode(&bytes) {
        Ok(FlResponse::Trained { update, len, examples, loss, grad }) => {
            let b = fetch(net, peer, update, len as usize).await?;
            let u = parse_update(&b, examples).map_err(|e| Miss::Rejected { update, reason: e.to_string() })?;
            let grad = match (scaffold, grad) {
                (false, _) => None,
                (true, None) => return Err(Miss::Rejected { update, reason: "no gradient with the update".into() }),
                (true, Some((hash, len))) => {
                    let g = fetch(net, peer, hash, len as usize).await?;
                    let v = parse_update(&g, examples)
                        .map_err(|e| Miss::Rejected { update, reason: format!("the gradient: {e}") })?;
                    Some((g, v))
                }
            };
            Ok((b, u, loss, grad))
        }
        Ok(FlResponse::Error(e)) => Err(Miss::Dropped(format!("client error: {}", clip_reason(e)))),
        Ok(_) => Err(Miss::Rejected { update: [0; 32], reason: "unexpected response to a train request".into() }),
        Err(e) => Err(Miss::Rejected { update: [0; 32], reason: format!("undecodable response: {e}") }),
    }
}
