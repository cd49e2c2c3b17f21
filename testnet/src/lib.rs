//! Local network launcher: not implemented yet, see docs/ARCHITECTURE.md.
