//! The peer-to-peer layer. One task ([`event_loop::EventLoop`]) owns the libp2p `Swarm`; the rest
//! of the node reaches it through a cloneable [`NetHandle`] (commands with oneshot replies) and
//! receives gossip through an [`InboundMessage`] channel. Envelope validation happens outside the
//! loop (see `router.rs`), which reports the verdict back through the handle.

pub mod addrs;
pub mod backoff;
pub mod behaviour;
pub mod connections;
pub mod discovery;
pub mod event_loop;
pub mod frame_codec;
pub mod ip_limits;
pub mod nat;
pub mod rate;
pub mod scoring;

use ifx_protocols::Kind;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

/// Requests to the swarm task.
#[derive(Debug)]
pub enum Command {
    /// Publish signed envelope bytes on the topic of `kind`.
    Publish { kind: Kind, data: Vec<u8>, reply: oneshot::Sender<Result<(), PublishFailed>> },
    /// The application's verdict on a gossip message: accept forwards it, reject penalises the
    /// peer it came from, ignore drops it quietly.
    Validated { id: MessageId, from: PeerId, acceptance: MessageAcceptance },
    /// A consistent picture of the network state.
    Snapshot { reply: oneshot::Sender<NetSnapshot> },
    /// Send a request of protocol `proto` to `peer`; the reply carries the response bytes.
    Request { proto: Proto, peer: PeerId, data: Vec<u8>, reply: oneshot::Sender<Result<Vec<u8>, RequestFailed>> },
    /// Answer an inbound request.
    Respond { proto: Proto, channel: ResponseChannel<Vec<u8>>, data: Vec<u8> },
    /// Connect to `peer` (directly, or through the relays we know); the reply comes once a
    /// connection is up or every address failed.
    Dial { peer: PeerId, reply: oneshot::Sender<Result<(), String>> },
    /// Block (close and refuse connections) or unblock peers.
    Block { peers: Vec<PeerId>, block: bool, reply: oneshot::Sender<Vec<String>> },
    /// Announce in the DHT that this node holds blob `hash` (a Kademlia provider record).
    Provide { hash: [u8; 32] },
    /// Ask the DHT which peers hold blob `hash`: the reply comes when the lookup ends or has
    /// found [`MAX_PROVIDERS`].
    Providers { hash: [u8; 32], reply: oneshot::Sender<Vec<PeerId>> },
}

/// Most holders one provider lookup answers with: more than a fetch asks
/// (`crate::blob::MAX_SOURCES`), so that a few liars among them leave honest ones.
pub const MAX_PROVIDERS: usize = 8;

/// The request-response protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// Ledger anti-entropy.
    LedgerSync,
    /// Render tiles.
    Render,
    /// Proof-of-Rendering challenges.
    Por,
    /// Federated-learning rounds.
    Fl,
    /// Inference batches.
    Infer,
    /// Link measurements (answered by the network task itself).
    Link,
    /// Content-addressed blobs (render assets) in chunks.
    Blob,
}

/// A request from a peer, to be answered through [`NetHandle::respond`] (dropping the channel
/// fails the peer's request).
#[derive(Debug)]
pub struct InboundRequest {
    pub peer: PeerId,
    pub data: Vec<u8>,
    pub channel: ResponseChannel<Vec<u8>>,
}

/// A gossip message waiting for application validation.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub id: MessageId,
    /// The peer that forwarded it to us (who is scored for it).
    pub from: PeerId,
    /// The topic's kind, if the topic is one of ours.
    pub kind: Option<Kind>,
    pub data: Vec<u8>,
}

pub use ifx_protocols::api::{ConnectedPeer, NetSnapshot};

/// The swarm task stopped; no more commands can be served.
#[derive(Debug, thiserror::Error)]
#[error("the network task has stopped")]
pub struct NetworkStopped;

/// Why a request got no answer: libp2p's outbound failure (dial failure, timeout, closed
/// connection, unsupported protocol), as it describes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestFailed(pub String);

/// Why gossipsub did not publish a message (no peer subscribed yet, a duplicate, too large).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishFailed(pub String);

