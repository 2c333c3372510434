//! [`Seconds`]: a span of time as mcli's users write it (a timeout, a TTL, a grace period), one
//! type with one rule instead of a check at every place that takes seconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A number of seconds that is finite, not negative and under [`Seconds::LIMIT`] (about 31
/// years, far below what a [`Duration`] holds), so turning it into a `Duration` never panics.
/// Serialized as the plain number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize)]
#[serde(transparent)]
pub struct Seconds(f64);

/// Why a number is not [`Seconds`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecondsError {
    #[error("`{0}` is not a number of seconds")]
    NotANumber(String),
    #[error("{0} is not a number of seconds from 0 to 1e9")]
    OutOfRange(f64),
    #[error("{0} is not a positive number of seconds")]
    NotPositive(f64),
}

impl Seconds {
    /// The exclusive upper bound.
    pub const LIMIT: f64 = 1e9;
    pub const ZERO: Seconds = Seconds(0.0);

    /// Zero or more seconds.
    pub fn new(secs: f64) -> Result<Seconds, SecondsError> {
        if secs.is_finite() && (0.0..Self::LIMIT).contains(&secs) {
            Ok(Seconds(secs))
        } else {
            Err(SecondsError::OutOfRange(secs))
        }
    }

    /// More than zero seconds: a timeout or a TTL, where zero would mean nothing at all.
    pub fn positive(secs: f64) -> Result<Seconds, SecondsError> {
        match Seconds::new(secs) {
            Ok(s) if secs > 0.0 => Ok(s),
            _ => Err(SecondsError::NotPositive(secs)),
        }
    }

    /// Parses a number of seconds (`0.5`, `30`), more than zero.
    pub fn parse_positive(text: &str) -> Result<Seconds, SecondsError> {
        let secs = text.trim().parse::<f64>().map_err(|_| SecondsError::NotANumber(text.to_owned()))?;
        Seconds::positive(secs)
    }

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Seconds::new(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(Seconds::new(0.0).map(Seconds::get), Ok(0.0));
        assert!(Seconds::new(-1.0).is_err());
        assert!(Seconds::new(f64::NAN).is_err());
        assert!(Seconds::new(1e9).is_err());
        assert!(Seconds::positive(0.0).is_err());
        assert_eq!(Seconds::parse_positive(" 1.5 ").map(Seconds::duration), Ok(Duration::from_millis(1500)));
        assert_eq!(Seconds::parse_positive("1e20"), Err(SecondsError::NotPositive(1e20)));
        assert_eq!(Seconds::parse_positive("x"), Err(SecondsError::NotANumber("x".into())));
        assert!(serde_json::from_str::<Seconds>("-3").is_err());
        assert_eq!(serde_json::to_string(&Seconds::new(2.5).unwrap()).unwrap(), "2.5");
    }
}
