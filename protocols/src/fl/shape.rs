//! The shape of the federated model every FL message carries: an MLP 64-64-10 over the digits
//! set's 8x8 pixel counts. The learner (`ifx-learn`) trains it; the protocol only checks sizes.

/// Pixels per example.
pub const FEATURES: usize = 64;
/// Classes.
pub const CLASSES: usize = 10;
/// Hidden units.
pub const HIDDEN: usize = 64;
/// Parameters in all: 64*64 + 64 + 10*64 + 10.
pub const PARAMS: usize = FEATURES * HIDDEN + HIDDEN + CLASSES * HIDDEN + CLASSES;