/// Cloneable access to the swarm task.
#[derive(Clone, Debug)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Publishes envelope bytes; fails if no peer is subscribed yet or the task stopped.
    pub async fn publish(&self, kind: Kind, data: Vec<u8>) -> Result<Result<(), PublishFailed>, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Publish { kind, data, reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }

    /// Reports the verdict on an inbound message.
    pub async fn validated(&self, id: MessageId, from: PeerId, acceptance: MessageAcceptance) {
        // If the loop stopped there is nobody left to tell.
        let _ = self.commands.send(Command::Validated { id, from, acceptance }).await;
    }

    /// Sends a request and waits for the response bytes (or the failure, e.g. a timeout or a
    /// closed connection).
    pub async fn request(
        &self,
        proto: Proto,
        peer: PeerId,
        data: Vec<u8>,
    ) -> Result<Result<Vec<u8>, RequestFailed>, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Request { proto, peer, data, reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }

    /// Answers an inbound request.
    pub async fn respond(&self, proto: Proto, channel: ResponseChannel<Vec<u8>>, data: Vec<u8>) {
        let _ = self.commands.send(Command::Respond { proto, channel, data }).await;
    }

    /// Blocks (or unblocks) `peers`; returns the peers blocked afterwards.
    pub async fn set_blocked(&self, peers: Vec<PeerId>, block: bool) -> Result<Vec<String>, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Block { peers, block, reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }

    /// Announces that this node holds blob `hash` (see [`Command::Provide`]).
    pub async fn provide(&self, hash: [u8; 32]) {
        let _ = self.commands.send(Command::Provide { hash }).await;
    }

    /// Peers the DHT says hold blob `hash`, this node left out (see [`Command::Providers`]).
    pub async fn providers(&self, hash: [u8; 32]) -> Result<Vec<PeerId>, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Providers { hash, reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }

    /// Connects to `peer` if not connected yet (see [`Command::Dial`]).
    pub async fn dial(&self, peer: PeerId) -> Result<Result<(), String>, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Dial { peer, reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }

    /// Measures the link to `peer` over the link protocol: small requests' round trips, and
    /// `bytes` (at most [`ifx_protocols::link::MAX_LINK_BYTES`]) up, then as much down, on
    /// whatever path the connection takes; connects first (waiting at most `dial_wait`). The
    /// inner error says what failed, for the caller to show.
    pub async fn measure_link(
        &self,
        peer: PeerId,
        bytes: u32,
        dial_wait: std::time::Duration,
    ) -> Result<Result<ifx_protocols::api::LinkMeasurement, String>, NetworkStopped> {
        use ifx_protocols::link::{MAX_LINK_BYTES, request, transfer_kbit};
        match tokio::time::timeout(dial_wait, self.dial(peer)).await {
            Err(_) => return Ok(Err(format!("no connection within {} s", dial_wait.as_secs()))),
            Ok(r) => {
                if let Err(e) = r? {
                    return Ok(Err(format!("cannot reach the peer: {e}")));
                }
            }
        }
        let bytes = bytes.min(MAX_LINK_BYTES);
        // A small request before each transfer; the lesser of their round trips is the link's.
        // Queueing only adds to a round trip, and one taken while other traffic filled the
        // link's queue (200 ms behind a 20 Mbit/s token bucket), taken out of a transfer that
        // ran after the queue drained, read 26 Mbit/s on that link.
        let mut micros = Vec::new();
        for (want, upload) in [(0, 0), (0, bytes), (0, 0), (bytes, 0)] {
            let t0 = std::time::Instant::now();
            if let Err(e) = self.request(Proto::Link, peer, request(want, upload)).await? {
                return Ok(Err(format!("link measurement failed: {e}")));
            }
            micros.push(t0.elapsed().as_micros() as u64);
        }
        let rtt = micros[0].min(micros[2]);
        let id = peer.to_string();
        let path = self.snapshot().await?.connected.into_iter().find(|c| c.peer_id == id).map(|c| c.path);
        Ok(Ok(ifx_protocols::api::LinkMeasurement {
            peer: id,
            path,
            rtt_us: rtt,
            bytes: bytes as u64,
            up_kbit: transfer_kbit(bytes as u64, micros[1], rtt),
            down_kbit: transfer_kbit(bytes as u64, micros[3], rtt),
        }))
    }

    /// The current network state.
    pub async fn snapshot(&self) -> Result<NetSnapshot, NetworkStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Snapshot { reply }).await.map_err(|_| NetworkStopped)?;
        rx.await.map_err(|_| NetworkStopped)
    }
}

/// A parsed `/p2p/<peer id>` suffix of a multiaddr, if present.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

/// The libp2p peer id of an envelope author (an ed25519 public key), if the key is valid.
pub fn author_peer_id(author: &[u8; 32]) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(author).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}
