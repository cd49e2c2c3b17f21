//! The ifx node. So far: its identity. The swarm, services and HTTP API are not implemented
//! yet (see docs/ARCHITECTURE.md).

pub mod identity;
