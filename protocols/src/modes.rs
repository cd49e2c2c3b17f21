//! Named modes: values a user or a test names by a word (the render backend, a PoR cheat mode,
//! an FL poison mode). Each is an enum parsed once, from config files, flags and the testnet
//! alike, with one error that lists the names it accepts.

use thiserror::Error;

/// A mode name that is not one of the accepted ones.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown {what} {got:?} (expected one of: {expected})")]
pub struct UnknownMode {
    /// What kind of mode (e.g. "cheat mode").
    pub what: &'static str,
    /// The name given.
    pub got: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

impl UnknownMode {
    /// The error for `got` among `names`.
    pub fn new(what: &'static str, got: &str, names: &[&str]) -> Self {
        let shown: Vec<String> =
            names.iter().map(|n| if n.is_empty() { "\"\"".into() } else { (*n).to_string() }).collect();
        Self { what, got: got.into(), expected: shown.join(", ") }
    }
}

/// Implements `Display`, `FromStr`, `Serialize` and `Deserialize` for a mode type by its
/// `name()` and its `ALL` list (`$what` names the kind in errors).
#[macro_export]
macro_rules! named_mode {
    ($t:ty, $what:expr) => {
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
        impl ::std::str::FromStr for $t {
            type Err = $crate::modes::UnknownMode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t>::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = <$t>::ALL.iter().map(|m| m.name()).collect();
                    $crate::modes::UnknownMode::new($what, s, &names)
                })
            }
        }
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
