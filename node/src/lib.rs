//! The ifx node (libp2p swarm, services, HTTP API): not implemented yet, see docs/ARCHITECTURE.md.
