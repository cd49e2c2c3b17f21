//! The bincode encoding every ifx message body and record uses: standard config on the way out;
//! on the way in a size check before anything is read, bincode's allocation limit, and no
//! trailing bytes. Decoding never panics.

use bincode::{Decode, Encode};

/// Encodes plain data (cannot fail for the types of this crate).
pub fn encode<T: Encode>(v: &T) -> Vec<u8> {
    bincode::encode_to_vec(v, bincode::config::standard()).expect("encoding plain data into a Vec cannot fail")
}

/// Decodes at most `MAX` bytes into exactly one `T`.
pub fn decode<T: Decode<()>, const MAX: usize>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX {
        return Err(format!("{} bytes exceed the {MAX}-byte limit", bytes.len()));
    }
    let cfg = bincode::config::standard().with_limit::<MAX>();
    let (v, used) = bincode::decode_from_slice(bytes, cfg).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(v)
}
