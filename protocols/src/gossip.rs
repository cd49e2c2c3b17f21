//! One decode for every gossip kind: an opened envelope's body as the typed message its kind
//! names (the router matches on the result, and every rejection has a stable label).

use crate::envelope::{Kind, SignedEnvelope};
use crate::fl::wire::FlGossip;
use crate::heartbeat::Heartbeat;
use crate::ledger::Entry;
use crate::por::announce::Announcement;

/// A gossiped message, decoded by its envelope's kind.
#[derive(Clone, Debug)]
pub enum GossipBody {
    Heartbeat(Heartbeat),
    LedgerEntry(Entry),
    PorAnnouncement(Announcement),
    Fl(FlGossip),
}

impl GossipBody {
    /// Decodes `env`'s body as its kind says (`net_id`: the network a ledger entry must name);
    /// the error is the label a rejection is counted under.
    pub fn decode(env: &SignedEnvelope, net_id: &str) -> Result<Self, &'static str> {
        Ok(match env.kind {
            Kind::Heartbeat => GossipBody::Heartbeat(Heartbeat::decode(&env.body).map_err(|_| "bad_heartbeat")?),
            Kind::LedgerEntry => GossipBody::LedgerEntry(Entry::decode(&env.body, net_id).map_err(|e| e.label())?),
            Kind::PorAnnouncement => {
                GossipBody::PorAnnouncement(Announcement::decode(&env.body).map_err(|_| "bad_announcement")?)
            }
            Kind::Fl => GossipBody::Fl(FlGossip::decode(&env.body).map_err(|_| "bad_fl_gossip")?),
        })
    }
}
