//! Which connections to keep, sans I/O: the event loop reports connections opening and closing
//! and requests starting and ending, with the time; [`Connections::to_trim`] answers which to
//! close. Gossipsub keeps a stream open on every connection, so without trimming every peer a
//! DHT walk or a request ever dialled stays connected (a hundred nodes end up all connected to
//! all, each connection with its pings and gossip control traffic).
//!
//! The rule: only when more than 1.5x the target are connected, close connections this node
//! dialled (the dialler owns a connection: a node never hangs up on peers that came to it, or a
//! bootnode would cut the very nodes that rely on it, and they would dial straight back), down
//! to the target, longest unused first. Kept: bootnodes, gossip mesh peers, peers with a
//! request in flight or one answered within [`KEEP_USED`], and connections younger than
//! [`KEEP_NEW`].

//!
//! Inbound peers past the node's inbound share of the slots are trimmed too, the lowest gossip
//! score first ([`Connections::inbound_excess`]); which peers are inbound, and the caps by
//! address, are `ip_limits`'s.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// A connection a request used within this long is not trimmed.
pub const KEEP_USED: Duration = Duration::from_secs(5);
/// Nor is one younger than this (its peer may not be grafted into the gossip mesh yet).
pub const KEEP_NEW: Duration = Duration::from_secs(20);

/// What the event loop knows of each connected peer's use.
#[derive(Debug, Default)]
pub struct Connections {
    /// When each connected peer's first connection opened, and whether this node dialled it.
    opened: HashMap<PeerId, (Instant, bool)>,
    /// When a request last went to or came from each peer.
    last_used: HashMap<PeerId, Instant>,
    /// Requests to or from each peer not answered yet.
    in_flight: HashMap<PeerId, u32>,
}

impl Connections {
    /// A connection to `peer` opened at `now` (`dialled`: by this node); later ones to a peer
    /// already connected change nothing.
    pub fn opened(&mut self, peer: PeerId, dialled: bool, now: Instant) {
        self.opened.entry(peer).or_insert((now, dialled));
    }

    /// Inbound peers to close because more than `max_inbound` of `inbound` are connected: the
    /// lowest gossip score first (the newest among equals), never a bootnode or a peer with a
    /// request in flight.
    pub fn inbound_excess(
        &self,
        inbound: &BTreeSet<PeerId>,
        max_inbound: usize,
        score: impl Fn(&PeerId) -> f64,
        is_bootnode: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        let n = inbound.len();
        if n <= max_inbound {
            return Vec::new();
        }
        let mut ranked: Vec<(f64, std::cmp::Reverse<Instant>, PeerId)> = inbound
            .iter()
            .filter(|p| !is_bootnode(p) && !self.in_flight.contains_key(p))
            .map(|p| (score(p), std::cmp::Reverse(self.opened.get(p).map_or_else(Instant::now, |o| o.0)), *p))
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ranked.into_iter().take(n - max_inbound).map(|(_, _, p)| p).collect()
    }

    /// The last connection to `peer` closed.
    pub fn closed(&mut self, peer: &PeerId) {
        self.opened.remove(peer);
        self.last_used.remove(peer);
        self.in_flight.remove(peer);
    }

    /// A request to or from `peer` started.
    pub fn request_started(&mut self, peer: PeerId, now: Instant) {
        self.last_used.insert(peer, now);
        *self.in_flight.entry(peer).or_default() += 1;
    }

