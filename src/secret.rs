//! [`Secret`]: a setting that must never be printed (a database or Redis URL with its password,
//! a signing key, the router's shared secret). It stays wrapped from the command line down to
//! the one place that uses it, and even its `Debug` output hides it. Depends on nothing in the
//! crate, so every layer can hold one.

use std::fmt;
use std::str::FromStr;

/// A secret: never printed, not even in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::new("redis://:hunter2@cache:6379");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(secret)), "Some(Secret(<redacted>))");
    }
}
