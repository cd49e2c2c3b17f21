//! Proof of Rendering on the network. Verifiers challenge random worker peers at random times:
//! a scene carrying a fresh secret ANGV watermark goes out over request-response; the worker
//! renders it and answers with the image and a Merkle root; the verifier then asks for the
//! sub-tiles the root selects, checks the imprints and the openings, re-renders those
//! sub-tiles, and records the verdict, the latency and any timeout (a QoS failure, not a PoR
//! failure). Workers can be started in a cheat mode for tests and the testnet.
//!
//! `worker`: answering challenges; `challenger`: the verifier's loop (the I/O); `schedule`: its
//! policy, sans I/O (whom to ask, with what, how timing is judged); `stats`: what it recorded;
//! `links`: its link measurements of workers, for the attester.
//! The wire types are the protocol's (`ifx_protocols::por::wire`).

pub mod admission;
mod challenger;
pub mod links;
pub mod schedule;
mod stats;
pub mod verifiers;
mod worker;

pub use challenger::Challenger;
pub use stats::{AnnouncementView, Announcements, PorStats, WorkerStats};
pub use worker::{HeavyWork, LATE, Prover, serve};

pub use ifx_protocols::por::wire::{CHALLENGE, MAX_ANSWER};