    /// A request to or from `peer` ended (`connected`: the peer still is; a finished request to
    /// a peer gone does not bring it back into the table).
    pub fn request_ended(&mut self, peer: PeerId, connected: bool, now: Instant) {
        if connected {
            self.last_used.insert(peer, now);
        }
        if let Some(n) = self.in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&peer);
            }
        }
    }

    /// The peers to disconnect now, given who is connected, the gossip mesh, the bootnodes and
    /// the target connection count.
    pub fn to_trim(
        &self,
        connected: &[PeerId],
        mesh: &BTreeSet<PeerId>,
        is_bootnode: impl Fn(&PeerId) -> bool,
        target: usize,
        now: Instant,
    ) -> Vec<PeerId> {
        if connected.len() <= target + target / 2 {
            return Vec::new();
        }
        let mut idle: Vec<(Instant, PeerId)> = connected
            .iter()
            .filter(|p| !mesh.contains(p) && !is_bootnode(p) && !self.in_flight.contains_key(p))
            .filter_map(|p| {
                let (since, dialled) = self.opened.get(p).copied()?;
                let used = self.last_used.get(p).copied();
                let young = now.duration_since(since) < KEEP_NEW;
                let busy = used.is_some_and(|t| now.duration_since(t) < KEEP_USED);
                (dialled && !young && !busy).then(|| (used.unwrap_or(since), *p))
            })
            .collect();
        // The longest unused first.
        idle.sort();
        idle.into_iter().take(connected.len() - target).map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_inbound_slots_the_lowest_scored_inbound_peers_go() {
        let t0 = Instant::now();
        let mut c = Connections::default();
        let ps = peers(5);
        for (i, p) in ps.iter().enumerate() {
            c.opened(*p, false, t0 + Duration::from_secs(i as u64));
        }
        let inbound: BTreeSet<PeerId> = ps.iter().copied().collect();
        let score = |p: &PeerId| {
            if *p == ps[0] {
                -50.0
            } else if *p == ps[4] {
                10.0
            } else {
                0.0
            }
        };
        // Five in, three slots: the negative one, then the newest of the zeros (ps[3]).
        assert_eq!(c.inbound_excess(&inbound, 3, score, |_| false), vec![ps[0], ps[3]]);
        // A bootnode is never trimmed.
        assert_eq!(c.inbound_excess(&inbound, 3, score, |p| *p == ps[0]), vec![ps[3], ps[2]]);
        assert!(c.inbound_excess(&inbound, 5, score, |_| false).is_empty());
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn nothing_is_trimmed_up_to_one_and_a_half_times_the_target() {
        let t0 = Instant::now();
        let mut c = Connections::default();
        let ps = peers(6);
        for p in &ps {
            c.opened(*p, true, t0);
        }
        let later = t0 + Duration::from_secs(60);
        assert!(c.to_trim(&ps, &BTreeSet::new(), |_| false, 4, later).is_empty(), "6 <= 4 + 2");
        let ps7 = [ps.clone(), peers(1)].concat();
        c.opened(ps7[6], true, t0);
        assert_eq!(c.to_trim(&ps7, &BTreeSet::new(), |_| false, 4, later).len(), 3, "down to the target");
    }

    #[test]
    fn only_idle_old_dialled_connections_outside_the_mesh_go_longest_unused_first() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let mut c = Connections::default();
        let ps = peers(10);
        // 0: inbound; 1: in the mesh; 2: a bootnode; 3: a request in flight; 4: used 2 s ago;
        // 5: connected 10 s ago; 6..9: dialled, idle, last used at 10, 40, 30 and never.
        for (i, p) in ps.iter().enumerate() {
            let at = if i == 5 { now - Duration::from_secs(10) } else { t0 };
            c.opened(*p, i != 0, at);
        }
        c.request_started(ps[3], t0 + Duration::from_secs(1));
        c.request_started(ps[4], now - Duration::from_secs(2));
        c.request_ended(ps[4], true, now - Duration::from_secs(2));
        for (i, s) in [(6, 10), (7, 40), (8, 30)] {
            c.request_started(ps[i], t0 + Duration::from_secs(s));
            c.request_ended(ps[i], true, t0 + Duration::from_secs(s));
        }
        let mesh: BTreeSet<PeerId> = [ps[1]].into();
        let trimmed = c.to_trim(&ps, &mesh, |p| *p == ps[2], 4, now);
        // 10 connected, target 4: six would go, but only 6..9 may; never used counts from
        // when it connected (t0), so it is the longest unused.
        assert_eq!(trimmed, vec![ps[9], ps[6], ps[8], ps[7]]);
        // Once closed, a peer is forgotten; a late answer from it does not bring it back.
        c.closed(&ps[9]);
        c.request_ended(ps[9], false, now);
        assert!(!c.last_used.contains_key(&ps[9]) && !c.opened.contains_key(&ps[9]));
    }

    #[test]
    fn a_request_in_flight_keeps_its_connection_until_it_ends() {
        let t0 = Instant::now();
        let mut c = Connections::default();
        let ps = peers(3);
        for p in &ps {
            c.opened(*p, true, t0);
        }
        c.request_started(ps[0], t0);
        c.request_started(ps[0], t0);
        // The others were used more recently, so once ps[0] is free it is the first to go.
        for p in &ps[1..] {
            c.request_started(*p, t0 + Duration::from_secs(30));
            c.request_ended(*p, true, t0 + Duration::from_secs(30));
        }
        let later = t0 + Duration::from_secs(60);
        assert!(!c.to_trim(&ps, &BTreeSet::new(), |_| false, 1, later).contains(&ps[0]));
        c.request_ended(ps[0], true, t0);
        assert!(!c.to_trim(&ps, &BTreeSet::new(), |_| false, 1, later).contains(&ps[0]), "one still in flight");
        c.request_ended(ps[0], true, t0);
        assert!(c.to_trim(&ps, &BTreeSet::new(), |_| false, 1, later).contains(&ps[0]));
    }
}
