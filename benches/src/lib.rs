//! Shared fixtures for the criterion benchmarks (none yet, see docs/ARCHITECTURE.md).
