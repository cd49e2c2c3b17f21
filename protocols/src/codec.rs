//! The bincode encoding every ifx message body and record uses: standard config on the way out;
//! on the way in a size check before anything is read, bincode's allocation limit, and no
//! trailing bytes. Decoding never panics.

use bincode::{Decode, Encode};

/// Why bytes from a peer (or a file) did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than the kind's limit; nothing was read.
    #[error("{len} bytes exceed the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Not a valid encoding of the type (bincode's reason).
    #[error("{0}")]
    Malformed(String),
    /// A valid value followed by more bytes.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Decoded, but a value is out of its range (says which and why).
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// A decoded value out of range.
    pub fn invalid(why: impl Into<String>) -> Self {
        DecodeError::Invalid(why.into())
    }
}

/// Encodes plain data (cannot fail for the types of this crate).
pub fn encode<T: Encode>(v: &T) -> Vec<u8> {
    bincode::encode_to_vec(v, bincode::config::standard()).expect("encoding plain data into a Vec cannot fail")
}

/// Decodes at most `MAX` bytes into exactly one `T`.
pub fn decode<T: Decode<()>, const MAX: usize>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX {
        return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX });
    }
    let cfg = bincode::config::standard().with_limit::<MAX>();
    let (v, used) = bincode::decode_from_slice(bytes, cfg).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - used));
    }
    Ok(v)
}
