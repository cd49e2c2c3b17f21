//! How a poisoning worker corrupts its federated-learning updates (tests and the testnet; set by
//! `fl.poison` / `ifx node --poison`).

/// A poison mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Poison {
    #[default]
    Honest,
    SignFlip,
    Scale,
    Random,
    Nan,
    Shape,
    /// Answers honestly, but after the round's deadline.
    Slow,
}

impl Poison {
    /// Every mode, honest first.
    pub const ALL: [Poison; 7] =
        [Poison::Honest, Poison::SignFlip, Poison::Scale, Poison::Random, Poison::Nan, Poison::Shape, Poison::Slow];

    /// Its name in config files and flags (`""` is honest).
    pub fn name(self) -> &'static str {
        match self {
            Poison::Honest => "",
            Poison::SignFlip => "sign-flip",
            Poison::Scale => "scale",
            Poison::Random => "random",
            Poison::Nan => "nan",
            Poison::Shape => "shape",
            Poison::Slow => "slow",
        }
    }
}

crate::named_mode!(Poison, "poison mode");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_names_parse_and_serialise_as_themselves() {
        for p in Poison::ALL {
            assert_eq!(p.name().parse::<Poison>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("{:?}", p.name()));
        }
        assert!("salt".parse::<Poison>().unwrap_err().to_string().contains("sign-flip"));
    }
}
