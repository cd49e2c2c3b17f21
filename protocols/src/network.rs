//! The parameters every node of one network must share: its id, bootnodes, clock (genesis and
//! epoch length) and heartbeat cadence. Protocol and topic names derive from the id, so nodes of
//! different networks never mix even on one machine.

use serde::{Deserialize, Serialize};

pub use crate::invalid::InvalidValue;
use crate::net_id::{self, MAX_NET_NAME_LEN};
use crate::settle::{EconParams, GenesisAlloc};

/// Shared network parameters (`[network]` in a node config, or a file of its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Network id: lower-case letters, digits and '-', at most 32 characters.
    pub id: String,
    /// Multiaddrs of bootnodes, ideally ending in `/p2p/<peer id>`.
    pub bootnodes: Vec<String>,
    /// Start of epoch 0, in Unix seconds.
    pub genesis_unix_secs: u64,
    /// Length of an epoch in seconds (the whitepaper's default is 72 hours).
    pub epoch_secs: u64,
    /// How often each node publishes a heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// IB reference: benchmark iterations per second of the reference machine (IB = 1.0).
    pub ib_reference_iters_per_sec: u64,
    /// Verifiers seal an epoch this long after it ends, so late entries still count
    /// (0: a sixth of the epoch, at most an hour).
    pub seal_grace_secs: u64,
    /// Minting, weights, stake and governance parameters at genesis.
    pub economics: EconParams,
    /// Stake and balances at genesis.
    pub genesis: Vec<GenesisAlloc>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            id: "ifx-dev".into(),
            bootnodes: Vec::new(),
            // 2026-01-01T00:00:00Z
            genesis_unix_secs: 1_767_225_600,
            epoch_secs: 72 * 3600,
            heartbeat_interval_ms: 5_000,
            ib_reference_iters_per_sec: 1_000_000_000,
            seal_grace_secs: 0,
            economics: EconParams::default(),
            genesis: Vec::new(),
        }
    }
}

impl NetworkConfig {
    /// Checks every value; the error names the first bad key under `prefix` (e.g. `network`).
    pub fn validate(&self, prefix: &str) -> Result<(), InvalidValue> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !net_id::is_valid(&self.id) || self.id.len() > MAX_NET_NAME_LEN {
            return Err(InvalidValue::new(
                key("id"),
                format!("{:?} must be 1 to {MAX_NET_NAME_LEN} characters of a-z, 0-9 and '-'", self.id),
            ));
        }
        if !(1..=365 * 24 * 3600).contains(&self.epoch_secs) {
            return Err(InvalidValue::new(
                key("epoch_secs"),
                format!("{} must be between 1 and 31536000 (one year)", self.epoch_secs),
            ));
        }
        if !(100..=600_000).contains(&self.heartbeat_interval_ms) {
            return Err(InvalidValue::new(
                key("heartbeat_interval_ms"),
                format!("{} must be between 100 and 600000", self.heartbeat_interval_ms),
            ));
        }
        if self.ib_reference_iters_per_sec == 0 {
            return Err(InvalidValue::new(key("ib_reference_iters_per_sec"), "must be positive"));
        }
        if self.seal_grace_secs >= self.epoch_secs {
            return Err(InvalidValue::new(
                key("seal_grace_secs"),
                format!("{} must be shorter than the epoch ({} s)", self.seal_grace_secs, self.epoch_secs),
            ));
        }
        self.economics.validate(&key("economics"))?;
        crate::settle::params::validate_genesis(&self.genesis, &key("genesis"))?;
        if self.heartbeat_interval_ms > self.epoch_secs.saturating_mul(1000) {
            return Err(InvalidValue::new(
                key("heartbeat_interval_ms"),
                "must not exceed the epoch length (network.epoch_secs)",
            ));
        }
        Ok(())
    }

    /// Epoch containing the instant `unix_ms`; 0 before genesis.
    pub fn epoch_at(&self, unix_ms: u64) -> u64 {
        let genesis_ms = self.genesis_unix_secs.saturating_mul(1000);
        unix_ms.saturating_sub(genesis_ms) / self.epoch_secs.max(1).saturating_mul(1000)
    }

    /// How long after an epoch ends its seal is written, in milliseconds.
    pub fn seal_grace_ms(&self) -> u64 {
        match self.seal_grace_secs {
            0 => (self.epoch_secs * 1000 / 6).clamp(1, 3_600_000),
            s => s * 1000,
        }
    }

    /// Heartbeats a live node publishes in a full epoch.
    pub fn heartbeats_per_epoch(&self) -> u64 {
        self.epoch_secs.saturating_mul(1000) / self.heartbeat_interval_ms.max(1)
    }

    /// BLAKE3 over everything the nodes of one network must agree on: the name, the clock
    /// (genesis, epoch length, seal grace), the heartbeat cadence and IB reference that liveness
    /// and weights are computed from, the economics and the genesis allocations. Not the
    /// bootnodes: those only say where to start looking.
    pub fn fingerprint(&self) -> [u8; 32] {
        #[derive(Serialize)]
        struct Agreed<'a> {
            id: &'a str,
            genesis_unix_secs: u64,
            epoch_secs: u64,
            heartbeat_interval_ms: u64,
            ib_reference_iters_per_sec: u64,
            seal_grace_secs: u64,
            economics: &'a EconParams,
            genesis: &'a [GenesisAlloc],
        }
        let agreed = Agreed {
            id: &self.id,
            genesis_unix_secs: self.genesis_unix_secs,
            epoch_secs: self.epoch_secs,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            ib_reference_iters_per_sec: self.ib_reference_iters_per_sec,
            seal_grace_secs: self.seal_grace_secs,
            economics: &self.economics,
            genesis: &self.genesis,
        };
        // JSON of plain structs and vectors: fields in declaration order, so every node that
        // holds the same values hashes the same bytes.
        let bytes = serde_json::to_vec(&agreed).expect("plain data");
        blake3::derive_key("ifx network fingerprint v1", &bytes)
    }

    /// The id every signature, protocol name and topic of this network carries: the name and
    /// 8 hex digits of [`Self::fingerprint`], so nodes configured with a different genesis or
    /// economics under the same name never mix (their messages do not verify, their protocols
    /// do not match).
    pub fn wire_id(&self) -> String {
        format!("{}-{}", self.id, hex::encode(&self.fingerprint()[..4]))
    }

    /// Kademlia protocol name for this network.
    pub fn kad_protocol(&self) -> String {
        format!("/ifx/{}/kad/1", self.id)
    }

    /// Request-response protocol of ledger anti-entropy on this network.
    pub fn ledger_sync_protocol(&self) -> String {
        format!("/ifx/{}/ledger-sync/1", self.id)
    }

    /// Request-response protocol of render tiles on this network.
    pub fn render_protocol(&self) -> String {
        format!("/ifx/{}/render/2", self.id)
    }

    /// Request-response protocol of content-addressed blobs (render assets) on this network.
    pub fn blob_protocol(&self) -> String {
        format!("/ifx/{}/blob/1", self.id)
    }

    /// Request-response protocol of link measurements (round trip, throughput) on this network.
    pub fn link_protocol(&self) -> String {
        format!("/ifx/{}/link/1", self.id)
    }

    /// Request-response protocol of federated-learning rounds on this network.
    pub fn fl_protocol(&self) -> String {
        format!("/ifx/{}/fl/1", self.id)
    }

    /// Request-response protocol of inference batches on this network.
    pub fn infer_protocol(&self) -> String {
        format!("/ifx/{}/infer/1", self.id)
    }

    /// Request-response protocol of Proof-of-Rendering challenges on this network.
    pub fn por_protocol(&self) -> String {
        format!("/ifx/{}/por/1", self.id)
    }

    /// Identify protocol version string for this network.
    pub fn identify_protocol(&self) -> String {
        format!("/ifx/{}/id/1", self.id)
    }

    /// Gossipsub topic name for one kind of traffic (`heartbeat`, `ledger`, ...).
    pub fn topic(&self, name: &str) -> String {
        format!("ifx/{}/{name}/1", self.id)
    }
}

