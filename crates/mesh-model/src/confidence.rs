//! Confidence: how much the mesh trusts a source for one attribute.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A confidence from 0 to 100. Per attribute, the contribution with the highest confidence
/// wins; an HR system of record is typically 95, a directory 80, a generated value 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Confidence(u8);

impl Confidence {
    /// The lowest confidence.
    pub const MIN: Self = Self(0);
    /// The highest confidence.
    pub const MAX: Self = Self(100);

    /// Parses a confidence, refusing values outside 0..=100.
    pub fn new(value: i64) -> Result<Self, ParseError> {
        match u8::try_from(value) {
            Ok(v) if v <= 100 => Ok(Self(v)),
            _ => Err(ParseError::OutOfRange {
                what: "confidence",
                value,
                min: 0,
                max: 100,
            }),
        }
    }

    /// Returns the confidence as a number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Confidence {
    type Error = ParseError;
    fn try_from(value: i64) -> Result<Self, ParseError> {
        Self::new(value)
    }
}

impl From<Confidence> for u8 {
    fn from(c: Confidence) -> u8 {
        c.0
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_bounded() {
        assert_eq!(Confidence::new(95).unwrap().get(), 95);
        assert!(Confidence::new(101).is_err());
        assert!(Confidence::new(-1).is_err());
        assert!(serde_json::from_str::<Confidence>("150").is_err());
    }
}
