//! Correlation ids: one per request, carried through every actor hop and echoed back.

use std::fmt;

/// The longest correlation id a client may send.
pub const MAX_LEN: usize = 128;

/// A validated correlation id: 1 to [`MAX_LEN`] characters from `A-Z a-z 0-9 . _ : -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

/// Why a client's correlation id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorrelationIdError {
    #[error("correlation id is empty")]
    Empty,
    #[error("correlation id is {0} characters long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("correlation id holds {0:?}; only A-Z a-z 0-9 . _ : - are allowed")]
    BadChar(char),
}

impl CorrelationId {
    /// Checks a client-supplied id.
    pub fn parse(s: &str) -> Result<Self, CorrelationIdError> {
        if s.is_empty() {
            return Err(CorrelationIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(CorrelationIdError::TooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(CorrelationIdError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }

    /// Builds an id from 128 random bits (the caller supplies the randomness), as 32
    /// lowercase hex digits.
    pub fn from_random(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(CorrelationId::parse("abc-DEF_1.2:3").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_hostile_ids() {
        assert_eq!(CorrelationId::parse(""), Err(CorrelationIdError::Empty));
        assert_eq!(
            CorrelationId::parse(&"a".repeat(129)),
            Err(CorrelationIdError::TooLong(129))
        );
        assert_eq!(
            CorrelationId::parse("a\nb"),
            Err(CorrelationIdError::BadChar('\n'))
        );
        assert_eq!(
            CorrelationId::parse("<script>"),
            Err(CorrelationIdError::BadChar('<'))
        );
    }

    #[test]
    fn random_ids_are_32_hex_digits() {
        let id = CorrelationId::from_random(0xabc);
        assert_eq!(id.as_str().len(), 32);
        assert!(CorrelationId::parse(id.as_str()).is_ok());
    }
}