impl<'a> From<&'a NetworkConfig> for crate::settle::engine::Chain<'a> {
    fn from(n: &'a NetworkConfig) -> Self {
        Self { epoch_secs: n.epoch_secs, economics: &n.economics, genesis: &n.genesis }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #16: a network was told apart only by its id string.
    #[test]
    fn the_wire_id_commits_to_genesis_and_economics() {
        let base = NetworkConfig { id: "lab".into(), ..Default::default() };
        let id = base.wire_id();
        assert!(id.starts_with("lab-") && net_id::is_valid(&id) && id.len() == 12, "{id}");
        let longest = NetworkConfig { id: "a".repeat(MAX_NET_NAME_LEN), ..Default::default() };
        assert!(longest.validate("network").is_ok() && net_id::is_valid(&longest.wire_id()));
        let too_long = NetworkConfig { id: "a".repeat(MAX_NET_NAME_LEN + 1), ..Default::default() };
        assert!(too_long.validate("network").is_err());
        let mut other_econ = base.clone();
        other_econ.economics.workers_bps += 1;
        let mut other_genesis = base.clone();
        other_genesis.genesis.push(GenesisAlloc {
            key: hex::encode([7u8; 32]),
            role: crate::settle::StakeRole::Verifier,
            stake: 1,
            liquid: 0,
        });
        let mut other_clock = base.clone();
        other_clock.genesis_unix_secs += 1;
        for other in [other_econ, other_genesis, other_clock] {
            assert_ne!(other.wire_id(), id);
        }
        let mut same = base.clone();
        same.bootnodes.push("/ip4/127.0.0.1/tcp/1".into());
        assert_eq!(same.wire_id(), id, "bootnodes are not part of the agreement");
    }

    #[test]
    fn defaults_are_valid() {
        NetworkConfig::default().validate("network").unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = NetworkConfig { id: "Bad Id".into(), ..Default::default() };
        assert_eq!(c.validate("network").unwrap_err().key, "network.id");
        c.id = "ok".into();
        c.epoch_secs = 0;
        assert_eq!(c.validate("network").unwrap_err().key, "network.epoch_secs");
        c.epoch_secs = 10;
        c.heartbeat_interval_ms = 20_000;
        assert_eq!(c.validate("network").unwrap_err().key, "network.heartbeat_interval_ms");
    }

    #[test]
    fn epochs_follow_genesis() {
        let c = NetworkConfig { genesis_unix_secs: 100, epoch_secs: 10, ..Default::default() };
        assert_eq!(c.epoch_at(0), 0);
        assert_eq!(c.epoch_at(109_999), 0);
        assert_eq!(c.epoch_at(110_000), 1);
        assert_eq!(c.epoch_at(u64::MAX), (u64::MAX - 100_000) / 10_000);
        assert_eq!(c.heartbeats_per_epoch(), 2);
    }
}
