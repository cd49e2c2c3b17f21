//! The network id: the name every signature of a network commits to (envelopes and ledger
//! entries alike), so a message of one network is never valid on another.

/// Longest network id in bytes (on the wire: the configured name, '-', and 8 hex digits of the
/// network's fingerprint).
pub const MAX_NET_ID_LEN: usize = 32;
/// Longest configured network name: the wire id adds 9 characters.
pub const MAX_NET_NAME_LEN: usize = MAX_NET_ID_LEN - 9;

/// Whether `id` is a usable network id: 1 to [`MAX_NET_ID_LEN`] characters of a-z, 0-9 and
/// '-'.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NET_ID_LEN
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
